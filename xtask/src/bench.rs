//! `cargo xtask bench`: what attaching blockprobe costs a live Go program, next to no agent and
//! to Go's own `runtime/trace`, on the same machine in the same invocation.
//!
//! Throughput workloads (Go fixtures `tests/fixtures/bench_*`) run in three modes: no agent,
//! blockprobe attached (`blockprobe attach --pid N --json FILE`, attached before the measured
//! loop starts, ending by itself when the workload exits), and runtime/trace recording
//! (`BENCH_TRACE=FILE`). The modes are interleaved over rounds, in a rotating order, so that a
//! noisy VM hurts them alike; each cell is a median. A last run attaches blockprobe to a
//! process with 100k blocked goroutines for its memory and scan cost. Nothing is hard-coded:
//! every figure printed is measured, and the targets are checked against the figures.
mod proc;
mod report;
mod runs;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use self::runs::{Ctx, run_goroutines, run_throughput};
use self::stats::OpsLine;
use crate::fixtures::{self, Variant};
use crate::setup::{self, GoWanted};
use crate::util::{self, cargo};

/// `cargo xtask bench` options.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// One round of 2-second runs (about half a minute of runs instead of about three minutes).
    #[arg(long)]
    pub quick: bool,
    /// The Go version to build the workloads with (default: the newest supported).
    #[arg(long = "go", value_name = "VERSION")]
    pub go: Option<String>,
    /// Rounds of none/agent/trace runs per workload [default: 5, or 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: Option<u32>,
    /// Seconds each throughput run lasts [default: 3, or 2 with --quick].
    #[arg(long, value_name = "SECS")]
    pub secs: Option<f64>,
    /// Blocked goroutines in the memory/scan run.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub goroutines: u32,
    /// Run only these workloads (pingpong, mutexpool, http, goroutines); repeatable.
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
}

pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "pingpong",
        fixture: "bench_pingpong",
        about: "2 goroutines, round trips over unbuffered channels (op = round trip)",
    },
    Workload {
        name: "mutexpool",
        fixture: "bench_mutexpool",
        about: "8 workers on one sync.Mutex guarding a map (op = critical section)",
    },
    Workload {
        name: "http",
        fixture: "bench_http",
        about: "net/http server on 127.0.0.1, 16 keep-alive clients in a separate process \
                (op = request); the agent watches the server only",
    },
];
const GOROUTINES_WORKLOAD: &str = "goroutines";
const GOROUTINES_FIXTURE: &str = "bench_goroutines";
/// How long blockprobe stays attached in the goroutines run.
const GOROUTINES_ATTACH: &str = "2s";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    None,
    Agent,
    Trace,
}

pub const MODES: [Mode; 3] = [Mode::None, Mode::Agent, Mode::Trace];

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Agent => "agent",
            Mode::Trace => "trace",
        }
    }
}

/// What blockprobe's JSON report said (the fields the bench uses).
#[derive(Clone, Debug, Default)]
pub struct ReportFacts {
    pub events_received: u64,
    pub events_lost: u64,
    pub duration_s: f64,
    pub end_reason: String,
    pub probes: Vec<String>,
    pub blocked: usize,
    pub runtime_goroutines_hidden: usize,
    pub goroutines_seen: u64,
}

impl ReportFacts {
    fn parse(v: &Value) -> Result<ReportFacts> {
        let u = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .with_context(|| format!("the report has no `{k}` number"))
        };
        Ok(ReportFacts {
            events_received: u("events_received")?,
            events_lost: u("events_lost")?,
            duration_s: u("duration_ns")? as f64 / 1e9,
            end_reason: v["end_reason"].as_str().unwrap_or("?").to_string(),
            probes: v["probes"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| format!("{}+{}", p["symbol"].as_str().unwrap_or("?"), p["offset"]))
                        .collect()
                })
                .unwrap_or_default(),
            blocked: v["blocked"].as_array().map_or(0, Vec::len),
            runtime_goroutines_hidden: v["runtime_goroutines_hidden"].as_u64().unwrap_or(0)
                as usize,
            goroutines_seen: v["goroutines_seen"].as_u64().unwrap_or(0),
        })
    }

    fn read(path: &Path) -> Result<ReportFacts> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("blockprobe wrote no report at {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        ReportFacts::parse(&v).with_context(|| format!("reading {}", path.display()))
    }
}

/// One blockprobe process: what it cost and what it reported.
#[derive(Clone, Debug, Default)]
pub struct AgentRun {
    pub pid: u32,
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

    /// Events the agent received per second of the workload's measured run.
    pub fn events_per_s(&self) -> Option<f64> {
        let r = self.agent.as_ref()?.report.as_ref()?;
        Some(r.events_received as f64 / self.ops?.secs)
    }

    /// The agent's CPU during the measured run, as a share of one core.
    pub fn agent_cpu_share(&self) -> Option<f64> {
        let a = self.agent.as_ref()?;
        Some((a.cpu_s? - a.cpu_at_attach_s?) / self.ops?.secs)
    }
}

