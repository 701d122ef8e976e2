//! From the runs to the figures: each workload's median ops/s per mode and ratio to no agent,
//! what blockprobe cost in each of its modes, and precise mode's cost per event against a bare
//! uprobe trap.
use super::stats;
use super::{AGENT_MODES, Mode, Run, Workload};

/// ops/s of one mode over the rounds.
#[derive(Clone, Debug)]
pub struct ModeStats {
    pub mode: Mode,
    pub ok: usize,
    pub failed: usize,
    pub values: Vec<f64>,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The median over the rounds, divided by no agent's median (None for no agent itself).
    pub ratio: Option<f64>,
    /// Per round, this mode's ops/s divided by no agent's in the same round (rounds where both
    /// ran fine): how noisy the ratio is.
    pub paired: Vec<f64>,
    /// The workload's system CPU seconds (median): uprobe hits are charged here.
    pub sys_s: Option<f64>,
}

/// What blockprobe cost, and what it saw, in one of its modes on one workload.
#[derive(Clone, Debug)]
pub struct AgentStats {
    pub mode: Mode,
    pub runs: usize,
    pub events_per_s: Option<f64>,
    pub events_per_s_max: Option<f64>,
    /// Events received + lost per op (median).
    pub events_per_op: Option<f64>,
    /// Precise mode: parks per op (median), and where the figure came from
    /// ([`Run::parks_per_op`]).
    pub parks_per_op: Option<f64>,
    pub parks_source: Option<&'static str>,
    /// Precise mode: its in-kernel filter, from the first report that has one.
    pub min_wait_ns: Option<u64>,
    pub events_total: u64,
    pub lost_total: u64,
    pub cpu_s: Option<f64>,
    pub cpu_share: Option<f64>,
    pub rss_kb: Option<u64>,
    pub attach_s: Option<f64>,
    /// Scan mode: agent CPU per scan (cpu_ns_total / scans), median over the runs, ms; the
    /// most expensive scan of all the runs, ms; scans per run (median).
    pub scan_ms_mean: Option<f64>,
    pub scan_ms_max: Option<f64>,
    pub scans: Option<f64>,
    pub probes: Vec<String>,
}

impl AgentStats {
    fn of(mode: Mode, mine: &[&Run]) -> Option<AgentStats> {
        let all: Vec<&Run> = mine.iter().copied().filter(|r| r.mode == mode).collect();
        if all.is_empty() {
            return None;
        }
        let ok: Vec<&Run> = all.iter().copied().filter(|r| r.ok()).collect();
        let med = |xs: Vec<f64>| stats::median(&xs);
        let rates: Vec<f64> = ok.iter().filter_map(|r| r.events_per_s()).collect();
        let (events_total, lost_total) = all
            .iter()
            .filter_map(|r| r.report())
            .fold((0, 0), |(e, l), r| {
                (e + r.events_received, l + r.events_lost)
            });
        let agents = || ok.iter().filter_map(|r| r.agent.as_ref());
        let scans = || ok.iter().filter_map(|r| r.report()?.scan.as_ref());
        Some(AgentStats {
            mode,
            runs: all.len(),
            events_per_s: stats::median(&rates),
            events_per_s_max: rates.iter().copied().reduce(f64::max),
            events_per_op: med(ok.iter().filter_map(|r| r.events_per_op()).collect()),
            parks_per_op: med(ok
                .iter()
                .filter_map(|r| Some(r.parks_per_op()?.0))
                .collect()),
            parks_source: {
                let mut srcs: Vec<&'static str> = ok
                    .iter()
                    .filter_map(|r| Some(r.parks_per_op()?.1))
                    .collect();
                srcs.dedup();
                match srcs.as_slice() {
                    [] => None,
                    [one] => Some(*one),
                    _ => Some("mixed: wait histograms / events"),
                }
            },
            min_wait_ns: all.iter().find_map(|r| r.report()?.min_wait_ns),
            events_total,
            lost_total,
            cpu_s: med(agents().filter_map(|a| a.cpu_s).collect()),
            cpu_share: med(ok.iter().filter_map(|r| r.agent_cpu_share()).collect()),
            rss_kb: all.iter().filter_map(|r| r.agent.as_ref()?.maxrss_kb).max(),
            attach_s: med(agents().map(|a| a.attach_s).collect()),
            scan_ms_mean: med(scans().filter_map(|s| s.mean_ms()).collect()),
            scan_ms_max: scans().map(|s| s.max_ms()).reduce(f64::max),
            scans: med(scans().map(|s| s.scans as f64).collect()),
            probes: all
                .iter()
                .find_map(|r| Some(r.report()?.probes.clone()))
                .unwrap_or_default(),
        })
    }
}

