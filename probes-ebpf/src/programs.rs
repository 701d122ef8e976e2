//! Entry-only uprobes on the Go runtime. Never uretprobes: Go copies goroutine stacks when they
//! grow, and a return-address trampoline on a moved stack crashes the target.
//!
//! Registers follow Go's internal ABI on amd64 (src/cmd/compile/abi-internal.md): the current g is
//! in R14, and integer arguments are passed in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11. The agent
//! attaches each probe at the first instruction after the function's stack-bound check
//! (`CMPQ SP, 0x10(R14); JBE morestack`), where the argument registers are still untouched.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::{map, uprobe},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::ProbeContext,
};
use probes_ebpf::{
    BPF_F_MMAPABLE, EVENTS_RING_BYTES, EventKind, GoEvent, HIST_WAYS, HistKey, MAX_WAIT_CHANS,
    NO_STACK, PARK_STACK_DEPTH, PARKS_ENTRIES, ParkSlot, ParkStack, PreciseConfig, RuntimeLayout,
    SITE_REASONS, SITE_WINDOW_NS, SemaWait, SiteHist, SiteRate, WAIT_HIST_BUCKETS,
    WAIT_HIST_MAX_ENTRIES, WAIT_HIST_SLOTS, WaitHist, hist_slot, park_set,
};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map]
static LAYOUT: Array<RuntimeLayout> = Array::with_max_entries(1, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
static PRECISE_CONFIG: Array<PreciseConfig> = Array::with_max_entries(1, 0);

/// The open parks, by g address (see `probes_ebpf::MAP_PARKS`).
#[map]
static PARKS: Array<ParkSlot> = Array::with_max_entries(PARKS_ENTRIES, BPF_F_MMAPABLE);

/// Per CPU, so that counting needs no atomics (the agent sums the CPUs' copies).
#[map]
static WAIT_HIST: PerCpuArray<SiteHist> = PerCpuArray::with_max_entries(WAIT_HIST_MAX_ENTRIES, 0);

/// Per CPU, exact: every finished wait by its reason (`probes_ebpf::MAP_REASON_HIST`).
#[map]
static REASON_HIST: PerCpuArray<WaitHist> = PerCpuArray::with_max_entries(SITE_REASONS as u32, 0);

/// Per CPU: parks in the current window, for the site sampling (see `PreciseConfig::site_burst`).
#[map]
static SITE_RATE: PerCpuArray<SiteRate> = PerCpuArray::with_max_entries(1, 0);

/// g address → the semaphore it is about to wait on. LRU, so goroutines that exit without
/// parking cannot fill it.
#[map]
static SEMA: LruHashMap<u64, SemaWait> = LruHashMap::with_max_entries(65536, 0);

#[inline(always)]
fn regs(ctx: &ProbeContext) -> &pt_regs {
    // SAFETY: for uprobe programs the context is the trapped task's pt_regs.
    unsafe { &*ctx.regs }
}

#[inline(always)]
fn layout() -> Result<&'static RuntimeLayout, u32> {
    LAYOUT.get(0).ok_or(1)
}

/// Reads the u64 at `base + off` in the target. Faults are errors, never crashes.
#[inline(always)]
fn read_u64(base: u64, off: u32) -> Result<u64, u32> {
    if base == 0 {
        return Err(2);
    }
    // SAFETY: bpf_probe_read_user faults safely on a bad address.
    unsafe { bpf_probe_read_user((base + off as u64) as *const u64) }.map_err(|_| 3)
}

/// Wake the agent only once the ring is this full; otherwise it drains on its own timer. A
/// wake-up per event (the default) costs the target a cross-CPU wake-up on every park.
const WAKEUP_BYTES: u64 = (EVENTS_RING_BYTES / 8) as u64;

#[inline(always)]
fn emit(ev: &GoEvent) -> Result<u32, u32> {
    match EVENTS.reserve::<GoEvent>(0) {
        Some(mut slot) => {
            slot.write(*ev);
            slot.submit(wakeup_flags());
            Ok(0)
        }
        None => lost(),
    }
}

#[inline(always)]
fn wakeup_flags() -> u64 {
    (if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }) as u64
}

#[inline(always)]
fn lost() -> Result<u32, u32> {
    // Never drop silently: the agent reports the sum of this per-CPU counter.
    if let Some(n) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *n += 1 };
    }
    Err(4)
}

