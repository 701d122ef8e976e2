//! `makechan_ret`: where each channel was made. A plain uprobe (never a uretprobe: Go moves
//! goroutine stacks, and a return trampoline on a moved stack crashes the target) placed by the
//! agent on every `RET` instruction of `runtime.makechan` (src/runtime/chan.go), found by
//! decoding the function.
//!
//! At a `RET` of makechan, by Go's internal ABI on amd64 (src/cmd/compile/abi-internal.md):
//! - RAX holds the result, the new `*hchan`;
//! - [RSP] is the return address into makechan's caller (the `make(chan T, n)` site, or one of
//!   the wrappers `runtime.makechan64` and `reflect.makechan`);
//! - the epilogue (`ADDQ $framesize, SP; POPQ BP`) has already restored RBP to the caller's
//!   frame pointer, so [RBP+8] is the caller's own return address, and [[RBP]+8] the one above
//!   it (`reflect.makechan` is called by `reflect.MakeChan`, which the user's code calls).
//!
//! The three return addresses go into [`CHAN_SITES`] under the hchan's address; the agent
//! symbolizes them and skips the wrappers. A later `make` that gets the same address (after the
//! GC freed the first channel) overwrites the entry.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::ProbeContext,
};
use probes_ebpf::{CHAN_SITES_MAX_ENTRIES, ChanSite};

/// hchan address → where it was made. LRU: a program that makes channels without end keeps the
/// newest ones.
#[map]
static CHAN_SITES: LruHashMap<u64, ChanSite> =
    LruHashMap::with_max_entries(CHAN_SITES_MAX_ENTRIES, 0);

/// Hits of the probe, per CPU (no atomics); the agent sums them to watch the hit rate.
#[map]
static CHAN_SITE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[uprobe]
pub fn makechan_ret(ctx: ProbeContext) -> u32 {
    try_makechan_ret(&ctx).unwrap_or_else(|e| e)
}

#[inline(always)]
fn try_makechan_ret(ctx: &ProbeContext) -> Result<u32, u32> {
    if let Some(n) = CHAN_SITE_HITS.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; nothing else runs on this CPU while we do.
        unsafe { *n += 1 };
    }
    // SAFETY: for uprobe programs the context is the trapped task's pt_regs.
    let r: &pt_regs = unsafe { &*ctx.regs };
    let hchan = r.rax;
    if hchan == 0 {
        return Err(1);
    }
    // SAFETY (all three reads): bpf_probe_read_user faults safely on a bad address.
    let pc0 = unsafe { bpf_probe_read_user(r.rsp as *const u64) }.map_err(|_| 2u32)?;
    let [up_bp, pc1] = if r.rbp != 0 {
        unsafe { bpf_probe_read_user(r.rbp as *const [u64; 2]) }.unwrap_or([0, 0])
    } else {
        [0, 0]
    };
    let pc2 = if up_bp != 0 {
        unsafe { bpf_probe_read_user(up_bp.wrapping_add(8) as *const u64) }.unwrap_or(0)
    } else {
        0
    };
    let site = ChanSite {
        pc0,
        pc1,
        pc2,
        // SAFETY: a helper with no arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    };
    CHAN_SITES.insert(hchan, site, 0).map_err(|_| 3u32)?;
    Ok(0)
}
