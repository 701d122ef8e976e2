//! A one-shot read of the target's goroutine table (`runtime.allgs`), without stopping it.
//!
//! `runtime.allgs` is a `[]*g` guarded by `allglock` (src/runtime/proc.go, allgadd/forEachG);
//! we read it without the lock, so the slice header, the g pointers and each g may change under
//! us. Every read is therefore validated: a g that faults, or whose status is out of range, is
//! skipped and counted, never trusted.

use serde::Serialize;
use thiserror::Error;

use crate::goruntime::GoBinary;
use crate::memory::{MemError, ProcessMemory};

/// Goroutine statuses (src/runtime/runtime2.go, same values in Go 1.22–1.27; `_Gleaked` and
/// `_Gdeadextra` exist from 1.26 on).
pub mod status {
    pub const IDLE: u32 = 0;
    pub const RUNNABLE: u32 = 1;
    pub const RUNNING: u32 = 2;
    pub const SYSCALL: u32 = 3;
    pub const WAITING: u32 = 4;
    pub const DEAD: u32 = 6;
    pub const COPYSTACK: u32 = 8;
    pub const PREEMPTED: u32 = 9;
    pub const LEAKED: u32 = 10;
    pub const DEADEXTRA: u32 = 11;
    /// `_Gscan` is or'ed in while the GC scans the stack.
    pub const SCAN: u32 = 0x1000;

    pub fn name(s: u32) -> &'static str {
        match s & !SCAN {
            IDLE => "idle",
            RUNNABLE => "runnable",
            RUNNING => "running",
            SYSCALL => "syscall",
            WAITING => "waiting",
            DEAD => "dead",
            COPYSTACK => "copystack",
            PREEMPTED => "preempted",
            LEAKED => "leaked",
            DEADEXTRA => "dead",
            _ => "unknown",
        }
    }
}

/// Longest select case list we follow through `sudog.waitlink` (select.go caps cases at 65536,
/// but real selects are small; the bound keeps a torn list from looping).
const MAX_WAITLINK: usize = 64;
/// Sudogs we visit per semaphore-table root (a torn tree must not make us loop).
const MAX_SEMA_NODES: usize = 100_000;
/// `semTabSize` (src/runtime/sema.go).
const SEM_TAB_SIZE: u64 = 251;
/// `semaRoot.treap` follows `lock mutex`, 8 bytes (`mutex{lockRankStruct; key uintptr}`, with
/// the rank struct empty in release builds; src/runtime/sema.go, runtime2.go) in Go 1.22–1.27.
const SEMA_ROOT_TREAP: u64 = 8;

/// g records read per batch.
const RECORDS_PER_READ: usize = 4096;

/// Upper bound on allglen we accept as sane.
const MAX_GOROUTINES: u64 = 10_000_000;

#[derive(Debug, Error)]
pub enum ScanError {
    #[error(transparent)]
    Mem(#[from] MemError),
    #[error("cannot locate runtime.allgs in the binary: {0}")]
    NoAllgs(String),
    #[error("runtime.allgs looks corrupt (len {0})")]
    Corrupt(u64),
}

/// The channels of one wait: one for a send or a receive, kept inline (no heap allocation per
/// goroutine); a select's spill to the heap.
pub type Chans = smallvec::SmallVec<[u64; 1]>;

/// One goroutine as read from memory.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScannedG {
    pub addr: u64,
    pub goid: u64,
    /// Status with `_Gscan` cleared.
    pub status: u32,
    pub wait_reason: u32,
    /// `g.waitsince` (nanotime, i.e. CLOCK_MONOTONIC), 0 when unset. The runtime sets it only
    /// from GC root marking (mgcmark.go, markroot), so it is a lower bound at best.
    pub waitsince: i64,
    /// `g.trackingSeq`: changes whenever the g stops running (see `GLayout::tracking_seq`), so
    /// two scans that read the same value saw one uninterrupted wait.
    pub tracking_seq: u8,
    /// `g.waiting`: its first sudog, 0 if none.
    pub waiting: u64,
    pub parent_goid: u64,
    /// PC of the `go` statement that created it.
    pub gopc: u64,
    pub startpc: u64,
    /// Channels it waits on, from `g.waiting` → `sudog.c` along `waitlink` (for select: every
    /// case's channel).
    pub wait_chans: Chans,
    /// For a goroutine queued on a runtime semaphore (Mutex, RWMutex, WaitGroup waits): the
    /// semaphore's address, from the semaphore table (see `Scanner::sema_waiters`).
    pub sema_addr: Option<u64>,
}

