//! The bench's output: per-run lines, per-workload summaries, the table, the targets, and
//! `target/bench/results.json`.
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::stats::{self, Verdict, fmt_si, kb_to_mb, or_dash};
use super::{AgentRun, GoroutinesRun, MODES, Mode, Run, Workload};

/// Events per second named in the "no lost events" target.
pub const LOSS_TARGET_RATE: f64 = 1e6;
/// Peak agent RSS named in the memory target, MB.
pub const RSS_TARGET_MB: f64 = 100.0;
/// Goroutines named in the memory target.
pub const RSS_TARGET_GOROUTINES: u32 = 100_000;

/// Facts about the machine and checkout, for the record.
pub fn machine(root: &Path) -> Value {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let dirty: Option<Vec<String>> = git(&["status", "--porcelain", "--", "agent", "probes-ebpf"])
        .map(|s| s.lines().map(|l| l.trim().to_string()).collect());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "loadavg": read("/proc/loadavg"),
        "git_head": git(&["rev-parse", "HEAD"]),
        "agent_sources_modified": dirty,
    })
}

/// A warning when other work keeps the CPUs busy.
pub fn load_note(machine: &Value) -> Option<String> {
    let load: f64 = machine["loadavg"]
        .as_str()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cpus = machine["cpus"].as_u64()? as f64;
    (load > cpus * 0.75).then(|| {
        format!(
            "note: the 1-minute load average is {load:.1} on {cpus} CPUs: other work is \
             running, so the figures will be noisy (the modes are interleaved to share the noise)"
        )
    })
}

fn agent_bits(a: &AgentRun, secs: Option<f64>) -> String {
    let mut s = String::new();
    if let Some(r) = &a.report {
        let _ = write!(s, "{} events", r.events_received);
        if let Some(t) = secs {
            let _ = write!(s, " ({}/s)", fmt_si(r.events_received as f64 / t));
        }
        let _ = write!(s, ", {} lost, ", r.events_lost);
    }
    let _ = write!(
        s,
        "attach {:.2}s, CPU {}, RSS {}",
        a.attach_s,
        or_dash(a.cpu_s, |c| format!("{c:.2}s")),
        or_dash(a.maxrss_kb, |k| format!("{:.1} MB", kb_to_mb(k)))
    );
    if let Some(l) = a.exit_lag_s {
        let _ = write!(s, ", exited {l:.2}s after the target");
    }
    s
}

/// One line per finished run.
pub fn run_line(r: &Run) -> String {
    let mut s = format!(
        "    {} {} r{}: {}",
        r.workload,
        r.mode.name(),
        r.round + 1,
        or_dash(r.ops, |o| format!(
            "{} ops/s ({} ops in {:.2}s)",
            fmt_si(o.per_sec()),
            o.ops,
            o.secs
        ))
    );
    if let (Some(c), Some(sys)) = (r.workload_cpu_s, r.workload_sys_s) {
        let _ = write!(s, "; workload CPU {c:.2}s (sys {sys:.2}s)");
    }
    if let Some(a) = &r.agent {
        let _ = write!(s, "; blockprobe: {}", agent_bits(a, r.ops.map(|o| o.secs)));
    }
    if let Some(b) = r.trace_bytes {
        let _ = write!(s, "; trace {:.1} MB", b as f64 / 1e6);
    }
    if let Some(e) = &r.error {
        let _ = write!(s, "\n    FAILED: {}", e.replace('\n', "\n    "));
    }
    s
}

pub fn goroutines_line(g: &GoroutinesRun) -> String {
    let mut s = format!(
        "    goroutines: {} started, target RSS {}",
        or_dash(g.started, |n| n.to_string()),
        or_dash(g.target_rss_kb, |k| format!("{:.0} MB", kb_to_mb(k)))
    );
    if let Some(a) = &g.agent {
        let _ = write!(s, "; blockprobe: {}", agent_bits(a, None));
        if let Some(r) = &a.report {
            let _ = write!(
                s,
                "; reported {} blocked ({} listed + {} runtime goroutines hidden), {} seen",
                r.blocked + r.runtime_goroutines_hidden,
                r.blocked,
                r.runtime_goroutines_hidden,
                r.goroutines_seen
            );
        }
        if let Some(w) = a.wall_s {
            let _ = write!(s, "; wall {w:.2}s");
        }
    }
    if let Some(e) = &g.error {
        let _ = write!(s, "\n    FAILED: {}", e.replace('\n', "\n    "));
    }
    s
}

