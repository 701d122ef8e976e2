//! `cargo xtask bench`: what attaching blockprobe costs a live Go program, in each of its modes,
//! next to no agent and to Go's own `runtime/trace`, on the same machine in the same invocation.
//!
//! Throughput workloads (Go fixtures `tests/fixtures/bench_*`) run in four modes: no agent;
//! blockprobe in `scan` mode (goroutine-table scans every --scan-interval, no uprobes) and in
//! `precise` mode (every uprobe), each `blockprobe attach --pid N --mode M --json FILE`,
//! attached before the measured loop starts and ending by itself when the workload exits; and
//! runtime/trace recording (`BENCH_TRACE=FILE`). The ping-pong workload also runs with the
//! agent's hidden `--mode trap` (no-op uprobes where precise mode probes runtime.gopark and runtime.ready): the
//! bare cost of a uprobe trap, the baseline of precise mode's per-event cost (see
//! [`summary::PerEvent`]). The modes are interleaved over rounds, in a rotating order, so that
//! a noisy VM hurts them alike; each cell is a median, each ratio one against the no-agent
//! median of the same invocation. Last, blockprobe attaches (scan mode, then precise mode) to a
//! process with 100k blocked goroutines for its memory and scan cost, and `blockprobe
//! bench-stacks` times stacks of goroutines stuck in C (see [`stacks`]). Nothing is hard-coded:
//! every figure printed is measured, and the targets are checked against the figures.
mod json;
mod proc;
mod report;
mod runs;
mod stacks;
mod stat;
mod stats;
mod summary;
mod targets;
mod trace;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use self::runs::{Ctx, run_goroutines, run_throughput};
use self::stacks::{STACKS_FIXTURE, STACKS_WORKLOAD, run_stacks};
use self::stat::{STAT_FIXTURE, STAT_WORKLOAD, run_stat};
use self::stats::OpsLine;
use crate::fixtures::{self, Variant};
use crate::setup::{self, GoWanted};
use crate::util;

/// `cargo xtask bench` options.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// One round of 2-second runs (about a minute instead of about six).
    #[arg(long)]
    pub quick: bool,
    /// The Go version to build the workloads with (default: the newest supported).
    #[arg(long = "go", value_name = "VERSION")]
    pub go: Option<String>,
    /// Rounds of none/scan/precise/trace(/trap) runs per workload [default: 5, or 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: Option<u32>,
    /// Seconds each throughput run lasts [default: 3, or 2 with --quick].
    #[arg(long, value_name = "SECS")]
    pub secs: Option<f64>,
    /// Blocked goroutines in the memory/scan runs.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub goroutines: u32,
    /// blockprobe's --scan-interval in scan mode (100ms: 10 scans a second, its default).
    #[arg(long, value_name = "DURATION", default_value = "100ms")]
    pub scan_interval: String,
    /// Run only these workloads (pingpong, mutexpool, http, goroutines, stacks, stat);
    /// repeatable.
    /// `--only trace`, on its own, runs the Go trace reader bench instead (blockprobe
    /// trace-dump against go tool trace on 10 MB and 200 MB traces; see bench/trace.rs).
    #[arg(long, value_name = "WORKLOAD")]
    pub only: Vec<String>,
    /// Measure this blockprobe binary instead of building target/release/blockprobe.
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
}

/// One throughput workload: a Go fixture that follows the `ready pid=` / start line /
/// `ops= secs=` protocol.
pub struct Workload {
    pub name: &'static str,
    pub fixture: &'static str,
    pub about: &'static str,
    /// Also run it with `--mode trap`, for the per-event cost (ping-pong only: there every
    /// park is a probe hit of a known kind, see [`summary::PerEvent`]).
    pub trap: bool,
}

impl Workload {
    /// The modes it runs in, rotated over the rounds.
    pub fn modes(&self) -> Vec<Mode> {
        let mut m = MODES.to_vec();
        if self.trap {
            m.push(Mode::Trap);
        }
        m
    }
}

pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "pingpong",
        fixture: "bench_pingpong",
        about: "2 goroutines, round trips over unbuffered channels (op = round trip)",
        trap: true,
    },
    Workload {
        name: "mutexpool",
        fixture: "bench_mutexpool",
        about: "8 workers on one sync.Mutex guarding a map (op = critical section)",
        trap: false,
    },
    Workload {
        name: "http",
        fixture: "bench_http",
        about: "net/http server on 127.0.0.1, 16 keep-alive clients in a separate process \
                (op = request); the agent watches the server only",
        trap: false,
    },
];
pub const GOROUTINES_WORKLOAD: &str = "goroutines";
const GOROUTINES_FIXTURE: &str = "bench_goroutines";
/// How long blockprobe stays attached in the goroutines runs.
const GOROUTINES_ATTACH: &str = "3s";
/// The agent modes of the goroutines runs: scan (the targets) and precise (for comparison).
const GOROUTINES_MODES: [Mode; 2] = [Mode::Scan, Mode::Precise];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    None,
    /// `blockprobe attach --mode scan --scan-interval I`.
    Scan,
    /// `blockprobe attach --mode precise`.
    Precise,
    Trace,
    /// `blockprobe attach --mode trap`: no-op uprobes at precise mode's gopark and ready points.
    Trap,
}

/// Every throughput workload's modes, in the order of the table's columns.
pub const MODES: [Mode; 4] = [Mode::None, Mode::Scan, Mode::Precise, Mode::Trace];
/// The modes with blockprobe attached, in the order of the agent table's rows.
pub const AGENT_MODES: [Mode; 3] = [Mode::Scan, Mode::Precise, Mode::Trap];

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Scan => "scan",
            Mode::Precise => "precise",
            Mode::Trace => "trace",
            Mode::Trap => "trap",
        }
    }

    /// The agent's `--mode` value, for the modes that attach blockprobe.
    pub fn agent_mode(self) -> Option<&'static str> {
        match self {
            Mode::Scan | Mode::Precise | Mode::Trap => Some(self.name()),
            Mode::None | Mode::Trace => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::None => "no agent",
            Mode::Scan => "blockprobe attached, scan mode",
            Mode::Precise => "blockprobe attached, precise mode",
            Mode::Trace => "runtime/trace recording",
            Mode::Trap => "blockprobe attached, trap mode (no-op uprobes on gopark and ready)",
        }
    }
}

/// Scan mode's figures from blockprobe's report (`"scan"`).
#[derive(Clone, Debug, Default)]
pub struct ScanFacts {
    pub interval_ns: u64,
    pub scans: u64,
    pub failed: u64,
    pub goroutines: u64,
    pub skipped: u64,
    /// The agent thread's CPU over the scans (CLOCK_THREAD_CPUTIME_ID around each).
    pub cpu_ns_total: u64,
    pub cpu_ns_max: u64,
}

impl ScanFacts {
    /// Mean agent CPU per scan, ms: `cpu_ns_total / scans`.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.scans > 0).then(|| self.cpu_ns_total as f64 / self.scans as f64 / 1e6)
    }

    pub fn max_ms(&self) -> f64 {
        self.cpu_ns_max as f64 / 1e6
    }
}

/// What blockprobe's JSON report said (the fields the bench uses).
#[derive(Clone, Debug, Default)]
pub struct ReportFacts {
    /// `"mode"`: scan, precise or trap.
    pub mode: String,
    pub scan: Option<ScanFacts>,
    /// Precise mode's in-kernel filter (`"min_wait_ns"`): parks shorter than this are not
    /// streamed as events. None or 0: every transition is streamed.
    pub min_wait_ns: Option<u64>,
    /// Precise mode: the finished waits the kernel counted (the sum of `wait_totals[].count`),
    /// when the report has them: one gopark hit and one ready hit each.
    pub waits_counted: Option<u64>,
    pub events_received: u64,
    pub events_lost: u64,
    pub duration_s: f64,
    pub end_reason: String,
    pub probes: Vec<String>,
    pub blocked: usize,
    pub runtime_goroutines_hidden: usize,
    pub goroutines_seen: u64,
}

/// A report read without its `blocked` list, only counted: 100k entries as a `Value` are
/// hundreds of MB in xtask, and every process xtask starts afterwards would inherit that
/// high-water mark in its `ru_maxrss` (Linux carries the pre-exec mm's peak over exec), which
/// made the agents' measured RSS wrong.
struct LiteReport {
    fields: serde_json::Map<String, Value>,
    blocked: usize,
}

