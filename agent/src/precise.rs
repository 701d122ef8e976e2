//! Precise mode's in-kernel aggregation: short waits filtered in the kernel (a park is sent
//! only once its wait has lasted `--min-wait`), the parks still open kept in the `PARKS` table,
//! and per-site wait histograms (`WAIT_HIST`, keyed by the wait reason and one return address,
//! read where [`site_plans`] says the wait's site lies above the parking runtime function)
//! instead of a stream of every transition. Each reason's histogram (`REASON_HIST`) counts every
//! wait exactly; a site's is exact while a CPU parks fewer than [`SITE_BURST`] goroutines a
//! millisecond, and beyond that an unbiased estimate from one random park in [`SITE_EVERY`]
//! (reading a site costs the parking goroutine a read of its stack).

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{MapData, PerCpuArray};
use probes_ebpf::{
    GoEvent, HistKey, MAP_PARKS, MAP_REASON_HIST, MAP_WAIT_HIST, NO_STACK, PARKS_ENTRIES, ParkSlot,
    PreciseConfig, SITE_REASONS, SiteHist, WAIT_HIST_BUCKETS, WAIT_HIST_MAX_ENTRIES,
    WAIT_HIST_SLOTS, WaitHist, park_set,
};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::goruntime::GoBinary;
use crate::metrics::waits::add;
use crate::probes::{Attached, ProbeError};
use crate::report::BlockingSite;
use crate::summary::Context;
use crate::unwind;

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map {
        map,
        source: Box::new(source),
    }
}

/// What the user chose of precise mode's in-kernel work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// `--min-wait`: parks are streamed once their wait lasted this long (0: every park).
    pub min_wait_ns: u64,
    /// `--exact-sites`: every park's site is read, at any rate (no sampling beyond
    /// [`SITE_BURST`]).
    pub exact_sites: bool,
}

impl Settings {
    pub fn min_wait(min_wait_ns: u64) -> Self {
        Self {
            min_wait_ns,
            exact_sites: false,
        }
    }
}

/// Precise mode's in-kernel settings: parks are streamed once their wait reaches
/// `min_wait_ns`, and each wait reason's site is read where [`site_plans`] found it, for every
/// park up to [`SITE_BURST`] a millisecond per CPU, beyond that for one in [`SITE_EVERY`].
pub fn config(bin: &GoBinary, settings: Settings) -> PreciseConfig {
    let mut config = PreciseConfig {
        min_wait_ns: settings.min_wait_ns,
        site_burst: if settings.exact_sites {
            u32::MAX
        } else {
            SITE_BURST
        },
        site_every: SITE_EVERY,
        ..Default::default()
    };
    for (code, plan) in site_plans(bin).iter().enumerate().take(SITE_REASONS) {
        config.site_words[code] = plan.words;
    }
    config
}

/// Parks per CPU per millisecond whose site is read, each one (64k a second per CPU: a site
/// read costs about 160 ns, so at most about 1% of a CPU).
pub const SITE_BURST: u32 = 64;
/// Beyond [`SITE_BURST`], one random park in this many has its site read, and counts for as
/// many (a power of two). On the ping-pong bench (about 500 parks per CPU a millisecond) this
/// reads a quarter of the sites.
pub const SITE_EVERY: u32 = 16;
const _: () = assert!(SITE_EVERY.is_power_of_two());

