//! `blockprobe analyze trace.out`: the detector run on an execution trace alone.
//!
//! The trace gives each goroutine's history: its block reason and stack, its creator and `go`
//! statement, how long it has waited by the trace's end. It does not give object identity (no
//! channel or mutex addresses), so the patterns that need it (cycles, cascades, a channel's
//! other holders) are out of reach and the report says so; lone waits are grouped by blocking
//! site and creation site, as live mode groups them.

use std::io::Read;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::TraceSummary;
use super::clock::{self, Snapshot, Stamp, Transition};
use super::history::{Change, GState, Histories, History, TFrame, TStack};
use crate::gotrace::base::TraceError;
use crate::gotrace::event::{Event, EventKind, GoState, ResourceKind};
use crate::gotrace::reader::Reader;
use crate::report::{BlockedGoroutine, BlockingSite, CreationSite, Hex, Text};

/// What cannot be told from a trace alone; said in every trace-only report.
pub const TRACE_LIMITS: &str = "from an execution trace alone: the trace records no channel, \
     mutex or other object addresses, so findings group goroutines by where they block and \
     where they were created, and patterns that need object identity (wait-for cycles BP09, \
     BP11 and BP15, cascades BP10, whether anyone else holds a channel) cannot be detected; \
     attach to the live process (`blockprobe attach --pid N --trace-from URL`) for those";

/// The same, when an event stream gave the objects of the goroutines it saw parked.
pub const TRACE_WITH_EVENTS_LIMITS: &str = "from an execution trace and an event stream: objects \
     are known for the goroutines the stream saw parked; no final scan of the process was made, \
     so who else holds a channel or lock, and the cycles and cascades that need that, cannot be \
     detected";

/// Transition stamps kept for clock alignment (Go < 1.25 traces, `fuse`).
const MAX_STAMPS: usize = 1 << 20;

/// Everything read from one trace.
pub struct TraceFacts {
    pub histories: Histories,
    /// The file read, or the URL it was fetched from.
    pub source: String,
    /// The trace format, as its header names it (`go 1.25 trace`).
    pub format: String,
    pub bytes: u64,
    pub events: u64,
    pub generations: u64,
    /// The trace ended inside a generation: what was read, and what was lost.
    pub truncated: Option<String>,
    pub snapshots: Vec<Snapshot>,
    /// Block and unblock transitions (trace ns), kept when asked for.
    pub stamps: Vec<Stamp>,
    /// The trace clock's tick, ns.
    pub tick_ns: u64,
}

/// Interns frames and strings: a goroutine blocking a thousand times at one site holds one
/// stack. Stacks are cached per generation (their ids restart with each).
#[derive(Default)]
struct Stacks {
    strings: FxHashMap<String, Text>,
    by_id: FxHashMap<u64, TStack>,
}

impl Stacks {
    fn text(&mut self, s: &str) -> Text {
        if let Some(t) = self.strings.get(s) {
            return t.clone();
        }
        let t = Text::from(s);
        if self.strings.len() < 1 << 20 {
            self.strings.insert(s.to_string(), t.clone());
        }
        t
    }

    fn get(&mut self, stack: &crate::gotrace::event::Stack) -> Option<TStack> {
        let id = stack.id();
        if id == 0 {
            return None;
        }
        if let Some(s) = self.by_id.get(&id) {
            return Some(s.clone());
        }
        let frames: Vec<TFrame> = stack
            .frames()
            .map(|f| TFrame {
                function: self.text(f.func),
                file: self.text(f.file),
                line: u32::try_from(f.line).unwrap_or(u32::MAX),
            })
            .collect();
        if frames.is_empty() {
            return None;
        }
        let s: TStack = Arc::from(frames);
        self.by_id.insert(id, s.clone());
        Some(s)
    }
}

fn gstate(s: GoState) -> GState {
    match s {
        GoState::NotExist => GState::NotExist,
        GoState::Runnable => GState::Runnable,
        GoState::Running => GState::Running,
        GoState::Waiting => GState::Waiting,
        GoState::Syscall => GState::Syscall,
        _ => GState::Unknown,
    }
}

