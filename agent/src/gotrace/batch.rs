//! Batches, the unit of framing of a v2 trace, ported from Go 1.27's `internal/trace/batch.go`;
//! plus the varint decoding Go gets from `encoding/binary`, bounds-checked, and a position
//! counting reader.
//!
//! After the header, a trace is a sequence of batches. A batch is
//! `EvEventBatch gen m time size data[size]` or, for experiments,
//! `EvExperimentalBatch exp gen m time size data[size]` (Go 1.23+), or a lone
//! `EvEndOfGeneration` byte (Go 1.26+). All numbers are unsigned LEB128 varints except the
//! type bytes and `exp`.

use std::io::{self, BufRead, BufReader, Read};

use super::base::{NO_THREAD, ThreadID, Timestamp, TraceError};
use super::spec::{self, EventType, Experiment, MAX_BATCH_SIZE, NO_EXPERIMENT};
use super::version::Version;

/// binary.MaxVarintLen64.
pub const MAX_VARINT_LEN64: usize = 10;

/// binary.Uvarint: decodes a uvarint from the start of `buf`. Returns the value and the number
/// of bytes read; n == 0 means `buf` is too short, n < 0 means the value overflows 64 bits
/// (and -n bytes were read).
pub fn uvarint(buf: &[u8]) -> (u64, isize) {
    let mut x: u64 = 0;
    let mut s: u32 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == MAX_VARINT_LEN64 {
            // Catch byte reads past MaxVarintLen64.
            return (0, -(i as isize + 1)); // overflow
        }
        if b < 0x80 {
            if i == MAX_VARINT_LEN64 - 1 && b > 1 {
                return (0, -(i as isize + 1)); // overflow
            }
            return (x | (u64::from(b) << s), i as isize + 1);
        }
        x |= u64::from(b & 0x7f) << s;
        s += 7;
    }
    (0, 0)
}

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended first (io.EOF / io.ErrUnexpectedEOF in Go).
    Short,
    /// More than 64 bits (binary's errOverflow).
    Overflow,
}

/// A cursor over an in-memory batch's data, Go's `bytes.Reader` as the structural batch
/// decoders use it. Running out of data here is corruption, never truncation: the batch itself
/// was read in full.
#[derive(Debug, Clone)]
pub struct DataReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> DataReader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> DataReader<'a> {
        DataReader { data, pos: 0 }
    }

    /// bytes.Reader.Len: the unread bytes.
    pub fn len(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current offset in the data.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// bytes.Reader.ReadByte.
    pub fn read_byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied()?;
        self.pos += 1;
        Some(b)
    }

    /// binary.ReadUvarint on the reader.
    pub fn uvarint(&mut self) -> Result<u64, VarintError> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let (v, n) = uvarint(rest);
        match n {
            0 => {
                self.pos = self.data.len();
                Err(VarintError::Short)
            }
            n if n < 0 => Err(VarintError::Overflow),
            n => {
                self.pos += n.unsigned_abs();
                Ok(v)
            }
        }
    }

    /// [`DataReader::uvarint`] with a Malformed error naming `what`.
    pub fn uvarint_or(&mut self, what: &str) -> Result<u64, TraceError> {
        self.uvarint().map_err(|e| match e {
            VarintError::Short => TraceError::Malformed(format!("{what}: unexpected end of batch")),
            VarintError::Overflow => {
                TraceError::Malformed(format!("{what}: varint overflows 64 bits"))
            }
        })
    }

    /// Takes the next `n` bytes, or None if fewer remain.
    pub fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
}

