//! The event spec tables: which events exist, how many arguments each has, which arguments are
//! string or stack IDs, and which carry trailing data or a stack.
//!
//! Ported from Go 1.27's `internal/trace/tracev2/events.go` and `tracev2/spec.go`. Go 1.27 keeps
//! a single table that is a superset of every v2 version's events (event numbers never change,
//! newer versions only append); each [`Version`] sees a prefix of it, exactly as
//! `version.Version.Specs()` slices `tracev2.Specs()`.

use std::collections::HashMap;

use super::version::Version;

/// tracev2.EventType: an event's type, as the byte that precedes the event on the wire.
pub type EventType = u8;

/// tracev2.Experiment: the ID of an experiment that events or batches may belong to.
pub type Experiment = u32;

/// tracev2.NoExperiment: the reserved ID 0, "not experimental".
pub const NO_EXPERIMENT: Experiment = 0;
/// tracev2.AllocFree: the alloc/free events experiment.
pub const ALLOC_FREE: Experiment = 1;
/// tracev2.NumExperiments.
pub const NUM_EXPERIMENTS: Experiment = 2;

/// tracev2.Experiments(): the experiment names, indexed by [`Experiment`].
pub fn experiments() -> &'static [&'static str] {
    &["None", "AllocFree"]
}

// tracev2/events.go: the event types. Structural events first, then timed events.
/// Unused.
pub const EV_NONE: EventType = 0;
/// Start of per-M batch of events `[generation, M ID, timestamp, batch length]`.
pub const EV_EVENT_BATCH: EventType = 1;
/// Start of a section of the stack table `[...EvStack]`.
pub const EV_STACKS: EventType = 2;
/// Stack table entry `[ID, ...{PC, func string ID, file string ID, line #}]`.
pub const EV_STACK: EventType = 3;
/// Start of a section of the string dictionary `[...EvString]`.
pub const EV_STRINGS: EventType = 4;
/// String dictionary entry `[ID, length, string]`.
pub const EV_STRING: EventType = 5;
/// Start of a section of CPU samples `[...EvCPUSample]`.
pub const EV_CPU_SAMPLES: EventType = 6;
/// CPU profiling sample `[timestamp, M ID, P ID, goroutine ID, stack ID]`.
pub const EV_CPU_SAMPLE: EventType = 7;
/// Timestamp units per sec `[freq]`.
pub const EV_FREQUENCY: EventType = 8;

/// Current value of GOMAXPROCS `[timestamp, GOMAXPROCS, stack ID]`.
pub const EV_PROCS_CHANGE: EventType = 9;
/// Start of P `[timestamp, P ID, P seq]`.
pub const EV_PROC_START: EventType = 10;
/// Stop of P `[timestamp]`.
pub const EV_PROC_STOP: EventType = 11;
/// P was stolen `[timestamp, P ID, P seq, M ID]`.
pub const EV_PROC_STEAL: EventType = 12;
/// P status at the start of a generation `[timestamp, P ID, status]`.
pub const EV_PROC_STATUS: EventType = 13;

/// Goroutine creation `[timestamp, new goroutine ID, new stack ID, stack ID]`.
pub const EV_GO_CREATE: EventType = 14;
/// Goroutine appears in syscall (cgo callback) `[timestamp, new goroutine ID]`.
pub const EV_GO_CREATE_SYSCALL: EventType = 15;
/// Goroutine starts running `[timestamp, goroutine ID, goroutine seq]`.
pub const EV_GO_START: EventType = 16;
/// Goroutine ends `[timestamp]`.
pub const EV_GO_DESTROY: EventType = 17;
/// Goroutine ends in syscall (cgo callback) `[timestamp]`.
pub const EV_GO_DESTROY_SYSCALL: EventType = 18;
/// Goroutine yields its time, but is runnable `[timestamp, reason, stack ID]`.
pub const EV_GO_STOP: EventType = 19;
/// Goroutine blocks `[timestamp, reason, stack ID]`.
pub const EV_GO_BLOCK: EventType = 20;
/// Goroutine is unblocked `[timestamp, goroutine ID, goroutine seq, stack ID]`.
pub const EV_GO_UNBLOCK: EventType = 21;
/// Syscall enter `[timestamp, P seq, stack ID]`.
pub const EV_GO_SYSCALL_BEGIN: EventType = 22;
/// Syscall exit `[timestamp]`.
pub const EV_GO_SYSCALL_END: EventType = 23;
/// Syscall exit and it blocked at some point `[timestamp]`.
pub const EV_GO_SYSCALL_END_BLOCKED: EventType = 24;
/// Goroutine status at the start of a generation `[timestamp, goroutine ID, M ID, status]`.
pub const EV_GO_STATUS: EventType = 25;