/// The runtime's wrappers between the function that parks and a wait's site, per wait reason
/// (a `(durable)` or `(synctest)` variant counts as its plain reason), innermost first; `a|b`
/// names one function by its names across versions. Without an entry the site is the parking
/// function's caller: selectgo, runtime.block and time.Sleep are called from the user's code.
/// - channels: chanrecv parks for chanrecv1/chanrecv2 (`<-c`; `v, ok := <-c` and `range c`),
///   chansend for chansend1 (src/runtime/chan.go); select's non-blocking forms never park.
///   `a+b` names two functions that may be the outermost wrapper: chanrecv1 and chanrecv2 have
///   one frame size in Go 1.22-1.27, and a binary where they differ keeps the first only.
/// - sync: semacquire1 parks, called by the `runtime_Semacquire*` linkname wrappers
///   (src/runtime/sema.go). A Mutex's wrapper is called by lockSlow, whose caller is Lock
///   (inlined into the user's code), in package sync up to Go 1.23 and internal/sync from 1.24.
///   RLock is inlined into the user's code, so its wrapper's caller is the site. RWMutex.Lock,
///   WaitGroup.Wait (up to Go 1.23 with the reason "semacquire") and Cond.Wait (whose
///   notifyListWait parks) are too big to inline: they are skipped too. A waiter that took
///   another path to the same reason (the "semacquire" of internal/poll's fdMutex, say) fails
///   [`site_of`]'s check.
const SITE_WRAPPERS: &[(&str, &[&str])] = &[
    ("chan receive", &["runtime.chanrecv1+runtime.chanrecv2"]),
    (
        "chan receive (nil chan)",
        &["runtime.chanrecv1+runtime.chanrecv2"],
    ),
    ("chan send", &["runtime.chansend1"]),
    ("chan send (nil chan)", &["runtime.chansend1"]),
    (
        "sync.Mutex.Lock",
        &[
            "sync.runtime_SemacquireMutex|internal/sync.runtime_SemacquireMutex",
            "sync.(*Mutex).lockSlow|internal/sync.(*Mutex).lockSlow",
        ],
    ),
    ("sync.RWMutex.RLock", &["sync.runtime_SemacquireRWMutexR"]),
    (
        "sync.RWMutex.Lock",
        &["sync.runtime_SemacquireRWMutex", "sync.(*RWMutex).Lock"],
    ),
    (
        "sync.WaitGroup.Wait",
        &["sync.runtime_SemacquireWaitGroup", "sync.(*WaitGroup).Wait"],
    ),
    (
        "semacquire",
        &["sync.runtime_Semacquire", "sync.(*WaitGroup).Wait"],
    ),
    ("sync.Cond.Wait", &["sync.(*Cond).Wait"]),
];

/// Where one wait reason's site lies above the parking function's frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SitePlan {
    /// 8-byte words from the parking function's frame pointer to the site's frame record: the
    /// wrappers' frames (each its largest SP delta, plus its return address and saved BP).
    pub words: u8,
    /// The outermost wrapper's entry (link-time), which the site's call must call; None when
    /// the site is the parking function's caller.
    pub callee: Option<u64>,
    /// Another function the site's call may call instead of `callee`, with the same frame.
    pub alt_callee: Option<u64>,
}

/// Each wait reason's [`SitePlan`], indexed by the reason's code. A reason whose wrappers are
/// missing from the binary (another version's names) or have no frame size reads its parking
/// function's caller.
pub fn site_plans(bin: &GoBinary) -> Vec<SitePlan> {
    let Some(tab) = bin.pclntab() else {
        return vec![SitePlan::default(); bin.wait_reasons.len()];
    };
    let plan = |name: &str| -> Option<SitePlan> {
        let base = name
            .strip_suffix(" (durable)")
            .or_else(|| name.strip_suffix(" (synctest)"))
            .unwrap_or(name);
        let (_, wrappers) = SITE_WRAPPERS.iter().find(|(r, _)| *r == base)?;
        let (mut bytes, mut callee, mut alt_callee) = (0u64, None, None);
        for names in *wrappers {
            let mut alts = names.split('+');
            // The binary's name index, then pclntab's entry search: no scan of the table.
            let find = |names: &str| {
                let entry = names.split('|').find_map(|n| bin.function(n))?.entry;
                let f = tab.find_func(entry)?;
                Some((f.entry, tab.max_sp_delta(&f)?))
            };
            let (entry, delta) = find(alts.next()?)?;
            // The wrapper's frame: its locals and saved BP (the largest SP delta), then the
            // return address into its caller; the next record up starts there.
            bytes += u64::try_from(delta).ok()? + 8;
            callee = Some(entry);
            alt_callee = alts
                .find_map(find)
                .filter(|&(_, d)| d == delta)
                .map(|(e, _)| e);
        }
        let words = u8::try_from(bytes / 8).ok()?;
        Some(SitePlan {
            words,
            callee,
            alt_callee,
        })
    };
    bin.wait_reasons
        .iter()
        .map(|name| plan(name).unwrap_or_default())
        .collect()
}

