//! The snapshots in the Prometheus text format (0.0.4), written with prometheus-client: one
//! descriptor per metric, then every target's series under it.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Count, DaemonStats, TargetSnapshot, waits::Buckets};

/// Every metric blockprobe exports: name (as exposed, counters with `_total`), type, and help.
/// docs/metrics.md says the same in more words; a test checks the rules and the dashboard
/// against this list.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "blockprobe_target_info",
        "gauge",
        "A watched process (always 1), with its observation mode and whether the probe that finds where channels were made is on.",
    ),
    (
        "blockprobe_goroutines",
        "gauge",
        "Goroutines of the program (the runtime's own left out) by state and wait reason, at the latest snapshot.",
    ),
    (
        "blockprobe_blocked_goroutines_by_pattern",
        "gauge",
        "Blocked goroutines by the pattern of the finding they are in (none: blocked, no finding).",
    ),
    (
        "blockprobe_blocked_goroutines_by_site",
        "gauge",
        "Blocked goroutines by creation site (file:line of the go statement): the top sites, the rest summed into other.",
    ),
    (
        "blockprobe_blocked_site_longest_seconds",
        "gauge",
        "The longest current wait among the blocked goroutines created at a site.",
    ),
    (
        "blockprobe_blocked_longest_seconds",
        "gauge",
        "The longest current wait of each wait reason.",
    ),
    (
        "blockprobe_block_duration_seconds",
        "histogram",
        "Durations of finished waits by wait reason (precise mode: every wait; scan mode: waits longer than about two scan intervals).",
    ),
    (
        "blockprobe_channel_blocked_senders",
        "gauge",
        "Goroutines blocked sending on a channel (top channels by waiters; the rest summed into chan=other). site: where it was made (site_kind=made) or, unknown, where its first waiter blocks (site_kind=first_waiter).",
    ),
    (
        "blockprobe_channel_blocked_receivers",
        "gauge",
        "Goroutines blocked receiving from a channel.",
    ),
    (
        "blockprobe_channel_blocked_selects",
        "gauge",
        "Goroutines blocked in a select with a case on a channel.",
    ),
    (
        "blockprobe_channel_len",
        "gauge",
        "Elements in a blocked channel's buffer (hchan.qcount).",
    ),
    (
        "blockprobe_channel_cap",
        "gauge",
        "A blocked channel's buffer size (hchan.dataqsiz).",
    ),
    (
        "blockprobe_findings",
        "gauge",
        "Open findings (allowed ones left out) by pattern and severity.",
    ),
    (
        "blockprobe_findings_timestamp_seconds",
        "gauge",
        "When the findings were last computed (Unix time).",
    ),
    (
        "blockprobe_events_total",
        "counter",
        "Probe events received from the kernel.",
    ),
    (
        "blockprobe_events_lost_total",
        "counter",
        "Probe events lost (ring buffer full).",
    ),
    (
        "blockprobe_scans_total",
        "counter",
        "Goroutine-table scans taken.",
    ),
    (
        "blockprobe_scans_failed_total",
        "counter",
        "Goroutine-table scans that failed.",
    ),
    (
        "blockprobe_scan_duration_seconds",
        "histogram",
        "Wall time of each goroutine-table scan, folding into the model included.",
    ),
    (
        "blockprobe_snapshot_duration_seconds",
        "gauge",
        "What the latest metrics snapshot of a target cost to build (agent CPU on the session's thread).",
    ),
    (
        "blockprobe_agent_cpu_seconds_total",
        "counter",
        "CPU time of the blockprobe process (user and system).",
    ),
    (
        "blockprobe_agent_resident_memory_bytes",
        "gauge",
        "Resident memory of the blockprobe process.",
    ),
    (
        "blockprobe_agent_targets",
        "gauge",
        "Processes watched now.",
    ),
    (
        "blockprobe_daemon_attaches_total",
        "counter",
        "daemon: sessions started.",
    ),
    (
        "blockprobe_daemon_attach_failures_total",
        "counter",
        "daemon: Go processes it could not attach to.",
    ),
    (
        "blockprobe_daemon_sessions_ended_total",
        "counter",
        "daemon: sessions ended (process exited, exec'd, or stopped).",
    ),
];

