//! BP08, busy select: a goroutine spinning through a `select` with `default` never blocks, so it
//! is found by what it does on the CPU, not by a wait. At each scan, every goroutine of the
//! program that is running is sampled: its thread's user registers (the `task_regs` iterator:
//! for a thread running in user space, the registers of its last interrupt, at most a timer tick
//! old) give its PC and frame pointer, and the frame-pointer walk its stack. A goroutine found
//! running in most scans (its CPU use) with most samples inside the runtime's non-blocking
//! select (`runtime.selectnbrecv`, `runtime.selectnbsend`, or `runtime.selectgo` from a select
//! with default) is spinning.

use rustc_hash::FxHashMap;

/// The runtime functions of a non-blocking select (src/runtime/chan.go `selectnbsend`,
/// `selectnbrecv`; src/runtime/select.go `selectgo` with block=false).
pub const SELECT_FUNCTIONS: [&str; 3] = [
    "runtime.selectnbrecv",
    "runtime.selectnbsend",
    "runtime.selectgo",
];

/// A spinner is running in at least this share of the scans that saw it, and this many of them.
pub const MIN_RUNNING_SHARE: f64 = 0.8;
pub const MIN_SAMPLES: u32 = 5;
/// ... and inside a select in at least this share of its samples.
pub const MIN_SELECT_SHARE: f64 = 0.5;
/// Goroutines tracked at most.
const MAX_TRACKED: usize = 4096;

/// What the scans saw of one goroutine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Scans that listed it (any state), and those that found it running.
    pub scans: u32,
    pub running: u32,
    /// Samples taken (running scans whose registers could be read), and those inside a select.
    pub samples: u32,
    pub in_select: u32,
    /// The innermost frame of the program's own code in the last sample inside a select:
    /// (function, file:line).
    pub site: Option<(String, String)>,
    pub gopc: u64,
    pub parent_goid: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

#[derive(Debug, Default)]
pub struct BusyTracker {
    pub seen: FxHashMap<u64, Seen>,
}

/// A sample: the symbolized frames of a running goroutine, innermost first (function, file:line).
pub type Sample = Vec<(String, String)>;

impl BusyTracker {
    /// Folds in one scan: `listed` are the program's running goroutines and the tracked ones the
    /// scan still lists (goid, gopc, parent, running); `samples` the stacks sampled from the
    /// running ones. Only a goroutine seen running starts being tracked.
    pub fn observe(
        &mut self,
        now_ns: u64,
        listed: impl Iterator<Item = (u64, u64, u64, bool)> + Clone,
        samples: &FxHashMap<u64, Sample>,
    ) {
        for (goid, gopc, parent_goid, running) in listed.clone() {
            if (!running || self.seen.len() >= MAX_TRACKED) && !self.seen.contains_key(&goid) {
                continue;
            }
            let s = self.seen.entry(goid).or_insert_with(|| Seen {
                gopc,
                parent_goid,
                first_ns: now_ns,
                ..Seen::default()
            });
            s.scans += 1;
            s.last_ns = now_ns;
            if !running {
                continue;
            }
            s.running += 1;
            if let Some(frames) = samples.get(&goid) {
                s.samples += 1;
                if frames
                    .iter()
                    .any(|(f, _)| SELECT_FUNCTIONS.contains(&f.as_str()))
                {
                    s.in_select += 1;
                    s.site = frames
                        .iter()
                        .find(|(f, _)| !f.starts_with("runtime.") && !f.starts_with("internal/"))
                        .cloned();
                }
            }
        }
        // Goroutines gone from the scan have exited.
        let listed: rustc_hash::FxHashSet<u64> = listed.map(|l| l.0).collect();
        self.seen.retain(|g, _| listed.contains(g));
    }

    /// The goroutines spinning now.
    pub fn spinning(&self) -> Vec<(u64, &Seen)> {
        let mut v: Vec<(u64, &Seen)> = self
            .seen
            .iter()
            .filter(|(_, s)| is_spinning(s))
            .map(|(&g, s)| (g, s))
            .collect();
        v.sort_by_key(|(g, _)| *g);
        v
    }
}

pub fn is_spinning(s: &Seen) -> bool {
    s.samples >= MIN_SAMPLES
        && f64::from(s.running) >= MIN_RUNNING_SHARE * f64::from(s.scans)
        && f64::from(s.in_select) >= MIN_SELECT_SHARE * f64::from(s.samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(in_select: bool) -> Sample {
        let mut v = vec![("main.spin".to_string(), "/a.go:7".to_string())];
        if in_select {
            v.insert(0, ("runtime.selectnbrecv".into(), "/chan.go:1".into()));
        }
        v
    }

    #[test]
    fn a_spinner_and_a_busy_worker() {
        let mut t = BusyTracker::default();
        for i in 0..8u64 {
            let listed = [
                (1, 0x10, 1, true),
                (2, 0x20, 1, true),
                (3, 0x30, 1, i % 4 == 0),
            ];
            let mut samples = FxHashMap::default();
            samples.insert(1, sample(i % 5 != 0)); // mostly in the select
            samples.insert(2, sample(false)); // busy, but computing
            if i % 4 == 0 {
                samples.insert(3, sample(true)); // polls now and then
            }
            t.observe(i * 100, listed.iter().copied(), &samples);
        }
        let spin = t.spinning();
        assert_eq!(spin.len(), 1);
        assert_eq!(spin[0].0, 1);
        assert_eq!(spin[0].1.site, Some(("main.spin".into(), "/a.go:7".into())));
        // Exited goroutines are forgotten.
        t.observe(900, [(2, 0x20, 1, true)].into_iter(), &FxHashMap::default());
        assert!(t.spinning().is_empty());
    }
}

/// A spinning goroutine as the detector reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spinner {
    pub goid: u64,
    pub seen: Seen,
    pub site: Option<crate::report::BlockingSite>,
    pub created_by: Option<crate::report::CreationSite>,
}