/// The site of a histogram key: its return address, if it is one: right after a call, and for a
/// reason with wrappers, a direct call of the outermost wrapper. Anything else (a wait that
/// took a path its reason's plan does not know, e.g. through reflect) was read from the wrong
/// frame and has no site.
fn site_of(bin: &GoBinary, bias: u64, plans: &[SitePlan], key: &HistKey) -> Option<u64> {
    let ret = key.site.checked_sub(bias).filter(|&r| r != 0)?;
    let code = bin.bytes_at(ret.checked_sub(5)?, 5)?;
    let plan = plans.get(key.reason as usize).copied().unwrap_or_default();
    // CALL rel32 (E8 disp32): the callee is the return address plus the displacement.
    let direct = (code[0] == 0xE8).then(|| {
        let disp = i32::from_le_bytes([code[1], code[2], code[3], code[4]]);
        ret.wrapping_add_signed(i64::from(disp))
    });
    // Indirect calls: CALL reg (FF D0+r, with a REX prefix for r8-r15), CALL [reg+disp8].
    let indirect = (code[3] == 0xFF && (0xD0..=0xD7).contains(&code[4]))
        || (code[2] == 0xFF && (0x50..=0x57).contains(&code[3]));
    match plan.callee {
        Some(want) => (direct == Some(want) || (direct.is_some() && direct == plan.alt_callee))
            .then_some(key.site),
        None => (direct.is_some() || indirect).then_some(key.site),
    }
}

/// The kernel's table of open parks (`probes_ebpf::MAP_PARKS`), mapped read-only into the
/// agent: looking up a goroutine's park is a memory read, not a syscall, so a scan of 100k
/// waiting goroutines can ask for each one's park time.
pub struct ParkTable {
    ptr: *const ParkSlot,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is read-only and owned by the table; reads are plain loads.
unsafe impl Send for ParkTable {}

impl ParkTable {
    /// Maps the attached programs' park table.
    pub fn map(a: &Attached) -> Result<ParkTable, ProbeError> {
        let map = a
            .ebpf()
            .map(MAP_PARKS)
            .ok_or(ProbeError::Missing(MAP_PARKS))?;
        let data: &MapData = match map {
            aya::maps::Map::Array(d) => d,
            _ => return Err(ProbeError::Missing(MAP_PARKS)),
        };
        let len = PARKS_ENTRIES as usize;
        let page = 4096;
        let bytes = (len * size_of::<ParkSlot>()).div_ceil(page) * page;
        // SAFETY: maps an mmapable BPF array (BPF_F_MMAPABLE) of `len` slots read-only and
        // shared; the kernel keeps the map alive while the mapping exists, and Drop unmaps it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ProbeError::Map {
                map: MAP_PARKS,
                source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "mmap",
                    io_error: std::io::Error::last_os_error(),
                })),
            });
        }
        Ok(ParkTable {
            ptr: ptr.cast(),
            len,
            bytes,
        })
    }

    /// The open park of the g at `g_addr`, if the table holds one. The probes write slots while
    /// we read: a slot that changes under us fails the g check or yields one stale time, which
    /// the caller checks against the scan.
    pub fn find(&self, g_addr: u64) -> Option<ParkSlot> {
        let set = park_set(g_addr) as usize * 2;
        (set..set + 2).filter(|&i| i < self.len).find_map(|i| {
            // SAFETY: i < len, inside the mapping; a volatile read because the kernel writes it.
            let s = unsafe { std::ptr::read_volatile(self.ptr.add(i)) };
            (s.g == g_addr && g_addr != 0).then_some(s)
        })
    }
}

impl Drop for ParkTable {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.bytes) };
    }
}

/// The per-CPU array map `name` of the session's object.
fn per_cpu<'a, T: aya::Pod>(
    a: &'a Attached,
    name: &'static str,
) -> Result<PerCpuArray<&'a MapData, T>, ProbeError> {
    let map = a.ebpf().map(name).ok_or(ProbeError::Missing(name))?;
    PerCpuArray::try_from(map).map_err(map_err(name))
}

