//! The end-of-session report: JSON (serde) and a human rendering.

use serde::Serialize;

/// Version of the JSON layout below; bump on any incompatible change.
/// The report's schema (docs/report-schema.md, docs/report.schema.json): /2 added `findings`;
/// /3 added reports from execution traces (`mode` "trace", `trace`, `source` "trace",
/// `layout_source` "none") and the fused view of a finding (`fused`).
pub const REPORT_SCHEMA: &str = "blockprobe.report/3";

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
    pub pie: bool,
    pub stripped: bool,
    pub cgo: bool,
    /// Where the struct offsets came from: "dwarf" or "version-table".
    pub layout_source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeInfo {
    pub symbol: String,
    /// Bytes past the function entry where the uprobe sits (after the stack-check prologue).
    pub offset: u64,
}

/// A goroutine blocked at the end of the session.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockedGoroutine {
    pub goid: u64,
    /// The runtime's wait reason, as `runtime.waitReasonStrings` of this binary spells it.
    pub wait_reason: Text,
    pub wait_reason_code: u32,
    /// How long it had been blocked when the report was made, in nanoseconds.
    pub blocked_ns: u64,
    /// What it waits on, as far as the probes tell: kind ("chan", "select", "sema", "other")
    /// and address.
    pub object_kind: &'static str,
    pub object: Hex,
    /// The runtime function that parked it (e.g. `runtime.chanrecv`).
    pub parked_in: Text,
    /// The OS thread it parked on (0 when the park predates the attach).
    pub tid: u32,
    /// Blocked already when blockprobe attached: `blocked_ns` is then a lower bound.
    pub blocked_before_attach: bool,
    /// Every channel it waits on (a select waits on several), from its sudogs.
    pub wait_chans: smallvec::SmallVec<[Hex; 1]>,
    /// Where the `go` statement that created it is.
    pub created_by: Option<CreationSite>,
    /// Its start function.
    pub start_function: Option<Text>,
    /// The code that blocked: the first frame of the stack outside the runtime and sync.
    pub blocked_at: Option<std::sync::Arc<BlockingSite>>,
    /// For a channel send or receive: where its channel was made (the `make(chan …)` line),
    /// as the makechan probe saw it (`crate::chansites`); None when unknown (made before the
    /// attach, probe off) or not a channel wait.
    pub made_at: Option<std::sync::Arc<crate::chansites::MadeAt>>,
    /// Its stack at the park: an index into `Report::stacks` (goroutines blocked at the same
    /// site share one entry, symbolized once).
    pub stack: Option<usize>,
    /// Which mechanism established the block: "uprobe" (seen parking), "scan" (goroutine
    /// table) or "trace" (an execution trace).
    pub source: &'static str,
}

impl BlockedGoroutine {
    /// The objects it waits on: its channels (a select waits on several), else its object.
    pub fn waited_on(&self) -> impl Iterator<Item = u64> + '_ {
        let own = self.wait_chans.is_empty().then_some(self.object.0);
        self.wait_chans.iter().map(|c| c.0).chain(own)
    }
}

/// A goroutine inside a system call or a cgo call (`_Gsyscall`), joined with its OS thread as
/// the scheduler tracepoints see it.
#[derive(Debug, Clone, Serialize)]
pub struct SyscallGoroutine {
    pub goid: u64,
    pub start_function: Option<String>,
    pub created_by: Option<CreationSite>,
    /// Its OS thread (`g.m.procid`), when the g → m link could be read.
    pub tid: Option<u32>,
    /// The thread's state from sched_switch/sched_waking (and /proc at attach).
    pub thread: Option<crate::threads::ThreadState>,
    /// The whole stack, innermost first: kernel frames, C frames (libc included), the cgo
    /// boundary and the Go frames, for a thread asleep in the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<crate::native::stitch::MixedStack>,
    /// Why there is no `stack` for a sleeping thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_error: Option<String>,
}

/// A goroutine on a CPU (or about to be) when the report was made, and its OS thread.
#[derive(Debug, Clone, Serialize)]
pub struct RunningGoroutine {
    pub goid: u64,
    /// "running" or "runnable".
    pub status: &'static str,
    pub start_function: Option<String>,
    /// Its OS thread (`g.m.procid`) while running; None when runnable (no M).
    pub tid: Option<u32>,
}

/// An address, written as `0x…` (in JSON, a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hex(pub u64);

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Text shared by many entries (function names, file:line, wait reasons): 100k goroutines
/// blocked at one site hold one copy of each.
pub type Text = std::sync::Arc<str>;

