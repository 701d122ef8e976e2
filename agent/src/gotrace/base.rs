//! Types shared by the whole parser, ported from Go 1.27's `internal/trace/base.go` (raw events,
//! the per-generation string/stack tables) plus the few basic types of `event.go` and
//! `generation.go` that the framing layer needs (IDs, times, the sync data), and the parser's
//! one error type.

use std::collections::HashMap;
use std::sync::Mutex;

use rustc_hash::FxHashMap;

use super::spec::{self, EventType, Experiment, MAX_TIMED_EVENT_ARGS};

/// Every way reading a trace can fail.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A trace of the v1 format (Go ≤ 1.21), which this reader does not parse.
    #[error("unsupported trace version {0} (use Go ≥ 1.22)")]
    UnsupportedVersion(String),
    /// A well-formed header with a version Go 1.27 does not know (e.g. a future one).
    #[error("unknown trace version {0} (this reader knows go 1.22, 1.23, 1.25 and 1.26)")]
    UnknownVersion(String),
    /// The input does not start with a Go execution trace header.
    #[error("not a Go execution trace: {0}")]
    NotATrace(String),
    /// The input ended inside the header or inside a generation.
    #[error("truncated trace: {0}")]
    Truncated(String),
    /// The input is corrupt.
    #[error("malformed trace: {0}")]
    Malformed(String),
    /// The underlying reader failed.
    #[error("reading the trace: {0}")]
    Io(#[from] std::io::Error),
}

impl TraceError {
    /// Shorthand for [`TraceError::Malformed`].
    pub fn malformed(msg: impl Into<String>) -> TraceError {
        TraceError::Malformed(msg.into())
    }

    /// True for [`TraceError::Truncated`].
    pub fn is_truncated(&self) -> bool {
        matches!(self, TraceError::Truncated(_))
    }
}

/// event.go: Time, a timestamp in nanoseconds.
pub type Time = i64;
/// event.go: maxTime.
pub const MAX_TIME: Time = i64::MAX;
/// batch.go: timestamp, an unprocessed timestamp (in the trace clock's ticks).
pub type Timestamp = u64;

/// event.go: GoID, a goroutine ID.
pub type GoID = i64;
/// event.go: ProcID, a P ID.
pub type ProcID = i64;
/// event.go: ThreadID, an M (OS thread) ID.
pub type ThreadID = i64;
/// event.go: NoGoroutine.
pub const NO_GOROUTINE: GoID = -1;
/// event.go: NoProc.
pub const NO_PROC: ProcID = -1;
/// event.go: NoThread.
pub const NO_THREAD: ThreadID = -1;

/// base.go: stringID, an index into a generation's string table.
pub type StringId = u64;
/// base.go: stackID, an index into a generation's stack table.
pub type StackId = u64;
/// base.go: extraStringID, an index into a generation's extra strings.
pub type ExtraStringId = u64;

/// base.go: timedEventArgs holds the arguments of any timed event except its timestamp.
pub const MAX_ARGS: usize = MAX_TIMED_EVENT_ARGS - 1;

/// base.go: baseEvent, a decoded but uninterpreted timed event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BaseEvent {
    /// The event type.
    pub typ: EventType,
    /// The absolute time, in nanoseconds.
    pub time: Time,
    /// The arguments after the timestamp; slots past the spec's arguments are the "extra" space.
    pub args: [u64; MAX_ARGS],
}

impl BaseEvent {
    /// baseEvent.extra: the argument slots past the event's own arguments, which the ordering
    /// code uses to pass data up to the Event (e.g. a state transition's old state).
    ///
    /// Go takes the version and only supports `version.Go122` (every caller passes that
    /// constant), so the version is dropped here; an event type without arguments yields an
    /// empty slice instead of Go's panic.
    pub fn extra(&self) -> &[u64] {
        self.args.get(self.extra_start()..).unwrap_or(&[])
    }

    /// Mutable [`BaseEvent::extra`].
    pub fn extra_mut(&mut self) -> &mut [u64] {
        let start = self.extra_start();
        self.args.get_mut(start..).unwrap_or(&mut [])
    }

    fn extra_start(&self) -> usize {
        // `len(tracev2.Specs()[e.typ].Args)-1`: the timestamp is not in `args`.
        spec::spec_or_empty(self.typ)
            .args
            .len()
            .saturating_sub(1)
            .min(MAX_ARGS)
    }
}

/// base.go: frequency, nanoseconds per timestamp unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Frequency(pub f64);

impl Frequency {
    /// frequency.mul: converts ticks to nanoseconds (`Time(float64(t) * float64(f))`; the
    /// float-to-int conversion saturates where Go's is implementation-defined).
    // Go's name, kept; it takes ticks, not another Frequency, so it is not `Mul`.
    #[allow(clippy::should_implement_trait)]
    pub fn mul(self, t: Timestamp) -> Time {
        (t as f64 * self.0) as Time
    }

