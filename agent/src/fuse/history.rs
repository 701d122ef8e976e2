//! A trace's goroutine state changes folded into one history per goroutine: who created it and
//! where, what it is doing now and since when, why it last blocked and with what stack, who
//! made it runnable again. Goroutines are dropped when they exit, so memory follows the
//! goroutines alive, not the trace's length; stacks are shared (one `Arc` per distinct stack
//! of a generation) and their strings interned.
//!
//! Pure: it takes [`Change`]s, made from parsed events by `super::offline::read_trace`, so it
//! is tested on hand-made sequences.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::detect::growth::SAMPLE_EVERY_NS;
use crate::report::Text;

/// A goroutine's state, as the trace names them (internal/trace/resources.go, GoState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GState {
    Unknown,
    NotExist,
    Runnable,
    Running,
    Waiting,
    Syscall,
}

/// One frame of a trace stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TFrame {
    pub function: Text,
    pub file: Text,
    pub line: u32,
}

impl TFrame {
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// A stack, innermost frame first, shared by every event that recorded it.
pub type TStack = Arc<[TFrame]>;

/// One goroutine state change, as the trace records it.
#[derive(Debug, Clone)]
pub struct Change {
    pub goid: u64,
    /// Trace time, ns.
    pub time: i64,
    pub from: GState,
    pub to: GState,
    /// The goroutine whose event this is, when another one (who created it, who unblocked it).
    pub by: Option<u64>,
    /// The OS thread (the trace's M is the thread id) the event happened on.
    pub thread: Option<u64>,
    /// The runtime's reason (block and stop reasons; empty otherwise).
    pub reason: Text,
    /// The transition's stack: where it blocked, its start function (at creation), its stack
    /// at the start of the trace (GoStatusStack).
    pub stack: Option<TStack>,
    /// At creation: the creator's stack, whose first frame is the `go` statement.
    pub creator_stack: Option<TStack>,
}

/// A time it was made runnable, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Unblock {
    pub time_ns: i64,
    /// The goroutine that made it runnable (None: the runtime itself, e.g. a timer or the
    /// network poller on a thread without a goroutine).
    pub by: Option<u64>,
    pub thread: Option<u64>,
}

/// Unblocks kept per goroutine (the latest).
pub const KEEP_UNBLOCKS: usize = 8;

/// One goroutine's history.
#[derive(Debug, Clone)]
pub struct History {
    pub goid: u64,
    pub state: GState,
    /// Since when it is in `state` (trace ns).
    pub since_ns: i64,
    /// In `state` since the trace began (its status at the trace's start, unchanged since):
    /// `since_ns` is the trace's start, a lower bound.
    pub since_trace_start: bool,
    pub created_ns: Option<i64>,
    pub creator: Option<u64>,
    /// The creator's stack at the `go` statement.
    pub creation_stack: Option<TStack>,
    /// The new goroutine's start function.
    pub start_stack: Option<TStack>,
    /// Its latest block: the runtime's reason, the wait reason it maps to (the goroutine
    /// table's spelling, runtime/runtime2.go waitReasonStrings), and the stack.
    pub block_reason: Option<Text>,
    pub wait_reason: Option<Text>,
    pub block_stack: Option<TStack>,
    pub last_run_ns: Option<i64>,
    pub last_thread: Option<u64>,
    pub unblocks: VecDeque<Unblock>,
    pub unblock_count: u64,
    pub block_count: u64,
}

impl History {
    fn new(goid: u64, time: i64) -> Self {
        Self {
            goid,
            state: GState::Unknown,
            since_ns: time,
            since_trace_start: false,
            created_ns: None,
            creator: None,
            creation_stack: None,
            start_stack: None,
            block_reason: None,
            wait_reason: None,
            block_stack: None,
            last_run_ns: None,
            last_thread: None,
            unblocks: VecDeque::new(),
            unblock_count: 0,
            block_count: 0,
        }
    }

    /// The `go` statement that created it: `(function, file:line)`.
    pub fn go_statement(&self) -> Option<(Text, Text)> {
        let f = self.creation_stack.as_ref()?.first()?;
        Some((f.function.clone(), Text::from(f.location())))
    }

    pub fn start_function(&self) -> Option<Text> {
        Some(self.start_stack.as_ref()?.first()?.function.clone())
    }
}

/// A site, for leak growth: the `go` statement's `file:line` and the wait reason.
pub type Site = (Text, Text);