/// Where a goroutine blocked, in the code that called into the runtime.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockingSite {
    pub function: Text,
    /// `file:line`.
    pub location: Text,
}

/// The `go` statement that created a goroutine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CreationSite {
    /// The function containing the `go` statement.
    pub function: Text,
    /// `file:line` of the `go` statement.
    pub location: Option<Text>,
    /// The creating goroutine.
    pub parent_goid: u64,
}

/// Why the session ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    Duration,
    Signal,
    TargetExited,
    /// A trace read to its end (`analyze`).
    TraceEnd,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub target: Target,
    /// How the facts were gathered: "scan" (goroutine-table scans, no per-operation probe) or
    /// "precise" (every uprobe); "trace" for `blockprobe analyze` (an execution trace alone).
    /// Each blocked goroutine's `source` says what saw its wait.
    pub mode: &'static str,
    /// The execution trace read (`analyze`, `fuse`, `attach --trace-from`): what it held, how
    /// its clock was aligned with the probes'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::fuse::TraceSummary>,
    pub probes: Vec<ProbeInfo>,
    /// Scan mode: what the scans cost and saw.
    pub scan: Option<crate::scanmode::ScanStats>,
    /// Precise mode: the in-kernel filter (parks streamed once their wait lasted this long).
    pub min_wait_ns: Option<u64>,
    /// Precise mode: finished waits per (blocking site, wait reason), counted in the kernel.
    pub wait_histograms: Vec<crate::precise::WaitHistogram>,
    /// Precise mode: every finished wait per wait reason, exact (the per-site histograms may be
    /// sampled estimates).
    pub wait_totals: Vec<crate::precise::WaitTotal>,
    pub duration_ns: u64,
    pub end_reason: EndReason,
    /// When the report's durations were taken (`blocked_ns` and the like), CLOCK_MONOTONIC ns:
    /// the probes' clock, which a trace is aligned with.
    pub at_mono_ns: u64,
    pub events_received: u64,
    pub events_lost: u64,
    pub goroutines_seen: usize,
    pub threshold_ns: u64,
    pub blocked: Vec<BlockedGoroutine>,
    /// Every channel a blocked goroutine waits on (a select's cases included), by address,
    /// with where it was made when known.
    pub channels: Vec<crate::chansites::ChannelSite>,
    /// The makechan probe behind `made_at`: on, detached (scan mode, over its budget) or off,
    /// and why. None for a report from a trace.
    pub chan_sites: Option<crate::chansites::Status>,
    /// The distinct stacks of the blocked goroutines, innermost frame first, inlined frames
    /// included (from the gopark probe's user stack, or a frame-pointer walk from `g.sched`
    /// for goroutines found by the scan).
    pub stacks: Vec<Vec<crate::unwind::StackFrame>>,
    /// The verdicts: blocking patterns found (docs/patterns.md), most severe first.
    pub findings: Vec<crate::detect::Finding>,
    /// Blocked goroutines of the runtime itself (GC workers, finalizer, ...) left out of
    /// `blocked`, as Go's own tracebacks leave them out (src/runtime/traceback.go,
    /// isSystemGoroutine).
    pub runtime_goroutines_hidden: usize,
    /// Goroutines in a system call or cgo call at the end, with their threads' kernel state.
    pub in_syscall: Vec<SyscallGoroutine>,
    /// Goroutines running or runnable at the end (from the final scan), with their threads.
    pub running: Vec<RunningGoroutine>,
    /// Every OS thread of the target at the end, as the scheduler tracepoints saw them.
    pub threads: Vec<crate::threads::ThreadState>,
    /// What could not be observed, and why (e.g. no tracefs for the thread view).
    pub warnings: Vec<String>,
    /// `blockprobe run`: the program's exit code, or the signal that ended it.
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
}

fn human_duration(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s >= 60.0 {
        format!("{:.0} minutes", s / 60.0)
    } else if s >= 1.0 {
        format!("{s:.1}s")
    } else {
        format!("{:.0}ms", s * 1e3)
    }
}

