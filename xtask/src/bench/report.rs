//! The bench's printed output: per-run lines, the tables, the per-event cost and the targets.
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::stats::{fmt_ns, fmt_si, kb_to_mb, or_dash};
use super::summary::{AgentStats, ModeStats, PER_EVENT_METHOD, PerEvent, Summary};
use super::targets::Target;
use super::{AGENT_MODES, AgentRun, GoroutinesRun, MODES, Mode, Run, ScanFacts};

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

fn scan_bits(sc: &ScanFacts) -> String {
    format!(
        "{} scans ({} failed) of {} goroutines, CPU/scan {} (max {:.2} ms)",
        sc.scans,
        sc.failed,
        sc.goroutines,
        or_dash(sc.mean_ms(), |m| format!("{m:.2} ms")),
        sc.max_ms()
    )
}

fn agent_bits(a: &AgentRun, secs: Option<f64>) -> String {
    let mut s = String::new();
    if let Some(r) = &a.report {
        let _ = write!(s, "{} events", r.events_received);
        if let Some(t) = secs {
            let _ = write!(s, " ({}/s)", fmt_si(r.events_received as f64 / t));
        }
        let _ = write!(s, ", {} lost, ", r.events_lost);
        if let Some(sc) = &r.scan {
            let _ = write!(s, "{}, ", scan_bits(sc));
        }
        if let Some(w) = r.waits_counted.filter(|_| r.mode == "precise") {
            let _ = write!(s, "{w} waits counted in the kernel, ");
        }
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
        "    goroutines ({}): {} started, target RSS {}",
        g.mode.name(),
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

/// Lays out rows with a header, columns padded to their widest cell.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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

fn ops_cell(m: Option<&ModeStats>) -> String {
    let Some(m) = m else {
        return "-".into();
    };
    let mut s = match m.median {
        Some(v) => fmt_si(v),
        None if m.failed > 0 => "FAILED".into(),
        None => "-".into(),
    };
    if let Some(r) = m.ratio {
        let _ = write!(s, " ({r:.3})");
    }
    if m.failed > 0 && m.median.is_some() {
        let _ = write!(s, " [{} failed]", m.failed);
    }
    s
}

fn spread(m: Option<&ModeStats>) -> String {
    match m.map(|m| (m.min, m.max, m.ok)) {
        Some((Some(a), Some(b), ok)) if ok > 1 => format!("{}..{}", fmt_si(a), fmt_si(b)),
        Some((Some(a), _, _)) => fmt_si(a),
        _ => "-".into(),
    }
}

fn cpu_cell(cpu_s: Option<f64>, share: Option<f64>) -> String {
    match (cpu_s, share) {
        (Some(c), Some(p)) => format!("{c:.2}s ({:.0}%)", p * 100.0),
        (c, _) => or_dash(c, |c| format!("{c:.2}s")),
    }
}

fn scan_cell(mean: Option<f64>, max: Option<f64>) -> String {
    match (mean, max) {
        (Some(m), Some(x)) => format!("{m:.2} ms (max {x:.2})"),
        _ => "-".into(),
    }
}

fn agent_row(workload: &str, a: &AgentStats) -> Vec<String> {
    let events = a.events_total > 0 || a.lost_total > 0 || a.mode == Mode::Precise;
    vec![
        workload.to_string(),
        a.mode.name().to_string(),
        if events {
            or_dash(a.events_per_s, fmt_si)
        } else {
            "-".into()
        },
        if events {
            or_dash(a.events_per_op, |e| format!("{e:.2}"))
        } else {
            "-".into()
        },
        if events {
            a.lost_total.to_string()
        } else {
            "-".into()
        },
        or_dash(a.parks_per_op, |p| format!("{p:.2}")),
        cpu_cell(a.cpu_s, a.cpu_share),
        or_dash(a.rss_kb, |k| format!("{:.1} MB", kb_to_mb(k))),
        or_dash(a.scans, |n| format!("{n:.0}")),
        scan_cell(a.scan_ms_mean, a.scan_ms_max),
    ]
}

fn goroutines_row(g: &GoroutinesRun) -> Vec<String> {
    let a = g.agent.as_ref();
    let rep = a.and_then(|a| a.report.as_ref());
    let sc = rep.and_then(|r| r.scan.as_ref());
    vec![
        format!("goroutines ({}k)", g.requested / 1000),
        g.mode.name().to_string(),
        if g.error.is_some() {
            "FAILED".into()
        } else {
            "-".into()
        },
        "-".into(),
        or_dash(rep, |r| r.events_lost.to_string()),
        "-".into(),
        or_dash(a.and_then(|a| a.cpu_s), |c| format!("{c:.2}s")),
        or_dash(a.and_then(|a| a.maxrss_kb), |k| {
            format!("{:.1} MB", kb_to_mb(k))
        }),
        or_dash(sc, |s| s.scans.to_string()),
        scan_cell(sc.and_then(ScanFacts::mean_ms), sc.map(ScanFacts::max_ms)),
    ]
}

fn per_event_text(p: &PerEvent) -> String {
    let ns = |v: Option<f64>| or_dash(v, fmt_ns);
    let x = |v: Option<f64>| or_dash(v, |r| format!("{r:.2}x"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nper-event cost ({}: precise mode against a bare uprobe trap):",
        p.workload
    );
    let _ = writeln!(
        out,
        "  time per op (1 / median ops/s): none {}, scan {}, trap {}, precise {}",
        ns(p.ns_per_op_none),
        ns(p.ns_per_op_scan),
        ns(p.ns_per_op_trap),
        ns(p.ns_per_op_precise)
    );
    let _ = writeln!(
        out,
        "  parks per op P = {} (precise runs, from {}); probe hits per op: precise 2P = {} \
         (gopark + ready), trap P = {} (gopark)",
        or_dash(p.parks_per_op, |h| format!("{h:.3}")),
        p.parks_source.unwrap_or("-"),
        or_dash(p.hits_per_op_precise, |h| format!("{h:.3}")),
        or_dash(p.hits_per_op_trap, |h| format!("{h:.3}"))
    );
    let _ = writeln!(
        out,
        "  cost per hit vs none: trap {}, precise {} -> precise/trap {}",
        ns(p.trap_ns),
        ns(p.precise_ns),
        x(p.ratio)
    );
    let _ = writeln!(
        out,
        "  cost per hit vs scan: trap {}, precise {} -> precise/trap {}",
        ns(p.trap_ns_vs_scan),
        ns(p.precise_ns_vs_scan),
        x(p.ratio_vs_scan)
    );
    for l in PER_EVENT_METHOD.lines() {
        let _ = writeln!(out, "  {l}");
    }
    out
}

/// What the printed summary is made of.
pub struct Rendered<'a> {
    pub summaries: &'a [Summary],
    pub per_event: Option<&'a PerEvent>,
    pub goroutines: &'a [GoroutinesRun],
    pub targets: &'a [Target],
    pub command: &'a str,
    pub scan_interval: &'a str,
    pub timings: &'a [(&'a str, f64)],
}