/// Every goroutine's history, the trace's time span, and growth samples.
#[derive(Debug, Default)]
pub struct Histories {
    pub live: FxHashMap<u64, History>,
    pub first_ns: Option<i64>,
    pub last_ns: i64,
    pub exited: u64,
    /// Blocked goroutines per site, sampled every [`SAMPLE_EVERY_NS`] of trace time.
    pub samples: crate::detect::growth::Samples<Site>,
    last_sample_ns: Option<i64>,
}

impl Histories {
    /// Folds one change in.
    pub fn apply(&mut self, c: Change) {
        self.tick(c.time);
        let first = *self.first_ns.get_or_insert(c.time);
        let h = self
            .live
            .entry(c.goid)
            .or_insert_with(|| History::new(c.goid, c.time));
        match (c.from, c.to) {
            (GState::NotExist, to) => {
                h.created_ns = Some(c.time);
                h.creator = c.by;
                h.creation_stack = c.creator_stack;
                h.start_stack = c.stack.clone();
                h.state = to;
                h.since_ns = c.time;
                if to == GState::Waiting {
                    // GoCreateBlocked: born waiting (e.g. a goroutine created by a timer).
                    h.block_reason = Some(c.reason.clone());
                }
                return;
            }
            (_, GState::NotExist) => {
                self.live.remove(&c.goid);
                self.exited += 1;
                return;
            }
            (GState::Unknown, to) => {
                // GoStatus at a generation's start: only the first one says anything new.
                if h.state == GState::Unknown {
                    h.since_trace_start = h.created_ns.is_none();
                    h.state = to;
                    h.since_ns = first;
                    if to == GState::Waiting {
                        h.block_stack = c.stack.clone();
                        h.wait_reason = wait_reason("", c.stack.as_deref().unwrap_or(&[]));
                    }
                }
                return;
            }
            (from, to) if from == to => {
                // A goroutine's status restated at a generation's start (GoStatus, whose "from"
                // Go's reader fills in from what it already knows): no new transition.
                if h.block_stack.is_none() && to == GState::Waiting {
                    h.block_stack = c.stack;
                }
                return;
            }
            _ => {}
        }
        if c.to == GState::Waiting {
            h.block_count += 1;
            h.wait_reason = wait_reason(&c.reason, c.stack.as_deref().unwrap_or(&[]));
            h.block_reason = Some(c.reason);
            h.block_stack = c.stack;
        }
        if c.from == GState::Waiting && c.to == GState::Runnable {
            h.unblock_count += 1;
            if h.unblocks.len() == KEEP_UNBLOCKS {
                h.unblocks.pop_front();
            }
            h.unblocks.push_back(Unblock {
                time_ns: c.time,
                by: c.by,
                thread: c.thread,
            });
        }
        if c.to == GState::Running || c.from == GState::Running {
            h.last_run_ns = Some(c.time);
            h.last_thread = c.thread.or(h.last_thread);
        }
        h.state = c.to;
        h.since_ns = c.time;
        h.since_trace_start = false;
    }

    /// The trace's clock moved on (every event, not only goroutine changes).
    pub fn tick(&mut self, time: i64) {
        self.last_ns = self.last_ns.max(time);
        let due = self
            .last_sample_ns
            .is_none_or(|t| time.saturating_sub(t) >= SAMPLE_EVERY_NS as i64);
        if due && !self.live.is_empty() {
            self.last_sample_ns = Some(time);
            self.sample(time);
        }
    }

    fn sample(&mut self, time: i64) {
        let mut counts: FxHashMap<Site, u64> = FxHashMap::default();
        for h in self.live.values().filter(|h| h.state == GState::Waiting) {
            if let (Some((_, loc)), Some(reason)) = (h.go_statement(), h.wait_reason.clone()) {
                *counts.entry((loc, reason)).or_default() += 1;
            }
        }
        self.samples.record(time.max(0) as u64, counts);
    }

    /// The trace's span, ns.
    pub fn span_ns(&self) -> u64 {
        self.first_ns
            .map_or(0, |f| self.last_ns.saturating_sub(f).max(0) as u64)
    }
}

fn has(stack: &[TFrame], names: &[&str]) -> bool {
    stack
        .iter()
        .any(|f| names.iter().any(|n| f.function.as_ref() == *n))
}

