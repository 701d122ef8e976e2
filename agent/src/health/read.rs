//! One reading of a live target's runtime health: the globals, every P, the mcaches' cached
//! spans and the goroutine table, read with a few batched `process_vm_readv` calls; the
//! `MemStats` computation over them is in [`super::memstats`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

use super::layout::HealthLayout;
pub use super::memstats::MemStats;
use super::memstats::{
    Controller, HeapStats, Mstats, NUM_SPAN_CLASSES, Unflushed, compute_memstats, u16_at, u32_at,
    u64_at,
};
use super::{Globals, HealthError, Sources};
use crate::goruntime::GoBinary;
use crate::memory::ProcessMemory;
use crate::scan::status;

/// `_MaxGomaxprocs` (src/runtime/runtime2.go).
const MAX_GOMAXPROCS: u64 = 1 << 10;
const MAX_GOROUTINES: u64 = 10_000_000;

/// One P (`GODEBUG=schedtrace=X,scheddetail=1` shows the same).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PStat {
    pub id: i32,
    /// idle, running, syscall, gcstop, dead.
    pub status: String,
    /// Goroutines in the local run queue (`runqtail - runqhead`, as schedtrace prints).
    pub runqsize: u32,
    /// A goroutine waits in `p.runnext` too.
    pub runnext: bool,
    /// Timers pending on this P (in its heap and not stopped).
    pub timers: u32,
}

/// The scheduler line of `GODEBUG=schedtrace` (src/runtime/proc.go, schedtrace).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sched {
    pub gomaxprocs: u32,
    pub idleprocs: u32,
    /// OS threads (Ms) the runtime has: `mcount()` = `sched.mnext - sched.nmfreed`.
    pub threads: u32,
    pub spinningthreads: u32,
    pub idlethreads: u32,
    /// The global run queue's length.
    pub runqueue: u32,
    pub ps: Vec<PStat>,
}

/// Goroutines by state, from `runtime.allgs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Goroutines {
    /// What `runtime.NumGoroutine()` counts: live goroutines that are not the runtime's own.
    pub total: u64,
    /// The runtime's own goroutines (runtime/traceback.go, isSystemGoroutine).
    pub system: u64,
    /// User goroutines by status (waiting, runnable, running, syscall, ...).
    pub by_state: BTreeMap<String, u64>,
    /// g records that could not be read (torn by a concurrent change).
    pub unreadable: u64,
    /// User goroutines by creation site (`file:line` of the `go` statement), the
    /// [`TOP_SITES`] largest, the rest summed under `other`; the main goroutine under `main`.
    pub by_site: BTreeMap<String, u64>,
    /// Set by `stat --interval`: the creation sites whose goroutines have risen steadily over
    /// the recent readings (a goroutine leak), each with the heap's growth over the same
    /// window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub growing: Vec<SiteGrowth>,
}

/// A creation site whose goroutines keep growing, and what the heap did meanwhile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteGrowth {
    pub site: String,
    pub growth: super::trend::Growth,
    /// The heap at the start and end of the same window.
    pub heap: Option<super::window::HeapGrowth>,
}

/// Creation sites listed by name in [`Goroutines::by_site`].
pub const TOP_SITES: usize = 20;

/// Pending timers (src/runtime/time.go): in the per-P heaps and not stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timers {
    pub pending: u64,
    /// Set by `stat --interval` when the pending count has risen steadily over the recent
    /// readings: timers armed and never stopped (see `trend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<super::trend::Growth>,
}

/// One reading.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stat {
    pub pid: u32,
    pub go_version: String,
    /// Wall-clock time of the reading (Unix ms).
    pub unix_ms: u64,
    pub memstats: MemStats,
    /// The same figures under their `runtime/metrics` names, where one matches exactly.
    pub metrics: BTreeMap<String, f64>,
    pub sched: Sched,
    pub goroutines: Goroutines,
    pub timers: Timers,
    /// Where the struct offsets and global addresses came from.
    pub sources: SourcesOut,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourcesOut {
    pub layout: String,
    pub globals: String,
}