impl<'de> serde::Deserialize<'de> for LiteReport {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LiteReport;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a blockprobe report object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<LiteReport, A::Error> {
                let mut r = LiteReport {
                    fields: serde_json::Map::new(),
                    blocked: 0,
                };
                while let Some(k) = map.next_key::<String>()? {
                    if k == "blocked" {
                        r.blocked = map.next_value::<Vec<serde::de::IgnoredAny>>()?.len();
                    } else {
                        let v = map.next_value::<Value>()?;
                        r.fields.insert(k, v);
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

impl ReportFacts {
    fn parse(v: &Value) -> Result<ReportFacts> {
        let u = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .with_context(|| format!("the report has no `{k}` number"))
        };
        let scan = match v.get("scan") {
            None | Some(Value::Null) => None,
            Some(s) => Some(ScanFacts {
                interval_ns: u(s, "interval_ns")?,
                scans: u(s, "scans")?,
                failed: u(s, "failed")?,
                goroutines: u(s, "goroutines")?,
                skipped: u(s, "skipped")?,
                cpu_ns_total: u(s, "cpu_ns_total")?,
                cpu_ns_max: u(s, "cpu_ns_max")?,
            }),
        };
        Ok(ReportFacts {
            mode: v["mode"]
                .as_str()
                .context("the report has no `mode` (a blockprobe older than --mode?)")?
                .to_string(),
            scan,
            min_wait_ns: v.get("min_wait_ns").and_then(Value::as_u64),
            // The exact per-reason totals (the per-site histograms may be sampled estimates);
            // a report without them (older agents) has only the histograms.
            waits_counted: v
                .get("wait_totals")
                .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
                .or_else(|| v.get("wait_histograms"))
                .and_then(Value::as_array)
                .map(|hs| {
                    hs.iter()
                        .filter_map(|h| h.get("count").and_then(Value::as_u64))
                        .sum()
                }),
            events_received: u(v, "events_received")?,
            events_lost: u(v, "events_lost")?,
            duration_s: u(v, "duration_ns")? as f64 / 1e9,
            end_reason: v["end_reason"].as_str().unwrap_or("?").to_string(),
            probes: v["probes"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| format!("{}+{}", p["symbol"].as_str().unwrap_or("?"), p["offset"]))
                        .collect()
                })
                .unwrap_or_default(),
            blocked: 0, // counted by `LiteReport`
            runtime_goroutines_hidden: v["runtime_goroutines_hidden"].as_u64().unwrap_or(0)
                as usize,
            goroutines_seen: v["goroutines_seen"].as_u64().unwrap_or(0),
        })
    }

    fn read(path: &Path) -> Result<ReportFacts> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("blockprobe wrote no report at {}", path.display()))?;
        let LiteReport { fields, blocked } = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        drop(text);
        let mut facts = ReportFacts::parse(&Value::Object(fields))
            .with_context(|| format!("reading {}", path.display()))?;
        facts.blocked = blocked;
        Ok(facts)
    }
}

/// One blockprobe process: what it cost and what it reported.
#[derive(Clone, Debug, Default)]
pub struct AgentRun {
    pub pid: u32,
    /// The `--mode` it was started with.
    pub mode: &'static str,
    /// From its start to its `attached` line.
    pub attach_s: f64,
    /// CPU (user + system) used by the time it printed `attached` (startup, probe placement).
    pub cpu_at_attach_s: Option<f64>,
    /// Its whole CPU time (wait4).
    pub cpu_s: Option<f64>,
    /// Its peak RSS (wait4's ru_maxrss), kB.
    pub maxrss_kb: Option<u64>,
    /// Its whole wall time.
    pub wall_s: Option<f64>,
    /// How long after the target's exit it exited (throughput runs).
    pub exit_lag_s: Option<f64>,
    pub exit: Option<String>,
    pub report_path: PathBuf,
    pub report: Option<ReportFacts>,
    /// Why the report could not be read, if it could not.
    pub report_error: Option<String>,
    /// Its stderr, except the `attached` line.
    pub stderr: Vec<String>,
}

