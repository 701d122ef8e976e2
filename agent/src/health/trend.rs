//! Telling a leak from a busy count, across readings: pending timers, or the goroutines of one
//! creation site. A leak's count keeps rising and never falls back (timers armed per request
//! and never stopped stay pending until they fire, an hour later for
//! `time.AfterFunc(time.Hour, f)`; leaked goroutines never exit). A function that re-arms
//! itself keeps one timer pending; stopped per-request timers, and a worker pool's goroutines,
//! come and go around a base. Neither rises steadily, so neither is flagged.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Readings considered (the most recent).
const WINDOW: usize = 10;
/// Readings needed before judging.
const MIN_READINGS: usize = 5;
/// Growth needed over the window: at least this many timers...
const MIN_GROWTH: u64 = 50;
/// ...and at least this fraction of the first reading (a big server's count may wobble by
/// more than 50 without leaking).
const MIN_GROWTH_FRACTION: f64 = 0.1;

/// A steady rise of a count.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Growth {
    pub from: u64,
    pub to: u64,
    /// Over this many ms of readings.
    pub over_ms: u64,
    pub readings: usize,
}

/// The recent values of one count (pending timers, a site's goroutines).
#[derive(Debug, Default)]
pub struct Trend {
    hist: VecDeque<(u64, u64)>,
}

impl Trend {
    /// Adds a reading (`unix_ms`, the count); returns the growth if the count has risen
    /// steadily over the window: by enough, and never back down to where the window began.
    pub fn push(&mut self, unix_ms: u64, pending: u64) -> Option<Growth> {
        self.hist.push_back((unix_ms, pending));
        while self.hist.len() > WINDOW {
            self.hist.pop_front();
        }
        if self.hist.len() < MIN_READINGS {
            return None;
        }
        let (t0, first) = *self.hist.front()?;
        let (t1, last) = *self.hist.back()?;
        let need = MIN_GROWTH.max((first as f64 * MIN_GROWTH_FRACTION) as u64);
        let rising = self.hist.iter().skip(1).all(|&(_, n)| n > first);
        // The second half stays at or above the first half's peak: a rise, not a burst that
        // drains (a count may stall for a reading or two while the target gets no CPU).
        let half = self.hist.len() / 2;
        let peak1 = self.hist.iter().take(half).map(|h| h.1).max()?;
        let low2 = self.hist.iter().skip(half).map(|h| h.1).min()?;
        (rising && low2 >= peak1 && last >= first + need).then_some(Growth {
            from: first,
            to: last,
            over_ms: t1.saturating_sub(t0),
            readings: self.hist.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(counts: &[u64]) -> Option<Growth> {
        let mut t = Trend::default();
        let mut last = None;
        for (i, &c) in counts.iter().enumerate() {
            last = t.push(i as u64 * 1000, c);
        }
        last
    }

    #[test]
    fn a_leak_is_flagged() {
        let g = feed(&[3, 103, 203, 303, 403, 503]).expect("leak");
        assert_eq!((g.from, g.to, g.over_ms, g.readings), (3, 503, 5000, 6));
    }

    #[test]
    fn a_self_rearming_timer_is_not() {
        assert_eq!(feed(&[1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1]), None);
    }

    #[test]
    fn stopped_timers_are_not() {
        assert_eq!(feed(&[3, 40, 3, 55, 3, 70, 3, 60, 3, 80, 3]), None);
        // A burst that drains again.
        assert_eq!(feed(&[3, 300, 600, 900, 300, 3]), None);
    }

    #[test]
    fn small_wobbles_on_a_big_count_are_not() {
        assert_eq!(
            feed(&[10_000, 10_020, 10_040, 10_060, 10_080, 10_100]),
            None
        );
        assert!(feed(&[10_000, 12_000, 14_000, 16_000, 18_000]).is_some());
    }

    #[test]
    fn a_leak_that_stalls_for_a_while_is_still_flagged() {
        assert!(feed(&[100, 150, 200, 200, 200, 260, 300, 300]).is_some());
    }

    #[test]
    fn needs_enough_readings() {
        assert_eq!(feed(&[0, 100, 200, 300]), None);
    }
}