/// Reads health figures from one live process.
pub struct HealthReader<'a> {
    bin: &'a GoBinary,
    pid: u32,
    mem: ProcessMemory,
    l: HealthLayout,
    /// Runtime addresses (link-time + bias).
    g: Globals,
    allgs: Option<u64>,
    sources: Sources,
    /// startpc → is a system goroutine.
    system: RefCell<FxHashMap<u64, bool>>,
    /// gopc → `file:line` of the `go` statement.
    sites: RefCell<FxHashMap<u64, std::rc::Rc<str>>>,
    /// The g pointers and g records of the last reading (reused).
    scratch: RefCell<(Vec<u8>, Vec<u8>)>,
    bias: u64,
}

fn p_status(s: u32) -> &'static str {
    // _Pidle.._Pdead (src/runtime/runtime2.go).
    match s {
        0 => "idle",
        1 => "running",
        2 => "syscall",
        3 => "gcstop",
        4 => "dead",
        _ => "unknown",
    }
}

/// A window `[lo, hi+8)` of a struct covering the given field offsets.
fn window(offs: &[u32]) -> (u32, usize) {
    let lo = offs.iter().copied().min().unwrap_or(0);
    let hi = offs.iter().copied().max().unwrap_or(0);
    (lo, (hi - lo) as usize + 8)
}

impl<'a> HealthReader<'a> {
    /// `bias` is the target's load bias (0 unless PIE).
    pub fn new(bin: &'a GoBinary, pid: u32, bias: u64) -> Result<Self, HealthError> {
        Ok(Self::with_resolved(bin, pid, bias, super::resolve(bin)?))
    }

    /// A reader from what [`super::resolve`] found in `bin` (resolving costs milliseconds: a
    /// caller that reads again and again, as the metrics endpoint does, resolves once).
    pub fn with_resolved(
        bin: &'a GoBinary,
        pid: u32,
        bias: u64,
        (l, g, sources): (HealthLayout, Globals, Sources),
    ) -> Self {
        let b = |a: u64| a.wrapping_add(bias);
        let g = Globals {
            memstats: b(g.memstats),
            gc_controller: b(g.gc_controller),
            mheap: b(g.mheap),
            sched: b(g.sched),
            allp: b(g.allp),
            gomaxprocs: b(g.gomaxprocs),
            emptymspan: b(g.emptymspan),
        };
        Self {
            bin,
            pid,
            mem: ProcessMemory::new(pid),
            l,
            g,
            allgs: bin.allgs_addr().ok().map(b),
            sources,
            system: RefCell::default(),
            sites: RefCell::default(),
            scratch: RefCell::default(),
            bias,
        }
    }

    pub fn sources(&self) -> Sources {
        self.sources
    }

    /// Reads every figure once. Never stops or signals the target.
    pub fn read(&self) -> Result<Stat, HealthError> {
        self.read_with(true)
    }

    /// The heap, GC and scheduler figures without the goroutine table: a constant cost,
    /// whatever the goroutine count (for sampling the heap alongside other work, such as a
    /// leak finding's window; `goroutines` is left empty).
    pub fn read_heap(&self) -> Result<Stat, HealthError> {
        self.read_with(false)
    }