/// What a scan found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scan {
    pub goroutines: Vec<ScannedG>,
    /// g records that could not be read or did not validate.
    pub skipped: usize,
}

/// What the search for references to the objects waited on needs of a goroutine
/// (`detect::reach`): a quarter of a [`ScannedG`], kept for the report once the scan is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GRoot {
    pub addr: u64,
    pub goid: u64,
    pub waiting: u64,
    pub status: u32,
}

impl Scan {
    pub fn roots(&self) -> Vec<GRoot> {
        self.goroutines
            .iter()
            .map(|g| GRoot {
                addr: g.addr,
                goid: g.goid,
                waiting: g.waiting,
                status: g.status,
            })
            .collect()
    }
}

/// See `Scanner::last_chans`.
/// Only single-channel waits are cached (a select's cases are read again): no allocation per
/// cached goroutine.
struct LastChans {
    addr: u64,
    waiting: u64,
    tracking_seq: u8,
    chan: u64,
}

/// Reads every goroutine of the live process.
pub struct Scanner<'a> {
    bin: &'a GoBinary,
    mem: ProcessMemory,
    allgs: u64,
    /// The part of a g we read: from its first needed field (`base`) for `window` bytes.
    base: u32,
    /// The g records of the last scan, as a buffer to reuse: 100k goroutines are megabytes,
    /// which a fresh allocation would page-fault in and zero on every scan.
    records: std::cell::RefCell<Vec<u8>>,
    /// The channels each waiting g had in the last scan, by its index in `allgs` (which only
    /// grows, and whose g records are reused in place: src/runtime/proc.go, allgadd), with the
    /// g's address, `g.waiting` and `g.trackingSeq` they were read under: a g that has not run
    /// since (same trackingSeq) still waits on the same sudogs, so they need not be read again.
    last_chans: std::cell::RefCell<Vec<Option<LastChans>>>,
    window: usize,
    /// `runtime.semtable` (runtime address) and the size of one of its entries.
    semtable: Option<(u64, u64)>,
}

impl<'a> Scanner<'a> {
    /// `bias` is the target's load bias (0 unless PIE).
    pub fn new(bin: &'a GoBinary, pid: u32, bias: u64) -> Result<Self, ScanError> {
        let allgs = bin.allgs_addr().map_err(ScanError::NoAllgs)? + bias;
        let g = &bin.layout.g;
        // One read per g covering every field we need, and nothing before the first of them:
        // the scan's cost is dominated by bytes copied per g.
        let fields = [
            g.goid,
            g.atomicstatus,
            g.waitreason,
            g.waitsince,
            g.tracking_seq,
            g.waiting,
            g.parent_goid,
            g.gopc,
            g.startpc,
        ];
        let base = fields.into_iter().min().unwrap_or(0);
        let window = (fields.into_iter().max().unwrap_or(0) - base) as usize + 8;
        let semtable = bin
            .semtable()
            .filter(|&(_, size)| size > 0 && size % SEM_TAB_SIZE == 0)
            .map(|(addr, size)| (addr + bias, size / SEM_TAB_SIZE));
        Ok(Self {
            bin,
            mem: ProcessMemory::new(pid),
            allgs,
            base,
            records: Default::default(),
            last_chans: Default::default(),
            window,
            semtable,
        })
    }

