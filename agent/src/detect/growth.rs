//! BP16, goroutine leak growth (the LeakProf approach): the number of goroutines blocked at one
//! site — one `go` statement and one wait reason — sampled over the session. A site whose count
//! keeps rising is leaking, however normal each single wait looks; a worker pool's count stays
//! flat, a burst's rises and falls.

use rustc_hash::FxHashMap;

use crate::model::Model;

/// Samples are taken at most this often.
pub const SAMPLE_EVERY_NS: u64 = 200_000_000;
/// Samples kept per site (the oldest are dropped, keeping the first).
const MAX_SAMPLES: usize = 64;
/// Sites tracked at most.
const MAX_SITES: usize = 4096;
/// A leak grew at least this many times, and by at least this many goroutines.
pub const MIN_RISES: usize = 3;
pub const MIN_GROWTH: u64 = 3;

/// A site: the `go` statement (gopc) and the wait reason code.
pub type Site = (u64, u32);

#[derive(Debug, Default)]
pub struct GrowthTracker {
    last_ns: u64,
    samples: Samples<Site>,
}

/// A growing site as the detector matches it against the report's goroutines: the `go`
/// statement's `file:line` and the wait reason's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrowthSite {
    pub location: Option<crate::report::Text>,
    pub reason: crate::report::Text,
    pub growth: Growth,
    /// The target's heap over the same window, where the session sampled it (a live session
    /// with the runtime's health figures found; not from a trace).
    pub heap: Option<crate::health::window::HeapGrowth>,
}

/// A site whose count kept rising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Growth {
    pub gopc: u64,
    pub reason: u32,
    pub first: u64,
    pub last: u64,
    pub rises: usize,
    /// From the first sample to the last, ns.
    pub span_ns: u64,
    /// The first sample's time (the session's clock: CLOCK_MONOTONIC ns live, trace ns in a
    /// trace), so the heap's growth over the same window can be told with the finding.
    pub start_ns: u64,
}

/// Counts per site over time, bounded: at most [`MAX_SITES`] sites of at most [`MAX_SAMPLES`]
/// samples (the first kept). Shared by the live tracker and the trace's (`crate::fuse`).
#[derive(Debug)]
pub struct Samples<K> {
    pub series: FxHashMap<K, Vec<(u64, u64)>>,
}

impl<K> Default for Samples<K> {
    fn default() -> Self {
        Self {
            series: FxHashMap::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Samples<K> {
    /// One sample at `now_ns`: `counts` per site; sites seen before and absent now count as 0
    /// (a pool that drained).
    pub fn record(&mut self, now_ns: u64, counts: FxHashMap<K, u64>) {
        for (site, series) in &mut self.series {
            if !counts.contains_key(site) {
                series.push((now_ns, 0));
            }
        }
        for (site, n) in counts {
            if self.series.len() >= MAX_SITES && !self.series.contains_key(&site) {
                continue;
            }
            self.series.entry(site).or_default().push((now_ns, n));
        }
        for series in self.series.values_mut() {
            if series.len() > MAX_SAMPLES {
                // Keep the first sample: growth is measured from it.
                series.remove(1);
            }
        }
    }

    /// The sites that grew (see [`growth`]): (site, first, last, rises, span, start).
    pub fn growing(&self) -> Vec<(K, u64, u64, usize, u64, u64)> {
        self.series
            .iter()
            .filter_map(|(k, s)| {
                let (first, last, rises, span) = growth(s)?;
                Some((k.clone(), first, last, rises, span, s.first()?.0))
            })
            .collect()
    }
}

impl GrowthTracker {
    /// Counts the blocked goroutines of `model` by site, if the last sample is old enough;
    /// whether it did.
    pub fn sample(&mut self, model: &Model, now_ns: u64) -> bool {
        if now_ns.saturating_sub(self.last_ns) < SAMPLE_EVERY_NS {
            return false;
        }
        self.last_ns = now_ns;
        let mut counts: FxHashMap<Site, u64> = FxHashMap::default();
        for g in model.blocked_unsorted() {
            if g.gopc != 0 {
                *counts.entry((g.gopc, g.reason)).or_default() += 1;
            }
        }
        self.samples.record(now_ns, counts);
        true
    }

    /// The sites that grew: at least [`MIN_RISES`] rises, never a fall, and up by at least
    /// [`MIN_GROWTH`] from the first sample.
    pub fn growing(&self) -> Vec<Growth> {
        let mut out: Vec<Growth> = self
            .samples
            .growing()
            .into_iter()
            .map(
                |((gopc, reason), first, last, rises, span_ns, start_ns)| Growth {
                    gopc,
                    reason,
                    first,
                    last,
                    rises,
                    span_ns,
                    start_ns,
                },
            )
            .collect();
        out.sort_by_key(|g| (std::cmp::Reverse(g.last), g.gopc));
        out
    }
}

/// (first, last, rises, span) of a series that kept growing.
pub fn growth(series: &[(u64, u64)]) -> Option<(u64, u64, usize, u64)> {
    let (&(t0, first), &(t1, last)) = (series.first()?, series.last()?);
    let mut rises = 0;
    for w in series.windows(2) {
        match w[1].1.cmp(&w[0].1) {
            std::cmp::Ordering::Greater => rises += 1,
            std::cmp::Ordering::Less => return None,
            std::cmp::Ordering::Equal => {}
        }
    }
    (rises >= MIN_RISES && last >= first + MIN_GROWTH).then_some((first, last, rises, t1 - t0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rising_flat_and_bursty_series() {
        let s = |v: &[u64]| {
            v.iter()
                .enumerate()
                .map(|(i, &n)| (i as u64 * 100, n))
                .collect::<Vec<_>>()
        };
        assert_eq!(growth(&s(&[1, 2, 2, 3, 5, 8])), Some((1, 8, 4, 500)));
        // A pool: flat.
        assert_eq!(growth(&s(&[4, 4, 4, 4, 4])), None);
        // A burst: up and down.
        assert_eq!(growth(&s(&[1, 3, 5, 7, 2])), None);
        // Too little.
        assert_eq!(growth(&s(&[1, 2, 3])), None);
        assert_eq!(growth(&[]), None);
    }
}