    fn read_with(&self, with_goroutines: bool) -> Result<Stat, HealthError> {
        let l = &self.l;
        // Round 1: the globals.
        let mst_len = (l.mstats.heap_stats + 3 * l.heap_stats_delta.size).max(
            [
                l.mstats.stacks_sys,
                l.mstats.mspan_sys,
                l.mstats.mcache_sys,
                l.mstats.buckhash_sys,
                l.mstats.gc_misc_sys,
                l.mstats.other_sys,
                l.mstats.last_gc_unix,
                l.mstats.pause_total_ns,
                l.mstats.numgc,
                l.mstats.gc_cpu_fraction,
            ]
            .into_iter()
            .max()
            .unwrap_or(0)
                + 8,
        ) as usize;
        let c = &l.gc_controller;
        let (gc_lo, gc_len) = window(&[
            c.gc_percent,
            c.memory_limit,
            c.gc_percent_heap_goal,
            c.sweep_dist_min_trigger,
            c.triggered,
            c.heap_live,
            c.heap_marked,
            c.heap_in_use,
            c.heap_released,
            c.heap_free,
            c.total_alloc,
            c.total_free,
            c.mapped_ready,
        ]);
        let s = &l.sched;
        let (sc_lo, sc_len) = window(&[
            s.runqsize,
            s.nmidle,
            s.nmidlelocked,
            s.mnext,
            s.nmsys,
            s.nmfreed,
            s.ngsys,
            s.npidle,
            s.nmspinning,
        ]);
        let mut mst = vec![0u8; mst_len];
        let mut gcb = vec![0u8; gc_len];
        let mut scb = vec![0u8; sc_len];
        let mut spanalloc = [0u8; 8];
        let mut cachealloc = [0u8; 8];
        let mut allp = [0u8; 16];
        let mut gomaxprocs = [0u8; 4];
        let mut allgs = [0u8; 16];
        {
            let mut ranges: Vec<(u64, &mut [u8])> = vec![
                (self.g.memstats, &mut mst),
                (self.g.gc_controller + u64::from(gc_lo), &mut gcb),
                (self.g.sched + u64::from(sc_lo), &mut scb),
                (
                    self.g.mheap + u64::from(l.mheap.spanalloc_inuse),
                    &mut spanalloc,
                ),
                (
                    self.g.mheap + u64::from(l.mheap.cachealloc_inuse),
                    &mut cachealloc,
                ),
                (self.g.allp, &mut allp),
                (self.g.gomaxprocs, &mut gomaxprocs),
            ];
            if let Some(a) = self.allgs {
                ranges.push((a, &mut allgs));
            }
            let ok = self.mem.read_many(&mut ranges)?;
            if !ok.iter().take(7).all(|&b| b) {
                return Err(HealthError::Implausible(
                    "the runtime globals are not readable at the addresses found".into(),
                ));
            }
        }
        let hs = HeapStats::merge_shards(&mst, l);
        let m = &l.mstats;
        let ms = Mstats {
            stacks_sys: u64_at(&mst, m.stacks_sys),
            mspan_sys: u64_at(&mst, m.mspan_sys),
            mcache_sys: u64_at(&mst, m.mcache_sys),
            buckhash_sys: u64_at(&mst, m.buckhash_sys),
            gc_misc_sys: u64_at(&mst, m.gc_misc_sys),
            other_sys: u64_at(&mst, m.other_sys),
            last_gc_unix: u64_at(&mst, m.last_gc_unix),
            pause_total_ns: u64_at(&mst, m.pause_total_ns),
            numgc: u32_at(&mst, m.numgc),
            numforcedgc: u32_at(&mst, m.numforcedgc),
            gc_cpu_fraction: f64::from_bits(u64_at(&mst, m.gc_cpu_fraction)),
        };
        // The controller bytes start at gc_lo: shift offsets.
        let mut gcfull = vec![0u8; gc_lo as usize];
        gcfull.extend_from_slice(&gcb);
        let ctl = Controller::read(&gcfull, l);
        let sv = |off: u32| -> &[u8] { scb.get((off - sc_lo) as usize..).unwrap_or(&[]) };
        let allp_ptr = u64_at(&allp, 0);
        let allp_len = u64_at(&allp, 8);
        let gmp = u64::from(u32::from_le_bytes(gomaxprocs));
        if allp_len == 0 || allp_len > MAX_GOMAXPROCS || gmp == 0 || gmp > MAX_GOMAXPROCS {
            return Err(HealthError::Implausible(format!(
                "len(allp) = {allp_len}, gomaxprocs = {gmp}"
            )));
        }

        // Round 2: the Ps (and their mcaches' span pointers), and the g pointers.
        let mut pptrs = vec![0u8; allp_len as usize * 8];
        self.mem.read(allp_ptr, &mut pptrs)?;
        let pl = &l.p;
        let (p_lo, p_len) = window(&[
            pl.id,
            pl.status,
            pl.mcache,
            pl.runqhead,
            pl.runqtail,
            pl.runnext,
            pl.timers_len,
            pl.timers_dead,
        ]);
        let pptrs: Vec<u64> = pptrs.chunks_exact(8).map(|c| u64_at(c, 0)).collect();
        let mut pbufs = vec![0u8; pptrs.len() * p_len];
        {
            let mut ranges: Vec<(u64, &mut [u8])> = pptrs
                .iter()
                .zip(pbufs.chunks_exact_mut(p_len))
                .map(|(&p, b)| (p + u64::from(p_lo), b))
                .collect();
            self.mem.read_many(&mut ranges)?;
        }
        let pf = |i: usize, off: u32| &pbufs[i * p_len + (off - p_lo) as usize..(i + 1) * p_len];
        let mut ps = Vec::with_capacity(pptrs.len());
        let mut mcaches = Vec::new();
        let mut timers = 0u64;
        for i in 0..pptrs.len() {
            let head = u32_at(pf(i, pl.runqhead), 0);
            let tail = u32_at(pf(i, pl.runqtail), 0);
            let tlen = u32_at(pf(i, pl.timers_len), 0);
            let tdead = u32_at(pf(i, pl.timers_dead), 0);
            let pending = tlen.saturating_sub(tdead);
            timers += u64::from(pending);
            let mc = u64_at(pf(i, pl.mcache), 0);
            if mc != 0 {
                mcaches.push(mc);
            }
            ps.push(PStat {
                id: u32_at(pf(i, pl.id), 0) as i32,
                status: p_status(u32_at(pf(i, pl.status), 0)).to_string(),
                runqsize: tail.wrapping_sub(head).min(256),
                runnext: u64_at(pf(i, pl.runnext), 0) != 0,
                timers: pending,
            });
        }
        // Addresses decoded from code (stripped binaries) are checked against what the runtime
        // guarantees: each P's id is its index in allp (proc.go, procresize), and there are
        // gomaxprocs of them outside a procresize. A binary built by a release whose code
        // differs from the one measured would fail here rather than report garbage.
        if self.sources.globals == "code"
            && (allp_len != gmp || ps.iter().enumerate().any(|(i, p)| p.id != i as i32))
        {
            return Err(HealthError::Implausible(format!(
                "the globals decoded from the code of this stripped {} binary do not hold                  the scheduler's state (len(allp) = {allp_len}, gomaxprocs = {gmp})",
                self.bin.build.go_version
            )));
        }
        let un = self.unflushed(&mcaches)?;
        let memstats = compute_memstats(
            &hs,
            un,
            &ms,
            &ctl,
            u64_at(&spanalloc, 0),
            u64_at(&cachealloc, 0),
        );
        let mnext = u64_at(sv(s.mnext), 0) as i64;
        let nmfreed = u64_at(sv(s.nmfreed), 0) as i64;
        let sched = Sched {
            gomaxprocs: gmp as u32,
            idleprocs: u32_at(sv(s.npidle), 0),
            threads: (mnext - nmfreed).max(0) as u32,
            spinningthreads: u32_at(sv(s.nmspinning), 0),
            idlethreads: u32_at(sv(s.nmidle), 0),
            runqueue: u32_at(sv(s.runqsize), 0),
            ps,
        };
        let goroutines = match self.allgs {
            Some(_) if with_goroutines => self.goroutines(u64_at(&allgs, 0), u64_at(&allgs, 8))?,
            _ => Goroutines::default(),
        };
        let mut metrics = BTreeMap::new();
        let mut put = |k: &str, v: f64| {
            metrics.insert(k.to_string(), v);
        };
        put("/gc/heap/goal:bytes", memstats.next_gc as f64);
        put("/gc/cycles/total:gc-cycles", f64::from(memstats.num_gc));
        put(
            "/gc/cycles/forced:gc-cycles",
            f64::from(memstats.num_forced_gc),
        );
        put("/gc/gogc:percent", f64::from(ctl.gc_percent));
        put("/gc/gomemlimit:bytes", ctl.memory_limit as f64);
        put("/sched/gomaxprocs:threads", f64::from(sched.gomaxprocs));
        // gcount: without the runtime's own goroutines up to Go 1.25, with them from 1.26
        // (src/runtime/metrics.go, "/sched/goroutines:goroutines" → gcount(true)).
        let all = if self.bin.minor >= 26 {
            goroutines.total + goroutines.system
        } else {
            goroutines.total
        };
        put("/sched/goroutines:goroutines", all as f64);
        put(
            "/memory/classes/heap/released:bytes",
            memstats.heap_released as f64,
        );
        put(
            "/memory/classes/heap/stacks:bytes",
            memstats.stack_inuse as f64,
        );
        put("/memory/classes/os-stacks:bytes", ms.stacks_sys as f64);
        put(
            "/memory/classes/metadata/mspan/free:bytes",
            memstats.mspan_sys.saturating_sub(memstats.mspan_inuse) as f64,
        );
        put(
            "/memory/classes/metadata/mspan/inuse:bytes",
            memstats.mspan_inuse as f64,
        );
        put(
            "/memory/classes/metadata/mcache/inuse:bytes",
            memstats.mcache_inuse as f64,
        );
        put(
            "/memory/classes/profiling/buckets:bytes",
            memstats.buck_hash_sys as f64,
        );
        put("/memory/classes/other:bytes", memstats.other_sys as f64);
        Ok(Stat {
            pid: self.pid,
            go_version: self.bin.build.go_version.clone(),
            unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            memstats,
            metrics,
            sched,
            goroutines,
            timers: Timers {
                pending: timers,
                growth: None,
            },
            sources: SourcesOut {
                layout: self.sources.layout.to_string(),
                globals: self.sources.globals.to_string(),
            },
        })
    }

