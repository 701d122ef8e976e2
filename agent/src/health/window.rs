//! Heap growth over a time window, for the same-run diagnosis of a goroutine leak: "the
//! goroutines leaked and they hold N MB" is one finding when the session samples the heap
//! (`HealthReader::read_heap`, constant cost) alongside its goroutine samples and asks for the
//! growth over the leak's window (`detect::growth::Growth`, first to last sample).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::memstats::MemStats;
use super::view::bytes;
use super::{Globals, HealthLayout, HealthReader, Sources};
use crate::goruntime::GoBinary;

/// Samples kept (the oldest are dropped, but the first is kept: a window that starts at the
/// session's beginning still has its start).
const MAX_SAMPLES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    ns: u64,
    heap_alloc: u64,
    heap_inuse: u64,
    stack_inuse: u64,
    sys: u64,
}

/// The heap at the start and the end of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapGrowth {
    /// The samples used (monotonic ns): the last at or before the window's start (or the first
    /// after it), and the last at or before its end.
    pub from_ns: u64,
    pub to_ns: u64,
    pub heap_alloc_from: u64,
    pub heap_alloc_to: u64,
    pub heap_inuse_from: u64,
    pub heap_inuse_to: u64,
    /// Goroutine stacks (StackInuse): leaked goroutines hold theirs too.
    pub stack_inuse_from: u64,
    pub stack_inuse_to: u64,
    pub sys_from: u64,
    pub sys_to: u64,
}

impl HeapGrowth {
    /// HeapAlloc's change (negative: it shrank).
    pub fn heap_alloc_delta(&self) -> i64 {
        self.heap_alloc_to as i64 - self.heap_alloc_from as i64
    }

    /// One sentence for a leak finding.
    pub fn describe(&self, goroutines: u64) -> String {
        let change = |d: i64| {
            if d >= 0 {
                format!("grew by {}", bytes(d as u64))
            } else {
                format!("shrank by {}", bytes(d.unsigned_abs()))
            }
        };
        let secs = self.to_ns.saturating_sub(self.from_ns) as f64 / 1e9;
        let stacks = self.stack_inuse_to as i64 - self.stack_inuse_from as i64;
        format!(
            "over the same {secs:.1}s, as {goroutines} more goroutines blocked, the heap {} \
             (HeapAlloc {} -> {}, HeapInuse {} -> {}) and goroutine stacks {} (StackInuse {} -> {})",
            change(self.heap_alloc_delta()),
            bytes(self.heap_alloc_from),
            bytes(self.heap_alloc_to),
            bytes(self.heap_inuse_from),
            bytes(self.heap_inuse_to),
            change(stacks),
            bytes(self.stack_inuse_from),
            bytes(self.stack_inuse_to),
        )
    }
}

/// Heap samples of one target over a session.
#[derive(Debug, Default)]
pub struct HeapSeries {
    samples: VecDeque<Sample>,
}

/// A live session's heap samples, taken alongside its leak tracker's samples
/// (`detect::growth`), so that a leak finding tells the heap's growth over its own window; and
/// the session's one resolution of where the runtime's figures are, which the metrics endpoint
/// reads through too.
#[derive(Debug, Default)]
pub struct HeapSampler {
    /// Where the runtime's figures are (resolved at the first use); Err, why they cannot be
    /// found in this binary, which then gets no heap samples and no health metrics.
    at: Option<Result<(HealthLayout, Globals, Sources), String>>,
    pub series: HeapSeries,
}

impl HeapSampler {
    /// A reader of `pid`'s runtime figures, resolved once per session (milliseconds of DWARF or
    /// code decoding); Err says why they cannot be found.
    pub fn reader<'a>(
        &mut self,
        bin: &'a GoBinary,
        pid: u32,
        bias: u64,
    ) -> Result<HealthReader<'a>, String> {
        let at = self
            .at
            .get_or_insert_with(|| super::resolve(bin).map_err(|e| e.to_string()));
        match at {
            Ok(at) => Ok(HealthReader::with_resolved(bin, pid, bias, at.clone())),
            Err(e) => Err(e.clone()),
        }
    }

    /// Reads the heap figures of `pid` (a constant cost: no goroutine table) at `now_ns`.
    pub fn sample(&mut self, bin: &GoBinary, pid: u32, bias: u64, now_ns: u64) {
        let s = match self.reader(bin, pid, bias) {
            Ok(r) => r.read_heap(),
            Err(_) => return,
        };
        if let Ok(s) = s {
            self.series.push(now_ns, &s.memstats);
        }
    }
}

