//! The targets, checked against what was measured: PASS, FAIL, or UNDECIDED when the
//! measurement could not decide (not run, a run failed, fewer goroutines than the target
//! names).
use std::fmt::Write as _;

use super::stats::{self, Verdict, fmt_ns, fmt_si, kb_to_mb, or_dash};
use super::summary::{PerEvent, Summary};
use super::{GoroutinesRun, Mode, Run, WORKLOADS};

/// Throughput scan mode must keep on every workload (scan/none).
pub const SCAN_KEEP: f64 = 0.98;
/// Agent CPU per scan with [`RSS_TARGET_GOROUTINES`] goroutines, ms (cpu_ns_total / scans).
pub const SCAN_CPU_TARGET_MS: f64 = 50.0;
/// Peak agent RSS with [`RSS_TARGET_GOROUTINES`] goroutines, MB.
pub const RSS_TARGET_MB: f64 = 100.0;
/// Goroutines named in the memory and scan-CPU targets.
pub const RSS_TARGET_GOROUTINES: u32 = 100_000;
/// Precise mode's cost per event, at most this many times a bare uprobe trap's.
pub const PER_EVENT_TARGET: f64 = 1.2;
/// Events per second named in the (earlier) "no lost events" target.
pub const LOSS_TARGET_RATE: f64 = 1e6;

/// A target from the issue and what was measured for it.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub verdict: Verdict,
}

pub fn targets(
    summaries: &[Summary],
    per_event: Option<&PerEvent>,
    runs: &[Run],
    goroutines: &[GoroutinesRun],
) -> Vec<Target> {
    let mut out = Vec::new();

    // scan keeps >= 0.98 of the throughput, on every workload.
    for w in WORKLOADS {
        let s = summaries.iter().find(|s| s.workload == w.name);
        let (measured, verdict) = match s {
            None => ("not run".to_string(), Verdict::Undecided),
            Some(s) => {
                let ratio = s.ratio(Mode::Scan);
                let mut m = format!(
                    "scan/none {} ({} vs {} ops/s",
                    or_dash(ratio, |r| format!("{r:.3}")),
                    or_dash(s.median(Mode::Scan), fmt_si),
                    or_dash(s.median(Mode::None), fmt_si),
                );
                if let Some(sc) = s.mode(Mode::Scan)
                    && sc.paired.len() > 1
                {
                    let lo = sc.paired.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = sc.paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let _ = write!(
                        m,
                        "; per round {lo:.3}..{hi:.3}, median {}",
                        or_dash(stats::median(&sc.paired), |v| format!("{v:.3}"))
                    );
                }
                m.push(')');
                let mut v = stats::at_least_verdict(ratio, SCAN_KEEP);
                let failed = s.modes.iter().map(|m| m.failed).sum::<usize>();
                if failed > 0 {
                    let _ = write!(m, "; {failed} run(s) failed");
                    if v == Verdict::Pass {
                        v = Verdict::Undecided;
                    }
                }
                (m, v)
            }
        };
        out.push(Target {
            name: format!("{}: scan keeps >= {SCAN_KEEP} of throughput", w.name),
            measured,
            verdict,
        });
    }

    // 100k goroutines, scan mode: CPU per scan and RSS.
    let g_scan = goroutines.iter().find(|g| g.mode == Mode::Scan);
    let g_precise = goroutines.iter().find(|g| g.mode == Mode::Precise);
    let k = RSS_TARGET_GOROUTINES / 1000;
    let scan = g_scan.and_then(|g| g.agent.as_ref()?.report.as_ref()?.scan.as_ref());
    let mut verdict =
        stats::below_verdict(scan.and_then(|s| s.mean_ms()), SCAN_CPU_TARGET_MS, false);
    let mut measured = match (g_scan, scan) {
        (None, _) => "not run".into(),
        (Some(_), None) => "no scan figures (the run failed)".into(),
        (Some(g), Some(s)) => format!(
            "mean {} per scan (cpu_ns_total/scans = {:.0} ms / {} scans), max {}, {} failed; \
             {} goroutines, every {}",
            or_dash(s.mean_ms(), |v| format!("{v:.1} ms")),
            s.cpu_ns_total as f64 / 1e6,
            s.scans,
            format_args!("{:.1} ms", s.max_ms()),
            s.failed,
            s.goroutines.max(g.started.unwrap_or(0)),
            fmt_ns(s.interval_ns as f64)
        ),
    };
    undecided_if_short(g_scan, &mut verdict, &mut measured);
    out.push(Target {
        name: format!("{k}k goroutines: agent CPU per scan < {SCAN_CPU_TARGET_MS:.0} ms (scan)"),
        measured,
        verdict,
    });

    let rss = |g: Option<&GoroutinesRun>| g.and_then(|g| g.agent.as_ref()?.maxrss_kb);
    let mut verdict = stats::rss_verdict(rss(g_scan), RSS_TARGET_MB);
    let mut measured = match (g_scan, rss(g_scan)) {
        (None, _) => "not run".into(),
        (Some(g), Some(kb)) => format!(
            "scan: peak {:.1} MB with {} goroutines",
            kb_to_mb(kb),
            or_dash(g.started, |n| n.to_string())
        ),
        (Some(_), None) => "no measurement (the run failed)".into(),
    };
    undecided_if_short(g_scan, &mut verdict, &mut measured);
    if let Some(kb) = rss(g_precise) {
        let _ = write!(measured, "; precise: peak {:.1} MB", kb_to_mb(kb));
    }
    out.push(Target {
        name: format!("{k}k goroutines: agent RSS < {RSS_TARGET_MB:.0} MB (scan)"),
        measured,
        verdict,
    });

    // precise: cost per event <= 1.2x a bare uprobe trap.
    let (measured, verdict) = match per_event {
        None => ("not run (needs pingpong)".to_string(), Verdict::Undecided),
        Some(p) => (
            format!(
                "precise {}/hit vs trap {}/hit: {} (vs scan baseline: {})",
                or_dash(p.precise_ns, fmt_ns),
                or_dash(p.trap_ns, fmt_ns),
                or_dash(p.ratio, |r| format!("{r:.2}x")),
                or_dash(p.ratio_vs_scan, |r| format!("{r:.2}x")),
            ),
            stats::below_verdict(p.ratio, PER_EVENT_TARGET, true),
        ),
    };
    out.push(Target {
        name: format!(
            "{}: precise's cost per event <= {PER_EVENT_TARGET}x a bare uprobe trap",
            per_event.map_or("pingpong", |p| p.workload)
        ),
        measured,
        verdict,
    });

    // Earlier targets, on precise mode (the one with per-event costs).
    let http = summaries.iter().find(|s| s.workload == "http");
    out.push(Target {
        name: "http: precise's slowdown at most runtime/trace's (earlier)".into(),
        measured: match http {
            Some(s) => format!(
                "precise/none {} vs trace/none {}",
                or_dash(s.ratio(Mode::Precise), |r| format!("{r:.2}")),
                or_dash(s.ratio(Mode::Trace), |r| format!("{r:.2}"))
            ),
            None => "not run".into(),
        },
        verdict: http.map_or(Verdict::Undecided, |s| {
            stats::slowdown_verdict(s.ratio(Mode::Precise), s.ratio(Mode::Trace))
        }),
    });
    out.push(lost_target(runs));
    out
}