/// One throughput run.
#[derive(Clone, Debug)]
pub struct Run {
    pub workload: &'static str,
    pub mode: Mode,
    pub round: u32,
    pub ops: Option<OpsLine>,
    /// The workload process's CPU (user + system) and system time alone, from wait4. For
    /// bench_http this includes the load generator, a child it waits for.
    pub workload_cpu_s: Option<f64>,
    pub workload_sys_s: Option<f64>,
    pub trace_bytes: Option<u64>,
    pub agent: Option<AgentRun>,
    pub error: Option<String>,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.ops.is_some()
    }

    pub fn ops_per_s(&self) -> Option<f64> {
        self.ops.filter(|_| self.ok()).map(|o| o.per_sec())
    }

    pub fn report(&self) -> Option<&ReportFacts> {
        self.agent.as_ref()?.report.as_ref()
    }

    /// Events the agent received per second of the workload's measured run.
    pub fn events_per_s(&self) -> Option<f64> {
        Some(self.report()?.events_received as f64 / self.ops?.secs)
    }

    /// Events streamed (received, or lost for a full ring) per op.
    pub fn events_per_op(&self) -> Option<f64> {
        let r = self.report()?;
        let ops = self.ops.filter(|o| o.ops > 0)?.ops;
        Some((r.events_received + r.events_lost) as f64 / ops as f64)
    }

    /// Parks per op as precise mode saw them, and where that figure came from: the finished
    /// waits the kernel counted in its histograms when the report has them (they count every
    /// park, streamed or filtered out by --min-wait); otherwise half the events, when nothing
    /// was filtered (every park streams a park event and, when it ends, a ready event).
    pub fn parks_per_op(&self) -> Option<(f64, &'static str)> {
        let r = self.report().filter(|_| self.mode == Mode::Precise)?;
        let ops = self.ops.filter(|o| o.ops > 0)?.ops as f64;
        match r.waits_counted {
            Some(w) if w > 0 => Some((w as f64 / ops, "wait histograms")),
            _ if r.min_wait_ns.unwrap_or(0) == 0 => Some((
                (r.events_received + r.events_lost) as f64 / 2.0 / ops,
                "events / 2",
            )),
            _ => None,
        }
    }

    /// The agent's CPU during the measured run, as a share of one core.
    pub fn agent_cpu_share(&self) -> Option<f64> {
        let a = self.agent.as_ref()?;
        Some((a.cpu_s? - a.cpu_at_attach_s?) / self.ops?.secs)
    }
}

/// One goroutines (memory/scan) run.
#[derive(Clone, Debug)]
pub struct GoroutinesRun {
    pub mode: Mode,
    pub requested: u32,
    /// `runtime.NumGoroutine()` as the workload printed it.
    pub started: Option<u64>,
    pub target_rss_kb: Option<u64>,
    pub agent: Option<AgentRun>,
    pub error: Option<String>,
}

