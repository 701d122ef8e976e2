//! What the detector needs from a live target beyond the model: the channels' buffers, and a
//! census of the program's goroutines for the global-deadlock check, taken on every scan so
//! that a process about to be killed by the runtime's deadlock detector is reported first.

use rustc_hash::FxHashMap;

use super::ChanState;
use crate::goruntime::layout::HchanLayout;
use crate::memory::ProcessMemory;

/// Buffers of the channels goroutines were seen sending on, read once per channel when first
/// seen (a send parks only on a full buffer, and `dataqsiz` never changes), so that a report
/// made after the target exited still knows them.
#[derive(Default)]
pub struct ChanCache {
    pub chans: FxHashMap<u64, ChanState>,
}

/// Most channels remembered.
const MAX_CHANS: usize = 16_384;

impl ChanCache {
    /// Reads `runtime.hchan` (qcount, dataqsiz, closed, timer) of each of `chans` not known
    /// yet, in batched reads.
    pub fn note_many(&mut self, mem: &ProcessMemory, layout: &HchanLayout, chans: &[u64]) {
        let want: Vec<u64> = chans
            .iter()
            .copied()
            .filter(|c| *c != 0 && !self.chans.contains_key(c))
            .take(MAX_CHANS.saturating_sub(self.chans.len()))
            .collect();
        let size = (layout.size as usize).clamp(8, 256);
        let mut bufs = vec![0u8; want.len() * size];
        let mut ranges: Vec<(u64, &mut [u8])> =
            want.iter().copied().zip(bufs.chunks_mut(size)).collect();
        let Ok(ok) = mem.read_many(&mut ranges) else {
            return;
        };
        for ((&c, buf), ok) in want.iter().zip(bufs.chunks(size)).zip(ok) {
            if ok
                && let Some(state) = chan_state(layout, |off| {
                    let off = off as usize;
                    buf.get(off..off + 8)
                        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                })
            {
                self.chans.insert(c, state);
            }
        }
    }
}

/// A channel's state from its `runtime.hchan` fields, read by `read(offset)`.
fn chan_state(layout: &HchanLayout, read: impl Fn(u32) -> Option<u64>) -> Option<ChanState> {
    {
        let (len, cap, closed, elemsize) = (
            read(layout.qcount)?,
            read(layout.dataqsiz)?,
            read(layout.closed)?,
            read(layout.elemsize)?,
        );
        // src/runtime/chan.go: `timer *timer // timer feeding this chan` (Go >= 1.23).
        let timer = match layout.timer {
            Some(off) => read(off).is_some_and(|t| t != 0),
            None => cap == 1 && elemsize as u16 == 24,
        };
        Some(ChanState {
            cap,
            len,
            closed: closed as u32 != 0,
            timer,
        })
    }
}

/// The program's goroutines (the runtime's own left out) in one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// All of them.
    pub user: usize,
    /// How many are waiting on a channel, a select or a sync primitive (waits only another
    /// goroutine can end); the others run, are runnable, sleep, wait for I/O or a timer, or are
    /// in a system call.
    pub stuck: usize,
}

impl Census {
    /// Every goroutine of the program is stuck.
    pub fn all_stuck(&self) -> bool {
        self.user > 0 && self.stuck == self.user
    }
}

/// Whether a wait reason is one only another goroutine can end (channels, selects, sync).
pub fn is_stuck_reason(reason: &str) -> bool {
    reason.starts_with("chan ")
        || reason.starts_with("select")
        || reason.starts_with("sync.")
        || reason == "semacquire"
}

/// Tracks how long the whole program has been stuck, across scans.
#[derive(Debug, Default)]
pub struct GlobalWatch {
    pub last: Census,
    /// When every goroutine was first seen stuck in the current run of such scans.
    pub stuck_since_ns: Option<u64>,
    /// Reported already (once per session).
    pub reported: bool,
}

impl GlobalWatch {
    /// Folds in a census taken at `now_ns`; true when the program has now been stuck for at least
    /// `threshold_ns` and this was not reported yet.
    pub fn observe(&mut self, c: Census, now_ns: u64, threshold_ns: u64) -> bool {
        self.last = c;
        if !c.all_stuck() {
            self.stuck_since_ns = None;
            return false;
        }
        let since = *self.stuck_since_ns.get_or_insert(now_ns);
        if !self.reported && now_ns.saturating_sub(since) >= threshold_ns {
            self.reported = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_reasons() {
        for r in [
            "chan receive",
            "chan send (nil chan)",
            "select",
            "select (no cases)",
            "sync.Mutex.Lock",
            "semacquire",
        ] {
            assert!(is_stuck_reason(r), "{r}");
        }
        for r in [
            "sleep",
            "IO wait",
            "GC worker (idle)",
            "timer goroutine (idle)",
        ] {
            assert!(!is_stuck_reason(r), "{r}");
        }
    }

    #[test]
    fn global_watch_waits_for_the_threshold_and_resets() {
        let stuck = Census { user: 3, stuck: 3 };
        let busy = Census { user: 3, stuck: 2 };
        let mut w = GlobalWatch::default();
        assert!(!w.observe(stuck, 100, 50));
        assert!(!w.observe(busy, 120, 50));
        assert!(!w.observe(stuck, 130, 50));
        assert!(!w.observe(stuck, 170, 50));
        assert!(w.observe(stuck, 180, 50));
        assert!(!w.observe(stuck, 500, 50), "reported once");
        assert!(!Census::default().all_stuck());
    }
}
