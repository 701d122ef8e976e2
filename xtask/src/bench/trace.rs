//! `cargo xtask bench --only trace`: blockprobe's Go execution-trace reader against Go's own,
//! on the same traces, in the same invocation.
//!
//! The `tracegen` fixture (tests/fixtures/tracegen, built by the bench's Go version, 1.27 by
//! default) writes a 10 MB and a 200 MB trace (`-mode size -bytes N`: rounds of a realistic mix
//! of channel, lock, timer, syscall, network, GC and annotation events), cached under
//! target/bench-data so that reruns reuse them. Then, per trace and round, in a rotating order:
//! - `go tool trace -d=parsed FILE > /dev/null`: Go 1.27.3's reader printing every event, run
//!   as the `trace` binary built from that toolchain's own `cmd/trace` (what `go tool trace`
//!   runs, without the go command in front of it; the toolchain ships it unbuilt), the one the
//!   gotrace tests build, in target/gotrace-oracle/;
//! - `blockprobe trace-dump FILE > /dev/null`: ours, printing the same lines (release build);
//! - `blockprobe trace-dump --count FILE`: ours reading every event without printing them.
//!
//! Each run is timed (wall clock, from spawn to reaping) and reaped with wait4 for its CPU time
//! and peak RSS (ru_maxrss). The figures are medians over the rounds (the peak RSS is the
//! largest); events/s divides the trace's event count (from `trace-dump --count`) by the wall
//! time. Targets: trace-dump is faster than Go's reader on each trace; and its memory is
//! bounded: peak RSS on the 200 MB trace <= [`RSS_GROWTH`] x the 10 MB trace's + [`RSS_MARGIN_MB`]
//! MB (the reader holds one generation at a time, ~1 s of events, whatever the trace's length).
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::json::target_json;
use super::proc::{Proc, Waited};
use super::report::{table, targets_text};
use super::stats::{Verdict, below_verdict, fmt_si, kb_to_mb, median, or_dash, ratio, rotated};
use super::targets::Target;
use super::{Args, agent_binary, fail_if_any, report, snapshot_agent, write_results};
use crate::fixtures::{self, Variant};
use crate::setup::{self, GoWanted};
use crate::util;

/// The `--only` name of this bench.
pub const TRACE_WORKLOAD: &str = "trace";
/// The traces: label and minimum size in bytes.
const SIZES: [(&str, u64); 2] = [("10MB", 10_000_000), ("200MB", 200_000_000)];
/// Memory bound: our peak RSS on the big trace may be at most this many times the small one's...
pub const RSS_GROWTH: f64 = 1.5;
/// ...plus this many MB (allocator slack, a generation larger than the small trace's).
pub const RSS_MARGIN_MB: f64 = 32.0;
/// Any one run (Go's reader on 200 MB takes minutes).
const RUN_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Who reads the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    Go,
    Ours,
    Count,
}

const READERS: [Reader; 3] = [Reader::Go, Reader::Ours, Reader::Count];

impl Reader {
    fn name(self) -> &'static str {
        match self {
            Reader::Go => "go tool trace -d=parsed",
            Reader::Ours => "blockprobe trace-dump",
            Reader::Count => "blockprobe trace-dump --count",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Reader::Go => "go",
            Reader::Ours => "trace-dump",
            Reader::Count => "trace-dump --count",
        }
    }
}

/// One timed run of one reader on one trace.
#[derive(Clone, Debug)]
struct TraceRun {
    reader: Reader,
    round: u32,
    wall_s: Option<f64>,
    cpu_s: Option<f64>,
    maxrss_kb: Option<u64>,
    /// `--count`'s JSON.
    count: Option<Value>,
    stderr: Vec<String>,
    error: Option<String>,
}

/// One trace and its runs.
struct TraceBench {
    label: &'static str,
    path: PathBuf,
    bytes: u64,
    /// From the first successful `--count`.
    events: Option<u64>,
    generations: Option<u64>,
    runs: Vec<TraceRun>,
}

