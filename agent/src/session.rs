//! One attach session: probes on a live process, events streamed as they arrive, and a report
//! when the session ends (duration elapsed, SIGINT/SIGTERM, or the target exited or exec'd).

use std::io::Write;
use std::time::{Duration, Instant};

use probes_ebpf::{EventKind, GoEvent};
use serde_json::json;
use thiserror::Error;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::goruntime::{GoBinary, GoBinaryError};
use crate::model::Model;
use crate::probes::{Attached, ProbeError, ProbeSpec};
use crate::procfs::{self, ProcError};
use crate::scan::Scanner;
use crate::report::{BlockedGoroutine, CreationSite, EndReason, ProbeInfo, REPORT_SCHEMA, Report, Target};

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
    #[error("event output: {0}")]
    Output(#[from] std::io::Error),
}

pub struct SessionOptions {
    pub pid: u32,
    pub probes: Vec<ProbeSpec>,
    /// End after this long; None = until a signal or the target's exit.
    pub duration: Option<Duration>,
    /// Report goroutines blocked at least this long at the end.
    pub threshold: Duration,
    /// NDJSON event stream destination.
    pub events: Option<Box<dyn Write + Send>>,
    /// Called once every probe is attached, before the first event is read.
    pub on_attached: Option<Box<dyn FnOnce(&Attached) + Send>>,
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Opens the target's binary through /proc (so a deleted or replaced file still resolves).
pub fn open_target(pid: u32) -> Result<GoBinary, SessionError> {
    let exe = procfs::exe_path(pid)?;
    let bin = GoBinary::open_as(format!("/proc/{pid}/exe"), exe)?;
    Ok(bin)
}

/// Runs a session to its end and returns the report.
pub async fn run(opts: SessionOptions) -> Result<Report, SessionError> {
    let SessionOptions {
        pid,
        probes,
        duration,
        threshold,
        mut events,
        on_attached,
    } = opts;
    // Say what is missing before touching the target at all.
    crate::privileges::require_for_ebpf().map_err(ProbeError::Privileges)?;
    let bin = open_target(pid)?;
    let exe_at_start = procfs::exe_path(pid)?;
    let bias = procfs::load_bias(
        &procfs::maps(pid)?,
        &exe_at_start.to_string_lossy(),
        &bin.load_segments(),
    )
    .unwrap_or(0);
    let attached = Attached::attach(pid, &bin, &probes)?;
    if let Some(f) = on_attached {
        f(&attached);
    }
    let probe_info: Vec<ProbeInfo> = attached
        .probes
        .iter()
        .map(|p| ProbeInfo {
            symbol: p.spec.symbol.to_string(),
            offset: p.offset_in_func,
        })
        .collect();

    // Probes first, then the scan: a goroutine that parks in between is seen by both, and the
    // probe's exact time wins. Goroutines blocked before attach are only found by the scan.
    let scanner = Scanner::new(&bin, pid, bias)?;
    let first = scanner.scan()?;
    let mut model = Model::new();
    model.seed(&first, monotonic_ns());

    // SAFETY: the ring buffer's fd is owned by `attached` and stays open, unchanged, until
    // `into_inner` hands `attached` back below.
    let mut fd = unsafe { AsyncFd::register_with_interest(attached, Interest::READABLE) }
        .map_err(|e| SessionError::Output(e.into()))?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let started = Instant::now();
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut liveness = tokio::time::interval(Duration::from_millis(100));

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
                let mut batch = Vec::new();
                guard.get_inner_mut().drain(|ev| batch.push(ev));
                guard.clear_ready();
                for ev in &batch {
                    model.apply(ev);
                    if let Some(out) = events.as_mut() {
                        write_event(out, &bin, bias, ev)?;
                    }
                }
            }
            _ = sleep_until => break EndReason::Duration,
            _ = sigint.recv() => break EndReason::Signal,
            _ = sigterm.recv() => break EndReason::Signal,
            _ = liveness.tick() => {
                // A target that exits, or execs another program, ends the session.
                if !procfs::alive(pid) || procfs::exe_path(pid).ok().as_ref() != Some(&exe_at_start) {
                    break EndReason::TargetExited;
                }
            }
        }
    };

    // Take what is still queued before detaching.
    let attached = fd.into_inner();
    let mut attached = attached;
    let mut tail = Vec::new();
    attached.drain(|ev| tail.push(ev));
    for ev in &tail {
        model.apply(ev);
        if let Some(out) = events.as_mut() {
            write_event(out, &bin, bias, ev)?;
        }
    }
    let lost = attached.lost().unwrap_or(0);
    drop(attached); // detach every probe now, before the report is rendered
    if let Some(out) = events.as_mut() {
        out.flush()?;
    }

    // A final scan confirms what is still blocked (a target that exited has nothing to scan).
    if end_reason != EndReason::TargetExited {
        if let Ok(last) = scanner.scan() {
            model.reconcile(&last);
        }
    }
    let now = monotonic_ns();
    let mut blocked = Vec::new();
    let mut runtime_goroutines_hidden = 0;
    for g in model.blocked(now, threshold.as_nanos() as u64) {
        let start_function = bin.func_name(g.startpc.wrapping_sub(bias));
        if start_function.is_some_and(is_runtime_start_function) {
            runtime_goroutines_hidden += 1;
            continue;
        }
        let (object_kind, object) = if g.parked_before_attach {
            // From the scan: the object is the first channel of g.waiting, if any.
            match (g.wait_chans.len(), bin.wait_reason(g.reason).as_ref()) {
                (0, _) => ("none", 0),
                (_, "select") => ("select", g.wait_chans[0]),
                _ => ("chan", g.wait_chans[0]),
            }
        } else {
            bin.describe_wait_object(g.reason, g.wait_obj)
        };
        let gopc = g.gopc.wrapping_sub(bias);
        blocked.push(BlockedGoroutine {
            goid: g.goid,
            wait_reason: bin.wait_reason(g.reason).into_owned(),
            wait_reason_code: g.reason,
            blocked_ns: now.saturating_sub(g.parked_at_ns.unwrap_or(now)),
            object_kind: object_kind.to_string(),
            object: format!("{object:#x}"),
            parked_in: bin
                .func_name(g.park_pc.wrapping_sub(bias))
                .unwrap_or("?")
                .to_string(),
            tid: g.tid,
            blocked_before_attach: g.parked_before_attach,
            wait_chans: g.wait_chans.iter().map(|c| format!("{c:#x}")).collect(),
            // The main goroutine (parent 0) has no creator worth naming, as in Go's tracebacks.
            created_by: bin.func_name(gopc).filter(|_| g.parent_goid != 0).map(|f| CreationSite {
                function: f.to_string(),
                // gopc is the return address of the newproc call; the line of the `go`
                // statement is that of the call instruction, one byte earlier (as
                // src/runtime/traceback.go printcreatedby does with pc-1).
                location: bin.source_line(gopc.wrapping_sub(1)),
                parent_goid: g.parent_goid,
            }),
            start_function: start_function.map(str::to_string),
            source: if g.parked_before_attach { "scan" } else { "uprobe" },
        });
    }
    Ok(Report {
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
        probes: probe_info,
        duration_ns: started.elapsed().as_nanos() as u64,
        end_reason,
        events_received: model.events,
        events_lost: lost,
        goroutines_seen: model.len(),
        threshold_ns: threshold.as_nanos() as u64,
        blocked,
        runtime_goroutines_hidden,
    })
}

