//! Execution traces joined with what the probes saw.
//!
//! - [`history`]: a trace's events folded into one history per goroutine (created by whom and
//!   where, blocked why and since when, who unblocked it), memory bounded by the goroutines
//!   alive, not by the trace's length.
//! - [`offline`]: `blockprobe analyze trace.out`, the detector run on a trace alone.
//! - [`clock`]: the trace's clock put onto CLOCK_MONOTONIC (the probes' clock).
//! - [`fetch`]: fetching a trace from the target's net/http/pprof endpoint.
//! - [`join`]: the fused report: each finding with both views, keyed by goid and thread id.

pub mod clock;
pub mod events;
pub mod fetch;
pub mod history;
pub mod join;
pub mod offline;

use serde::Serialize;

/// The execution trace behind a report: what it held, and how its clock lines up with the
/// probes'.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    /// The file read (or the URL it was fetched from).
    pub source: String,
    /// The trace format, as its header names it (`go 1.25 trace`).
    pub format: String,
    pub bytes: u64,
    pub events: u64,
    pub generations: u64,
    /// From the first event to the last, ns.
    pub span_ns: u64,
    /// Goroutines alive at the trace's end, and goroutines that exited during it.
    pub goroutines_alive: usize,
    pub goroutines_exited: u64,
    /// The trace ended inside a generation: what was read, and what was lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
    /// How trace time maps onto CLOCK_MONOTONIC (the probes' clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<clock::Alignment>,
    /// The trace's first and last event on CLOCK_MONOTONIC.
    pub start_mono_ns: i64,
    pub end_mono_ns: i64,
}

impl TraceSummary {
    pub fn write_text(&self, out: &mut dyn std::fmt::Write) {
        let _ = writeln!(
            out,
            "blockprobe: trace {} ({}, {:.1} MB, {} events in {} generation(s) over {:.3}s); \
             {} goroutines alive at its end, {} exited during it",
            self.source,
            self.format,
            self.bytes as f64 / 1e6,
            self.events,
            self.generations,
            self.span_ns as f64 / 1e9,
            self.goroutines_alive,
            self.goroutines_exited
        );
        if let Some(c) = &self.clock {
            let _ = writeln!(
                out,
                "  clock: {} ({} sample(s)): trace time + {} ns = CLOCK_MONOTONIC, residual {}",
                c.method,
                c.samples,
                c.offset_ns,
                c.residual_ns
                    .map_or("unmeasured".to_string(), |r| format!("{r} ns"))
            );
        }
        if let Some(t) = &self.truncated {
            let _ = writeln!(out, "  warning: {t}");
        }
    }
}

/// The probes' view of the goroutine `goid` in a live report: blocked (with the object it
/// waits on) or in a system call (with its thread and native frames).
fn probe_view(
    report: &crate::report::Report,
    goid: u64,
    report_mono: i64,
) -> Option<join::ProbeView> {
    if let Some(g) = report.blocked.iter().find(|g| g.goid == goid) {
        return Some(join::ProbeView {
            source: g.source,
            wait_reason: g.wait_reason.clone(),
            object_kind: g.object_kind,
            object: Some(g.object).filter(|o| o.0 != 0),
            wait_chans: g.wait_chans.to_vec(),
            blocked_since_mono_ns: Some(report_mono.saturating_sub(g.blocked_ns as i64)),
            blocked_before_attach: g.blocked_before_attach,
            tid: Some(g.tid).filter(|&t| t != 0),
            thread_state: None,
            native_frames: Vec::new(),
        });
    }
    let s = report.in_syscall.iter().find(|s| s.goid == goid)?;
    Some(join::ProbeView {
        source: "scan",
        wait_reason: crate::report::Text::from("syscall"),
        object_kind: "none",
        tid: s.tid,
        thread_state: s.thread.as_ref().map(|t| t.state_name.to_string()),
        native_frames: s
            .stack
            .iter()
            .flat_map(|st| st.frames.iter())
            .filter(|f| f.kind != "go")
            .map(|f| match &f.module {
                Some(m) => format!("{} ({m})", f.function),
                None => f.function.clone(),
            })
            .collect(),
        ..join::ProbeView::default()
    })
}

/// Joins a live report with a trace of the same process: each finding gets both views of its
/// first goroutine, the trace's summary goes into the report, and every disagreement is
/// counted in the report's warnings. `probe_stamps` are the probes' transitions, for traces
/// without clock snapshots.
pub fn fuse_live(
    report: &mut crate::report::Report,
    facts: &offline::TraceFacts,
    probe_stamps: &[clock::Stamp],
) {
    let report_mono = report.at_mono_ns as i64;
    let alignment = offline::align(facts, probe_stamps);
    let views: Vec<Option<join::ProbeView>> = report
        .findings
        .iter()
        .map(|f| probe_view(report, *f.goroutines.first()?, report_mono))
        .collect();
    attach_views(report, facts, alignment, views);
}

/// `blockprobe fuse`: the trace's report, with each goroutine's object taken from the probes'
/// last view of it (so findings are told apart by object, as live), and both views on each
/// finding.
pub fn fuse_offline(
    probe: &events::ProbeEvents,
    facts: &offline::TraceFacts,
    threshold_ns: u64,
    policy: &crate::detect::allow::Policy,
) -> crate::report::Report {
    let mut report = offline::report(facts, threshold_ns, policy, Some(probe));
    let alignment = offline::align(facts, &probe.stamps);
    let views: Vec<Option<join::ProbeView>> = report
        .findings
        .iter()
        .map(|f| Some(probe.parked.get(f.goroutines.first()?)?.view()))
        .collect();
    attach_views(&mut report, facts, alignment, views);
    report
}

/// Puts the trace's view next to each finding's probe view (`probes[i]` for finding `i`).
fn attach_views(
    report: &mut crate::report::Report,
    facts: &offline::TraceFacts,
    alignment: clock::Alignment,
    probes: Vec<Option<join::ProbeView>>,
) {
    let hs = &facts.histories;
    let summary = offline::summary(facts, &alignment);
    let mut disagreeing = 0;
    for (f, probe) in report.findings.iter_mut().zip(probes) {
        let (Some(&goid), Some(probe)) = (f.goroutines.first(), probe) else {
            continue;
        };
        let trace = hs
            .live
            .get(&goid)
            .map(|h| join::trace_view(h, &alignment, hs.last_ns));
        let disagreements = join::disagreements(
            trace.as_ref(),
            &probe,
            summary.start_mono_ns,
            summary.end_mono_ns,
        );
        if !disagreements.is_empty() {
            disagreeing += 1;
        }
        f.fused = Some(Box::new(join::Fused {
            goid,
            trace,
            probe,
            disagreements,
        }));
    }
    if disagreeing > 0 {
        report.warnings.push(format!(
            "the execution trace and the probes disagree on {disagreeing} finding(s): see each \
             finding's fused.disagreements"
        ));
    }
    report.trace = Some(summary);
}