/// ops/s of one mode over the rounds.
#[derive(Clone, Debug, Default)]
pub struct ModeStats {
    pub ok: usize,
    pub failed: usize,
    pub values: Vec<f64>,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The workload's system CPU seconds (median): uprobe hits are charged here.
    pub sys_s: Option<f64>,
}

/// One workload over every round.
#[derive(Clone, Debug)]
pub struct Summary {
    pub workload: &'static str,
    pub about: &'static str,
    /// none, agent, trace (the order of MODES).
    pub modes: Vec<ModeStats>,
    pub agent_ratio: Option<f64>,
    pub trace_ratio: Option<f64>,
    pub events_per_s: Option<f64>,
    pub events_per_s_max: Option<f64>,
    pub events_total: u64,
    pub lost_total: u64,
    pub agent_cpu_s: Option<f64>,
    pub agent_cpu_share: Option<f64>,
    pub agent_rss_kb: Option<u64>,
    pub agent_attach_s: Option<f64>,
    pub trace_mb_per_s: Option<f64>,
    pub probes: Vec<String>,
}

impl Summary {
    pub fn of(w: &Workload, runs: &[Run]) -> Summary {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.workload == w.name).collect();
        let modes: Vec<ModeStats> = MODES
            .iter()
            .map(|&m| {
                let of_mode: Vec<&&Run> = mine.iter().filter(|r| r.mode == m).collect();
                let values: Vec<f64> = of_mode.iter().filter_map(|r| r.ops_per_s()).collect();
                let sys: Vec<f64> = of_mode
                    .iter()
                    .filter(|r| r.ok())
                    .filter_map(|r| r.workload_sys_s)
                    .collect();
                ModeStats {
                    sys_s: stats::median(&sys),
                    ok: values.len(),
                    failed: of_mode.len() - values.len(),
                    median: stats::median(&values),
                    min: values.iter().copied().reduce(f64::min),
                    max: values.iter().copied().reduce(f64::max),
                    values,
                }
            })
            .collect();
        let agent_runs: Vec<&&Run> = mine.iter().filter(|r| r.mode == Mode::Agent).collect();
        let ok_agent: Vec<&&&Run> = agent_runs.iter().filter(|r| r.ok()).collect();
        let rates: Vec<f64> = ok_agent.iter().filter_map(|r| r.events_per_s()).collect();
        let reports = agent_runs
            .iter()
            .filter_map(|r| r.agent.as_ref().and_then(|a| a.report.as_ref()));
        let (events_total, lost_total) = reports.fold((0, 0), |(e, l), r| {
            (e + r.events_received, l + r.events_lost)
        });
        let agents = || ok_agent.iter().filter_map(|r| r.agent.as_ref());
        let trace_rates: Vec<f64> = mine
            .iter()
            .filter(|r| r.mode == Mode::Trace && r.ok())
            .filter_map(|r| Some(r.trace_bytes? as f64 / 1e6 / r.ops?.secs))
            .collect();
        let median_of = |k: Mode| modes[MODES.iter().position(|&m| m == k).unwrap_or(0)].median;
        Summary {
            workload: w.name,
            about: w.about,
            agent_ratio: stats::ratio(median_of(Mode::Agent), median_of(Mode::None)),
            trace_ratio: stats::ratio(median_of(Mode::Trace), median_of(Mode::None)),
            events_per_s: stats::median(&rates),
            events_per_s_max: rates.iter().copied().reduce(f64::max),
            events_total,
            lost_total,
            agent_cpu_s: stats::median(&agents().filter_map(|a| a.cpu_s).collect::<Vec<_>>()),
            agent_cpu_share: stats::median(
                &ok_agent
                    .iter()
                    .filter_map(|r| r.agent_cpu_share())
                    .collect::<Vec<_>>(),
            ),
            agent_rss_kb: agent_runs
                .iter()
                .filter_map(|r| r.agent.as_ref()?.maxrss_kb)
                .max(),
            agent_attach_s: stats::median(&agents().map(|a| a.attach_s).collect::<Vec<_>>()),
            trace_mb_per_s: stats::median(&trace_rates),
            probes: agent_runs
                .iter()
                .find_map(|r| Some(r.agent.as_ref()?.report.as_ref()?.probes.clone()))
                .unwrap_or_default(),
            modes,
        }
    }
}

