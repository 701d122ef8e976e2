//! Putting the probes' timestamps and an execution trace's on one clock.
//!
//! The probes stamp events with `bpf_ktime_get_ns`: CLOCK_MONOTONIC. A Go trace stamps events
//! with `traceClockNow()` (runtime/tracetime.go), which on linux/amd64 is `nanotime() / 64`:
//! the same clock, read by the vDSO, in ticks of 64 ns (`Frequency` 15625000). So the two
//! clocks differ by an offset of zero up to one tick, and they do not drift. What differs is how
//! well that can be shown:
//! - Go >= 1.25 writes a `ClockSnapshot` into each generation's Sync batch
//!   (runtime/tracetime.go, traceSyncBatch): `mono` from `time_now()` (CLOCK_MONOTONIC) and the
//!   trace timestamp taken right after it. The offset is read off each snapshot; the residual is
//!   how far the snapshots disagree, plus the tick.
//! - Go 1.22 to 1.24 write no snapshot. The offset is estimated from transitions seen by both
//!   sides: a goroutine parking (the gopark probe; the trace's Running->Waiting) or being
//!   readied (the ready probe; Waiting->Runnable). The probe fires a little before the runtime
//!   writes its trace event, so the offset is the median of the matched differences, and the
//!   spread of those differences is the reported skew.

use serde::Serialize;

/// How trace time maps onto CLOCK_MONOTONIC: `mono = trace + offset_ns`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alignment {
    /// "clock-snapshot" (Go >= 1.25), "transitions" (matched block/unblock transitions) or
    /// "assumed" (nothing to match: the runtime's clock is CLOCK_MONOTONIC, offset taken as 0).
    pub method: &'static str,
    pub offset_ns: i64,
    /// How far the evidence disagrees with `offset_ns`: the largest deviation among the clock
    /// snapshots (at least the trace's tick), or the median absolute deviation of the matched
    /// transitions. None when nothing was measured.
    pub residual_ns: Option<u64>,
    /// Snapshots or matched transitions the estimate rests on.
    pub samples: usize,
    /// The trace clock's resolution, ns (64 on linux/amd64).
    pub tick_ns: u64,
}

impl Alignment {
    /// Trace time (ns) to CLOCK_MONOTONIC ns.
    pub fn to_mono(&self, trace_ns: i64) -> i64 {
        trace_ns.saturating_add(self.offset_ns)
    }
}

/// One clock snapshot: the trace time (ns) and CLOCK_MONOTONIC (ns) read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub trace_ns: i64,
    pub mono_ns: u64,
}

fn median(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

/// The alignment from a trace's clock snapshots (Go >= 1.25). The trace timestamp is taken
/// after `mono` and rounded down to a tick, so each snapshot's offset is within a tick of the
/// truth; the residual is the largest deviation from the median, or one tick if smaller.
pub fn from_snapshots(snaps: &[Snapshot], tick_ns: u64) -> Option<Alignment> {
    let mut offsets: Vec<i64> = snaps
        .iter()
        .map(|s| (s.mono_ns as i64).saturating_sub(s.trace_ns))
        .collect();
    let offset = median(&mut offsets)?;
    let spread = offsets
        .iter()
        .map(|o| o.abs_diff(offset))
        .max()
        .unwrap_or(0);
    Some(Alignment {
        method: "clock-snapshot",
        offset_ns: offset,
        residual_ns: Some(spread.max(tick_ns)),
        samples: snaps.len(),
        tick_ns,
    })
}

/// What kind of transition a timestamp belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transition {
    /// The goroutine parks (Running -> Waiting).
    Block,
    /// The goroutine is made runnable (Waiting -> Runnable).
    Unblock,
}

/// A transition of one goroutine at a time (ns on its side's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub goid: u64,
    pub kind: Transition,
    pub ns: i64,
}

/// Differences further apart than this from the offset are not the same transition.
const MATCH_WINDOW_NS: i64 = 2_000_000;
/// Transitions compared per goroutine and kind on each side (the quadratic part).
const MAX_PER_KEY: usize = 256;

