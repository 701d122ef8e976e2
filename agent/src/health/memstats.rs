//! The figures of `runtime.ReadMemStats`, computed from what was read of the target as the
//! runtime computes them (src/runtime/mstats.go, `readmemstats_m`; the same in Go 1.22–1.27
//! except `inPtrScalarBits`, gone in 1.25).
//!
//! `readmemstats_m` runs with the world stopped and first flushes every P's mcache
//! (`flushallmcaches` → `mcache.releaseAll`, src/runtime/mcache.go), which moves the
//! allocations made from each cached span (`allocCount - allocCountBeforeCache` slots) and the
//! tiny-allocation count into the sharded `memstats.heapStats`. We cannot stop the target, so
//! we add those per-mcache amounts ourselves, as `releaseAll` would, to the sum of the three
//! `heapStatsDelta` shards (`consistentHeapStats.unsafeRead`).

use serde::{Deserialize, Serialize};

use super::layout::HealthLayout;

/// `gc.SizeClassToSize` (src/internal/runtime/gc/sizeclasses.go; `class_to_size` in
/// src/runtime/sizeclasses.go up to Go 1.24): the same 68 classes in Go 1.22–1.27.
pub const SIZE_CLASS_TO_SIZE: [u64; 68] = [
    0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320,
    352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792,
    2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728,
    10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672,
    32768,
];
/// `numSpanClasses` (src/runtime/mheap.go): two span classes (scan, noscan) per size class.
pub(crate) const NUM_SPAN_CLASSES: usize = 2 * SIZE_CLASS_TO_SIZE.len();
/// `memoryLimitHeapGoalHeadroomPercent` and `memoryLimitMinHeapGoalHeadroom`
/// (src/runtime/mgcpacer.go), the same in Go 1.22–1.27.
const MEMORY_LIMIT_HEADROOM_PERCENT: u64 = 3;
const MEMORY_LIMIT_MIN_HEADROOM: u64 = 1 << 20;

/// The `runtime.MemStats` figures, under their Go names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct MemStats {
    pub alloc: u64,
    pub total_alloc: u64,
    pub sys: u64,
    pub mallocs: u64,
    pub frees: u64,
    pub heap_alloc: u64,
    pub heap_sys: u64,
    pub heap_idle: u64,
    pub heap_inuse: u64,
    pub heap_released: u64,
    pub heap_objects: u64,
    pub stack_inuse: u64,
    pub stack_sys: u64,
    #[serde(rename = "MSpanInuse")]
    pub mspan_inuse: u64,
    #[serde(rename = "MSpanSys")]
    pub mspan_sys: u64,
    #[serde(rename = "MCacheInuse")]
    pub mcache_inuse: u64,
    #[serde(rename = "MCacheSys")]
    pub mcache_sys: u64,
    pub buck_hash_sys: u64,
    #[serde(rename = "GCSys")]
    pub gc_sys: u64,
    pub other_sys: u64,
    #[serde(rename = "NextGC")]
    pub next_gc: u64,
    /// Unix ns of the last GC's end, 0 if none.
    #[serde(rename = "LastGC")]
    pub last_gc: u64,
    pub pause_total_ns: u64,
    #[serde(rename = "NumGC")]
    pub num_gc: u32,
    #[serde(rename = "NumForcedGC")]
    pub num_forced_gc: u32,
    #[serde(rename = "GCCPUFraction")]
    pub gc_cpu_fraction: f64,
}