impl HeapSeries {
    /// Adds a reading taken at `now_ns` (monotonic), in time order.
    pub fn push(&mut self, now_ns: u64, m: &MemStats) {
        if self.samples.back().is_some_and(|s| s.ns > now_ns) {
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            // Keep the first; drop the second oldest.
            self.samples.remove(1);
        }
        self.samples.push_back(Sample {
            ns: now_ns,
            heap_alloc: m.heap_alloc,
            heap_inuse: m.heap_inuse,
            stack_inuse: m.stack_inuse,
            sys: m.sys,
        });
    }

    /// The heap at the start and end of `[from_ns, to_ns]`, if two distinct samples cover it.
    pub fn over(&self, from_ns: u64, to_ns: u64) -> Option<HeapGrowth> {
        let start = self
            .samples
            .iter()
            .rev()
            .find(|s| s.ns <= from_ns)
            .or_else(|| {
                self.samples
                    .iter()
                    .find(|s| s.ns >= from_ns && s.ns <= to_ns)
            })?;
        let end = self.samples.iter().rev().find(|s| s.ns <= to_ns)?;
        (end.ns > start.ns).then_some(HeapGrowth {
            from_ns: start.ns,
            to_ns: end.ns,
            heap_alloc_from: start.heap_alloc,
            heap_alloc_to: end.heap_alloc,
            heap_inuse_from: start.heap_inuse,
            heap_inuse_to: end.heap_inuse,
            stack_inuse_from: start.stack_inuse,
            stack_inuse_to: end.stack_inuse,
            sys_from: start.sys,
            sys_to: end.sys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(heap_alloc: u64) -> MemStats {
        MemStats {
            heap_alloc,
            heap_inuse: heap_alloc + 1000,
            stack_inuse: 2 * heap_alloc,
            sys: 10 * heap_alloc,
            ..Default::default()
        }
    }

    #[test]
    fn growth_over_a_window() {
        let mut h = HeapSeries::default();
        for i in 0..10u64 {
            h.push(i * 1_000_000_000, &m((1 + i) << 20));
        }
        let g = h.over(2_500_000_000, 7_000_000_000).unwrap();
        assert_eq!((g.from_ns, g.to_ns), (2_000_000_000, 7_000_000_000));
        assert_eq!(g.heap_alloc_delta(), 5 << 20);
        assert_eq!(
            g.describe(500),
            "over the same 5.0s, as 500 more goroutines blocked, the heap grew by 5.0MiB \
             (HeapAlloc 3.0MiB -> 8.0MiB, HeapInuse 3.0MiB -> 8.0MiB) and goroutine stacks grew \
             by 10.0MiB (StackInuse 6.0MiB -> 16.0MiB)"
        );
    }

    #[test]
    fn no_growth_without_two_samples() {
        let mut h = HeapSeries::default();
        assert_eq!(h.over(0, 10), None);
        h.push(5, &m(1));
        assert_eq!(h.over(0, 10), None);
        // A window starting before the first sample uses the first.
        h.push(8, &m(2));
        assert_eq!(h.over(0, 10).map(|g| g.heap_alloc_delta()), Some(1));
    }

    #[test]
    fn bounded_and_keeps_the_first() {
        let mut h = HeapSeries::default();
        for i in 0..1000u64 {
            h.push(i, &m(i));
        }
        assert_eq!(h.samples.len(), MAX_SAMPLES);
        assert_eq!(h.over(0, 999).map(|g| (g.from_ns, g.to_ns)), Some((0, 999)));
    }
}
