//! One session: probes on a live process, events streamed as they arrive, and a report when the
//! session ends (duration elapsed, SIGINT/SIGTERM, or the target exited or exec'd).
//!
//! Two ways in: attach to a running pid (`blockprobe attach`), or spawn the program with the
//! probes attached before it runs a single instruction of its own (`blockprobe run`).

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::chansites::ChanSites;
use crate::events::write_event;
use crate::goruntime::{GoBinary, GoBinaryError};
use crate::model::Model;
use crate::native::stitch::CgoUnwinder;
use crate::probes::{Attached, ProbeError, ProbeSpec};
use crate::procfs::{self, ProcError};
use crate::report::{EndReason, ProbeInfo, REPORT_SCHEMA, Report, Target};
use crate::scan::Scanner;
use crate::scanmode::ScanLoop;
use crate::summary::{self, Context};
use crate::threads;
use crate::unwind;

mod gate;
pub use gate::resolve_program;
use gate::{Gate, wait_for_exec};

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Binary(#[from] GoBinaryError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not start running (exec failed or it exited at once)")]
    NoExec { program: String },
    #[error("event output: {0}")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    ChanSites(#[from] crate::chansites::ChanSitesError),
}

/// How often the agent drains the ring buffer when the probes have not woken it.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// A callback run once the probes are attached (e.g. to tell the user).
pub type OnAttached = Box<dyn FnOnce(&Attached) + Send>;

/// What to probe.
pub enum TargetSpec {
    /// A running process.
    Pid(u32),
    /// A program to start under the probes, with its arguments.
    Spawn { program: PathBuf, args: Vec<String> },
}

/// How the session learns about blocked goroutines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Periodic reads of the goroutine table plus the scheduler tracepoints: no probe on any
    /// per-operation path of the target, so cheap enough to leave attached. Sees waits longer
    /// than the scan interval.
    #[default]
    Scan,
    /// Every uprobe (gopark, ready, newproc1, goexit1, semacquire): exact block and unblock
    /// times, short waits, who woke whom. Costs about a microsecond per park in the target.
    Precise,
    /// Benchmarks only: no-op uprobes where precise mode probes gopark and ready, to measure
    /// the bare trap a uprobe costs (the floor for precise mode's per-event cost).
    #[value(hide = true)]
    Trap,
}