    /// The allocations `mcache.releaseAll` (src/runtime/mcache.go) would flush: for each cached
    /// span, `allocCount - allocCountBeforeCache` objects of `elemsize` bytes; and `tinyAllocs`.
    fn unflushed(&self, mcaches: &[u64]) -> Result<Unflushed, HealthError> {
        let mc = &self.l.mcache;
        let mut out = Unflushed::default();
        let arr = NUM_SPAN_CLASSES * 8;
        let mut bufs = vec![0u8; mcaches.len() * (arr + 8)];
        {
            let mut ranges: Vec<(u64, &mut [u8])> = Vec::new();
            for (&m, chunk) in mcaches.iter().zip(bufs.chunks_exact_mut(arr + 8)) {
                let (a, t) = chunk.split_at_mut(arr);
                ranges.push((m + u64::from(mc.alloc), a));
                ranges.push((m + u64::from(mc.tiny_allocs), t));
            }
            self.mem.read_many(&mut ranges)?;
        }
        let mut spans: Vec<u64> = Vec::new();
        for chunk in bufs.chunks_exact(arr + 8) {
            out.tiny = out.tiny.wrapping_add(u64_at(chunk, arr as u32));
            spans.extend(
                chunk[..arr]
                    .chunks_exact(8)
                    .map(|c| u64_at(c, 0))
                    .filter(|&s| s != 0 && s != self.g.emptymspan),
            );
        }
        let sl = &self.l.mspan;
        let (lo, len) = window(&[sl.alloc_count, sl.alloc_count_before_cache, sl.elemsize]);
        let mut sbufs = vec![0u8; spans.len() * len];
        let ok = {
            let mut ranges: Vec<(u64, &mut [u8])> = spans
                .iter()
                .zip(sbufs.chunks_exact_mut(len))
                .map(|(&s, b)| (s + u64::from(lo), b))
                .collect();
            self.mem.read_many(&mut ranges)?
        };
        for (b, ok) in sbufs.chunks_exact(len).zip(ok) {
            if !ok {
                continue;
            }
            let count = u16_at(b, sl.alloc_count - lo);
            let before = u16_at(b, sl.alloc_count_before_cache - lo);
            let elem = u64_at(b, sl.elemsize - lo);
            let slots = u64::from(count.saturating_sub(before));
            out.objects += slots;
            out.bytes += slots * elem;
        }
        Ok(out)
    }