    /// Go's `freq == 0` check: no Frequency event was seen.
    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }

    /// generation.go (setSyncBatch): converts a Frequency event's ticks-per-second into
    /// nanoseconds per tick, `1.0 / (float64(f) / 1e9)`.
    pub fn from_ticks_per_second(f: u64) -> Frequency {
        Frequency(1.0 / (f as f64 / 1e9))
    }
}

/// base.go: frame, one entry of a generation's PC table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackFrame {
    /// The program counter.
    pub pc: u64,
    /// The function name (an ID in the generation's string table).
    pub func: StringId,
    /// The file name (an ID in the generation's string table).
    pub file: StringId,
    /// The line number.
    pub line: u64,
}

/// base.go: stack, a stack table entry: the PCs of its frames, innermost first; each PC is a
/// key of [`EvTable::pcs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawStack {
    /// The frames' PCs.
    pub pcs: Vec<u64>,
}

/// event.go: ExperimentalBatch, a packet of unparsed experimental data from one thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExperimentalBatch {
    /// The thread that produced the data.
    pub thread: ThreadID,
    /// The raw data.
    pub data: Vec<u8>,
}

/// base.go: cpuSample, a CPU profiling sample. `time` holds raw ticks until the generation is
/// complete (as in Go), then nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// schedCtx.M.
    pub m: ThreadID,
    /// schedCtx.P.
    pub p: ProcID,
    /// schedCtx.G ([`NO_GOROUTINE`] when the sample's goroutine was 0).
    pub g: GoID,
    /// When the sample was taken.
    pub time: Time,
    /// The sampled stack.
    pub stack: StackId,
}

/// generation.go: the wall clock of a clock snapshot, as Go's `time.Unix(sec, nsec)`:
/// normalized so that `0 <= nsec < 1e9`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WallTime {
    /// Seconds since the Unix epoch.
    pub sec: i64,
    /// Nanoseconds within the second.
    pub nsec: i64,
}

impl WallTime {
    /// `time.Unix(int64(sec), int64(nsec))` of the EvClockSnapshot arguments.
    pub fn from_unix(sec: u64, nsec: u64) -> WallTime {
        const NS: i64 = 1_000_000_000;
        let mut sec = sec as i64;
        let mut nsec = nsec as i64;
        // time.Unix: fold nsec outside [0, 1e9) into sec (Go's arithmetic wraps).
        if !(0..NS).contains(&nsec) {
            let n = nsec / NS;
            sec = sec.wrapping_add(n);
            nsec -= n * NS;
            if nsec < 0 {
                nsec += NS;
                sec = sec.wrapping_sub(1);
            }
        }
        WallTime { sec, nsec }
    }
}

/// generation.go: sync, the per-generation clock data from the sync batch (or, before Go 1.25,
/// the lone Frequency batch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SyncData {
    /// Nanoseconds per tick.
    pub freq: Frequency,
    /// A ClockSnapshot event was seen (Go ≥ 1.25).
    pub has_clock_snapshot: bool,
    /// The snapshot's trace clock, in ticks.
    pub snap_time: Timestamp,
    /// The snapshot's monotonic clock.
    pub snap_mono: u64,
    /// The snapshot's wall clock.
    pub snap_wall: WallTime,
}

/// base.go: dataTable, a map from IDs to values, compacted into a dense vector after loading
/// when the IDs are dense enough.
#[derive(Debug, Clone, Default)]
pub struct DataTable<E> {
    /// `present` + `dense` in Go: index = ID.
    dense: Vec<Option<E>>,
    /// `sparse` in Go; `None` after compactify (Go's nil map).
    sparse: Option<FxHashMap<u64, E>>,
    /// Go returns the zero E for ID 0; this is it.
    zero: E,
}

impl<E: Default + std::fmt::Debug> DataTable<E> {
    /// dataTable.insert: adds a mapping from `id` to `data`, failing if `id` is already mapped
    /// (even to the same value): duplicate IDs mean a corrupt trace.
    pub fn insert(&mut self, id: u64, data: E) -> Result<(), TraceError> {
        if let Some(existing) = self.get(id) {
            return Err(TraceError::Malformed(format!(
                "multiple {}s with the same ID: id={id}, new={data:?}, existing={existing:?}",
                short_type_name::<E>()
            )));
        }
        self.sparse
            .get_or_insert_with(FxHashMap::default)
            .insert(id, data);
        Ok(())
    }

    /// dataTable.append: adds a new element and returns its ID (`len(sparse) + 1`, as Go).
    pub fn append(&mut self, data: E) -> u64 {
        let sparse = self.sparse.get_or_insert_with(FxHashMap::default);
        let id = sparse.len() as u64 + 1;
        sparse.insert(id, data);
        id
    }