/// Sends a park with its goroutine's details read from `g` and its stack walked from
/// (`pc`, `bp`): the ring entry is filled in place (a `ParkStack` is too big for the BPF stack).
/// `first` is the innermost PC (inside gopark) and `caller` the PC before the frame chain at
/// `bp` (gopark's return address when `bp` is its caller's frame, else 0).
#[inline(always)]
fn emit_park(
    l: &RuntimeLayout,
    g: u64,
    park: &ParkSlot,
    goid: u64,
    first: u64,
    caller: u64,
    bp: u64,
) -> Result<u32, u32> {
    let Some(mut entry) = EVENTS.reserve::<ParkStack>(0) else {
        return lost();
    };
    let out = entry.as_mut_ptr();
    // SAFETY: `out` points at a reserved ring entry of size_of::<ParkStack>(), ours until
    // submitted; every field is written below before the submit.
    unsafe {
        let ev = &mut (*out).ev;
        *ev = GoEvent {
            ts_ns: park.ts_ns,
            goid,
            obj: park.obj,
            caller_pc: caller,
            tid: park.tid,
            kind: EventKind::Park as u32,
            reason: u32::from(park.reason),
            stack_id: NO_STACK,
            ..GoEvent::default()
        };
        fill_goroutine(l, g, ev);
        let mut n = 0usize;
        (*out).pcs = [0; PARK_STACK_DEPTH];
        if first != 0 {
            (*out).pcs[0] = first;
            n = 1;
        }
        if caller != 0 && n < PARK_STACK_DEPTH {
            (*out).pcs[n & (PARK_STACK_DEPTH - 1)] = caller;
            n += 1;
        }
        // Go keeps frame pointers on amd64: [bp] = the caller's bp, [bp+8] = the return address.
        let mut bp = bp;
        for _ in 0..PARK_STACK_DEPTH {
            if bp == 0 || n >= PARK_STACK_DEPTH {
                break;
            }
            let Ok(rec) = bpf_probe_read_user(bp as *const [u64; 2]) else {
                break;
            };
            if rec[1] == 0 {
                break;
            }
            (*out).pcs[n & (PARK_STACK_DEPTH - 1)] = rec[1];
            n += 1;
            bp = rec[0];
        }
        (*out).n_pcs = n as u32;
        (*out)._pad0 = 0;
    }
    entry.submit(wakeup_flags());
    Ok(0)
}

/// The goroutine's creation and what it waits on, read from its g.
#[inline(always)]
fn fill_goroutine(l: &RuntimeLayout, g: u64, ev: &mut GoEvent) {
    ev.parent_goid = read_u64(g, l.g_parent_goid).unwrap_or(0);
    ev.gopc = read_u64(g, l.g_gopc).unwrap_or(0);
    ev.startpc = read_u64(g, l.g_startpc).unwrap_or(0);
    // chansend/chanrecv set gp.waiting to their sudog, selectgo to the list of one sudog per
    // case linked by waitlink (src/runtime/chan.go, select.go), all before calling gopark; they
    // clear it only once the goroutine runs again, after its wake-up.
    let mut sg = read_u64(g, l.g_waiting).unwrap_or(0);
    let mut n = 0u32;
    for i in 0..MAX_WAIT_CHANS {
        if sg == 0 {
            break;
        }
        ev.chans[i] = read_u64(sg, l.sudog_c).unwrap_or(0);
        n += 1;
        sg = read_u64(sg, l.sudog_waitlink).unwrap_or(0);
    }
    if sg != 0 {
        // More cases than we copy: count the rest, bounded.
        for _ in 0..(255 - MAX_WAIT_CHANS) {
            if sg == 0 {
                break;
            }
            n += 1;
            sg = read_u64(sg, l.sudog_waitlink).unwrap_or(0);
        }
    }
    ev.n_chans = n;
    // A sync primitive's entry point recorded which semaphore this goroutine goes to wait on.
    if let Some(w) = SEMA.get_ptr(g) {
        // SAFETY: pointer from a successful map lookup, valid for this program run.
        let w = unsafe { *w };
        ev.sema_addr = w.addr;
        ev.sema_kind = w.kind;
    }
}

#[inline(always)]
fn base_event(kind: EventKind) -> GoEvent {
    GoEvent {
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        tid: bpf_get_current_pid_tgid() as u32,
        kind: kind as u32,
        stack_id: NO_STACK,
        ..GoEvent::default()
    }
}

/// The slot of `g`'s open park in its set, if any.
#[inline(always)]
fn find_park(g: u64) -> Option<*mut ParkSlot> {
    let set = park_set(g) * 2;
    for way in 0..2 {
        if let Some(s) = PARKS.get_ptr_mut(set + way) {
            // SAFETY: pointer into the array map, valid for this program run. Another CPU may
            // write the same slot (another g of this set) at the same time: a torn slot fails
            // the g check or, at worst, counts one wait in the wrong bucket.
            if unsafe { (*s).g } == g {
                return Some(s);
            }
        }
    }
    None
}

