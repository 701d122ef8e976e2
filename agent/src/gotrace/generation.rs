//! Reading one generation at a time, ported from Go 1.27's `internal/trace/generation.go`.
//!
//! A trace is a sequence of generations; each is self-contained (its own string table, stack
//! table, CPU samples and clock data) and is buffered whole before its events are ordered.
//! Since Go 1.26 each generation ends with an EvEndOfGeneration batch ([`read_generation`]);
//! before, a generation ended where the first batch of the next one began, which therefore
//! "spills" over to the next call ([`read_generation_with_spill`]).
//!
//! Truncation: the input ending inside a generation is [`TraceError::Truncated`] for that
//! generation, so the reader can stop after the previous, complete, generations; the input
//! ending exactly between generations is a clean end (`Ok(None)`). Before Go 1.26 there is no
//! end marker, so a final generation cut on a batch boundary is recognized by what it lacks:
//! if it fails Go's checks (frequency, clock snapshot, stack strings, the string and stack IDs
//! of its events, which the runtime dumps only when a generation ends) it is reported as
//! truncated rather than malformed.

use std::io::BufRead;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::base::{
    CpuSample, DataTable, EvTable, ExperimentalBatch, Frequency, GoID, NO_GOROUTINE, ProcID,
    RawStack, StackFrame, SyncData, ThreadID, Time, Timestamp, TraceError, WallTime,
};
use super::batch::{Batch, DataReader, ReadBatchError, read_batch};
use super::cursor::BatchCursor;
use super::gosort::sort_func;
use super::spec::{self, MAX_EVENT_TRAILER_DATA_SIZE, MAX_FRAMES_PER_STACK, NO_EXPERIMENT};
use super::version::Version;

/// generation.go: generation, all the trace data of one generation. Pure data: no parse state,
/// no cursor.
#[derive(Debug)]
pub struct Generation {
    /// The generation number.
    pub generation: u64,
    /// Each M's event batches, in the order they appear in the trace.
    pub batches: FxHashMap<ThreadID, Vec<Batch>>,
    /// The Ms of `batches`, in order of first appearance (Go iterates this, not the map).
    pub batch_ms: Vec<ThreadID>,
    /// The CPU samples, times converted to nanoseconds and sorted.
    pub cpu_samples: Vec<CpuSample>,
    /// The smallest batch timestamp, in ticks.
    pub min_ts: Timestamp,
    /// The embedded evTable: strings, stacks, PCs, sync data, experimental batches. Shared
    /// with the events of this generation.
    pub ev_table: Arc<EvTable>,
}

impl Generation {
    /// The generation's frequency (nanoseconds per tick), `g.freq` in Go.
    pub fn freq(&self) -> Frequency {
        self.ev_table.sync.freq
    }
}

/// generation.go: spilledBatch, the first batch of the next generation, read while looking
/// for the end of the previous one (traces before Go 1.26 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpilledBatch {
    /// Its generation.
    pub generation: u64,
    /// The batch.
    pub batch: Batch,
}

/// The generation being read; becomes a [`Generation`] once complete.
#[derive(Default)]
struct PartialGeneration {
    generation: u64,
    batches: FxHashMap<ThreadID, Vec<Batch>>,
    batch_ms: Vec<ThreadID>,
    cpu_samples: Vec<CpuSample>,
    min_ts: Timestamp,
    table: EvTable,
    /// Batches read (a generation with none is not a generation).
    n_batches: usize,
}

/// What [`read_generation_with_spill`] returns: Go's `(*generation, *spilledBatch, error)`
/// when the generation is non-nil. The error, if any, was met while reading the first batch
/// of the next generation: the generation is valid and must be processed before the error
/// is reported.
pub type GenerationWithSpill = (Generation, Option<SpilledBatch>, Option<TraceError>);