/// Whether a goroutine with this start function belongs to the runtime itself
/// (src/runtime/traceback.go, isSystemGoroutine: start function in package runtime, except
/// runtime.main, runtime.corostart and runtime.handleAsyncEvent).
pub fn is_runtime_start_function(name: &str) -> bool {
    name.starts_with("runtime.")
        && !matches!(
            name,
            "runtime.main" | "runtime.corostart" | "runtime.handleAsyncEvent"
        )
}

fn write_event(
    out: &mut dyn Write,
    bin: &GoBinary,
    bias: u64,
    ev: &GoEvent,
) -> std::io::Result<()> {
    let line = match EventKind::try_from(ev.kind) {
        Ok(EventKind::Park) => {
            let (kind, obj) = bin.describe_wait_object(ev.reason, ev.obj);
            json!({
                "ts_ns": ev.ts_ns, "event": "park", "goid": ev.goid, "tid": ev.tid,
                "wait_reason": bin.wait_reason(ev.reason), "wait_reason_code": ev.reason,
                "object_kind": kind, "object": format!("{obj:#x}"),
                "parked_in": bin.func_name(ev.caller_pc.wrapping_sub(bias)),
                "source": "uprobe",
            })
        }
        Ok(EventKind::Ready) => json!({
            "ts_ns": ev.ts_ns, "event": "ready", "goid": ev.goid, "tid": ev.tid,
            "waker_goid": ev.peer_goid, "source": "uprobe",
        }),
        Err(kind) => json!({ "ts_ns": ev.ts_ns, "event": "unknown", "kind": kind }),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}