    /// Goroutines by state: every g in `allgs` that is not dead, split into the runtime's own
    /// and the rest (`runtime.NumGoroutine` counts the rest).
    fn goroutines(&self, ptr: u64, len: u64) -> Result<Goroutines, HealthError> {
        if len > MAX_GOROUTINES || (len > 0 && ptr == 0) {
            return Err(HealthError::Implausible(format!("len(allgs) = {len}")));
        }
        // Buffers kept between readings: tens of MB for a big target would otherwise be
        // page-faulted in and zeroed on every reading.
        let mut scratch = self.scratch.borrow_mut();
        let (gp, bufs) = &mut *scratch;
        gp.resize(len as usize * 8, 0);
        self.mem.read(ptr, gp)?;
        let gl = &self.bin.layout.g;
        let (lo, wlen) = window(&[gl.atomicstatus, gl.startpc, gl.gopc, gl.parent_goid]);
        let gptrs: Vec<u64> = gp.chunks_exact(8).map(|c| u64_at(c, 0)).collect();
        bufs.resize(gptrs.len() * wlen, 0);
        let ok = {
            let mut ranges: Vec<(u64, &mut [u8])> = gptrs
                .iter()
                .zip(bufs.chunks_exact_mut(wlen))
                .map(|(&g, b)| (g + u64::from(lo), b))
                .collect();
            self.mem.read_many(&mut ranges)?
        };
        let mut out = Goroutines::default();
        let mut system = self.system.borrow_mut();
        let mut per_pc: FxHashMap<u64, u64> = FxHashMap::default();
        // Indexed by status (src/runtime/runtime2.go: _Gidle.._Gdeadextra, below 16).
        let mut by_state = [0u64; 16];
        for (b, ok) in bufs.chunks_exact(wlen).zip(ok) {
            if !ok {
                out.unreadable += 1;
                continue;
            }
            let st = u32_at(b, gl.atomicstatus - lo) & !status::SCAN;
            if st == status::DEAD || st == status::DEADEXTRA || st == status::IDLE {
                continue;
            }
            let startpc = u64_at(b, gl.startpc - lo);
            let is_sys = *system.entry(startpc).or_insert_with(|| {
                self.bin
                    .func_name(startpc.wrapping_sub(self.bias))
                    .is_some_and(crate::summary::is_runtime_start_function)
            });
            if is_sys {
                out.system += 1;
            } else {
                out.total += 1;
                by_state[(st as usize).min(15)] += 1;
                // The main goroutine (parent 0) has no `go` statement (as in Go's tracebacks).
                let gopc = if u64_at(b, gl.parent_goid - lo) == 0 {
                    0
                } else {
                    u64_at(b, gl.gopc - lo)
                };
                *per_pc.entry(gopc).or_default() += 1;
            }
        }
        drop(system);
        for (st, &n) in by_state.iter().enumerate().filter(|(_, n)| **n > 0) {
            *out.by_state
                .entry(status::name(st as u32).to_string())
                .or_default() += n;
        }
        out.by_site = self.by_site(per_pc);
        Ok(out)
    }

