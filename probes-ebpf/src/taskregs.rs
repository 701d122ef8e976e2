//! `task_regs`: a task iterator that writes the user registers of the tasks it visits (the agent
//! restricts it to one tid) into its seq_file, as a [`UserRegs`]. See probes-ebpf/src/lib.rs.
//!
//! The context is `struct bpf_iter__task { struct bpf_iter_meta *meta; struct task_struct *task; }`
//! (kernel/bpf/task_iter.c); `meta->seq` is the first field of `struct bpf_iter_meta`
//! (include/linux/bpf.h). The loads of `meta`, `task` and `meta->seq` are direct (BTF-typed), as
//! the verifier requires for the pointers handed to bpf_task_pt_regs and bpf_seq_write. The
//! program runs once more with `task == NULL` at the end of the iteration.

use aya_ebpf::helpers::generated::{bpf_probe_read_kernel, bpf_seq_write, bpf_task_pt_regs};
use probes_ebpf::UserRegs;

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