/// Every site's histogram, the CPUs' copies summed (a site may sit in different slots on
/// different CPUs). The overflow slot comes back with a zero key: "other sites".
pub fn histograms(a: &Attached) -> Result<Vec<(HistKey, SiteWaits)>, ProbeError> {
    let hists: PerCpuArray<&MapData, SiteHist> = per_cpu(a, MAP_WAIT_HIST)?;
    let mut merged: FxHashMap<HistKey, SiteWaits> = FxHashMap::default();
    for i in 0..WAIT_HIST_MAX_ENTRIES {
        let per_cpu = hists.get(&i, 0).map_err(map_err(MAP_WAIT_HIST))?;
        for h in per_cpu.iter().filter(|h| h.hist.count > 0) {
            let key = if i == WAIT_HIST_SLOTS {
                HistKey::default()
            } else {
                h.key
            };
            let m = merged.entry(key).or_default();
            add(&mut m.hist, &h.hist);
            m.sampled += h.sampled;
        }
    }
    Ok(merged.into_iter().collect())
}

/// A site's finished waits, the CPUs' copies summed: `sampled` of them were counted with a
/// weight (see the module's comment), so the histogram is an estimate when it is not 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiteWaits {
    pub hist: WaitHist,
    pub sampled: u64,
}

/// Every finished wait by wait reason (exact, whatever the site sampling), the CPUs' copies
/// summed: (reason code, histogram).
pub fn reason_histograms(a: &Attached) -> Result<Vec<(u32, WaitHist)>, ProbeError> {
    let hists: PerCpuArray<&MapData, WaitHist> = per_cpu(a, MAP_REASON_HIST)?;
    let mut out = Vec::new();
    for code in 0..SITE_REASONS as u32 {
        let per_cpu = hists.get(&code, 0).map_err(map_err(MAP_REASON_HIST))?;
        let mut sum = WaitHist::default();
        for h in per_cpu.iter() {
            add(&mut sum, h);
        }
        if sum.count > 0 {
            out.push((code, sum));
        }
    }
    Ok(out)
}

/// One site's finished waits, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct WaitHistogram {
    pub wait_reason: String,
    /// The first frame outside the runtime (None when the stack was not captured).
    pub blocked_at: Option<BlockingSite>,
    pub count: u64,
    pub total_ns: u64,
    /// Waits counted with a sampling weight: when not 0, `count`, `total_ns` and the buckets
    /// are estimates (parks beyond [`SITE_BURST`] a millisecond on a CPU, one random park in
    /// [`SITE_EVERY`] read: see the module's comment); 0 when every wait was counted.
    pub sampled: u64,
    /// Upper bounds (2^(i+1) ns) of the buckets holding the median and the 99th percentile.
    pub p50_le_ns: u64,
    pub p99_le_ns: u64,
    /// Non-empty buckets: (upper bound in ns, waits).
    pub buckets: Vec<(u64, u64)>,
}

/// Every finished wait of one wait reason, exact, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct WaitTotal {
    pub wait_reason: String,
    pub count: u64,
    pub total_ns: u64,
    pub p50_le_ns: u64,
    pub p99_le_ns: u64,
}

/// The exact per-reason totals ([`reason_histograms`]), busiest first.
pub fn totals(ctx: &Context<'_>, hists: &[(u32, WaitHist)]) -> Vec<WaitTotal> {
    let mut out: Vec<WaitTotal> = hists
        .iter()
        .map(|(code, h)| WaitTotal {
            wait_reason: ctx.bin.wait_reason(*code).into_owned(),
            count: h.count,
            total_ns: h.total_ns,
            p50_le_ns: quantile_le(h, 0.5),
            p99_le_ns: quantile_le(h, 0.99),
        })
        .collect();
    busiest_first(&mut out, |t| (t.count, &t.wait_reason));
    out
}

/// Most waits first, then by wait reason.
fn busiest_first<T>(v: &mut [T], key: impl Fn(&T) -> (u64, &str)) {
    v.sort_by(|a, b| {
        let ((ca, ra), (cb, rb)) = (key(a), key(b));
        cb.cmp(&ca).then(ra.cmp(rb))
    });
}