/// One workload over every round.
#[derive(Clone, Debug)]
pub struct Summary {
    pub workload: &'static str,
    pub about: &'static str,
    /// Whether it also ran in trap mode (the per-event cost's baseline).
    pub trap: bool,
    /// One per mode it ran in, in the order of [`Workload::modes`].
    pub modes: Vec<ModeStats>,
    /// One per agent mode it ran in, in the order of [`AGENT_MODES`].
    pub agents: Vec<AgentStats>,
    pub trace_mb_per_s: Option<f64>,
}

impl Summary {
    pub fn of(w: &Workload, runs: &[Run]) -> Summary {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.workload == w.name).collect();
        let mut modes: Vec<ModeStats> = w
            .modes()
            .into_iter()
            .map(|m| {
                let of_mode: Vec<&&Run> = mine.iter().filter(|r| r.mode == m).collect();
                let values: Vec<f64> = of_mode.iter().filter_map(|r| r.ops_per_s()).collect();
                let sys: Vec<f64> = of_mode
                    .iter()
                    .filter(|r| r.ok())
                    .filter_map(|r| r.workload_sys_s)
                    .collect();
                ModeStats {
                    mode: m,
                    sys_s: stats::median(&sys),
                    ok: values.len(),
                    failed: of_mode.len() - values.len(),
                    median: stats::median(&values),
                    min: values.iter().copied().reduce(f64::min),
                    max: values.iter().copied().reduce(f64::max),
                    ratio: None,
                    paired: Vec::new(),
                    values,
                }
            })
            .collect();
        let in_round = |m: Mode, round: u32| {
            mine.iter()
                .find(|r| r.mode == m && r.round == round)
                .and_then(|r| r.ops_per_s())
        };
        let none = modes
            .iter()
            .find(|m| m.mode == Mode::None)
            .and_then(|m| m.median);
        let rounds: Vec<u32> = {
            let mut r: Vec<u32> = mine.iter().map(|r| r.round).collect();
            r.sort_unstable();
            r.dedup();
            r
        };
        for m in modes.iter_mut().filter(|m| m.mode != Mode::None) {
            m.ratio = stats::ratio(m.median, none);
            m.paired = rounds
                .iter()
                .filter_map(|&k| stats::ratio(in_round(m.mode, k), in_round(Mode::None, k)))
                .collect();
        }
        let trace_rates: Vec<f64> = mine
            .iter()
            .filter(|r| r.mode == Mode::Trace && r.ok())
            .filter_map(|r| Some(r.trace_bytes? as f64 / 1e6 / r.ops?.secs))
            .collect();
        Summary {
            workload: w.name,
            about: w.about,
            trap: w.trap,
            agents: AGENT_MODES
                .iter()
                .filter_map(|&m| AgentStats::of(m, &mine))
                .collect(),
            modes,
            trace_mb_per_s: stats::median(&trace_rates),
        }
    }

    pub fn mode(&self, m: Mode) -> Option<&ModeStats> {
        self.modes.iter().find(|s| s.mode == m)
    }

    pub fn agent(&self, m: Mode) -> Option<&AgentStats> {
        self.agents.iter().find(|s| s.mode == m)
    }

    pub fn median(&self, m: Mode) -> Option<f64> {
        self.mode(m)?.median
    }

    pub fn ratio(&self, m: Mode) -> Option<f64> {
        self.mode(m)?.ratio
    }
}

