//! A saved report read back: the owned, deserializable view of [`crate::report::Report`] that
//! `blockprobe report FILE --html OUT` and the timeline work from.
//!
//! The report itself is built for writing (`&'static str`, shared `Arc<str>`, types from many
//! modules); this view holds only what the exports show, in owned types, with every field that
//! a report of some mode may lack defaulted, so that a report from `attach`, `run`, `analyze` or
//! `fuse` reads back alike. The same view is made from an in-memory report (through its JSON),
//! so `run --html` and `report --html` render from one code path.

use serde::Deserialize;

/// The schema family this view reads (`blockprobe.report/N`).
pub const SCHEMA_PREFIX: &str = "blockprobe.report/";

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("not a blockprobe report: it has no \"schema\" field (expected \"{SCHEMA_PREFIX}N\")")]
    NoSchema,
    #[error("not a blockprobe report: its schema is {0:?}, not \"{SCHEMA_PREFIX}N\"")]
    OtherSchema(String),
    #[error("a malformed blockprobe report: {0}")]
    Malformed(serde_json::Error),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TargetView {
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
    pub pie: bool,
    pub stripped: bool,
    pub cgo: bool,
    pub layout_source: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SiteView {
    pub function: String,
    pub location: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CreationView {
    pub function: String,
    pub location: Option<String>,
    pub parent_goid: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BlockedView {
    pub goid: u64,
    pub wait_reason: String,
    pub blocked_ns: u64,
    pub object_kind: String,
    pub object: String,
    pub parked_in: Option<String>,
    pub tid: u32,
    pub blocked_before_attach: bool,
    pub wait_chans: Vec<String>,
    pub created_by: Option<CreationView>,
    pub start_function: Option<String>,
    pub blocked_at: Option<SiteView>,
    pub stack: Option<usize>,
    pub source: String,
}

impl BlockedView {
    /// The objects it waits on: its channels (a select waits on several), else its object;
    /// unknown addresses (`0x0`, from a trace) left out.
    pub fn waited_on(&self) -> Vec<&str> {
        let all: Vec<&str> = if self.wait_chans.is_empty() {
            vec![self.object.as_str()]
        } else {
            self.wait_chans.iter().map(String::as_str).collect()
        };
        all.into_iter().filter(|o| !is_null_addr(o)).collect()
    }
}

/// `0x0`, empty: an address nobody knows.
pub fn is_null_addr(a: &str) -> bool {
    a.is_empty() || a == "0x0" || a == "0"
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FrameView {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub inlined: bool,
    pub wrapper: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LinkView {
    pub goid: u64,
    pub state: String,
    pub wait_reason: Option<String>,
    pub object_kind: Option<String>,
    pub object: Option<String>,
    pub next_by: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UnblockedView {
    pub by: Option<u64>,
    pub mono_ns: i64,
    pub thread: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TraceHistoryView {
    pub state: String,
    pub since_mono_ns: i64,
    pub in_state_ns: u64,
    pub since_before_trace: bool,
    pub block_reason: Option<String>,
    pub wait_reason: Option<String>,
    pub created_by: Option<u64>,
    pub created_at: Option<String>,
    pub created_mono_ns: Option<i64>,
    pub start_function: Option<String>,
    pub last_run_mono_ns: Option<i64>,
    pub last_thread: Option<u64>,
    pub unblock_count: u64,
    pub unblocked: Vec<UnblockedView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FusedView {
    pub goid: u64,
    pub trace: Option<TraceHistoryView>,
    pub disagreements: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FindingView {
    pub pattern: String,
    pub slug: String,
    pub name: String,
    pub severity: String,
    pub confidence: String,
    pub goroutines: Vec<u64>,
    pub count: usize,
    pub object_kind: Option<String>,
    pub object: Option<String>,
    pub objects: Vec<String>,
    pub wait_reason: Option<String>,
    pub blocked_ns: u64,
    pub blocked_before_attach: bool,
    pub blocked_at: Option<SiteView>,
    pub created_by: Option<CreationView>,
    pub stack: Option<usize>,
    pub chain: Vec<LinkView>,
    pub explanation: String,
    pub allowed: bool,
    pub fused: Option<FusedView>,
}

impl FindingView {
    /// The chain closes on itself: every link has an edge to the next, the last to the first
    /// (detect::graph builds a cycle's chain so; a cascade's last link, the root, has none).
    pub fn chain_is_cycle(&self) -> bool {
        self.chain.len() >= 2 && self.chain.iter().all(|l| l.next_by.is_some())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MixedFrameView {
    /// "kernel", "c" or "go".
    pub kind: String,
    pub function: String,
    pub file: String,
    pub line: u32,
    pub inlined: bool,
    pub module: Option<String>,
    pub cgo_boundary: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MixedStackView {
    pub frames: Vec<MixedFrameView>,
    pub native_end: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KernelFrameView {
    pub function: String,
    pub offset: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ThreadView {
    pub tid: u32,
    pub comm: Option<String>,
    pub on_cpu: Option<bool>,
    pub state: String,
    pub state_name: String,
    pub since_ns: u64,
    pub since_before_attach: bool,
    pub in_state_for_ns: u64,
    pub off_cpu_for_ns: Option<u64>,
    pub switches: u64,
    pub wakeups: u64,
    pub off_cpu_total_ns: u64,
    pub on_cpu_total_ns: u64,
    pub waker_tid: Option<u32>,
    pub cpu: Option<u32>,
    pub kernel_stack: Vec<KernelFrameView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SyscallView {
    pub goid: u64,
    pub start_function: Option<String>,
    pub created_by: Option<CreationView>,
    pub tid: Option<u32>,
    pub thread: Option<ThreadView>,
    pub stack: Option<MixedStackView>,
    pub stack_error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunningView {
    pub goid: u64,
    pub status: String,
    pub start_function: Option<String>,
    pub tid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClockView {
    pub method: String,
    pub offset_ns: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TraceSummaryView {
    pub source: String,
    /// How the trace's clock was put on the probes' (`offset_ns`: trace + offset = monotonic).
    pub clock: Option<ClockView>,
    pub format: String,
    pub events: u64,
    pub span_ns: u64,
    pub start_mono_ns: i64,
    pub end_mono_ns: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReportView {
    pub schema: String,
    pub target: TargetView,
    pub mode: String,
    pub trace: Option<TraceSummaryView>,
    pub duration_ns: u64,
    pub end_reason: String,
    pub at_mono_ns: u64,
    pub events_received: u64,
    pub events_lost: u64,
    pub goroutines_seen: usize,
    pub threshold_ns: u64,
    pub blocked: Vec<BlockedView>,
    pub stacks: Vec<Vec<FrameView>>,
    pub findings: Vec<FindingView>,
    pub runtime_goroutines_hidden: usize,
    pub in_syscall: Vec<SyscallView>,
    pub running: Vec<RunningView>,
    pub threads: Vec<ThreadView>,
    pub warnings: Vec<String>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
}

impl ReportView {
    /// Reads a saved report (`--json`, `--report`), refusing what is not one.
    pub fn from_json(text: &str) -> Result<Self, ViewError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(ViewError::NotJson)?;
        Self::from_value(v)
    }

    pub fn from_value(v: serde_json::Value) -> Result<Self, ViewError> {
        match v.get("schema") {
            Some(serde_json::Value::String(s)) if s.starts_with(SCHEMA_PREFIX) => {}
            Some(other) => return Err(ViewError::OtherSchema(other.to_string())),
            None => return Err(ViewError::NoSchema),
        }
        serde_json::from_value(v).map_err(ViewError::Malformed)
    }

    /// The view of a report made in this process (`run --html`, `attach --timeline`).
    pub fn from_report(r: &crate::report::Report) -> Result<Self, ViewError> {
        Self::from_value(serde_json::to_value(r).map_err(ViewError::Malformed)?)
    }

    pub fn blocked_goroutine(&self, goid: u64) -> Option<&BlockedView> {
        self.blocked.iter().find(|b| b.goid == goid)
    }

    pub fn syscall_goroutine(&self, goid: u64) -> Option<&SyscallView> {
        self.in_syscall.iter().find(|s| s.goid == goid)
    }

    pub fn stack(&self, i: Option<usize>) -> Option<&[FrameView]> {
        i.and_then(|i| self.stacks.get(i)).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_report() {
        assert!(matches!(
            ReportView::from_json("{]"),
            Err(ViewError::NotJson(_))
        ));
        assert!(matches!(
            ReportView::from_json(r#"{"traceEvents": []}"#),
            Err(ViewError::NoSchema)
        ));
        let e = ReportView::from_json(r#"{"schema": "blockprobe-bench/2"}"#).unwrap_err();
        assert!(e.to_string().contains("blockprobe-bench/2"), "{e}");
        assert!(matches!(
            ReportView::from_json(r#"{"schema": "blockprobe.report/3", "blocked": 7}"#),
            Err(ViewError::Malformed(_))
        ));
    }

    #[test]
    fn reads_a_minimal_report_with_defaults() {
        let r = ReportView::from_json(
            r#"{"schema": "blockprobe.report/3", "mode": "scan",
                "blocked": [{"goid": 7, "object": "0xc0", "wait_chans": []}],
                "findings": [{"pattern": "BP11", "goroutines": [7, 8],
                  "chain": [{"goid": 7, "next_by": "inferred"}, {"goid": 8, "next_by": "inferred"}]}]}"#,
        )
        .unwrap();
        assert_eq!(r.blocked[0].waited_on(), ["0xc0"]);
        assert!(r.findings[0].chain_is_cycle());
        assert!(r.threads.is_empty());
    }
}