/// The upper bound of the bucket holding quantile `q`.
fn quantile_le(h: &WaitHist, q: f64) -> u64 {
    if h.count == 0 {
        return 0;
    }
    let want = (h.count as f64 * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in h.buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return 1u64 << (i + 1).min(63);
        }
    }
    1u64 << WAIT_HIST_BUCKETS.min(63)
}

/// The histograms of every site, symbolized, sites merged when their stacks symbolize to the
/// same blocking site; busiest first. Waits at sites inside the runtime's own goroutines count
/// like any other.
pub fn summarize(ctx: &Context<'_>, hists: &[(HistKey, SiteWaits)]) -> Vec<WaitHistogram> {
    let mut merged: std::collections::BTreeMap<(String, Option<(String, String)>), SiteWaits> =
        Default::default();
    let plans = site_plans(ctx.bin);
    for (key, h) in hists {
        // The first frame outside the runtime and sync, else the outermost (a sync wait's site
        // may stop in package sync: see SITE_WRAPPERS).
        let pcs: Vec<u64> = site_of(ctx.bin, ctx.bias, &plans, key)
            .into_iter()
            .collect();
        let frames =
            unwind::symbolize_stack(ctx.bin, ctx.bias, &pcs, unwind::Innermost::ReturnAddress);
        let site = unwind::blocking_site(&frames)
            .or_else(|| frames.iter().rev().find(|f| !f.file.is_empty()))
            .map(|f| (f.function.clone(), format!("{}:{}", f.file, f.line)));
        // The overflow slot's zero key: waits at sites that found no slot of their own.
        let reason = if *key == HistKey::default() {
            "(other sites)".to_string()
        } else {
            ctx.bin.wait_reason(key.reason).into_owned()
        };
        let m = merged.entry((reason, site)).or_default();
        add(&mut m.hist, &h.hist);
        m.sampled += h.sampled;
    }
    let mut out: Vec<WaitHistogram> = merged
        .into_iter()
        .map(
            |((wait_reason, site), SiteWaits { hist: h, sampled })| WaitHistogram {
                wait_reason,
                blocked_at: site.map(|(function, location)| BlockingSite {
                    function: function.into(),
                    location: location.into(),
                }),
                count: h.count,
                total_ns: h.total_ns,
                sampled,
                p50_le_ns: quantile_le(&h, 0.5),
                p99_le_ns: quantile_le(&h, 0.99),
                buckets: h
                    .buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, &n)| (1u64 << (i + 1).min(63), n))
                    .collect(),
            },
        )
        .collect();
    busiest_first(&mut out, |t| (t.count, &t.wait_reason));
    out
}

/// Long waits in progress, found by precise mode's catch-up scans: each goroutine a scan finds
/// waiting that no probe event has shown parked (its wait is still shorter than the in-kernel
/// filter let through, or it parked before the attach).
#[derive(Default)]
pub struct OpenParks {
    /// Goroutines found waiting with no park in the table: (the wait's identity, first seen).
    unmatched: FxHashMap<u64, ((u32, u64, u8), u64)>,
}

