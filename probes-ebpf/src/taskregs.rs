//! Task iterators the agent runs for one tid at a time (it restricts the iteration to that tid):
//! - `task_regs` writes the task's user registers into its seq_file, as a [`UserRegs`];
//! - `task_kstack` writes the kernel stack of a sleeping task, as its return addresses
//!   (`bpf_get_task_stack`), so that a thread's kernel stack is read when the agent asks for it,
//!   instead of captured at every sleep on the scheduler's hot path.
//!
//! See probes-ebpf/src/lib.rs.
//!
//! The context is `struct bpf_iter__task { struct bpf_iter_meta *meta; struct task_struct *task; }`
//! (kernel/bpf/task_iter.c); `meta->seq` is the first field of `struct bpf_iter_meta`
//! (include/linux/bpf.h). The loads of `meta`, `task` and `meta->seq` are direct (BTF-typed), as
//! the verifier requires for the pointers handed to bpf_task_pt_regs and bpf_seq_write. The
//! program runs once more with `task == NULL` at the end of the iteration.

use aya_ebpf::helpers::generated::{
    bpf_get_task_stack, bpf_probe_read_kernel, bpf_seq_write, bpf_task_pt_regs,
};
use aya_ebpf::{macros::map, maps::PerCpuArray};
use probes_ebpf::{KSTACK_DEPTH, UserRegs};

/// `task_kstack`'s buffer: a stack of KSTACK_DEPTH frames is too big for the BPF stack.
#[map]
static KSTACK_BUF: PerCpuArray<[u64; KSTACK_DEPTH as usize]> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct IterTaskCtx {
    meta: *const *mut core::ffi::c_void,
    task: *mut aya_ebpf::bindings::task_struct,
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn task_regs(ctx: *mut core::ffi::c_void) -> i32 {
    try_task_regs(ctx).unwrap_or_else(|e| e)
}

#[inline(always)]
fn try_task_regs(ctx: *mut core::ffi::c_void) -> Result<i32, i32> {
    // SAFETY: the iterator context, as the kernel lays it out (see the module comment).
    let ctx = unsafe { &*(ctx as *const IterTaskCtx) };
    let task = ctx.task;
    if task.is_null() {
        return Ok(0);
    }
    // SAFETY: `meta` is never NULL for an iterator program; `seq` is its first field.
    let seq = unsafe { *ctx.meta };
    let mut regs = UserRegs::default();
    // SAFETY: helpers on the kernel's pointers; a failed read leaves the zeroed registers.
    unsafe {
        let at = bpf_task_pt_regs(task) as *const core::ffi::c_void;
        if bpf_probe_read_kernel(
            &mut regs as *mut UserRegs as *mut core::ffi::c_void,
            size_of::<UserRegs>() as u32,
            at,
        ) != 0
        {
            return Err(1);
        }
        bpf_seq_write(
            seq as *mut _,
            &regs as *const UserRegs as *const core::ffi::c_void,
            size_of::<UserRegs>() as u32,
        );
    }
    Ok(0)
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn task_kstack(ctx: *mut core::ffi::c_void) -> i32 {
    // An iterator program returns 0 (go on) or 1 (retry): a thread without a stack to show is
    // simply left out of the output.
    try_task_kstack(ctx).unwrap_or(0)
}

#[inline(always)]
fn try_task_kstack(ctx: *mut core::ffi::c_void) -> Result<i32, i32> {
    // SAFETY: the iterator context, as the kernel lays it out (see the module comment).
    let ctx = unsafe { &*(ctx as *const IterTaskCtx) };
    let task = ctx.task;
    if task.is_null() {
        return Ok(0);
    }
    // SAFETY: `meta` is never NULL for an iterator program; `seq` is its first field.
    let seq = unsafe { *ctx.meta };
    let buf = KSTACK_BUF.get_ptr_mut(0).ok_or(1)?;
    const SIZE: u32 = 8 * KSTACK_DEPTH;
    // SAFETY: helpers on the kernel's task pointer and this CPU's map value of SIZE bytes.
    // bpf_get_task_stack (kernel/bpf/stackmap.c) takes a reference on the task's stack and walks
    // it only while the task is off CPU, which is when the agent asks; it returns the bytes
    // written (the verifier bounds it by SIZE: do_refine_retval_range).
    unsafe {
        let n = bpf_get_task_stack(task, buf.cast(), SIZE, 0);
        if n <= 0 {
            return Err(2);
        }
        bpf_seq_write(
            seq as *mut _,
            buf as *const core::ffi::c_void,
            (n as u32).min(SIZE),
        );
    }
    Ok(0)
}
