//! Entry-only uprobes on the Go runtime. Never uretprobes: Go copies goroutine stacks when they
//! grow, and a return-address trampoline on a moved stack crashes the target.
//!
//! Registers follow Go's internal ABI on amd64 (src/cmd/compile/abi-internal.md): the current g is
//! in R14, and integer arguments are passed in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11. The agent
//! attaches each probe at the first instruction after the function's stack-bound check
//! (`CMPQ SP, 0x10(R14); JBE morestack`), where the argument registers are still untouched.

use aya_ebpf::{
    bindings::{
        BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, pt_regs,
    },
    btf_maps::StackTrace,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{btf_map, map, uprobe},
    maps::{Array, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, tracing::StackIdContext},
};
use probes_ebpf::{
    BPF_NOEXIST, EVENTS_RING_BYTES, EventKind, GoEvent, HistKey, MAX_WAIT_CHANS, NO_STACK,
    PARKED_MAX_ENTRIES, PreciseConfig, RuntimeLayout, SemaWait, USTACK_DEPTH, USTACKS_MAX_ENTRIES,
    WAIT_HIST_BUCKETS, WAIT_HIST_MAX_ENTRIES, WaitHist,
};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map]
static LAYOUT: Array<RuntimeLayout> = Array::with_max_entries(1, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
static PRECISE_CONFIG: Array<PreciseConfig> = Array::with_max_entries(1, 0);

/// goid → its current park. LRU: a goroutine parked before the map filled and never readied
/// (or one whose ready we missed) cannot keep a slot forever.
#[map]
static PARKED: LruHashMap<u64, GoEvent> = LruHashMap::with_max_entries(PARKED_MAX_ENTRIES, 0);

/// Per CPU, so that counting needs no atomics (the agent sums the CPUs' copies).
#[map]
static WAIT_HIST: LruPerCpuHashMap<HistKey, WaitHist> =
    LruPerCpuHashMap::with_max_entries(WAIT_HIST_MAX_ENTRIES, 0);

/// goid → the semaphore it is about to wait on. LRU, so goroutines that exit without parking
/// cannot fill it.
#[map]
static SEMA: LruHashMap<u64, SemaWait> = LruHashMap::with_max_entries(65536, 0);

/// User stacks of parks, deduplicated by the kernel: 100k goroutines blocked at one site share
/// one entry.
#[btf_map]
static USTACKS: StackTrace<{ USTACKS_MAX_ENTRIES as usize }, 0, { USTACK_DEPTH as usize }> =
    StackTrace::new();

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
            let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_BYTES {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            slot.submit(flags as u64);
            Ok(0)
        }
        None => {
            // Never drop silently: the agent reports the sum of this per-CPU counter.
            if let Some(n) = LOST.get_ptr_mut(0) {
                // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
                unsafe { *n += 1 };
            }
            Err(4)
        }
    }
}

#[inline(always)]
fn base_event(r: &pt_regs, kind: EventKind) -> GoEvent {
    // At the probe point the stack-check prologue has not pushed anything yet, so [RSP] is the
    // return address into the caller.
    let caller_pc = read_u64(r.rsp, 0).unwrap_or(0);
    GoEvent {
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        tid: bpf_get_current_pid_tgid() as u32,
        kind: kind as u32,
        caller_pc,
        stack_id: NO_STACK,
        ..GoEvent::default()
    }
}

/// `func gopark(unlockf func(*g, unsafe.Pointer) bool, lock unsafe.Pointer, reason waitReason,
///              traceReason traceBlockReason, traceskip int)` (src/runtime/proc.go, Go 1.22–1.27):
/// RAX = unlockf, RBX = lock, RCX = reason (uint8).
#[uprobe]
pub fn gopark(ctx: ProbeContext) -> u32 {
    try_gopark(&ctx).unwrap_or_else(|e| e)
}