impl OpenParks {
    /// Applies, oldest first, what `scan` shows of the waits in progress:
    /// - a goroutine whose park the table holds, with the wait reason the scan read, gets that
    ///   park, with its exact time (and the scan's details: creation, channels, semaphore);
    /// - one the table lacks (parked before the attach, or its slot taken by another g of its
    ///   set) is taken from the scan like scan mode does, once two catch-up scans in a row saw
    ///   the same wait (a torn read of a g cannot make a report), from when it was first seen.
    ///
    /// Returns the goroutines taken, whose stacks the caller walks while the target runs.
    pub fn take(
        &mut self,
        table: &ParkTable,
        model: &mut crate::model::Model,
        scan: &crate::scan::Scan,
        ctx: &Context<'_>,
        mut on_park: impl FnMut(&GoEvent) -> std::io::Result<()>,
    ) -> std::io::Result<Vec<u64>> {
        let now_ns = crate::session::monotonic_ns();
        let reason_name = |r: u32| ctx.bin.wait_reason(r).into_owned();
        let mut parks = Vec::new();
        let mut taken = Vec::new();
        let mut unmatched = FxHashMap::default();
        for sg in &scan.goroutines {
            if sg.status != crate::scan::status::WAITING || model.parked_by_probe(sg.goid) {
                continue;
            }
            match table.find(sg.addr) {
                Some(slot) if u32::from(slot.reason) == sg.wait_reason && slot.ts_ns <= now_ns => {
                    parks.push((park_event(&slot, sg), sg));
                }
                _ => {
                    let obj = sg.wait_chans.first().copied().or(sg.sema_addr).unwrap_or(0);
                    let key = (sg.wait_reason, obj, sg.tracking_seq);
                    let first = match self.unmatched.get(&sg.goid) {
                        Some(&(k, first)) if k == key => {
                            if model.seed_one(sg, first, &reason_name(sg.wait_reason)) {
                                taken.push(sg.goid);
                            }
                            first
                        }
                        _ => now_ns,
                    };
                    unmatched.insert(sg.goid, (key, first));
                }
            }
        }
        self.unmatched = unmatched;
        parks.sort_by_key(|(ev, _)| ev.ts_ns);
        for (ev, sg) in parks {
            model.apply(&ev);
            if let Some(g) = model.get_mut(ev.goid) {
                g.g_addr = sg.addr;
                // As a scan-found wait's: the primitive, where the reason does not name it (a
                // WaitGroup before Go 1.24, a Cond), comes from the stack (syncwait::refine,
                // run when the caller walks it).
                g.sema = crate::model::scanned_sema(sg, &reason_name(sg.wait_reason));
            }
            taken.push(ev.goid);
            on_park(&ev)?;
        }
        Ok(taken)
    }
}

/// A park from the kernel's table, with what the scan read of the goroutine's creation and
/// channels.
fn park_event(slot: &ParkSlot, sg: &crate::scan::ScannedG) -> GoEvent {
    let mut ev = GoEvent {
        ts_ns: slot.ts_ns,
        goid: sg.goid,
        obj: slot.obj,
        parent_goid: sg.parent_goid,
        gopc: sg.gopc,
        startpc: sg.startpc,
        tid: slot.tid,
        kind: probes_ebpf::EventKind::Park as u32,
        reason: u32::from(slot.reason),
        n_chans: sg.wait_chans.len() as u32,
        stack_id: NO_STACK,
        ..GoEvent::default()
    };
    for (d, c) in ev.chans.iter_mut().zip(sg.wait_chans.iter()) {
        *d = *c;
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stay_in_their_tables_and_spread() {
        // g structs: heap objects a few hundred bytes apart, as the runtime allocates them.
        let mut sets = std::collections::HashSet::new();
        for i in 0..10_000u64 {
            let g = 0x00c0_0000_0000 + i * 448;
            let set = park_set(g);
            assert!(2 * set + 1 < PARKS_ENTRIES);
            sets.insert(set);
        }
        // 10k gs over 65536 sets: almost no two share one.
        assert!(sets.len() > 9_000, "{} sets", sets.len());
        let mut slots = std::collections::HashSet::new();
        for pc in 0..2_000u64 {
            let key = HistKey {
                site: 0x40_1000 + pc * 13,
                reason: (pc % 40) as u32,
                _pad0: 0,
            };
            let i = probes_ebpf::hist_slot(&key);
            assert!(i < WAIT_HIST_SLOTS && (i ^ (probes_ebpf::HIST_WAYS - 1)) < WAIT_HIST_SLOTS);
            slots.insert(i);
        }
        assert!(slots.len() > 400, "{} slots", slots.len());
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = WaitHist::default();
        // 90 waits of ~1 µs (bucket 9: [512, 1024) ns), 10 of ~1 s (bucket 29).
        h.buckets[9] = 90;
        h.buckets[29] = 10;
        h.count = 100;
        assert_eq!(quantile_le(&h, 0.5), 1024);
        assert_eq!(quantile_le(&h, 0.9), 1024);
        assert_eq!(quantile_le(&h, 0.99), 1 << 30);
        assert_eq!(quantile_le(&WaitHist::default(), 0.5), 0);
    }
}