/// A target from the issue and what was measured for it.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub verdict: Verdict,
}

pub fn targets(summaries: &[Summary], runs: &[Run], g: Option<&GoroutinesRun>) -> Vec<Target> {
    let mut out = Vec::new();

    let http = summaries.iter().find(|s| s.workload == "http");
    out.push(Target {
        name: "http: blockprobe's slowdown at most runtime/trace's".into(),
        measured: match http {
            Some(s) => format!(
                "agent/none {} vs trace/none {}",
                or_dash(s.agent_ratio, |r| format!("{r:.2}")),
                or_dash(s.trace_ratio, |r| format!("{r:.2}"))
            ),
            None => "not run".into(),
        },
        verdict: http.map_or(Verdict::Undecided, |s| {
            stats::slowdown_verdict(s.agent_ratio, s.trace_ratio)
        }),
    });

    let agent_runs: Vec<&Run> = runs.iter().filter(|r| r.mode == Mode::Agent).collect();
    let rated: Vec<(f64, u64, &str)> = agent_runs
        .iter()
        .filter_map(|r| {
            let rep = r.agent.as_ref()?.report.as_ref()?;
            Some((r.events_per_s()?, rep.events_lost, r.workload))
        })
        .collect();
    let pairs: Vec<(f64, u64)> = rated.iter().map(|&(r, l, _)| (r, l)).collect();
    let mut verdict = stats::lost_verdict(&pairs, LOSS_TARGET_RATE);
    let failed_agents = agent_runs.iter().filter(|r| !r.ok()).count();
    if verdict == Verdict::Met && failed_agents > 0 {
        verdict = Verdict::Undecided;
    }
    let lost: u64 = pairs.iter().map(|p| p.1).sum();
    let top = rated
        .iter()
        .copied()
        .reduce(|a, b| if b.0 > a.0 { b } else { a });
    let mut measured = match top {
        Some((rate, _, w)) => format!(
            "highest rate {}/s ({w}); {lost} lost over {} agent runs",
            fmt_si(rate),
            rated.len()
        ),
        None => "no agent run with a report".into(),
    };
    if failed_agents > 0 {
        let _ = write!(measured, "; {failed_agents} agent run(s) failed");
    }
    if verdict == Verdict::Undecided && top.is_some_and(|t| t.0 < LOSS_TARGET_RATE) && lost == 0 {
        let _ = write!(
            measured,
            "; {}/s not reached here",
            fmt_si(LOSS_TARGET_RATE)
        );
    }
    out.push(Target {
        name: format!("no lost events at {} events/s", fmt_si(LOSS_TARGET_RATE)),
        measured,
        verdict,
    });

    let rss = g.and_then(|g| g.agent.as_ref()?.maxrss_kb);
    let mut verdict = stats::rss_verdict(rss, RSS_TARGET_MB);
    let mut measured = match (g, rss) {
        (None, _) => "not run".into(),
        (Some(g), Some(kb)) => format!(
            "peak {:.1} MB with {} goroutines",
            kb_to_mb(kb),
            or_dash(g.started, |n| n.to_string())
        ),
        (Some(_), None) => "no measurement (the run failed)".into(),
    };
    if let Some(g) = g {
        if g.requested < RSS_TARGET_GOROUTINES && verdict == Verdict::Met {
            verdict = Verdict::Undecided;
            let _ = write!(measured, " (fewer than {RSS_TARGET_GOROUTINES} requested)");
        }
        if g.error.is_some() && verdict == Verdict::Met {
            verdict = Verdict::Undecided;
            measured.push_str(" (the run failed)");
        }
    }
    out.push(Target {
        name: format!(
            "agent RSS < {RSS_TARGET_MB:.0} MB with {}k goroutines",
            RSS_TARGET_GOROUTINES / 1000
        ),
        measured,
        verdict,
    });
    out
}

