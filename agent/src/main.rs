//! The `blockprobe` command line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use blockprobe::chansites::Setting as ChanSitesSetting;
use blockprobe::detect::allow::Policy;
use blockprobe::goruntime::{GoBinary, GoBinaryError};
use blockprobe::probes::all_probes;
use blockprobe::session::{self, Mode, SessionOptions, TargetSpec};
use clap::{Parser, Subcommand};
use cmd_trace::{TraceFetch, TraceFrom, analyze, fuse, trace_dump};

mod cmd_export;
mod cmd_trace;

#[derive(Parser)]
#[command(
    name = "blockprobe",
    version,
    about = "Finds out why a running Go program is stuck"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Attach to a running Go process and report the goroutines that block.
    Attach {
        /// The process to attach to.
        #[arg(long)]
        pid: u32,
        /// Detach after this long (e.g. 500ms, 5s, 2m); default: until Ctrl-C or the target exits.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[command(flatten)]
        obs: Observe,

        /// Stream events as NDJSON to FILE, or `-` for stdout. SIGUSR1 prints the blocked
        /// goroutines so far on stderr without ending the session.
        #[arg(long, value_name = "FILE|-")]
        events: Option<String>,
        /// Write the final report as JSON to FILE (`-` for stdout) instead of text.
        #[arg(long, value_name = "FILE|-")]
        json: Option<String>,
        #[command(flatten)]
        trace: TraceFrom,
        #[command(flatten)]
        exports: cmd_export::Exports,
    },
    /// Start a Go program under the probes (attached before it runs) and report what was still
    /// blocked when it exited. Exits with the program's exit code. The program's stdin, stdout
    /// and stderr are its own; the report goes to stderr (or --json FILE).
    Run {
        #[command(flatten)]
        obs: Observe,

        /// Stream events as NDJSON to FILE (`-` is not allowed: stdout belongs to the program).
        #[arg(long, value_name = "FILE")]
        events: Option<String>,
        /// Write the final report as JSON to FILE instead of text on stderr.
        #[arg(long, value_name = "FILE")]
        json: Option<String>,
        #[command(flatten)]
        exports: cmd_export::Exports,
        /// The program and its arguments.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Print every goroutine of a running Go process, in Go's traceback style, with what each
    /// waits on. Reads the process's memory only: no eBPF, and the target is neither stopped
    /// nor signalled (needs CAP_SYS_PTRACE, or the same user as the target).
    Dump {
        #[arg(long)]
        pid: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A live view of the blocked goroutines of a running Go process, grouped by blocking site
    /// and wait reason, with counts and the longest wait, refreshed in place (py-spy's `top`,
    /// for Go). Reads the process's memory only, as `dump` does. `q` or Ctrl-C quits.
    Top {
        #[arg(long)]
        pid: u32,
        /// Time between two refreshes (e.g. 500ms, 2s).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        interval: Duration,
    },
    /// Runtime health of a running Go process, read from its memory (no code in the target,
    /// no restart, stripped binaries too): heap and GC figures under their runtime.MemStats
    /// names, the scheduler line of GODEBUG=schedtrace, goroutines by state, pending timers.
    Stat {
        #[arg(long)]
        pid: u32,
        /// Print a reading every INTERVAL (e.g. 1s) until Ctrl-C or the target exits.
        #[arg(long, value_parser = humantime::parse_duration)]
        interval: Option<Duration>,
        /// Stop after this many readings.
        #[arg(long)]
        count: Option<u64>,
        /// One JSON object per reading, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Measure the agent CPU cost of one `stat` reading on a live target (for
    /// `cargo xtask bench`); prints JSON.
    #[command(hide = true)]
    BenchStat {
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 200)]
        iters: u64,
    },
    /// Measure the cost of stacks of goroutines in cgo calls on a live target (for
    /// `cargo xtask bench`); prints JSON.
    #[command(hide = true)]
    BenchStacks {
        #[arg(long)]
        pid: u32,
        /// Seconds per measured phase.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
    },
    /// Analyze a saved Go execution trace (runtime/trace, `go test -trace`, /debug/pprof/trace):
    /// the goroutines still blocked at its end, classified as `attach` classifies them, in the
    /// same report. A trace has no object addresses: what needs them is said, not guessed.
    Analyze {
        /// The trace file (Go 1.22 or later).
        trace: PathBuf,
        /// Write the report as JSON to FILE (`-` for stdout) instead of text on stdout.
        #[arg(long, value_name = "FILE|-")]
        report: Option<String>,
        #[command(flatten)]
        verdicts: Verdicts,
        #[command(flatten)]
        exports: cmd_export::Exports,
    },
    /// Fuse an event stream (`attach --events`, `run --events`) with an execution trace of the
    /// same run: each finding with the trace's history of its goroutine (creator, unblockers)
    /// and the probes' view (object address, thread), on one clock.
    Fuse {
        /// The NDJSON event stream.
        #[arg(long)]
        events: PathBuf,
        /// The execution trace.
        #[arg(long)]
        trace: PathBuf,
        /// Write the report as JSON to FILE (`-` for stdout) instead of text on stdout.
        #[arg(long, value_name = "FILE|-")]
        report: Option<String>,
        #[command(flatten)]
        verdicts: Verdicts,
        #[command(flatten)]
        exports: cmd_export::Exports,
    },
    /// Export a report saved as JSON (`--json`, `--report`): as one self-contained HTML page
    /// (--html) and/or as a Chrome trace-event timeline (--timeline).
    Report {
        /// The report (JSON).
        file: PathBuf,
        #[command(flatten)]
        exports: cmd_export::Exports,
    },
    /// Print a Go execution trace's events as `go tool trace -d=parsed` does (tests, benches).
    #[command(hide = true)]
    TraceDump {
        file: PathBuf,
        /// Print only a JSON summary (events, bytes, generations).
        #[arg(long)]
        count: bool,
    },
    /// Watch every Go process on the host (or those --match picks), one scan-mode session each,
    /// and serve one metrics endpoint for all of them (docs/metrics.md). New processes are
    /// picked up, exited ones dropped; a process in a Kubernetes pod gets pod, namespace and
    /// container labels. Runs until SIGINT or SIGTERM; writes no report.
    Daemon {
        /// Where to serve the metrics: HOST:PORT, or a bare PORT / :PORT for 127.0.0.1.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
        metrics: String,
        /// Watch only the processes whose comm (`comm REGEX`) or executable path (`path REGEX`)
        /// matches. Repeatable: any rule may match.
        #[arg(long = "match", num_args = 2, value_names = ["comm|path", "REGEX"])]
        matches: Vec<String>,
        /// Time between two looks at /proc for new processes.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        poll: Duration,
        /// Time between two scans of each process's goroutine table.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        scan_interval: Duration,
        /// Least time between two metrics snapshots of a process.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        every: Duration,
        /// Findings are about goroutines blocked at least this long.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        threshold: Duration,
        #[command(flatten)]
        allows: Allows,
        /// Where the node's root filesystem is, for the kubelet's files (/var/lib/kubelet/pods,
        /// /var/log/pods, /var/log/containers) that name a process's pod and container: `/`
        /// on the node, the host's root as mounted into the daemon's own container otherwise.
        #[arg(long, value_name = "DIR", default_value = "/")]
        node_root: PathBuf,
        /// Where channels were made, from a uprobe on runtime.makechan's returns: `auto` keeps
        /// it on a process only while it makes fewer than 500 channels a second.
        #[arg(long, value_enum, default_value_t = ChanSitesSetting::Auto)]
        chan_sites: ChanSitesSetting,
    },
    /// Describe a Go binary: version, PIE/stripped/cgo, probe points, struct offsets.
    Inspect {
        binary: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BLOCKPROBE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = real_main() {
        eprintln!("blockprobe: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Inspect { binary, json } => inspect(binary, json),
        Cmd::Daemon {
            metrics,
            matches,
            poll,
            scan_interval,
            every,
            threshold,
            allows,
            node_root,
            chan_sites,
        } => {
            use blockprobe::daemon::{DaemonOptions, container::NodeRoot, discover::Matcher};
            let opts = DaemonOptions {
                matcher: Matcher::new(&matches)?,
                poll,
                scan_interval,
                threshold,
                policy: allows.policy(&[])?,
                node: NodeRoot(node_root),
                every,
                chan_sites,
            };
            let addr = blockprobe::metrics::parse_listen_addr(&metrics)?;
            let hub = blockprobe::metrics::Hub::new();
            let server = blockprobe::metrics::serve::serve(addr, hub.clone())?;
            eprintln!(
                "blockprobe: daemon: metrics at http://{}/metrics",
                server.local_addr()
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let stats = rt.block_on(blockprobe::daemon::run(opts, hub))?;
            eprintln!(
                "blockprobe: daemon: stopped ({} sessions, {} failed attaches)",
                stats.attaches, stats.attach_failures
            );
            Ok(())
        }
        Cmd::BenchStacks { pid, secs } => {
            let b = blockprobe::native::bench::run(pid, secs)
                .with_context(|| format!("measuring stacks of pid {pid}"))?;
            println!("{}", serde_json::to_string_pretty(&b)?);
            Ok(())
        }
        Cmd::Stat {
            pid,
            interval,
            count,
            json,
        } => blockprobe::health::cli::stat(pid, interval, count, json)
            .with_context(|| format!("reading the runtime health of pid {pid}")),
        Cmd::BenchStat { pid, iters } => {
            let b = blockprobe::health::cli::bench(pid, iters)
                .with_context(|| format!("measuring stat on pid {pid}"))?;
            println!("{}", serde_json::to_string_pretty(&b)?);
            Ok(())
        }
        Cmd::Dump { pid, json } => {
            let gs =
                blockprobe::dump::dump_pid(pid).with_context(|| format!("dumping pid {pid}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&gs)?);
            } else {
                print!("{}", blockprobe::dump::render(&gs));
            }
            Ok(())
        }
        Cmd::Top { pid, interval } => top(pid, interval),
        Cmd::Attach {
            pid,
            duration,
            obs,
            events,
            json,
            trace,
            exports,
        } => attach(pid, duration, obs, events, json, trace, exports),
        Cmd::Analyze {
            trace,
            report,
            verdicts,
            exports,
        } => analyze(&trace, report, verdicts, exports),
        Cmd::Fuse {
            events,
            trace,
            report,
            verdicts,
            exports,
        } => fuse(&events, &trace, report, verdicts, exports),
        Cmd::Report { file, exports } => cmd_export::report(&file, &exports),
        Cmd::TraceDump { file, count } => trace_dump(&file, count),
        Cmd::Run {
            obs,
            events,
            json,
            exports,
            command,
        } => run(obs, events, json, exports, command),
    }
}

fn run_session(opts: SessionOptions) -> Result<session::Outcome> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(session::run(opts))?)
}

/// Says what was attached, before the first event (tests and users wait for this line).
fn announcer(obs: &Observe) -> session::OnAttached {
    let how = match obs.mode {
        // Scan mode's only uprobe is the makechan one, within its budget (--chan-sites).
        Mode::Scan => format!(
            "scan mode, goroutine table every {}; channel make sites:",
            humantime::format_duration(obs.scan_interval)
        ),
        Mode::Precise => "precise mode, uprobes".to_string(),
        Mode::Trap => "trap mode (benchmarks: no-op uprobes)".to_string(),
    };
    Box::new(move |a: &blockprobe::probes::Attached| {
        let probes: Vec<String> = a
            .probes
            .iter()
            .map(|p| format!(" {}+{}", p.symbol, p.offset_in_func))
            .collect();
        let probes = if probes.is_empty() && how.ends_with(':') {
            " off".to_string()
        } else {
            probes.concat()
        };
        eprintln!(
            "blockprobe: attached to pid {} ({}): {how}{probes}",
            a.pid,
            a.exe.display(),
        );
    })
}

fn write_json(spec: &str, report: &blockprobe::report::Report) -> Result<()> {
    let mut out = open_sink(spec)?;
    serde_json::to_writer_pretty(&mut out, report)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// What `attach` and `run` share: how to observe, and what counts as blocked.
#[derive(clap::Args)]
struct Observe {
    /// How to observe: `scan` reads the goroutine table every --scan-interval (no probe on
    /// any hot path; sees waits longer than the interval), `precise` adds every uprobe
    /// (exact times, short waits, who woke whom; about 1 µs per park in the target).
    #[arg(long, value_enum, default_value_t = Mode::Scan)]
    mode: Mode,
    /// Scan mode: time between two scans of the goroutine table.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    scan_interval: Duration,
    /// Precise mode: stream a park (and its wake-up) only once the wait lasted this long;
    /// the kernel drops shorter ones, which still count in the per-site wait histograms.
    /// 0 streams every transition.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1ms")]
    min_wait: Duration,
    /// Precise mode: read the site of every park for the per-site wait histograms, at any
    /// rate. By default a CPU's first 64 parks a millisecond have their site read and beyond
    /// that one random park in 16 (each wait's site costs the target a read of its stack), so
    /// the histograms of very busy sites are estimates; each wait reason's totals are exact.
    #[arg(long)]
    exact_sites: bool,
    /// With --timeline: record each OS thread's off-CPU spans at least this long (the
    /// scheduler tracepoints send them at each switch-in), for the threads' tracks.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1ms")]
    timeline_min_offcpu: Duration,
    /// Serve live metrics in the Prometheus text format at http://ADDR/metrics while the
    /// session runs (docs/metrics.md). A bare PORT or :PORT binds 127.0.0.1 only.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Where channels were made (the `make(chan …)` line of each blocked channel), from a
    /// uprobe on runtime.makechan's returns: `auto` keeps it on in precise mode, and in scan
    /// mode only while the program makes fewer than 500 channels a second; `on` always, `off`
    /// never.
    #[arg(long, value_enum, default_value_t = ChanSitesSetting::Auto)]
    chan_sites: ChanSitesSetting,
    #[command(flatten)]
    verdicts: Verdicts,
}

impl Observe {
    /// The off-CPU history to record: only for a timeline, whose thread tracks show it.
    fn thread_spans(
        &self,
        exports: &cmd_export::Exports,
    ) -> Option<blockprobe::threads::spans::SpanOptions> {
        exports
            .timeline
            .as_ref()
            .map(|_| blockprobe::threads::spans::SpanOptions {
                min_span_ns: self.timeline_min_offcpu.as_nanos() as u64,
                ..Default::default()
            })
    }

    /// Starts the metrics endpoint if asked for: the server (kept alive by the caller) and
    /// what the session publishes through.
    fn metrics(
        &self,
    ) -> Result<(
        Option<blockprobe::metrics::serve::MetricsServer>,
        Option<blockprobe::metrics::SessionMetrics>,
    )> {
        let Some(spec) = &self.metrics else {
            return Ok((None, None));
        };
        let addr = blockprobe::metrics::parse_listen_addr(spec)?;
        let hub = blockprobe::metrics::Hub::new();
        let server = blockprobe::metrics::serve::serve(addr, hub.clone())?;
        eprintln!(
            "blockprobe: metrics at http://{}/metrics",
            server.local_addr()
        );
        Ok((
            Some(server),
            Some(blockprobe::metrics::SessionMetrics::new(hub)),
        ))
    }
}

/// What counts as blocked, and which findings fail the run: every command that reports.
#[derive(clap::Args)]
struct Verdicts {
    /// Report goroutines blocked at least this long (shorter waits are normal).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    threshold: Duration,
    /// Exit with status 3 when findings of these patterns remain (ids such as BP03, names such
    /// as chan-recv-no-sender, comma-separated, or `all`; see docs/patterns.md). Allowed
    /// findings never count.
    #[arg(long, value_name = "PATTERNS")]
    fail_on: Vec<String>,
    #[command(flatten)]
    allows: Allows,
    /// Also write the findings as SARIF 2.1.0 to FILE, for CI code scanning (paths relative to
    /// the current directory where they are under it).
    #[arg(long, value_name = "FILE")]
    sarif: Option<String>,
}

/// Which waits are known to be benign: `attach`, `run`, `analyze`, `fuse` and `daemon`.
#[derive(clap::Args)]
struct Allows {
    /// Known-benign waits: a pattern (id or name), or a regular expression over the function a
    /// goroutine blocked in or the function whose `go` statement created it. Repeatable.
    #[arg(long, value_name = "PATTERN|FUNC-REGEX")]
    allow: Vec<String>,
    /// A file of --allow rules, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    allow_file: Option<String>,
    /// Do not apply the default allowlist (the standard library's own long waits: idle HTTP
    /// connections, database/sql's opener, os/signal, the testing package, context).
    #[arg(long)]
    no_default_allow: bool,
}

impl Allows {
    fn policy(&self, fail_on: &[String]) -> Result<Policy> {
        Ok(Policy::new(
            fail_on,
            &self.allow,
            self.allow_file.as_deref(),
            !self.no_default_allow,
        )?)
    }
}

impl Verdicts {
    fn policy(&self) -> Result<Policy> {
        self.allows.policy(&self.fail_on)
    }

    /// Writes the SARIF file if asked; the exit status the findings call for (3), if any.
    fn verdict(&self, policy: &Policy, report: &blockprobe::report::Report) -> Result<Option<i32>> {
        let open: Vec<_> = report
            .findings
            .iter()
            .filter(|f| !f.allowed)
            .cloned()
            .collect();
        if let Some(path) = &self.sarif {
            let root = std::env::current_dir().ok();
            let log =
                blockprobe::detect::sarif::sarif(&open, root.as_deref().and_then(|r| r.to_str()));
            std::fs::write(path, serde_json::to_string_pretty(&log)? + "\n")
                .with_context(|| format!("writing {path}"))?;
        }
        let failing: Vec<&str> = open
            .iter()
            .filter(|f| policy.fails(f))
            .map(|f| f.pattern)
            .collect();
        if failing.is_empty() {
            return Ok(None);
        }
        eprintln!(
            "blockprobe: {} finding(s) fail the run (--fail-on): {}",
            failing.len(),
            failing.join(", ")
        );
        Ok(Some(FINDINGS_EXIT))
    }
}

/// The exit status when findings fail a run (`--fail-on`).
const FINDINGS_EXIT: i32 = 3;

fn run(
    obs: Observe,
    events: Option<String>,
    json: Option<String>,
    exports: cmd_export::Exports,
    command: Vec<String>,
) -> Result<()> {
    if events.as_deref() == Some("-") || json.as_deref() == Some("-") {
        bail!("in `run` mode stdout belongs to the program: give --events/--json a file");
    }
    let (program, args) = command.split_first().context("no program given")?;
    let policy = obs.verdicts.policy()?;
    let events = events.as_deref().map(open_sink).transpose()?;
    let (events, collected) = exports.events_sink(events);
    let (_server, metrics) = obs.metrics()?;
    let outcome = run_session(SessionOptions {
        target: TargetSpec::Spawn {
            program: PathBuf::from(program),
            args: args.to_vec(),
        },
        mode: obs.mode,
        scan_interval: obs.scan_interval,
        min_wait: obs.min_wait,
        exact_sites: obs.exact_sites,
        duration: None,
        threshold: obs.verdicts.threshold,
        events,
        on_attached: Some(announcer(&obs)),
        policy: policy.clone(),
        metrics,
        thread_spans: obs.thread_spans(&exports),
        chan_sites: obs.chan_sites,
    })
    .with_context(|| format!("running {program}"))?;
    match json {
        Some(spec) => write_json(&spec, &outcome.report)?,
        None => print_text(&outcome.report, &mut std::io::stderr().lock()),
    }
    exports.write(
        &outcome.report,
        collected,
        None,
        outcome.thread_spans.as_ref(),
    )?;
    // Exit as the program did (a signal as 128 + N, as shells report it), unless findings fail
    // the run.
    let code = match (outcome.report.exit_code, outcome.report.exit_signal) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 0,
    };
    let verdict = obs.verdicts.verdict(&policy, &outcome.report)?;
    std::process::exit(verdict.unwrap_or(code));
}

/// The report as text, streamed to `out` (buffered), not built in memory first.
fn print_text(report: &blockprobe::report::Report, out: &mut dyn Write) {
    struct Fmt<'a>(std::io::BufWriter<&'a mut dyn Write>);
    impl std::fmt::Write for Fmt<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write_all(s.as_bytes()).map_err(|_| std::fmt::Error)
        }
    }
    let mut f = Fmt(std::io::BufWriter::new(out));
    report.write_text(&mut f);
    let _ = f.0.flush();
}