/// STW start `[timestamp, kind, stack ID]`.
pub const EV_STW_BEGIN: EventType = 26;
/// STW done `[timestamp]`.
pub const EV_STW_END: EventType = 27;

/// GC active `[timestamp, seq]`.
pub const EV_GC_ACTIVE: EventType = 28;
/// GC start `[timestamp, seq, stack ID]`.
pub const EV_GC_BEGIN: EventType = 29;
/// GC done `[timestamp, seq]`.
pub const EV_GC_END: EventType = 30;
/// GC sweep active `[timestamp, P ID]`.
pub const EV_GC_SWEEP_ACTIVE: EventType = 31;
/// GC sweep start `[timestamp, stack ID]`.
pub const EV_GC_SWEEP_BEGIN: EventType = 32;
/// GC sweep done `[timestamp, swept bytes, reclaimed bytes]`.
pub const EV_GC_SWEEP_END: EventType = 33;
/// GC mark assist active `[timestamp, goroutine ID]`.
pub const EV_GC_MARK_ASSIST_ACTIVE: EventType = 34;
/// GC mark assist start `[timestamp, stack ID]`.
pub const EV_GC_MARK_ASSIST_BEGIN: EventType = 35;
/// GC mark assist done `[timestamp]`.
pub const EV_GC_MARK_ASSIST_END: EventType = 36;
/// gcController.heapLive change `[timestamp, heap alloc in bytes]`.
pub const EV_HEAP_ALLOC: EventType = 37;
/// gcController.heapGoal() change `[timestamp, heap goal in bytes]`.
pub const EV_HEAP_GOAL: EventType = 38;

/// Apply string label to current running goroutine `[timestamp, label string ID]`.
pub const EV_GO_LABEL: EventType = 39;
/// trace.NewTask `[timestamp, internal task ID, internal parent task ID, name string ID, stack ID]`.
pub const EV_USER_TASK_BEGIN: EventType = 40;
/// End of a task `[timestamp, internal task ID, stack ID]`.
pub const EV_USER_TASK_END: EventType = 41;
/// trace.{Start,With}Region `[timestamp, internal task ID, name string ID, stack ID]`.
pub const EV_USER_REGION_BEGIN: EventType = 42;
/// trace.{End,With}Region `[timestamp, internal task ID, name string ID, stack ID]`.
pub const EV_USER_REGION_END: EventType = 43;
/// trace.Log `[timestamp, internal task ID, key string ID, value string ID, stack]`.
pub const EV_USER_LOG: EventType = 44;

/// Goroutine switch (coroswitch) `[timestamp, goroutine ID, goroutine seq]`. Go 1.23+.
pub const EV_GO_SWITCH: EventType = 45;
/// Goroutine switch and destroy `[timestamp, goroutine ID, goroutine seq]`. Go 1.23+.
pub const EV_GO_SWITCH_DESTROY: EventType = 46;
/// Goroutine creation (starts blocked) `[timestamp, new goroutine ID, new stack ID, stack ID]`.
/// Go 1.23+.
pub const EV_GO_CREATE_BLOCKED: EventType = 47;
/// Goroutine status at the start of a generation, with a stack [timestamp, goroutine ID, M ID,
/// status, stack ID]. Go 1.23+.
pub const EV_GO_STATUS_STACK: EventType = 48;
/// Start of extra data `[experiment ID, generation, M ID, timestamp, batch length, batch data...]`.
/// Go 1.23+.
pub const EV_EXPERIMENTAL_BATCH: EventType = 49;