    /// dataTable.compactify: moves the entries into the dense vector if the IDs are dense
    /// enough (at most 2x waste). Meant to be called once, after all insertions.
    pub fn compactify(&mut self) {
        let Some(sparse) = self.sparse.as_ref() else {
            return;
        };
        if !self.dense.is_empty() {
            // Already compactified.
            return;
        }
        let max_id = sparse.keys().copied().max().unwrap_or(0);
        let min_id = sparse.keys().copied().min().unwrap_or(u64::MAX);
        if max_id >= i64::MAX as u64 {
            // Go: we can't create a slice big enough to hold maxID elements.
            return;
        }
        let n = sparse.len() as u64;
        // We're willing to waste at most 2x memory. (Go: `int(maxID-minID) > max(n, 2*n)`;
        // with an empty map min > max and the subtraction wraps to a huge value.)
        if max_id.wrapping_sub(min_id) > n.max(2 * n) {
            return;
        }
        if min_id > n {
            return;
        }
        // Bounded by the two checks above: max_id <= 3n, so this is at most ~3 entries per
        // entry actually read.
        let Ok(size) = usize::try_from(max_id + 1) else {
            return;
        };
        let mut dense: Vec<Option<E>> = Vec::with_capacity(size);
        dense.resize_with(size, || None);
        for (id, data) in self.sparse.take().into_iter().flatten() {
            if let Some(slot) = usize::try_from(id).ok().and_then(|i| dense.get_mut(i)) {
                *slot = Some(data);
            }
        }
        self.dense = dense;
    }

    /// dataTable.get: the value for `id`; ID 0 is always present and maps to the zero value.
    pub fn get(&self, id: u64) -> Option<&E> {
        if id == 0 {
            return Some(&self.zero);
        }
        if let Some(slot) = usize::try_from(id).ok().and_then(|i| self.dense.get(i)) {
            return slot.as_ref();
        }
        self.sparse.as_ref().and_then(|s| s.get(&id))
    }

    /// dataTable.mustGet: the value for an already validated `id`. Go panics when it is
    /// missing; this returns the zero value instead (no panics on any input).
    pub fn must_get(&self, id: u64) -> &E {
        self.get(id).unwrap_or(&self.zero)
    }

    /// dataTable.forEach: calls `f` for every (ID, value) until it returns false; returns
    /// false if it was stopped. Dense entries come first, in ID order.
    pub fn for_each(&self, mut f: impl FnMut(u64, &E) -> bool) -> bool {
        for (id, slot) in self.dense.iter().enumerate() {
            if let Some(v) = slot
                && !f(id as u64, v)
            {
                return false;
            }
        }
        if let Some(sparse) = &self.sparse {
            for (&id, v) in sparse {
                if !f(id, v) {
                    return false;
                }
            }
        }
        true
    }

    /// The number of entries (not counting the implicit ID 0).
    pub fn len(&self) -> usize {
        self.dense.iter().filter(|s| s.is_some()).count()
            + self.sparse.as_ref().map_or(0, |s| s.len())
    }

    /// True if the table holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `%T` for the duplicate-ID message: "string" or "RawStack".
fn short_type_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    full.rsplit("::").next().unwrap_or(full)
}

/// base.go: the extra strings of an evTable, generated while parsing (e.g. task names carried
/// over from an earlier generation). Kept behind a mutex in [`EvTable`] because the ordering
/// code adds to them after the table is shared with events.
#[derive(Debug, Default)]
pub struct ExtraStrings {
    /// `extraStrings`: ID i+1 is `strings[i]`.
    pub strings: Vec<String>,
    /// `extraStringIDs`.
    pub ids: HashMap<String, ExtraStringId>,
    /// `nextExtra`: the last ID handed out.
    pub next: ExtraStringId,
}

/// base.go: evTable, the per-generation data needed to interpret an event.
#[derive(Debug, Default)]
pub struct EvTable {
    /// The embedded `sync` (frequency and clock snapshot).
    pub sync: SyncData,
    /// The string table.
    pub strings: DataTable<String>,
    /// The stack table.
    pub stacks: DataTable<RawStack>,
    /// The frames of every PC referenced by the stack table.
    pub pcs: FxHashMap<u64, StackFrame>,
    /// Strings generated during parsing that are not in the trace's string table.
    pub extra: Mutex<ExtraStrings>,
    /// Unparsed data of each experiment.
    pub exp_batches: HashMap<Experiment, Vec<ExperimentalBatch>>,
}

impl EvTable {
    /// The generation's frequency (nanoseconds per tick).
    pub fn freq(&self) -> Frequency {
        self.sync.freq
    }