    /// Which goroutine waits on which semaphore, from the runtime's semaphore table: 251 roots,
    /// each a treap of sudogs keyed by semaphore address (`sudog.elem`), children in
    /// `prev`/`next`, further waiters on the same address along `waitlink`
    /// (src/runtime/sema.go, semaRoot.queue). Returns g address → semaphore address. Empty
    /// when the table cannot be located (neither .symtab nor the code decode of
    /// `goruntime::semtable` found it).
    pub fn sema_waiters(&self) -> std::collections::HashMap<u64, u64> {
        let mut out = std::collections::HashMap::new();
        let Some((table, entry)) = self.semtable else {
            return out;
        };
        let s = &self.bin.layout.sudog;
        let rd = |addr: u64, off: u32| self.mem.read_u64(addr + u64::from(off)).ok();
        for i in 0..SEM_TAB_SIZE {
            let Ok(root) = self.mem.read_u64(table + i * entry + SEMA_ROOT_TREAP) else {
                continue;
            };
            let mut stack = vec![root];
            let mut visited = 0;
            while let Some(node) = stack.pop() {
                if node == 0 || visited >= MAX_SEMA_NODES {
                    continue;
                }
                visited += 1;
                let Some(addr) = rd(node, s.elem) else {
                    continue;
                };
                stack.extend(rd(node, s.prev));
                stack.extend(rd(node, s.next));
                // This node and the waiters queued behind it on the same address.
                let mut w = node;
                while w != 0 && visited < MAX_SEMA_NODES {
                    if let Some(g) = rd(w, s.g).filter(|&g| g != 0) {
                        out.insert(g, addr);
                    }
                    w = rd(w, s.waitlink).unwrap_or(0);
                    visited += 1;
                }
            }
        }
        out
    }

    pub fn scan(&self) -> Result<Scan, ScanError> {
        // allgs is a slice: ptr, len, cap.
        let mut hdr = [0u8; 16];
        self.mem.read(self.allgs, &mut hdr)?;
        let ptr = u64::from_le_bytes(hdr[0..8].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or_default());
        if len > MAX_GOROUTINES || (len > 0 && ptr == 0) {
            return Err(ScanError::Corrupt(len));
        }
        let mut ptrs = vec![0u8; len as usize * 8];
        self.mem.read(ptr, &mut ptrs)?;
        let gptrs: Vec<u64> = ptrs
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();

        let l = &self.bin.layout.g;
        let sema = self.sema_waiters();
        let mut scan = Scan::default();
        // Sized once: growing by doubling would hold the old and the new buffer at the same
        // time, the agent's peak RSS with 100k goroutines.
        scan.goroutines.reserve_exact(gptrs.len());
        // (index in scan.goroutines, g.waiting) of the waiting goroutines with sudogs.
        let mut sudogs = Vec::new();
        let mut last_chans = std::mem::take(&mut *self.last_chans.borrow_mut());
        last_chans.resize_with(gptrs.len(), || None);
        // Index in allgs of each entry of scan.goroutines with channels, for the cache.
        let mut slot_of = Vec::new();
        let w = self.window;
        // Kept between scans (see `records`); a chunk of g records at a time, so that 100k
        // goroutines do not need all their records in memory at once.
        let mut buf = std::mem::take(&mut *self.records.borrow_mut());
        for (c, chunk) in gptrs.chunks(RECORDS_PER_READ).enumerate() {
            buf.resize(chunk.len() * w, 0);
            let mut ranges: Vec<(u64, &mut [u8])> = chunk
                .iter()
                .zip(buf.chunks_exact_mut(w))
                .map(|(&a, b)| (a.wrapping_add(u64::from(self.base)), b))
                .collect();
            let ok = self.mem.read_many(&mut ranges)?;
            drop(ranges);
            for (j, ((&addr, rec), ok)) in chunk.iter().zip(buf.chunks_exact(w)).zip(ok).enumerate()
            {
                let slot = c * RECORDS_PER_READ + j;
                if !ok || addr == 0 {
                    scan.skipped += 1;
                    continue;
                }
                let u64_at = |off: u32| {
                    let o = (off - self.base) as usize;
                    u64::from_le_bytes(rec[o..o + 8].try_into().unwrap_or_default())
                };
                let status = (u64_at(l.atomicstatus) as u32) & !status::SCAN;
                if status > status::DEADEXTRA {
                    scan.skipped += 1;
                    continue;
                }
                if status == status::DEAD || status == status::DEADEXTRA || status == status::IDLE {
                    continue;
                }
                let wait_reason = rec[(l.waitreason - self.base) as usize] as u32;
                let waiting = u64_at(l.waiting);
                let tracking_seq = rec[(l.tracking_seq - self.base) as usize];
                let mut wait_chans = Chans::new();
                if status == status::WAITING && waiting != 0 {
                    match last_chans[slot].take() {
                        Some(c)
                            if c.addr == addr
                                && c.waiting == waiting
                                && c.tracking_seq == tracking_seq =>
                        {
                            wait_chans = smallvec::smallvec![c.chan];
                        }
                        _ => sudogs.push((scan.goroutines.len(), waiting)),
                    }
                    slot_of.push((scan.goroutines.len(), slot));
                }
                scan.goroutines.push(ScannedG {
                    addr,
                    goid: u64_at(l.goid),
                    status,
                    wait_reason,
                    waitsince: u64_at(l.waitsince) as i64,
                    tracking_seq,
                    waiting,
                    parent_goid: u64_at(l.parent_goid),
                    gopc: u64_at(l.gopc),
                    startpc: u64_at(l.startpc),
                    wait_chans,
                    sema_addr: (status == status::WAITING)
                        .then(|| sema.get(&addr).copied())
                        .flatten(),
                });
            }
        }
        *self.records.borrow_mut() = buf;
        self.fill_wait_chans(&mut scan.goroutines, sudogs);
        last_chans.iter_mut().for_each(|c| *c = None);
        for (i, slot) in slot_of {
            let g = &scan.goroutines[i];
            if let [chan] = g.wait_chans[..] {
                last_chans[slot] = Some(LastChans {
                    addr: g.addr,
                    waiting: g.waiting,
                    tracking_seq: g.tracking_seq,
                    chan,
                });
            }
        }
        *self.last_chans.borrow_mut() = last_chans;
        scan.goroutines.sort_by_key(|g| g.goid);
        Ok(scan)
    }