/// Reads one byte; None at EOF.
fn read_byte<R: BufRead + ?Sized>(r: &mut R) -> io::Result<Option<u8>> {
    loop {
        match r.fill_buf() {
            Ok(buf) => {
                let b = buf.first().copied();
                if b.is_some() {
                    r.consume(1);
                }
                return Ok(b);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// binary.ReadUvarint on a stream.
fn read_uvarint<R: BufRead + ?Sized>(r: &mut R) -> Result<u64, StreamVarintError> {
    let mut x: u64 = 0;
    let mut s: u32 = 0;
    for i in 0..MAX_VARINT_LEN64 {
        let b = read_byte(r)
            .map_err(StreamVarintError::Io)?
            .ok_or(StreamVarintError::Varint(VarintError::Short))?;
        if b < 0x80 {
            if i == MAX_VARINT_LEN64 - 1 && b > 1 {
                return Err(StreamVarintError::Varint(VarintError::Overflow));
            }
            return Ok(x | (u64::from(b) << s));
        }
        x |= u64::from(b & 0x7f) << s;
        s += 7;
    }
    Err(StreamVarintError::Varint(VarintError::Overflow))
}

enum StreamVarintError {
    Io(io::Error),
    Varint(VarintError),
}

/// batch.go: batch, a batch of events, unparsed except for its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The M (thread) that wrote the batch ([`NO_THREAD`] for an end-of-generation batch).
    pub m: ThreadID,
    /// The generation the batch belongs to (0 for an end-of-generation batch). Go returns it
    /// next to the batch from readBatch.
    pub generation: u64,
    /// The batch's base timestamp; events carry deltas from it.
    pub time: Timestamp,
    /// The batch's events (for an end-of-generation batch, just its type byte).
    pub data: Vec<u8>,
    /// The experiment of an experimental batch, else [`NO_EXPERIMENT`].
    pub exp: Experiment,
}

impl Batch {
    fn first_type(&self) -> Option<EventType> {
        if self.exp != NO_EXPERIMENT {
            return None;
        }
        self.data.first().copied()
    }

    /// batch.isStringsBatch.
    pub fn is_strings_batch(&self) -> bool {
        self.first_type() == Some(spec::EV_STRINGS)
    }

    /// batch.isStacksBatch.
    pub fn is_stacks_batch(&self) -> bool {
        self.first_type() == Some(spec::EV_STACKS)
    }

    /// batch.isCPUSamplesBatch.
    pub fn is_cpu_samples_batch(&self) -> bool {
        self.first_type() == Some(spec::EV_CPU_SAMPLES)
    }

    /// batch.isSyncBatch: a lone Frequency event before Go 1.25, an EvSync batch since.
    pub fn is_sync_batch(&self, ver: Version) -> bool {
        match self.first_type() {
            Some(spec::EV_FREQUENCY) => ver < Version::Go125,
            Some(spec::EV_SYNC) => ver >= Version::Go125,
            _ => false,
        }
    }

    /// batch.isEndOfGeneration.
    pub fn is_end_of_generation(&self) -> bool {
        self.first_type() == Some(spec::EV_END_OF_GENERATION)
    }
}

/// An error from [`read_batch`], with the batch's generation if its header got that far
/// (Go's readBatch returns it next to the error; the generation reader uses it to tell
/// whether a cut batch belonged to the next generation).
#[derive(Debug)]
pub struct ReadBatchError {
    /// The generation number from the batch header, if it was read.
    pub generation: Option<u64>,
    /// What went wrong.
    pub error: TraceError,
}

impl From<ReadBatchError> for TraceError {
    fn from(e: ReadBatchError) -> TraceError {
        e.error
    }
}

/// batch.go: readBatch, reads the next full batch from `r`.
///
/// Returns `Ok(None)` at a clean EOF before the batch's first byte. Once the first byte is
/// read, running out of input is [`TraceError::Truncated`]; a bad type byte, an overflowing
/// varint or a size above [`MAX_BATCH_SIZE`] is [`TraceError::Malformed`]. The data is read
/// through `take`, so memory grows only with bytes actually read.
pub fn read_batch<R: BufRead + ?Sized>(r: &mut R) -> Result<Option<Batch>, ReadBatchError> {
    let fail = |generation: Option<u64>, error: TraceError| ReadBatchError { generation, error };
    // Read batch header byte.
    let b = match read_byte(r) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(fail(None, TraceError::Io(e))),
    };
    if b == spec::EV_END_OF_GENERATION {
        return Ok(Some(Batch {
            m: NO_THREAD,
            generation: 0,
            time: 0,
            data: vec![b],
            exp: NO_EXPERIMENT,
        }));
    }
    if b != spec::EV_EVENT_BATCH && b != spec::EV_EXPERIMENTAL_BATCH {
        return Err(fail(
            None,
            TraceError::Malformed(format!("expected batch event, got event {b}")),
        ));
    }

    // Read the experiment if we have one.
    let mut exp = NO_EXPERIMENT;
    if b == spec::EV_EXPERIMENTAL_BATCH {
        match read_byte(r) {
            Ok(Some(e)) => exp = Experiment::from(e),
            Ok(None) => {
                return Err(fail(
                    None,
                    TraceError::Truncated("the trace ends inside a batch header".into()),
                ));
            }
            Err(e) => return Err(fail(None, TraceError::Io(e))),
        }
    }

    // Read the batch header: gen (generation), thread (M) ID, base timestamp for the batch,
    // and the size of the batch to follow.
    let mut generation = None;
    let mut header = [0u64; 4];
    for (i, (slot, what)) in header
        .iter_mut()
        .zip(["gen", "M ID", "timestamp", "size"])
        .enumerate()
    {
        *slot = read_uvarint(r).map_err(|e| {
            let error = match e {
                StreamVarintError::Io(e) => TraceError::Io(e),
                StreamVarintError::Varint(VarintError::Short) => TraceError::Truncated(format!(
                    "the trace ends inside a batch header (reading the batch {what})"
                )),
                StreamVarintError::Varint(VarintError::Overflow) => TraceError::Malformed(format!(
                    "error reading batch {what}: varint overflows a 64-bit integer"
                )),
            };
            fail(generation, error)
        })?;
        if i == 0 {
            generation = Some(*slot);
        }
    }
    let [g, m, ts, size] = header;
    if size > MAX_BATCH_SIZE {
        return Err(fail(
            generation,
            TraceError::Malformed(format!(
                "invalid batch size {size}, maximum is {MAX_BATCH_SIZE}"
            )),
        ));
    }

    // Copy out the batch for later processing, trusting `size` only as an upper bound.
    let mut data = Vec::new();
    if let Err(e) = Read::take(&mut *r, size).read_to_end(&mut data) {
        return Err(fail(generation, TraceError::Io(e)));
    }
    if data.len() as u64 != size {
        return Err(fail(
            generation,
            TraceError::Truncated(format!(
                "failed to read full batch: read {} but wanted {size}",
                data.len()
            )),
        ));
    }

    Ok(Some(Batch {
        m: m as ThreadID,
        generation: g,
        time: ts,
        data,
        exp,
    }))
}

/// A buffered reader that counts the bytes consumed, so the trace reader can say where a
/// truncated generation ends. Wrap the input in it and pass it to the generation readers.
#[derive(Debug)]
pub struct PosReader<R> {
    inner: BufReader<R>,
    pos: u64,
}

impl<R: Read> PosReader<R> {
    /// Wraps `r` in a buffer (64 KiB: one maximal batch).
    pub fn new(r: R) -> PosReader<R> {
        PosReader {
            inner: BufReader::with_capacity(MAX_BATCH_SIZE as usize, r),
            pos: 0,
        }
    }

    /// The number of bytes consumed so far (the offset in the file).
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }
}

impl<R: Read> Read for PosReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> BufRead for PosReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.pos += amt as u64;
    }
}