/// Every series name a scrape can show (histograms as `_bucket`, `_sum`, `_count`).
pub fn exported_names() -> Vec<String> {
    let mut v = Vec::new();
    for (name, kind, _) in METRICS {
        if *kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                v.push(format!("{name}{s}"));
            }
        } else {
            v.push(name.to_string());
        }
    }
    v
}

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|m| m.0 == name)
        .map(|m| m.2)
        .unwrap_or("")
}

/// The process's own CPU time (seconds) and resident memory (bytes).
fn agent_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let cpu = if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    } else {
        0.0
    };
    // /proc/self/statm: size resident shared ... in pages.
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    (cpu, rss_pages * page)
}

type Labels = Vec<(String, String)>;

/// What one scrape serves, owned (a `Collector` must be `'static`).
#[derive(Debug)]
struct Frame {
    snaps: Vec<Arc<TargetSnapshot>>,
    daemon: Option<DaemonStats>,
    cpu_seconds: f64,
    rss_bytes: u64,
}

fn with(target: &Labels, extra: &[(&'static str, String)]) -> Labels {
    let mut l = target.clone();
    l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    l
}

/// One gauge or counter family; nothing at all when it has no series.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    rows: Vec<(Labels, f64)>,
) -> Result<(), fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let counter = name.ends_with("_total");
    // The encoder adds `_total` to a counter's name itself.
    let (base, kind) = match name.strip_suffix("_total") {
        Some(b) if counter => (b, MetricType::Counter),
        _ => (name, MetricType::Gauge),
    };
    let mut m = enc.encode_descriptor(base, help(name), None, kind)?;
    for (labels, v) in &rows {
        let mut f = m.encode_family(labels)?;
        if counter {
            f.encode_counter::<NoLabelSet, f64, f64>(v, None)?;
        } else {
            f.encode_gauge(v)?;
        }
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    rows: Vec<(Labels, &Buckets)>,
) -> Result<(), fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help(name), None, MetricType::Histogram)?;
    for (labels, b) in rows {
        let mut buckets: Vec<(f64, u64)> = b
            .bounds
            .iter()
            .copied()
            .zip(b.counts.iter().copied())
            .collect();
        buckets.push((f64::INFINITY, b.counts.last().copied().unwrap_or(0)));
        let mut f = m.encode_family(&labels)?;
        f.encode_histogram::<NoLabelSet>(b.sum, b.count, &buckets, None)?;
    }
    Ok(())
}

/// The rows of one per-target metric: each target's counts, its labels first.
fn counts<'a>(
    snaps: &'a [(Labels, &'a TargetSnapshot)],
    pick: impl Fn(&'a TargetSnapshot) -> &'a [Count],
) -> Vec<(Labels, f64)> {
    snaps
        .iter()
        .flat_map(|(t, s)| pick(s).iter().map(move |c| (with(t, &c.labels), c.value)))
        .collect()
}

fn scalar(
    snaps: &[(Labels, &TargetSnapshot)],
    pick: impl Fn(&TargetSnapshot) -> f64,
) -> Vec<(Labels, f64)> {
    snaps.iter().map(|(t, s)| (t.clone(), pick(s))).collect()
}