/// Start of a sync batch `[...EvFrequency|EvClockSnapshot]`. Go 1.25+; previously a lone
/// EvFrequency event.
pub const EV_SYNC: EventType = 50;
/// Snapshot of trace, mono and wall clocks `[timestamp, mono, sec, nsec]`. Go 1.25+.
pub const EV_CLOCK_SNAPSHOT: EventType = 51;
/// In-band end-of-generation signal. Go 1.26+ (Go 1.25 uses it only internally).
pub const EV_END_OF_GENERATION: EventType = 52;
/// tracev2.NumEvents.
pub const NUM_EVENTS: EventType = 53;

// Experimental events (tracev2/events.go), numbered above MaxEvent.
/// tracev2.MaxEvent: experimental event types are strictly above it.
pub const MAX_EVENT: EventType = 127;
/// Heap span exists `[timestamp, id, npages, type/class]`. AllocFree, Go 1.23+.
pub const EV_SPAN: EventType = 128;
/// Heap span alloc `[timestamp, id, npages, type/class]`.
pub const EV_SPAN_ALLOC: EventType = 129;
/// Heap span free `[timestamp, id]`.
pub const EV_SPAN_FREE: EventType = 130;
/// Heap object exists `[timestamp, id, type]`.
pub const EV_HEAP_OBJECT: EventType = 131;
/// Heap object alloc `[timestamp, id, type]`.
pub const EV_HEAP_OBJECT_ALLOC: EventType = 132;
/// Heap object free `[timestamp, id]`.
pub const EV_HEAP_OBJECT_FREE: EventType = 133;
/// Goroutine stack exists `[timestamp, id, order]`.
pub const EV_GOROUTINE_STACK: EventType = 134;
/// Goroutine stack alloc `[timestamp, id, order]`.
pub const EV_GOROUTINE_STACK_ALLOC: EventType = 135;
/// Goroutine stack free `[timestamp, id]`.
pub const EV_GOROUTINE_STACK_FREE: EventType = 136;
/// tracev2.MaxExperimentalEvent.
pub const MAX_EXPERIMENTAL_EVENT: EventType = 137;
/// tracev2.NumExperimentalEvents.
pub const NUM_EXPERIMENTAL_EVENTS: EventType = MAX_EXPERIMENTAL_EVENT - MAX_EVENT;

/// tracev2.EventType.Experimental.
pub fn is_experimental(ev: EventType) -> bool {
    ev > MAX_EVENT && ev < MAX_EXPERIMENTAL_EVENT
}

/// tracev2.MaxTimedEventArgs: the maximum number of arguments of a timed event (including the
/// timestamp delta).
pub const MAX_TIMED_EVENT_ARGS: usize = 5;

/// tracev2.MaxBatchSize: the largest batch the runtime writes; larger sizes are corrupt.
pub const MAX_BATCH_SIZE: u64 = 64 << 10;
/// tracev2.MaxFramesPerStack.
pub const MAX_FRAMES_PER_STACK: u64 = 128;
/// tracev2.MaxEventTrailerDataSize: the maximum size of an event's trailing data (strings).
pub const MAX_EVENT_TRAILER_DATA_SIZE: u64 = 1 << 10;

/// tracev2.EventArgTypes: the valid argument types (the suffix after `_` in an argument name).
pub const EVENT_ARG_TYPES: [&str; 10] = [
    "seq", "pstatus", "gstatus", "g", "m", "p", "string", "stack", "value", "task",
];

/// tracev2.EventSpec: everything needed to parse one event of any v2 version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Human-readable name of the event.
    pub name: &'static str,
    /// Argument names; the length is the number of arguments. Timed events start with "dt".
    pub args: &'static [&'static str],
    /// Which arguments are string IDs.
    pub string_ids: &'static [usize],
    /// Which arguments are stack IDs; the first is the main stack of the event's context.
    pub stack_ids: &'static [usize],
    /// For the "end" of a time range, the type of the matching "start" event (else EV_NONE).
    pub start_ev: EventType,
    /// The event appears in the main event stream and is surfaced by the reader.
    pub is_timed_event: bool,
    /// The event has a trailer: a varint length followed by that many bytes.
    pub has_data: bool,
    /// The event is a complete stack: after the arguments come 4*nframes varints
    /// (PC, func string ID, file string ID, line).
    pub is_stack: bool,
    /// The experiment the event belongs to, or [`NO_EXPERIMENT`].
    pub experiment: Experiment,
}