/// A test-only writer of the wire format, to build traces by hand.
#[cfg(test)]
pub(crate) mod test_writer {
    use super::super::spec::{self, EventType};
    use super::super::version::{Version, header_bytes};

    /// Appends `v` as a uvarint.
    pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Encodes one event: its type byte and its arguments.
    pub fn event(typ: EventType, args: &[u64]) -> Vec<u8> {
        let mut out = vec![typ];
        for &a in args {
            put_uvarint(&mut out, a);
        }
        out
    }

    /// A trace being written.
    #[derive(Default)]
    pub struct TraceWriter {
        pub out: Vec<u8>,
    }

    impl TraceWriter {
        /// A trace with the header of `v`.
        pub fn new(v: Version) -> TraceWriter {
            TraceWriter {
                out: header_bytes(v).to_vec(),
            }
        }

        /// An EvEventBatch with `data` as its contents.
        pub fn batch(&mut self, generation: u64, m: u64, time: u64, data: &[u8]) -> &mut Self {
            self.out.push(spec::EV_EVENT_BATCH);
            for v in [generation, m, time, data.len() as u64] {
                put_uvarint(&mut self.out, v);
            }
            self.out.extend_from_slice(data);
            self
        }

        /// An EvExperimentalBatch.
        pub fn exp_batch(
            &mut self,
            exp: u8,
            generation: u64,
            m: u64,
            time: u64,
            data: &[u8],
        ) -> &mut Self {
            self.out
                .extend_from_slice(&[spec::EV_EXPERIMENTAL_BATCH, exp]);
            for v in [generation, m, time, data.len() as u64] {
                put_uvarint(&mut self.out, v);
            }
            self.out.extend_from_slice(data);
            self
        }