/// The goroutine table's wait reason (runtime/runtime2.go, waitReasonStrings) for a trace's
/// block reason (runtime/traceruntime.go, traceBlockReasonStrings) and the blocking stack. The
/// trace's reasons are coarser ("forever" is a nil channel or an empty select, "sync" any of
/// the sync primitives); the stack says which. An empty reason (a goroutine already waiting
/// when the trace began, GoStatusStack) is read off the stack alone.
pub fn wait_reason(trace_reason: &str, stack: &[TFrame]) -> Option<Text> {
    let s = |r: &str| Some(Text::from(r));
    let sync = || {
        if has(stack, &["sync.(*WaitGroup).Wait"]) {
            s("sync.WaitGroup.Wait")
        } else if has(stack, &["sync.(*RWMutex).RLock"]) {
            s("sync.RWMutex.RLock")
        } else if has(stack, &["sync.(*RWMutex).Lock"]) {
            s("sync.RWMutex.Lock")
        } else if has(
            stack,
            &["sync.(*Mutex).Lock", "internal/sync.(*Mutex).Lock"],
        ) {
            s("sync.Mutex.Lock")
        } else if has(stack, &["sync.(*Cond).Wait"]) {
            s("sync.Cond.Wait")
        } else {
            s("semacquire")
        }
    };
    let nil_or = |plain: &str, nil: &str| {
        if trace_reason == "forever" {
            s(nil)
        } else {
            s(plain)
        }
    };
    let chan_recv = ["runtime.chanrecv1", "runtime.chanrecv2", "runtime.chanrecv"];
    let chan_send = ["runtime.chansend1", "runtime.chansend"];
    match trace_reason {
        "chan receive" => s("chan receive"),
        "chan send" => s("chan send"),
        "select" => s("select"),
        "sync.(*Cond).Wait" => s("sync.Cond.Wait"),
        "sync" => sync(),
        "sleep" => s("sleep"),
        "network" => s("IO wait"),
        "forever" | "" | "unspecified" => {
            if has(stack, &chan_recv) {
                nil_or("chan receive", "chan receive (nil chan)")
            } else if has(stack, &chan_send) {
                nil_or("chan send", "chan send (nil chan)")
            } else if has(stack, &["runtime.block"]) {
                s("select (no cases)")
            } else if has(stack, &["runtime.selectgo"]) {
                s("select")
            } else if has(stack, &["time.Sleep"]) {
                s("sleep")
            } else if has(stack, &["internal/poll.runtime_pollWait"]) {
                s("IO wait")
            } else if stack.iter().any(|f| f.function.starts_with("sync.")) {
                sync()
            } else if trace_reason == "forever" {
                s("forever")
            } else {
                None
            }
        }
        other => s(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(frames: &[(&str, &str, u32)]) -> TStack {
        frames
            .iter()
            .map(|&(f, file, line)| TFrame {
                function: f.into(),
                file: file.into(),
                line,
            })
            .collect::<Vec<_>>()
            .into()
    }

    fn change(goid: u64, time: i64, from: GState, to: GState) -> Change {
        Change {
            goid,
            time,
            from,
            to,
            by: None,
            thread: Some(100),
            reason: "".into(),
            stack: None,
            creator_stack: None,
        }
    }

    #[test]
    fn a_goroutine_created_unblocked_and_blocked_for_good() {
        use GState::*;
        let mut h = Histories::default();
        h.apply(change(1, 10, Unknown, Running));
        h.apply(Change {
            by: Some(1),
            stack: Some(stack(&[("main.worker", "/m/main.go", 40)])),
            creator_stack: Some(stack(&[("main.main", "/m/main.go", 12)])),
            ..change(7, 20, NotExist, Runnable)
        });
        h.apply(change(7, 30, Runnable, Running));
        let recv = stack(&[
            ("runtime.chanrecv2", "/go/chan.go", 1),
            ("main.worker", "/m/main.go", 44),
        ]);
        h.apply(Change {
            reason: "chan receive".into(),
            stack: Some(recv.clone()),
            ..change(7, 40, Running, Waiting)
        });
        h.apply(Change {
            by: Some(1),
            ..change(7, 50, Waiting, Runnable)
        });
        h.apply(change(7, 60, Runnable, Running));
        h.apply(Change {
            reason: "chan receive".into(),
            stack: Some(recv),
            ..change(7, 70, Running, Waiting)
        });
        let g = &h.live[&7];
        assert_eq!(g.state, Waiting);
        assert_eq!(g.since_ns, 70);
        assert_eq!(g.creator, Some(1));
        assert_eq!(g.go_statement().unwrap().1.as_ref(), "/m/main.go:12");
        assert_eq!(g.start_function().as_deref(), Some("main.worker"));
        assert_eq!(g.wait_reason.as_deref(), Some("chan receive"));
        assert_eq!(g.unblock_count, 1);
        assert_eq!(g.unblocks[0].by, Some(1));
        assert_eq!(g.last_run_ns, Some(70));
        assert!(!g.since_trace_start);
        assert!(h.live[&1].since_trace_start);
        h.apply(change(7, 80, Waiting, NotExist));
        assert!(!h.live.contains_key(&7));
        assert_eq!(h.exited, 1);
        assert_eq!(h.span_ns(), 70);
    }

    #[test]
    fn a_status_restated_at_a_generation_start_is_not_a_new_block() {
        use GState::*;
        let mut h = Histories::default();
        h.apply(change(3, 10, NotExist, Runnable));
        h.apply(change(3, 20, Runnable, Running));
        h.apply(Change {
            reason: "chan receive".into(),
            stack: Some(stack(&[("runtime.chanrecv1", "c.go", 1)])),
            ..change(3, 30, Running, Waiting)
        });
        h.apply(Change {
            stack: Some(stack(&[("runtime.gopark", "p.go", 1)])),
            ..change(3, 1000, Waiting, Waiting)
        });
        let g = &h.live[&3];
        assert_eq!(g.since_ns, 30);
        assert_eq!(g.block_count, 1);
        assert_eq!(
            g.block_stack.as_ref().unwrap()[0].function.as_ref(),
            "runtime.chanrecv1"
        );
    }

    #[test]
    fn reasons_from_the_trace_and_the_stack() {
        let nil_recv = stack(&[("runtime.chanrecv1", "c.go", 1), ("main.f", "m.go", 2)]);
        assert_eq!(
            wait_reason("forever", &nil_recv).as_deref(),
            Some("chan receive (nil chan)")
        );
        let nil_send = stack(&[("runtime.chansend1", "c.go", 1)]);
        assert_eq!(
            wait_reason("forever", &nil_send).as_deref(),
            Some("chan send (nil chan)")
        );
        let block = stack(&[("runtime.block", "s.go", 1)]);
        assert_eq!(
            wait_reason("forever", &block).as_deref(),
            Some("select (no cases)")
        );
        let mu = stack(&[
            ("internal/sync.(*Mutex).lockSlow", "m.go", 1),
            ("internal/sync.(*Mutex).Lock", "m.go", 2),
            ("sync.(*Mutex).Lock", "m.go", 3),
        ]);
        assert_eq!(wait_reason("sync", &mu).as_deref(), Some("sync.Mutex.Lock"));
        let wg = stack(&[("sync.(*WaitGroup).Wait", "w.go", 1)]);
        assert_eq!(
            wait_reason("sync", &wg).as_deref(),
            Some("sync.WaitGroup.Wait")
        );
        // Waiting since before the trace: the stack alone.
        assert_eq!(wait_reason("", &nil_recv).as_deref(), Some("chan receive"));
        assert_eq!(wait_reason("", &[]), None);
        assert_eq!(wait_reason("network", &[]).as_deref(), Some("IO wait"));
    }

    #[test]
    fn growth_is_sampled_per_site() {
        use GState::*;
        let mut h = Histories::default();
        let step = SAMPLE_EVERY_NS as i64;
        let recv = stack(&[("runtime.chanrecv1", "c.go", 1), ("main.h", "m.go", 9)]);
        for i in 0..5i64 {
            let goid = 10 + i as u64;
            h.apply(Change {
                creator_stack: Some(stack(&[("main.handle", "m.go", 8)])),
                ..change(goid, i * step + 1, NotExist, Runnable)
            });
            h.apply(change(goid, i * step + 2, Runnable, Running));
            h.apply(Change {
                reason: "chan receive".into(),
                stack: Some(recv.clone()),
                ..change(goid, i * step + 3, Running, Waiting)
            });
        }
        h.tick(5 * step + 10);
        let series = &h.samples.series[&(Text::from("m.go:8"), Text::from("chan receive"))];
        let counts: Vec<u64> = series.iter().map(|s| s.1).collect();
        assert_eq!(counts, vec![1, 2, 3, 4, 5]);
        assert!(crate::detect::growth::growth(series).is_some());
    }
}
