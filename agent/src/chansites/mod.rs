//! Where the channels goroutines block on were made: the `make(chan …)` line, from a uprobe on
//! each `RET` of `runtime.makechan` (probes-ebpf/src/chansites.rs) that records, per hchan
//! address, the return addresses back to the maker. Nothing in `runtime.hchan` records it.
//!
//! - [`rets`]: where the probes go (every `RET`, decoded).
//! - [`site`]: from return addresses to the maker's `file:line`, past makechan's wrappers.
//!
//! Precise mode keeps the probe on. Scan mode promises no probe on a hot path, and how often a
//! program makes channels is its own business, so there the probe stays only while its hit rate
//! is within [`BUDGET_HITS_PER_S`] (`--chan-sites auto`, checked every [`WATCH_EVERY`]); over
//! it, the probe is detached for the rest of the session and the report says why.
//!
//! A site is trusted only where it cannot be another channel's: with the probe on, an entry for
//! address X was written by the make of the channel living at X now (a channel made before the
//! attach has no entry: X was taken since). After a detach, a channel made later at a reused
//! address would find the entry of an earlier one; so then only channels some goroutine already
//! waited on before the detach (made before it, alive since) keep their site.

pub mod rets;
pub mod site;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, PerCpuArray};
use aya::programs::UProbe;
use aya::programs::uprobe::UProbeLinkId;
use probes_ebpf::{ChanSite, MAP_CHAN_SITE_HITS, MAP_CHAN_SITES, PROG_MAKECHAN_RET};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::goruntime::GoBinary;
use crate::probes::{Attached, AttachedProbe, ProbeError, ProbeSpec};
use crate::report::{BlockedGoroutine, Hex, Text};
use crate::session::Mode;
use crate::summary::Context;

/// `--chan-sites`: whether to probe `runtime.makechan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// Precise mode: on. Scan mode: on while its hit rate is within the budget.
    #[default]
    Auto,
    /// On for the whole session, whatever it costs.
    On,
    /// Never.
    Off,
}

/// The scan-mode budget. A hit costs the target a uprobe trap and, because the kernel does not
/// emulate a `RET` (arch/x86/kernel/uprobes.c emulates only jumps, calls, NOPs and pushes), a
/// single-step of it out of line: a `make(chan int, 1)` loop went from about 70 ns to about
/// 10.4 µs per channel with the probe on (Go 1.27.3, this project's 2-CPU VM), against 1.1 µs
/// for an emulated probe point (../shared/TOOLCHAIN.md). 500 hits a second cost about 0.5% of
/// one CPU, spread over the threads that make channels: what scan mode, left attached in
/// production, may spend on it. A program that makes channels faster (one per request, say)
/// loses the probe.
pub const BUDGET_HITS_PER_S: u64 = 500;
/// How often the hit counter is read in scan mode.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);
/// The budget holds over any window of this length: a start-up burst of up to
/// `BUDGET_HITS_PER_S × 2 s` channels is allowed, a steady rate above the budget is not.
pub const WATCH_WINDOW: Duration = Duration::from_secs(2);

/// The makechan probe as the probe list names it.
pub const MAKECHAN: ProbeSpec = ProbeSpec {
    symbols: &[rets::MAKECHAN],
    program: PROG_MAKECHAN_RET,
    cookie: None,
    optional: true,
};

#[derive(Debug, thiserror::Error)]
pub enum ChanSitesError {
    #[error("no probe on runtime.makechan (--chan-sites on): {0}")]
    Rets(#[from] rets::RetError),
    #[error("no probe on runtime.makechan (--chan-sites on): {0}")]
    Attach(String),
}

/// Why [`ChanSites::attach_with`] attached nothing.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Probe(#[from] crate::probes::ProbeError),
    #[error(transparent)]
    ChanSites(#[from] ChanSitesError),
}

impl From<AttachError> for crate::session::SessionError {
    fn from(e: AttachError) -> Self {
        match e {
            AttachError::Probe(e) => e.into(),
            AttachError::ChanSites(e) => e.into(),
        }
    }
}

/// Where a channel was made.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MadeAt {
    /// The function with the `make` (an inlined helper's own name).
    pub function: Text,
    /// `file:line` of the `make`.
    pub location: Text,
    /// What established it: "uprobe" (the makechan probe), whatever the session's mode.
    pub source: &'static str,
}

/// A channel waited on at the report, and where it was made (None: unknown).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelSite {
    pub chan: Hex,
    pub made_at: Option<Arc<MadeAt>>,
}