/// Little-endian integers at an offset of a buffer read from the target (0 past its end).
pub(crate) fn u64_at(b: &[u8], off: u32) -> u64 {
    b.get(off as usize..off as usize + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}
pub(crate) fn u32_at(b: &[u8], off: u32) -> u32 {
    b.get(off as usize..off as usize + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}
pub(crate) fn u16_at(b: &[u8], off: u32) -> u16 {
    b.get(off as usize..off as usize + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0)
}

/// The sum of the three `heapStatsDelta` shards (`consistentHeapStats.unsafeRead`).
#[derive(Debug, Clone)]
pub struct HeapStats {
    pub committed: i64,
    pub released: i64,
    pub in_heap: i64,
    pub in_stacks: i64,
    pub in_work_bufs: i64,
    pub in_ptr_scalar_bits: i64,
    pub tiny_alloc_count: u64,
    pub large_alloc: u64,
    pub large_alloc_count: u64,
    pub small_alloc_count: [u64; 68],
    pub large_free: u64,
    pub large_free_count: u64,
    pub small_free_count: [u64; 68],
}

impl Default for HeapStats {
    fn default() -> Self {
        Self {
            committed: 0,
            released: 0,
            in_heap: 0,
            in_stacks: 0,
            in_work_bufs: 0,
            in_ptr_scalar_bits: 0,
            tiny_alloc_count: 0,
            large_alloc: 0,
            large_alloc_count: 0,
            small_alloc_count: [0; 68],
            large_free: 0,
            large_free_count: 0,
            small_free_count: [0; 68],
        }
    }
}

impl HeapStats {
    /// `heapStatsDelta.merge` over `consistentHeapStats.stats` (src/runtime/mstats.go).
    pub(crate) fn merge_shards(mstats: &[u8], l: &HealthLayout) -> Self {
        let d = &l.heap_stats_delta;
        let mut out = HeapStats::default();
        for shard in 0..3 {
            let base = l.mstats.heap_stats + shard * d.size;
            let i = |off: u32| u64_at(mstats, base + off);
            out.committed += i(d.committed) as i64;
            out.released += i(d.released) as i64;
            out.in_heap += i(d.in_heap) as i64;
            out.in_stacks += i(d.in_stacks) as i64;
            out.in_work_bufs += i(d.in_work_bufs) as i64;
            if let Some(o) = d.in_ptr_scalar_bits {
                out.in_ptr_scalar_bits += i(o) as i64;
            }
            out.tiny_alloc_count = out.tiny_alloc_count.wrapping_add(i(d.tiny_alloc_count));
            out.large_alloc = out.large_alloc.wrapping_add(i(d.large_alloc));
            out.large_alloc_count = out.large_alloc_count.wrapping_add(i(d.large_alloc_count));
            out.large_free = out.large_free.wrapping_add(i(d.large_free));
            out.large_free_count = out.large_free_count.wrapping_add(i(d.large_free_count));
            for c in 0..68u32 {
                out.small_alloc_count[c as usize] =
                    out.small_alloc_count[c as usize].wrapping_add(i(d.small_alloc_count + 8 * c));
                out.small_free_count[c as usize] =
                    out.small_free_count[c as usize].wrapping_add(i(d.small_free_count + 8 * c));
            }
        }
        out
    }
}

/// What `mcache.releaseAll` would still add: bytes and objects allocated from cached spans,
/// and tiny allocations, not yet in `memstats.heapStats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unflushed {
    pub bytes: u64,
    pub objects: u64,
    pub tiny: u64,
}

/// The `gcControllerState` fields read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Controller {
    pub gc_percent: i32,
    pub memory_limit: i64,
    pub gc_percent_heap_goal: u64,
    pub sweep_dist_min_trigger: u64,
    pub triggered: u64,
    pub heap_marked: u64,
    pub heap_in_use: u64,
    pub heap_released: u64,
    pub heap_free: u64,
    pub total_alloc: u64,
    pub total_free: u64,
    pub mapped_ready: u64,
}

impl Controller {
    pub(crate) fn read(b: &[u8], l: &HealthLayout) -> Self {
        let c = &l.gc_controller;
        Controller {
            gc_percent: u32_at(b, c.gc_percent) as i32,
            memory_limit: u64_at(b, c.memory_limit) as i64,
            gc_percent_heap_goal: u64_at(b, c.gc_percent_heap_goal),
            sweep_dist_min_trigger: u64_at(b, c.sweep_dist_min_trigger),
            triggered: u64_at(b, c.triggered),
            heap_marked: u64_at(b, c.heap_marked),
            heap_in_use: u64_at(b, c.heap_in_use),
            heap_released: u64_at(b, c.heap_released),
            heap_free: u64_at(b, c.heap_free),
            total_alloc: u64_at(b, c.total_alloc),
            total_free: u64_at(b, c.total_free),
            mapped_ready: u64_at(b, c.mapped_ready),
        }
    }

    /// `gcControllerState.heapGoal` → `heapGoalInternal` and `memoryLimitHeapGoal`
    /// (src/runtime/mgcpacer.go; unchanged in Go 1.22–1.27).
    pub fn heap_goal(&self) -> u64 {
        let mut goal = self.gc_percent_heap_goal;
        let limit_goal = self.memory_limit_heap_goal();
        if limit_goal < goal {
            return limit_goal;
        }
        goal = goal.max(self.sweep_dist_min_trigger);
        const MIN_RUNWAY: u64 = 64 << 10;
        if self.triggered != u64::MAX && goal < self.triggered.wrapping_add(MIN_RUNWAY) {
            goal = self.triggered + MIN_RUNWAY;
        }
        goal
    }