/// The slot a new park of `g` takes: its own, a free one, or else the younger park of the set
/// (the older one is the wait more likely to turn out long).
#[inline(always)]
fn claim_park(g: u64) -> Option<*mut ParkSlot> {
    let set = park_set(g) * 2;
    let a = PARKS.get_ptr_mut(set)?;
    let b = PARKS.get_ptr_mut(set + 1)?;
    // SAFETY: pointers into the array map, valid for this program run (see find_park).
    unsafe {
        let (ga, gb) = ((*a).g, (*b).g);
        Some(if ga == g || (ga == 0 && gb != g) {
            a
        } else if gb == g || gb == 0 || (*a).ts_ns < (*b).ts_ns {
            b
        } else {
            a
        })
    }
}

/// `func gopark(unlockf func(*g, unsafe.Pointer) bool, lock unsafe.Pointer, reason waitReason,
///              traceReason traceBlockReason, traceskip int)` (src/runtime/proc.go, Go 1.22–1.27):
/// RAX = unlockf, RBX = lock, RCX = reason (uint8).
#[uprobe]
pub fn gopark(ctx: ProbeContext) -> u32 {
    try_gopark(&ctx).unwrap_or_else(|e| e)
}

/// The hot path: on a channel ping-pong nearly every operation parks, so this does no more than
/// fill the g's slot, with one 16-byte read of the target's stack for the site. Who the
/// goroutine is, what it waits on and its stack are read only when the wait is sent: at once
/// with `--min-wait 0`, else at the wake-up of a wait that lasted `--min-wait` (`try_ready`);
/// waits still in progress the agent finds by its scans.
fn try_gopark(ctx: &ProbeContext) -> Result<u32, u32> {
    let r = regs(ctx);
    let g = r.r14;
    let slot = claim_park(g).ok_or(1u32)?;
    let reason = (r.rcx & 0xff) as u32;
    let cfg = PRECISE_CONFIG.get(0);
    let words = cfg.map_or(0, |c| c.site_words[reason as usize & (SITE_REASONS - 1)]);
    // SAFETY: no preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let weight = cfg.map_or(1, |c| site_weight(c, ts_ns));
    let park = ParkSlot {
        g,
        ts_ns,
        obj: r.rbx,
        site: if weight != 0 {
            read_site(r.rbp, words)
        } else {
            0
        },
        reason: reason as u16,
        weight,
        tid: bpf_get_current_pid_tgid() as u32,
    };
    // SAFETY: pointer into the array map, valid for this program run.
    unsafe { *slot = park };
    if cfg.map_or(0, |c| c.min_wait_ns) != 0 {
        return Ok(0);
    }
    let l = layout()?;
    let goid = read_u64(g, l.g_goid)?;
    // At entry [RSP] is gopark's return address into its caller.
    let caller = read_u64(r.rsp, 0).unwrap_or(0);
    emit_park(l, g, &park, goid, r.rip, caller, r.rbp)
}

/// How many waits this park's site stands for (see `PreciseConfig::site_burst`): 1 within this
/// CPU's burst of the current window, else `site_every` for a random one in `site_every`, else
/// 0 (its site is not read). Random, not every n-th: a loop that parks at two sites in turn on
/// one CPU would otherwise be sampled at one of them only.
#[inline(always)]
fn site_weight(cfg: &PreciseConfig, now: u64) -> u16 {
    let Some(rate) = SITE_RATE.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot; no other writer while this program runs (preemption is off).
    let parks = unsafe {
        if now.wrapping_sub((*rate).window_start_ns) >= SITE_WINDOW_NS {
            (*rate).window_start_ns = now;
            (*rate).parks = 0;
        }
        (*rate).parks += 1;
        (*rate).parks
    };
    if parks <= u64::from(cfg.site_burst) {
        return 1;
    }
    let every = cfg.site_every.max(1);
    // SAFETY: no preconditions.
    if unsafe { bpf_get_prandom_u32() } & (every - 1) == 0 {
        every.min(u32::from(u16::MAX)) as u16
    } else {
        0
    }
}

/// The wait's site: at the probe point (before gopark's `PUSHQ BP`) RBP is the parking
/// function's frame pointer, and the frame record `words` 8-byte words above it holds the
/// return address into the site's function: with 0, the parking function's caller (selectgo,
/// time.Sleep and runtime.block are called from the user's code: src/runtime/select.go,
/// time.go, proc.go); for channel operations the agent skips chanrecv1/chansend1's frame
/// (src/runtime/chan.go), for sync waits the `runtime_Semacquire*` linkname wrappers
/// (src/runtime/sema.go). 0 if unreadable.
#[inline(always)]
fn read_site(bp: u64, words: u8) -> u64 {
    if bp == 0 {
        return 0;
    }
    read_pair(bp.wrapping_add(u64::from(words) * 8))[1]
}