/// Precise mode's cost per event against the bare cost of a uprobe trap, on the ping-pong
/// workload.
///
/// For a mode M with H_M probe hits per op:
///
///   cost_per_hit(M) = (1/ops_M − 1/ops_none) / H_M
///
/// i.e. the time each op gained over no agent (1/ops/s, from the medians of this invocation),
/// shared among the probe hits of that op. Then the target is
/// `cost_per_hit(precise) / cost_per_hit(trap) <= 1.2`.
///
/// - P = parks per op, from the precise runs (median, [`Run::parks_per_op`]): the finished
///   waits the kernel counted in precise mode's wait histograms (every park, whether or not
///   `--min-wait` let it through as an event); from an agent without histograms and without
///   filtering, half the events received + lost (each park streams a park event and, when it
///   ends, a ready event). In ping-pong, P is 2 per round trip in theory (the first to arrive
///   at each of the two unbuffered channels parks).
/// - H_trap = 2P: trap mode's no-op probes sit exactly where precise mode probes gopark and
///   ready (a bare trap at each of the two points; they cost differently, so both are needed).
/// - H_precise = 2P: every park hits the gopark probe and, when an unbuffered channel's
///   goready wakes it, the ready probe. Precise mode's other probes are left out: newproc1 and
///   goexit1 hit a few times per run, and its semacquire probes not at all, since ping-pong
///   takes no semaphore.
/// - Waits before the start line and after the loop (a handful) count as in the loop.
/// - All three agent modes attach the sched tracepoints too, so each overhead above also holds
///   their (small: ping-pong rarely switches OS threads) cost; the same figures against scan
///   mode as the baseline instead of no agent, which removes it, are printed alongside.
#[derive(Clone, Debug, Default)]
pub struct PerEvent {
    pub workload: &'static str,
    /// Per-op wall time (1 / median ops/s), ns.
    pub ns_per_op_none: Option<f64>,
    pub ns_per_op_scan: Option<f64>,
    pub ns_per_op_precise: Option<f64>,
    pub ns_per_op_trap: Option<f64>,
    /// P, where it came from, and H_precise, H_trap.
    pub parks_per_op: Option<f64>,
    pub parks_source: Option<&'static str>,
    pub hits_per_op_precise: Option<f64>,
    pub hits_per_op_trap: Option<f64>,
    /// Against no agent: the cost per hit, ns, and precise / trap.
    pub precise_ns: Option<f64>,
    pub trap_ns: Option<f64>,
    pub ratio: Option<f64>,
    /// The same against scan mode as the baseline.
    pub precise_ns_vs_scan: Option<f64>,
    pub trap_ns_vs_scan: Option<f64>,
    pub ratio_vs_scan: Option<f64>,
}

