//! The library's trace reader in process, on the captured traces: whole (as Go's reader read
//! them), cut anywhere (every whole generation, a warning, no error) and mutated (no panic).

use std::sync::OnceLock;

use blockprobe::gotrace::reader::Reader;
use proptest::prelude::*;
use serde_json::Value;

use super::dumps::{Ev, GenEnd, HEADER_LEN, Tally, generations};
use super::{MINORS, captured, expect_fields};

/// What reading `data` in process gave: each event's text, how it ended, the warning.
struct ReadOut {
    events: Vec<String>,
    error: Option<String>,
    warning: Option<String>,
}

/// Reads every event (formatting each, as trace-dump does), up to `cap` events: a reader that
/// yields more than that from a trace this small never ends.
fn read_all(data: &[u8], cap: usize) -> ReadOut {
    let mut r = match Reader::new(data) {
        Ok(r) => r,
        Err(e) => {
            return ReadOut {
                events: Vec::new(),
                error: Some(format!("new: {e}")),
                warning: None,
            };
        }
    };
    let mut events = Vec::new();
    let mut error = None;
    loop {
        match r.read_event() {
            Ok(Some(ev)) => {
                events.push(ev.to_string());
                assert!(
                    events.len() <= cap,
                    "the reader yielded more than {cap} events"
                );
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    ReadOut {
        events,
        error,
        warning: r.warning().map(str::to_string),
    }
}

/// A captured trace, its generations, what Go's reader made of it, and what the library reads
/// from it whole.
struct Trace {
    minor: String,
    data: Vec<u8>,
    gens: Vec<GenEnd>,
    /// The `.expect.json`.
    want: Value,
    full: ReadOut,
    /// The tally of `full`'s events (with the index of each Sync event).
    tally: Tally,
}

/// The captured traces, each read once.
struct Corpus {
    traces: Vec<Trace>,
}

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| {
        let traces = MINORS
            .iter()
            .map(|m| {
                let (_, data, want) = captured(m);
                let (_, gens) = generations(&data).unwrap_or_else(|e| panic!("go{m}.trace: {e}"));
                let full = read_all(&data, 1 << 20);
                let mut tally = Tally::new();
                for (i, text) in full.events.iter().enumerate() {
                    tally.add(&Ev {
                        text: text.clone(),
                        line: i,
                    });
                }
                Trace {
                    minor: m.to_string(),
                    data,
                    gens,
                    want,
                    full,
                    tally,
                }
            })
            .collect();
        Corpus { traces }
    })
}

/// The library reads each captured trace as Go's reader did: the same event texts (checksum),
/// count and kinds, no error, no warning.
#[test]
fn captured_traces_read_in_process() {
    let mut failures = Vec::new();
    for t in &corpus().traces {
        let (minor, read, want) = (&t.minor, &t.full, &t.want);
        let got = t.tally.summary();
        if let Some(e) = &read.error {
            failures.push(format!(
                "go{minor}.trace: error after {} events: {e}",
                read.events.len()
            ));
        }
        if let Some(w) = &read.warning {
            failures.push(format!("go{minor}.trace: warning on a whole trace: {w}"));
        }
        if expect_fields(&got) != expect_fields(want) {
            failures.push(format!(
                "go{minor}.trace: ours {}, Go's {}",
                expect_fields(&got),
                expect_fields(want)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// PROPTEST_CASES, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        // Shrunk inputs are printed in the failure; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A position in a buffer of `len` bytes, from a fraction in u32.
fn at(frac: u32, len: usize) -> usize {
    (u64::from(frac) * len as u64 / (u64::from(u32::MAX) + 1)) as usize
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR bytes at positions (fractions of the length) with nonzero values.
    Flip(Vec<(u32, u8)>),
    /// Keep the first bytes only.
    Truncate(u32),
    /// Insert a piece of another (or the same) captured trace.
    Splice(Piece),
    /// Overwrite bytes with a piece of another captured trace.
    Overwrite(Piece),
    /// Remove a range.
    Delete { start: u32, len: u16 },
    /// Copy a range of the trace to another place in it (a batch seen twice).
    Duplicate { start: u32, len: u16, dst: u32 },
}

/// A piece of captured trace `from` (`len` bytes from `start`), to put at `dst` in the trace
/// being mutated; `start` and `dst` are fractions of the lengths, as for [`at`].
#[derive(Debug, Clone)]
struct Piece {
    from: usize,
    start: u32,
    len: u16,
    dst: u32,
}

impl Piece {
    /// The piece's bytes, and where they go in a trace of `n` bytes.
    fn locate<'a>(&self, others: &'a [Trace], n: usize) -> (&'a [u8], usize) {
        let src = &others[self.from].data;
        let (s, e) = span(self.start, self.len, src.len());
        (&src[s..e], at(self.dst, n + 1))
    }
}

/// The range of at most `len` % 4096 bytes from `start` (a fraction) in a buffer of `n` bytes.
fn span(start: u32, len: u16, n: usize) -> (usize, usize) {
    let s = at(start, n);
    (s, (s + usize::from(len) % 4096).min(n))
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = (0..MINORS.len(), any::<u32>(), any::<u16>(), any::<u32>()).prop_map(
        |(from, start, len, dst)| Piece {
            from,
            start,
            len,
            dst,
        },
    );
    prop_oneof![
        3 => proptest::collection::vec((any::<u32>(), 1..=255u8), 1..8).prop_map(Mutation::Flip),
        1 => any::<u32>().prop_map(Mutation::Truncate),
        1 => piece.clone().prop_map(Mutation::Splice),
        1 => piece.prop_map(Mutation::Overwrite),
        1 => (any::<u32>(), any::<u16>()).prop_map(|(start, len)| Mutation::Delete { start, len }),
        1 => (any::<u32>(), any::<u16>(), any::<u32>())
            .prop_map(|(start, len, dst)| Mutation::Duplicate { start, len, dst }),
    ]
}

fn apply(data: &[u8], ms: &[Mutation], others: &[Trace]) -> Vec<u8> {
    let mut b = data.to_vec();
    for m in ms {
        let n = b.len();
        match m {
            Mutation::Flip(fs) => {
                for &(p, x) in fs {
                    if n > 0 {
                        b[at(p, n)] ^= x;
                    }
                }
            }
            Mutation::Truncate(p) => b.truncate(at(*p, n + 1)),
            Mutation::Splice(p) => {
                let (src, d) = p.locate(others, n);
                b.splice(d..d, src.iter().copied());
            }
            Mutation::Overwrite(p) => {
                let (src, d) = p.locate(others, n);
                for (i, &x) in src.iter().enumerate() {
                    if let Some(y) = b.get_mut(d + i) {
                        *y = x;
                    }
                }
            }
            Mutation::Delete { start, len } => {
                let (s, e) = span(*start, *len, n);
                b.drain(s..e);
            }
            Mutation::Duplicate { start, len, dst } => {
                let (s, e) = span(*start, *len, n);
                let piece = b[s..e].to_vec();
                let d = at(*dst, n + 1);
                b.splice(d..d, piece);
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(config(3000))]

    /// Flipped, cut, spliced, overwritten, shortened and repeated bytes: the reader ends with
    /// events, a warning or an error, and never panics (formatting every event it yields).
    #[test]
    fn mutated_traces_never_panic(
        which in 0..MINORS.len(),
        ms in proptest::collection::vec(mutation(), 1..4),
    ) {
        let traces = &corpus().traces;
        let t = &traces[which];
        let bytes = apply(&t.data, &ms, traces);
        let cap = t.full.events.len() * 8 + 100_000;
        let _ = read_all(&bytes, cap);
    }
}

/// A trace cut at `cut` (after its header) reads without an error: at least every
/// generation whole in the copy, as a prefix of the whole trace's events (bar a last Sync), and
/// a warning unless the cut falls between generations.
fn check_cut(which: usize, cut: usize) -> Result<(), TestCaseError> {
    let t = &corpus().traces[which];
    let (minor, data, gens, full) = (&t.minor, &t.data, &t.gens, &t.full);
    prop_assume!(full.error.is_none());
    let what = format!("go{minor}.trace cut at {cut} (generations end at {gens:?})");
    let read = read_all(&data[..cut], full.events.len() + 10);
    prop_assert!(read.error.is_none(), "{what}: error {:?}", read.error);
    let mut n = read.events.len();
    if n > 0
        && full.events.get(n - 1) != read.events.get(n - 1)
        && read.events[n - 1].contains(" Sync ")
    {
        n -= 1;
    }
    for i in 0..n {
        prop_assert_eq!(
            read.events.get(i),
            full.events.get(i),
            "{}: event #{}",
            what,
            i
        );
    }
    let complete = gens.iter().filter(|g| g.end <= cut).count();
    let needed = (t.tally.syncs.get(complete)).map_or(full.events.len(), |&i| i as usize);
    prop_assert!(
        n >= needed,
        "{what}: {n} events, want >= {needed} ({complete} whole generations)"
    );
    let at_boundary = cut == data.len() || gens.iter().any(|g| g.end == cut);
    prop_assert_eq!(
        read.warning.is_some(),
        !at_boundary,
        "{}: warning {:?}",
        what,
        read.warning
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(600))]

    /// Cut anywhere after the header: see [`check_cut`].
    #[test]
    fn truncated_traces_yield_whole_generations(which in 0..MINORS.len(), frac in any::<u32>()) {
        let len = corpus().traces[which].data.len();
        check_cut(which, HEADER_LEN + 1 + at(frac, len - HEADER_LEN - 1))?;
    }
}

/// The cuts the random ones may miss: just before, at and just after each generation's end.
#[test]
fn traces_cut_at_generation_ends() {
    let mut failures = Vec::new();
    for (which, t) in corpus().traces.iter().enumerate() {
        let data = &t.data;
        for g in &t.gens {
            for cut in [g.end - 1, g.end, g.end + 1, g.end + 2] {
                if cut > HEADER_LEN
                    && cut <= data.len()
                    && let Err(e) = check_cut(which, cut)
                {
                    failures.push(e.to_string());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