/// A frame record ([bp] = the caller's bp, [bp+8] = the return address); zeros if unreadable.
#[inline(always)]
fn read_pair(bp: u64) -> [u64; 2] {
    if bp == 0 {
        return [0, 0];
    }
    // SAFETY: bpf_probe_read_user faults safely on a bad address.
    unsafe { bpf_probe_read_user(bp as *const [u64; 2]) }.unwrap_or([0, 0])
}

#[inline(always)]
fn min_wait_ns() -> u64 {
    PRECISE_CONFIG.get(0).map_or(0, |c| c.min_wait_ns)
}

/// log2 bucket of a wait.
#[inline(always)]
fn bucket(ns: u64) -> usize {
    let b = 63 - (ns | 1).leading_zeros() as usize;
    if b >= WAIT_HIST_BUCKETS {
        WAIT_HIST_BUCKETS - 1
    } else {
        b
    }
}

/// Counts a finished wait at its site, in this CPU's copy of the site's histogram: its slot,
/// the other of its pair, or the overflow slot. Per CPU and with preemption off while a BPF
/// program runs, so no other writer touches this copy meanwhile.
#[inline(always)]
fn record_wait(park: &ParkSlot, wait_ns: u64) {
    let b = bucket(wait_ns);
    if let Some(h) = REASON_HIST.get_ptr_mut(u32::from(park.reason) & (SITE_REASONS as u32 - 1)) {
        // SAFETY: pointer into this CPU's copy of the array, valid for this program run.
        count_wait(unsafe { &mut *h }, b, wait_ns, 1);
    }
    let w = u64::from(park.weight);
    if w == 0 {
        return;
    }
    let key = HistKey {
        site: park.site,
        reason: u32::from(park.reason),
        _pad0: 0,
    };
    let first = hist_slot(&key);
    let mut slot = None;
    for way in 0..HIST_WAYS {
        let Some(h) = WAIT_HIST.get_ptr_mut(first ^ way) else {
            continue;
        };
        // SAFETY: pointer into this CPU's copy of the array, valid for this program run.
        unsafe {
            if (*h).hist.count == 0 {
                (*h).key = key;
                slot = Some(h);
                break;
            }
            if (*h).key == key {
                slot = Some(h);
                break;
            }
        }
    }
    let Some(h) = slot.or_else(|| WAIT_HIST.get_ptr_mut(WAIT_HIST_SLOTS)) else {
        return;
    };
    // SAFETY: as above.
    let h = unsafe { &mut *h };
    count_wait(&mut h.hist, b, wait_ns, w);
    if w > 1 {
        h.sampled += 1;
    }
}

/// Counts a wait of `wait_ns` (in bucket `b`) `w` times into `h`.
#[inline(always)]
fn count_wait(h: &mut WaitHist, b: usize, wait_ns: u64, w: u64) {
    h.count += w;
    h.total_ns += wait_ns.wrapping_mul(w);
    if b < WAIT_HIST_BUCKETS {
        h.buckets[b] += w;
    }
}

/// `func ready(gp *g, traceskip int, next bool)` (src/runtime/proc.go, Go 1.22–1.27):
/// RAX = gp, the goroutine being made runnable; R14 = the g doing it.
#[uprobe]
pub fn ready(ctx: ProbeContext) -> u32 {
    try_ready(&ctx).unwrap_or_else(|e| e)
}

fn try_ready(ctx: &ProbeContext) -> Result<u32, u32> {
    let r = regs(ctx);
    let gp = r.rax;
    let min = min_wait_ns();
    let Some(slot) = find_park(gp) else {
        // Parked before the attach (or evicted): its end is news either way.
        return emit_ready(r, gp);
    };
    // SAFETY: pointer into the array map, valid for this program run; copied out (40 bytes)
    // and freed at once, so that the g's next park finds the slot free.
    let park = unsafe { *slot };
    unsafe { (*slot).g = 0 };
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let wait = now.saturating_sub(park.ts_ns);
    record_wait(&park, wait);
    if min == 0 {
        emit_ready(r, gp)
    } else if wait >= min {
        // A long wait: its park, sent now with what the still-parked g holds (its sudogs and,
        // in g.sched, where it stopped: src/runtime/runtime2.go, gobuf), then its end.
        let l = layout()?;
        let goid = read_u64(gp, l.g_goid)?;
        let pc = read_u64(gp, l.g_sched_pc).unwrap_or(0);
        let bp = read_u64(gp, l.g_sched_bp).unwrap_or(0);
        let _ = SEMA.remove(gp);
        emit_park(l, gp, &park, goid, pc, 0, bp).and_then(|_| emit_ready(r, gp))
    } else {
        Ok(0)
    }
}

