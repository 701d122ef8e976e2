//! What a session publishes while it runs: a snapshot of its target, built from the session's
//! own model at a bounded rate and swapped into the [`Hub`].
//!
//! Cost: a snapshot takes one goroutine-table read (the census by state), the blocked list as
//! the report builds it, and, when due, the detector's findings (which search the target's
//! memory for references to the channels waited on). Snapshots come at most once per
//! [`SessionMetrics::every`], and each, findings included, at most once per 20 times its own
//! CPU time, so that the metrics take at most about 5% of a CPU on the session's thread however
//! large the target.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::waits::{self, Buckets};
use super::{Channel, Count, Hub, TargetLabels, TargetSnapshot};
use crate::model::Model;
use crate::probes::Attached;
use crate::report::BlockedGoroutine;
use crate::scan::{Scan, Scanner, status};
use crate::scanmode::ScanLoop;
use crate::session::{Mode, monotonic_ns};
use crate::summary::Context;

/// Creation sites and channels exported one by one; the rest are summed into `other`.
pub const TOP_SITES: usize = 20;
pub const TOP_CHANNELS: usize = 20;
/// A snapshot comes at most once per this many times its own cost, and so do the findings.
const COST_FACTOR: u32 = 20;
/// Site label of goroutines with no creator (the main goroutine), and of the rest.
pub const NO_SITE: &str = "none";
pub const OTHER: &str = "other";

/// What a session needs to publish metrics (`SessionOptions::metrics`).
pub struct SessionMetrics {
    pub hub: Hub,
    /// Labels added to every series of the target (the daemon's pod, namespace, container).
    pub extra_labels: Vec<(String, String)>,
    /// Ends the session when it turns true, or when its sender is dropped (the daemon).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Least time between two snapshots.
    pub every: Duration,
}

impl SessionMetrics {
    pub fn new(hub: Hub) -> Self {
        Self {
            hub,
            extra_labels: Vec::new(),
            stop: None,
            every: Duration::from_secs(1),
        }
    }
}

/// Resolves when `stop` says the session should end; never without one.
pub async fn stopped(stop: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            // An error: the sender is gone, which means stop too.
            let _ = rx.wait_for(|v| *v).await;
        }
        None => std::future::pending().await,
    }
}

/// Everything of the session a snapshot reads.
pub struct SessionView<'a, 'b> {
    pub ctx: &'a Context<'b>,
    pub model: &'a Model,
    pub scans: &'a mut ScanLoop,
    pub scanner: &'a Scanner<'b>,
    pub attached: &'a Attached,
    pub pid: u32,
    pub mode: Mode,
    pub threshold_ns: u64,
    pub policy: &'a crate::detect::allow::Policy,
    pub same_program: &'a dyn Fn() -> bool,
    /// The makechan probe: where the channels were made.
    pub chan_sites: &'a mut crate::chansites::ChanSites,
}

/// A session's publishing state. Dropping it takes the target off the endpoint.
pub struct Live {
    hub: Hub,
    key: u64,
    labels: TargetLabels,
    mode: &'static str,
    pub every: Duration,
    scan_seconds: Buckets,
    goroutines: Vec<Count>,
    findings: Vec<Count>,
    findings_at: f64,
    next_findings: Instant,
    next_snapshot: Instant,
    /// goid → (pattern slug, pattern id) of the finding it is in, from the latest findings.
    pattern_of: FxHashMap<u64, (&'static str, &'static str)>,
    runtime_start: FxHashMap<u64, bool>,
    /// The runtime's health figures could not be found (said once).
    health_missing_said: bool,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.hub.remove(self.key);
    }
}