    fn memory_limit_heap_goal(&self) -> u64 {
        let heap_alloc = self.total_alloc.wrapping_sub(self.total_free);
        let mapped_ready = self.mapped_ready;
        let memory_limit = self.memory_limit as u64;
        // The runtime retries until heapFree+heapAlloc <= mappedReady; a torn read of ours may
        // break that, so saturate instead.
        let non_heap = mapped_ready.saturating_sub(self.heap_free.saturating_add(heap_alloc));
        let overage = mapped_ready.saturating_sub(memory_limit);
        if non_heap.saturating_add(overage) >= memory_limit {
            return self.heap_marked;
        }
        let mut goal = memory_limit - (non_heap + overage);
        let headroom = (goal / 100 * MEMORY_LIMIT_HEADROOM_PERCENT).max(MEMORY_LIMIT_MIN_HEADROOM);
        if goal < headroom || goal - headroom < headroom {
            goal = headroom;
        } else {
            goal -= headroom;
        }
        goal.max(self.heap_marked)
    }
}

/// The `mstats` fields outside heapStats.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mstats {
    pub stacks_sys: u64,
    pub mspan_sys: u64,
    pub mcache_sys: u64,
    pub buckhash_sys: u64,
    pub gc_misc_sys: u64,
    pub other_sys: u64,
    pub last_gc_unix: u64,
    pub pause_total_ns: u64,
    pub numgc: u32,
    pub numforcedgc: u32,
    pub gc_cpu_fraction: f64,
}