/// Sends the end of a wait: `gp` made runnable by the current g.
#[inline(always)]
fn emit_ready(r: &pt_regs, gp: u64) -> Result<u32, u32> {
    let l = layout()?;
    let mut ev = base_event(EventKind::Ready);
    ev.goid = read_u64(gp, l.g_goid)?;
    // `goready` calls `ready` on the system stack (src/runtime/proc.go, goready →
    // systemstack), so R14 is usually the M's g0, whose goid is 0: the waker is the user
    // goroutine that M runs, `g0.m.curg`. None when the M runs no user goroutine (netpoll,
    // timers or the scheduler woke it).
    let mut waker = r.r14;
    let mut peer = read_u64(waker, l.g_goid).unwrap_or(0);
    if peer == 0 {
        waker = read_u64(r.r14, l.g_m)
            .and_then(|m| read_u64(m, l.m_curg))
            .unwrap_or(0);
        if waker != 0 {
            peer = read_u64(waker, l.g_goid).unwrap_or(0);
        }
    }
    ev.peer_goid = peer;
    emit(&ev)
}

/// Go 1.22: `func newproc1(fn *funcval, callergp *g, callerpc uintptr) *g`; Go 1.23–1.27 add
/// `parked bool, waitreason waitReason` (src/runtime/proc.go). RAX = fn, RBX = callergp,
/// RCX = callerpc in every version.
#[uprobe]
pub fn newproc1(ctx: ProbeContext) -> u32 {
    try_newproc1(&ctx).unwrap_or_else(|e| e)
}

fn try_newproc1(ctx: &ProbeContext) -> Result<u32, u32> {
    let l = layout()?;
    let r = regs(ctx);
    let mut ev = base_event(EventKind::Create);
    ev.caller_pc = read_u64(r.rsp, 0).unwrap_or(0);
    ev.parent_goid = read_u64(r.rbx, l.g_goid).unwrap_or(0);
    ev.gopc = r.rcx;
    // funcval's first word is the function's entry PC (src/runtime/runtime2.go, funcval).
    ev.startpc = read_u64(r.rax, 0).unwrap_or(0);
    emit(&ev)
}

/// `func goexit1()` (src/runtime/proc.go): runs on the exiting goroutine, so R14 is its g.
#[uprobe]
pub fn goexit1(ctx: ProbeContext) -> u32 {
    try_goexit1(&ctx).unwrap_or_else(|e| e)
}

fn try_goexit1(ctx: &ProbeContext) -> Result<u32, u32> {
    let l = layout()?;
    let r = regs(ctx);
    let mut ev = base_event(EventKind::Exit);
    ev.goid = read_u64(r.r14, l.g_goid)?;
    let _ = SEMA.remove(r.r14);
    emit(&ev)
}

/// The semacquire entry points of package sync (src/runtime/sema.go; linknamed as
/// `sync.runtime_SemacquireMutex` etc.): first argument (RAX) = the semaphore's address. The
/// attach cookie says which primitive (a `SemaKind`). Nothing is sent: the address waits in
/// `SEMA` for the gopark that follows, if the semaphore is not available at once.
#[uprobe]
pub fn semacquire(ctx: ProbeContext) -> u32 {
    try_semacquire(&ctx).unwrap_or_else(|e| e)
}

fn try_semacquire(ctx: &ProbeContext) -> Result<u32, u32> {
    let r = regs(ctx);
    let g = r.r14;
    // SAFETY: the context pointer comes from the kernel for this program type.
    let kind = unsafe { aya_ebpf::helpers::generated::bpf_get_attach_cookie(ctx.regs.cast()) };
    let w = SemaWait {
        addr: r.rax,
        kind: kind as u32,
        _pad0: 0,
    };
    SEMA.insert(g, w, 0).map_err(|_| 5u32)?;
    Ok(0)
}

/// Does nothing: attached alone (the agent's hidden `--mode trap`), it measures what the uprobe
/// trap itself costs the target, the floor under every probe above (`cargo xtask bench`).
#[uprobe]
pub fn noop(_ctx: ProbeContext) -> u32 {
    0
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; loop to satisfy the `!` type.
    loop {}
}