impl Report {
    /// Text for a person, in the spirit of Go's own tracebacks (`goroutine 7 [chan send]:`).
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out);
        out
    }

    /// [`Report::render_text`], written out as it goes (100k goroutines are megabytes of text).
    pub fn write_text(&self, out: &mut dyn std::fmt::Write) {
        if self.mode == "trace" {
            // A trace alone: no process, no probes, no session.
            if let Some(tr) = &self.trace {
                tr.write_text(out);
            }
            self.write_body(out);
            return;
        }
        let t = &self.target;
        let flags: Vec<&str> = [(t.pie, "pie"), (t.stripped, "stripped"), (t.cgo, "cgo")]
            .iter()
            .filter_map(|(on, name)| on.then_some(*name))
            .collect();
        let _ = writeln!(
            out,
            "blockprobe: pid {} {} ({}{}{}), offsets from {}",
            t.pid,
            t.exe,
            t.go_version,
            if flags.is_empty() { "" } else { ", " },
            flags.join(", "),
            t.layout_source
        );
        let probes: Vec<String> = self
            .probes
            .iter()
            .map(|p| format!("{}+{}", p.symbol, p.offset))
            .collect();
        match &self.scan {
            Some(sc) => {
                let uprobes = if probes.is_empty() {
                    "no uprobes".to_string()
                } else {
                    format!("uprobes: {}", probes.join(" "))
                };
                let _ = writeln!(
                    out,
                    "mode: scan, {} scans every {} ({} failed), {:.2} ms CPU per scan on average \
                     ({:.2} ms at most); {uprobes}",
                    sc.scans,
                    human_duration(sc.interval_ns),
                    sc.failed,
                    sc.cpu_ns_total as f64 / sc.scans.max(1) as f64 / 1e6,
                    sc.cpu_ns_max as f64 / 1e6
                );
            }
            None => {
                let _ = writeln!(out, "mode: {}, probes: {}", self.mode, probes.join(" "));
            }
        }
        if let Some(tr) = &self.trace {
            tr.write_text(out);
        }
        let end = match self.end_reason {
            EndReason::Duration => "duration elapsed",
            EndReason::Signal => "interrupted",
            EndReason::TargetExited => "target exited",
            EndReason::TraceEnd => "trace ended",
        };
        // The makechan probe, when it is not what was asked for: detached, or failed.
        if let Some(c) = &self.chan_sites
            && c.state != "on"
            && c.setting != crate::chansites::Setting::Off
        {
            let _ = writeln!(
                out,
                "channel make sites: {} ({} channels made while probed){}",
                c.state,
                c.hits,
                c.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "session: {} ({end}); {} events, {} lost; {} goroutines seen",
            human_duration(self.duration_ns),
            self.events_received,
            self.events_lost,
            self.goroutines_seen
        );
        self.write_body(out);
    }

    /// Findings, blocked goroutines, syscalls and warnings: what every report has.
    fn write_body(&self, out: &mut dyn std::fmt::Write) {
        write_findings(out, &self.findings);
        write_blocked(out, &self.blocked, self.threshold_ns);
        if !self.in_syscall.is_empty() {
            let _ = writeln!(
                out,
                "\n{} goroutine(s) in a system call or cgo call:",
                self.in_syscall.len()
            );
        }
        for s in &self.in_syscall {
            let thread = match (&s.tid, &s.thread) {
                (Some(tid), Some(t)) => format!(
                    "thread {tid} {} for {}{}",
                    t.state_name,
                    if t.since_before_attach { ">" } else { "" },
                    human_duration(t.in_state_for_ns)
                ),
                (Some(tid), None) => format!("thread {tid}"),
                _ => "thread unknown".to_string(),
            };
            let _ = writeln!(out, "  goroutine {} [syscall]: {thread}", s.goid);
            if let Some(f) = &s.start_function {
                let _ = writeln!(out, "      started at {f}");
            }
            match &s.stack {
                Some(stack) => write_mixed_stack(out, &stack.frames),
                None => {
                    if let Some(t) = &s.thread
                        && !t.kernel_stack.is_empty()
                    {
                        let frames: Vec<&str> = t
                            .kernel_stack
                            .iter()
                            .take(8)
                            .map(|f| f.function.as_str())
                            .collect();
                        let _ = writeln!(out, "      in kernel: {}", frames.join(" <- "));
                    }
                    if let Some(e) = &s.stack_error {
                        let _ = writeln!(out, "      (no C stack: {e})");
                    }
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        if self.runtime_goroutines_hidden > 0 {
            let _ = writeln!(
                out,
                "  (+{} goroutine(s) of the Go runtime itself, not shown)",
                self.runtime_goroutines_hidden
            );
        }
    }
}

/// The findings: one paragraph each, the allowed ones as one line at the end.
pub fn write_findings(out: &mut dyn std::fmt::Write, findings: &[crate::detect::Finding]) {
    let (allowed, shown): (Vec<_>, Vec<_>) = findings.iter().partition(|f| f.allowed);
    let _ = writeln!(out, "\n{} finding(s):", shown.len());
    for f in &shown {
        let _ = writeln!(
            out,
            "  {} {} [{}, {}]: {}",
            f.pattern,
            f.slug,
            f.severity.word(),
            f.confidence,
            f.explanation
        );
        if let Some(b) = &f.blocked_at {
            let _ = writeln!(out, "      blocked in {} at {}", b.function, b.location);
        }
        if let Some(c) = &f.created_by {
            let _ = writeln!(
                out,
                "      created by {} at {}",
                c.function,
                c.location.as_deref().unwrap_or("?")
            );
        }
        if !f.chain.is_empty() {
            let links: Vec<String> = f
                .chain
                .iter()
                .map(|l| match (l.object_kind, l.object) {
                    (Some(k), Some(o)) => format!("goroutine {} ({} on {k} {o})", l.goid, l.state),
                    _ => format!("goroutine {} ({})", l.goid, l.state),
                })
                .collect();
            let _ = writeln!(out, "      chain: {}", links.join(" -> "));
        }
        if f.count > 1 {
            let ids: Vec<String> = f.goroutines.iter().take(10).map(u64::to_string).collect();
            let more = if f.count > 10 { ", …" } else { "" };
            let _ = writeln!(out, "      goroutines: {}{more}", ids.join(", "));
        }
        if let Some(v) = &f.fused {
            v.write_text(out);
        }
    }
    if !allowed.is_empty() {
        let names: Vec<String> = allowed
            .iter()
            .map(|f| format!("{} ({} goroutine(s))", f.slug, f.count))
            .collect();
        let _ = writeln!(out, "  allowed, not counted: {}", names.join(", "));
    }
}

/// A stitched stack, one frame a line: `[kernel]`, `[C module]` or Go frames with file:line, and
/// the cgo boundary marked.
fn write_mixed_stack(out: &mut dyn std::fmt::Write, frames: &[crate::native::stitch::Frame]) {
    for f in frames {
        let tag = match (f.kind, &f.module) {
            ("kernel", _) => "[kernel] ".to_string(),
            ("c", Some(m)) => format!("[C {m}] "),
            ("c", None) => "[C] ".to_string(),
            _ if f.cgo_boundary => "[cgo boundary] ".to_string(),
            _ => String::new(),
        };
        let inl = if f.inlined { " (inlined)" } else { "" };
        let _ = writeln!(out, "      {tag}{}{inl}", f.function);
        if !f.file.is_empty() {
            let _ = writeln!(out, "          {}:{}", f.file, f.line);
        }
    }
}

/// The blocked-goroutines section of the text report (also printed live on SIGUSR1).
pub fn render_blocked(blocked: &[BlockedGoroutine], threshold_ns: u64) -> String {
    let mut out = String::new();
    write_blocked(&mut out, blocked, threshold_ns);
    out
}

/// [`render_blocked`], written out as it goes.
pub fn write_blocked(
    out: &mut dyn std::fmt::Write,
    blocked: &[BlockedGoroutine],
    threshold_ns: u64,
) {
    let _ = writeln!(
        out,
        "\n{} goroutine(s) blocked for at least {}:",
        blocked.len(),
        human_duration(threshold_ns)
    );
    for b in blocked {
        let on = if b.object_kind == "none" || b.object.0 == 0 {
            String::new()
        } else {
            format!(" on {} {}", b.object_kind, b.object)
        };
        let parked = if matches!(&*b.parked_in, "?" | "") {
            String::new()
        } else {
            format!(" (parked in {})", b.parked_in)
        };
        let _ = writeln!(
            out,
            "  goroutine {} [{}, {}{}]{on}{parked}",
            b.goid,
            b.wait_reason,
            if b.blocked_before_attach { ">" } else { "" },
            human_duration(b.blocked_ns),
        );
        if let Some(site) = &b.blocked_at {
            let _ = writeln!(
                out,
                "      blocked in {} at {}",
                site.function, site.location
            );
        }
        if let Some(m) = &b.made_at {
            let _ = writeln!(
                out,
                "      channel made in {} at {}",
                m.function, m.location
            );
        }
        if let Some(f) = &b.start_function {
            let _ = writeln!(out, "      started at {f}");
        }
        if let Some(c) = &b.created_by {
            let _ = writeln!(
                out,
                "      created by {} in goroutine {}{}",
                c.function,
                c.parent_goid,
                c.location
                    .as_ref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_go_style_lines() {
        let r = Report {
            schema: REPORT_SCHEMA,
            target: Target {
                pid: 42,
                exe: "/x/demo".into(),
                go_version: "go1.27.3".into(),
                pie: true,
                stripped: false,
                cgo: false,
                layout_source: "dwarf".into(),
            },
            mode: "precise",
            trace: None,
            at_mono_ns: 0,
            probes: vec![ProbeInfo {
                symbol: "runtime.gopark".into(),
                offset: 10,
            }],
            scan: None,
            min_wait_ns: None,
            wait_histograms: Vec::new(),
            wait_totals: Vec::new(),
            duration_ns: 3_000_000_000,
            end_reason: EndReason::Duration,
            events_received: 10,
            events_lost: 0,
            goroutines_seen: 3,
            threshold_ns: 0,
            runtime_goroutines_hidden: 4,
            stacks: Vec::new(),
            findings: Vec::new(),
            in_syscall: Vec::new(),
            running: Vec::new(),
            threads: Vec::new(),
            warnings: Vec::new(),
            exit_code: None,
            exit_signal: None,
            blocked: vec![BlockedGoroutine {
                goid: 7,
                wait_reason: "chan send".into(),
                wait_reason_code: 15,
                blocked_ns: 2_500_000_000,
                object_kind: "chan",
                object: Hex(0xc000020060),
                parked_in: "runtime.chansend".into(),
                tid: 99,
                blocked_before_attach: false,
                wait_chans: smallvec::smallvec![Hex(0xc000020060)],
                created_by: Some(CreationSite {
                    function: "main.main".into(),
                    location: Some("/src/demo/main.go:12".into()),
                    parent_goid: 1,
                }),
                start_function: Some("main.worker".into()),
                blocked_at: Some(std::sync::Arc::new(BlockingSite {
                    function: "main.worker".into(),
                    location: "/src/demo/main.go:20".into(),
                })),
                made_at: Some(std::sync::Arc::new(crate::chansites::MadeAt {
                    function: "main.newQueue".into(),
                    location: "/src/demo/main.go:8".into(),
                    source: "uprobe",
                })),
                stack: None,
                source: "uprobe",
            }],
            channels: Vec::new(),
            chan_sites: None,
        };
        let text = r.render_text();
        assert!(text.contains("go1.27.3, pie"), "{text}");
        assert!(text.contains("runtime.gopark+10"));
        assert!(
            text.contains("goroutine 7 [chan send, 2.5s] on chan 0xc000020060"),
            "{text}"
        );
        assert!(text.contains("created by main.main in goroutine 1 at /src/demo/main.go:12"));
        assert!(text.contains("+4 goroutine(s) of the Go runtime"));
        assert!(text.contains("blocked in main.worker at /src/demo/main.go:20"));
        assert!(text.contains("channel made in main.newQueue at /src/demo/main.go:8"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["end_reason"], "duration");
        assert_eq!(json["blocked"][0]["goid"], 7);
    }

    #[test]
    fn renders_a_stitched_stack_with_kinds_and_the_boundary() {
        use crate::native::stitch::Frame;
        let f =
            |kind, function: &str, file: &str, line, module: Option<&str>, inlined, boundary| {
                Frame {
                    kind,
                    function: function.into(),
                    file: file.into(),
                    line,
                    inlined,
                    module: module.map(str::to_string),
                    cgo_boundary: boundary,
                }
            };
        let frames = vec![
            f("kernel", "anon_pipe_read", "", 0, None, false, false),
            f("c", "read", "", 0, Some("libc.so.6"), false, false),
            f(
                "c",
                "block_in_read",
                "/s/main.go",
                24,
                Some("prog"),
                true,
                false,
            ),
            f(
                "go",
                "runtime.asmcgocall",
                "/go/asm_amd64.s",
                970,
                None,
                false,
                true,
            ),
            f(
                "go",
                "main.main.func1",
                "/s/main.go",
                54,
                None,
                false,
                false,
            ),
        ];
        let mut text = String::new();
        write_mixed_stack(&mut text, &frames);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "[kernel] anon_pipe_read",
                "[C libc.so.6] read",
                "[C prog] block_in_read (inlined)",
                "/s/main.go:24",
                "[cgo boundary] runtime.asmcgocall",
                "/go/asm_amd64.s:970",
                "main.main.func1",
                "/s/main.go:54",
            ]
        );
        // JSON leaves out what a frame does not have.
        let json = serde_json::to_value(&frames[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "c", "function": "read", "module": "libc.so.6"})
        );
    }
}
