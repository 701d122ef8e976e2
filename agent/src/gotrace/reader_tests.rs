//! Tests of the whole reader on synthetic traces of every wire version: the exact text Go
//! prints for them, truncation at every byte, and no panics on mutated input.

use proptest::prelude::*;

use super::batch::test_writer::{TraceWriter, event};
use super::reader::{Reader, dump};
use super::spec;
use super::version::Version;

const ALL: [Version; 4] = [
    Version::Go122,
    Version::Go123,
    Version::Go125,
    Version::Go126,
];
const NONE: u64 = u64::MAX;

/// A two-generation trace: goroutine creation, blocking, unblocking, a syscall, a task with a
/// log and its end in the next generation, a CPU sample, and the per-generation statuses.
fn synth(v: Version) -> Vec<u8> {
    let mut w = TraceWriter::new(v);
    // Generation 1.
    let frames1: &[[u64; 4]] = &[[0x401000, 2, 3, 10]];
    let frames2: &[[u64; 4]] = &[[0x402000, 4, 3, 20], [0x401010, 2, 3, 11]];
    w.strings(
        1,
        &[
            (1, "chan receive"),
            (2, "main.main"),
            (3, "/src/main.go"),
            (4, "main.worker"),
        ],
    );
    w.strings(1, &[(5, "work"), (6, "phase"), (7, "start \"q\"\tü\u{1}")]);
    w.stacks(1, &[(1, frames1), (2, frames2)]);
    w.sync(v, 1, 100, 1_000_000_000);
    let m1: Vec<u8> = [
        event(spec::EV_PROC_STATUS, &[1, 0, 1]),
        event(spec::EV_GO_STATUS, &[1, 1, 1, 2]),
        event(spec::EV_GO_CREATE, &[5, 2, 2, 1]),
        event(spec::EV_USER_TASK_BEGIN, &[5, 1, 0, 5, 1]),
        event(spec::EV_USER_LOG, &[5, 1, 6, 7, 1]),
        event(spec::EV_GO_BLOCK, &[5, 1, 1]),
        event(spec::EV_PROC_STOP, &[5]),
    ]
    .concat();
    w.batch(1, 1, 100, &m1);
    let m2: Vec<u8> = [
        event(spec::EV_PROC_STATUS, &[1, 1, 2]),
        event(spec::EV_PROC_START, &[20, 1, 1]),
        event(spec::EV_GO_START, &[1, 2, 1]),
        event(spec::EV_GO_UNBLOCK, &[5, 1, 1, 2]),
        event(spec::EV_GO_SYSCALL_BEGIN, &[5, 2, 2]),
        event(spec::EV_GO_SYSCALL_END, &[5]),
        event(spec::EV_GO_DESTROY, &[5]),
        event(spec::EV_PROC_STOP, &[5]),
    ]
    .concat();
    w.batch(1, 2, 110, &m2);
    let mut samples = vec![spec::EV_CPU_SAMPLES];
    samples.extend(event(spec::EV_CPU_SAMPLE, &[133, 2, 1, 2, 2]));
    w.batch(1, NONE, 0, &samples);
    if v >= Version::Go126 {
        w.end_of_generation();
    }
    // Generation 2: new tables.
    w.strings(2, &[(1, "main.main"), (2, "/src/main.go"), (3, "yield")]);
    w.stacks(2, &[(7, &[[0x401020, 1, 2, 12]])]);
    w.sync(v, 2, 300, 1_000_000_000);
    let m1: Vec<u8> = [
        event(spec::EV_PROC_STATUS, &[1, 0, 2]),
        event(spec::EV_GO_STATUS, &[1, 1, NONE, 1]),
        event(spec::EV_PROC_START, &[5, 0, 1]),
        event(spec::EV_GO_START, &[5, 1, 1]),
        event(spec::EV_USER_TASK_END, &[5, 1, 7]),
        event(spec::EV_GO_STOP, &[5, 3, 7]),
        event(spec::EV_PROC_STOP, &[5]),
    ]
    .concat();
    w.batch(2, 1, 300, &m1);
    w.batch(2, 2, 305, &event(spec::EV_PROC_STATUS, &[1, 1, 2]));
    if v >= Version::Go126 {
        w.end_of_generation();
    }
    w.out.clone()
}