/// What the report says about the probe.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub setting: Setting,
    /// "on" (attached to the end), "detached" (scan mode, over its budget) or "off".
    pub state: &'static str,
    /// Why it is off or was detached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hits counted (channels made while it was attached).
    pub hits: u64,
    /// Scan mode under `auto`: the hit rate it may cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_hits_per_s: Option<u64>,
    /// When it was detached, ns after the attach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detached_after_ns: Option<u64>,
    /// Hits counted when it was detached: `hits` stays there once the probe is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hits_when_detached: Option<u64>,
}

struct Detached {
    at_mono_ns: u64,
    after: Duration,
    reason: String,
    hits: u64,
}

/// The hit counter's samples over the last [`WATCH_WINDOW`], and the verdict on them.
#[derive(Debug, Clone)]
pub struct Budget {
    samples: VecDeque<(Instant, u64)>,
}

impl Budget {
    /// Starts counting at `t` (0 hits).
    pub fn new(t: Instant) -> Self {
        Self {
            samples: VecDeque::from([(t, 0)]),
        }
    }

    /// Takes the counter's value `hits` at `t`; over the budget, returns the hits counted in
    /// the window and the window's length.
    pub fn over(&mut self, t: Instant, hits: u64) -> Option<(u64, Duration)> {
        let s = &mut self.samples;
        s.push_back((t, hits));
        while s.len() > 1 && t.duration_since(s[0].0) > WATCH_WINDOW {
            s.pop_front();
        }
        let (t0, h0) = *s.front()?;
        let in_window = hits.saturating_sub(h0);
        (in_window > BUDGET_HITS_PER_S * WATCH_WINDOW.as_secs())
            .then(|| (in_window, t.duration_since(t0)))
    }
}

/// The makechan probe of one session.
pub struct ChanSites {
    setting: Setting,
    links: Vec<UProbeLinkId>,
    /// Scan mode under `auto`: the hit rate against the budget.
    watch: Option<Budget>,
    attached_at: Instant,
    detached: Option<Detached>,
    off_reason: Option<String>,
    /// Hits, once read for good (the map is gone with the probes).
    final_hits: Option<u64>,
    made: FxHashMap<[u64; 3], Option<Arc<MadeAt>>>,
}

impl ChanSites {
    /// The probe is not attached, for `reason`.
    pub fn off(setting: Setting, reason: impl Into<String>) -> Self {
        Self {
            setting,
            links: Vec::new(),
            watch: None,
            attached_at: Instant::now(),
            detached: None,
            off_reason: Some(reason.into()),
            final_hits: None,
            made: FxHashMap::default(),
        }
    }

    /// A session's probes: `specs` on the process `pid` running `exe`
    /// ([`Attached::attach_to_with`]), then the makechan probe as `setting` and `mode` say.
    /// Nothing stays attached on an error.
    pub fn attach_with(
        pid: u32,
        exe: &std::path::Path,
        bin: &GoBinary,
        specs: &[ProbeSpec],
        precise: crate::precise::Settings,
        setting: Setting,
        mode: Mode,
    ) -> Result<(Attached, Self), AttachError> {
        let wanted = setting != Setting::Off && mode != Mode::Trap;
        let mut attached = Attached::attach_to_with(pid, exe, bin, specs, precise, wanted)?;
        let sites = Self::start(&mut attached, bin, setting, mode)?;
        Ok((attached, sites))
    }

    /// Attaches the probe to every `RET` of makechan as `setting` and `mode` say, scoped to the
    /// process `attached` watches (the object's map was kept for it: see
    /// [`Attached::attach_to_with`]). Under `auto` a failure leaves it off with the reason;
    /// under `on` it is an error. Nothing stays attached on an error.
    pub fn start(
        attached: &mut Attached,
        bin: &GoBinary,
        setting: Setting,
        mode: Mode,
    ) -> Result<Self, ChanSitesError> {
        if setting == Setting::Off {
            return Ok(Self::off(setting, "--chan-sites off"));
        }
        if mode == Mode::Trap {
            return Ok(Self::off(setting, "trap mode (benchmarks)"));
        }
        let fail = |e: ChanSitesError| match setting {
            Setting::On => Err(e),
            _ => Ok(Self::off(
                setting,
                e.to_string().replace(" (--chan-sites on)", ""),
            )),
        };
        let rets = match rets::makechan_rets(bin) {
            Ok(r) => r,
            Err(e) => return fail(e.into()),
        };
        let (pid, exe) = (attached.pid, attached.exe.clone());
        let mut links = Vec::new();
        let result = attach_all(attached.ebpf_mut(), pid, &exe, &rets, &mut links);
        if let Err(e) = result {
            detach_links(attached.ebpf_mut(), &mut links);
            return fail(ChanSitesError::Attach(e));
        }
        for (&off, &file_offset) in rets.offsets.iter().zip(&rets.file_offsets) {
            attached.probes.push(AttachedProbe {
                spec: MAKECHAN,
                symbol: rets::MAKECHAN,
                entry: rets.entry,
                offset_in_func: off,
                file_offset,
            });
        }
        let now = Instant::now();
        let watch = (mode == Mode::Scan && setting == Setting::Auto).then(|| Budget::new(now));
        Ok(Self {
            setting,
            links,
            watch,
            attached_at: now,
            detached: None,
            off_reason: None,
            final_hits: None,
            made: FxHashMap::default(),
        })
    }