    /// Follows each `g.waiting` (a sudog) along `sudog.waitlink`, collecting `sudog.c`
    /// (src/runtime/runtime2.go, sudog; select.go, selectgo builds this list, one sudog a case;
    /// chan.go chansend/chanrecv set gp.waiting to their single sudog). Breadth-first over all
    /// goroutines at once, so that each step of every list is one batch of reads.
    fn fill_wait_chans(&self, gs: &mut [ScannedG], mut frontier: Vec<(usize, u64)>) {
        let s = &self.bin.layout.sudog;
        let base = s.c.min(s.waitlink);
        let w = (s.c.max(s.waitlink) - base) as usize + 8;
        let at = |rec: &[u8], off: u32| {
            let o = (off - base) as usize;
            u64::from_le_bytes(rec[o..o + 8].try_into().unwrap_or_default())
        };
        for _ in 0..MAX_WAITLINK {
            if frontier.is_empty() {
                break;
            }
            let mut buf = vec![0u8; frontier.len() * w];
            let mut ranges: Vec<(u64, &mut [u8])> = frontier
                .iter()
                .zip(buf.chunks_exact_mut(w))
                .map(|(&(_, sg), b)| (sg.wrapping_add(u64::from(base)), b))
                .collect();
            let Ok(ok) = self.mem.read_many(&mut ranges) else {
                return;
            };
            drop(ranges);
            let mut next = Vec::new();
            for ((&(i, _), rec), ok) in frontier.iter().zip(buf.chunks_exact(w)).zip(ok) {
                if !ok {
                    continue;
                }
                let (c, link) = (at(rec, s.c), at(rec, s.waitlink));
                let chans = &mut gs[i].wait_chans;
                if c != 0 && !chans.contains(&c) {
                    chans.push(c);
                }
                if link != 0 {
                    next.push((i, link));
                }
            }
            frontier = next;
        }
    }
}