fn dump_text(bytes: &[u8]) -> (String, Option<String>) {
    let mut out = Vec::new();
    let stats = dump(bytes, &mut out).unwrap();
    (String::from_utf8(out).unwrap(), stats.warning)
}

/// Writes the synthetic traces to `$GOTRACE_SYNTH_DIR` (to get Go's output for them with
/// `go tool trace -d=parsed`).
#[test]
#[ignore = "writes files for the Go oracle"]
fn write_synthetic_traces() {
    let dir = std::env::var("GOTRACE_SYNTH_DIR").unwrap();
    for v in ALL {
        std::fs::write(format!("{dir}/synth-{}.bin", v.minor()), synth(v)).unwrap();
    }
}

/// What `go tool trace -d=parsed` (Go 1.27.3) prints for `synth(Go122)`; Go123 is the same.
const GO_OUTPUT_122: &str = include_str!("testdata/reader-synth-22.parsed");
/// For Go125; Go126 is the same: the Sync events have clock snapshots.
const GO_OUTPUT_125: &str = include_str!("testdata/reader-synth-25.parsed");

#[test]
fn synthetic_traces_print_as_go_does() {
    for v in ALL {
        let (text, warning) = dump_text(&synth(v));
        let want = if v >= Version::Go125 {
            GO_OUTPUT_125
        } else {
            GO_OUTPUT_122
        };
        assert_eq!(text, want, "version {v}");
        assert_eq!(warning, None);
    }
}

#[test]
fn reader_api() {
    let bytes = synth(Version::Go125);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.version(), Version::Go125);
    let mut n = 0;
    let mut last = i64::MIN;
    while let Some(ev) = r.read_event().unwrap() {
        assert!(ev.time() > last, "strictly increasing times");
        last = ev.time();
        n += 1;
    }
    assert_eq!(
        n,
        GO_OUTPUT_125
            .lines()
            .filter(|l| l.starts_with("M="))
            .count()
    );
    assert_eq!(
        r.read_event().unwrap().map(|e| e.to_string()),
        None,
        "stays at the end"
    );
    assert_eq!(r.generations(), 2);
    assert_eq!(r.bytes_read(), bytes.len() as u64);
    assert!(r.warning().is_none());
}

/// The lines of the event texts of a dump (stack lines belong to their event).
fn events_of(text: &str) -> Vec<String> {
    let mut evs: Vec<String> = vec![];
    for line in text.lines() {
        match evs.last_mut() {
            Some(last) if !line.starts_with("M=") => {
                last.push('\n');
                last.push_str(line);
            }
            _ => evs.push(line.to_string()),
        }
    }
    evs
}

/// The offsets where batches end (and the header), from the framing code.
fn batch_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut r = bytes.get(16..).unwrap();
    let mut out = vec![16];
    while let Ok(Some(_)) = super::batch::read_batch(&mut r) {
        out.push(bytes.len() - r.len());
    }
    out
}

/// Cut anywhere after the header: no panic, and the events of the complete generations come
/// out as in the whole trace, then a final Sync, and a warning names the incomplete
/// generation. (Before Go 1.26 a cut between two batches, or right after the next batch's
/// type byte, looks like the end of the trace, so the partial generation is read as a whole,
/// as Go does: only "no panic" holds there.)
#[test]
fn truncation_at_every_byte() {
    for v in ALL {
        let bytes = synth(v);
        let full = events_of(&dump_text(&bytes).0);
        let gen2_sync = full
            .iter()
            .rposition(|e| e.contains(" Sync ") && e.contains("N=2"));
        let gen2_sync = gen2_sync.unwrap();
        let boundaries = batch_boundaries(&bytes);
        for cut in 16..bytes.len() {
            // A cut one byte into a batch (its type byte only) tells no more than one on the
            // boundary before it.
            if v < Version::Go126 && (boundaries.contains(&cut) || boundaries.contains(&(cut - 1)))
            {
                let _ = dump(&bytes[..cut], &mut std::io::sink());
                continue;
            }
            let (text, warning) = dump_text(&bytes[..cut]);
            let got = events_of(&text);
            let (last, body) = got.split_last().unwrap();
            assert!(
                last.starts_with("M=-1 P=-1 G=-1 Sync Time="),
                "{v} cut {cut}: {last}"
            );
            assert!(
                full.starts_with(body),
                "{v} cut {cut}: not a prefix:\n{text}"
            );
            // Only whole generations: nothing, or up to the Sync of generation 2.
            assert!(
                body.is_empty() || body.len() == gen2_sync,
                "{v} cut {cut}:\n{text}"
            );
            if boundaries.contains(&cut) && bytes[cut - 1] == spec::EV_END_OF_GENERATION {
                // Right after an end-of-generation marker: a trace that ends there is whole.
                assert_eq!((body.len(), warning), (gen2_sync, None), "{v} cut {cut}");
                continue;
            }
            let w = warning.unwrap_or_else(|| panic!("{v} cut {cut}: no warning"));
            assert!(w.starts_with("trace truncated: "), "{w}");
            assert!(w.contains(&format!("the trace ends at byte {cut}")), "{w}");
        }
    }
}

