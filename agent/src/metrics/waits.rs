//! Histograms of durations for the metrics: the waits that ended, per wait reason (precise
//! mode's in-kernel histograms, scan mode's [`WaitTally`]), and the session's scan times.
//!
//! Both wait sources count in log2 buckets of nanoseconds (bucket i holds [2^i, 2^(i+1)) ns, as
//! probes-ebpf's `WaitHist`); the exported buckets are a subset of those bounds, so a log2
//! histogram folds into them exactly.

use probes_ebpf::{WAIT_HIST_BUCKETS, WaitHist};
use rustc_hash::FxHashMap;

/// Upper bounds of the exported wait buckets, as log2 of nanoseconds: 2^10 ns (1 µs) to 2^39
/// ns (about 9 minutes), every factor of 8 or so; above the last, +Inf.
pub const WAIT_BOUNDS_LOG2: [u32; 10] = [10, 14, 17, 20, 24, 27, 30, 33, 36, 39];

/// Bounds of the scan-duration histogram, seconds.
pub const SCAN_BOUNDS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// A Prometheus histogram's contents: per-bucket (not cumulative) counts under `bounds`
/// (seconds), one more for +Inf, the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub bounds: Vec<f64>,
    /// `bounds.len() + 1` entries (the last is +Inf).
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Buckets {
    pub fn with_bounds(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// A log2 histogram of nanoseconds, in the exported wait buckets.
    pub fn from_log2(h: &WaitHist) -> Self {
        let mut b = Self::with_bounds(
            &WAIT_BOUNDS_LOG2
                .iter()
                .map(|&e| (1u64 << e) as f64 / 1e9)
                .collect::<Vec<_>>(),
        );
        for (i, &n) in h.buckets.iter().enumerate() {
            // Bucket i's waits are all below 2^(i+1) ns: the first bound at or above that.
            let upper = i as u32 + 1;
            let slot = WAIT_BOUNDS_LOG2.partition_point(|&e| e < upper);
            // The last log2 bucket is open-ended (everything from 2^39 ns up): +Inf.
            let slot = if i + 1 == WAIT_HIST_BUCKETS {
                WAIT_BOUNDS_LOG2.len()
            } else {
                slot
            };
            b.counts[slot] += n;
        }
        b.count = h.count;
        b.sum = h.total_ns as f64 / 1e9;
        b
    }
}

/// The log2 bucket of a wait, as the probes count it (probes-ebpf, programs.rs `bucket`).
pub fn log2_bucket(ns: u64) -> usize {
    (63 - (ns | 1).leading_zeros() as usize).min(WAIT_HIST_BUCKETS - 1)
}

/// Adds `h` into `sum`.
pub fn add(sum: &mut WaitHist, h: &WaitHist) {
    sum.count += h.count;
    sum.total_ns += h.total_ns;
    for (s, b) in sum.buckets.iter_mut().zip(h.buckets.iter()) {
        *s += b;
    }
}

/// Scan mode's finished waits, per wait-reason number: each wait the scans saw end, timed from
/// its start as the scans know it (the first scan that saw it, or `g.waitsince`) to the scan
/// that no longer saw it. Waits shorter than about two scan intervals are never seen.
#[derive(Debug, Default, Clone)]
pub struct WaitTally {
    pub by_reason: FxHashMap<u32, WaitHist>,
}

impl WaitTally {
    pub fn record(&mut self, reason: u32, ns: u64) {
        let h = self.by_reason.entry(reason).or_insert(WaitHist {
            count: 0,
            total_ns: 0,
            buckets: [0; WAIT_HIST_BUCKETS],
        });
        h.count += 1;
        h.total_ns += ns;
        h.buckets[log2_bucket(ns)] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_folds_into_exported_buckets() {
        let mut t = WaitTally::default();
        for ns in [500, 1_000, 1_500, 2_000_000, 3_000_000_000, u64::MAX / 2] {
            t.record(4, ns);
        }
        let b = Buckets::from_log2(&t.by_reason[&4]);
        assert_eq!(b.count, 6);
        assert_eq!(b.counts.iter().sum::<u64>(), 6);
        // 500 ns and 1000 ns are below 2^10 ns; 1500 ns below 2^14.
        assert_eq!(b.counts[0], 2);
        assert_eq!(b.counts[1], 1);
        // 2 ms: below 2^24 ns (16.8 ms), above 2^20 (1.05 ms).
        assert_eq!(b.counts[4], 1);
        // 3 s: below 2^33 ns (8.6 s).
        assert_eq!(b.counts[7], 1);
        // The open-ended top bucket is +Inf.
        assert_eq!(b.counts[10], 1);
        for (i, &e) in WAIT_BOUNDS_LOG2.iter().enumerate() {
            assert_eq!(b.bounds[i], (1u64 << e) as f64 / 1e9);
        }
    }

    #[test]
    fn every_log2_bucket_lands_under_its_upper_bound() {
        for i in 0..WAIT_HIST_BUCKETS - 1 {
            let mut h = WaitHist {
                count: 1,
                total_ns: 0,
                buckets: [0; WAIT_HIST_BUCKETS],
            };
            h.buckets[i] = 1;
            let b = Buckets::from_log2(&h);
            let slot = b.counts.iter().position(|&c| c == 1).unwrap();
            let upper_ns = (1u64 << (i + 1)) as f64 / 1e9;
            assert!(
                slot == b.bounds.len() || b.bounds[slot] >= upper_ns,
                "bucket {i}"
            );
            assert!(
                slot == 0 || b.bounds[slot - 1] < upper_ns,
                "bucket {i} too high"
            );
        }
    }

    #[test]
    fn observe_uses_le_semantics() {
        let mut b = Buckets::with_bounds(&[0.001, 0.01]);
        for v in [0.001, 0.005, 0.5] {
            b.observe(v);
        }
        assert_eq!(b.counts, vec![1, 1, 1]);
        assert_eq!(b.count, 3);
    }
}