/// Medians of one reader on one trace.
#[derive(Clone, Debug, Default)]
struct Stats {
    runs: usize,
    failed: usize,
    wall_s: Option<f64>,
    cpu_s: Option<f64>,
    peak_rss_kb: Option<u64>,
}

impl TraceBench {
    fn stats(&self, reader: Reader) -> Stats {
        let runs: Vec<&TraceRun> = self.runs.iter().filter(|r| r.reader == reader).collect();
        let ok: Vec<&&TraceRun> = runs.iter().filter(|r| r.error.is_none()).collect();
        Stats {
            runs: runs.len(),
            failed: runs.len() - ok.len(),
            wall_s: median(&ok.iter().filter_map(|r| r.wall_s).collect::<Vec<_>>()),
            cpu_s: median(&ok.iter().filter_map(|r| r.cpu_s).collect::<Vec<_>>()),
            peak_rss_kb: ok.iter().filter_map(|r| r.maxrss_kb).max(),
        }
    }

    fn mb_per_s(&self, s: &Stats) -> Option<f64> {
        ratio(Some(self.bytes as f64 / 1e6), s.wall_s)
    }

    fn events_per_s(&self, s: &Stats) -> Option<f64> {
        ratio(self.events.map(|e| e as f64), s.wall_s)
    }
}