/// generation.go: readGeneration, for Go 1.26+ traces: reads batches up to and including the
/// next EvEndOfGeneration.
///
/// Returns `Ok(None)` when the input ends cleanly before the generation's first batch (the end
/// of the trace). The input ending anywhere after that, before the end-of-generation marker,
/// is [`TraceError::Truncated`].
pub fn read_generation<R: BufRead + ?Sized>(
    r: &mut R,
    ver: Version,
) -> Result<Option<Generation>, TraceError> {
    if ver < Version::Go126 {
        return Err(TraceError::malformed(
            "internal error: read_generation called for <1.26 trace",
        ));
    }
    let mut g = PartialGeneration::default();

    // Read batches one at a time until we hit the end of the generation.
    loop {
        let b = match read_batch(r) {
            Ok(Some(b)) => b,
            Ok(None) => {
                // Go only calls this an incomplete generation when it holds event batches;
                // we also count string/stack/sync batches, which a cut can equally leave alone.
                if g.n_batches != 0 {
                    return Err(TraceError::Truncated(format!(
                        "incomplete generation {} found (no end-of-generation marker); \
                         trace likely truncated",
                        g.generation
                    )));
                }
                return Ok(None); // All done.
            }
            Err(e) => return Err(in_generation(e, g.generation)),
        };
        g.n_batches += 1;
        if g.generation == 0 {
            // Initialize generation.
            g.generation = b.generation;
        }
        if b.is_end_of_generation() {
            break;
        }
        if b.generation == 0 {
            // 0 is a sentinel used by the runtime, so we'll never see it.
            return Err(TraceError::Malformed(format!(
                "invalid generation number {}",
                b.generation
            )));
        }
        if b.generation != g.generation {
            return Err(TraceError::malformed(
                "broken trace: missing end-of-generation event, or generations are interleaved",
            ));
        }
        if g.min_ts == 0 || b.time < g.min_ts {
            g.min_ts = b.time;
        }
        process_batch(&mut g, b, ver)?;
    }

    // Check some invariants.
    if g.table.sync.freq.is_zero() {
        return Err(TraceError::malformed("no frequency event found"));
    }
    if !g.table.sync.has_clock_snapshot {
        return Err(TraceError::malformed("no clock snapshot event found"));
    }
    finish(g).map(Some)
}

