//! Live metrics for operators: `attach --metrics ADDR`, `run --metrics ADDR` and `daemon` serve
//! the Prometheus text format (docs/metrics.md lists every metric).
//!
//! - [`Hub`]: the latest snapshot of every watched target, keyed by session, one endpoint for
//!   all of them (the daemon watches many processes; `attach`/`run` publish one).
//! - [`live`]: what a session publishes, built from its model at a bounded rate.
//! - [`encode`]: the snapshots in the text format, with prometheus-client.
//! - [`serve`]: the HTTP endpoint, on a thread of its own so a scrape never delays a session.
//! - [`waits`]: histograms of finished waits.
//!
//! A snapshot is replaced whole at each publish (not updated metric by metric): a goroutine that
//! stopped waiting, a site or a channel gone, leaves no stale series behind.

pub mod encode;
pub mod live;
pub mod serve;
pub mod waits;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;

pub use live::{Live, SessionMetrics};

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error(
        "--metrics {0:?}: expected HOST:PORT, :PORT or PORT (e.g. 127.0.0.1:9464, [::1]:9464, \
         9464)"
    )]
    BadAddress(String),
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The port `--metrics` conventionally takes (the OpenTelemetry Prometheus exporter's).
pub const DEFAULT_PORT: u16 = 9464;

/// `--metrics` as given: `HOST:PORT`, or a bare `PORT` / `:PORT`, which bind loopback only (a
/// profile of what blocks in a process says much about it: it is not served to the network
/// unless asked for by address).
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, MetricsError> {
    let bad = || MetricsError::BadAddress(s.to_string());
    let t = s.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    // `localhost:9464`: resolved without DNS (only the loopback name is accepted that way).
    if let Some(port) = t.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| bad());
    }
    Err(bad())
}

/// The labels every series of one target carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetLabels {
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// The executable's path.
    pub binary: String,
    pub go_version: String,
    /// More labels, set by whoever starts the session (the daemon's pod, namespace and
    /// container).
    pub extra: Vec<(String, String)>,
}

impl TargetLabels {
    /// As (name, value) pairs, in a fixed order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("pid".to_string(), self.pid.to_string()),
            ("comm".to_string(), self.comm.clone()),
            ("binary".to_string(), self.binary.clone()),
            ("go_version".to_string(), self.go_version.clone()),
        ];
        v.extend(self.extra.iter().cloned());
        v
    }
}

/// Counts of one label value (a site, a pattern, a state).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Count {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// One blocked channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    /// `0x…`, or `other` for the channels beyond the top N (summed).
    pub addr: String,
    /// Where it was made (`file:line` of the `make`), when the makechan probe knows
    /// (`site_kind` "made"); otherwise where its first waiter blocks ("first_waiter"),
    /// `unknown` if no stack was read.
    pub site: String,
    /// "made", "first_waiter", or "other" for the summed row.
    pub site_kind: &'static str,
    pub senders: u64,
    pub receivers: u64,
    /// Goroutines in a select with a case on it (a sudog does not say the case's direction).
    pub selects: u64,
    /// `hchan.qcount` and `hchan.dataqsiz`, read at the snapshot (None for `other`, or when
    /// the read failed).
    pub len_cap: Option<(u64, u64)>,
}