fn id(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

/// Reads a trace to its end (or to its last complete generation). `keep_stamps` keeps the
/// block/unblock transitions for aligning with probe events.
pub fn read_trace(r: impl Read, source: &str, keep_stamps: bool) -> Result<TraceFacts, TraceError> {
    let mut reader = Reader::new(r)?;
    let format = format!("{} trace", reader.version());
    let mut hs = Histories::default();
    let mut stacks = Stacks::default();
    let mut events = 0u64;
    let mut snapshots = Vec::new();
    let mut stamps = Vec::new();
    let mut tick_ns = 64u64;
    while let Some(ev) = reader.read_event()? {
        events += 1;
        match ev.kind() {
            EventKind::Sync => {
                hs.tick(ev.time());
                // Stack ids restart with each generation.
                stacks.by_id.clear();
                let sync = ev.sync();
                if let Some(cs) = sync.clock_snapshot {
                    snapshots.push(Snapshot {
                        trace_ns: cs.trace,
                        mono_ns: cs.mono,
                    });
                }
                if let Some(t) = sync.tick_ns {
                    tick_ns = t.max(1);
                }
            }
            EventKind::StateTransition => {
                let Some(c) = change(&ev, &mut stacks) else {
                    hs.tick(ev.time());
                    continue;
                };
                if keep_stamps && stamps.len() < MAX_STAMPS {
                    let kind = match (c.from, c.to) {
                        (GState::Running, GState::Waiting) => Some(Transition::Block),
                        (GState::Waiting, GState::Runnable) => Some(Transition::Unblock),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        stamps.push(Stamp {
                            goid: c.goid,
                            kind,
                            ns: c.time,
                        });
                    }
                }
                // Moves the clock on too.
                hs.apply(c);
            }
            _ => hs.tick(ev.time()),
        }
    }
    Ok(TraceFacts {
        histories: hs,
        source: source.to_string(),
        format,
        bytes: reader.bytes_read(),
        events,
        generations: reader.generations(),
        truncated: reader.warning().map(str::to_string),
        snapshots,
        stamps,
        tick_ns,
    })
}

/// A goroutine state transition as a [`Change`].
fn change(ev: &Event, stacks: &mut Stacks) -> Option<Change> {
    let st = ev.state_transition();
    if st.resource.kind != ResourceKind::Goroutine {
        return None;
    }
    let goid = id(st.resource.goroutine())?;
    let (from, to) = st.goroutine();
    let (from, to) = (gstate(from), gstate(to));
    let by = id(ev.goroutine()).filter(|&g| g != goid);
    let stack = stacks.get(&st.stack);
    let creator_stack = (from == GState::NotExist)
        .then(|| stacks.get(&ev.stack()))
        .flatten();
    Some(Change {
        goid,
        time: ev.time(),
        from,
        to,
        by,
        thread: id(ev.thread()),
        reason: stacks.text(&st.reason),
        stack,
        creator_stack,
    })
}

/// Whether a goroutine belongs to the runtime (GC workers, the finalizer, the trace reader...),
/// left out as Go's own tracebacks leave them out (runtime/traceback.go, isSystemGoroutine).
fn is_runtime(h: &History) -> bool {
    let start = h
        .start_function()
        .or_else(|| h.block_stack.as_ref()?.last().map(|f| f.function.clone()));
    match start {
        Some(f) => crate::summary::is_runtime_start_function(&f) || f.starts_with("runtime/trace."),
        None => false,
    }
}

/// What the goroutine waits on, as far as the reason tells (no address in a trace).
fn object_kind(reason: &str) -> &'static str {
    match reason {
        r if r.starts_with("chan ") => "chan",
        r if r.starts_with("select") => "select",
        "sync.Mutex.Lock" => "mutex",
        "sync.RWMutex.Lock" | "sync.RWMutex.RLock" => "rwmutex",
        "sync.WaitGroup.Wait" => "waitgroup",
        "sync.Cond.Wait" => "cond",
        "semacquire" => "sema",
        _ => "none",
    }
}