/// generation.go: readGenerationWithSpill, for traces before Go 1.26: reads batches until one
/// of the next generation appears, which is returned as the spilled batch; `spill` is the
/// batch spilled by the previous call.
///
/// Returns `Ok(None)` only for a trace without any batch (Go reports "no frequency event
/// found" there). The input ending inside a batch of this generation — or inside a batch
/// header before its generation number, where it cannot be told apart — is
/// [`TraceError::Truncated`]; ending inside the first batch of the next generation is returned
/// as the third element, after this complete generation. A generation ended by the end of the
/// input that fails its checks is also [`TraceError::Truncated`] (see the module docs).
pub fn read_generation_with_spill<R: BufRead + ?Sized>(
    r: &mut R,
    spill: Option<SpilledBatch>,
    ver: Version,
) -> Result<Option<GenerationWithSpill>, TraceError> {
    if ver >= Version::Go126 {
        return Err(TraceError::malformed(
            "internal error: read_generation_with_spill called for Go 1.26+ trace",
        ));
    }
    let mut g = PartialGeneration::default();
    // Process the spilled batch, which contains real data.
    if let Some(spill) = spill {
        g.generation = spill.generation;
        g.min_ts = spill.batch.time;
        g.n_batches += 1;
        process_batch(&mut g, spill.batch, ver)?;
    }
    // Read batches one at a time until we hit the next generation.
    let mut spill = None;
    let mut spill_err = None;
    let mut cut_in_header = false;
    loop {
        let b = match read_batch(r) {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                if g.generation == 0 {
                    return Err(in_generation(e, 0));
                }
                // Go forges ahead with what it has, assuming the error was in the first batch
                // of the next generation. A cut inside a batch of this generation leaves it
                // incomplete. A cut before the batch's generation number tells no more than a
                // cut on the batch boundary: the generation is checked as a final one would be
                // (below), and the cut is reported after it.
                if e.error.is_truncated() {
                    match e.generation {
                        Some(n) if n == g.generation.wrapping_add(1) => {}
                        Some(_) => return Err(in_generation(e, g.generation)),
                        None => cut_in_header = true,
                    }
                }
                spill_err = Some(e.error);
                break;
            }
        };
        if b.generation == 0 {
            // 0 is a sentinel used by the runtime, so we'll never see it.
            return Err(TraceError::Malformed(format!(
                "invalid generation number {}",
                b.generation
            )));
        }
        if g.generation == 0 {
            // Initialize generation.
            g.generation = b.generation;
        }
        if b.generation == g.generation.wrapping_add(1) {
            // TODO (from Go): increment the generation with wraparound the same way the
            // runtime does.
            spill = Some(SpilledBatch {
                generation: b.generation,
                batch: b,
            });
            break;
        }
        if b.generation != g.generation {
            // Fail as fast as possible: if the batches are mixed across generations it's
            // likely we won't be able to parse this generation correctly at all.
            return Err(TraceError::malformed("generations out of order"));
        }
        if g.min_ts == 0 || b.time < g.min_ts {
            g.min_ts = b.time;
        }
        g.n_batches += 1;
        process_batch(&mut g, b, ver)?;
    }
    if g.n_batches == 0 {
        return Ok(None);
    }
    // Without an end-of-generation marker, a trace cut on a batch boundary (the usual cut: the
    // runtime writes whole batches) looks like a complete final generation. When such a
    // generation then fails the checks below, the cut is by far the likeliest cause, so it is
    // reported as truncation rather than corruption (Go reports the check's error).
    let generation = g.generation;
    let at_eof = cut_in_header || (spill.is_none() && spill_err.is_none());
    let check = |e: TraceError| match e {
        TraceError::Malformed(msg) if at_eof => TraceError::Truncated(format!(
            "generation {generation} is incomplete at the end of the input ({msg}); \
             trace likely truncated"
        )),
        e => e,
    };

    // Check some invariants.
    if g.table.sync.freq.is_zero() {
        return Err(check(TraceError::malformed("no frequency event found")));
    }
    if ver >= Version::Go125 && !g.table.sync.has_clock_snapshot {
        return Err(check(TraceError::malformed(
            "no clock snapshot event found",
        )));
    }
    if at_eof && g.batches.is_empty() {
        // Every complete generation has event batches (at least the Ps' statuses, written
        // when it starts); Go 1.25 writes the sync batch first, so a cut right after it
        // leaves a generation of tables only.
        return Err(check(TraceError::malformed("no event batches")));
    }
    if at_eof {
        // The runtime writes a generation's stack and string tables after all its event
        // batches, so a generation cut before them has events whose IDs don't resolve: the
        // check Go's reader makes on every event (event.go: validateTableIDs) finds the cut
        // here, before any event of the generation is yielded.
        validate_table_ids(&g).map_err(check)?;
    }
    let g = finish(g).map_err(check)?;
    Ok(Some((g, spill, spill_err)))
}