impl Mode {
    /// The uprobes this mode attaches. Scan mode takes only probes whose hit rate is low (a
    /// handful per second at most); every probe listed here sits on a per-operation path (a
    /// park, a wake-up, a `go` statement, a goroutine exit, a semaphore wait), so scan mode
    /// attaches none of them. The makechan probe (`crate::chansites`) is attached apart, and in
    /// scan mode only while its measured hit rate stays within its budget.
    pub fn probes(self) -> Vec<ProbeSpec> {
        match self {
            Mode::Scan => Vec::new(),
            Mode::Precise => crate::probes::all_probes(),
            Mode::Trap => crate::probes::TRAPS.to_vec(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Scan => "scan",
            Mode::Precise => "precise",
            Mode::Trap => "trap",
        }
    }
}

pub struct SessionOptions {
    pub target: TargetSpec,
    pub mode: Mode,
    /// Scan mode: time between two scans of the goroutine table.
    pub scan_interval: Duration,
    /// Precise mode: stream a park only once its wait has lasted this long (filtered in the
    /// kernel; shorter waits only count in the histograms). Zero streams every transition.
    pub min_wait: Duration,
    /// Precise mode: read every park's site, at any rate (`--exact-sites`).
    pub exact_sites: bool,
    /// End after this long; None = until a signal or the target's exit.
    pub duration: Option<Duration>,
    /// Report goroutines blocked at least this long at the end.
    pub threshold: Duration,
    /// NDJSON event stream destination.
    pub events: Option<Box<dyn Write + Send>>,
    /// Called once every probe is attached, before the first event is read.
    pub on_attached: Option<OnAttached>,
    /// Which findings are known to be benign.
    pub policy: crate::detect::allow::Policy,
    /// Publish live metrics (`--metrics`, `daemon`): where, with which labels, and a signal
    /// that ends the session.
    pub metrics: Option<crate::metrics::SessionMetrics>,
    /// Record every OS thread's off-CPU spans (`--timeline`): returned in
    /// [`Outcome::thread_spans`]. None costs the scheduler programs one branch per switch-in.
    pub thread_spans: Option<threads::spans::SpanOptions>,
    /// `--chan-sites`: the probe on `runtime.makechan` that says where channels were made.
    pub chan_sites: crate::chansites::Setting,
}

/// The session's report, and for a spawned program how it exited.
pub struct Outcome {
    pub report: Report,
    pub exit_status: Option<ExitStatus>,
    /// The recorded off-CPU spans, when [`SessionOptions::thread_spans`] asked for them.
    pub thread_spans: Option<threads::spans::ThreadSpans>,
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    procfs::clock_ns(libc::CLOCK_MONOTONIC)
}

/// A running target's binary, opened through /proc (so a deleted or replaced file still
/// resolves), and the executable it runs now.
pub fn open_target(pid: u32) -> Result<(GoBinary, PathBuf), SessionError> {
    let exe = procfs::exe_path(pid)?;
    let bin = GoBinary::open_as(format!("/proc/{pid}/exe"), &exe)?;
    Ok((bin, exe))
}

/// The load bias of `exe` (running as `pid`): runtime address = link-time address + bias.
/// 0 for a non-PIE binary, and for a target already gone or changed (no mapping of `exe`).
pub fn load_bias(pid: u32, exe: &Path, bin: &GoBinary) -> u64 {
    procfs::load_bias(
        &procfs::maps(pid).unwrap_or_default(),
        &exe.to_string_lossy(),
        &bin.load_segments(),
    )
    .unwrap_or(0)
}

/// Drains the ring buffer into the model and the NDJSON stream.
fn consume(
    attached: &mut Attached,
    model: &mut Model,
    events: &mut Option<Box<dyn Write + Send>>,
    ctx: &Context<'_>,
) -> std::io::Result<()> {
    let mut result = Ok(());
    attached.drain(|ev, pcs| {
        model.apply_with_stack(&ev, pcs);
        if result.is_ok()
            && let Some(out) = events.as_mut()
        {
            result = write_event(out, ctx, &ev);
        }
    });
    result
}

/// Precise mode with an in-kernel filter: how often a scan looks for long waits in progress.
const CATCH_UP_INTERVAL: Duration = Duration::from_secs(1);

/// Writes each event to the NDJSON stream, if there is one.
fn streamer<'a>(
    events: &'a mut Option<Box<dyn Write + Send>>,
    ctx: &'a Context<'a>,
) -> impl FnMut(&probes_ebpf::GoEvent) -> std::io::Result<()> + 'a {
    move |ev| match events.as_mut() {
        Some(out) => write_event(out, ctx, ev),
        None => Ok(()),
    }
}