/// The report's blocked goroutines and their stacks, from the goroutines waiting at the
/// trace's end.
/// What [`blocked`] finds.
pub struct Blocked {
    pub goroutines: Vec<BlockedGoroutine>,
    pub stacks: Vec<Vec<crate::unwind::StackFrame>>,
    /// The runtime's own goroutines, left out.
    pub runtime_hidden: usize,
    /// Goroutines waiting since before the trace began, of which it says nothing else.
    pub unknown: usize,
}

pub fn blocked(hs: &Histories) -> Blocked {
    let mut out = Vec::new();
    let mut stacks: Vec<Vec<crate::unwind::StackFrame>> = Vec::new();
    let mut index: FxHashMap<*const [TFrame], usize> = FxHashMap::default();
    let (mut hidden, mut unknown) = (0, 0);
    let mut waiting: Vec<&History> = hs
        .live
        .values()
        .filter(|h| h.state == GState::Waiting)
        .collect();
    waiting.sort_by_key(|h| h.goid);
    for h in waiting {
        if is_runtime(h) {
            hidden += 1;
            continue;
        }
        if h.block_stack.is_none() && h.block_reason.is_none() && h.wait_reason.is_none() {
            // Waiting since before the trace began, and the trace says nothing more (Go 1.22
            // writes no stack with a goroutine's initial status): nothing to report on.
            unknown += 1;
            continue;
        }
        let reason = h
            .wait_reason
            .clone()
            .or_else(|| h.block_reason.clone().filter(|r| !r.is_empty()))
            .unwrap_or_else(|| Text::from("unknown"));
        let stack = h.block_stack.as_ref().map(|s| {
            *index.entry(Arc::as_ptr(s)).or_insert_with(|| {
                stacks.push(
                    s.iter()
                        .map(|f| crate::unwind::StackFrame {
                            function: f.function.to_string(),
                            file: f.file.to_string(),
                            line: f.line,
                            inlined: false,
                            wrapper: false,
                            pc: None,
                        })
                        .collect(),
                );
                stacks.len() - 1
            })
        });
        let blocked_at = stack.and_then(|i| {
            crate::unwind::blocking_site(&stacks[i]).map(|f| BlockingSite {
                function: Text::from(f.function.as_str()),
                location: Text::from(format!("{}:{}", f.file, f.line)),
            })
        });
        let parked_in = h
            .block_stack
            .as_ref()
            .and_then(|s| s.first())
            .map_or_else(|| Text::from(""), |f| f.function.clone());
        out.push(BlockedGoroutine {
            goid: h.goid,
            wait_reason_code: 0,
            blocked_ns: hs.last_ns.saturating_sub(h.since_ns).max(0) as u64,
            object_kind: object_kind(&reason),
            wait_reason: reason,
            object: Hex(0),
            parked_in,
            tid: 0,
            blocked_before_attach: h.since_trace_start,
            wait_chans: Default::default(),
            created_by: h.go_statement().map(|(function, location)| CreationSite {
                function,
                location: Some(location),
                parent_goid: h.creator.unwrap_or(0),
            }),
            start_function: h.start_function(),
            blocked_at: blocked_at.map(std::sync::Arc::new),
            stack,
            made_at: None,
            source: "trace",
        });
    }
    Blocked {
        goroutines: out,
        stacks,
        runtime_hidden: hidden,
        unknown,
    }
}

/// Leak growth per creation site, from the samples taken along the trace.
pub fn growth(hs: &Histories) -> Vec<crate::detect::growth::GrowthSite> {
    let mut out: Vec<crate::detect::growth::GrowthSite> = hs
        .samples
        .growing()
        .into_iter()
        .map(|((loc, reason), first, last, rises, span_ns, start_ns)| {
            crate::detect::growth::GrowthSite {
                location: Some(loc),
                reason,
                growth: crate::detect::growth::Growth {
                    gopc: 0,
                    reason: 0,
                    first,
                    last,
                    rises,
                    span_ns,
                    start_ns,
                },
                // A trace holds no heap figures.
                heap: None,
            }
        })
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.growth.last));
    out
}