fn try_gopark(ctx: &ProbeContext) -> Result<u32, u32> {
    let l = layout()?;
    let r = regs(ctx);
    let g = r.r14;
    let mut ev = base_event(r, EventKind::Park);
    ev.goid = read_u64(g, l.g_goid)?;
    ev.obj = r.rbx;
    ev.reason = (r.rcx & 0xff) as u32;
    ev.parent_goid = read_u64(g, l.g_parent_goid).unwrap_or(0);
    ev.gopc = read_u64(g, l.g_gopc).unwrap_or(0);
    ev.startpc = read_u64(g, l.g_startpc).unwrap_or(0);

    // chansend/chanrecv set gp.waiting to their sudog, selectgo to the list of one sudog per
    // case linked by waitlink (src/runtime/chan.go, select.go), all before calling gopark.
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

    // The kernel walks frame pointers from RBP, which at this point (before gopark's own
    // `PUSHQ BP`) is the caller's frame: the stack reads gopark, then the caller's caller. The
    // caller itself is `caller_pc`; the agent splices it in.
    ev.stack_id = ctx
        .get_stackid(&USTACKS, BPF_F_USER_STACK as u64)
        .map(|id| id as u32)
        .unwrap_or(NO_STACK);

    // A sync primitive's entry point recorded which semaphore this goroutine goes to wait on.
    if let Some(w) = SEMA.get_ptr(ev.goid) {
        // SAFETY: pointer from a successful map lookup, valid for this program run.
        let w = unsafe { *w };
        ev.sema_addr = w.addr;
        ev.sema_kind = w.kind;
        let _ = SEMA.remove(ev.goid);
    }
    // Kept until `ready`, for the histograms and for a late send of a wait that turns long.
    let _ = PARKED.insert(ev.goid, ev, 0);
    if min_wait_ns() == 0 { emit(&ev) } else { Ok(0) }
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

/// Counts a finished wait at its site, in this CPU's copy of the site's histogram.
#[inline(always)]
fn record_wait(park: &GoEvent, wait_ns: u64) {
    let key = HistKey {
        stack_id: park.stack_id,
        reason: park.reason,
    };
    let h = match WAIT_HIST.get_ptr_mut(&key) {
        Some(h) => h,
        None => {
            let _ = WAIT_HIST.insert(&key, &EMPTY_HIST, BPF_NOEXIST);
            match WAIT_HIST.get_ptr_mut(&key) {
                Some(h) => h,
                None => return,
            }
        }
    };
    let i = bucket(wait_ns);
    // SAFETY: `h` points at this CPU's copy of a map value, valid for this program run, and
    // no other program writes it while this one runs on this CPU.
    unsafe {
        (*h).count += 1;
        (*h).total_ns += wait_ns;
        if i < WAIT_HIST_BUCKETS {
            (*h).buckets[i] += 1;
        }
    }
}

/// A zeroed histogram in read-only data: 336 bytes would not fit the 512-byte BPF stack next
/// to the events.
static EMPTY_HIST: WaitHist = WaitHist {
    count: 0,
    total_ns: 0,
    buckets: [0; WAIT_HIST_BUCKETS],
};

/// `func ready(gp *g, traceskip int, next bool)` (src/runtime/proc.go, Go 1.22–1.27):
/// RAX = gp, the goroutine being made runnable; R14 = the g doing it.
#[uprobe]
pub fn ready(ctx: ProbeContext) -> u32 {
    try_ready(&ctx).unwrap_or_else(|e| e)
}

fn try_ready(ctx: &ProbeContext) -> Result<u32, u32> {
    let l = layout()?;
    let r = regs(ctx);
    let mut ev = base_event(r, EventKind::Ready);
    ev.goid = read_u64(r.rax, l.g_goid)?;
    // The waker may be g0 (e.g. netpoll or timers on a system stack); its goid is 0 then.
    ev.peer_goid = read_u64(r.r14, l.g_goid).unwrap_or(0);
    let min = min_wait_ns();
    match PARKED.get_ptr(ev.goid) {
        Some(p) => {
            // SAFETY: pointer from a successful map lookup, valid for this program run (read
            // in place: a copy would not fit the BPF stack next to `ev`).
            let park = unsafe { &*p };
            let wait = ev.ts_ns.saturating_sub(park.ts_ns);
            record_wait(park, wait);
            let sent = if min == 0 {
                emit(&ev)
            } else if wait >= min {
                // A long wait: its park, sent now, then its end.
                emit(park).and_then(|_| emit(&ev))
            } else {
                Ok(0)
            };
            let _ = PARKED.remove(ev.goid);
            sent
        }
        // Parked before the attach (or evicted): its end is news either way.
        None => emit(&ev),
    }
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
    let mut ev = base_event(r, EventKind::Create);
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
    let mut ev = base_event(r, EventKind::Exit);
    ev.goid = read_u64(r.r14, l.g_goid)?;
    let _ = SEMA.remove(ev.goid);
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
    let l = layout()?;
    let r = regs(ctx);
    let goid = read_u64(r.r14, l.g_goid)?;
    // SAFETY: the context pointer comes from the kernel for this program type.
    let kind = unsafe { aya_ebpf::helpers::generated::bpf_get_attach_cookie(ctx.regs.cast()) };
    let w = SemaWait {
        addr: r.rax,
        kind: kind as u32,
        _pad0: 0,
    };
    SEMA.insert(goid, w, 0).map_err(|_| 5u32)?;
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