/// Lays out rows with a header, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w.saturating_sub(c.chars().count());
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn ops_cell(m: &ModeStats, ratio: Option<f64>) -> String {
    let mut s = match m.median {
        Some(v) => fmt_si(v),
        None if m.failed > 0 => "FAILED".into(),
        None => "-".into(),
    };
    if let Some(r) = ratio {
        let _ = write!(s, " ({r:.2})");
    }
    if m.failed > 0 && m.median.is_some() {
        let _ = write!(s, " [{} failed]", m.failed);
    }
    s
}

pub fn render(
    summaries: &[Summary],
    g: Option<&GoroutinesRun>,
    targets: &[Target],
    command: &str,
    timings: &[(&str, f64)],
) -> String {
    let header = [
        "workload",
        "none ops/s",
        "agent ops/s (ratio)",
        "trace ops/s (ratio)",
        "events/s",
        "lost",
        "agent CPU",
        "agent RSS",
    ];
    let mut rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.workload.to_string(),
                ops_cell(&s.modes[0], None),
                ops_cell(&s.modes[1], s.agent_ratio),
                ops_cell(&s.modes[2], s.trace_ratio),
                or_dash(s.events_per_s, fmt_si),
                if s.events_total > 0 || s.lost_total > 0 {
                    s.lost_total.to_string()
                } else {
                    "-".into()
                },
                match (s.agent_cpu_s, s.agent_cpu_share) {
                    (Some(c), Some(p)) => format!("{c:.2}s ({:.0}%)", p * 100.0),
                    (c, _) => or_dash(c, |c| format!("{c:.2}s")),
                },
                or_dash(s.agent_rss_kb, |k| format!("{:.1} MB", kb_to_mb(k))),
            ]
        })
        .collect();
    if let Some(g) = g {
        let a = g.agent.as_ref();
        let rep = a.and_then(|a| a.report.as_ref());
        rows.push(vec![
            format!("goroutines ({}k)", g.requested / 1000),
            "-".into(),
            if g.error.is_some() {
                "FAILED".into()
            } else {
                "-".into()
            },
            "-".into(),
            "-".into(),
            or_dash(rep, |r| r.events_lost.to_string()),
            or_dash(a.and_then(|a| a.cpu_s), |c| format!("{c:.2}s")),
            or_dash(a.and_then(|a| a.maxrss_kb), |k| {
                format!("{:.1} MB", kb_to_mb(k))
            }),
        ]);
    }

    let mut out = table(&header, &rows);
    out.push_str(
        "\nops/s: median over the rounds; (ratio) = that mode's median / no agent's median.\n\
         events/s: events blockprobe received / the workload's measured seconds (median); \
         lost: summed over the agent runs.\n\
         agent CPU: blockprobe's user+system CPU per run (median), and in parentheses its share \
         of one core during the measured run.\nagent RSS: blockprobe's peak RSS (ru_maxrss, the \
         largest over the runs).\n",
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "  {}: {}\n    ops/s spread none {} / agent {} / trace {}; workload sys CPU {} / {} / {}{}",
            s.workload,
            s.about,
            spread(&s.modes[0]),
            spread(&s.modes[1]),
            spread(&s.modes[2]),
            or_dash(s.modes[0].sys_s, |v| format!("{v:.2}s")),
            or_dash(s.modes[1].sys_s, |v| format!("{v:.2}s")),
            or_dash(s.modes[2].sys_s, |v| format!("{v:.2}s")),
            or_dash(s.trace_mb_per_s, |m| format!("; trace written {m:.1} MB/s")),
        );
    }
    if let Some(g) = g {
        out.push_str("  ");
        out.push_str(goroutines_line(g).trim_start());
        out.push('\n');
    }
    if let Some(p) = summaries.iter().find(|s| !s.probes.is_empty()) {
        let _ = writeln!(out, "blockprobe's probes: {}", p.probes.join(" "));
    }

    out.push_str("\ntargets (from the issue):\n");
    let w = targets.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in targets {
        let _ = writeln!(
            out,
            "  {:<w$}  {:<9}  {}",
            t.name,
            t.verdict.word(),
            t.measured
        );
    }
    let _ = writeln!(out, "\ncommand: {command}");
    let _ = writeln!(
        out,
        "timings: {}",
        timings
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

fn spread(m: &ModeStats) -> String {
    match (m.min, m.max) {
        (Some(a), Some(b)) if m.ok > 1 => format!("{}..{}", fmt_si(a), fmt_si(b)),
        (Some(a), _) => fmt_si(a),
        _ => "-".into(),
    }
}

fn agent_json(a: &AgentRun) -> Value {
    json!({
        "pid": a.pid,
        "attach_s": a.attach_s,
        "cpu_at_attach_s": a.cpu_at_attach_s,
        "cpu_s": a.cpu_s,
        "maxrss_kb": a.maxrss_kb,
        "wall_s": a.wall_s,
        "exit_lag_s": a.exit_lag_s,
        "exit": a.exit,
        "report_path": a.report_path,
        "report": a.report.as_ref().map(|r| json!({
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
        "agent_cpu_share": r.agent_cpu_share(),
        "workload_cpu_s": r.workload_cpu_s,
        "workload_sys_s": r.workload_sys_s,
        "trace_bytes": r.trace_bytes,
        "agent": r.agent.as_ref().map(agent_json),
        "error": r.error,
    })
}

fn summary_json(s: &Summary) -> Value {
    let mode = |m: &ModeStats| {
        json!({ "ok": m.ok, "failed": m.failed, "median_ops_per_s": m.median,
                "min_ops_per_s": m.min, "max_ops_per_s": m.max, "ops_per_s": m.values,
                "workload_sys_s_median": m.sys_s })
    };
    json!({
        "workload": s.workload,
        "about": s.about,
        "none": mode(&s.modes[0]),
        "agent": mode(&s.modes[1]),
        "trace": mode(&s.modes[2]),
        "agent_ratio": s.agent_ratio,
        "trace_ratio": s.trace_ratio,
        "events_per_s_median": s.events_per_s,
        "events_per_s_max": s.events_per_s_max,
        "events_total": s.events_total,
        "events_lost_total": s.lost_total,
        "agent_cpu_s_median": s.agent_cpu_s,
        "agent_cpu_share_median": s.agent_cpu_share,
        "agent_maxrss_kb": s.agent_rss_kb,
        "agent_attach_s_median": s.agent_attach_s,
        "trace_mb_per_s_median": s.trace_mb_per_s,
        "probes": s.probes,
    })
}

pub struct DocParts<'a> {
    pub command: &'a str,
    pub config: Value,
    pub machine: (Value, Value),
    pub summaries: &'a [Summary],
    pub runs: &'a [Run],
    pub goroutines: Option<&'a GoroutinesRun>,
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
        "schema": "blockprobe-bench/1",
        "command": p.command,
        "finished_unix": since_epoch,
        "config": p.config,
        "machine_at_start": p.machine.0,
        "machine_at_end": p.machine.1,
        "summary": p.summaries.iter().map(summary_json).collect::<Vec<_>>(),
        "goroutines": p.goroutines.map(|g| json!({
            "requested": g.requested,
            "started": g.started,
            "target_rss_kb": g.target_rss_kb,
            "agent": g.agent.as_ref().map(agent_json),
            "error": g.error,
        })),
        "targets": p.targets.iter().map(|t| json!({
            "target": t.name, "measured": t.measured, "verdict": t.verdict.word(),
        })).collect::<Vec<_>>(),
        "timings_s": p.timings.iter().map(|(k, v)| json!({ "phase": k, "secs": v })).collect::<Vec<_>>(),
        "runs": p.runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxxx  y\n");
    }

    #[test]
    fn load_note_only_when_busy() {
        assert!(load_note(&json!({"loadavg": "0.5 0.4 0.3 1/100 7", "cpus": 2})).is_none());
        assert!(load_note(&json!({"loadavg": "9.5 0.4 0.3 1/100 7", "cpus": 2})).is_some());
        assert!(load_note(&json!({})).is_none());
    }
}