/// The formula and assumptions, as printed under the per-event figures.
pub const PER_EVENT_METHOD: &str = "\
cost per hit(M) = (1/ops_M - 1/ops_none) / hits_per_op(M), from the median ops/s of this run;
  parks/op P from the precise runs (median): the finished waits the kernel counted in precise
    mode's wait histograms (every park, streamed or filtered by --min-wait); from an agent
    without them (and without filtering), half its events (a park event + a ready event each);
  hits_per_op(trap) = 2P: trap's no-op probes sit at precise's gopark and ready probe points;
  hits_per_op(precise) = 2P: each park hits gopark and, woken by an unbuffered channel's
    goready, ready; newproc1/goexit1 (a few hits per run) and semacquire (ping-pong takes no
    semaphore) are left out;
  waits before the start line and after the loop (a handful) count as in the loop;
  every agent mode also attaches the sched tracepoints: `vs scan` uses scan mode as the baseline
    instead of no agent, which takes their (and the scans') share out.";

impl PerEvent {
    pub fn of(s: &Summary) -> PerEvent {
        let ns = |m: Mode| s.median(m).filter(|v| *v > 0.0).map(|v| 1e9 / v);
        let precise_agent = s.agent(Mode::Precise);
        let parks = precise_agent.and_then(|a| a.parks_per_op);
        let hits_precise = parks.map(|p| 2.0 * p);
        let hits_trap = hits_precise;
        let per_hit = |m: Option<f64>, base: Option<f64>, hits: Option<f64>| match (m, base, hits) {
            (Some(m), Some(b), Some(h)) if h > 0.0 => Some((m - b) / h),
            _ => None,
        };
        let over = |p: Option<f64>, t: Option<f64>| match (p, t) {
            // A trap that cost nothing measurable gives no meaningful ratio.
            (Some(p), Some(t)) if t > 0.0 => Some(p / t),
            _ => None,
        };
        let (none, scan) = (ns(Mode::None), ns(Mode::Scan));
        let (precise, trap) = (ns(Mode::Precise), ns(Mode::Trap));
        let precise_ns = per_hit(precise, none, hits_precise);
        let trap_ns = per_hit(trap, none, hits_trap);
        let precise_ns_vs_scan = per_hit(precise, scan, hits_precise);
        let trap_ns_vs_scan = per_hit(trap, scan, hits_trap);
        PerEvent {
            workload: s.workload,
            ns_per_op_none: none,
            ns_per_op_scan: scan,
            ns_per_op_precise: precise,
            ns_per_op_trap: trap,
            parks_per_op: parks,
            parks_source: precise_agent.and_then(|a| a.parks_source),
            hits_per_op_precise: hits_precise,
            hits_per_op_trap: hits_trap,
            precise_ns,
            trap_ns,
            ratio: over(precise_ns, trap_ns),
            precise_ns_vs_scan,
            trap_ns_vs_scan,
            ratio_vs_scan: over(precise_ns_vs_scan, trap_ns_vs_scan),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(m: Mode, median: f64) -> ModeStats {
        ModeStats {
            mode: m,
            ok: 1,
            failed: 0,
            values: vec![median],
            median: Some(median),
            min: Some(median),
            max: Some(median),
            ratio: None,
            paired: vec![],
            sys_s: None,
        }
    }

    #[test]
    fn per_event_cost() {
        // none: 500 ns/op; trap: 2 parks/op at 1 µs each; precise: 4 events/op at 1.1 µs each.
        let s = Summary {
            workload: "pingpong",
            about: "",
            trap: true,
            modes: vec![
                mode(Mode::None, 2e6),
                mode(Mode::Scan, 2e6),
                mode(Mode::Trap, 1e9 / 4500.0),
                mode(Mode::Precise, 1e9 / 4900.0),
            ],
            agents: vec![AgentStats {
                mode: Mode::Precise,
                runs: 1,
                events_per_s: None,
                events_per_s_max: None,
                events_per_op: Some(0.01),
                parks_per_op: Some(2.0),
                parks_source: Some("wait histograms"),
                min_wait_ns: Some(1_000_000),
                events_total: 0,
                lost_total: 0,
                cpu_s: None,
                cpu_share: None,
                rss_kb: None,
                attach_s: None,
                scan_ms_mean: None,
                scan_ms_max: None,
                scans: None,
                probes: vec![],
            }],
            trace_mb_per_s: None,
        };
        let p = PerEvent::of(&s);
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-6 * b.abs());
        // Both modes hit gopark and ready: 2 hits per park.
        assert!(close(p.hits_per_op_trap, 4.0));
        assert!(close(p.trap_ns, 1000.0), "{p:?}");
        assert!(close(p.precise_ns, 1100.0), "{p:?}");
        assert!(close(p.ratio, 1.1), "{p:?}");
        assert!(close(p.ratio_vs_scan, 1.1), "{p:?}");

        // No trap run: no ratio.
        let mut s2 = s.clone();
        s2.modes.retain(|m| m.mode != Mode::Trap);
        assert_eq!(PerEvent::of(&s2).ratio, None);
    }
}