/// The alignment from transitions seen by the probes (`probe`, CLOCK_MONOTONIC) and in the
/// trace (`trace`, trace ns), for Go versions without clock snapshots. None when no
/// transition of one goroutine appears on both sides.
pub fn from_transitions(probe: &[Stamp], trace: &[Stamp], tick_ns: u64) -> Option<Alignment> {
    use std::collections::BTreeMap;
    let mut by_key: BTreeMap<(u64, Transition), (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for s in probe {
        let e = by_key.entry((s.goid, s.kind)).or_default();
        if e.0.len() < MAX_PER_KEY {
            e.0.push(s.ns);
        }
    }
    for s in trace {
        if let Some(e) = by_key.get_mut(&(s.goid, s.kind))
            && e.1.len() < MAX_PER_KEY
        {
            e.1.push(s.ns);
        }
    }
    // Every candidate difference; the true offset is where most of them pile up.
    let mut deltas: Vec<i64> = Vec::new();
    for (p, t) in by_key.values() {
        for &a in p {
            deltas.extend(t.iter().map(|&b| a.saturating_sub(b)));
        }
    }
    if deltas.is_empty() {
        return None;
    }
    deltas.sort_unstable();
    // The densest window of MATCH_WINDOW_NS: its start is a first estimate.
    let (mut best, mut best_n, mut j) = (deltas[0], 0usize, 0usize);
    for i in 0..deltas.len() {
        while deltas[i].saturating_sub(deltas[j]) > MATCH_WINDOW_NS {
            j += 1;
        }
        if i + 1 - j > best_n {
            best_n = i + 1 - j;
            best = deltas[j];
        }
    }
    let mut guess = best + MATCH_WINDOW_NS / 2;
    // Refine: each probe stamp's nearest trace stamp of the same key near the guess.
    let mut matched: Vec<i64> = Vec::new();
    for _ in 0..2 {
        matched.clear();
        for (p, t) in by_key.values() {
            for &a in p {
                let nearest = t
                    .iter()
                    .map(|&b| a.saturating_sub(b))
                    .min_by_key(|d| d.abs_diff(guess));
                if let Some(d) = nearest.filter(|d| d.abs_diff(guess) <= MATCH_WINDOW_NS as u64) {
                    matched.push(d);
                }
            }
        }
        guess = median(&mut matched.clone())?;
    }
    let mut dev: Vec<i64> = matched.iter().map(|d| d.abs_diff(guess) as i64).collect();
    let mad = median(&mut dev).unwrap_or(0) as u64;
    Some(Alignment {
        method: "transitions",
        offset_ns: guess,
        residual_ns: Some(mad.max(tick_ns)),
        samples: matched.len(),
        tick_ns,
    })
}

/// Nothing to align with: the runtime's trace clock is CLOCK_MONOTONIC on Linux
/// (runtime/tracetime.go, traceClockNow), so the offset is taken as zero, unmeasured.
pub fn assumed(tick_ns: u64) -> Alignment {
    Alignment {
        method: "assumed",
        offset_ns: 0,
        residual_ns: None,
        samples: 0,
        tick_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_give_offset_and_residual() {
        // Go writes mono, then the tick-rounded trace time just after.
        let snaps = [
            Snapshot {
                trace_ns: 1_000_000_000,
                mono_ns: 1_000_000_040,
            },
            Snapshot {
                trace_ns: 2_000_000_064,
                mono_ns: 2_000_000_100,
            },
            Snapshot {
                trace_ns: 3_000_000_000,
                mono_ns: 3_000_000_010,
            },
        ];
        let a = from_snapshots(&snaps, 64).unwrap();
        assert_eq!(a.offset_ns, 36);
        assert_eq!(a.residual_ns, Some(64));
        assert_eq!(a.to_mono(5), 41);
        assert!(from_snapshots(&[], 64).is_none());
    }

    #[test]
    fn transitions_find_the_offset_among_false_pairs() {
        // The probe sees each transition 3 to 5 µs before the trace records it, and the clocks
        // differ by 7 ms; goroutine 9 blocks every 10 ms, so every probe stamp also pairs with
        // the wrong trace stamps.
        let offset = 7_000_000i64;
        let mut probe = Vec::new();
        let mut trace = Vec::new();
        for i in 0..50i64 {
            let t = 1_000_000_000 + i * 10_000_000;
            let lag = 3_000 + (i % 3) * 1_000;
            probe.push(Stamp {
                goid: 9,
                kind: Transition::Block,
                ns: t + offset - lag,
            });
            trace.push(Stamp {
                goid: 9,
                kind: Transition::Block,
                ns: t,
            });
            probe.push(Stamp {
                goid: 9,
                kind: Transition::Unblock,
                ns: t + 500_000 + offset - lag,
            });
            trace.push(Stamp {
                goid: 9,
                kind: Transition::Unblock,
                ns: t + 500_000,
            });
        }
        // A goroutine only one side saw.
        probe.push(Stamp {
            goid: 11,
            kind: Transition::Block,
            ns: 5,
        });
        let a = from_transitions(&probe, &trace, 64).unwrap();
        assert_eq!(a.method, "transitions");
        assert!((a.offset_ns - (offset - 4_000)).abs() <= 1_000, "{a:?}");
        assert!(a.residual_ns.unwrap() <= 1_000, "{a:?}");
        assert_eq!(a.samples, 100);
        assert!(from_transitions(&probe[..0], &trace, 64).is_none());
    }
}