impl Collector for Frame {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snaps: Vec<(Labels, &TargetSnapshot)> = self
            .snaps
            .iter()
            .map(|s| (s.labels.pairs(), s.as_ref()))
            .collect();
        let e = &mut enc;
        family(
            e,
            "blockprobe_target_info",
            snaps
                .iter()
                .map(|(t, s)| {
                    let probe = if s.chan_sites.is_empty() {
                        "off"
                    } else {
                        s.chan_sites
                    };
                    let l = [
                        ("mode", s.mode.to_string()),
                        ("chan_sites", probe.to_string()),
                    ];
                    (with(t, &l), 1.0)
                })
                .collect(),
        )?;
        family(
            e,
            "blockprobe_goroutines",
            counts(&snaps, |s| &s.goroutines),
        )?;
        family(
            e,
            "blockprobe_blocked_goroutines_by_pattern",
            counts(&snaps, |s| &s.blocked_by_pattern),
        )?;
        family(
            e,
            "blockprobe_blocked_goroutines_by_site",
            counts(&snaps, |s| &s.blocked_by_site),
        )?;
        family(
            e,
            "blockprobe_blocked_site_longest_seconds",
            counts(&snaps, |s| &s.longest_by_site),
        )?;
        family(
            e,
            "blockprobe_blocked_longest_seconds",
            counts(&snaps, |s| &s.longest_by_reason),
        )?;
        histogram(
            e,
            "blockprobe_block_duration_seconds",
            snaps
                .iter()
                .flat_map(|(t, s)| {
                    s.block_durations
                        .iter()
                        .map(move |(r, b)| (with(t, &[("wait_reason", r.clone())]), b))
                })
                .collect(),
        )?;
        let chan_rows = |f: &dyn Fn(&super::Channel) -> Option<f64>| -> Vec<(Labels, f64)> {
            snaps
                .iter()
                .flat_map(|(t, s)| {
                    s.channels.iter().filter_map(move |c| {
                        let l = with(
                            t,
                            &[
                                ("chan", c.addr.clone()),
                                ("site", c.site.clone()),
                                ("site_kind", c.site_kind.to_string()),
                            ],
                        );
                        f(c).map(|v| (l, v))
                    })
                })
                .collect()
        };
        family(
            e,
            "blockprobe_channel_blocked_senders",
            chan_rows(&|c| Some(c.senders as f64)),
        )?;
        family(
            e,
            "blockprobe_channel_blocked_receivers",
            chan_rows(&|c| Some(c.receivers as f64)),
        )?;
        family(
            e,
            "blockprobe_channel_blocked_selects",
            chan_rows(&|c| Some(c.selects as f64)),
        )?;
        family(
            e,
            "blockprobe_channel_len",
            chan_rows(&|c| c.len_cap.map(|(l, _)| l as f64)),
        )?;
        family(
            e,
            "blockprobe_channel_cap",
            chan_rows(&|c| c.len_cap.map(|(_, c)| c as f64)),
        )?;
        family(e, "blockprobe_findings", counts(&snaps, |s| &s.findings))?;
        let computed: Vec<(Labels, &TargetSnapshot)> = snaps
            .iter()
            .filter(|(_, s)| s.findings_at > 0.0)
            .map(|(t, s)| (t.clone(), *s))
            .collect();
        family(
            e,
            "blockprobe_findings_timestamp_seconds",
            scalar(&computed, |s| s.findings_at),
        )?;
        family(
            e,
            "blockprobe_events_total",
            scalar(&snaps, |s| s.events as f64),
        )?;
        family(
            e,
            "blockprobe_events_lost_total",
            scalar(&snaps, |s| s.events_lost as f64),
        )?;
        family(
            e,
            "blockprobe_scans_total",
            scalar(&snaps, |s| s.scans as f64),
        )?;
        family(
            e,
            "blockprobe_scans_failed_total",
            scalar(&snaps, |s| s.scans_failed as f64),
        )?;
        histogram(
            e,
            "blockprobe_scan_duration_seconds",
            snaps
                .iter()
                .filter(|(_, s)| !s.scan_seconds.bounds.is_empty())
                .map(|(t, s)| (t.clone(), &s.scan_seconds))
                .collect(),
        )?;
        family(
            e,
            "blockprobe_snapshot_duration_seconds",
            scalar(&snaps, |s| s.snapshot_seconds),
        )?;
        family(
            e,
            "blockprobe_agent_cpu_seconds_total",
            vec![(Vec::new(), self.cpu_seconds)],
        )?;
        family(
            e,
            "blockprobe_agent_resident_memory_bytes",
            vec![(Vec::new(), self.rss_bytes as f64)],
        )?;
        family(
            e,
            "blockprobe_agent_targets",
            vec![(Vec::new(), self.snaps.len() as f64)],
        )?;
        if let Some(d) = &self.daemon {
            family(
                e,
                "blockprobe_daemon_attaches_total",
                vec![(Vec::new(), d.attaches as f64)],
            )?;
            family(
                e,
                "blockprobe_daemon_attach_failures_total",
                vec![(Vec::new(), d.attach_failures as f64)],
            )?;
            family(
                e,
                "blockprobe_daemon_sessions_ended_total",
                vec![(Vec::new(), d.sessions_ended as f64)],
            )?;
        }
        Ok(())
    }
}