/// event.go: validateTableIDs, applied to every event of the generation's event batches:
/// each string and stack ID argument must be in the tables. Events that do not decode are
/// left for the reader to report.
fn validate_table_ids(g: &PartialGeneration) -> Result<(), TraceError> {
    for m in &g.batch_ms {
        let Some(batches) = g.batches.get(m) else {
            continue;
        };
        let mut c = BatchCursor::new(*m);
        while let Ok(true) = c.next_event(batches, g.table.sync.freq) {
            let spec = spec::spec_or_empty(c.ev.typ);
            let arg = |i: usize| {
                i.checked_sub(1)
                    .and_then(|i| c.ev.args.get(i))
                    .copied()
                    .unwrap_or(0)
            };
            for &i in spec.stack_ids {
                if g.table.stacks.get(arg(i)).is_none() {
                    return Err(TraceError::Malformed(format!(
                        "found invalid stack ID {} for event {}",
                        arg(i),
                        spec.name
                    )));
                }
            }
            for &i in spec.string_ids {
                if g.table.strings.get(arg(i)).is_none() {
                    return Err(TraceError::Malformed(format!(
                        "found invalid string ID {} for event {}",
                        arg(i),
                        spec.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Names the generation in a truncation error (other errors pass through).
fn in_generation(e: ReadBatchError, generation: u64) -> TraceError {
    match e.error {
        TraceError::Truncated(msg) => {
            let generation = if generation != 0 {
                Some(generation)
            } else {
                e.generation
            };
            TraceError::Truncated(match generation {
                Some(generation) => format!("generation {generation} is incomplete: {msg}"),
                None => format!("the next generation is incomplete: {msg}"),
            })
        }
        other => other,
    }
}

/// The common end of both readers: compact and validate the tables, fix up CPU samples.
fn finish(mut g: PartialGeneration) -> Result<Generation, TraceError> {
    // N.B. Trust that the batch order is correct (Go: timestamps could be plain wrong; the
    // source of truth is the order in the trace and the sequence numbers on some events).

    // Compactify stacks and strings for better lookup performance later.
    g.table.stacks.compactify();
    g.table.strings.compactify();

    // Validate stacks.
    validate_stack_strings(&g.table.stacks, &g.table.strings, &g.table.pcs)?;

    // Now that we have the frequency, fix up CPU samples.
    fix_up_cpu_samples(&mut g.cpu_samples, g.table.sync.freq);
    Ok(Generation {
        generation: g.generation,
        batches: g.batches,
        batch_ms: g.batch_ms,
        cpu_samples: g.cpu_samples,
        min_ts: g.min_ts,
        ev_table: Arc::new(g.table),
    })
}

/// generation.go: processBatch, adds the batch to the generation.
fn process_batch(g: &mut PartialGeneration, b: Batch, ver: Version) -> Result<(), TraceError> {
    if b.is_strings_batch() {
        add_strings(&mut g.table.strings, &b)
    } else if b.is_stacks_batch() {
        add_stacks(&mut g.table.stacks, &mut g.table.pcs, &b)
    } else if b.is_cpu_samples_batch() {
        add_cpu_samples(&mut g.cpu_samples, &b)
    } else if b.is_sync_batch(ver) {
        set_sync_batch(&mut g.table.sync, &b, ver)
    } else if b.exp != NO_EXPERIMENT {
        add_experimental_batch(&mut g.table, b)
    } else if b.is_end_of_generation() {
        Err(TraceError::malformed(
            "internal error: unexpectedly processing EndOfGeneration; broken trace?",
        ))
    } else {
        if !g.batches.contains_key(&b.m) {
            g.batch_ms.push(b.m);
        }
        g.batches.entry(b.m).or_default().push(b);
        Ok(())
    }
}

/// generation.go: validateStackStrings, checks that every frame of every stack is known and
/// names functions and files that are in the string table.
fn validate_stack_strings(
    stacks: &DataTable<RawStack>,
    strings: &DataTable<String>,
    frames: &FxHashMap<u64, StackFrame>,
) -> Result<(), TraceError> {
    let mut err = None;
    stacks.for_each(|id, stk| {
        for pc in &stk.pcs {
            let Some(frame) = frames.get(pc) else {
                err = Some(format!("found unknown pc {pc:x} for stack {id}"));
                return false;
            };
            if strings.get(frame.func).is_none() {
                err = Some(format!(
                    "found invalid func string ID {} for stack {id}",
                    frame.func
                ));
                return false;
            }
            if strings.get(frame.file).is_none() {
                err = Some(format!(
                    "found invalid file string ID {} for stack {id}",
                    frame.file
                ));
                return false;
            }
        }
        true
    });
    err.map_or(Ok(()), |e| Err(TraceError::Malformed(e)))
}

/// Reads the leading header byte of a structural batch.
fn expect_header(r: &mut DataReader<'_>, typ: u8, what: &str) -> Result<(), TraceError> {
    match r.read_byte() {
        Some(h) if h == typ => Ok(()),
        _ => Err(TraceError::Malformed(format!(
            "missing {what} batch header"
        ))),
    }
}

/// The layout addStrings, addStacks and addCPUSamples share: a batch of their kind only
/// (else Go's internal error `wrong_kind`), a `header` byte, then records, each an `item`
/// byte and its fields. The bytes come with the names Go's errors give them.
struct Records {
    wrong_kind: &'static str,
    header: (u8, &'static str),
    item: (u8, &'static str),
}

/// Checks the batch and its header as Go's add functions do, and has `read` read the fields
/// of each record.
fn for_each_record(
    b: &Batch,
    is_kind: bool,
    layout: Records,
    mut read: impl FnMut(&mut DataReader<'_>) -> Result<(), TraceError>,
) -> Result<(), TraceError> {
    if !is_kind {
        return Err(TraceError::malformed(layout.wrong_kind));
    }
    let mut r = DataReader::new(&b.data);
    let (header, header_name) = layout.header;
    expect_header(&mut r, header, header_name)?; // Consume the header byte.

    let (item, item_name) = layout.item;
    while !r.is_empty() {
        // Read the header.
        let ev = r.read_byte().unwrap_or(0);
        if ev != item {
            return Err(TraceError::Malformed(format!(
                "expected {item_name} event, got {ev}"
            )));
        }
        read(&mut r)?;
    }
    Ok(())
}

/// generation.go: addStrings, adds the strings of an EvStrings batch to the string table.
fn add_strings(table: &mut DataTable<String>, b: &Batch) -> Result<(), TraceError> {
    let layout = Records {
        wrong_kind: "internal error: addStrings called on non-string batch",
        header: (spec::EV_STRINGS, "strings"),
        item: (spec::EV_STRING, "string"),
    };
    for_each_record(b, b.is_strings_batch(), layout, |r| {
        // Read the string's ID.
        let id = r.uvarint_or("reading a string's ID")?;

        // Read the string's length.
        let len = r.uvarint_or("reading a string's length")?;
        if len > MAX_EVENT_TRAILER_DATA_SIZE {
            return Err(TraceError::Malformed(format!(
                "invalid string size {len}, maximum is {MAX_EVENT_TRAILER_DATA_SIZE}"
            )));
        }

        // Copy out the string.
        let Some(bytes) = r.take(len) else {
            return Err(TraceError::Malformed(format!(
                "failed to read full string: read {} but wanted {len}",
                r.len()
            )));
        };
        // Go strings hold arbitrary bytes; invalid UTF-8 is replaced here.
        let s = String::from_utf8_lossy(bytes).into_owned();

        // Add the string to the map.
        table.insert(id, s)
    })
}

/// generation.go: addStacks, adds the stacks of an EvStacks batch to the stack table and their
/// frames to the PC table.
fn add_stacks(
    table: &mut DataTable<RawStack>,
    pcs: &mut FxHashMap<u64, StackFrame>,
    b: &Batch,
) -> Result<(), TraceError> {
    let layout = Records {
        wrong_kind: "internal error: addStacks called on non-stacks batch",
        header: (spec::EV_STACKS, "stacks"),
        item: (spec::EV_STACK, "stack"),
    };
    for_each_record(b, b.is_stacks_batch(), layout, |r| {
        // Read the stack's ID.
        let id = r.uvarint_or("reading a stack's ID")?;

        // Read how many frames are in each stack.
        let n_frames = r.uvarint_or("reading a stack's frame count")?;
        if n_frames > MAX_FRAMES_PER_STACK {
            return Err(TraceError::Malformed(format!(
                "invalid stack size {n_frames}, maximum is {MAX_FRAMES_PER_STACK}"
            )));
        }

        // Each frame consists of 4 fields: pc, funcID (string), fileID (string), line.
        let mut frames = Vec::with_capacity(n_frames as usize);
        for i in 1..=n_frames {
            let mut field =
                |what: &str| r.uvarint_or(&format!("reading frame {i}'s {what} for stack {id}"));
            let pc = field("PC")?;
            let func = field("funcID")?;
            let file = field("fileID")?;
            let line = field("line")?;
            frames.push(pc);
            pcs.entry(pc).or_insert(StackFrame {
                pc,
                func,
                file,
                line,
            });
        }

        // Add the stack to the map.
        table.insert(id, RawStack { pcs: frames })
    })
}

/// generation.go: addCPUSamples, appends the samples of an EvCPUSamples batch. Their times
/// stay in ticks until [`fix_up_cpu_samples`].
fn add_cpu_samples(samples: &mut Vec<CpuSample>, b: &Batch) -> Result<(), TraceError> {
    let layout = Records {
        wrong_kind: "internal error: addCPUSamples called on non-CPU-sample batch",
        header: (spec::EV_CPU_SAMPLES, "CPU samples"),
        item: (spec::EV_CPU_SAMPLE, "CPU sample"),
    };
    for_each_record(b, b.is_cpu_samples_batch(), layout, |r| {
        let ts = r.uvarint_or("reading a CPU sample's timestamp")?;
        let m = r.uvarint_or("reading a CPU sample's M")?;
        let p = r.uvarint_or("reading a CPU sample's P")?;
        let g = r.uvarint_or("reading a CPU sample's G")?;
        let s = r.uvarint_or("reading a CPU sample's stack")?;
        samples.push(CpuSample {
            m: m as ThreadID,
            p: p as ProcID,
            g: if g == 0 { NO_GOROUTINE } else { g as GoID },
            time: ts as Time, // N.B. this is really a "timestamp", not a Time.
            stack: s,
        });
        Ok(())
    })
}

/// generation.go: setSyncBatch, reads the frequency (and, from Go 1.25, the clock snapshot)
/// out of a sync batch.
fn set_sync_batch(s: &mut SyncData, b: &Batch, ver: Version) -> Result<(), TraceError> {
    if !b.is_sync_batch(ver) {
        return Err(TraceError::malformed(
            "internal error: setSyncBatch called on non-sync batch",
        ));
    }
    let mut r = DataReader::new(&b.data);
    if ver >= Version::Go125 {
        expect_header(&mut r, spec::EV_SYNC, "sync")?; // Consume the EvSync byte.
    }

    let mut last_ts = b.time;
    while !r.is_empty() {
        // Read the header.
        let ev = r.read_byte().unwrap_or(0);
        if ev == spec::EV_FREQUENCY {
            if !s.freq.is_zero() {
                return Err(TraceError::malformed("found multiple frequency events"));
            }
            // Read the frequency. It'll come out as timestamp units per second.
            let f = r.uvarint_or("reading the frequency")?;
            // Convert to nanoseconds per timestamp unit.
            s.freq = Frequency::from_ticks_per_second(f);
        } else if ev == spec::EV_CLOCK_SNAPSHOT && ver >= Version::Go125 {
            if s.has_clock_snapshot {
                return Err(TraceError::malformed(
                    "found multiple clock snapshot events",
                ));
            }
            s.has_clock_snapshot = true;
            // Read the EvClockSnapshot arguments.
            let tdiff = r.uvarint_or("reading the clock snapshot's timestamp")?;
            last_ts = last_ts.wrapping_add(tdiff);
            s.snap_time = last_ts;
            s.snap_mono = r.uvarint_or("reading the clock snapshot's mono clock")?;
            let sec = r.uvarint_or("reading the clock snapshot's seconds")?;
            let nsec = r.uvarint_or("reading the clock snapshot's nanoseconds")?;
            s.snap_wall = WallTime::from_unix(sec, nsec);
        } else {
            return Err(TraceError::Malformed(format!(
                "expected frequency or clock snapshot event, got {ev}"
            )));
        }
    }
    Ok(())
}

/// generation.go: addExperimentalBatch, files an experimental batch under its experiment.
fn add_experimental_batch(table: &mut EvTable, b: Batch) -> Result<(), TraceError> {
    if b.exp == NO_EXPERIMENT {
        return Err(TraceError::malformed(
            "internal error: addExperimentalBatch called on non-experimental batch",
        ));
    }
    table
        .exp_batches
        .entry(b.exp)
        .or_default()
        .push(ExperimentalBatch {
            thread: b.m,
            data: b.data,
        });
    Ok(())
}

/// generation.go: fixUpCPUSamples, converts the samples' ticks to nanoseconds and sorts them.
fn fix_up_cpu_samples(samples: &mut [CpuSample], freq: Frequency) {
    // Fix up the CPU sample timestamps.
    for s in samples.iter_mut() {
        s.time = freq.mul(s.time as Timestamp);
    }
    // Sort the CPU samples, with Go's (unstable) sort so that samples of the same nanosecond
    // come out in Go's order.
    sort_func(samples, |a, b| a.time.cmp(&b.time));
}

#[cfg(test)]
mod tests;