    /// Attached now.
    pub fn active(&self) -> bool {
        !self.links.is_empty()
    }

    /// Its hit rate is being watched (scan mode, `auto`, still attached).
    pub fn watching(&self) -> bool {
        self.watch.is_some() && self.active()
    }

    /// Scan mode's periodic check: reads the hit counter and detaches the probe if the last
    /// [`WATCH_WINDOW`] holds more hits than the budget allows. Returns the reason when it
    /// detached now.
    pub fn check(&mut self, ebpf: &mut Ebpf, now_mono_ns: u64) -> Option<String> {
        let hits = read_hits(ebpf).ok()?;
        let (in_window, span) = self.watch.as_mut()?.over(Instant::now(), hits)?;
        detach_links(ebpf, &mut self.links);
        let after = self.attached_at.elapsed();
        let reason = format!(
            "detached {:.1}s after the attach: {in_window} channels made within {:.2}s, over \
             scan mode's budget for this probe ({BUDGET_HITS_PER_S}/s, at most {} per {}s; \
             --chan-sites on keeps it)",
            after.as_secs_f64(),
            span.as_secs_f64(),
            BUDGET_HITS_PER_S * WATCH_WINDOW.as_secs(),
            WATCH_WINDOW.as_secs()
        );
        self.detached = Some(Detached {
            at_mono_ns: now_mono_ns,
            after,
            reason: reason.clone(),
            hits,
        });
        Some(reason)
    }

    /// Looks up where the channels in `waits` were made: (channel address, when its oldest
    /// wait began, CLOCK_MONOTONIC ns). Only trusted sites are returned (see the module's
    /// comment); the rest are unknown.
    pub fn resolve(
        &mut self,
        ebpf: &Ebpf,
        ctx: &Context<'_>,
        waits: impl IntoIterator<Item = (u64, u64)>,
    ) -> FxHashMap<u64, Arc<MadeAt>> {
        let mut out = FxHashMap::default();
        if self.links.is_empty() && self.detached.is_none() {
            return out;
        }
        let Some(map) = ebpf.map(MAP_CHAN_SITES) else {
            return out;
        };
        let Ok(map) = BpfHashMap::<_, u64, ChanSite>::try_from(map) else {
            return out;
        };
        let mut oldest: FxHashMap<u64, u64> = FxHashMap::default();
        for (chan, since) in waits {
            let e = oldest.entry(chan).or_insert(since);
            *e = (*e).min(since);
        }
        for (chan, since) in oldest {
            if chan == 0 || !trusted(self.detached.as_ref().map(|d| d.at_mono_ns), since) {
                continue;
            }
            let Ok(site) = map.get(&chan, 0) else {
                continue;
            };
            let made = self
                .made
                .entry([site.pc0, site.pc1, site.pc2])
                .or_insert_with(|| site::made_at(ctx, &site).map(Arc::new));
            if let Some(m) = made {
                out.insert(chan, m.clone());
            }
        }
        out
    }

    /// Reads the hit counter for the report, before the probes go.
    pub fn finish(&mut self, ebpf: &Ebpf) {
        self.final_hits = read_hits(ebpf).ok();
    }

    /// What the report says about the probe.
    pub fn status(&self) -> Status {
        let (state, reason) = match (&self.detached, &self.off_reason) {
            (Some(d), _) => ("detached", Some(d.reason.clone())),
            (None, Some(why)) => ("off", Some(why.clone())),
            (None, None) => ("on", None),
        };
        Status {
            setting: self.setting,
            state,
            reason,
            hits: self.final_hits.unwrap_or(0),
            budget_hits_per_s: self.watch.is_some().then_some(BUDGET_HITS_PER_S),
            detached_after_ns: self.detached.as_ref().map(|d| d.after.as_nanos() as u64),
            hits_when_detached: self.detached.as_ref().map(|d| d.hits),
        }
    }