/// Runs a session to its end.
pub async fn run(opts: SessionOptions) -> Result<Outcome, SessionError> {
    let SessionOptions {
        target,
        mode,
        scan_interval,
        min_wait,
        exact_sites,
        duration,
        threshold,
        mut events,
        mut on_attached,
        policy,
        metrics,
        thread_spans,
        chan_sites,
    } = opts;
    let probes = mode.probes();
    // Say what is missing before touching the target at all.
    crate::privileges::require_for_ebpf().map_err(ProbeError::Privileges)?;
    // Signal handlers before the attach: a Ctrl-C (or a test's SIGINT) that comes while the
    // probes attach or the first scan runs ends the session with its report, instead of
    // killing the agent by the signal's default action.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // SIGUSR1: print what is blocked right now, and carry on.
    let mut sigusr1 = signal(SignalKind::user_defined1())?;

    let min_wait_ns = min_wait.as_nanos() as u64;
    let precise = crate::precise::Settings {
        min_wait_ns,
        exact_sites,
    };
    let (bin, attached, mut chan_sites, mut gate, exe_at_start) = match &target {
        TargetSpec::Pid(pid) => {
            // What the target runs now: if it execs something else later, the session ends.
            let (bin, exe) = open_target(*pid)?;
            let proc_exe = PathBuf::from(format!("/proc/{pid}/exe"));
            let (attached, sites) =
                ChanSites::attach_with(*pid, &proc_exe, &bin, &probes, precise, chan_sites, mode)?;
            if let Some(f) = on_attached.take() {
                f(&attached);
            }
            (bin, attached, sites, None, exe)
        }
        TargetSpec::Spawn { program, args } => {
            let program = resolve_program(program);
            // Refuse a non-Go or unsupported program before starting it.
            let bin = GoBinary::open(&program)?;
            let mut gate = Gate::spawn(&program, args)?;
            let pid = gate.pid();
            // Before the program runs: every channel it makes is seen.
            let attached =
                ChanSites::attach_with(pid, &program, &bin, &probes, precise, chan_sites, mode);
            let (attached, sites) = match attached {
                Ok(a) => a,
                Err(e) => {
                    gate.abort();
                    return Err(e.into());
                }
            };
            // Announce before the program runs, so its own output never interleaves with ours.
            if let Some(f) = on_attached.take() {
                f(&attached);
            }
            gate.release();
            if !wait_for_exec(pid, &program).await {
                return Err(SessionError::NoExec {
                    program: program.display().to_string(),
                });
            }
            let exe = procfs::exe_path(pid)?;
            (bin, attached, sites, Some(gate), exe)
        }
    };
    let pid = attached.pid;
    let mut attached = attached;
    let mut warnings = Vec::new();
    // Precise mode with a filter: a scan a second finds the long waits still in progress.
    let catch_up = mode == Mode::Precise && min_wait_ns > 0;
    // The OS-thread view (sched tracepoints filtered to the target). Without it the session
    // still runs; the report says what is missing.
    let sched_opts = threads::SchedOptions {
        spans_min_ns: thread_spans.map(|o| o.min_span_ns),
        // The timeline's past sleeps carry their kernel stacks: captured at each switch-out,
        // a cost paid only when a timeline was asked for.
        kernel_stacks: thread_spans.is_some(),
    };
    let sched = match threads::attach_sched_with(attached.ebpf_mut(), pid, sched_opts) {
        Ok(s) => Some(s),
        Err(e) => {
            warnings.push(format!("no OS-thread view: {e}"));
            None
        }
    };
    // Every off-CPU span of the target's threads, drained on the liveness tick below.
    let mut span_ring = match (&sched, thread_spans) {
        (Some(_), Some(o)) => match threads::spans::SpanRing::open(attached.ebpf_mut(), pid, o) {
            Ok(r) => Some(r),
            Err(e) => {
                warnings.push(format!("no off-CPU history on the timeline: {e}"));
                None
            }
        },
        _ => None,
    };
    // A target already gone or changed gets bias 0; the loop below then ends the session at
    // its first liveness check.
    let bias = load_bias(pid, &exe_at_start, &bin);
    let probe_info: Vec<ProbeInfo> = attached
        .probes
        .iter()
        .map(|p| ProbeInfo {
            symbol: p.symbol.to_string(),
            offset: p.offset_in_func,
        })
        .collect();
    let ctx = Context { bin: &bin, bias };
    if let Some(out) = events.as_mut() {
        crate::events::write_line(out, &chan_sites.event(monotonic_ns()))?;
    }
    // Precise mode's open parks, read from the kernel's table by the catch-up scans.
    let park_table = if catch_up {
        Some(crate::precise::ParkTable::map(&attached)?)
    } else {
        None
    };
    let mut open_parks = crate::precise::OpenParks::default();

    // Probes first, then the scan: a goroutine that parks in between is seen by both, and the
    // probe's exact time wins. Goroutines blocked before attach are only found by the scan.
    let scanner = Scanner::new(&bin, pid, bias)?;
    let mut model = Model::new();
    model.set_reason_ops(&bin.wait_reasons);
    let mut scans = ScanLoop::new(
        mode,
        if catch_up {
            CATCH_UP_INTERVAL
        } else {
            scan_interval
        },
        threshold,
    );
    // Samples of running goroutines (busy selects) read thread registers with the task iterator.
    scans.task_regs = attached.take_task_regs();
    if scans.task_regs.is_none() {
        tracing::debug!("no thread registers, no busy-select detection");
    }
    // The same executable and the same exec of it: a program that execs itself (a re-exec for
    // an upgrade) runs a new address space the session's model no longer describes.
    let mark_at_start = procfs::exec_mark(pid);
    let same_program = || {
        procfs::exe_path(pid).ok().as_ref() == Some(&exe_at_start)
            && procfs::exec_mark(pid) == mark_at_start
    };
    let (mut live, mut stop) = match metrics {
        Some(m) => {
            let (l, stop) =
                crate::metrics::Live::start(m, pid, &exe_at_start, &bin.build.go_version, mode);
            (Some(l), stop)
        }
        None => (None, None),
    };
    // The first snapshot at once (the first tick), then one per `every` at most.
    let mut publish_tick =
        tokio::time::interval(live.as_ref().map_or(Duration::from_secs(1), |l| l.every));
    publish_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    match scanner.scan() {
        // Trust the scan only if the target still runs the program it was read with.
        Ok(first) if same_program() && mode == Mode::Scan => {
            // A spawned program is watched from its first instruction: nothing it does is
            // "before the attach".
            model.observe_scan(&first, monotonic_ns(), gate.is_none(), |r| {
                bin.wait_reason(r)
            });
        }
        Ok(first) if same_program() => model.seed(&first, monotonic_ns(), |r| bin.wait_reason(r)),
        Ok(_) => {}
        // A spawned program may not have set up allgs yet; a target may exit or exec right
        // now. The probes still run; the report says what the scan could not do.
        Err(e) if gate.is_some() => tracing::debug!("initial scan: {e}"),
        Err(e) => warnings.push(format!(
            "the goroutine-table scan at attach failed ({e}): goroutines blocked before the \
             attach are not reported"
        )),
    }

    // SAFETY: the ring buffer's fd is owned by `attached` and stays open, unchanged, until
    // `into_inner` hands `attached` back below.
    let mut fd = unsafe { AsyncFd::register_with_interest(attached, Interest::READABLE) }
        .map_err(|e| SessionError::Output(e.into()))?;
    let started = Instant::now();
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut liveness = tokio::time::interval(Duration::from_millis(100));
    // The probes wake us only when the ring is 1/8 full (probes-ebpf, emit); otherwise events
    // are drained on this tick, which bounds how stale the live view gets.
    let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
    // Scan mode: the makechan probe's hit rate, against its budget.
    let mut chan_sites_tick = tokio::time::interval(crate::chansites::WATCH_EVERY);

    let end_reason = loop {
        let sleep_until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                consume(guard.get_inner_mut(), &mut model, &mut events, &ctx)?;
                guard.clear_ready();
            }
            // Scan mode has no uprobe, so nothing to drain: no 100 wake-ups a second for it.
            _ = drain_tick.tick(), if mode != Mode::Scan => {
                consume(fd.get_mut(), &mut model, &mut events, &ctx)?;
                scans.sample_growth(&model, &ctx, pid, monotonic_ns());
            }
            _ = scans.tick(), if mode == Mode::Scan || catch_up => {
                let t0 = Instant::now();
                if mode == Mode::Scan {
                    scans.scan(&scanner, &mut model, &ctx, pid, &mut events, &same_program)?;
                    if let Some(l) = live.as_mut() {
                        l.observe_scan(t0.elapsed());
                    }
                } else {
                    consume(fd.get_mut(), &mut model, &mut events, &ctx)?;
                    if let Some(table) = &park_table
                        && let Ok(s) = scanner.scan()
                        && same_program()
                    {
                        let stream = streamer(&mut events, &ctx);
                        let taken = open_parks.take(table, &mut model, &s, &ctx, stream)?;
                        scans.walk_taken(&taken, &mut model, &ctx, pid);
                        scans.observe_program(&s, &model, &ctx, pid, &mut events)?;
                        if let Some(l) = live.as_mut() {
                            l.observe_scan(t0.elapsed());
                        }
                    }
                }
            }
            _ = publish_tick.tick(), if live.is_some() => {
                if let Some(l) = live.as_mut() {
                    if mode != Mode::Scan {
                        consume(fd.get_mut(), &mut model, &mut events, &ctx)?;
                    }
                    l.publish(crate::metrics::live::SessionView {
                        ctx: &ctx,
                        model: &model,
                        scans: &mut scans,
                        scanner: &scanner,
                        attached: fd.get_ref(),
                        pid,
                        mode,
                        threshold_ns: threshold.as_nanos() as u64,
                        policy: &policy,
                        same_program: &same_program,
                        chan_sites: &mut chan_sites,
                    });
                }
            }
            _ = chan_sites_tick.tick(), if chan_sites.watching() => {
                let now = monotonic_ns();
                if let Some(why) = chan_sites.check(fd.get_mut().ebpf_mut(), now) {
                    tracing::info!("makechan probe {why}");
                    if let Some(out) = events.as_mut() {
                        crate::events::write_line(out, &chan_sites.event(now))?;
                    }
                }
            }
            _ = crate::metrics::live::stopped(&mut stop) => break EndReason::Signal,
            _ = sleep_until => break EndReason::Duration,
            _ = sigint.recv() => break EndReason::Signal,
            _ = sigterm.recv() => break EndReason::Signal,
            _ = sigusr1.recv() => {
                consume(fd.get_mut(), &mut model, &mut events, &ctx)?;
                if let Some(table) = &park_table
                    && let Ok(s) = scanner.scan()
                    && same_program()
                {
                    let stream = streamer(&mut events, &ctx);
                    let taken = open_parks.take(table, &mut model, &s, &ctx, stream)?;
                    scans.walk_taken(&taken, &mut model, &ctx, pid);
                }
                let threshold_ns = threshold.as_nanos() as u64;
                let now = monotonic_ns();
                let mut found = summary::blocked(&ctx, &model, now, threshold_ns, &scans.stacks);
                let waits = crate::chansites::waits_of(&found.goroutines, now);
                let made = chan_sites.resolve(fd.get_ref().ebpf(), &ctx, waits);
                crate::chansites::annotate(&mut found.goroutines, &made);
                eprint!("{}", crate::report::render_blocked(&found.goroutines, threshold_ns));
            }
            _ = threads::spans::SpanRing::drain_when_filling(&mut span_ring) => {}
            _ = liveness.tick() => {
                if let Some(r) = span_ring.as_mut() {
                    r.drain();
                }
                // A target that exits, or execs another program, ends the session.
                if !procfs::alive(pid) || !same_program() {
                    break EndReason::TargetExited;
                }
            }
        }
    };

    // Off the endpoint: what is left to say is the report's.
    drop(live);
    // Take what is still queued before detaching, and the parks the kernel still holds back.
    let mut attached = fd.into_inner();
    consume(&mut attached, &mut model, &mut events, &ctx)?;
    let lost = attached.lost().unwrap_or(0);
    let thread_states = match &sched {
        Some(_) => {
            threads::read_threads_with(attached.ebpf(), monotonic_ns(), scans.task_regs.as_ref())
                .unwrap_or_else(|e| {
                    warnings.push(format!("reading the OS-thread view: {e}"));
                    Vec::new()
                })
        }
        None => Vec::new(),
    };
    let thread_spans = span_ring.map(|r| r.finish(attached.ebpf()));
    if let Some(w) = thread_spans.as_ref().and_then(|t| t.warning()) {
        warnings.push(w);
    }

    // A final scan confirms what is still blocked (a target that exited has nothing to scan).
    let mut in_syscall = Vec::new();
    let mut running = Vec::new();
    let final_scan = end_reason != EndReason::TargetExited;
    let mut last_roots = None;
    if final_scan
        && let Ok(last) = scanner.scan()
        && same_program()
    {
        match mode {
            Mode::Scan => scans.take(&last, &mut model, &ctx, pid, &mut events)?,
            Mode::Precise | Mode::Trap => {
                if let Some(table) = &park_table {
                    let stream = streamer(&mut events, &ctx);
                    let taken = open_parks.take(table, &mut model, &last, &ctx, stream)?;
                    scans.walk_taken(&taken, &mut model, &ctx, pid);
                }
                model.reconcile(&last);
                scans.observe_program(&last, &model, &ctx, pid, &mut events)?;
            }
        }
        // C frames only where a thread sleeps in a cgo or system call: the register iterator
        // is loaded then, and a kernel without it costs a note, not the report.
        let mut cgo = None;
        if last
            .goroutines
            .iter()
            .any(|g| g.status == crate::scan::status::SYSCALL)
        {
            let regs = match scans.task_regs.as_ref() {
                Some(r) => r.try_clone(),
                None => crate::native::taskregs::TaskRegs::load(attached.ebpf_mut()),
            };
            let cache = crate::native::modules::ModuleCache::global();
            match regs
                .map_err(Into::into)
                .and_then(|r| CgoUnwinder::with_regs(r, pid, cache))
            {
                Ok(c) => cgo = Some(c),
                Err(e) => warnings.push(format!("C frames of cgo calls are unavailable: {e}")),
            }
        }
        in_syscall = summary::in_syscall(&ctx, &last, pid, &thread_states, cgo.as_mut());
        running = summary::running(&ctx, &last, pid);
        // Of the last scan (megabytes with 100k goroutines) the detector needs a quarter.
        last_roots = Some(last.roots());
    }
    // The scanner's caches are megabytes with 100k goroutines: gone before the report is made,
    // and the memory handed back (glibc keeps freed memory otherwise, and the report's own
    // allocations would then come on top).
    drop(scanner);
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let now = monotonic_ns();
    let threshold_ns = threshold.as_nanos() as u64;
    // Stacks of the blocked goroutines: from the park's user stack when a probe saw it (read
    // before the maps go away with the probes), else by walking the parked goroutine's frame
    // pointers from `g.sched` (src/runtime/runtime2.go, gobuf; mcall saved gopark's frame).
    let mut stacks = std::mem::take(&mut scans.stacks);
    let mut stack_set = std::mem::take(&mut scans.stack_set);
    let mut to_walk = Vec::new();
    for g in model.blocked(now, threshold_ns) {
        // A stack the probes sent with the park is of the current wait; a walked one may be of
        // an earlier wait (precise mode walks at its catch-up scans).
        if let Some(pcs) = g.stack_id.and_then(|id| model.park_stack(id)) {
            stacks.insert(g.goid, stack_set.intern(pcs));
            continue;
        }
        if !stacks.contains_key(&g.goid) && final_scan && g.g_addr != 0 {
            to_walk.push((
                g.goid,
                g.g_addr,
                [bin.layout.g.sched_pc, bin.layout.g.sched_bp],
            ));
        }
    }
    // In chunks: walking 100k stacks at once would hold every level's reads at once.
    let mem = crate::memory::ProcessMemory::new(pid);
    for chunk in to_walk.chunks(4096) {
        for (goid, pcs) in unwind::walk_from_gs(&mem, chunk) {
            stacks.insert(goid, stack_set.intern(&pcs));
        }
    }
    drop(stack_set);
    let (wait_histograms, wait_totals) = if mode == Mode::Precise {
        let sites = match crate::precise::histograms(&attached) {
            Ok(h) => crate::precise::summarize(&ctx, &h),
            Err(e) => {
                warnings.push(format!("reading the wait histograms: {e}"));
                Vec::new()
            }
        };
        let totals = match crate::precise::reason_histograms(&attached) {
            Ok(h) => crate::precise::totals(&ctx, &h),
            Err(e) => {
                warnings.push(format!("reading the wait totals: {e}"));
                Vec::new()
            }
        };
        (sites, totals)
    } else {
        (Vec::new(), Vec::new())
    };
    // Where the channels waited on were made, from the probe's map, before it goes.
    let made = chan_sites.resolve(
        attached.ebpf(),
        &ctx,
        crate::chansites::model_waits(&bin, &model, now, threshold_ns),
    );
    chan_sites.finish(attached.ebpf());
    drop(attached); // detach every probe now, before the report is rendered
    if let Some(out) = events.as_mut() {
        out.flush()?;
    }
    // The last reads of the goroutine table are done: its read buffer goes before the report's
    // own allocations come, and with it the free pages the stack walks left in the heap.
    crate::memory::release_scratch();
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let mut found = summary::blocked(&ctx, &model, now, threshold_ns, &stacks);
    let channels = crate::chansites::annotate(&mut found.goroutines, &made);
    // The model's goroutines are in `found` now: only its counts and parties are still needed,
    // and with 100k goroutines it is tens of megabytes the detector need not sit on top of.
    let (events_received, goroutines_seen) = (model.events, model.len());
    let parties = std::mem::take(&mut model.parties);
    drop(model);
    drop(stacks);
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let findings = crate::detect::gather::findings(
        &ctx,
        pid,
        last_roots.as_deref(),
        &found.goroutines,
        (&in_syscall, &running),
        &parties,
        &mut scans,
        threshold_ns,
        &policy,
    );
    drop(last_roots);

    // A spawned program: a signal ends the session but not the program (it got the same
    // Ctrl-C from the terminal, or is left running); its exit status is what `run` returns.
    let exit_status = match gate.as_mut() {
        Some(g) => g.wait(end_reason == EndReason::TargetExited),
        None => None,
    };
    let report = Report {
        schema: REPORT_SCHEMA,
        target: Target {
            pid,
            exe: exe_at_start.to_string_lossy().into_owned(),
            go_version: bin.build.go_version.clone(),
            pie: bin.pie,
            stripped: bin.stripped,
            cgo: bin.cgo,
            layout_source: bin.layout_source.to_string(),
        },
        mode: mode.name(),
        trace: None,
        probes: probe_info,
        scan: scans.stats(),
        min_wait_ns: (mode == Mode::Precise).then_some(min_wait_ns),
        wait_histograms,
        wait_totals,
        duration_ns: started.elapsed().as_nanos() as u64,
        end_reason,
        at_mono_ns: now,
        events_received,
        events_lost: lost,
        goroutines_seen,
        threshold_ns,
        blocked: found.goroutines,
        channels,
        chan_sites: Some(chan_sites.status()),
        stacks: found.stacks,
        findings,
        runtime_goroutines_hidden: found.runtime_hidden,
        in_syscall,
        running,
        threads: thread_states,
        warnings,
        exit_code: exit_status.and_then(|s| s.code()),
        exit_signal: exit_status.and_then(|s| s.signal()),
    };
    Ok(Outcome {
        report,
        exit_status,
        thread_spans,
    })
}