fn open_sink(spec: &str) -> Result<Box<dyn Write + Send>> {
    Ok(if spec == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(spec).with_context(|| format!("creating {spec}"))?,
        ))
    })
}

fn attach(
    pid: u32,
    duration: Option<Duration>,
    obs: Observe,
    events: Option<String>,
    json: Option<String>,
    trace: TraceFrom,
    exports: cmd_export::Exports,
) -> Result<()> {
    if pid == 0 {
        bail!("--pid must be a process id");
    }
    let policy = obs.verdicts.policy()?;
    let fetch = TraceFetch::new(&trace, pid)?;
    let trace_out = trace.trace_out.clone();
    let sink = events.as_deref().map(open_sink).transpose()?;
    let (sink, collected) = exports.events_sink(sink);
    let announce = announcer(&obs);
    let start_fetch = fetch.as_ref().map(|f| f.starter());
    let (_server, metrics) = obs.metrics()?;
    let outcome = run_session(SessionOptions {
        target: TargetSpec::Pid(pid),
        mode: obs.mode,
        scan_interval: obs.scan_interval,
        min_wait: obs.min_wait,
        exact_sites: obs.exact_sites,
        duration,
        threshold: obs.verdicts.threshold,
        events: sink,
        on_attached: Some(Box::new(move |a: &blockprobe::probes::Attached| {
            announce(a);
            // The trace is asked for once the probes run, so that both cover the same time.
            if let Some(start) = start_fetch {
                start();
            }
        })),
        policy: policy.clone(),
        metrics,
        thread_spans: obs.thread_spans(&exports),
        chan_sites: obs.chan_sites,
    })
    .with_context(|| format!("attaching to pid {pid}"))?;
    let mut report = outcome.report;
    if let Some(fetch) = fetch {
        fetch.fuse_into(&mut report, events.as_deref());
    }
    match json {
        Some(spec) => write_json(&spec, &report)?,
        None => print_text(&report, &mut std::io::stdout().lock()),
    }
    // The fetched trace is still on disk only when kept (--trace-out).
    exports.write(
        &report,
        collected,
        trace_out.as_deref(),
        outcome.thread_spans.as_ref(),
    )?;
    if let Some(code) = obs.verdicts.verdict(&policy, &report)? {
        std::process::exit(code);
    }
    Ok(())
}