    /// The NDJSON event that says what the probe does now (at the attach, and at a detach).
    pub fn event(&self, ts_ns: u64) -> serde_json::Value {
        let s = self.status();
        serde_json::json!({
            "ts_ns": ts_ns, "event": "chan_sites", "state": s.state, "reason": s.reason,
            "setting": s.setting, "source": "uprobe",
        })
    }
}

/// Whether the map's entry for a channel whose oldest wait began at `since` is that channel's:
/// always while the probe is on; after a detach at `detached_at`, only for a channel waited on
/// before it (made before it, and alive since, so no later channel took its address).
fn trusted(detached_at: Option<u64>, since: u64) -> bool {
    detached_at.is_none_or(|d| since < d)
}

fn attach_all(
    ebpf: &mut Ebpf,
    pid: u32,
    exe: &std::path::Path,
    rets: &rets::MakechanRets,
    links: &mut Vec<UProbeLinkId>,
) -> Result<(), String> {
    let pid = std::num::NonZeroU32::new(pid).ok_or("no process")?;
    for &file_offset in &rets.file_offsets {
        let link =
            crate::probes::attach_uprobe(ebpf, PROG_MAKECHAN_RET, file_offset, None, exe, pid)
                .map_err(|e| match e {
                    // The probes module's own message speaks of precise mode; this probe is
                    // scan mode's too.
                    ProbeError::Privileges(_) => "the kernel refused to attach a uprobe: this \
                                                  kernel requires CAP_SYS_ADMIN (or root) for \
                                                  uprobes"
                        .to_string(),
                    e => format!("attaching at file offset {file_offset:#x}: {e}"),
                })?;
        links.push(link);
    }
    Ok(())
}

/// Detaches every link (the kernel puts the original instruction back).
fn detach_links(ebpf: &mut Ebpf, links: &mut Vec<UProbeLinkId>) {
    let prog: Option<&mut UProbe> = ebpf
        .program_mut(PROG_MAKECHAN_RET)
        .and_then(|p| p.try_into().ok());
    if let Some(prog) = prog {
        for link in links.drain(..) {
            if let Err(e) = prog.detach(link) {
                tracing::warn!("detaching the makechan probe: {e}");
            }
        }
    }
}

/// The probe's hits, summed over CPUs.
fn read_hits(ebpf: &Ebpf) -> Result<u64, aya::maps::MapError> {
    let map = ebpf
        .map(MAP_CHAN_SITE_HITS)
        .ok_or(aya::maps::MapError::InvalidName {
            name: MAP_CHAN_SITE_HITS.to_string(),
        })?;
    let hits: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
    Ok(hits.get(&0, 0)?.iter().sum())
}

/// The channels a goroutine waits on, with when its wait began (`now` − `blocked_ns`).
pub fn waits_of(blocked: &[BlockedGoroutine], now: u64) -> Vec<(u64, u64)> {
    blocked
        .iter()
        .flat_map(|g| {
            let since = now.saturating_sub(g.blocked_ns);
            chans_of(g).map(move |c| (c, since))
        })
        .collect()
}

/// A blocked goroutine's channels: every case of a select, or the channel of a send/receive.
pub fn chans_of(g: &BlockedGoroutine) -> impl Iterator<Item = u64> + '_ {
    let own = (g.wait_chans.is_empty() && g.object_kind == "chan").then_some(g.object.0);
    g.wait_chans.iter().map(|c| c.0).chain(own)
}

/// Sets each goroutine's `made_at` (for a channel send or receive: its channel's), and lists
/// every channel waited on with its site, by address.
pub fn annotate(
    blocked: &mut [BlockedGoroutine],
    made: &FxHashMap<u64, Arc<MadeAt>>,
) -> Vec<ChannelSite> {
    let mut all: Vec<u64> = Vec::new();
    for g in blocked.iter_mut() {
        all.extend(chans_of(g));
        if g.object_kind == "chan" {
            g.made_at = made.get(&g.object.0).cloned();
        }
    }
    all.sort_unstable();
    all.dedup();
    all.into_iter()
        .filter(|&c| c != 0)
        .map(|c| ChannelSite {
            chan: Hex(c),
            made_at: made.get(&c).cloned(),
        })
        .collect()
}