        /// A strings batch from (id, string) pairs.
        pub fn strings(&mut self, generation: u64, strs: &[(u64, &str)]) -> &mut Self {
            let mut d = vec![spec::EV_STRINGS];
            for (id, s) in strs {
                d.extend(event(spec::EV_STRING, &[*id, s.len() as u64]));
                d.extend_from_slice(s.as_bytes());
            }
            self.batch(generation, u64::MAX, 0, &d) // the runtime uses M = -1 for these
        }

        /// A stacks batch from (id, [(pc, func, file, line)]) entries.
        pub fn stacks(&mut self, generation: u64, stacks: &[(u64, &[[u64; 4]])]) -> &mut Self {
            let mut d = vec![spec::EV_STACKS];
            for (id, frames) in stacks {
                d.extend(event(spec::EV_STACK, &[*id, frames.len() as u64]));
                for f in frames.iter() {
                    for &v in f {
                        put_uvarint(&mut d, v);
                    }
                }
            }
            self.batch(generation, u64::MAX, 0, &d)
        }

        /// The frequency/sync batch appropriate for `v` (with a clock snapshot from 1.25).
        pub fn sync(
            &mut self,
            v: Version,
            generation: u64,
            time: u64,
            ticks_per_sec: u64,
        ) -> &mut Self {
            let mut d = vec![];
            if v >= Version::Go125 {
                d.push(spec::EV_SYNC);
                d.extend(event(spec::EV_FREQUENCY, &[ticks_per_sec]));
                d.extend(event(spec::EV_CLOCK_SNAPSHOT, &[5, 777, 1_700_000_000, 42]));
            } else {
                d.extend(event(spec::EV_FREQUENCY, &[ticks_per_sec]));
            }
            self.batch(generation, u64::MAX, time, &d)
        }

        /// A Go 1.26 end-of-generation marker.
        pub fn end_of_generation(&mut self) -> &mut Self {
            self.out.push(spec::EV_END_OF_GENERATION);
            self
        }

