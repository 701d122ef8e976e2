//! The OS-thread view: programs on the scheduler tracepoints that keep one [`ThreadSched`] per
//! thread of the target process (on/off CPU, since when, why it went off, counters, and the
//! kernel stack of its last sleep).
//!
//! Classic tracepoints, records as in include/trace/events/sched.h and
//! /sys/kernel/tracing/events/sched/{sched_switch,sched_waking}/format (kernel 6.x):
//!   sched_switch: `pid_t prev_pid` @24, `long prev_state` @32, `pid_t next_pid` @56
//!   sched_waking: `pid_t pid` @24
//! Wake-ups use `sched_waking`, not `sched_wakeup`: try_to_wake_up (kernel/sched/core.c) fires
//! sched_waking in the waker's context, while sched_wakeup fires where the task is enqueued,
//! which for a wake-up queued to an idle remote CPU (ttwu_queue_wakelist) is that CPU's idle
//! task, so the waker would read as pid 0.
//! The agent reads the offsets from the format files and passes them in [`SchedConfig`].
//!
//! Filtering happens here, in the kernel, so that the agent only sees the target's threads:
//! - sched_switch runs in the context of `prev` (the task switching out, still `current`), so
//!   `bpf_get_current_pid_tgid() >> 32 == tgid` selects the target's switch-outs, and only those
//!   create entries.
//! - For `next_pid` (switch-in) and sched_waking's `pid` the tgid is not in the record, so only
//!   tids already in [`THREADS`] are updated: they were created by a target switch-out or
//!   seeded by the agent from /proc/PID/task.
//!
//! With `SCHED_F_SPANS` (the agent sets it for `--timeline`), each switch-in also sends the
//! off-CPU span it ends (switch-out to switch-in, with the state, the waker and the kernel stack
//! of the sleep) into the `SCHED_SPANS` ring buffer, so that a thread's track holds every sleep
//! of the session, not only the current one.
//!
//! Updates race benignly: a thread's switches are serialised by the run-queue locks, but a
//! wake-up on another CPU can interleave with a switch-in; the worst case is a stale `woken_ns`.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    btf_maps::StackTrace,
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::{btf_map, map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{TracePointContext, tracing::StackIdContext},
};
use probes_ebpf::{
    BPF_NOEXIST, KSTACK_DEPTH, KSTACKS_MAX_ENTRIES, OffCpuSpan, SCHED_F_KSTACKS, SCHED_F_SPANS,
    SCHED_SPANS_RING_BYTES, SPAN_F_BEFORE_ATTACH, SchedConfig, THREAD_F_SEEDED,
    THREADS_MAX_ENTRIES, ThreadSched, task_state,
};

#[map]
static SCHED_CONFIG: Array<SchedConfig> = Array::with_max_entries(1, 0);

#[map]
static THREADS: HashMap<u32, ThreadSched> = HashMap::with_max_entries(THREADS_MAX_ENTRIES, 0);

/// A BTF map so that the depth can be smaller than PERF_MAX_STACK_DEPTH (127): 4096 × 48 frames
/// is 1.5 MiB instead of 4 MiB.
#[btf_map]
static KSTACKS: StackTrace<{ KSTACKS_MAX_ENTRIES as usize }, 0, { KSTACK_DEPTH as usize }> =
    StackTrace::new();

/// Finished off-CPU spans, with `SCHED_F_SPANS` (see `probes_ebpf::MAP_SCHED_SPANS`).
#[map]
static SCHED_SPANS: RingBuf = RingBuf::with_byte_size(SCHED_SPANS_RING_BYTES, 0);

/// Spans dropped on a full ring; per CPU, so that counting needs no atomics.
#[map]
static SCHED_SPANS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Wake the agent only once the ring is this full; otherwise it drains on its own timer, and
/// the target's switch-ins pay no cross-CPU wake-up of the agent (as programs.rs `emit`).
const SPANS_WAKEUP_BYTES: u64 = (SCHED_SPANS_RING_BYTES / 8) as u64;

#[inline(always)]
fn config() -> Result<&'static SchedConfig, u32> {
    match SCHED_CONFIG.get(0) {
        Some(c) if c.tgid != 0 => Ok(c),
        _ => Err(1),
    }
}

#[inline(always)]
fn read_pid(ctx: &TracePointContext, off: u32) -> Result<u32, u32> {
    // SAFETY: bpf_probe_read_kernel on the tracepoint record; a bad offset only fails the read.
    let pid: i32 = unsafe { ctx.read_at(off as usize) }.map_err(|_| 2u32)?;
    if pid <= 0 { Err(3) } else { Ok(pid as u32) }
}

/// `sched_switch(prev → next)`.
#[tracepoint(category = "sched", name = "sched_switch")]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    try_sched_switch(&ctx).unwrap_or_else(|e| e)
}

fn try_sched_switch(ctx: &TracePointContext) -> Result<u32, u32> {
    let cfg = config()?;
    let now = unsafe { bpf_ktime_get_ns() };
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if (bpf_get_current_pid_tgid() >> 32) as u32 == cfg.tgid {
        // A failed switch-out update must not cost the switch-in below.
        let _ = switch_out(ctx, cfg, now, cpu);
    }
    let next = read_pid(ctx, cfg.switch_next_pid)?;
    if let Some(t) = THREADS.get_ptr_mut(next) {
        // SAFETY: a value slot of THREADS, valid while this program runs.
        let t = unsafe { &mut *t };
        if cfg.flags & SCHED_F_SPANS != 0 && t.on_cpu == 0 {
            emit_span(cfg, next, t, now, cpu);
        }
        if t.on_cpu == 0 && t.off_since_ns != 0 && now > t.off_since_ns {
            t.off_cpu_ns += now - t.off_since_ns;
        }
        t.on_cpu = 1;
        t.on_since_ns = now;
        t.woken_ns = 0;
        t.cpu = cpu;
        t.flags = 0;
    }
    Ok(0)
}