    /// Counts per `go` statement PC → the top [`TOP_SITES`] `file:line`s and `other`.
    fn by_site(&self, per_pc: FxHashMap<u64, u64>) -> BTreeMap<String, u64> {
        let mut sites = self.sites.borrow_mut();
        let mut per_site: HashMap<std::rc::Rc<str>, u64> = HashMap::new();
        for (pc, n) in per_pc {
            let site = sites
                .entry(pc)
                .or_insert_with(|| {
                    if pc == 0 {
                        return "main".into();
                    }
                    // gopc is the return address of the newproc call: the `go` statement's line
                    // is that of the call, one byte earlier (traceback.go, printcreatedby).
                    let link = pc.wrapping_sub(self.bias).wrapping_sub(1);
                    self.bin
                        .source_line(link)
                        .unwrap_or_else(|| format!("{pc:#x}"))
                        .into()
                })
                .clone();
            *per_site.entry(site).or_default() += n;
        }
        let mut v: Vec<_> = per_site.into_iter().collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut out = BTreeMap::new();
        for (i, (site, n)) in v.into_iter().enumerate() {
            let key = if i < TOP_SITES {
                site.to_string()
            } else {
                "other".to_string()
            };
            *out.entry(key).or_default() += n;
        }
        out
    }
}
