//! `target/bench/results.json`: the configuration, the machine, every run, the summaries per
//! workload and mode, the per-event cost, the goroutines runs and the targets.
use serde_json::{Value, json};

use super::summary::{AgentStats, ModeStats, PER_EVENT_METHOD, PerEvent, Summary};
use super::targets::Target;
use super::{AgentRun, GoroutinesRun, Run, ScanFacts};

/// Schema of the document; 2: modes none/scan/precise/trace/trap instead of none/agent/trace.
pub const SCHEMA: &str = "blockprobe-bench/2";

fn scan_json(s: &ScanFacts) -> Value {
    json!({
        "interval_ns": s.interval_ns,
        "scans": s.scans,
        "failed": s.failed,
        "goroutines": s.goroutines,
        "skipped": s.skipped,
        "cpu_ns_total": s.cpu_ns_total,
        "cpu_ns_max": s.cpu_ns_max,
        "cpu_ms_per_scan": s.mean_ms(),
    })
}

fn agent_json(a: &AgentRun) -> Value {
    json!({
        "pid": a.pid,
        "mode": a.mode,
        "attach_s": a.attach_s,
        "cpu_at_attach_s": a.cpu_at_attach_s,
        "cpu_s": a.cpu_s,
        "maxrss_kb": a.maxrss_kb,
        "wall_s": a.wall_s,
        "exit_lag_s": a.exit_lag_s,
        "exit": a.exit,
        "report_path": a.report_path,
        "report_error": a.report_error,
        "report": a.report.as_ref().map(|r| json!({
            "mode": r.mode,
            "scan": r.scan.as_ref().map(scan_json),
            "min_wait_ns": r.min_wait_ns,
            "waits_counted": r.waits_counted,
            "events_received": r.events_received,
            "events_lost": r.events_lost,
            "duration_s": r.duration_s,
            "end_reason": r.end_reason,
            "probes": r.probes,
            "blocked": r.blocked,
            "runtime_goroutines_hidden": r.runtime_goroutines_hidden,
            "goroutines_seen": r.goroutines_seen,
        })),
        "stderr": a.stderr,
    })
}

fn run_json(r: &Run) -> Value {
    json!({
        "workload": r.workload,
        "mode": r.mode.name(),
        "round": r.round + 1,
        "ok": r.ok(),
        "ops": r.ops.map(|o| o.ops),
        "secs": r.ops.map(|o| o.secs),
        "ops_per_s": r.ops.map(|o| o.per_sec()),
        "events_per_s": r.events_per_s(),
        "events_per_op": r.events_per_op(),
        "parks_per_op": r.parks_per_op().map(|p| p.0),
        "parks_per_op_source": r.parks_per_op().map(|p| p.1),
        "agent_cpu_share": r.agent_cpu_share(),
        "workload_cpu_s": r.workload_cpu_s,
        "workload_sys_s": r.workload_sys_s,
        "trace_bytes": r.trace_bytes,
        "agent": r.agent.as_ref().map(agent_json),
        "error": r.error,
    })
}

fn mode_json(m: &ModeStats) -> Value {
    json!({
        "ok": m.ok, "failed": m.failed, "median_ops_per_s": m.median,
        "min_ops_per_s": m.min, "max_ops_per_s": m.max, "ops_per_s": m.values,
        "ratio_to_none": m.ratio, "ratio_to_none_per_round": m.paired,
        "workload_sys_s_median": m.sys_s,
    })
}

fn agent_stats_json(a: &AgentStats) -> Value {
    json!({
        "runs": a.runs,
        "events_per_s_median": a.events_per_s,
        "events_per_s_max": a.events_per_s_max,
        "events_per_op_median": a.events_per_op,
        "parks_per_op_median": a.parks_per_op,
        "parks_per_op_source": a.parks_source,
        "min_wait_ns": a.min_wait_ns,
        "events_total": a.events_total,
        "events_lost_total": a.lost_total,
        "agent_cpu_s_median": a.cpu_s,
        "agent_cpu_share_median": a.cpu_share,
        "agent_maxrss_kb": a.rss_kb,
        "agent_attach_s_median": a.attach_s,
        "scan_cpu_ms_per_scan_median": a.scan_ms_mean,
        "scan_cpu_ms_max": a.scan_ms_max,
        "scans_median": a.scans,
        "probes": a.probes,
    })
}

fn summary_json(s: &Summary) -> Value {
    let modes: serde_json::Map<String, Value> = s
        .modes
        .iter()
        .map(|m| (m.mode.name().to_string(), mode_json(m)))
        .collect();
    let agents: serde_json::Map<String, Value> = s
        .agents
        .iter()
        .map(|a| (a.mode.name().to_string(), agent_stats_json(a)))
        .collect();
    json!({
        "workload": s.workload,
        "about": s.about,
        "modes": modes,
        "agent": agents,
        "trace_mb_per_s_median": s.trace_mb_per_s,
    })
}

fn per_event_json(p: &PerEvent) -> Value {
    json!({
        "workload": p.workload,
        "ns_per_op": {
            "none": p.ns_per_op_none, "scan": p.ns_per_op_scan,
            "precise": p.ns_per_op_precise, "trap": p.ns_per_op_trap,
        },
        "parks_per_op": p.parks_per_op,
        "parks_per_op_source": p.parks_source,
        "hits_per_op": { "precise": p.hits_per_op_precise, "trap": p.hits_per_op_trap },
        "vs_none": { "precise_ns_per_hit": p.precise_ns, "trap_ns_per_hit": p.trap_ns,
                     "precise_over_trap": p.ratio },
        "vs_scan": { "precise_ns_per_hit": p.precise_ns_vs_scan,
                     "trap_ns_per_hit": p.trap_ns_vs_scan, "precise_over_trap": p.ratio_vs_scan },
        "method": PER_EVENT_METHOD,
    })
}

fn goroutines_json(g: &GoroutinesRun) -> Value {
    json!({
        "mode": g.mode.name(),
        "requested": g.requested,
        "started": g.started,
        "target_rss_kb": g.target_rss_kb,
        "agent": g.agent.as_ref().map(agent_json),
        "error": g.error,
    })
}

/// A target, as in every results document.
pub(super) fn target_json(t: &Target) -> Value {
    json!({ "target": t.name, "measured": t.measured, "verdict": t.verdict.word() })
}

pub struct DocParts<'a> {
    pub command: &'a str,
    pub config: Value,
    pub machine: (Value, Value),
    pub summaries: &'a [Summary],
    pub per_event: Option<&'a PerEvent>,
    pub runs: &'a [Run],
    pub goroutines: &'a [GoroutinesRun],
    pub targets: &'a [Target],
    pub timings: &'a [(&'a str, f64)],
}

/// Everything, for `target/bench/results.json`.
pub fn document(p: DocParts) -> Value {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "schema": SCHEMA,
        "command": p.command,
        "finished_unix": since_epoch,
        "config": p.config,
        "machine_at_start": p.machine.0,
        "machine_at_end": p.machine.1,
        "summary": p.summaries.iter().map(summary_json).collect::<Vec<_>>(),
        "per_event": p.per_event.map(per_event_json),
        "goroutines": p.goroutines.iter().map(goroutines_json).collect::<Vec<_>>(),
        "targets": p.targets.iter().map(target_json).collect::<Vec<_>>(),
        "timings_s": p.timings.iter().map(|(k, v)| json!({ "phase": k, "secs": v })).collect::<Vec<_>>(),
        "runs": p.runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}