/// What one target looks like now: everything a scrape serves about it.
#[derive(Debug, Clone, Default)]
pub struct TargetSnapshot {
    pub labels: TargetLabels,
    pub mode: &'static str,
    /// The makechan probe: "on", "detached" (scan mode, over its budget) or "off".
    pub chan_sites: &'static str,
    /// Goroutines of the program by state and wait reason (`state`, `wait_reason`).
    pub goroutines: Vec<Count>,
    /// Blocked goroutines by finding pattern (`pattern`, `pattern_id`; `none` outside findings).
    pub blocked_by_pattern: Vec<Count>,
    /// Blocked goroutines by creation site (`site`, `function`): the top N, then `other`.
    pub blocked_by_site: Vec<Count>,
    /// The longest current wait at each of those sites, seconds.
    pub longest_by_site: Vec<Count>,
    /// The longest current wait of each wait reason, seconds.
    pub longest_by_reason: Vec<Count>,
    /// Finished waits per wait reason.
    pub block_durations: Vec<(String, waits::Buckets)>,
    pub channels: Vec<Channel>,
    /// Open findings (allowed ones left out) by `pattern`, `pattern_id`, `severity`.
    pub findings: Vec<Count>,
    /// When the findings were last computed, seconds since the epoch (0 = not yet).
    pub findings_at: f64,
    pub events: u64,
    pub events_lost: u64,
    pub scans: u64,
    pub scans_failed: u64,
    /// Duration of the session's goroutine-table scans (wall time), seconds.
    pub scan_seconds: waits::Buckets,
    /// What the latest snapshot cost to build, seconds.
    pub snapshot_seconds: f64,
    /// The runtime's health figures (heap, GC, scheduler, timers: `crate::health`), read at
    /// the snapshot; None when this binary's runtime structures could not be found.
    pub health: Option<Arc<crate::health::read::Stat>>,
}

/// Figures the daemon reports about itself.
#[derive(Debug, Clone, Default)]
pub struct DaemonStats {
    pub attaches: u64,
    pub attach_failures: u64,
    pub sessions_ended: u64,
}

#[derive(Default)]
struct HubState {
    targets: BTreeMap<u64, Arc<TargetSnapshot>>,
    daemon: Option<DaemonStats>,
}

/// The latest snapshot of every target, shared by the sessions (writers) and the HTTP server
/// (reader). A lock held only to swap or clone `Arc`s: encoding runs outside it.
#[derive(Clone, Default)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
    next_key: Arc<AtomicU64>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // A panic elsewhere while holding the lock leaves plain data behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A key for one session's snapshots (a pid can be watched twice over time: after an exec).
    pub fn key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub fn publish(&self, key: u64, snap: TargetSnapshot) {
        self.lock().targets.insert(key, Arc::new(snap));
    }

    pub fn remove(&self, key: u64) {
        self.lock().targets.remove(&key);
    }

    pub fn set_daemon(&self, stats: DaemonStats) {
        self.lock().daemon = Some(stats);
    }

    /// Every target's latest snapshot, by pid.
    pub fn snapshots(&self) -> Vec<Arc<TargetSnapshot>> {
        let mut v: Vec<_> = self.lock().targets.values().cloned().collect();
        v.sort_by_key(|s| s.labels.pid);
        v
    }

    fn daemon(&self) -> Option<DaemonStats> {
        self.lock().daemon.clone()
    }

    /// Everything, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let snaps = self.snapshots();
        let mut out = encode::render(&snaps, self.daemon().as_ref());
        // The health families (`blockprobe_go_*`), every target's samples under one header each.
        let health: Vec<_> = snaps
            .iter()
            .filter_map(|s| Some((s.health.as_deref()?, s.labels.pairs())))
            .collect();
        if !health.is_empty() {
            out.push_str(&crate::health::prom::encode_many(&health));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(parse_listen_addr("9464").unwrap(), lo(9464));
        assert_eq!(parse_listen_addr(":9464").unwrap(), lo(9464));
        assert_eq!(parse_listen_addr("localhost:80").unwrap(), lo(80));
        assert_eq!(
            parse_listen_addr("0.0.0.0:9464").unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 9464))
        );
        assert_eq!(
            parse_listen_addr("[::1]:9").unwrap().to_string(),
            "[::1]:9".to_string()
        );
        for bad in ["", "x", "99999", "host:1", "1.2.3.4", ":"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hub_keeps_one_snapshot_per_session() {
        let hub = Hub::new();
        let (a, b) = (hub.key(), hub.key());
        assert_ne!(a, b);
        let snap = |pid| TargetSnapshot {
            labels: TargetLabels {
                pid,
                ..Default::default()
            },
            ..Default::default()
        };
        hub.publish(a, snap(20));
        hub.publish(b, snap(10));
        hub.publish(a, snap(20));
        let pids: Vec<u32> = hub.snapshots().iter().map(|s| s.labels.pid).collect();
        assert_eq!(pids, vec![10, 20]);
        hub.remove(a);
        assert_eq!(hub.snapshots().len(), 1);
    }
}