#[test]
fn truncation_warning_names_the_generations() {
    let bytes = synth(Version::Go126);
    // Without its end-of-generation marker.
    let (_, w) = dump_text(&bytes[..bytes.len() - 1]);
    assert_eq!(
        w.unwrap(),
        format!(
            "trace truncated: incomplete generation 2 found (no end-of-generation marker); \
             trace likely truncated (the trace ends at byte {}); events up to generation 1 \
             were read",
            bytes.len() - 1
        )
    );
}

#[test]
fn bad_headers_are_errors() {
    assert!(Reader::new(&b"go 1.21 trace\0\0\0"[..]).is_err());
    assert!(Reader::new(&b"not a trace at all"[..]).is_err());
    assert!(Reader::new(&b""[..]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Corrupting a valid trace (bytes overwritten, inserted or removed) never panics: the
    /// reader returns events, then the end or an error.
    #[test]
    fn mutated_traces_never_panic(
        v in 0usize..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = synth(ALL[v]);
        for (pos, b, op) in edits {
            let pos = 16 + pos % (bytes.len() - 16);
            match op {
                0 => bytes[pos] = b,
                1 => bytes.insert(pos, b),
                _ => {
                    bytes.remove(pos);
                }
            }
        }
        let _ = dump(&bytes[..], &mut std::io::sink());
        // Every accessor on every event read, too.
        if let Ok(mut r) = Reader::new(&bytes[..]) {
            while let Ok(Some(ev)) = r.read_event() {
                let _ = (ev.metric(), ev.label(), ev.range(), ev.range_attributes(), ev.task());
                let _ = (ev.region(), ev.log(), ev.state_transition(), ev.sync());
                let _ = (ev.experimental(), ev.stack().frames().count());
            }
        }
    }

    /// Random bytes after a valid header never panic.
    #[test]
    fn random_bodies_never_panic(v in 0usize..4, body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = synth(ALL[v])[..16].to_vec();
        bytes.extend(body);
        let _ = dump(&bytes[..], &mut std::io::sink());
    }
}

/// Mutates a real trace (`$GOTRACE_FUZZ_FILE`) many times and reads each mutant: no panic.
/// `GOTRACE_FUZZ_FILE=t.bin cargo test --release -p blockprobe --lib fuzz_real_trace -- --ignored`
#[test]
#[ignore = "needs a trace in $GOTRACE_FUZZ_FILE"]
fn fuzz_real_trace() {
    let bytes = std::fs::read(std::env::var("GOTRACE_FUZZ_FILE").unwrap()).unwrap();
    let rounds: u64 = std::env::var("GOTRACE_FUZZ_ROUNDS").map_or(300, |s| s.parse().unwrap());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut err) = (0, 0);
    for _ in 0..rounds {
        let mut m = bytes.clone();
        for _ in 0..1 + rand() % 4 {
            if m.len() <= 17 {
                break;
            }
            let pos = 16 + (rand() as usize) % (m.len() - 16);
            match rand() % 4 {
                0 => m[pos] = rand() as u8,
                1 => m[pos] ^= 1 << (rand() % 8),
                2 => m.truncate(pos),
                _ => m.insert(pos, rand() as u8),
            }
        }
        match dump(&m[..], &mut std::io::sink()) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    println!("{ok} read to the end, {err} errors");
}