    /// evTable.addExtraString: adds `s` and returns its ID (0 for the empty string).
    pub fn add_extra_string(&self, s: &str) -> ExtraStringId {
        if s.is_empty() {
            return 0;
        }
        let mut x = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = x.ids.get(s) {
            return id;
        }
        x.next += 1;
        let id = x.next;
        x.strings.push(s.to_string());
        x.ids.insert(s.to_string(), id);
        id
    }

    /// evTable.getExtraString: the extra string for an ID from [`EvTable::add_extra_string`]
    /// ("" for 0 or an unknown ID, where Go would panic).
    pub fn get_extra_string(&self, id: ExtraStringId) -> String {
        if id == 0 {
            return String::new();
        }
        let x = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        usize::try_from(id - 1)
            .ok()
            .and_then(|i| x.strings.get(i))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_table_insert_get_compactify() {
        let mut t: DataTable<String> = DataTable::default();
        assert_eq!(t.get(0).map(String::as_str), Some(""));
        assert!(t.get(1).is_none());
        for id in [3u64, 1, 2, 5] {
            t.insert(id, format!("s{id}")).unwrap();
        }
        let err = t.insert(2, "again".into()).unwrap_err();
        assert!(matches!(err, TraceError::Malformed(_)), "{err}");
        assert!(
            err.to_string()
                .contains("multiple Strings with the same ID: id=2"),
            "{err}"
        );
        t.compactify();
        assert!(t.sparse.is_none(), "dense IDs are compacted");
        assert_eq!(t.dense.len(), 6);
        for id in [1u64, 2, 3, 5] {
            assert_eq!(t.get(id), Some(&format!("s{id}")));
        }
        assert!(t.get(4).is_none());
        assert!(t.get(6).is_none());
        assert!(t.get(u64::MAX).is_none());
        assert_eq!(t.must_get(4), "");
        assert_eq!(t.len(), 4);
        let mut seen = vec![];
        assert!(t.for_each(|id, _| {
            seen.push(id);
            true
        }));
        assert_eq!(seen, vec![1, 2, 3, 5]);
        // Inserting after compaction goes to the sparse map, duplicates still caught.
        assert!(t.insert(5, "dup".into()).is_err());
        t.insert(100, "late".into()).unwrap();
        assert_eq!(t.get(100).map(String::as_str), Some("late"));
    }

    #[test]
    fn data_table_stays_sparse_for_sparse_ids() {
        let mut t: DataTable<String> = DataTable::default();
        t.insert(1, "a".into()).unwrap();
        t.insert(1 << 40, "b".into()).unwrap();
        t.insert(u64::MAX, "c".into()).unwrap();
        t.compactify();
        assert!(t.dense.is_empty());
        assert_eq!(t.get(1 << 40).map(String::as_str), Some("b"));
        assert_eq!(t.get(u64::MAX).map(String::as_str), Some("c"));
        // An empty table compacts to nothing.
        let mut e: DataTable<RawStack> = DataTable::default();
        e.compactify();
        assert!(e.is_empty());
    }

    #[test]
    fn extra_strings() {
        let t = EvTable::default();
        assert_eq!(t.add_extra_string(""), 0);
        let a = t.add_extra_string("task a");
        let b = t.add_extra_string("task b");
        assert_eq!((a, b), (1, 2));
        assert_eq!(t.add_extra_string("task a"), 1);
        assert_eq!(t.get_extra_string(2), "task b");
        assert_eq!(t.get_extra_string(0), "");
        assert_eq!(t.get_extra_string(99), "");
    }

    #[test]
    fn base_event_extra() {
        let mut e = BaseEvent {
            typ: spec::EV_GO_STATUS, // dt, g, m, gstatus: 3 args after dt, 1 extra slot
            ..BaseEvent::default()
        };
        assert_eq!(e.extra().len(), 1);
        e.extra_mut()[0] = 7;
        assert_eq!(e.args[3], 7);
        e.typ = spec::EV_PROC_STOP; // only dt: all 4 slots are extra
        assert_eq!(e.extra().len(), 4);
        e.typ = spec::EV_USER_LOG; // 5 args: no extra
        assert!(e.extra().is_empty());
        e.typ = spec::EV_NONE;
        assert_eq!(e.extra().len(), 4);
    }

    #[test]
    fn frequency_and_wall_time() {
        let f = Frequency::from_ticks_per_second(1_000_000_000);
        assert_eq!(f.mul(12345), 12345);
        let f = Frequency::from_ticks_per_second(500_000_000);
        assert_eq!(f.mul(10), 20);
        assert!(Frequency::default().is_zero());
        assert_eq!(
            WallTime::from_unix(10, 2_500_000_000),
            WallTime {
                sec: 12,
                nsec: 500_000_000
            }
        );
        // A huge u64 nsec is negative as int64, as in Go.
        let w = WallTime::from_unix(10, u64::MAX);
        assert_eq!(
            w,
            WallTime {
                sec: 9,
                nsec: 999_999_999
            }
        );
    }
}
