//! The Go trace oracle test's tools: where each generation of a trace file ends (just enough
//! of the wire format), and `-d=parsed` dumps read event by event, tallied and compared.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The wire format, just enough to find where each generation ends (src/internal/trace/batch.go
// `readBatch`; tracev2/events.go for the numbers).

const EV_EVENT_BATCH: u8 = 1;
const EV_EXPERIMENTAL_BATCH: u8 = 49;
const EV_END_OF_GENERATION: u8 = 52;
pub const HEADER_LEN: usize = 16;

/// One generation of a trace file: its number and the offset just past its last batch (Go
/// < 1.26), or past its EndOfGeneration byte (Go ≥ 1.26). A copy cut at `cut` bytes holds the
/// generation whole when `end <= cut`.
#[derive(Debug, Clone, Copy)]
pub struct GenEnd {
    pub number: u64,
    pub end: usize,
}

fn uvarint(data: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos).ok_or("uvarint past the end")?;
        *pos += 1;
        x |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(x);
        }
    }
    Err("uvarint too long".into())
}

/// The trace version (`go 1.NN trace` → NN) and where each generation ends.
pub fn generations(data: &[u8]) -> Result<(u32, Vec<GenEnd>), String> {
    let header = data.get(..HEADER_LEN).ok_or("no header")?;
    let minor: u32 = std::str::from_utf8(header)
        .ok()
        .and_then(|h| {
            h.strip_prefix("go 1.")?
                .strip_suffix(" trace\0\0\0")?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("not a trace header: {header:?}"))?;
    let mut gens = Vec::new();
    let (mut cur, mut last_end) = (None::<u64>, 0usize);
    let mut pos = HEADER_LEN;
    while pos < data.len() {
        match data[pos] {
            EV_END_OF_GENERATION if minor >= 26 => {
                pos += 1;
                let number = cur.take().ok_or("EndOfGeneration without batches")?;
                gens.push(GenEnd { number, end: pos });
            }
            b @ (EV_EVENT_BATCH | EV_EXPERIMENTAL_BATCH) => {
                pos += if b == EV_EXPERIMENTAL_BATCH { 2 } else { 1 };
                let number = uvarint(data, &mut pos)?;
                let _m = uvarint(data, &mut pos)?;
                let _ts = uvarint(data, &mut pos)?;
                let size = uvarint(data, &mut pos)?;
                pos = pos
                    .checked_add(usize::try_from(size).map_err(|_| "huge batch")?)
                    .ok_or("huge batch")?;
                if minor < 26
                    && let Some(c) = cur
                    && c != number
                {
                    gens.push(GenEnd {
                        number: c,
                        end: last_end,
                    });
                }
                cur = Some(number);
                last_end = pos;
            }
            b => return Err(format!("byte {b} at offset {pos} starts no batch")),
        }
    }
    if pos != data.len() {
        return Err(format!(
            "the last batch ends at {pos}, past the end ({})",
            data.len()
        ));
    }
    if gens.windows(2).any(|w| w[1].number <= w[0].number) {
        return Err(format!("generations out of order: {gens:?}"));
    }
    match cur {
        Some(number) if minor < 26 => gens.push(GenEnd {
            number,
            end: last_end,
        }),
        Some(number) => return Err(format!("generation {number} has no EndOfGeneration")),
        None => {}
    }
    Ok((minor, gens))
}

// Dumps: one event per `M=` line, with its continuation lines.

/// One event of a dump: its text (lines joined by '\n', no final newline) and its first line's
/// number in the dump.
#[derive(Debug, Clone)]
pub struct Ev {
    pub text: String,
    pub line: usize,
}

impl Ev {
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
    /// The `G=` value of the first line.
    pub fn g(&self) -> &str {
        field(self.first_line(), "G=").unwrap_or("?")
    }
    /// The kind: the 4th word (`M=.. P=.. G=.. StateTransition Time=..`).
    pub fn kind(&self) -> &str {
        self.first_line().split_whitespace().nth(3).unwrap_or("?")
    }
    /// For `GoID=N Running->Waiting Reason="r"`: (N, the quoted reason as printed).
    pub fn block(&self) -> Option<(&str, &str)> {
        let l = self.first_line();
        if self.kind() != "StateTransition" || !l.contains(" Running->Waiting ") {
            return None;
        }
        Some((field(l, "GoID=")?, quoted(l, "Reason=\"")?))
    }
    /// N of a Sync event.
    pub fn sync_n(&self) -> Option<&str> {
        (self.kind() == "Sync").then(|| field(self.first_line(), "N="))?
    }
}

/// The value of a ` key=value` word.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// The text of a Go %q string after `prefix` up to its closing quote (escapes kept).
fn quoted<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let start = line.find(prefix)? + prefix.len();
    let rest = &line[start..];
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

/// The events of a dump, read as they come (dumps of the stress traces are ~100 MB).
pub struct Events<R> {
    r: R,
    cur: Option<Ev>,
    line_no: usize,
    buf: Vec<u8>,
}

pub fn events(path: &Path) -> Events<BufReader<File>> {
    let f = File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    Events {
        r: BufReader::with_capacity(1 << 20, f),
        cur: None,
        line_no: 0,
        buf: Vec::new(),
    }
}

impl<R: BufRead> Iterator for Events<R> {
    type Item = Ev;
    fn next(&mut self) -> Option<Ev> {
        loop {
            self.buf.clear();
            let n = self
                .r
                .read_until(b'\n', &mut self.buf)
                .expect("reading a dump");
            if n == 0 {
                return self.cur.take();
            }
            self.line_no += 1;
            let line = String::from_utf8_lossy(&self.buf);
            let line = line.strip_suffix('\n').unwrap_or(&line);
            if line.starts_with("M=") {
                let ev = Ev {
                    text: line.to_string(),
                    line: self.line_no,
                };
                if let Some(prev) = self.cur.replace(ev) {
                    return Some(prev);
                }
            } else if let Some(cur) = &mut self.cur {
                cur.text.push('\n');
                cur.text.push_str(line);
            } else {
                // Text before the first event: an event of its own, so that it differs.
                self.cur = Some(Ev {
                    text: line.to_string(),
                    line: self.line_no,
                });
            }
        }
    }
}

/// What a dump holds, per goroutine and in total.
#[derive(Default, Debug, PartialEq)]
pub struct Tally {
    pub events: u64,
    /// Events per `G=` value.
    pub per_g: BTreeMap<String, u64>,
    /// Block reasons per GoID, in order.
    pub reasons: BTreeMap<String, Vec<String>>,
    pub kinds: BTreeMap<String, u64>,
    /// The index of each Sync event (Sync N=k is the (k-1)th).
    pub syncs: Vec<u64>,
    /// FNV-1a 64 of the dump's bytes.
    pub fnv: u64,
}

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Tally {
    pub fn new() -> Self {
        Tally {
            fnv: FNV_OFFSET,
            ..Default::default()
        }
    }

    pub fn add(&mut self, ev: &Ev) {
        if ev.kind() == "Sync" {
            self.syncs.push(self.events);
        }
        self.events += 1;
        *self.per_g.entry(ev.g().to_string()).or_default() += 1;
        *self.kinds.entry(ev.kind().to_string()).or_default() += 1;
        if let Some((goid, reason)) = ev.block() {
            self.reasons
                .entry(goid.to_string())
                .or_default()
                .push(reason.to_string());
        }
        self.fnv = fnv1a(self.fnv, ev.text.as_bytes());
        self.fnv = fnv1a(self.fnv, b"\n");
    }

    pub fn of(path: &Path) -> Tally {
        let mut t = Tally::new();
        for ev in events(path) {
            t.add(&ev);
        }
        t
    }

    /// What a `.expect.json` records.
    pub fn summary(&self) -> Value {
        json!({
            "events": self.events,
            "syncs": self.syncs.len(),
            "fnv1a64": format!("{:016x}", self.fnv),
            "kinds": self.kinds,
            "goroutines": self.per_g.len(),
            "block_reasons": self.reasons.values().map(Vec::len).sum::<usize>(),
        })
    }
}

/// Go's dump and ours, compared as streams; every difference found, as messages.
pub fn compare_dumps(go: &Path, ours: &Path) -> (Tally, Vec<String>) {
    let (mut tg, mut to) = (Tally::new(), Tally::new());
    let mut context: VecDeque<Ev> = VecDeque::new();
    let mut first_diff = None;
    let (mut gi, mut oi) = (events(go), events(ours));
    let mut i = 0u64;
    loop {
        let (g, o) = (gi.next(), oi.next());
        if g.is_none() && o.is_none() {
            break;
        }
        if let Some(g) = &g {
            tg.add(g);
        }
        if let Some(o) = &o {
            to.add(o);
        }
        if first_diff.is_none() {
            let same = matches!((&g, &o), (Some(g), Some(o)) if g.text == o.text);
            if same {
                context.push_back(g.clone().expect("same"));
                if context.len() > 3 {
                    context.pop_front();
                }
            } else {
                first_diff = Some(describe_diff(i, &context, g.as_ref(), o.as_ref()));
            }
        }
        i += 1;
    }
    let mut failures = Vec::new();
    if tg.per_g != to.per_g {
        let mut diffs: Vec<String> = tg
            .per_g
            .keys()
            .chain(to.per_g.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|k| {
                let (a, b) = (tg.per_g.get(k), to.per_g.get(k));
                (a != b).then(|| {
                    format!(
                        "G={k}: Go {} events, ours {}",
                        a.unwrap_or(&0),
                        b.unwrap_or(&0)
                    )
                })
            })
            .collect();
        let n = diffs.len();
        diffs.truncate(15);
        failures.push(format!(
            "(a) events per goroutine differ for {n} goroutine(s) (Go {} events in all, ours {}):\n    {}",
            tg.events,
            to.events,
            diffs.join("\n    ")
        ));
    }
    if tg.reasons != to.reasons {
        let mut diffs = Vec::new();
        let none = Vec::new();
        for k in tg.reasons.keys().chain(to.reasons.keys()) {
            let (a, b) = (
                tg.reasons.get(k).unwrap_or(&none),
                to.reasons.get(k).unwrap_or(&none),
            );
            if a != b
                && !diffs
                    .iter()
                    .any(|d: &String| d.starts_with(&format!("GoID={k}:")))
            {
                let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                diffs.push(format!(
                    "GoID={k}: Go has {} block reasons, ours {}; first difference at #{at}: Go {:?}, ours {:?}",
                    a.len(),
                    b.len(),
                    a.get(at),
                    b.get(at)
                ));
            }
        }
        let n = diffs.len();
        diffs.truncate(10);
        failures.push(format!(
            "(b) block reasons differ for {n} goroutine(s):\n    {}",
            diffs.join("\n    ")
        ));
    }
    if let Some(d) = first_diff {
        failures.push(format!("(c) the dumps differ: {d}"));
    }
    (tg, failures)
}

pub fn describe_diff(i: u64, context: &VecDeque<Ev>, go: Option<&Ev>, ours: Option<&Ev>) -> String {
    let show = |e: Option<&Ev>| match e {
        Some(e) => format!("(line {})\n{}", e.line, indent(&e.text)),
        None => "(the dump ends here)".to_string(),
    };
    format!(
        "first difference at event #{i}\n  the events before it (same in both):\n{}\n  Go's:  {}\n  ours:  {}",
        context
            .iter()
            .map(|e| indent(&e.text))
            .collect::<Vec<_>>()
            .join("\n"),
        show(go),
        show(ours)
    )
}

fn indent(s: &str) -> String {
    s.lines()
        .take(12)
        .map(|l| format!("      | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn events_keep_their_continuation_lines() {
    let dump = "M=-1 P=-1 G=-1 Sync Time=1 N=1\n\
M=7 P=0 G=1 StateTransition Time=5 GoID=1 Running->Waiting Reason=\"chan \\\"x\\\" receive\"\n\
TransitionStack=\n\
\tmain.main @ 0x1\n\
\t\t/x/main.go:3\n\
\n\
M=7 P=0 G=2 Metric Time=6 Name=\"/gc/heap\" Value=Value{Uint64(2)}\n";
    let scratch = blockprobe_tests::Scratch::new("gotrace-dumps");
    let path = scratch.path("dump.txt");
    std::fs::write(&path, dump).expect("write the dump");
    let evs: Vec<Ev> = events(&path).collect();
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert_eq!(evs[1].line, 2);
    assert!(evs[1].text.ends_with("main.go:3\n"), "{:?}", evs[1].text);
    assert_eq!(evs[1].g(), "1");
    assert_eq!(evs[1].kind(), "StateTransition");
    assert_eq!(evs[1].block(), Some(("1", r#"chan \"x\" receive"#)));
    assert_eq!(evs[0].sync_n(), Some("1"));
    assert_eq!(evs[2].block(), None);
    let t = Tally::of(&path);
    // The tally's checksum is the dump's bytes' own.
    assert_eq!(t.fnv, fnv1a(FNV_OFFSET, dump.as_bytes()));
    assert_eq!(t.syncs, [0]);
    assert_eq!(t.per_g.get("1"), Some(&1));
}

#[test]
fn generations_end_where_the_captured_traces_say() {
    for minor in super::MINORS {
        let (_, data, want) = super::captured(minor);
        let (v, gens) = generations(&data).unwrap_or_else(|e| panic!("go{minor}.trace: {e}"));
        assert!((22..=26).contains(&v), "go{minor}.trace: version {v}");
        assert_eq!(
            Some(gens.len() as u64),
            want["generations"].as_u64(),
            "go{minor}"
        );
        assert_eq!(
            gens.last().map(|g| g.end),
            Some(data.len()),
            "go{minor}: {gens:?}"
        );
    }
    assert!(generations(b"go 1.21 trace\0\0\0\x01").is_err());
    assert!(generations(b"not a trace at all").is_err());
}
