//! Running the bench's processes: a workload in one mode, blockprobe attached to it in one of
//! its modes, and the goroutines (memory/scan) runs. Every failure ends up in the run's `error`, with what the
//! processes printed.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::proc::{self, Lines, Proc, Waited};
use super::stats;
use super::{
    AgentRun, GOROUTINES_ATTACH, GOROUTINES_FIXTURE, GoroutinesRun, Mode, ReportFacts, Run,
    Workload,
};
use crate::demo::parse_ready;
use crate::fixtures::{self, Variant};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// Beyond its nominal duration, how long a workload may take to print its result.
const RUN_SLACK: Duration = Duration::from_secs(60);
/// After the target exited, how long blockprobe may take to notice, report and exit.
const AGENT_EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where things go.
pub struct Ctx {
    pub root: PathBuf,
    pub go_version: String,
    pub agent: PathBuf,
    pub runs_dir: PathBuf,
    pub tmp_dir: PathBuf,
    pub secs: f64,
    /// blockprobe's `--scan-interval` in scan mode.
    pub scan_interval: String,
}

impl Ctx {
    pub(super) fn fixture(&self, name: &str) -> PathBuf {
        fixtures::binary_path(&self.root, &self.go_version, Variant::Default, name)
    }
}

/// Runs one workload once in one mode; failures end up in `Run::error`.
pub fn run_throughput(ctx: &Ctx, w: &Workload, mode: Mode, round: u32) -> Run {
    let mut run = Run {
        workload: w.name,
        mode,
        round,
        ops: None,
        workload_cpu_s: None,
        workload_sys_s: None,
        trace_bytes: None,
        agent: None,
        error: None,
    };
    if let Err(e) = throughput(ctx, w, mode, round, &mut run) {
        run.error = Some(format!("{e:#}"));
    }
    run
}

fn throughput(ctx: &Ctx, w: &Workload, mode: Mode, round: u32, run: &mut Run) -> Result<()> {
    let mut cmd = Command::new(ctx.fixture(w.fixture));
    cmd.arg("-d")
        .arg(format!("{}ms", (ctx.secs * 1000.0).round() as u64))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let trace = ctx.tmp_dir.join(format!("{}.trace", w.name));
    if mode == Mode::Trace {
        let _ = std::fs::remove_file(&trace);
        cmd.env("BENCH_TRACE", &trace);
    }
    let mut wl = Proc::spawn("workload", &mut cmd)?;
    let (mut out, mut err) = (
        wl.stdout_lines().context("workload stdout")?,
        wl.stderr_lines().context("workload stderr")?,
    );
    let mut stdin = wl.take_stdin().context("workload stdin")?;
    let pid = wait_ready(&mut wl, &mut out, &mut err)?;

    let mut agent = None;
    if mode.agent_mode().is_some() {
        let report = ctx
            .runs_dir
            .join(format!("{}-{}-r{}.json", w.name, mode.name(), round + 1));
        agent = Some(start_agent(ctx, pid, mode, &report, None)?);
    }
    let cpu_at_attach = agent
        .as_ref()
        .and_then(|(p, _, _)| proc::cpu_so_far(p.pid()));
    if let Some((_, _, a)) = agent.as_mut() {
        a.cpu_at_attach_s = cpu_at_attach.map(|d| d.as_secs_f64());
    }

    stdin
        .write_all(b"go\n")
        .and_then(|()| stdin.flush())
        .context("sending the start line to the workload")?;
    drop(stdin);
    let budget = Duration::from_secs_f64(ctx.secs) + RUN_SLACK;
    let result = out.wait_for(budget, stats::parse_ops_line);
    // Whatever happened, the agent's side is collected (a crash there is the news).
    let wl_exit = match &result {
        Waited::Found(_) => wl.wait_timeout(Duration::from_secs(10))?.cloned(),
        _ => Some(wl.stop(Duration::from_secs(2))?),
    };
    if let Some((p, lines, a)) = agent {
        let lag_from = wl_exit.as_ref().map(|e| e.at);
        run.agent = Some(finish_agent(p, lines, a, lag_from, AGENT_EXIT_TIMEOUT));
    }
    match result {
        Waited::Found(ops) => run.ops = Some(ops),
        Waited::Closed => bail!(
            "the workload closed its stdout without printing `ops=<n> secs=<s>` ({}); stderr:\n{}",
            wl_exit.map_or("still running".into(), |e| e.describe()),
            drained(&mut err)
        ),
        Waited::TimedOut => bail!(
            "the workload printed no `ops=` line within {}s; it was stopped; stderr:\n{}",
            budget.as_secs(),
            drained(&mut err)
        ),
    }
    match &wl_exit {
        Some(e) if e.success() => {
            run.workload_cpu_s = Some(e.cpu.as_secs_f64());
            run.workload_sys_s = Some(e.sys.as_secs_f64());
        }
        Some(e) => bail!(
            "the workload printed its result, then failed ({}); stderr:\n{}",
            e.describe(),
            drained(&mut err)
        ),
        None => bail!("the workload did not exit within 10s after printing its result"),
    }
    if mode == Mode::Trace {
        run.trace_bytes = Some(
            std::fs::metadata(&trace)
                .with_context(|| format!("the workload wrote no trace at {}", trace.display()))?
                .len(),
        );
        let _ = std::fs::remove_file(&trace);
    }
    if let Some(a) = &run.agent {
        agent_error(a)?;
    }
    Ok(())
}