/// CPU time of the calling thread (the session's), ns.
fn thread_cpu() -> u64 {
    crate::procfs::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// `/proc/PID/comm`, without its newline.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

impl Live {
    /// Starts publishing for `pid` (running `binary`); the stop signal is handed back for the
    /// session's loop to wait on.
    pub fn start(
        opts: SessionMetrics,
        pid: u32,
        binary: &std::path::Path,
        go_version: &str,
        mode: Mode,
    ) -> (Self, Option<tokio::sync::watch::Receiver<bool>>) {
        let key = opts.hub.key();
        let live = Live {
            hub: opts.hub,
            key,
            labels: TargetLabels {
                pid,
                comm: comm(pid),
                binary: binary.to_string_lossy().into_owned(),
                go_version: go_version.to_string(),
                extra: opts.extra_labels,
            },
            mode: mode.name(),
            every: opts.every.max(Duration::from_millis(100)),
            scan_seconds: Buckets::with_bounds(&waits::SCAN_BOUNDS),
            goroutines: Vec::new(),
            findings: Vec::new(),
            findings_at: 0.0,
            next_findings: Instant::now(),
            next_snapshot: Instant::now(),
            pattern_of: FxHashMap::default(),
            runtime_start: FxHashMap::default(),
            health_missing_said: false,
        };
        (live, opts.stop)
    }

    /// A goroutine-table scan the session took, and how long it took.
    pub fn observe_scan(&mut self, took: Duration) {
        self.scan_seconds.observe(took.as_secs_f64());
    }

    /// Builds a snapshot of the target now and publishes it, unless the last one cost so much
    /// that this one must wait.
    pub fn publish(&mut self, mut v: SessionView<'_, '_>) {
        let t0 = Instant::now();
        if t0 < self.next_snapshot {
            return;
        }
        // Costs are the session thread's CPU time: on a loaded machine, time spent waiting for
        // a CPU is no cost of ours.
        let cpu0 = thread_cpu();
        let cpu = || Duration::from_nanos(thread_cpu().saturating_sub(cpu0));
        let now = monotonic_ns();
        let scan = match v.scanner.scan() {
            Ok(s) if (v.same_program)() => Some(s),
            _ => None,
        };
        if let Some(s) = &scan {
            self.goroutines = self.census(v.ctx, s);
        }
        let t_census = cpu();
        let blocked = crate::summary::blocked(v.ctx, v.model, now, 0, &v.scans.stacks).goroutines;
        let t_blocked = cpu();
        if let Some(s) = &scan
            && t0 >= self.next_findings
        {
            self.findings(&mut v, s, &blocked);
            let cost = cpu();
            self.next_findings = t0 + (cost * COST_FACTOR).max(self.every);
        }
        drop(scan);
        let mut snap = TargetSnapshot {
            labels: self.labels.clone(),
            mode: self.mode,
            goroutines: self.goroutines.clone(),
            findings: self.findings.clone(),
            findings_at: self.findings_at,
            events: v.model.events,
            events_lost: v.attached.lost().unwrap_or(0),
            scans: self.scan_seconds.count,
            scans_failed: v.scans.stats().map(|s| s.failed).unwrap_or(0),
            scan_seconds: self.scan_seconds.clone(),
            ..Default::default()
        };
        snap.blocked_by_pattern = by_pattern(&blocked, &self.pattern_of);
        (snap.blocked_by_site, snap.longest_by_site) = by_site(&blocked, TOP_SITES);
        snap.longest_by_reason = longest_by_reason(&blocked);
        snap.block_durations = self.block_durations(&v);
        snap.channels = channels(&blocked, TOP_CHANNELS);
        made_sites(&mut v, &blocked, now, &mut snap.channels);
        snap.chan_sites = v.chan_sites.status().state;
        read_len_cap(v.ctx, v.pid, &mut snap.channels);
        snap.health = self.read_health(&mut v);
        let cost = cpu();
        tracing::debug!(
            census_us = t_census.as_micros() as u64,
            blocked_us = t_blocked.saturating_sub(t_census).as_micros() as u64,
            total_us = cost.as_micros() as u64,
            blocked = blocked.len(),
            "metrics snapshot"
        );
        snap.snapshot_seconds = cost.as_secs_f64();
        self.hub.publish(self.key, snap);
        // The tick comes every `every`: a snapshot that cost more than 1/20 of that skips ticks.
        self.next_snapshot = t0 + (cost * COST_FACTOR).saturating_sub(self.every / 2);
    }

    /// The runtime's health figures now (`crate::health`): the heap, GC, scheduler and timer
    /// figures of `blockprobe stat`, for the same endpoint.
    fn read_health(
        &mut self,
        v: &mut SessionView<'_, '_>,
    ) -> Option<Arc<crate::health::read::Stat>> {
        // The session's one resolution, shared with the leak findings' heap samples.
        let reader = match v.scans.heap.reader(v.ctx.bin, v.pid, v.ctx.bias) {
            Ok(r) => r,
            Err(e) => {
                if !std::mem::replace(&mut self.health_missing_said, true) {
                    tracing::warn!("no runtime health metrics for pid {}: {e}", v.pid);
                }
                return None;
            }
        };
        match reader.read() {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::debug!("reading the runtime health of pid {}: {e}", v.pid);
                None
            }
        }
    }

    /// The program's goroutines by state and wait reason (the runtime's own left out, as the
    /// report leaves them out).
    fn census(&mut self, ctx: &Context<'_>, scan: &Scan) -> Vec<Count> {
        let mut by: FxHashMap<(u32, u32), u64> = FxHashMap::default();
        for g in &scan.goroutines {
            let runtime = *self.runtime_start.entry(g.startpc).or_insert_with(|| {
                ctx.bin
                    .func_name(g.startpc.wrapping_sub(ctx.bias))
                    .is_some_and(crate::summary::is_runtime_start_function)
            });
            if runtime || status::name(g.status) == "dead" {
                continue;
            }
            let reason = if g.status == status::WAITING {
                g.wait_reason
            } else {
                u32::MAX
            };
            *by.entry((g.status, reason)).or_default() += 1;
        }
        let mut v: Vec<Count> = by
            .into_iter()
            .map(|((st, r), n)| Count {
                labels: vec![
                    ("state", status::name(st).to_string()),
                    (
                        "wait_reason",
                        if r == u32::MAX {
                            String::new()
                        } else {
                            ctx.bin.wait_reason(r).into_owned()
                        },
                    ),
                ],
                value: n as f64,
            })
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// Runs the detector on what is blocked now (as the end of a session does, with the scan
    /// just taken as the live target's state).
    fn findings(&mut self, v: &mut SessionView<'_, '_>, scan: &Scan, blocked: &[BlockedGoroutine]) {
        // `blocked` runs from the longest wait down: those over the threshold are a prefix.
        let over = blocked.partition_point(|g| g.blocked_ns >= v.threshold_ns);
        let running = crate::summary::running(v.ctx, scan, v.pid);
        let in_syscall = crate::summary::in_syscall(v.ctx, scan, v.pid, &[], None);
        let roots = scan.roots();
        let found = crate::detect::gather::findings(
            v.ctx,
            v.pid,
            Some(&roots),
            &blocked[..over],
            (&in_syscall, &running),
            &v.model.parties,
            v.scans,
            v.threshold_ns,
            v.policy,
        );
        let mut counts: std::collections::BTreeMap<(&str, &str, &str), u64> = Default::default();
        self.pattern_of.clear();
        // Most severe first: a goroutine in several findings counts under the first.
        for f in found.iter().filter(|f| !f.allowed) {
            *counts
                .entry((f.slug, f.pattern, f.severity.word()))
                .or_default() += 1;
            for &g in &f.goroutines {
                self.pattern_of.entry(g).or_insert((f.slug, f.pattern));
            }
        }
        self.findings = counts
            .into_iter()
            .map(|((slug, id, sev), n)| Count {
                labels: vec![
                    ("pattern", slug.to_string()),
                    ("pattern_id", id.to_string()),
                    ("severity", sev.to_string()),
                ],
                value: n as f64,
            })
            .collect();
        self.findings_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
    }

    /// Finished waits per wait reason: the kernel's per-reason histograms in precise mode
    /// (every wait, exact: the per-site ones may be sampled), the model's tally of what the
    /// scans saw end otherwise.
    fn block_durations(&self, v: &SessionView<'_, '_>) -> Vec<(String, Buckets)> {
        let mut by: std::collections::BTreeMap<String, probes_ebpf::WaitHist> = Default::default();
        let empty = || probes_ebpf::WaitHist {
            count: 0,
            total_ns: 0,
            buckets: [0; probes_ebpf::WAIT_HIST_BUCKETS],
        };
        if v.mode == Mode::Precise {
            match crate::precise::reason_histograms(v.attached) {
                Ok(hists) => {
                    for (code, h) in hists {
                        let reason = v.ctx.bin.wait_reason(code).into_owned();
                        waits::add(by.entry(reason).or_insert_with(empty), &h);
                    }
                }
                Err(e) => tracing::debug!("wait histograms: {e}"),
            }
        } else {
            for (&r, h) in &v.model.finished_waits.by_reason {
                let reason = v.ctx.bin.wait_reason(r).into_owned();
                waits::add(by.entry(reason).or_insert_with(empty), h);
            }
        }
        by.into_iter()
            .map(|(r, h)| (r, Buckets::from_log2(&h)))
            .collect()
    }
}

/// Blocked goroutines by the pattern of their finding (`none` outside any).
fn by_pattern(
    blocked: &[BlockedGoroutine],
    pattern_of: &FxHashMap<u64, (&'static str, &'static str)>,
) -> Vec<Count> {
    let mut by: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for g in blocked {
        let p = pattern_of.get(&g.goid).copied().unwrap_or((NO_SITE, ""));
        *by.entry(p).or_default() += 1;
    }
    by.into_iter()
        .map(|((slug, id), n)| Count {
            labels: vec![
                ("pattern", slug.to_string()),
                ("pattern_id", id.to_string()),
            ],
            value: n as f64,
        })
        .collect()
}

/// Blocked goroutines by creation site, and the longest wait at each: the `top` sites with the
/// most goroutines, the rest summed into `other` (its longest wait the longest among them).
pub fn by_site(blocked: &[BlockedGoroutine], top: usize) -> (Vec<Count>, Vec<Count>) {
    let mut by: FxHashMap<(&str, &str), (u64, u64)> = FxHashMap::default();
    for g in blocked {
        let (site, func) = match &g.created_by {
            Some(c) => (c.location.as_deref().unwrap_or(OTHER), c.function.as_ref()),
            None => (NO_SITE, ""),
        };
        let e = by.entry((site, func)).or_default();
        e.0 += 1;
        e.1 = e.1.max(g.blocked_ns);
    }
    // ((site, function), (goroutines, longest wait ns))
    type Row<'a> = ((&'a str, &'a str), (u64, u64));
    let mut sites: Vec<Row<'_>> = by.into_iter().collect();
    // Most goroutines first; ties by name, so the cut is the same scrape after scrape.
    sites.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let mut rest: Option<(u64, u64)> = None;
    let mut rows: Vec<(String, String, u64, u64)> = Vec::new();
    for (i, ((site, func), (n, longest))) in sites.into_iter().enumerate() {
        if i < top {
            rows.push((site.to_string(), func.to_string(), n, longest));
        } else {
            let r = rest.get_or_insert((0, 0));
            r.0 += n;
            r.1 = r.1.max(longest);
        }
    }
    if let Some((n, longest)) = rest {
        rows.push((OTHER.to_string(), OTHER.to_string(), n, longest));
    }
    let labels = |s: &str, f: &str| vec![("site", s.to_string()), ("function", f.to_string())];
    let counts = rows
        .iter()
        .map(|(s, f, n, _)| Count {
            labels: labels(s, f),
            value: *n as f64,
        })
        .collect();
    let longest = rows
        .iter()
        .map(|(s, f, _, l)| Count {
            labels: labels(s, f),
            value: *l as f64 / 1e9,
        })
        .collect();
    (counts, longest)
}

fn longest_by_reason(blocked: &[BlockedGoroutine]) -> Vec<Count> {
    let mut by: std::collections::BTreeMap<&str, u64> = Default::default();
    for g in blocked {
        let e = by.entry(g.wait_reason.as_ref()).or_default();
        *e = (*e).max(g.blocked_ns);
    }
    by.into_iter()
        .map(|(r, ns)| Count {
            labels: vec![("wait_reason", r.to_string())],
            value: ns as f64 / 1e9,
        })
        .collect()
}

/// The channels goroutines are blocked on, with their senders, receivers and selects: the
/// `top` channels with the most waiters, the rest summed into `other`.
pub fn channels(blocked: &[BlockedGoroutine], top: usize) -> Vec<Channel> {
    #[derive(Default)]
    struct Acc<'a> {
        senders: u64,
        receivers: u64,
        selects: u64,
        site: Option<&'a str>,
    }
    let mut by: FxHashMap<u64, Acc<'_>> = FxHashMap::default();
    for g in blocked {
        let reason = g.wait_reason.as_ref();
        let chans: Vec<u64> = if !g.wait_chans.is_empty() {
            g.wait_chans.iter().map(|c| c.0).collect()
        } else if g.object_kind == "chan" && g.object.0 != 0 {
            vec![g.object.0]
        } else {
            continue;
        };
        for c in chans {
            let a = by.entry(c).or_default();
            match reason {
                "chan send" => a.senders += 1,
                "chan receive" => a.receivers += 1,
                _ => a.selects += 1,
            }
            if a.site.is_none() {
                a.site = g.blocked_at.as_ref().map(|s| s.location.as_ref());
            }
        }
    }
    let mut all: Vec<(u64, Acc<'_>)> = by.into_iter().collect();
    all.sort_by(|a, b| {
        let n = |x: &Acc<'_>| x.senders + x.receivers + x.selects;
        n(&b.1).cmp(&n(&a.1)).then(a.0.cmp(&b.0))
    });
    let mut out: Vec<Channel> = Vec::new();
    let mut rest: Option<Channel> = None;
    for (i, (addr, a)) in all.into_iter().enumerate() {
        if i < top {
            out.push(Channel {
                addr: format!("{addr:#x}"),
                site: a.site.unwrap_or("unknown").to_string(),
                site_kind: FIRST_WAITER,
                senders: a.senders,
                receivers: a.receivers,
                selects: a.selects,
                len_cap: None,
            });
        } else {
            let r = rest.get_or_insert_with(|| Channel {
                addr: OTHER.to_string(),
                site: OTHER.to_string(),
                site_kind: OTHER,
                ..Default::default()
            });
            r.senders += a.senders;
            r.receivers += a.receivers;
            r.selects += a.selects;
        }
    }
    out.extend(rest);
    out
}

/// `site_kind` of a channel whose `site` is where its first waiter blocks, and of one whose
/// `site` is where it was made.
pub const FIRST_WAITER: &str = "first_waiter";
pub const MADE: &str = "made";

/// Names each listed channel by where it was made, where the makechan probe knows (see
/// `crate::chansites`): one map lookup per listed channel.
fn made_sites(
    v: &mut SessionView<'_, '_>,
    blocked: &[BlockedGoroutine],
    now: u64,
    chans: &mut [Channel],
) {
    let listed: rustc_hash::FxHashSet<u64> = chans
        .iter()
        .filter_map(|c| u64::from_str_radix(c.addr.strip_prefix("0x")?, 16).ok())
        .collect();
    // Only the listed channels' waits: with 100k blocked goroutines, no list of all of them.
    let waits = blocked.iter().flat_map(|g| {
        let since = now.saturating_sub(g.blocked_ns);
        crate::chansites::chans_of(g)
            .filter(|c| listed.contains(c))
            .map(move |c| (c, since))
    });
    let made = v.chan_sites.resolve(v.attached.ebpf(), v.ctx, waits);
    for c in chans {
        let addr = c
            .addr
            .strip_prefix("0x")
            .and_then(|a| u64::from_str_radix(a, 16).ok());
        if let Some(m) = addr.and_then(|a| made.get(&a)) {
            c.site = m.location.to_string();
            c.site_kind = MADE;
        }
    }
}

/// Reads `hchan.qcount` and `hchan.dataqsiz` of each listed channel now (src/runtime/chan.go,
/// hchan), at the binary's offsets: one batched read of the target.
fn read_len_cap(ctx: &Context<'_>, pid: u32, chans: &mut [Channel]) {
    let layout = &ctx.bin.layout.hchan;
    let at: Vec<(usize, u64)> = chans
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, u64::from_str_radix(c.addr.strip_prefix("0x")?, 16).ok()?)))
        .collect();
    let mut bufs = vec![[0u8; 8]; at.len() * 2];
    let mut ranges: Vec<(u64, &mut [u8])> = at
        .iter()
        .flat_map(|&(_, a)| [a + layout.qcount as u64, a + layout.dataqsiz as u64])
        .zip(bufs.iter_mut())
        .map(|(addr, b)| (addr, &mut b[..]))
        .collect();
    let Ok(ok) = crate::memory::ProcessMemory::new(pid).read_many(&mut ranges) else {
        return;
    };
    drop(ranges);
    for (k, &(i, _)) in at.iter().enumerate() {
        if ok[2 * k] && ok[2 * k + 1] {
            chans[i].len_cap = Some((
                u64::from_le_bytes(bufs[2 * k]),
                u64::from_le_bytes(bufs[2 * k + 1]),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{BlockingSite, CreationSite, Hex, Text};

    fn g(goid: u64, reason: &str, chans: &[u64], site: &str, ns: u64) -> BlockedGoroutine {
        BlockedGoroutine {
            goid,
            wait_reason: Text::from(reason),
            wait_reason_code: 0,
            blocked_ns: ns,
            object_kind: "chan",
            object: Hex(chans.first().copied().unwrap_or(0)),
            parked_in: Text::from("runtime.chanrecv"),
            tid: 0,
            blocked_before_attach: false,
            wait_chans: chans.iter().map(|&c| Hex(c)).collect(),
            created_by: (!site.is_empty()).then(|| CreationSite {
                function: Text::from("main.spawn"),
                location: Some(Text::from(site)),
                parent_goid: 1,
            }),
            start_function: None,
            blocked_at: Some(std::sync::Arc::new(BlockingSite {
                function: Text::from("main.worker"),
                location: Text::from("/src/w.go:9"),
            })),
            stack: None,
            made_at: None,
            source: "scan",
        }
    }

    #[test]
    fn sites_are_bounded_with_the_rest_in_other() {
        let mut blocked = Vec::new();
        for i in 0..5u64 {
            for _ in 0..=i {
                blocked.push(g(i, "chan receive", &[1], &format!("/a.go:{i}"), i * 10));
            }
        }
        blocked.push(g(99, "chan receive", &[1], "", 7));
        let (counts, longest) = by_site(&blocked, 2);
        let v: Vec<(String, f64)> = counts
            .iter()
            .map(|c| (c.labels[0].1.clone(), c.value))
            .collect();
        assert_eq!(
            v,
            vec![
                ("/a.go:4".into(), 5.0),
                ("/a.go:3".into(), 4.0),
                (OTHER.into(), 3.0 + 2.0 + 1.0 + 1.0),
            ]
        );
        assert_eq!(longest[0].value, 40e-9);
        assert_eq!(longest[2].value, 20e-9);
        // The main goroutine (no creator) is its own row when it ranks.
        let (c, _) = by_site(&blocked[15..], 5);
        assert_eq!(
            c[0].labels,
            vec![("site", NO_SITE.into()), ("function", String::new())]
        );
    }

    #[test]
    fn channels_count_each_side() {
        let blocked = vec![
            g(1, "chan send", &[0x10], "/a.go:1", 1),
            g(2, "chan send", &[0x10], "/a.go:1", 1),
            g(3, "chan receive", &[0x20], "/a.go:1", 1),
            g(4, "select", &[0x20, 0x30], "/a.go:1", 1),
        ];
        let c = channels(&blocked, 2);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].addr.as_str(), c[0].senders), ("0x10", 2));
        assert_eq!(
            (c[1].addr.as_str(), c[1].receivers, c[1].selects),
            ("0x20", 1, 1)
        );
        assert_eq!((c[2].addr.as_str(), c[2].selects), (OTHER, 1));
        assert_eq!(
            (c[0].site.as_str(), c[0].site_kind),
            ("/src/w.go:9", FIRST_WAITER)
        );
        assert_eq!((c[2].site.as_str(), c[2].site_kind), (OTHER, OTHER));
    }

    #[test]
    fn patterns_default_to_none() {
        let blocked = vec![
            g(1, "chan send", &[1], "", 1),
            g(2, "chan send", &[1], "", 1),
        ];
        let mut of = FxHashMap::default();
        of.insert(2, ("chan-send-no-receiver", "BP02"));
        let p = by_pattern(&blocked, &of);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].labels[0].1, "chan-send-no-receiver");
        assert_eq!(p[1].labels[0].1, NO_SITE);
    }
}
