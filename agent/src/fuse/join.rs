//! The fused view of a finding: what the execution trace says about its goroutine next to what
//! the probes saw, joined on the goid (the trace's G is the goid) and the thread (the trace's M
//! is the OS thread id), on one clock ([`super::clock`]). Where the two disagree, the view says
//! so rather than picking one.

use serde::Serialize;

use super::clock::Alignment;
use super::history::{GState, History, TFrame};
use crate::report::{Hex, Text};

/// Frames of the trace's stack kept in a view.
const VIEW_FRAMES: usize = 32;

/// A block and an unblock more than this far apart on the two sides are not the same one,
/// when the probe's time is exact (a uprobe)...
const EXACT_SLACK_NS: i64 = 5_000_000;
/// ...or when it is the first scan that saw the wait (scan mode: a scan interval late at most,
/// plus the scan's own time).
const SCAN_SLACK_NS: i64 = 250_000_000;

/// Both views of one goroutine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Fused {
    pub goid: u64,
    /// None: the trace never mentions the goroutine.
    pub trace: Option<TraceView>,
    pub probe: ProbeView,
    /// Where the two sources disagree, in plain words.
    pub disagreements: Vec<String>,
}

/// Who made the goroutine runnable, and when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnblockView {
    /// The goroutine whose operation made it runnable (None: the runtime, e.g. a timer).
    pub by: Option<u64>,
    /// CLOCK_MONOTONIC ns (trace time put on the probes' clock).
    pub mono_ns: i64,
    pub thread: Option<u64>,
}

/// What the trace says about a goroutine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TraceView {
    /// Its state when the trace ended.
    pub state: GState,
    /// In that state since (CLOCK_MONOTONIC ns), and for how long by the trace's end.
    pub since_mono_ns: i64,
    pub in_state_ns: u64,
    /// It was already in that state when the trace began (`since` is the trace's start).
    pub since_before_trace: bool,
    /// The runtime's block reason as the trace records it (runtime/traceruntime.go), and the
    /// goroutine table's wait reason it maps to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_reason: Option<Text>,
    /// The stack the trace recorded at the block, innermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<TFrame>,
    /// Who created it and where (the `go` statement), when the trace saw it created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_mono_ns: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_function: Option<Text>,
    /// The last time it started or stopped running, and on which thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run_mono_ns: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_thread: Option<u64>,
    /// How many times it was made runnable during the trace, and the latest of those.
    pub unblock_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unblocked: Vec<UnblockView>,
}

/// What the probes saw of the goroutine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ProbeView {
    /// "uprobe" or "scan".
    pub source: &'static str,
    pub wait_reason: Text,
    pub object_kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Hex>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wait_chans: Vec<Hex>,
    /// Blocked since (CLOCK_MONOTONIC ns), or None when that is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_since_mono_ns: Option<i64>,
    /// The block began before the probes were attached: `blocked_since_mono_ns` is an upper
    /// bound.
    pub blocked_before_attach: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    /// The thread's kernel state (goroutines in a syscall or cgo call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_state: Option<String>,
    /// C and kernel frames of a goroutine inside a syscall or cgo call, innermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub native_frames: Vec<String>,
}

