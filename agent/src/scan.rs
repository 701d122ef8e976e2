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
    pub parent_goid: u64,
    /// PC of the `go` statement that created it.
    pub gopc: u64,
    pub startpc: u64,
    /// Channels it waits on, from `g.waiting` → `sudog.c` along `waitlink` (for select: every
    /// case's channel).
    pub wait_chans: Vec<u64>,
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

/// Reads every goroutine of the live process.
pub struct Scanner<'a> {
    bin: &'a GoBinary,
    mem: ProcessMemory,
    allgs: u64,
    window: usize,
    /// `runtime.semtable` (runtime address) and the size of one of its entries.
    semtable: Option<(u64, u64)>,
}

impl<'a> Scanner<'a> {
    /// `bias` is the target's load bias (0 unless PIE).
    pub fn new(bin: &'a GoBinary, pid: u32, bias: u64) -> Result<Self, ScanError> {
        let allgs = bin.allgs_addr().map_err(ScanError::NoAllgs)? + bias;
        let g = &bin.layout.g;
        // One read per g covering every field we need.
        let window = [
            g.goid,
            g.atomicstatus,
            g.waitreason,
            g.waitsince,
            g.waiting,
            g.parent_goid,
            g.gopc,
            g.startpc,
        ]
        .into_iter()
        .max()
        .unwrap_or(0) as usize
            + 8;
        let semtable = bin
            .semtable()
            .filter(|&(_, size)| size > 0 && size % SEM_TAB_SIZE == 0)
            .map(|(addr, size)| (addr + bias, size / SEM_TAB_SIZE));
        Ok(Self {
            bin,
            mem: ProcessMemory::new(pid),
            allgs,
            window,
            semtable,
        })
    }

    /// Which goroutine waits on which semaphore, from the runtime's semaphore table: 251 roots,
    /// each a treap of sudogs keyed by semaphore address (`sudog.elem`), children in
    /// `prev`/`next`, further waiters on the same address along `waitlink`
    /// (src/runtime/sema.go, semaRoot.queue). Returns g address → semaphore address. Empty
    /// when the table cannot be located (stripped binaries).
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

        let mut bufs = vec![vec![0u8; self.window]; gptrs.len()];
        let mut ranges: Vec<(u64, &mut [u8])> = gptrs
            .iter()
            .zip(bufs.iter_mut())
            .map(|(&a, b)| (a, b.as_mut_slice()))
            .collect();
        let ok = self.mem.read_many(&mut ranges)?;
        drop(ranges);

        let l = &self.bin.layout.g;
        let sema = self.sema_waiters();
        let mut scan = Scan::default();
        for ((&addr, buf), ok) in gptrs.iter().zip(&bufs).zip(ok) {
            if !ok || addr == 0 {
                scan.skipped += 1;
                continue;
            }
            let u64_at = |off: u32| {
                let o = off as usize;
                u64::from_le_bytes(buf[o..o + 8].try_into().unwrap_or_default())
            };
            let status = (u64_at(l.atomicstatus) as u32) & !status::SCAN;
            if status > status::DEADEXTRA {
                scan.skipped += 1;
                continue;
            }
            if status == status::DEAD || status == status::DEADEXTRA || status == status::IDLE {
                continue;
            }
            let wait_reason = buf[l.waitreason as usize] as u32;
            let waiting = u64_at(l.waiting);
            let wait_chans = if status == status::WAITING && waiting != 0 {
                self.wait_chans(waiting)
            } else {
                Vec::new()
            };
            scan.goroutines.push(ScannedG {
                addr,
                goid: u64_at(l.goid),
                status,
                wait_reason,
                waitsince: u64_at(l.waitsince) as i64,
                parent_goid: u64_at(l.parent_goid),
                gopc: u64_at(l.gopc),
                startpc: u64_at(l.startpc),
                wait_chans,
                sema_addr: (status == status::WAITING)
                    .then(|| sema.get(&addr).copied())
                    .flatten(),
            });
        }
        scan.goroutines.sort_by_key(|g| g.goid);
        Ok(scan)
    }

    /// Follows `g.waiting` (a sudog) along `sudog.waitlink`, collecting `sudog.c`
    /// (src/runtime/runtime2.go, sudog; select.go, selectgo builds this list, one sudog a case;
    /// chan.go chansend/chanrecv set gp.waiting to their single sudog).
    fn wait_chans(&self, mut sg: u64) -> Vec<u64> {
        let s = &self.bin.layout.sudog;
        let mut out = Vec::new();
        for _ in 0..MAX_WAITLINK {
            if sg == 0 {
                break;
            }
            let (Ok(c), Ok(next)) = (
                self.mem.read_u64(sg + u64::from(s.c)),
                self.mem.read_u64(sg + u64::from(s.waitlink)),
            ) else {
                break;
            };
            if c != 0 && !out.contains(&c) {
                out.push(c);
            }
            sg = next;
        }
        out
    }
}