/// A zero spec, as Go's zero EventSpec for unused slots of the table.
const EMPTY: Spec = Spec {
    name: "",
    args: &[],
    string_ids: &[],
    stack_ids: &[],
    start_ev: EV_NONE,
    is_timed_event: false,
    has_data: false,
    is_stack: false,
    experiment: NO_EXPERIMENT,
};

/// Length of Go's `specs` array: one past the highest event type it lists.
const NUM_SPECS: usize = MAX_EXPERIMENTAL_EVENT as usize;

// tracev2/events.go: `var specs = [...]EventSpec{...}`, generated from the Go source and kept
// in the same order.
#[rustfmt::skip]
const fn build_specs() -> [Spec; NUM_SPECS] {
    let mut s = [EMPTY; NUM_SPECS];
    // "Structural" events.
    s[EV_EVENT_BATCH as usize] = Spec { name: "EventBatch", args: &["gen", "m", "time", "size"], ..EMPTY };
    s[EV_STACKS as usize] = Spec { name: "Stacks", ..EMPTY };
    s[EV_STACK as usize] = Spec { name: "Stack", args: &["id", "nframes"], is_stack: true, ..EMPTY };
    s[EV_STRINGS as usize] = Spec { name: "Strings", ..EMPTY };
    s[EV_STRING as usize] = Spec { name: "String", args: &["id"], has_data: true, ..EMPTY };
    s[EV_CPU_SAMPLES as usize] = Spec { name: "CPUSamples", ..EMPTY };
    s[EV_CPU_SAMPLE as usize] = Spec { name: "CPUSample", args: &["time", "m", "p", "g", "stack"], stack_ids: &[4], ..EMPTY };
    s[EV_FREQUENCY as usize] = Spec { name: "Frequency", args: &["freq"], ..EMPTY };
    s[EV_EXPERIMENTAL_BATCH as usize] = Spec { name: "ExperimentalBatch", args: &["exp", "gen", "m", "time"], has_data: true, ..EMPTY };
    s[EV_SYNC as usize] = Spec { name: "Sync", ..EMPTY };
    s[EV_END_OF_GENERATION as usize] = Spec { name: "EndOfGeneration", ..EMPTY };

    // "Timed" events.
    s[EV_PROCS_CHANGE as usize] = Spec { name: "ProcsChange", args: &["dt", "procs_value", "stack"], is_timed_event: true, stack_ids: &[2], ..EMPTY };
    s[EV_PROC_START as usize] = Spec { name: "ProcStart", args: &["dt", "p", "p_seq"], is_timed_event: true, ..EMPTY };
    s[EV_PROC_STOP as usize] = Spec { name: "ProcStop", args: &["dt"], is_timed_event: true, ..EMPTY };
    s[EV_PROC_STEAL as usize] = Spec { name: "ProcSteal", args: &["dt", "p", "p_seq", "m"], is_timed_event: true, ..EMPTY };
    s[EV_PROC_STATUS as usize] = Spec { name: "ProcStatus", args: &["dt", "p", "pstatus"], is_timed_event: true, ..EMPTY };
    s[EV_GO_CREATE as usize] = Spec { name: "GoCreate", args: &["dt", "new_g", "new_stack", "stack"], is_timed_event: true, stack_ids: &[3, 2], ..EMPTY };
    s[EV_GO_CREATE_SYSCALL as usize] = Spec { name: "GoCreateSyscall", args: &["dt", "new_g"], is_timed_event: true, ..EMPTY };
    s[EV_GO_START as usize] = Spec { name: "GoStart", args: &["dt", "g", "g_seq"], is_timed_event: true, ..EMPTY };
    s[EV_GO_DESTROY as usize] = Spec { name: "GoDestroy", args: &["dt"], is_timed_event: true, ..EMPTY };
    s[EV_GO_DESTROY_SYSCALL as usize] = Spec { name: "GoDestroySyscall", args: &["dt"], is_timed_event: true, ..EMPTY };
    s[EV_GO_STOP as usize] = Spec { name: "GoStop", args: &["dt", "reason_string", "stack"], is_timed_event: true, stack_ids: &[2], string_ids: &[1], ..EMPTY };
    s[EV_GO_BLOCK as usize] = Spec { name: "GoBlock", args: &["dt", "reason_string", "stack"], is_timed_event: true, stack_ids: &[2], string_ids: &[1], ..EMPTY };
    s[EV_GO_UNBLOCK as usize] = Spec { name: "GoUnblock", args: &["dt", "g", "g_seq", "stack"], is_timed_event: true, stack_ids: &[3], ..EMPTY };
    s[EV_GO_SYSCALL_BEGIN as usize] = Spec { name: "GoSyscallBegin", args: &["dt", "p_seq", "stack"], is_timed_event: true, stack_ids: &[2], ..EMPTY };
    s[EV_GO_SYSCALL_END as usize] = Spec { name: "GoSyscallEnd", args: &["dt"], start_ev: EV_GO_SYSCALL_BEGIN, is_timed_event: true, ..EMPTY };
    s[EV_GO_SYSCALL_END_BLOCKED as usize] = Spec { name: "GoSyscallEndBlocked", args: &["dt"], start_ev: EV_GO_SYSCALL_BEGIN, is_timed_event: true, ..EMPTY };
    s[EV_GO_STATUS as usize] = Spec { name: "GoStatus", args: &["dt", "g", "m", "gstatus"], is_timed_event: true, ..EMPTY };
    s[EV_STW_BEGIN as usize] = Spec { name: "STWBegin", args: &["dt", "kind_string", "stack"], is_timed_event: true, stack_ids: &[2], string_ids: &[1], ..EMPTY };
    s[EV_STW_END as usize] = Spec { name: "STWEnd", args: &["dt"], start_ev: EV_STW_BEGIN, is_timed_event: true, ..EMPTY };
    s[EV_GC_ACTIVE as usize] = Spec { name: "GCActive", args: &["dt", "gc_seq"], is_timed_event: true, start_ev: EV_GC_BEGIN, ..EMPTY };
    s[EV_GC_BEGIN as usize] = Spec { name: "GCBegin", args: &["dt", "gc_seq", "stack"], is_timed_event: true, stack_ids: &[2], ..EMPTY };
    s[EV_GC_END as usize] = Spec { name: "GCEnd", args: &["dt", "gc_seq"], start_ev: EV_GC_BEGIN, is_timed_event: true, ..EMPTY };
    s[EV_GC_SWEEP_ACTIVE as usize] = Spec { name: "GCSweepActive", args: &["dt", "p"], start_ev: EV_GC_SWEEP_BEGIN, is_timed_event: true, ..EMPTY };
    s[EV_GC_SWEEP_BEGIN as usize] = Spec { name: "GCSweepBegin", args: &["dt", "stack"], is_timed_event: true, stack_ids: &[1], ..EMPTY };
    s[EV_GC_SWEEP_END as usize] = Spec { name: "GCSweepEnd", args: &["dt", "swept_value", "reclaimed_value"], start_ev: EV_GC_SWEEP_BEGIN, is_timed_event: true, ..EMPTY };
    s[EV_GC_MARK_ASSIST_ACTIVE as usize] = Spec { name: "GCMarkAssistActive", args: &["dt", "g"], start_ev: EV_GC_MARK_ASSIST_BEGIN, is_timed_event: true, ..EMPTY };
    s[EV_GC_MARK_ASSIST_BEGIN as usize] = Spec { name: "GCMarkAssistBegin", args: &["dt", "stack"], is_timed_event: true, stack_ids: &[1], ..EMPTY };
    s[EV_GC_MARK_ASSIST_END as usize] = Spec { name: "GCMarkAssistEnd", args: &["dt"], start_ev: EV_GC_MARK_ASSIST_BEGIN, is_timed_event: true, ..EMPTY };
    s[EV_HEAP_ALLOC as usize] = Spec { name: "HeapAlloc", args: &["dt", "heapalloc_value"], is_timed_event: true, ..EMPTY };
    s[EV_HEAP_GOAL as usize] = Spec { name: "HeapGoal", args: &["dt", "heapgoal_value"], is_timed_event: true, ..EMPTY };
    s[EV_GO_LABEL as usize] = Spec { name: "GoLabel", args: &["dt", "label_string"], is_timed_event: true, string_ids: &[1], ..EMPTY };
    s[EV_USER_TASK_BEGIN as usize] = Spec { name: "UserTaskBegin", args: &["dt", "task", "parent_task", "name_string", "stack"], is_timed_event: true, stack_ids: &[4], string_ids: &[3], ..EMPTY };
    s[EV_USER_TASK_END as usize] = Spec { name: "UserTaskEnd", args: &["dt", "task", "stack"], is_timed_event: true, stack_ids: &[2], ..EMPTY };
    s[EV_USER_REGION_BEGIN as usize] = Spec { name: "UserRegionBegin", args: &["dt", "task", "name_string", "stack"], is_timed_event: true, stack_ids: &[3], string_ids: &[2], ..EMPTY };
    s[EV_USER_REGION_END as usize] = Spec { name: "UserRegionEnd", args: &["dt", "task", "name_string", "stack"], start_ev: EV_USER_REGION_BEGIN, is_timed_event: true, stack_ids: &[3], string_ids: &[2], ..EMPTY };
    s[EV_USER_LOG as usize] = Spec { name: "UserLog", args: &["dt", "task", "key_string", "value_string", "stack"], is_timed_event: true, stack_ids: &[4], string_ids: &[2, 3], ..EMPTY };
    s[EV_GO_SWITCH as usize] = Spec { name: "GoSwitch", args: &["dt", "g", "g_seq"], is_timed_event: true, ..EMPTY };
    s[EV_GO_SWITCH_DESTROY as usize] = Spec { name: "GoSwitchDestroy", args: &["dt", "g", "g_seq"], is_timed_event: true, ..EMPTY };
    s[EV_GO_CREATE_BLOCKED as usize] = Spec { name: "GoCreateBlocked", args: &["dt", "new_g", "new_stack", "stack"], is_timed_event: true, stack_ids: &[3, 2], ..EMPTY };
    s[EV_GO_STATUS_STACK as usize] = Spec { name: "GoStatusStack", args: &["dt", "g", "m", "gstatus", "stack"], is_timed_event: true, stack_ids: &[4], ..EMPTY };
    s[EV_CLOCK_SNAPSHOT as usize] = Spec { name: "ClockSnapshot", args: &["dt", "mono", "sec", "nsec"], is_timed_event: true, ..EMPTY };

    // Experimental events.
    s[EV_SPAN as usize] = Spec { name: "Span", args: &["dt", "id", "npages_value", "kindclass"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s[EV_SPAN_ALLOC as usize] = Spec { name: "SpanAlloc", args: &["dt", "id", "npages_value", "kindclass"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s[EV_SPAN_FREE as usize] = Spec { name: "SpanFree", args: &["dt", "id"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s[EV_HEAP_OBJECT as usize] = Spec { name: "HeapObject", args: &["dt", "id", "type"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s[EV_HEAP_OBJECT_ALLOC as usize] = Spec { name: "HeapObjectAlloc", args: &["dt", "id", "type"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s[EV_HEAP_OBJECT_FREE as usize] = Spec { name: "HeapObjectFree", args: &["dt", "id"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s[EV_GOROUTINE_STACK as usize] = Spec { name: "GoroutineStack", args: &["dt", "id", "order"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s[EV_GOROUTINE_STACK_ALLOC as usize] = Spec { name: "GoroutineStackAlloc", args: &["dt", "id", "order"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s[EV_GOROUTINE_STACK_FREE as usize] = Spec { name: "GoroutineStackFree", args: &["dt", "id"], is_timed_event: true, experiment: ALLOC_FREE, ..EMPTY };
    s
}

static SPECS: [Spec; NUM_SPECS] = build_specs();

/// tracev2.Specs(): the full table, indexed by [`EventType`]. Go's reader uses this table (not
/// the per-version one) when it decodes timed events.
pub fn all_specs() -> &'static [Spec] {
    &SPECS
}

/// version.Version.Specs(): the events a trace of version `v` can contain — a prefix of
/// [`all_specs`], cut exactly where Go 1.27's `version.go` cuts it.
pub fn specs(v: Version) -> &'static [Spec] {
    let end = match v {
        // All events after are Go 1.23+.
        Version::Go122 => EV_USER_LOG as usize + 1,
        // All events after are Go 1.25+.
        Version::Go123 => EV_EXPERIMENTAL_BATCH as usize + 1,
        // All events after are Go 1.26+.
        Version::Go125 => EV_CLOCK_SNAPSHOT as usize + 1,
        Version::Go126 => NUM_SPECS,
    };
    SPECS.get(..end).unwrap_or(&SPECS)
}

/// The spec of `typ` in the full table, or `None` for a type Go does not define.
pub fn spec(typ: EventType) -> Option<&'static Spec> {
    SPECS.get(usize::from(typ))
}

/// The spec of `typ`, or the empty spec (as Go's zero EventSpec) when out of range. Handy where
/// Go indexes `tracev2.Specs()[typ]` with an already validated type.
pub fn spec_or_empty(typ: EventType) -> &'static Spec {
    spec(typ).unwrap_or(&EMPTY)
}

/// tracev2.EventNames: name → event type.
pub fn event_names(specs: &[Spec]) -> HashMap<&'static str, EventType> {
    specs
        .iter()
        .enumerate()
        .filter_map(|(i, s)| EventType::try_from(i).ok().map(|t| (s.name, t)))
        .collect()
}

/// tracev2.GoStatus: a goroutine's status as written in GoStatus events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GoStatus(pub u8);

/// tracev2.GoBad.
pub const GO_BAD: GoStatus = GoStatus(0);
/// tracev2.GoRunnable.
pub const GO_RUNNABLE: GoStatus = GoStatus(1);
/// tracev2.GoRunning.
pub const GO_RUNNING: GoStatus = GoStatus(2);
/// tracev2.GoSyscall.
pub const GO_SYSCALL: GoStatus = GoStatus(3);
/// tracev2.GoWaiting.
pub const GO_WAITING: GoStatus = GoStatus(4);

impl GoStatus {
    /// `tracev2.GoStatus(arg)`: Go converts the raw argument with a truncating cast.
    pub fn from_arg(arg: u64) -> GoStatus {
        GoStatus(arg as u8)
    }
}

impl std::fmt::Display for GoStatus {
    // tracev2.GoStatus.String.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match *self {
            GO_RUNNABLE => "Runnable",
            GO_RUNNING => "Running",
            GO_SYSCALL => "Syscall",
            GO_WAITING => "Waiting",
            _ => "Bad",
        })
    }
}

/// tracev2.ProcStatus: a P's status as written in ProcStatus events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProcStatus(pub u8);

/// tracev2.ProcBad.
pub const PROC_BAD: ProcStatus = ProcStatus(0);
/// tracev2.ProcRunning.
pub const PROC_RUNNING: ProcStatus = ProcStatus(1);
/// tracev2.ProcIdle.
pub const PROC_IDLE: ProcStatus = ProcStatus(2);
/// tracev2.ProcSyscall.
pub const PROC_SYSCALL: ProcStatus = ProcStatus(3);
/// tracev2.ProcSyscallAbandoned: the P was first mentioned by a ProcSteal, so there is no
/// GoSyscallBegin to connect the steal to.
pub const PROC_SYSCALL_ABANDONED: ProcStatus = ProcStatus(4);

impl ProcStatus {
    /// `tracev2.ProcStatus(arg)`: a truncating cast, as in Go.
    pub fn from_arg(arg: u64) -> ProcStatus {
        ProcStatus(arg as u8)
    }
}

impl std::fmt::Display for ProcStatus {
    // tracev2.ProcStatus.String.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match *self {
            PROC_RUNNING => "Running",
            PROC_IDLE => "Idle",
            PROC_SYSCALL => "Syscall",
            PROC_SYSCALL_ABANDONED => "SyscallAbandoned",
            _ => "Bad",
        })
    }
}
