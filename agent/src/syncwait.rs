//! What a goroutine found waiting by a scan waits on, when its wait reason and the semaphore
//! table do not say it all. Two cases need the goroutine's stack:
//!
//! - Before Go 1.24 `sync.(*WaitGroup).Wait` parks with the plain "semacquire" reason
//!   (src/sync/waitgroup.go calls runtime_Semacquire), which runtime-internal semaphores use
//!   too; the semaphore table gives the address, and the stack tells it is a WaitGroup's.
//! - `sync.(*Cond).Wait` parks in `notifyListWait` (src/runtime/sema.go), which queues its sudog
//!   on the Cond's own notifyList and sets no `g.waiting`, so nothing in the g points at the Cond.
//!   But `Cond.Wait` still needs `c` after the park (`c.L.Lock()`, src/sync/cond.go), so the
//!   compiler keeps it in Cond.Wait's frame (the Go register ABI has no callee-saved registers).
//!   Each word of that frame is a candidate; a candidate is the Cond only if its notifyList
//!   (at +16) has this very goroutine's sudog on its `head`→`next` list. A wrong guess cannot
//!   pass that check, so no address is ever guessed.

use probes_ebpf::SemaKind;

use crate::goruntime::GoBinary;
use crate::goruntime::syncobj::field_offset;
use crate::memory::ProcessMemory;
use crate::model::Goroutine;

/// `notifyList{wait atomic.Uint32; notify uint32; lock mutex; head *sudog; tail *sudog}`
/// (src/runtime/sema.go; `mutex` is one word in release builds): `head` at +16.
const NOTIFYLIST_HEAD: u64 = 16;
/// Sudogs followed on one notifyList (a torn list must end).
const MAX_NOTIFY_WAITERS: usize = 4096;
/// Words of Cond.Wait's frame tried as its receiver, beyond the frame itself: the register
/// arguments' spill slots sit just above the return address (src/cmd/compile/abi-internal.md).
const ARG_SPILL_WORDS: u64 = 4;
/// Largest frame we search (Cond.Wait's is a few words).
const MAX_FRAME_BYTES: u64 = 512;

/// Fills in what a scanned wait left open, from `stack` (its PCs, innermost first) and memory.
pub fn refine(bin: &GoBinary, bias: u64, mem: &ProcessMemory, g: &mut Goroutine, stack: &[u64]) {
    let reason = bin.wait_reason(g.reason);
    let in_func = |name: &str| {
        stack
            .iter()
            .any(|&pc| bin.func_name(pc.wrapping_sub(bias).wrapping_sub(1)) == Some(name))
    };
    match reason.as_ref() {
        "semacquire" => {
            if let Some((addr, 0)) = g.sema
                && in_func("sync.(*WaitGroup).Wait")
            {
                g.sema = Some((addr, SemaKind::WaitGroup as u32));
            }
        }
        "sync.Cond.Wait" if g.sema.is_none() => {
            if let Some(cond) = find_cond(bin, bias, mem, g) {
                let notify = cond + field_offset(SemaKind::Cond);
                g.sema = Some((notify, SemaKind::Cond as u32));
            }
        }
        _ => {}
    }
}

/// The Cond a goroutine waits on: the candidate from Cond.Wait's frame whose notifyList holds
/// this goroutine's sudog.
fn find_cond(bin: &GoBinary, bias: u64, mem: &ProcessMemory, g: &Goroutine) -> Option<u64> {
    let l = &bin.layout.g;
    let mut bp = mem.read_u64(g.g_addr + u64::from(l.sched_bp)).ok()?;
    // Frame by frame from gopark: [bp] = caller's bp, [bp+8] = return address into the caller.
    for _ in 0..crate::unwind::MAX_FRAMES {
        let (next, ret) = (mem.read_u64(bp).ok()?, mem.read_u64(bp + 8).ok()?);
        if next <= bp {
            return None;
        }
        if bin.func_name(ret.wrapping_sub(bias).wrapping_sub(1)) == Some("sync.(*Cond).Wait") {
            // Cond.Wait's frame runs from just above this callee's return address up to its
            // own saved bp, then its arguments' spill slots.
            let lo = bp + 16;
            let hi = (next + 16 + 8 * ARG_SPILL_WORDS).min(lo + MAX_FRAME_BYTES);
            let mut words = vec![0u8; (hi - lo) as usize];
            mem.read(lo, &mut words).ok()?;
            return words
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
                .filter(|&p| p != 0 && p % 8 == 0)
                .flat_map(|p| [p, p.wrapping_sub(field_offset(SemaKind::Cond))])
                .find(|&cond| queued_on(bin, mem, cond + field_offset(SemaKind::Cond), g.g_addr));
        }
        bp = next;
    }
    None
}

/// Whether goroutine `g_addr` has a sudog on the notifyList at `list`.
fn queued_on(bin: &GoBinary, mem: &ProcessMemory, list: u64, g_addr: u64) -> bool {
    let s = &bin.layout.sudog;
    let mut sg = match mem.read_u64(list + NOTIFYLIST_HEAD) {
        Ok(h) => h,
        Err(_) => return false,
    };
    for _ in 0..MAX_NOTIFY_WAITERS {
        if sg == 0 {
            return false;
        }
        match mem.read_u64(sg + u64::from(s.g)) {
            Ok(g) if g == g_addr => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        sg = match mem.read_u64(sg + u64::from(s.next)) {
            Ok(n) => n,
            Err(_) => return false,
        };
    }
    false
}