/// An agent run that did not end cleanly with a report is an error of its run.
fn agent_error(a: &AgentRun) -> Result<()> {
    let tail = || {
        let start = a.stderr.len().saturating_sub(20);
        a.stderr[start..]
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match &a.exit {
        None => bail!("blockprobe (pid {}) did not exit", a.pid),
        Some(s) if s != "exit status 0" => {
            bail!(
                "blockprobe (pid {}) failed: {s}; its stderr:\n{}",
                a.pid,
                tail()
            )
        }
        _ => {}
    }
    match &a.report {
        None => bail!(
            "blockprobe (pid {}) exited without a readable report at {}: {}",
            a.pid,
            a.report_path.display(),
            a.report_error.as_deref().unwrap_or("?")
        ),
        Some(r) if r.mode != a.mode => bail!(
            "blockprobe (pid {}) was started with --mode {} but its report says mode {:?}",
            a.pid,
            a.mode,
            r.mode
        ),
        Some(r) if a.mode == "scan" && r.scan.is_none() => bail!(
            "blockprobe (pid {}) ran in scan mode but its report has no `scan` figures",
            a.pid
        ),
        Some(_) => Ok(()),
    }
}

fn drained(lines: &mut Lines) -> String {
    lines.drain(Duration::from_secs(2));
    lines.tail(20)
}

/// Waits for `ready pid=<pid>`; returns the pid.
pub(super) fn wait_ready(wl: &mut Proc, out: &mut Lines, err: &mut Lines) -> Result<u32> {
    match out.wait_for(READY_TIMEOUT, parse_ready) {
        Waited::Found(pid) => {
            if pid != wl.pid() {
                bail!(
                    "the workload says it is pid {pid}, its process is {}",
                    wl.pid()
                );
            }
            Ok(pid)
        }
        Waited::Closed => {
            let status = wl
                .wait_timeout(Duration::from_secs(5))?
                .map(|e| e.describe());
            bail!(
                "the workload exited before printing `ready pid=<pid>` ({}); stderr:\n{}",
                status.unwrap_or_else(|| "still running".into()),
                drained(err)
            )
        }
        Waited::TimedOut => bail!(
            "the workload printed no `ready pid=<pid>` within {}s",
            READY_TIMEOUT.as_secs()
        ),
    }
}

/// Starts `blockprobe attach --mode M` and waits for its `blockprobe: attached` line.
fn start_agent(
    ctx: &Ctx,
    pid: u32,
    mode: Mode,
    report: &Path,
    duration: Option<&str>,
) -> Result<(Proc, Lines, AgentRun)> {
    let agent_mode = mode
        .agent_mode()
        .with_context(|| format!("mode {} attaches no agent", mode.name()))?;
    let _ = std::fs::remove_file(report);
    let mut cmd = Command::new(&ctx.agent);
    cmd.args(["attach", "--pid", &pid.to_string(), "--mode", agent_mode]);
    if mode == Mode::Scan {
        cmd.args(["--scan-interval", &ctx.scan_interval]);
    }
    if let Some(d) = duration {
        cmd.args(["--duration", d]);
    }
    cmd.arg("--json")
        .arg(report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn("blockprobe", &mut cmd)?;
    let mut lines = p.stderr_lines().context("blockprobe stderr")?;
    let attached = lines.wait_for(ATTACH_TIMEOUT, |l| {
        l.starts_with("blockprobe: attached").then_some(())
    });
    match attached {
        Waited::Found(()) => {}
        Waited::Closed => {
            let status = p
                .wait_timeout(Duration::from_secs(5))?
                .map(|e| e.describe());
            bail!(
                "blockprobe exited before attaching ({}); its stderr:\n{}",
                status.unwrap_or_else(|| "still running".into()),
                lines.tail(20)
            )
        }
        Waited::TimedOut => {
            let e = p.stop(Duration::from_secs(5))?;
            bail!(
                "blockprobe printed no `blockprobe: attached` line within {}s; stopped ({}); its stderr:\n{}",
                ATTACH_TIMEOUT.as_secs(),
                e.describe(),
                drained(&mut lines)
            )
        }
    }
    let a = AgentRun {
        pid: p.pid(),
        mode: agent_mode,
        attach_s: p.started.elapsed().as_secs_f64(),
        report_path: report.to_path_buf(),
        ..AgentRun::default()
    };
    Ok((p, lines, a))
}

/// Waits for blockprobe to end by itself (target exit, or its --duration), stopping it if it
/// does not within `timeout`; reads its report.
fn finish_agent(
    mut p: Proc,
    mut lines: Lines,
    mut a: AgentRun,
    lag_from: Option<Instant>,
    timeout: Duration,
) -> AgentRun {
    let mut hung = false;
    let exit = match p.wait_timeout(timeout) {
        Ok(Some(e)) => Some(e.clone()),
        Ok(None) => {
            hung = true;
            p.stop(Duration::from_secs(5)).ok()
        }
        Err(_) => None,
    };
    lines.drain(Duration::from_secs(2));
    a.stderr = lines
        .seen
        .iter()
        .filter(|l| !l.starts_with("blockprobe: attached"))
        .cloned()
        .collect();
    if hung {
        a.stderr.push(format!(
            "[bench] blockprobe did not exit within {}s (its target had exited or its duration \
             had passed); the bench sent SIGTERM",
            timeout.as_secs()
        ));
    }
    if let Some(e) = &exit {
        a.cpu_s = Some(e.cpu.as_secs_f64());
        a.maxrss_kb = Some(e.maxrss_kb);
        a.wall_s = Some(e.at.duration_since(p.started).as_secs_f64());
        a.exit_lag_s = lag_from.map(|t| e.at.saturating_duration_since(t).as_secs_f64());
        a.exit = Some(if hung {
            format!("hung; after SIGTERM: {}", e.describe())
        } else {
            e.describe()
        });
    }
    match ReportFacts::read(&a.report_path) {
        Ok(r) => a.report = Some(r),
        Err(e) => a.report_error = Some(format!("{e:#}")),
    }
    a
}

/// Attaches blockprobe in `mode` for a while to a fresh process with many blocked goroutines.
pub fn run_goroutines(ctx: &Ctx, n: u32, mode: Mode) -> GoroutinesRun {
    let mut g = GoroutinesRun {
        mode,
        requested: n,
        started: None,
        target_rss_kb: None,
        agent: None,
        error: None,
    };
    if let Err(e) = goroutines(ctx, &mut g) {
        g.error = Some(format!("{e:#}"));
    }
    g
}

fn goroutines(ctx: &Ctx, g: &mut GoroutinesRun) -> Result<()> {
    let mut cmd = Command::new(ctx.fixture(GOROUTINES_FIXTURE));
    cmd.args(["-n", &g.requested.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut wl = Proc::spawn("workload", &mut cmd)?;
    let (mut out, mut err) = (
        wl.stdout_lines().context("workload stdout")?,
        wl.stderr_lines().context("workload stderr")?,
    );
    // Closing stdin (dropping it) ends the workload.
    let stdin = wl.take_stdin().context("workload stdin")?;
    let pid = wait_ready(&mut wl, &mut out, &mut err)?;
    g.started = out
        .seen
        .last()
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|t| t.strip_prefix("goroutines="))
        })
        .and_then(|v| v.parse().ok());
    g.target_rss_kb = proc::status_kb(pid, "VmRSS");

    let report = ctx
        .runs_dir
        .join(format!("goroutines-{}.json", g.mode.name()));
    let (p, lines, mut a) = start_agent(ctx, pid, g.mode, &report, Some(GOROUTINES_ATTACH))?;
    a.cpu_at_attach_s = proc::cpu_so_far(p.pid()).map(|d| d.as_secs_f64());
    let a = finish_agent(p, lines, a, None, Duration::from_secs(120));
    let result = agent_error(&a);
    g.agent = Some(a);

    drop(stdin);
    if wl.wait_timeout(Duration::from_secs(10))?.is_none() {
        wl.stop(Duration::from_secs(2))?;
    }
    result
}