pub fn bench(root: &Path, args: &Args) -> Result<()> {
    let t_all = Instant::now();
    let command = {
        let mut c = Command::new("cargo");
        c.arg("xtask").args(std::env::args_os().skip(1));
        util::display(&c)
    };
    if args.only.iter().any(|o| o == trace::TRACE_WORKLOAD) {
        if args.only.len() > 1 {
            bail!("--only {}: run it on its own", trace::TRACE_WORKLOAD);
        }
        return trace::bench(root, args, &command);
    }
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 5 });
    let secs = args.secs.unwrap_or(if args.quick { 2.0 } else { 3.0 });
    if !(0.2..=600.0).contains(&secs) {
        bail!("--secs must be between 0.2 and 600");
    }
    if stats::parse_interval_s(&args.scan_interval).is_none_or(|s| s <= 0.0) {
        bail!(
            "--scan-interval {}: want a positive duration such as 100ms, 1s",
            args.scan_interval
        );
    }
    for o in &args.only {
        if o != GOROUTINES_WORKLOAD
            && o != STACKS_WORKLOAD
            && o != STAT_WORKLOAD
            && !WORKLOADS.iter().any(|w| w.name == o)
        {
            bail!(
                "--only {o}: no such workload; there are {}, {GOROUTINES_WORKLOAD}, \
                 {STACKS_WORKLOAD}, {STAT_WORKLOAD}",
                WORKLOADS
                    .iter()
                    .map(|w| w.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let selected = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let workloads: Vec<&Workload> = WORKLOADS.iter().filter(|w| selected(w.name)).collect();
    let with_goroutines = selected(GOROUTINES_WORKLOAD);
    let with_stacks = selected(STACKS_WORKLOAD);
    let with_stat = selected(STAT_WORKLOAD);
    let go_version = match &args.go {
        Some(v) => setup::supported_go(v)?,
        None => setup::newest_go(),
    };
    let mut timings: Vec<(&str, f64)> = Vec::new();

    println!("==> bench: {command}");
    let t = Instant::now();
    let setup = setup::setup(root, &GoWanted::These(vec![go_version.to_string()]))?;
    timings.push(("setup", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let agent = agent_binary(args, &setup)?;
    if args.agent.is_none() {
        timings.push(("build", t.elapsed().as_secs_f64()));
    }

    println!("\n==> building the bench workloads with Go {go_version}");
    let t = Instant::now();
    let go: Vec<_> = setup
        .go
        .iter()
        .filter(|g| g.version == go_version)
        .cloned()
        .collect();
    if go.is_empty() {
        bail!("Go {go_version} is not installed: run `cargo xtask setup`");
    }
    let mut names: Vec<&str> = workloads.iter().map(|w| w.fixture).collect();
    if with_goroutines {
        names.push(GOROUTINES_FIXTURE);
    }
    if with_stacks {
        names.push(STACKS_FIXTURE);
    }
    if with_stat {
        names.push(STAT_FIXTURE);
    }
    fixtures::build(
        &setup,
        &fixtures::Selection {
            toolchains: &go,
            variants: &[Variant::Default],
            only: &names,
        },
    )
    .context("building the bench workloads failed")?;
    timings.push(("fixtures", t.elapsed().as_secs_f64()));

    let out_dir = root.join("target/bench");
    let measured = snapshot_agent(&agent, &out_dir)?;
    let ctx = Ctx {
        root: root.to_path_buf(),
        go_version: go_version.to_string(),
        agent: measured,
        runs_dir: out_dir.join("runs"),
        tmp_dir: out_dir.join("tmp"),
        secs,
        scan_interval: args.scan_interval.clone(),
    };
    for d in [&ctx.runs_dir, &ctx.tmp_dir] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let machine = report::machine(root);
    if let Some(note) = report::load_note(&machine) {
        println!("\nbench: {note}");
    }

    let t = Instant::now();
    let mut runs = Vec::new();
    if !workloads.is_empty() {
        println!(
            "\n==> throughput: {} workload(s) x {{none, scan, precise, trace}} (+ trap for \
             pingpong) x {rounds} round(s) of {secs}s; scan mode every {}",
            workloads.len(),
            args.scan_interval
        );
    }
    for round in 0..rounds {
        for (wi, w) in workloads.iter().enumerate() {
            for mode in stats::rotated(&w.modes(), round as usize + wi) {
                println!(
                    "\n--> round {}/{rounds}: {} with {}",
                    round + 1,
                    w.name,
                    mode.describe()
                );
                let run = run_throughput(&ctx, w, mode, round);
                println!("{}", report::run_line(&run));
                runs.push(run);
            }
        }
    }
    timings.push(("throughput runs", t.elapsed().as_secs_f64()));

    let mut goroutines = Vec::new();
    if with_goroutines {
        let t = Instant::now();
        for mode in GOROUTINES_MODES {
            println!(
                "\n==> memory and scan cost: blockprobe ({} mode) attached for \
                 {GOROUTINES_ATTACH} to {} blocked goroutines",
                mode.name(),
                args.goroutines
            );
            let g = run_goroutines(&ctx, args.goroutines, mode);
            println!("{}", report::goroutines_line(&g));
            goroutines.push(g);
        }
        timings.push(("goroutines runs", t.elapsed().as_secs_f64()));
    }

    let mut stacks = None;
    if with_stacks {
        let t = Instant::now();
        println!(
            "\n==> stacks: goroutines stuck in C ({STACKS_FIXTURE}): capture, cold and warm \
             symbolization"
        );
        let s = run_stacks(&ctx);
        println!("{}", stacks::line(&s));
        stacks = Some(s);
        timings.push(("stacks runs", t.elapsed().as_secs_f64()));
    }

    let mut stat = None;
    if with_stat {
        let t = Instant::now();
        println!("\n==> stat: one reading of the runtime health figures ({STAT_FIXTURE})");
        let s = run_stat(&ctx);
        println!("{}", stat::line(&s));
        stat = Some(s);
        timings.push(("stat runs", t.elapsed().as_secs_f64()));
    }

    timings.push(("total", t_all.elapsed().as_secs_f64()));
    let config = json!({
        "quick": args.quick, "rounds": rounds, "secs": secs, "goroutines": args.goroutines,
        "scan_interval": args.scan_interval, "go_version": go_version, "only": args.only,
        "agent": agent, "agent_measured_copy": ctx.agent,
        "modes": MODES.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "trap_workloads": workloads.iter().filter(|w| w.trap).map(|w| w.name).collect::<Vec<_>>(),
        "goroutines_modes": GOROUTINES_MODES.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "goroutines_attach": GOROUTINES_ATTACH,
    });
    let summaries: Vec<summary::Summary> = workloads
        .iter()
        .map(|w| summary::Summary::of(w, &runs))
        .collect();
    let per_event = summaries.iter().find(|s| s.trap).map(summary::PerEvent::of);
    let targets = targets::targets(&summaries, per_event.as_ref(), &runs, &goroutines);
    let machine_end = report::machine(root);
    println!();
    print!(
        "{}",
        report::render(&report::Rendered {
            summaries: &summaries,
            per_event: per_event.as_ref(),
            goroutines: &goroutines,
            targets: &targets,
            command: &command,
            scan_interval: &args.scan_interval,
            timings: &timings,
        })
    );
    if let Some(s) = &stacks {
        println!("{}", stacks::line(s));
    }
    if let Some(s) = &stat {
        println!("{}", stat::line(s));
    }

    let doc = json::document(json::DocParts {
        command: &command,
        config,
        machine: (machine, machine_end),
        summaries: &summaries,
        per_event: per_event.as_ref(),
        runs: &runs,
        goroutines: &goroutines,
        targets: &targets,
        timings: &timings,
    });
    let mut doc = doc;
    if let Some(s) = &stacks {
        doc["stacks"] = json!({ "result": s.result, "error": s.error });
    }
    if let Some(s) = &stat {
        doc["stat"] = json!({ "result": s.result, "error": s.error });
    }
    let results = out_dir.join("results.json");
    write_results(&results, &doc)?;
    let _ = std::fs::remove_dir_all(&ctx.tmp_dir);

    let failed: Vec<String> = runs
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{} {} round {}", r.workload, r.mode.name(), r.round + 1))
        .chain(
            goroutines
                .iter()
                .filter(|g| g.error.is_some())
                .map(|g| format!("{GOROUTINES_WORKLOAD} {}", g.mode.name())),
        )
        .chain(
            stacks
                .iter()
                .filter(|s| s.error.is_some())
                .map(|_| STACKS_WORKLOAD.to_string()),
        )
        .chain(
            stat.iter()
                .filter(|s| s.error.is_some())
                .map(|_| STAT_WORKLOAD.to_string()),
        )
        .collect();
    fail_if_any(&failed, &results)
}

/// Writes a bench's results document to `results` (pretty JSON) and says so.
fn write_results(results: &Path, doc: &Value) -> Result<()> {
    std::fs::write(results, serde_json::to_string_pretty(doc)? + "\n")
        .with_context(|| format!("writing {}", results.display()))?;
    println!("bench: wrote {}", results.display());
    Ok(())
}

/// The end of a bench whose results are written to `results`: an error naming the `failed`
/// runs, if any.
fn fail_if_any(failed: &[String], results: &Path) -> Result<()> {
    if !failed.is_empty() {
        bail!(
            "{} run(s) failed: {} (their errors are printed above and in {})",
            failed.len(),
            failed.join(", "),
            results.display()
        );
    }
    Ok(())
}

/// The blockprobe binary to measure: `--agent`'s (which must exist), or a fresh release build.
fn agent_binary(args: &Args, setup: &setup::Setup) -> Result<PathBuf> {
    match &args.agent {
        Some(a) => {
            let a = std::path::absolute(a).unwrap_or_else(|_| a.clone());
            if !a.is_file() {
                bail!("--agent {}: no such file", a.display());
            }
            println!("\n==> measuring {} (not building blockprobe)", a.display());
            Ok(a)
        }
        None => setup.build_agent(),
    }
}

/// Copies the agent binary to `out_dir/blockprobe` and returns the copy's path: the runs measure
/// the copy, so that a `cargo build` of target/release/blockprobe while the bench runs (it
/// takes minutes) cannot swap the binary between runs. The eBPF object is inside the binary.
fn snapshot_agent(agent: &Path, out_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let copy = out_dir.join("blockprobe");
    let tmp = out_dir.join("blockprobe.tmp");
    std::fs::copy(agent, &tmp)
        .with_context(|| format!("copying {} to {}", agent.display(), tmp.display()))?;
    // A rename, not a copy over it: a previous copy may still be running.
    std::fs::rename(&tmp, &copy)
        .with_context(|| format!("renaming {} to {}", tmp.display(), copy.display()))?;
    println!(
        "bench: measuring {} (a copy of {}, {:.1} MB)",
        copy.display(),
        agent.display(),
        std::fs::metadata(&copy).map_or(0.0, |m| m.len() as f64 / 1e6)
    );
    Ok(copy)
}