impl Fused {
    /// A few lines under the finding in the text report.
    pub fn write_text(&self, out: &mut dyn std::fmt::Write) {
        let p = &self.probe;
        let obj = p
            .object
            .map(|o| format!(" on {} {o}", p.object_kind))
            .unwrap_or_default();
        let tid = p.tid.map(|t| format!(", thread {t}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "      probes: goroutine {} {}{obj}{tid} ({})",
            self.goid, p.wait_reason, p.source
        );
        if !p.native_frames.is_empty() {
            let _ = writeln!(out, "        native: {}", p.native_frames.join(" <- "));
        }
        match &self.trace {
            None => {
                let _ = writeln!(
                    out,
                    "      trace: goroutine {} is not in the trace",
                    self.goid
                );
            }
            Some(t) => {
                let created = match (&t.created_by, &t.created_at) {
                    (Some(by), Some(at)) => format!("created by goroutine {by} at {at}"),
                    _ => "created before the trace began".to_string(),
                };
                let reason = t
                    .block_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "      trace: {created}; {:?}{reason} for {:.3}s at the trace's end{}",
                    t.state,
                    t.in_state_ns as f64 / 1e9,
                    if t.since_before_trace {
                        " (since before it began)"
                    } else {
                        ""
                    }
                );
                if let Some(last) = t.unblocked.last() {
                    let by = last
                        .by
                        .map_or("the runtime".to_string(), |g| format!("goroutine {g}"));
                    let _ = writeln!(
                        out,
                        "        unblocked {} time(s) during the trace, last by {by}{}",
                        t.unblock_count,
                        last.thread
                            .map(|t| format!(" on thread {t}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        for d in &self.disagreements {
            let _ = writeln!(out, "      disagreement: {d}");
        }
    }
}

/// The trace's view of `h`, on the probes' clock; `end_ns` is the trace's end (trace time).
pub fn trace_view(h: &History, clock: &Alignment, end_ns: i64) -> TraceView {
    let stack: Vec<TFrame> = match (h.state, &h.block_stack) {
        (GState::Waiting, Some(s)) => s.iter().take(VIEW_FRAMES).cloned().collect(),
        _ => Vec::new(),
    };
    let waiting = h.state == GState::Waiting;
    TraceView {
        state: h.state,
        since_mono_ns: clock.to_mono(h.since_ns),
        in_state_ns: end_ns.saturating_sub(h.since_ns).max(0) as u64,
        since_before_trace: h.since_trace_start,
        block_reason: h.block_reason.clone().filter(|r| waiting && !r.is_empty()),
        wait_reason: h.wait_reason.clone().filter(|_| waiting),
        stack,
        created_by: h.creator,
        created_at: h.go_statement().map(|(_, loc)| loc),
        created_mono_ns: h.created_ns.map(|t| clock.to_mono(t)),
        start_function: h.start_function(),
        last_run_mono_ns: h.last_run_ns.map(|t| clock.to_mono(t)),
        last_thread: h.last_thread,
        unblock_count: h.unblock_count,
        unblocked: h
            .unblocks
            .iter()
            .map(|u| UnblockView {
                by: u.by,
                mono_ns: clock.to_mono(u.time_ns),
                thread: u.thread,
            })
            .collect(),
    }
}

/// The disagreements between the two views. `trace_end_mono` is when the trace ended (on the
/// probes' clock): the probes may rightly see a block that began after it.
pub fn disagreements(
    trace: Option<&TraceView>,
    probe: &ProbeView,
    trace_start_mono: i64,
    trace_end_mono: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let slack = if probe.source == "uprobe" {
        EXACT_SLACK_NS
    } else {
        SCAN_SLACK_NS
    };
    let since = probe.blocked_since_mono_ns;
    // Blocked, per the probes, before the trace ended (by more than the probes' own slack).
    let blocked_within_trace = since.is_none_or(|s| s.saturating_add(slack) < trace_end_mono);
    let Some(t) = trace else {
        if blocked_within_trace {
            out.push(
                "the trace does not mention this goroutine, though the probes had it blocked \
                 while the trace ran"
                    .to_string(),
            );
        }
        return out;
    };
    if t.state != GState::Waiting {
        if blocked_within_trace {
            out.push(format!(
                "the trace ends with the goroutine {:?} (since {}), but the probes saw it \
                 blocked before that",
                t.state,
                ago(t.since_mono_ns, trace_end_mono)
            ));
        }
        return out;
    }
    if let (Some(tr), false) = (&t.wait_reason, probe.wait_reason.is_empty())
        && tr.as_ref() != probe.wait_reason.as_ref()
    {
        out.push(format!(
            "wait reason: the trace says {tr:?} (block reason {:?}), the probes {:?}",
            t.block_reason.as_deref().unwrap_or(""),
            probe.wait_reason
        ));
    }
    // The trace's M is the OS thread id: a goroutine in a syscall is on the thread the probes
    // name, and a park a uprobe saw happened on the thread the trace has it last run on.
    let same_block = since.is_some_and(|s| s.abs_diff(t.since_mono_ns) <= slack as u64);
    let thread_matters = t.state == GState::Syscall
        || (t.state == GState::Waiting && probe.source == "uprobe" && same_block);
    if let (Some(tid), Some(m), true) = (probe.tid, t.last_thread, thread_matters)
        && u64::from(tid) != m
    {
        out.push(format!(
            "thread: the trace has it last on thread {m}, the probes on thread {tid}"
        ));
    }
    if let Some(s) = since
        && !t.since_before_trace
        && !probe.blocked_before_attach
        && s > trace_start_mono
    {
        let diff = s.saturating_sub(t.since_mono_ns);
        // The probe sees a block no earlier than the runtime records it (the gopark probe
        // fires first, by microseconds; a scan later, by up to an interval).
        if diff.abs() > slack {
            // Runs the trace saw between the two: a scan sees one long wait when each run of
            // the goroutine falls between two scans.
            let runs_between = t
                .unblocked
                .iter()
                .filter(|u| u.mono_ns > s && u.mono_ns <= t.since_mono_ns)
                .count();
            let why = if runs_between > 0 && probe.source == "scan" {
                format!(
                    "; the trace shows it made runnable {runs_between} time(s) in between, each \
                     run too short for the scans to see"
                )
            } else {
                String::new()
            };
            out.push(format!(
                "blocked since: the trace says {}, the probes {} ({:+.3} ms apart){why}",
                ago(t.since_mono_ns, trace_end_mono),
                ago(s, trace_end_mono),
                diff as f64 / 1e6
            ));
        }
    }
    out
}

/// A time relative to the trace's end, for messages.
fn ago(t: i64, end: i64) -> String {
    let d = end.saturating_sub(t);
    if d >= 0 {
        format!("{:.3}s before the trace's end", d as f64 / 1e9)
    } else {
        format!("{:.3}s after the trace's end", -d as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::clock;

    fn view(state: GState, since: i64) -> TraceView {
        TraceView {
            state,
            since_mono_ns: since,
            in_state_ns: 0,
            since_before_trace: false,
            block_reason: Some("chan receive".into()),
            wait_reason: Some("chan receive".into()),
            stack: Vec::new(),
            created_by: None,
            created_at: None,
            created_mono_ns: None,
            start_function: None,
            last_run_mono_ns: None,
            last_thread: None,
            unblock_count: 0,
            unblocked: Vec::new(),
        }
    }

    fn probe(source: &'static str, reason: &str, since: i64) -> ProbeView {
        ProbeView {
            source,
            wait_reason: reason.into(),
            object_kind: "chan",
            blocked_since_mono_ns: Some(since),
            ..ProbeView::default()
        }
    }

    #[test]
    fn agreeing_views_have_no_disagreement() {
        let s = 1_500_000_000;
        let t = view(GState::Waiting, s);
        assert!(
            disagreements(
                Some(&t),
                &probe("uprobe", "chan receive", s - 3_000),
                1_000_000_000,
                3_000_000_000
            )
            .is_empty()
        );
        // A scan sees the wait up to an interval later.
        assert!(
            disagreements(
                Some(&t),
                &probe("scan", "chan receive", s + 90_000_000),
                1_000_000_000,
                3_000_000_000
            )
            .is_empty()
        );
    }

    #[test]
    fn disagreements_are_reported() {
        let (start, end) = (1_000_000_000, 3_000_000_000);
        let t = view(GState::Waiting, 1_500_000_000);
        let d = disagreements(
            Some(&t),
            &probe("uprobe", "select", 1_500_000_000),
            start,
            end,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("wait reason"));
        let d = disagreements(
            Some(&t),
            &probe("uprobe", "chan receive", 1_200_000_000),
            start,
            end,
        );
        assert!(d[0].contains("blocked since"), "{d:?}");
        let running = view(GState::Running, 2_900_000_000);
        let d = disagreements(
            Some(&running),
            &probe("scan", "chan receive", 1_200_000_000),
            start,
            end,
        );
        assert!(d[0].contains("Running"), "{d:?}");
        // The same park, seen on two threads.
        let on_42 = TraceView {
            last_thread: Some(42),
            ..view(GState::Waiting, 1_500_000_000)
        };
        let p = ProbeView {
            tid: Some(43),
            ..probe("uprobe", "chan receive", 1_499_990_000)
        };
        let d = disagreements(Some(&on_42), &p, start, end);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("thread:"), "{d:?}");
        let p = ProbeView { tid: Some(42), ..p };
        assert!(disagreements(Some(&on_42), &p, start, end).is_empty());
        // Blocked after the trace ended: nothing to compare.
        assert!(
            disagreements(
                Some(&running),
                &probe("scan", "chan receive", 3_500_000_000),
                start,
                end
            )
            .is_empty()
        );
        assert!(
            !disagreements(
                None,
                &probe("scan", "chan receive", 1_200_000_000),
                start,
                end
            )
            .is_empty()
        );
    }

    #[test]
    fn trace_view_puts_times_on_the_probes_clock() {
        use crate::fuse::history::{Change, Histories};
        let mut hs = Histories::default();
        let c = |goid, time, from, to, by| Change {
            goid,
            time,
            from,
            to,
            by,
            thread: Some(42),
            reason: "chan receive".into(),
            stack: None,
            creator_stack: None,
        };
        hs.apply(c(5, 100, GState::NotExist, GState::Runnable, Some(1)));
        hs.apply(c(5, 110, GState::Runnable, GState::Running, None));
        hs.apply(c(5, 120, GState::Running, GState::Waiting, None));
        hs.apply(c(5, 130, GState::Waiting, GState::Runnable, Some(3)));
        hs.apply(c(5, 140, GState::Runnable, GState::Running, None));
        hs.apply(c(5, 150, GState::Running, GState::Waiting, None));
        let a = clock::Alignment {
            offset_ns: 1000,
            ..clock::assumed(64)
        };
        let v = trace_view(&hs.live[&5], &a, 200);
        assert_eq!(v.state, GState::Waiting);
        assert_eq!(v.since_mono_ns, 1150);
        assert_eq!(v.in_state_ns, 50);
        assert_eq!(v.created_by, Some(1));
        assert_eq!(v.created_mono_ns, Some(1100));
        assert_eq!(v.unblock_count, 1);
        assert_eq!(
            v.unblocked,
            vec![UnblockView {
                by: Some(3),
                mono_ns: 1130,
                thread: Some(42)
            }]
        );
        assert_eq!(v.last_thread, Some(42));
    }
}