/// The goroutines (memory/scan) run.
#[derive(Clone, Debug, Default)]
pub struct GoroutinesRun {
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
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 5 });
    let secs = args.secs.unwrap_or(if args.quick { 2.0 } else { 3.0 });
    if !(0.2..=600.0).contains(&secs) {
        bail!("--secs must be between 0.2 and 600");
    }
    for o in &args.only {
        if o != GOROUTINES_WORKLOAD && !WORKLOADS.iter().any(|w| w.name == o) {
            bail!(
                "--only {o}: no such workload; there are {}, {GOROUTINES_WORKLOAD}",
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
    let go_version = match &args.go {
        Some(v) => setup::supported_go(v)?,
        None => setup::newest_go(),
    };
    let mut timings: Vec<(&str, f64)> = Vec::new();

    println!("==> bench: {command}");
    let t = Instant::now();
    let setup = setup::setup(root, &GoWanted::These(vec![go_version.to_string()]))?;
    timings.push(("setup", t.elapsed().as_secs_f64()));

    let agent = match &args.agent {
        Some(a) => {
            let a = std::path::absolute(a).unwrap_or_else(|_| a.clone());
            if !a.is_file() {
                bail!("--agent {}: no such file", a.display());
            }
            println!("\n==> measuring {} (not building blockprobe)", a.display());
            a
        }
        None => {
            println!("\n==> building blockprobe (release)");
            let t = Instant::now();
            util::run(setup.with_bpf_linker(cargo().args([
                "build",
                "--release",
                "-p",
                "blockprobe",
            ])))
            .context(
                "building blockprobe failed; if the eBPF build failed, run `cargo xtask setup`",
            )?;
            let agent = root.join("target/release/blockprobe");
            if !agent.is_file() {
                bail!("{} is missing after the build", agent.display());
            }
            timings.push(("build", t.elapsed().as_secs_f64()));
            agent
        }
    };

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
    let ctx = Ctx {
        root: root.to_path_buf(),
        go_version: go_version.to_string(),
        agent,
        runs_dir: out_dir.join("runs"),
        tmp_dir: out_dir.join("tmp"),
        secs,
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
            "\n==> throughput: {} workload(s) x {{none, agent, trace}} x {rounds} round(s) of {secs}s",
            workloads.len()
        );
    }
    for round in 0..rounds {
        for (wi, w) in workloads.iter().enumerate() {
            for mode in stats::rotated(&MODES, round as usize + wi) {
                println!(
                    "\n--> round {}/{rounds}: {} with {}",
                    round + 1,
                    w.name,
                    describe_mode(mode)
                );
                let run = run_throughput(&ctx, w, mode, round);
                println!("{}", report::run_line(&run));
                runs.push(run);
            }
        }
    }
    timings.push(("throughput runs", t.elapsed().as_secs_f64()));

    let goroutines = if with_goroutines {
        println!(
            "\n==> memory and scan cost: blockprobe attached for {GOROUTINES_ATTACH} to {} blocked goroutines",
            args.goroutines
        );
        let t = Instant::now();
        let g = run_goroutines(&ctx, args.goroutines);
        println!("{}", report::goroutines_line(&g));
        timings.push(("goroutines run", t.elapsed().as_secs_f64()));
        Some(g)
    } else {
        None
    };

    timings.push(("total", t_all.elapsed().as_secs_f64()));
    let config = json!({
        "quick": args.quick, "rounds": rounds, "secs": secs, "goroutines": args.goroutines,
        "go_version": go_version, "only": args.only, "agent": ctx.agent,
    });
    let summaries: Vec<report::Summary> = workloads
        .iter()
        .map(|w| report::Summary::of(w, &runs))
        .collect();
    let targets = report::targets(&summaries, &runs, goroutines.as_ref());
    let machine_end = report::machine(root);
    println!();
    print!(
        "{}",
        report::render(
            &summaries,
            goroutines.as_ref(),
            &targets,
            &command,
            &timings
        )
    );

    let doc = report::document(report::DocParts {
        command: &command,
        config,
        machine: (machine, machine_end),
        summaries: &summaries,
        runs: &runs,
        goroutines: goroutines.as_ref(),
        targets: &targets,
        timings: &timings,
    });
    let results = out_dir.join("results.json");
    std::fs::write(&results, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", results.display()))?;
    println!("bench: wrote {}", results.display());
    let _ = std::fs::remove_dir_all(&ctx.tmp_dir);

    let failed: Vec<String> = runs
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{} {} round {}", r.workload, r.mode.name(), r.round + 1))
        .chain(
            goroutines
                .iter()
                .filter(|g| g.error.is_some())
                .map(|_| GOROUTINES_WORKLOAD.to_string()),
        )
        .collect();
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

fn describe_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::None => "no agent",
        Mode::Agent => "blockprobe attached",
        Mode::Trace => "runtime/trace recording",
    }
}