pub fn bench(root: &Path, args: &Args, command: &str) -> Result<()> {
    let t_all = Instant::now();
    let mut timings: Vec<(&str, f64)> = Vec::new();
    let go_version = match &args.go {
        Some(v) => setup::supported_go(v)?,
        None => setup::newest_go(),
    };
    let oracle_go = setup::newest_go();
    let (small_rounds, big_rounds) = match (args.rounds, args.quick) {
        (Some(n), _) => (n, n),
        (None, true) => (1, 1),
        (None, false) => (3, 2),
    };

    println!("==> bench: {command}");
    let t = Instant::now();
    let mut wanted = vec![go_version.to_string()];
    if oracle_go != go_version {
        wanted.push(oracle_go.to_string());
    }
    let setup = setup::setup(root, &GoWanted::These(wanted))?;
    timings.push(("setup", t.elapsed().as_secs_f64()));
    let toolchain = |v: &str| {
        setup
            .go
            .iter()
            .find(|g| g.version == v)
            .cloned()
            .with_context(|| format!("Go {v} is not installed: run `cargo xtask setup`"))
    };
    let (go, oracle_toolchain) = (toolchain(go_version)?, toolchain(oracle_go)?);

    let t = Instant::now();
    let agent = agent_binary(args, &setup)?;
    let out_dir = root.join("target/bench");
    let agent = snapshot_agent(&agent, &out_dir)?;
    timings.push(("build", t.elapsed().as_secs_f64()));

    println!("\n==> building tracegen with Go {go_version} and Go {oracle_go}'s trace tool");
    let t = Instant::now();
    let built = fixtures::build(
        &setup,
        &fixtures::Selection {
            toolchains: std::slice::from_ref(&go),
            variants: &[Variant::Default],
            only: &["tracegen"],
        },
    )
    .context("building the tracegen fixture failed")?;
    let tracegen = built
        .first()
        .map(|b| b.path.clone())
        .context("tracegen was not built")?;
    let data_dir = root.join("target/bench-data");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let go_trace = go_trace_tool(root, &oracle_toolchain.go, &oracle_toolchain.version)?;
    timings.push(("tools", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let mut benches = Vec::new();
    for (label, min_bytes) in SIZES {
        let path = data_dir.join(format!("trace-{label}-go{go_version}.trace"));
        let bytes = generate(&tracegen, &path, min_bytes)?;
        benches.push(TraceBench {
            label,
            path,
            bytes,
            events: None,
            generations: None,
            runs: Vec::new(),
        });
    }
    timings.push(("traces", t.elapsed().as_secs_f64()));

    let machine = report::machine(root);
    if let Some(note) = report::load_note(&machine) {
        println!("\nbench: {note}");
    }
    let t = Instant::now();
    for b in &mut benches {
        let rounds = if b.label == SIZES[0].0 {
            small_rounds
        } else {
            big_rounds
        };
        println!(
            "\n==> {} trace ({:.1} MB, {}): {rounds} round(s) of {{{}}}",
            b.label,
            b.bytes as f64 / 1e6,
            b.path.display(),
            READERS.map(Reader::name).join(", ")
        );
        for round in 0..rounds {
            for reader in rotated(&READERS, round as usize) {
                let mut cmd = match reader {
                    Reader::Go => {
                        let mut c = Command::new(&go_trace);
                        c.arg("-d=parsed");
                        c
                    }
                    Reader::Ours => {
                        let mut c = Command::new(&agent);
                        c.arg("trace-dump");
                        c
                    }
                    Reader::Count => {
                        let mut c = Command::new(&agent);
                        c.args(["trace-dump", "--count"]);
                        c
                    }
                };
                cmd.arg(&b.path);
                println!(
                    "\n--> round {}/{rounds}: {} {}",
                    round + 1,
                    b.label,
                    reader.name()
                );
                let run = run_reader(&mut cmd, reader, round)?;
                if let Some(c) = &run.count
                    && b.events.is_none()
                {
                    b.events = c["events"].as_u64();
                    b.generations = c["generations"].as_u64();
                    if c["bytes"].as_u64() != Some(b.bytes) {
                        println!(
                            "    note: --count says bytes={}, the file has {}",
                            c["bytes"], b.bytes
                        );
                    }
                }
                println!("{}", run_line(b, &run));
                b.runs.push(run);
            }
        }
    }
    timings.push(("runs", t.elapsed().as_secs_f64()));
    timings.push(("total", t_all.elapsed().as_secs_f64()));

    let targets = targets(&benches);
    println!();
    print!("{}", render(&benches, &targets, command, &timings));

    let doc = json!({
        "schema": "blockprobe-bench-trace/1",
        "command": command,
        "config": {
            "go_version": go_version, "oracle_go": oracle_go, "agent": agent,
            "rounds": {"10MB": small_rounds, "200MB": big_rounds},
            "rss_rule": {"growth": RSS_GROWTH, "margin_mb": RSS_MARGIN_MB},
        },
        "machine": [machine, report::machine(root)],
        "traces": benches.iter().map(trace_json).collect::<Vec<_>>(),
        "targets": targets.iter().map(target_json).collect::<Vec<_>>(),
        "timings": timings.iter().map(|(k, v)| json!({"phase": k, "secs": v})).collect::<Vec<_>>(),
    });
    let results = out_dir.join("trace.json");
    write_results(&results, &doc)?;

    let failed: Vec<String> = benches
        .iter()
        .flat_map(|b| {
            b.runs
                .iter()
                .filter(|r| r.error.is_some())
                .map(move |r| format!("{} {} round {}", b.label, r.reader.name(), r.round + 1))
        })
        .collect();
    fail_if_any(&failed, &results)
}

/// Go's `cmd/trace`, built once from the oracle toolchain (`go tool trace` builds the same
/// binary on first use; the toolchain does not ship it) where, and as, the gotrace tests build
/// it (tests/e2e/gotrace.rs `oracle`): target/gotrace-oracle/go{version}/trace, so that either
/// serves both.
fn go_trace_tool(root: &Path, go: &Path, version: &str) -> Result<PathBuf> {
    let dir = root.join(format!("target/gotrace-oracle/go{version}"));
    let tool = dir.join("trace");
    if tool.is_file() {
        println!("bench: using {}", tool.display());
        return Ok(tool);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A test may build it at the same time: build aside, rename into place.
    let tmp = dir.join(format!("trace.tmp{}", std::process::id()));
    util::run(
        Command::new(go)
            .args(["build", "-o"])
            .arg(&tmp)
            .arg("cmd/trace")
            .env_remove("GOROOT")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("GOCACHE", root.join("target/go-cache")),
    )
    .context("building Go's cmd/trace failed")?;
    std::fs::rename(&tmp, &tool)
        .with_context(|| format!("renaming {} to {}", tmp.display(), tool.display()))?;
    Ok(tool)
}

/// The trace at `path`, written by tracegen unless a big enough one is there already.
fn generate(tracegen: &Path, path: &Path, min_bytes: u64) -> Result<u64> {
    if let Ok(m) = path.metadata()
        && m.len() >= min_bytes
    {
        println!(
            "bench: reusing {} ({:.1} MB)",
            path.display(),
            m.len() as f64 / 1e6
        );
        return Ok(m.len());
    }
    let tmp = path.with_extension("trace.tmp");
    let t = Instant::now();
    util::run(Command::new(tracegen).arg("-out").arg(&tmp).args([
        "-mode",
        "size",
        "-bytes",
        &min_bytes.to_string(),
    ]))
    .context("tracegen failed")?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    let len = path.metadata()?.len();
    println!(
        "bench: wrote {} ({:.1} MB in {:.1}s)",
        path.display(),
        len as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(len)
}

/// Runs one reader to its end: stdout to /dev/null (or kept, for `--count`), stderr kept.
fn run_reader(cmd: &mut Command, reader: Reader, round: u32) -> Result<TraceRun> {
    let keep_stdout = reader == Reader::Count;
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    if keep_stdout {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(File::create("/dev/null").context("opening /dev/null")?);
    }
    let mut p = Proc::spawn("trace reader", cmd)?;
    let mut out = p.stdout_lines();
    let mut err = p.stderr_lines();
    let exit = p.wait_timeout(RUN_TIMEOUT)?.cloned();
    let mut run = TraceRun {
        reader,
        round,
        wall_s: None,
        cpu_s: None,
        maxrss_kb: None,
        count: None,
        stderr: Vec::new(),
        error: None,
    };
    let Some(exit) = exit else {
        let _ = p.stop(Duration::from_secs(2));
        run.error = Some(format!("did not finish within {RUN_TIMEOUT:?}"));
        return Ok(run);
    };
    if let Some(e) = err.as_mut() {
        e.drain(Duration::from_secs(2));
        run.stderr = e.seen.clone();
    }
    run.wall_s = Some((exit.at - p.started).as_secs_f64());
    run.cpu_s = Some(exit.cpu.as_secs_f64());
    run.maxrss_kb = Some(exit.maxrss_kb);
    if !exit.success() {
        run.error = Some(format!(
            "{} ({})",
            exit.describe(),
            err.as_ref().map_or("no stderr".into(), |e| e.tail(5))
        ));
        return Ok(run);
    }
    if let Some(o) = out.as_mut() {
        let found = o.wait_for(Duration::from_secs(5), |l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(|v| v.get("events").is_some())
        });
        match found {
            Waited::Found(v) => run.count = Some(v),
            Waited::Closed | Waited::TimedOut => {
                run.error = Some(format!(
                    "--count printed no {{\"events\":..}} line:\n{}",
                    o.tail(5)
                ))
            }
        }
    }
    Ok(run)
}

fn run_line(b: &TraceBench, r: &TraceRun) -> String {
    let mut s = format!(
        "    {} {} r{}: wall {}, CPU {}, peak RSS {}",
        b.label,
        r.reader.key(),
        r.round + 1,
        or_dash(r.wall_s, |w| format!("{w:.2}s")),
        or_dash(r.cpu_s, |c| format!("{c:.2}s")),
        or_dash(r.maxrss_kb, |k| format!("{:.1} MB", kb_to_mb(k)))
    );
    if let Some(w) = r.wall_s.filter(|w| *w > 0.0) {
        let _ = write!(s, ", {:.1} MB/s", b.bytes as f64 / 1e6 / w);
    }
    if let Some(c) = &r.count {
        let _ = write!(s, "; {c}");
    }
    if !r.stderr.is_empty() && r.error.is_none() {
        let _ = write!(s, "; stderr: {}", r.stderr.join(" | "));
    }
    if let Some(e) = &r.error {
        let _ = write!(s, "\n    FAILED: {}", e.replace('\n', "\n    "));
    }
    s
}

/// The targets: faster than Go's reader on each trace (undecided if a run failed), and memory
/// bounded.
fn targets(benches: &[TraceBench]) -> Vec<Target> {
    let mut out = Vec::new();
    for b in benches {
        let (go, ours) = (b.stats(Reader::Go), b.stats(Reader::Ours));
        let r = ratio(ours.wall_s, go.wall_s);
        let verdict = if go.failed + ours.failed > 0 {
            Verdict::Undecided
        } else {
            below_verdict(r, 1.0, false)
        };
        out.push(Target {
            name: format!("{}: trace-dump faster than Go's reader", b.label),
            measured: format!(
                "ours/Go wall {} ({} vs {}, medians)",
                or_dash(r, |r| format!("{r:.2}x")),
                or_dash(ours.wall_s, |w| format!("{w:.2}s")),
                or_dash(go.wall_s, |w| format!("{w:.2}s"))
            ),
            verdict,
        });
    }
    let (Some(small), Some(big)) = (benches.first(), benches.get(1)) else {
        return out;
    };
    let mut measured = Vec::new();
    let mut verdict = Verdict::Pass;
    for reader in [Reader::Ours, Reader::Count] {
        let (s, b) = (
            small.stats(reader).peak_rss_kb.map(kb_to_mb),
            big.stats(reader).peak_rss_kb.map(kb_to_mb),
        );
        let limit = s.map(|s| s * RSS_GROWTH + RSS_MARGIN_MB);
        let v = limit.map_or(Verdict::Undecided, |l| below_verdict(b, l, true));
        verdict = verdict.worst(v);
        measured.push(format!(
            "{}: {} on {}, limit {} (= {RSS_GROWTH} x {} on {} + {RSS_MARGIN_MB} MB)",
            reader.key(),
            or_dash(b, |b| format!("{b:.1} MB")),
            big.label,
            or_dash(limit, |l| format!("{l:.1} MB")),
            or_dash(s, |s| format!("{s:.1} MB")),
            small.label
        ));
    }
    out.push(Target {
        name: format!(
            "memory bounded: peak RSS on {} <= {RSS_GROWTH} x {}'s + {RSS_MARGIN_MB} MB",
            big.label, small.label
        ),
        measured: measured.join("; "),
        verdict,
    });
    out
}

fn render(
    benches: &[TraceBench],
    targets: &[Target],
    command: &str,
    timings: &[(&str, f64)],
) -> String {
    let mut rows = Vec::new();
    for b in benches {
        let go = b.stats(Reader::Go);
        for reader in READERS {
            let s = b.stats(reader);
            let vs_go = |v: Option<f64>, g: Option<f64>| {
                if reader == Reader::Go {
                    "-".to_string()
                } else {
                    or_dash(ratio(v, g), |r| format!("{r:.2}x"))
                }
            };
            rows.push(vec![
                b.label.to_string(),
                reader.name().to_string(),
                format!(
                    "{}{}",
                    s.runs,
                    if s.failed > 0 {
                        format!(" ({} failed)", s.failed)
                    } else {
                        String::new()
                    }
                ),
                or_dash(s.wall_s, |w| format!("{w:.2}s")),
                or_dash(b.mb_per_s(&s), |m| format!("{m:.1}")),
                or_dash(b.events_per_s(&s), fmt_si),
                or_dash(s.peak_rss_kb, |k| format!("{:.1} MB", kb_to_mb(k))),
                or_dash(s.cpu_s, |c| format!("{c:.2}s")),
                vs_go(s.wall_s, go.wall_s),
                vs_go(
                    s.peak_rss_kb.map(|k| k as f64),
                    go.peak_rss_kb.map(|k| k as f64),
                ),
            ]);
        }
    }
    let mut out = table(
        &[
            "trace",
            "reader",
            "runs",
            "wall",
            "MB/s",
            "events/s",
            "peak RSS",
            "CPU",
            "ours/Go wall",
            "ours/Go RSS",
        ],
        &rows,
    );
    for b in benches {
        let _ = writeln!(
            out,
            "  {}: {} ({:.1} MB, {} events, {} generations)",
            b.label,
            b.path.display(),
            b.bytes as f64 / 1e6,
            or_dash(b.events, |e| e.to_string()),
            or_dash(b.generations, |g| g.to_string())
        );
    }
    out.push_str(
        "wall, CPU: medians over the rounds (wall: spawn to exit; CPU: user+system, wait4); \
         peak RSS: the largest ru_maxrss over the rounds.\nMB/s = trace bytes / wall; events/s = \
         the trace's events (trace-dump --count) / wall. Dumps go to /dev/null.\n\
         go tool trace -d=parsed = Go's cmd/trace binary itself (what `go tool trace` runs).\n",
    );
    out.push_str("\ntargets:\n");
    out.push_str(&targets_text(targets));
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

fn trace_json(b: &TraceBench) -> Value {
    json!({
        "label": b.label,
        "path": b.path,
        "bytes": b.bytes,
        "events": b.events,
        "generations": b.generations,
        "readers": READERS.iter().map(|&r| {
            let s = b.stats(r);
            json!({
                "reader": r.key(), "runs": s.runs, "failed": s.failed, "wall_s": s.wall_s,
                "cpu_s": s.cpu_s, "peak_rss_kb": s.peak_rss_kb, "mb_per_s": b.mb_per_s(&s),
                "events_per_s": b.events_per_s(&s),
            })
        }).collect::<Vec<_>>(),
        "runs": b.runs.iter().map(|r| json!({
            "reader": r.reader.key(), "round": r.round + 1, "wall_s": r.wall_s, "cpu_s": r.cpu_s,
            "maxrss_kb": r.maxrss_kb, "count": r.count, "stderr": r.stderr, "error": r.error,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(reader: Reader, wall: f64, rss_mb: u64) -> TraceRun {
        TraceRun {
            reader,
            round: 0,
            wall_s: Some(wall),
            cpu_s: Some(wall),
            maxrss_kb: Some(rss_mb * 1000),
            count: None,
            stderr: Vec::new(),
            error: None,
        }
    }

    fn bench(label: &'static str, runs: Vec<TraceRun>) -> TraceBench {
        TraceBench {
            label,
            path: PathBuf::from(label),
            bytes: 10_000_000,
            events: Some(1_000_000),
            generations: Some(2),
            runs,
        }
    }

    /// A bench with a run of each reader (Go, ours, count), each (wall s, max RSS MB).
    fn bench_of(label: &'static str, runs: [(f64, u64); 3]) -> TraceBench {
        let readers = [Reader::Go, Reader::Ours, Reader::Count];
        let runs = readers.into_iter().zip(runs);
        let runs = runs.map(|(r, (wall, rss))| run(r, wall, rss)).collect();
        bench(label, runs)
    }

    #[test]
    fn verdicts_follow_the_rules() {
        let small = bench_of("10MB", [(4.0, 50), (1.0, 20), (0.5, 20)]);
        let big = bench_of("200MB", [(80.0, 60), (90.0, 60), (10.0, 30)]);
        assert_eq!(small.mb_per_s(&small.stats(Reader::Ours)), Some(10.0));
        assert_eq!(small.events_per_s(&small.stats(Reader::Count)), Some(2e6));
        let t = targets(&[small, big]);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].verdict, Verdict::Pass, "{t:?}");
        assert_eq!(t[1].verdict, Verdict::Fail, "{t:?}");
        // 20.48 MB x 1.5 + 32 = 62.7 MB >= 61.4 MB (ours) and 30.7 MB (count).
        assert_eq!(t[2].verdict, Verdict::Pass, "{t:?}");
    }

    #[test]
    fn a_failed_run_leaves_the_speed_undecided() {
        let mut r = run(Reader::Ours, 1.0, 20);
        r.error = Some("boom".into());
        let small = bench("10MB", vec![run(Reader::Go, 4.0, 50), r]);
        let t = targets(&[small]);
        assert_eq!(t[0].verdict, Verdict::Undecided);
        let text = render(&[], &t, "cargo xtask bench --only trace", &[("total", 1.0)]);
        assert!(text.contains("UNDECIDED"), "{text}");
    }
}
