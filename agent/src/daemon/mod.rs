//! `blockprobe daemon`: watches every Go process on the host (or those `--match` picks), one
//! scan-mode session each, all publishing into one metrics endpoint.
//!
//! /proc is polled: a new Go process gets a session; one that exits or execs ends its session
//! (the session sees it, `session::run`), and a process that exec'd into a Go program is
//! picked up again at the next poll, as a new image. Each session runs on a thread of its own
//! with its own eBPF object; when it ends, dropping it detaches its programs and closes its maps
//! and links, so a long-running daemon holds only what its live sessions hold.

pub mod container;
pub mod discover;

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::metrics::{DaemonStats, Hub, SessionMetrics};
use crate::session::{self, Mode, SessionOptions, TargetSpec};
use discover::{GoCache, Image, Matcher};

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("--match {0}")]
    Match(String),
    #[error("signal handling: {0}")]
    Signal(#[from] std::io::Error),
    #[error("{0}")]
    Privileges(String),
}

pub struct DaemonOptions {
    pub matcher: Matcher,
    /// Time between two looks at /proc.
    pub poll: Duration,
    pub scan_interval: Duration,
    pub threshold: Duration,
    pub policy: crate::detect::allow::Policy,
    /// Where the kubelet's files are, for the pod labels.
    pub node: container::NodeRoot,
    /// Least time between two snapshots of a target.
    pub every: Duration,
    /// `--chan-sites`: the makechan probe, per session (scan mode: within its budget).
    pub chan_sites: crate::chansites::Setting,
}

/// A session the daemon runs.
struct Watched {
    image: Image,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

struct Daemon {
    opts: DaemonOptions,
    hub: Hub,
    me: u32,
    watched: BTreeMap<u32, Watched>,
    /// Images that are not Go, do not match, or could not be attached: not looked at again
    /// until the pid runs another image.
    passed: BTreeMap<u32, Image>,
    go: GoCache,
    stats: DaemonStats,
}

impl Daemon {
    /// One look at /proc: sessions that ended are reaped, new Go processes get one.
    fn poll(&mut self) {
        let ended: Vec<u32> = self
            .watched
            .iter()
            .filter(|(_, w)| w.thread.is_finished())
            .map(|(&pid, _)| pid)
            .collect();
        for pid in ended {
            let Some(w) = self.watched.remove(&pid) else {
                continue;
            };
            self.stats.sessions_ended += 1;
            match w.thread.join() {
                Ok(Ok(())) => tracing::info!(pid, "session ended"),
                Ok(Err(e)) => {
                    tracing::warn!(pid, "session failed: {e}");
                    self.stats.attach_failures += 1;
                    // Not this image again (an exec or a new process gets another try).
                    if discover::image(pid) == Some(w.image) {
                        self.passed.insert(pid, w.image);
                    }
                }
                Err(_) => tracing::warn!(pid, "session thread panicked"),
            }
        }
        let pids = discover::pids();
        self.passed.retain(|pid, _| pids.binary_search(pid).is_ok());
        for pid in pids {
            if pid == self.me || self.watched.contains_key(&pid) {
                continue;
            }
            let Some(img) = discover::image(pid) else {
                continue;
            };
            if self.passed.get(&pid) == Some(&img) {
                continue;
            }
            self.passed.insert(pid, img);
            let comm = crate::metrics::live::comm(pid);
            let path = crate::procfs::exe_path(pid)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !self.opts.matcher.matches(&comm, &path) || !self.go.is_go(pid, &img) {
                continue;
            }
            self.passed.remove(&pid);
            self.start(pid, img);
        }
        self.hub.set_daemon(self.stats.clone());
    }

    fn start(&mut self, pid: u32, image: Image) {
        let (tx, rx) = watch::channel(false);
        let extra = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|cg| self.opts.node.pod_of(&cg))
            .map(|p| p.labels())
            .unwrap_or_default();
        let opts = SessionOptions {
            target: TargetSpec::Pid(pid),
            mode: Mode::Scan,
            scan_interval: self.opts.scan_interval,
            min_wait: Duration::ZERO,
            duration: None,
            threshold: self.opts.threshold,
            events: None,
            on_attached: None,
            policy: self.opts.policy.clone(),
            metrics: Some(SessionMetrics {
                hub: self.hub.clone(),
                extra_labels: extra,
                stop: Some(rx),
                every: self.opts.every,
            }),
            thread_spans: None,
            exact_sites: false,
            chan_sites: self.opts.chan_sites,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("blockprobe-{pid}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let outcome = rt.block_on(session::run(opts)).map_err(|e| e.to_string())?;
                let open = outcome
                    .report
                    .findings
                    .iter()
                    .filter(|f| !f.allowed)
                    .count();
                tracing::info!(pid, findings = open, end = ?outcome.report.end_reason, "report");
                Ok(())
            });
        match spawned {
            Ok(thread) => {
                self.stats.attaches += 1;
                tracing::info!(pid, "watching");
                self.watched.insert(
                    pid,
                    Watched {
                        image,
                        stop: tx,
                        thread,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(pid, "cannot start a session thread: {e}");
                self.stats.attach_failures += 1;
            }
        }
    }

    /// Ends every session and waits for each to detach.
    fn stop_all(&mut self) {
        for w in self.watched.values() {
            let _ = w.stop.send(true);
        }
        for (pid, w) in std::mem::take(&mut self.watched) {
            if w.thread.join().is_err() {
                tracing::warn!(pid, "session thread panicked");
            }
            self.stats.sessions_ended += 1;
        }
        self.hub.set_daemon(self.stats.clone());
    }
}

/// Runs until SIGINT or SIGTERM, then ends every session (each detaches its probes).
pub async fn run(opts: DaemonOptions, hub: Hub) -> Result<DaemonStats, DaemonError> {
    crate::privileges::require_for_ebpf().map_err(DaemonError::Privileges)?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(opts.poll.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut d = Daemon {
        opts,
        hub,
        me: std::process::id(),
        watched: BTreeMap::new(),
        passed: BTreeMap::new(),
        go: GoCache::default(),
        stats: DaemonStats::default(),
    };
    loop {
        tokio::select! {
            _ = tick.tick() => d.poll(),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    d.stop_all();
    Ok(d.stats)
}