/// The channels the model's goroutines blocked at least `threshold_ns` wait on, with when each
/// wait began: what [`ChanSites::resolve`] looks up at the report, before the probe goes.
pub fn model_waits(
    bin: &GoBinary,
    model: &crate::model::Model,
    now: u64,
    threshold_ns: u64,
) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for g in model.blocked(now, threshold_ns) {
        let since = g.parked_at_ns.unwrap_or(now);
        if !g.wait_chans.is_empty() {
            out.extend(g.wait_chans.iter().map(|&c| (c, since)));
        } else if let ("chan", c) = crate::summary::wait_object(bin, g) {
            out.push((c, since));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_after_a_detach_need_a_wait_from_before_it() {
        assert!(trusted(None, 5));
        assert!(trusted(Some(100), 99));
        assert!(!trusted(Some(100), 100));
        assert!(!trusted(Some(100), 250));
    }

    #[test]
    fn the_budget_allows_a_burst_not_a_steady_excess() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let allowed = BUDGET_HITS_PER_S * WATCH_WINDOW.as_secs();
        // A start-up burst of the whole allowance, then quiet: kept.
        let mut b = Budget::new(t0);
        assert_eq!(b.over(at(250), allowed), None);
        for i in 2..40 {
            // Quiet for a window, then a trickle.
            let trickle = if 250 * i > 2250 { i } else { 0 };
            assert_eq!(b.over(at(250 * i), allowed + trickle), None, "{i}");
        }
        // One more than the allowance within the window: over.
        let mut b = Budget::new(t0);
        assert_eq!(
            b.over(at(250), allowed + 1),
            Some((allowed + 1, at(250) - t0))
        );
        // A steady rate just under the budget never is; just over it is, within the window.
        let mut under = Budget::new(t0);
        let mut over = Budget::new(t0);
        let mut verdict = None;
        for i in 1..200u64 {
            let ms = 250 * i;
            assert_eq!(
                under.over(at(ms), (BUDGET_HITS_PER_S - 1) * ms / 1000),
                None
            );
            verdict = verdict.or(over
                .over(at(ms), (BUDGET_HITS_PER_S + 20) * ms / 1000)
                .map(|v| (i, v)));
        }
        let (i, (n, span)) = verdict.expect("a steady excess is over the budget");
        assert!(span <= WATCH_WINDOW && n > allowed, "{n} in {span:?}");
        assert!(
            250 * i <= 2 * WATCH_WINDOW.as_millis() as u64,
            "after {i} checks"
        );
    }

    fn blocked(
        kind: &'static str,
        object: u64,
        chans: &[u64],
        blocked_ns: u64,
    ) -> BlockedGoroutine {
        use crate::report::Text;
        BlockedGoroutine {
            goid: object,
            wait_reason: Text::from("chan receive"),
            wait_reason_code: 0,
            blocked_ns,
            object_kind: kind,
            object: Hex(object),
            parked_in: Text::from("runtime.chanrecv"),
            tid: 0,
            blocked_before_attach: false,
            wait_chans: chans.iter().map(|&c| Hex(c)).collect(),
            created_by: None,
            start_function: None,
            blocked_at: None,
            made_at: None,
            stack: None,
            source: "scan",
        }
    }

    #[test]
    fn channels_are_listed_once_with_their_sites() {
        let site = MadeAt {
            function: Text::from("main.newQueue"),
            location: Text::from("/src/q.go:9"),
            source: "uprobe",
        };
        let made: FxHashMap<u64, Arc<MadeAt>> =
            [(0x20, Arc::new(site.clone()))].into_iter().collect();
        let mut gs = vec![
            blocked("chan", 0x20, &[], 5),
            blocked("chan", 0x10, &[], 7),
            blocked("select", 0x20, &[0x20, 0x30], 3),
            blocked("mutex", 0x40, &[], 1),
        ];
        assert_eq!(
            waits_of(&gs, 100),
            vec![(0x20, 95), (0x10, 93), (0x20, 97), (0x30, 97)]
        );
        let chans = annotate(&mut gs, &made);
        assert_eq!(
            chans,
            vec![
                ChannelSite {
                    chan: Hex(0x10),
                    made_at: None
                },
                ChannelSite {
                    chan: Hex(0x20),
                    made_at: Some(Arc::new(site.clone()))
                },
                ChannelSite {
                    chan: Hex(0x30),
                    made_at: None
                },
            ]
        );
        // Only a send or receive names its channel's site; a select has several.
        assert_eq!(gs[0].made_at.as_deref(), Some(&site));
        assert_eq!(gs[1].made_at, None);
        assert_eq!(gs[2].made_at, None);
        assert_eq!(gs[3].made_at, None);
    }
}