/// The snapshots (and the agent's own figures, read now) in the Prometheus text format.
pub fn render(snaps: &[Arc<TargetSnapshot>], daemon: Option<&DaemonStats>) -> String {
    let (cpu_seconds, rss_bytes) = agent_usage();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Frame {
        snaps: snaps.to_vec(),
        daemon: daemon.cloned(),
        cpu_seconds,
        rss_bytes,
    }));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a label set.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!("encoding metrics: {e}");
    }
    out
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::super::{Channel, TargetLabels};
    use super::*;

    fn sample() -> TargetSnapshot {
        let mut scan = Buckets::with_bounds(&super::super::waits::SCAN_BOUNDS);
        scan.observe(0.0003);
        let mut waits = Buckets::with_bounds(&[0.001, 1.0]);
        waits.observe(0.5);
        TargetSnapshot {
            labels: TargetLabels {
                pid: 42,
                comm: "leaky".into(),
                binary: "/bin/le\"aky".into(),
                go_version: "go1.27.3".into(),
                extra: vec![("pod".into(), "web-0".into())],
            },
            mode: "scan",
            goroutines: vec![Count {
                labels: vec![
                    ("state", "waiting".into()),
                    ("wait_reason", "chan receive".into()),
                ],
                value: 7.0,
            }],
            blocked_by_site: vec![Count {
                labels: vec![
                    ("site", "/src/leak.go:12".into()),
                    ("function", "main.main".into()),
                ],
                value: 5.0,
            }],
            block_durations: vec![("chan receive".into(), waits)],
            channels: vec![Channel {
                addr: "0xc000010000".into(),
                site: "/src/leak.go:20".into(),
                site_kind: "made",
                senders: 0,
                receivers: 5,
                selects: 0,
                len_cap: Some((0, 4)),
            }],
            events: 9,
            scans: 3,
            scan_seconds: scan,
            ..Default::default()
        }
    }

    #[test]
    fn renders_the_text_format() {
        let text = render(&[Arc::new(sample())], None);
        let t = r#"pid="42",comm="leaky",binary="/bin/le\"aky",go_version="go1.27.3",pod="web-0""#;
        for want in [
            "# TYPE blockprobe_goroutines gauge\n".to_string(),
            format!(
                "blockprobe_goroutines{{{t},state=\"waiting\",wait_reason=\"chan receive\"}} 7"
            ),
            format!(
                "blockprobe_blocked_goroutines_by_site{{{t},site=\"/src/leak.go:12\",function=\"main.main\"}} 5"
            ),
            "# TYPE blockprobe_events_total counter\n".to_string(),
            format!("blockprobe_events_total{{{t}}} 9"),
            format!(
                "blockprobe_block_duration_seconds_bucket{{{t},wait_reason=\"chan receive\",le=\"1\"}} 1"
            ),
            format!(
                "blockprobe_block_duration_seconds_bucket{{{t},wait_reason=\"chan receive\",le=\"+Inf\"}} 1"
            ),
            format!(
                "blockprobe_channel_cap{{{t},chan=\"0xc000010000\",site=\"/src/leak.go:20\",site_kind=\"made\"}} 4"
            ),
            format!("blockprobe_scan_duration_seconds_count{{{t}}} 1"),
            "blockprobe_agent_targets 1".to_string(),
        ] {
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
        // Every sample is an exported name.
        let names = exported_names();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(names.iter().any(|n| n == name), "{name} not in METRICS");
        }
        // No empty family is described.
        assert!(!text.contains("blockprobe_findings "));
        assert!(!text.contains("daemon"));
    }

    #[test]
    fn every_metric_has_help() {
        for (name, kind, help) in METRICS {
            assert!(name.starts_with("blockprobe_"), "{name}");
            assert!(!help.is_empty(), "{name}");
            assert_eq!(*kind == "counter", name.ends_with("_total"), "{name}");
        }
    }
}