        /// Appends raw bytes.
        pub fn raw(&mut self, b: &[u8]) -> &mut Self {
            self.out.extend_from_slice(b);
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_writer::*;
    use super::*;

    #[test]
    fn uvarint_matches_go() {
        let cases: &[u64] = &[0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX];
        for &v in cases {
            let mut b = vec![];
            put_uvarint(&mut b, v);
            assert_eq!(uvarint(&b), (v, b.len() as isize), "{v}");
            let mut r: &[u8] = &b;
            assert!(matches!(read_uvarint(&mut r), Ok(x) if x == v));
            // Every strict prefix is "too short".
            for k in 0..b.len() {
                assert_eq!(uvarint(&b[..k]), (0, 0));
                let mut r: &[u8] = &b[..k];
                assert!(matches!(
                    read_uvarint(&mut r),
                    Err(StreamVarintError::Varint(VarintError::Short))
                ));
            }
        }
        // 10th byte > 1: overflow.
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(uvarint(&over), (0, -10));
        // 11 bytes of continuation: overflow.
        assert_eq!(uvarint(&[0x80; 11]), (0, -11));
        let mut r: &[u8] = &over;
        assert!(matches!(
            read_uvarint(&mut r),
            Err(StreamVarintError::Varint(VarintError::Overflow))
        ));
        let mut d = DataReader::new(&over);
        assert_eq!(d.uvarint(), Err(VarintError::Overflow));
        assert!(
            d.uvarint_or("x")
                .unwrap_err()
                .to_string()
                .contains("overflow")
        );
    }

    #[test]
    fn reads_a_batch() {
        let mut w = TraceWriter::default();
        let data = event(spec::EV_PROC_START, &[3, 1, 7]);
        w.batch(4, 9, 1000, &data);
        w.exp_batch(1, 4, 9, 1001, b"xyz");
        w.end_of_generation();
        let mut r: &[u8] = &w.out;
        let b = read_batch(&mut r).unwrap().unwrap();
        assert_eq!(
            b,
            Batch {
                m: 9,
                generation: 4,
                time: 1000,
                data: data.clone(),
                exp: NO_EXPERIMENT
            }
        );
        assert!(!b.is_strings_batch() && !b.is_end_of_generation());
        let b = read_batch(&mut r).unwrap().unwrap();
        assert_eq!((b.exp, b.generation, b.m, b.time), (1, 4, 9, 1001));
        assert_eq!(b.data, b"xyz");
        let b = read_batch(&mut r).unwrap().unwrap();
        assert!(b.is_end_of_generation());
        assert_eq!((b.m, b.generation), (NO_THREAD, 0));
        assert!(read_batch(&mut r).unwrap().is_none());
    }

    #[test]
    fn batch_kinds() {
        let mk = |data: Vec<u8>, exp| Batch {
            m: 0,
            generation: 1,
            time: 0,
            data,
            exp,
        };
        assert!(mk(vec![spec::EV_STRINGS], 0).is_strings_batch());
        assert!(!mk(vec![spec::EV_STRINGS], 1).is_strings_batch());
        assert!(mk(vec![spec::EV_STACKS], 0).is_stacks_batch());
        assert!(mk(vec![spec::EV_CPU_SAMPLES], 0).is_cpu_samples_batch());
        assert!(!mk(vec![], 0).is_cpu_samples_batch());
        let freq = mk(vec![spec::EV_FREQUENCY], 0);
        assert!(freq.is_sync_batch(Version::Go122) && freq.is_sync_batch(Version::Go123));
        assert!(!freq.is_sync_batch(Version::Go125));
        let sync = mk(vec![spec::EV_SYNC], 0);
        assert!(!sync.is_sync_batch(Version::Go123));
        assert!(sync.is_sync_batch(Version::Go125) && sync.is_sync_batch(Version::Go126));
    }

    #[test]
    fn truncated_and_malformed_batches() {
        let mut w = TraceWriter::default();
        w.batch(3, 1, 1000, &[1, 2, 3, 4, 5]);
        let full = w.out.clone();
        // Every cut after the first byte is Truncated; the generation is known once it was read.
        for k in 1..full.len() {
            let mut r: &[u8] = &full[..k];
            let e = read_batch(&mut r).unwrap_err();
            assert!(e.error.is_truncated(), "cut at {k}: {:?}", e.error);
            assert_eq!(
                e.generation,
                if k >= 2 { Some(3) } else { None },
                "cut at {k}"
            );
        }
        // A bad batch type byte.
        let e = read_batch(&mut &[7u8, 0, 0][..]).unwrap_err();
        assert!(matches!(e.error, TraceError::Malformed(_)), "{:?}", e.error);
        // An overflowing varint.
        let mut bad = vec![spec::EV_EVENT_BATCH];
        bad.extend_from_slice(&[0xff; 11]);
        let e = read_batch(&mut &bad[..]).unwrap_err();
        assert!(matches!(e.error, TraceError::Malformed(_)), "{:?}", e.error);
        // A size above MaxBatchSize is refused before anything is allocated.
        let mut big = vec![spec::EV_EVENT_BATCH, 1, 1, 1];
        put_uvarint(&mut big, u64::MAX);
        let e = read_batch(&mut &big[..]).unwrap_err();
        assert!(
            e.error.to_string().contains("invalid batch size"),
            "{:?}",
            e.error
        );
        assert_eq!(e.generation, Some(1));
    }

    #[test]
    fn pos_reader_counts_consumed_bytes() {
        let mut w = TraceWriter::new(Version::Go126);
        w.batch(1, 1, 1, &[9; 10]).end_of_generation();
        let total = w.out.len() as u64;
        let mut r = PosReader::new(w.out.as_slice());
        crate::gotrace::version::read_header(&mut r).unwrap();
        assert_eq!(r.pos(), 16);
        read_batch(&mut r).unwrap().unwrap();
        read_batch(&mut r).unwrap().unwrap();
        assert_eq!(r.pos(), total);
        assert!(read_batch(&mut r).unwrap().is_none());
    }
}