/// The alignment of a trace's clock with the probes': its snapshots (Go >= 1.25), else the
/// transitions both sides saw, else assumed.
pub fn align(facts: &TraceFacts, probe: &[Stamp]) -> clock::Alignment {
    clock::from_snapshots(&facts.snapshots, facts.tick_ns)
        .or_else(|| clock::from_transitions(probe, &facts.stamps, facts.tick_ns))
        .unwrap_or_else(|| clock::assumed(facts.tick_ns))
}

/// The trace's summary, its times put on CLOCK_MONOTONIC by `alignment`.
pub fn summary(facts: &TraceFacts, alignment: &clock::Alignment) -> TraceSummary {
    let hs = &facts.histories;
    TraceSummary {
        source: facts.source.clone(),
        format: facts.format.clone(),
        bytes: facts.bytes,
        events: facts.events,
        generations: facts.generations,
        span_ns: hs.span_ns(),
        goroutines_alive: hs.live.len(),
        goroutines_exited: hs.exited,
        truncated: facts.truncated.clone(),
        clock: Some(alignment.clone()),
        start_mono_ns: alignment.to_mono(hs.first_ns.unwrap_or(0)),
        end_mono_ns: alignment.to_mono(hs.last_ns),
    }
}

/// The report of a trace (`mode: "trace"`), in the live report's schema. With `probe` (the
/// event stream of the same run, `fuse`), each goroutine the probes last saw parked gets the
/// object it waits on.
pub fn report(
    facts: &TraceFacts,
    threshold_ns: u64,
    policy: &crate::detect::allow::Policy,
    probe: Option<&super::events::ProbeEvents>,
) -> crate::report::Report {
    let Blocked {
        goroutines: mut blocked,
        stacks,
        runtime_hidden: hidden,
        unknown,
    } = blocked(&facts.histories);
    if let Some(probe) = probe {
        for g in &mut blocked {
            if let Some(p) = probe.parked.get(&g.goid) {
                g.object = p.object.unwrap_or(Hex(0));
                g.wait_chans = p.wait_chans.iter().copied().collect();
                if p.object_kind != "none" {
                    g.object_kind = p.object_kind;
                }
                g.tid = p.tid.unwrap_or(0);
            }
        }
    }
    let growth = growth(&facts.histories);
    let user_goroutines = facts
        .histories
        .live
        .values()
        .filter(|h| !is_runtime(h))
        .count();
    let none = FxHashMap::default();
    let input = crate::detect::Input {
        blocked: &blocked,
        in_syscall: &[],
        running: &[],
        chans: &FxHashMap::default(),
        parties: &none,
        inferred_parties: &none,
        referenced: &Default::default(),
        spinning: &[],
        growth: &growth,
        user_goroutines,
        threshold_ns,
    };
    let mut findings = crate::detect::analyze(&input);
    for f in &mut findings {
        f.allowed = policy.allows(f);
    }
    let summary = summary(facts, &align(facts, &[]));
    let limits = if probe.is_some() {
        TRACE_WITH_EVENTS_LIMITS
    } else {
        TRACE_LIMITS
    };
    crate::report::Report {
        schema: crate::report::REPORT_SCHEMA,
        target: crate::report::Target {
            pid: 0,
            exe: summary.source.clone(),
            go_version: summary.format.clone(),
            pie: false,
            stripped: false,
            cgo: false,
            layout_source: "none".to_string(),
        },
        mode: "trace",
        probes: Vec::new(),
        scan: None,
        min_wait_ns: None,
        wait_histograms: Vec::new(),
        wait_totals: Vec::new(),
        duration_ns: summary.span_ns,
        end_reason: crate::report::EndReason::TraceEnd,
        at_mono_ns: summary.end_mono_ns.max(0) as u64,
        events_received: summary.events,
        events_lost: 0,
        goroutines_seen: summary.goroutines_alive + summary.goroutines_exited as usize,
        threshold_ns,
        blocked,
        // A trace holds no channel addresses, and no probe ran.
        channels: Vec::new(),
        chan_sites: None,
        stacks,
        findings,
        runtime_goroutines_hidden: hidden,
        in_syscall: Vec::new(),
        running: Vec::new(),
        threads: Vec::new(),
        warnings: std::iter::once(limits.to_string())
            .chain(summary.truncated.clone())
            .chain((unknown > 0).then(|| {
                format!(
                    "{unknown} goroutine(s) were waiting since before the trace began and the \
                     trace records neither their stack nor their reason (Go 1.22 writes no \
                     stack with a goroutine's initial status): not shown"
                )
            }))
            .collect(),
        exit_code: None,
        exit_signal: None,
        trace: Some(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Traces written by the `patterns` fixture (`-case X -trace FILE`), captured.
    fn captured(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/traces")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn analyze(bytes: &[u8]) -> crate::report::Report {
        let facts = read_trace(bytes, "captured", false).expect("parses");
        let policy = crate::detect::allow::Policy::new(&[], &[], None, true).unwrap();
        report(&facts, 100_000_000, &policy, None)
    }

    #[test]
    fn orphaned_receiver_from_a_go_1_27_trace() {
        // ready line: greceiver=22; when captured, main.go:166 was `<-ch // BLOCK:orphanrecv`
        // and :164 its `go` statement.
        let r = analyze(&captured("orphanrecv-go1.27.trace"));
        let tr = r.trace.as_ref().unwrap();
        assert_eq!(tr.format, "go 1.26 trace");
        assert_eq!(tr.generations, 1);
        assert_eq!(tr.clock.as_ref().unwrap().method, "clock-snapshot");
        assert!(tr.truncated.is_none());
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
        let f = &r.findings[0];
        assert_eq!((f.pattern, f.goroutines.as_slice()), ("BP03", &[22u64][..]));
        assert!(
            f.blocked_at
                .as_ref()
                .unwrap()
                .location
                .ends_with("main.go:166")
        );
        let c = f.created_by.as_ref().unwrap();
        assert!(c.location.as_deref().unwrap().ends_with("main.go:164"));
        assert_eq!(c.function.as_ref(), "main.orphanRecv");
        assert!(f.blocked_ns > 300_000_000, "{}", f.blocked_ns);
        assert_eq!(f.object, None);
        let g = r.blocked.iter().find(|g| g.goid == 22).unwrap();
        assert_eq!((g.source, g.object_kind), ("trace", "chan"));
        assert_eq!(g.start_function.as_deref(), Some("main.orphanRecv.func1"));
    }

    #[test]
    fn nil_channel_send_from_a_go_1_22_trace() {
        // ready line: gsender=21; the trace's reason is "forever", the stack says nil send.
        let r = analyze(&captured("nilsend-go1.22.trace"));
        assert_eq!(r.trace.as_ref().unwrap().format, "go 1.22 trace");
        let f = r
            .findings
            .iter()
            .find(|f| f.pattern == "BP04")
            .expect("BP04");
        assert_eq!(f.goroutines, vec![21]);
        assert_eq!(f.wait_reason.as_deref(), Some("chan send (nil chan)"));
        // The line of `ch <- 1 // BLOCK:nilsend` when the trace was captured.
        assert!(
            f.blocked_at
                .as_ref()
                .unwrap()
                .location
                .ends_with("main.go:181")
        );
    }

    #[test]
    fn a_cut_trace_keeps_its_complete_generations() {
        let bytes = captured("orphanrecv-go1.27.trace");
        // One generation: cut inside it, nothing is complete, and the report says so.
        let facts = read_trace(&bytes[..bytes.len() - 100], "cut", false).expect("no error");
        assert!(facts.truncated.is_some());
        assert_eq!(facts.generations, 0);
        assert!(facts.histories.live.is_empty());
        for cut in (0..bytes.len()).step_by(97) {
            // Never a panic, whatever the cut.
            let _ = read_trace(&bytes[..cut], "cut", true);
        }
    }
}
