//! Entry-only uprobes on the Go runtime. Never uretprobes: Go copies goroutine stacks when they
//! grow, and a return-address trampoline on a moved stack crashes the target.
//!
//! Registers follow Go's internal ABI on amd64 (src/cmd/compile/abi-internal.md): the current g is
//! in R14, and integer arguments are passed in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11. The agent
//! attaches each probe at the first instruction after the function's stack-bound check
//! (`CMPQ SP, 0x10(R14); JBE morestack`), where the argument registers are still untouched.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{Array, PerCpuArray, RingBuf},
    programs::ProbeContext,
};
use probes_ebpf::{EVENTS_RING_BYTES, EventKind, GoEvent, RuntimeLayout};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map]
static LAYOUT: Array<RuntimeLayout> = Array::with_max_entries(1, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn regs(ctx: &ProbeContext) -> &pt_regs {
    // SAFETY: for uprobe programs the context is the trapped task's pt_regs.
    unsafe { &*ctx.regs }
}

#[inline(always)]
fn layout() -> Result<&'static RuntimeLayout, u32> {
    LAYOUT.get(0).ok_or(1)
}

/// Reads `g.goid` of the g at `g`.
#[inline(always)]
fn goid_of(g: u64, layout: &RuntimeLayout) -> Result<u64, u32> {
    if g == 0 {
        return Err(2);
    }
    let p = (g + layout.g_goid as u64) as *const u64;
    // SAFETY: bpf_probe_read_user faults safely on a bad address.
    unsafe { bpf_probe_read_user(p) }.map_err(|_| 3)
}

#[inline(always)]
fn emit(ev: GoEvent) -> Result<u32, u32> {
    match EVENTS.reserve::<GoEvent>(0) {
        Some(mut slot) => {
            slot.write(ev);
            slot.submit(0);
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
    // SAFETY: bpf_probe_read_user faults safely.
    let caller_pc = unsafe { bpf_probe_read_user(r.rsp as *const u64) }.unwrap_or(0);
    GoEvent {
        ts_ns: unsafe { bpf_ktime_get_ns() },
        tid: bpf_get_current_pid_tgid() as u32,
        kind: kind as u32,
        caller_pc,
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
    let layout = layout()?;
    let r = regs(ctx);
    let mut ev = base_event(r, EventKind::Park);
    ev.goid = goid_of(r.r14, layout)?;
    ev.obj = r.rbx;
    ev.reason = (r.rcx & 0xff) as u32;
    emit(ev)
}

/// `func ready(gp *g, traceskip int, next bool)` (src/runtime/proc.go, Go 1.22–1.27):
/// RAX = gp, the goroutine being made runnable; R14 = the g doing it.
#[uprobe]
pub fn ready(ctx: ProbeContext) -> u32 {
    try_ready(&ctx).unwrap_or_else(|e| e)
}

fn try_ready(ctx: &ProbeContext) -> Result<u32, u32> {
    let layout = layout()?;
    let r = regs(ctx);
    let mut ev = base_event(r, EventKind::Ready);
    ev.goid = goid_of(r.rax, layout)?;
    // The waker may be g0 (e.g. netpoll or timers on a system stack); its goid is 0 then.
    ev.peer_goid = goid_of(r.r14, layout).unwrap_or(0);
    emit(ev)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; loop to satisfy the `!` type.
    loop {}
}