/// Sends the off-CPU span that the switch-in of `tid` at `now` ends, if it lasted at least
/// the configured minimum. `t` is the thread's entry before the switch-in updates it.
#[inline(always)]
fn emit_span(cfg: &SchedConfig, tid: u32, t: &ThreadSched, now: u64, cpu: u32) {
    let (off, flags) = if t.off_since_ns != 0 {
        (t.off_since_ns, 0)
    } else if t.flags & THREAD_F_SEEDED != 0 && t.prev_state & task_state::SLEEP_MASK != 0 {
        // Seeded asleep from /proc: the sleep began before the attach, its start is unknown.
        (cfg.attach_ns, SPAN_F_BEFORE_ATTACH)
    } else {
        return;
    };
    if off == 0 || now <= off || now - off < cfg.min_span_ns {
        return;
    }
    let Some(mut slot) = SCHED_SPANS.reserve::<OffCpuSpan>(0) else {
        // Never drop silently: the agent reports the sum of this per-CPU counter.
        if let Some(n) = SCHED_SPANS_LOST.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
            unsafe { *n += 1 };
        }
        return;
    };
    slot.write(OffCpuSpan {
        off_ns: off,
        on_ns: now,
        woken_ns: t.woken_ns,
        kstack_id: t.kstack_id,
        tid,
        prev_state: t.prev_state,
        waker_tid: if t.woken_ns != 0 { t.waker_tid } else { 0 },
        cpu,
        flags,
        _pad0: 0,
    });
    let wakeup = if SCHED_SPANS.query(BPF_RB_AVAIL_DATA as u64) >= SPANS_WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    slot.submit(wakeup as u64);
}

#[inline(always)]
fn switch_out(ctx: &TracePointContext, cfg: &SchedConfig, now: u64, cpu: u32) -> Result<(), u32> {
    let tid = read_pid(ctx, cfg.switch_prev_pid)?;
    // SAFETY: as read_pid.
    let raw: i64 = unsafe { ctx.read_at(cfg.switch_prev_state as usize) }.map_err(|_| 4u32)?;
    let state = (raw as u64 & 0x1ff) as u32;
    if state & task_state::DEAD != 0 {
        // The thread's last switch (do_task_dead: TASK_DEAD with exit_state EXIT_DEAD): forget it
        // so that the map does not fill with exited threads.
        let _ = THREADS.remove(tid);
        return Ok(());
    }
    let kstack_id = if cfg.flags & SCHED_F_KSTACKS != 0 && state & task_state::SLEEP_MASK != 0 {
        // Kernel stack of `current` (= prev) from the tracepoint's caller regs: __schedule and
        // below. A hash collision with another stack (EEXIST) leaves it unknown (-1).
        ctx.get_stackid(&KSTACKS, 0)
            .map(|id| id as i64)
            .unwrap_or(-1)
    } else {
        -1
    };
    let t = match THREADS.get_ptr_mut(tid) {
        Some(t) => t,
        None => {
            let fresh = ThreadSched {
                kstack_id: -1,
                ..ThreadSched::default()
            };
            // NOEXIST: a concurrent seed from the agent may have won; then update that one.
            let _ = THREADS.insert(tid, fresh, BPF_NOEXIST);
            THREADS.get_ptr_mut(tid).ok_or(5u32)?
        }
    };
    // SAFETY: a value slot of THREADS, valid while this program runs.
    let t = unsafe { &mut *t };
    if t.on_cpu != 0 && t.on_since_ns != 0 && now > t.on_since_ns {
        t.on_cpu_ns += now - t.on_since_ns;
    } else if t.on_cpu == 0 && t.woken_ns != 0 && now > t.woken_ns {
        // Woken without a switch-in since: the wake-up found the task still on its CPU, on its
        // way to sleep (try_to_wake_up → ttwu_runnable), so it ran from then until now. A seeded
        // entry reads as off CPU even then: /proc said S while it was going to sleep.
        t.on_cpu_ns += now - t.woken_ns;
    }
    t.on_cpu = 0;
    t.off_since_ns = now;
    t.woken_ns = 0;
    t.prev_state = state;
    t.switches += 1;
    t.kstack_id = kstack_id;
    t.cpu = cpu;
    t.flags = 0;
    Ok(())
}

/// `sched_waking(pid)`: a sleeping task is being woken (runs in the waker's context, once the
/// task's state matched the wake-up: try_to_wake_up in kernel/sched/core.c).
#[tracepoint(category = "sched", name = "sched_waking")]
pub fn sched_waking(ctx: TracePointContext) -> u32 {
    try_sched_waking(&ctx).unwrap_or_else(|e| e)
}

fn try_sched_waking(ctx: &TracePointContext) -> Result<u32, u32> {
    let cfg = config()?;
    let tid = read_pid(ctx, cfg.waking_pid)?;
    let t = THREADS.get_ptr_mut(tid).ok_or(0u32)?;
    // SAFETY: a value slot of THREADS, valid while this program runs.
    let t = unsafe { &mut *t };
    t.wakeups += 1;
    t.waker_tid = bpf_get_current_pid_tgid() as u32;
    // A wake-up of a task still on its CPU (ttwu_runnable) changes nothing else.
    if t.on_cpu == 0 {
        t.woken_ns = unsafe { bpf_ktime_get_ns() };
    }
    Ok(0)
}