pub fn render(r: &Rendered) -> String {
    let mut out = String::new();
    if !r.summaries.is_empty() {
        let header: Vec<String> = std::iter::once("workload".to_string())
            .chain(MODES.iter().map(|m| match m {
                Mode::None => "none ops/s".to_string(),
                m => format!("{} ops/s (ratio)", m.name()),
            }))
            .collect();
        let rows: Vec<Vec<String>> = r
            .summaries
            .iter()
            .map(|s| {
                std::iter::once(s.workload.to_string())
                    .chain(MODES.iter().map(|&m| ops_cell(s.mode(m))))
                    .collect()
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        out.push_str(&table(&header, &rows));
        let min_wait = r
            .summaries
            .iter()
            .find_map(|s| s.agent(Mode::Precise)?.min_wait_ns)
            .map_or(String::new(), |ns| {
                format!(", its default --min-wait {}", fmt_ns(ns as f64))
            });
        let _ = writeln!(
            out,
            "ops/s: median over the rounds; (ratio) = that mode's median / no agent's median.\n\
             scan = blockprobe --mode scan --scan-interval {} (goroutine-table scans, no \
             uprobes); precise = --mode precise (every uprobe{min_wait}); trace = runtime/trace.",
            r.scan_interval
        );
        for s in r.summaries {
            let _ = writeln!(out, "  {}: {}", s.workload, s.about);
            let modes: Vec<String> = s
                .modes
                .iter()
                .map(|m| {
                    format!(
                        "{} {} (sys {})",
                        m.mode.name(),
                        spread(Some(m)),
                        or_dash(m.sys_s, |v| format!("{v:.2}s"))
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "    ops/s spread (workload sys CPU): {}{}",
                modes.join(", "),
                or_dash(s.trace_mb_per_s, |m| format!("; trace written {m:.1} MB/s"))
            );
            if let Some(t) = s.mode(Mode::Trap) {
                let _ = writeln!(out, "    trap ops/s: {}", ops_cell(Some(t)));
            }
        }
    }

    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in r.summaries {
        for m in AGENT_MODES {
            if let Some(a) = s.agent(m) {
                rows.push(agent_row(s.workload, a));
            }
        }
    }
    rows.extend(r.goroutines.iter().map(goroutines_row));
    if !rows.is_empty() {
        out.push_str("\nblockprobe's own cost, per mode:\n");
        out.push_str(&table(
            &[
                "workload",
                "mode",
                "events/s",
                "events/op",
                "lost",
                "parks/op",
                "agent CPU",
                "agent RSS",
                "scans",
                "CPU/scan",
            ],
            &rows,
        ));
        out.push_str(
            "events/s, events/op: events blockprobe received (+ lost, per op) over the workload's \
             measured run (median); lost: summed over the runs.\nparks/op: precise mode's parks \
             per op (median; the kernel's wait counts, see the per-event cost).\nagent CPU: blockprobe's \
             user+system CPU per run (median), and in parentheses its share of one core during \
             the measured run.\nagent RSS: blockprobe's peak RSS (ru_maxrss, the largest over the \
             runs).\nscans, CPU/scan: scan mode's report: scans per run, and the agent thread's \
             CPU per scan (cpu_ns_total / scans, median over the runs; max = the costliest scan).\n",
        );
    }
    for g in r.goroutines {
        out.push_str("  ");
        out.push_str(goroutines_line(g).trim_start());
        out.push('\n');
    }
    for m in [Mode::Precise, Mode::Trap] {
        if let Some(a) = r
            .summaries
            .iter()
            .find_map(|s| s.agent(m).filter(|a| !a.probes.is_empty()))
        {
            let _ = writeln!(out, "{} mode's probes: {}", m.name(), a.probes.join(" "));
        }
    }
    if let Some(p) = r.per_event {
        out.push_str(&per_event_text(p));
    }

    out.push_str("\ntargets (from the issue):\n");
    out.push_str(&targets_text(r.targets));
    let _ = writeln!(out, "\ncommand: {}", r.command);
    let _ = writeln!(
        out,
        "timings: {}",
        r.timings
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

/// One line per target: its verdict, its name and what was measured, in columns.
pub(super) fn targets_text(targets: &[Target]) -> String {
    let w = targets.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for t in targets {
        let _ = writeln!(
            out,
            "  {:<9}  {:<w$}  {}",
            t.verdict.word(),
            t.name,
            t.measured
        );
    }
    out
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