/// A goroutines run with fewer goroutines than the target names, or that failed, cannot pass.
fn undecided_if_short(g: Option<&GoroutinesRun>, verdict: &mut Verdict, measured: &mut String) {
    let Some(g) = g else { return };
    if g.requested < RSS_TARGET_GOROUTINES && *verdict == Verdict::Pass {
        *verdict = Verdict::Undecided;
        let _ = write!(measured, " (fewer than {RSS_TARGET_GOROUTINES} requested)");
    }
    if g.error.is_some() && *verdict == Verdict::Pass {
        *verdict = Verdict::Undecided;
        measured.push_str(" (the run failed)");
    }
}

/// "No lost events at 1M events/s", over every agent run (lost events in any mode fail it).
fn lost_target(runs: &[Run]) -> Target {
    let agent_runs: Vec<&Run> = runs.iter().filter(|r| r.agent.is_some()).collect();
    let rated: Vec<(f64, u64, &str, Mode)> = agent_runs
        .iter()
        .filter_map(|r| {
            let rep = r.report()?;
            Some((r.events_per_s()?, rep.events_lost, r.workload, r.mode))
        })
        .collect();
    let pairs: Vec<(f64, u64)> = rated.iter().map(|&(r, l, _, _)| (r, l)).collect();
    let mut verdict = stats::lost_verdict(&pairs, LOSS_TARGET_RATE);
    let failed_agents = agent_runs.iter().filter(|r| !r.ok()).count();
    if verdict == Verdict::Pass && failed_agents > 0 {
        verdict = Verdict::Undecided;
    }
    let lost: u64 = pairs.iter().map(|p| p.1).sum();
    let top = rated
        .iter()
        .copied()
        .reduce(|a, b| if b.0 > a.0 { b } else { a });
    let mut measured = match top {
        Some((rate, _, w, m)) => format!(
            "highest rate {}/s ({w}, {}); {lost} lost over {} agent runs",
            fmt_si(rate),
            m.name(),
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
    Target {
        name: format!(
            "no lost events at {} events/s (earlier)",
            fmt_si(LOSS_TARGET_RATE)
        ),
        measured,
        verdict,
    }
}