/// `readmemstats_m`'s population of `MemStats` (src/runtime/mstats.go).
pub fn compute_memstats(
    hs: &HeapStats,
    un: Unflushed,
    ms: &Mstats,
    c: &Controller,
    spanalloc_inuse: u64,
    cachealloc_inuse: u64,
) -> MemStats {
    let mut total_alloc = hs.large_alloc;
    let mut n_malloc = hs.large_alloc_count;
    let mut total_free = hs.large_free;
    let mut n_free = hs.large_free_count;
    for (i, size) in SIZE_CLASS_TO_SIZE.iter().enumerate() {
        total_alloc = total_alloc.wrapping_add(hs.small_alloc_count[i].wrapping_mul(*size));
        n_malloc = n_malloc.wrapping_add(hs.small_alloc_count[i]);
        total_free = total_free.wrapping_add(hs.small_free_count[i].wrapping_mul(*size));
        n_free = n_free.wrapping_add(hs.small_free_count[i]);
    }
    // What flushallmcaches would have added first (mcache.releaseAll).
    total_alloc = total_alloc.wrapping_add(un.bytes);
    n_malloc = n_malloc.wrapping_add(un.objects);
    let tiny = hs.tiny_alloc_count.wrapping_add(un.tiny);
    n_free = n_free.wrapping_add(tiny);
    n_malloc = n_malloc.wrapping_add(tiny);
    let stack_in_use = hs.in_stacks as u64;
    let work_bufs = hs.in_work_bufs as u64;
    let ptr_scalar = hs.in_ptr_scalar_bits as u64;
    let total_mapped = c.heap_in_use
        + c.heap_free
        + c.heap_released
        + ms.stacks_sys
        + ms.mspan_sys
        + ms.mcache_sys
        + ms.buckhash_sys
        + ms.gc_misc_sys
        + ms.other_sys
        + stack_in_use
        + work_bufs
        + ptr_scalar;
    let heap_alloc = total_alloc.wrapping_sub(total_free);
    MemStats {
        alloc: heap_alloc,
        total_alloc,
        sys: total_mapped,
        mallocs: n_malloc,
        frees: n_free,
        heap_alloc,
        heap_sys: c.heap_in_use + c.heap_free + c.heap_released,
        heap_idle: c.heap_free + c.heap_released,
        heap_inuse: c.heap_in_use,
        heap_released: c.heap_released,
        heap_objects: n_malloc.wrapping_sub(n_free),
        stack_inuse: stack_in_use,
        stack_sys: stack_in_use + ms.stacks_sys,
        mspan_inuse: spanalloc_inuse,
        mspan_sys: ms.mspan_sys,
        mcache_inuse: cachealloc_inuse,
        mcache_sys: ms.mcache_sys,
        buck_hash_sys: ms.buckhash_sys,
        gc_sys: ms.gc_misc_sys + work_bufs + ptr_scalar,
        other_sys: ms.other_sys,
        // heapGoal runs after flushallmcaches, whose releaseAll has added the cached spans'
        // allocations to gcController.totalAlloc too: the memory-limit goal subtracts the
        // heap in use (mgcpacer.go, memoryLimitHeapGoal).
        next_gc: Controller {
            total_alloc: c.total_alloc.wrapping_add(un.bytes),
            ..*c
        }
        .heap_goal(),
        last_gc: ms.last_gc_unix,
        pause_total_ns: ms.pause_total_ns,
        num_gc: ms.numgc,
        num_forced_gc: ms.numforcedgc,
        gc_cpu_fraction: ms.gc_cpu_fraction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_goal_follows_gogc_without_a_limit() {
        let c = Controller {
            gc_percent: 100,
            memory_limit: i64::MAX,
            gc_percent_heap_goal: 4 << 20,
            triggered: u64::MAX,
            heap_marked: 1 << 20,
            mapped_ready: 8 << 20,
            heap_free: 1 << 20,
            total_alloc: 3 << 20,
            total_free: 1 << 20,
            ..Default::default()
        };
        assert_eq!(c.heap_goal(), 4 << 20);
        // A trigger close to the goal pushes it to trigger + 64 KiB (minRunway).
        let c2 = Controller {
            triggered: (4 << 20) - 1000,
            ..c
        };
        assert_eq!(c2.heap_goal(), (4 << 20) - 1000 + (64 << 10));
    }

    #[test]
    fn heap_goal_under_a_memory_limit() {
        // limit 10 MiB, mapped 8 MiB, free 1 MiB, alloc 2 MiB → non-heap 5 MiB;
        // goal = 10 - 5 = 5 MiB, minus max(3 %, 1 MiB) headroom = 4 MiB.
        let c = Controller {
            gc_percent: 100,
            memory_limit: 10 << 20,
            gc_percent_heap_goal: 64 << 20,
            triggered: u64::MAX,
            heap_marked: 1 << 20,
            mapped_ready: 8 << 20,
            heap_free: 1 << 20,
            total_alloc: 3 << 20,
            total_free: 1 << 20,
            ..Default::default()
        };
        assert_eq!(c.heap_goal(), 4 << 20);
    }

    #[test]
    fn memstats_from_shards_and_mcaches() {
        let mut hs = HeapStats {
            large_alloc: 100_000,
            large_alloc_count: 2,
            large_free: 40_000,
            large_free_count: 1,
            tiny_alloc_count: 5,
            in_stacks: 32768,
            in_work_bufs: 4096,
            ..Default::default()
        };
        hs.small_alloc_count[1] = 10; // 8-byte objects
        hs.small_free_count[1] = 4;
        let un = Unflushed {
            bytes: 3 * 16,
            objects: 3,
            tiny: 2,
        };
        let ms = Mstats {
            stacks_sys: 1,
            mspan_sys: 2,
            mcache_sys: 3,
            buckhash_sys: 4,
            gc_misc_sys: 5,
            other_sys: 6,
            ..Default::default()
        };
        let c = Controller {
            heap_in_use: 1000,
            heap_free: 200,
            heap_released: 30,
            triggered: u64::MAX,
            memory_limit: i64::MAX,
            ..Default::default()
        };
        let m = compute_memstats(&hs, un, &ms, &c, 7, 8);
        assert_eq!(m.total_alloc, 100_000 + 80 + 48);
        assert_eq!(m.heap_alloc, 100_000 + 80 + 48 - 40_000 - 32);
        assert_eq!(m.mallocs, 2 + 10 + 3 + 7);
        assert_eq!(m.frees, 1 + 4 + 7);
        assert_eq!(m.heap_objects, m.mallocs - m.frees);
        assert_eq!(m.heap_sys, 1230);
        assert_eq!(m.heap_idle, 230);
        assert_eq!(m.sys, 1230 + 21 + 32768 + 4096);
        assert_eq!(m.stack_sys, 32769);
        assert_eq!(m.gc_sys, 5 + 4096);
    }
}