fn top(pid: u32, interval: Duration) -> Result<()> {
    use blockprobe::top::Ended;
    match blockprobe::top::run(pid, interval).with_context(|| format!("top of pid {pid}"))? {
        Ended::Quit => Ok(()),
        Ended::TargetGone { why, last } => {
            print!("{last}");
            eprintln!("blockprobe: top ended: {why} (its last refresh is above)");
            Ok(())
        }
    }
}

fn inspect(path: PathBuf, json: bool) -> Result<()> {
    let bin = GoBinary::open(&path)?;
    let probes: Vec<_> = all_probes()
        .iter()
        .map(|spec| {
            let sym = spec
                .symbols
                .iter()
                .find(|s| bin.function(s).is_some())
                .copied()
                .unwrap_or(spec.name());
            (sym, spec.optional, bin.probe_point(sym))
        })
        .collect();
    // The channel make-site probe: every RET of runtime.makechan.
    let makechan = blockprobe::chansites::rets::makechan_rets(&bin);
    if json {
        let probes: Vec<_> = probes
            .iter()
            .map(|(sym, _, p)| match p {
                Ok(p) => serde_json::json!({
                    "symbol": sym, "entry": format!("{:#x}", p.entry),
                    "offset": p.offset_in_func, "file_offset": format!("{:#x}", p.file_offset),
                }),
                Err(e) => serde_json::json!({ "symbol": sym, "error": e.to_string() }),
            })
            .collect();
        let chan_sites = match &makechan {
            Ok(r) => serde_json::json!({
                "symbol": blockprobe::chansites::rets::MAKECHAN,
                "entry": format!("{:#x}", r.entry), "rets": r.offsets,
                "file_offsets": r.file_offsets.iter().map(|o| format!("{o:#x}")).collect::<Vec<_>>(),
            }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let v = serde_json::json!({
            "path": path, "go_version": bin.build.go_version, "pie": bin.pie,
            "stripped": bin.stripped, "cgo": bin.cgo,
            "layout_source": bin.layout_source.to_string(), "layout": bin.layout,
            "wait_reasons": bin.wait_reasons, "probes": probes, "chan_sites": chan_sites,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}", path.display());
    println!("  go version:   {}", bin.build.go_version);
    println!(
        "  build:        pie={} stripped={} cgo={}",
        bin.pie, bin.stripped, bin.cgo
    );
    println!("  offsets from: {}", bin.layout_source);
    println!(
        "  wait reasons: {} in runtime.waitReasonStrings",
        bin.wait_reasons.len()
    );
    for (sym, optional, p) in &probes {
        match p {
            Err(GoBinaryError::NoFunction { .. }) if *optional => {
                println!("  probe {sym}: not linked in (the program does not use it)")
            }
            Ok(p) => println!(
                "  probe {sym}: entry {:#x} +{} (file offset {:#x})",
                p.entry, p.offset_in_func, p.file_offset
            ),
            Err(e) => println!("  probe {sym}: unavailable: {e}"),
        }
    }
    match &makechan {
        Ok(r) => {
            let rets: Vec<String> = r.offsets.iter().map(|o| format!("+{o}")).collect();
            println!(
                "  probe {} (channel make sites, on each RET): entry {:#x} {}",
                blockprobe::chansites::rets::MAKECHAN,
                r.entry,
                rets.join(" ")
            );
        }
        Err(e) => println!("  channel make sites: unavailable: {e}"),
    }
    println!(
        "  layout:       {}",
        serde_json::to_string(&bin.layout).unwrap_or_default()
    );
    Ok(())
}
