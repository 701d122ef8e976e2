//! The public, resolved trace events, ported from Go 1.27.3's `internal/trace/event.go`,
//! `value.go` and `resources.go`.
//!
//! An [`Event`] is a raw event ([`BaseEvent`]) plus the scheduling context the ordering code
//! worked out for it (which M, P and G it happened on) and the generation's tables, which it
//! shares through an `Arc`. Its details (state transitions, ranges, tasks, …) are decoded on
//! demand by the accessors, as in Go. Its `Display` prints exactly what Go's `Event.String()`
//! prints (see `event_fmt.rs`), which is what `go tool trace -d=parsed` shows.
//!
//! Go's accessors panic when called on an event of the wrong kind; these return an empty
//! value instead (no panics on any input).

use std::collections::HashMap;
use std::sync::Arc;

use super::base::{
    BaseEvent, EvTable, ExperimentalBatch, GoID, MAX_ARGS, NO_GOROUTINE, NO_PROC, NO_THREAD,
    ProcID, StackId, ThreadID, Time, TraceError, WallTime,
};
use super::order::SchedCtx;
pub use super::resources::{GoState, ProcState, ResourceId, ResourceKind, StateTransition, Value};
use super::spec::{self, EventType};

/// event.go: evSync, the event type of the Sync events the reader makes up (one per
/// generation, and a final one). Not a wire event type.
pub const EV_SYNC_EVENT: EventType = EventType::MAX;

/// event.go: EventKind, what an event is; each kind has its own details accessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EventKind {
    /// Not a valid event.
    #[default]
    Bad,
    /// A global synchronization point: the start of a generation, or the end of the trace.
    Sync,
    /// The value of a metric ([`Event::metric`]).
    Metric,
    /// A label attached to a resource ([`Event::label`]).
    Label,
    /// A CPU profile sample ([`Event::stack`]).
    StackSample,
    /// The start of a range of time on a resource ([`Event::range`]).
    RangeBegin,
    /// A range that was already active at the start of the generation.
    RangeActive,
    /// The end of a range ([`Event::range_attributes`]).
    RangeEnd,
    /// runtime/trace.NewTask ([`Event::task`]).
    TaskBegin,
    /// The end of a task.
    TaskEnd,
    /// runtime/trace.StartRegion ([`Event::region`]).
    RegionBegin,
    /// The end of a region.
    RegionEnd,
    /// runtime/trace.Log ([`Event::log`]).
    Log,
    /// A goroutine or proc changing state ([`Event::state_transition`]).
    StateTransition,
    /// An unvalidated event of an experiment ([`Event::experimental`]).
    Experimental,
}

impl EventKind {
    /// event.go: eventKindStrings.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Bad => "Bad",
            EventKind::Sync => "Sync",
            EventKind::Metric => "Metric",
            EventKind::Label => "Label",
            EventKind::StackSample => "StackSample",
            EventKind::RangeBegin => "RangeBegin",
            EventKind::RangeActive => "RangeActive",
            EventKind::RangeEnd => "RangeEnd",
            EventKind::TaskBegin => "TaskBegin",
            EventKind::TaskEnd => "TaskEnd",
            EventKind::RegionBegin => "RegionBegin",
            EventKind::RegionEnd => "RegionEnd",
            EventKind::Log => "Log",
            EventKind::StateTransition => "StateTransition",
            EventKind::Experimental => "Experimental",
        }
    }
}

/// event.go: tracev2Type2Kind.
pub(crate) fn type_to_kind(typ: EventType) -> EventKind {
    use EventKind as K;
    match typ {
        spec::EV_CPU_SAMPLE => K::StackSample,
        spec::EV_PROCS_CHANGE | spec::EV_HEAP_ALLOC | spec::EV_HEAP_GOAL => K::Metric,
        spec::EV_PROC_START
        | spec::EV_PROC_STOP
        | spec::EV_PROC_STEAL
        | spec::EV_PROC_STATUS
        | spec::EV_GO_CREATE
        | spec::EV_GO_CREATE_SYSCALL
        | spec::EV_GO_START
        | spec::EV_GO_DESTROY
        | spec::EV_GO_DESTROY_SYSCALL
        | spec::EV_GO_STOP
        | spec::EV_GO_BLOCK
        | spec::EV_GO_UNBLOCK
        | spec::EV_GO_SYSCALL_BEGIN
        | spec::EV_GO_SYSCALL_END
        | spec::EV_GO_SYSCALL_END_BLOCKED
        | spec::EV_GO_STATUS
        | spec::EV_GO_SWITCH
        | spec::EV_GO_SWITCH_DESTROY
        | spec::EV_GO_CREATE_BLOCKED
        | spec::EV_GO_STATUS_STACK => K::StateTransition,
        spec::EV_STW_BEGIN
        | spec::EV_GC_BEGIN
        | spec::EV_GC_SWEEP_BEGIN
        | spec::EV_GC_MARK_ASSIST_BEGIN => K::RangeBegin,
        spec::EV_GC_ACTIVE | spec::EV_GC_SWEEP_ACTIVE | spec::EV_GC_MARK_ASSIST_ACTIVE => {
            K::RangeActive
        }
        spec::EV_STW_END
        | spec::EV_GC_END
        | spec::EV_GC_SWEEP_END
        | spec::EV_GC_MARK_ASSIST_END => K::RangeEnd,
        spec::EV_GO_LABEL => K::Label,
        spec::EV_USER_TASK_BEGIN => K::TaskBegin,
        spec::EV_USER_TASK_END => K::TaskEnd,
        spec::EV_USER_REGION_BEGIN => K::RegionBegin,
        spec::EV_USER_REGION_END => K::RegionEnd,
        spec::EV_USER_LOG => K::Log,
        // The heap span, heap object and goroutine stack events (Go 1.23+).
        typ if spec::is_experimental(typ) => K::Experimental,
        EV_SYNC_EVENT => K::Sync,
        _ => K::Bad,
    }
}

/// event.go: TaskID, the runtime's ID of a runtime/trace task.
pub type TaskId = u64;
/// event.go: NoTask, the lack of a task.
pub const NO_TASK: TaskId = u64::MAX;
/// event.go: BackgroundTask, the task of events emitted outside any other task.
pub const BACKGROUND_TASK: TaskId = 0;

/// event.go: tracev2GoStatus2GoState, the API state of a wire goroutine status (`None` past
/// the table; status 0, GoBad, maps to Undetermined as in Go).
pub(crate) fn go_status_to_state(status: u64) -> Option<GoState> {
    Some(match status {
        0 => GoState::Undetermined,
        1 => GoState::Runnable,
        2 => GoState::Running,
        3 => GoState::Syscall,
        4 => GoState::Waiting,
        _ => return None,
    })
}

/// event.go: tracev2ProcStatus2ProcState (Syscall is Running and SyscallAbandoned is Idle to
/// the API).
pub(crate) fn proc_status_to_state(status: u64) -> Option<ProcState> {
    Some(match status {
        0 => ProcState::Undetermined,
        1 | 3 => ProcState::Running,
        2 | 4 => ProcState::Idle,
        _ => return None,
    })
}

/// event.go: Stack, a handle to a stack in a generation's stack table.
///
/// As in Go, two stacks are equal when they are the same handle (same table, same ID);
/// [`Stack::NONE`] is the lack of a stack. A handle with ID 0 on a table is *not* NONE (Go
/// prints an empty `TransitionStack=` for such a goroutine creation).
#[derive(Debug, Clone, Default)]
pub struct Stack {
    table: Option<Arc<EvTable>>,
    id: StackId,
}

impl PartialEq for Stack {
    fn eq(&self, other: &Stack) -> bool {
        let same_table = match (&self.table, &other.table) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_table && self.id == other.id
    }
}

impl Eq for Stack {}

/// event.go: StackFrame, one resolved frame of a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The program counter (the call's return address, except in the leaf frame).
    pub pc: u64,
    /// The function name.
    pub func: &'a str,
    /// The source file.
    pub file: &'a str,
    /// The line in `file`.
    pub line: u64,
}

impl Stack {
    /// event.go: NoStack.
    pub const NONE: Stack = Stack { table: None, id: 0 };

    pub(crate) fn new(table: Option<Arc<EvTable>>, id: StackId) -> Stack {
        Stack { table, id }
    }

    /// The stack's ID in its generation's table (0: no frames). IDs restart with each
    /// generation.
    pub fn id(&self) -> StackId {
        self.id
    }

    /// True for [`Stack::NONE`].
    pub fn is_none(&self) -> bool {
        self.table.is_none() && self.id == 0
    }

    /// Stack.Frames: the frames, innermost first.
    pub fn frames(&self) -> impl Iterator<Item = Frame<'_>> {
        let table = self.table.as_deref().filter(|_| self.id != 0);
        let pcs: &[u64] = table.map_or(&[], |t| t.stacks.must_get(self.id).pcs.as_slice());
        pcs.iter().filter_map(move |pc| {
            let t = table?;
            // Go: `s.table.pcs[pc]`, the zero frame if missing (validated at load).
            let f = t.pcs.get(pc).copied().unwrap_or_default();
            Some(Frame {
                pc: f.pc,
                func: t.strings.must_get(f.func),
                file: t.strings.must_get(f.file),
                line: f.line,
            })
        })
    }
}

/// event.go: Metric.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metric {
    /// The metric's name, as in runtime/metrics (including the unit).
    pub name: &'static str,
    /// The sampled value.
    pub value: Value,
}

/// event.go: Label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Label {
    /// The label.
    pub label: String,
    /// The resource it applies to.
    pub resource: ResourceId,
}

/// event.go: Range.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Range {
    /// The range's name, e.g. "GC concurrent mark phase".
    pub name: String,
    /// The resource it is scoped to (None: global).
    pub scope: ResourceId,
}

/// event.go: RangeAttribute, an attribute of a completed range.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeAttribute {
    /// The attribute's name.
    pub name: &'static str,
    /// Its value.
    pub value: Value,
}

/// event.go: Task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Task {
    /// The task's ID.
    pub id: TaskId,
    /// The parent task's ID ([`NO_TASK`] if none).
    pub parent: TaskId,
    /// The task type given to runtime/trace.NewTask ("" if its begin is not in the trace).
    pub typ: String,
}

/// event.go: Region.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Region {
    /// The region's task.
    pub task: TaskId,
    /// The region type given to runtime/trace.StartRegion.
    pub typ: String,
}

/// event.go: Log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    /// The log's task.
    pub task: TaskId,
    /// The category given to runtime/trace.Log.
    pub category: String,
    /// The message.
    pub message: String,
}

/// event.go: ClockSnapshot, near-simultaneous readings of several clocks (Go ≥ 1.25).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockSnapshot {
    /// The trace clock, in nanoseconds (comparable with [`Event::time`]).
    pub trace: Time,
    /// The wall clock.
    pub wall: WallTime,
    /// The monotonic clock, in nanoseconds.
    pub mono: u64,
}

/// event.go: Sync, the details of a Sync event, relevant to the events up to the next one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sync {
    /// This is the Nth Sync event of the trace.
    pub n: u64,
    /// The generation's clock snapshot (None before Go 1.25, and on the final Sync).
    pub clock_snapshot: Option<ClockSnapshot>,
    /// The generation's unparsed experimental data, by experiment name.
    pub experimental_batches: HashMap<String, Vec<ExperimentalBatch>>,
    /// Not in Go: the generation's trace clock period in whole nanoseconds per tick (rounded,
    /// at least 1), None on the final Sync.
    pub tick_ns: Option<u64>,
}

/// event.go: ExperimentalEvent, the raw view of an experimental event.
#[derive(Debug, Clone, Default)]
pub struct ExperimentalEvent {
    /// The event's name.
    pub name: &'static str,
    /// The experiment's name.
    pub experiment: &'static str,
    /// The names of the arguments, in order.
    pub args: &'static [&'static str],
    table: Option<Arc<EvTable>>,
    arg_values: Vec<u64>,
}

impl ExperimentalEvent {
    /// ExperimentalEvent.ArgValue: the i'th argument (a string for `*string` arguments).
    /// `None` out of range, where Go panics.
    pub fn arg_value(&self, i: usize) -> Option<Value> {
        let name = self.args.get(i)?;
        let v = *self.arg_values.get(i)?;
        if name.ends_with("string") {
            let s = self
                .table
                .as_ref()
                .map_or("", |t| t.strings.must_get(v).as_str());
            return Some(Value::String(s.to_string()));
        }
        Some(Value::Uint64(v))
    }
}

/// event.go: Event, one event of the trace.
#[derive(Debug, Clone)]
pub struct Event {
    pub(crate) table: Option<Arc<EvTable>>,
    pub(crate) ctx: SchedCtx,
    pub(crate) base: BaseEvent,
}

impl Event {
    /// `Event{table, ctx, base}`.
    pub(crate) fn new(table: &Arc<EvTable>, ctx: SchedCtx, base: BaseEvent) -> Event {
        Event {
            table: Some(Arc::clone(table)),
            ctx,
            base,
        }
    }

    /// order.go: makeEvent, an event the ordering code adds (e.g. the GoBlock and GoStart
    /// a GoSwitch stands for).
    pub(crate) fn make(
        table: &Arc<EvTable>,
        ctx: SchedCtx,
        typ: EventType,
        time: Time,
        args: &[u64],
    ) -> Event {
        let mut base = BaseEvent {
            typ,
            time,
            args: [0; MAX_ARGS],
        };
        for (slot, a) in base.args.iter_mut().zip(args) {
            *slot = *a;
        }
        Event::new(table, ctx, base)
    }

    /// event.go: syncEvent.
    pub(crate) fn sync_event(table: Option<Arc<EvTable>>, ts: Time, n: u64) -> Event {
        let mut base = BaseEvent {
            typ: EV_SYNC_EVENT,
            time: ts,
            args: [0; MAX_ARGS],
        };
        base.args[0] = n;
        Event {
            table,
            ctx: SchedCtx {
                g: NO_GOROUTINE,
                p: NO_PROC,
                m: NO_THREAD,
            },
            base,
        }
    }

    /// The string with ID `id` in this event's table ("" if unknown, where Go panics; IDs
    /// are validated before events are returned).
    fn string(&self, id: u64) -> String {
        self.table
            .as_ref()
            .map_or_else(String::new, |t| t.strings.must_get(id).clone())
    }

    /// Argument `i` (after the timestamp).
    fn arg(&self, i: usize) -> u64 {
        self.base.args.get(i).copied().unwrap_or(0)
    }

    /// Extra slot `i` (base.go: baseEvent.extra), where the ordering code passes data up.
    fn extra(&self, i: usize) -> u64 {
        self.base.extra().get(i).copied().unwrap_or(0)
    }

    /// Event.Kind.
    pub fn kind(&self) -> EventKind {
        type_to_kind(self.base.typ)
    }

    /// Event.Time: the timestamp, in nanoseconds.
    pub fn time(&self) -> Time {
        self.base.time
    }

    /// Event.Goroutine: the goroutine executing when the event happened (for a transition,
    /// the state before it: a goroutine starting to run is not yet this).
    pub fn goroutine(&self) -> GoID {
        self.ctx.g
    }

    /// Event.Proc: the proc the event happened on.
    pub fn proc(&self) -> ProcID {
        self.ctx.p
    }

    /// Event.Thread: the thread the event happened on.
    pub fn thread(&self) -> ThreadID {
        self.ctx.m
    }

    /// The wire event type (tracev2), for diagnostics.
    pub fn wire_type(&self) -> EventType {
        self.base.typ
    }

    /// Event.Stack: the stack of the current execution context at the event.
    pub fn stack(&self) -> Stack {
        if self.base.typ == EV_SYNC_EVENT {
            return Stack::NONE;
        }
        if self.base.typ == spec::EV_CPU_SAMPLE {
            return Stack::new(self.table.clone(), self.arg(0));
        }
        let spec = spec::spec_or_empty(self.base.typ);
        // The main stack is the first of StackIDs; minus one for the peeled-off timestamp.
        let Some(&i) = spec.stack_ids.first() else {
            return Stack::NONE;
        };
        let id = self.arg(i.wrapping_sub(1));
        if id == 0 {
            return Stack::NONE;
        }
        Stack::new(self.table.clone(), id)
    }

    /// Event.Metric.
    pub fn metric(&self) -> Metric {
        let name = match self.base.typ {
            spec::EV_PROCS_CHANGE => "/sched/gomaxprocs:threads",
            spec::EV_HEAP_ALLOC => "/memory/classes/heap/objects:bytes",
            spec::EV_HEAP_GOAL => "/gc/heap/goal:bytes",
            _ => return Metric::default(),
        };
        Metric {
            name,
            value: Value::Uint64(self.arg(0)),
        }
    }

    /// Event.Label.
    pub fn label(&self) -> Label {
        if self.base.typ != spec::EV_GO_LABEL {
            return Label::default();
        }
        Label {
            label: self.string(self.arg(0)),
            resource: ResourceId::goroutine_id(self.ctx.g),
        }
    }

    /// Event.Range: for RangeBegin, RangeActive and RangeEnd events.
    pub fn range(&self) -> Range {
        match self.base.typ {
            spec::EV_STW_BEGIN | spec::EV_STW_END => Range {
                // ordering.advance smuggles the STW reason into args[0] of STWEnd too.
                name: format!("stop-the-world ({})", self.string(self.arg(0))),
                scope: ResourceId::goroutine_id(self.goroutine()),
            },
            spec::EV_GC_BEGIN | spec::EV_GC_ACTIVE | spec::EV_GC_END => Range {
                name: "GC concurrent mark phase".to_string(),
                scope: ResourceId::default(),
            },
            spec::EV_GC_SWEEP_BEGIN | spec::EV_GC_SWEEP_ACTIVE | spec::EV_GC_SWEEP_END => {
                let id = if self.base.typ == spec::EV_GC_SWEEP_ACTIVE {
                    self.arg(0) as ProcID
                } else {
                    self.proc()
                };
                Range {
                    name: "GC incremental sweep".to_string(),
                    scope: ResourceId::proc_id(id),
                }
            }
            spec::EV_GC_MARK_ASSIST_BEGIN
            | spec::EV_GC_MARK_ASSIST_ACTIVE
            | spec::EV_GC_MARK_ASSIST_END => {
                let id = if self.base.typ == spec::EV_GC_MARK_ASSIST_ACTIVE {
                    self.arg(0) as GoID
                } else {
                    self.goroutine()
                };
                Range {
                    name: "GC mark assist".to_string(),
                    scope: ResourceId::goroutine_id(id),
                }
            }
            _ => Range::default(),
        }
    }

    /// Event.RangeAttributes: the attributes of a completed range (only sweeps have some).
    pub fn range_attributes(&self) -> Vec<RangeAttribute> {
        if self.base.typ != spec::EV_GC_SWEEP_END {
            return Vec::new();
        }
        vec![
            RangeAttribute {
                name: "bytes swept",
                value: Value::Uint64(self.arg(0)),
            },
            RangeAttribute {
                name: "bytes reclaimed",
                value: Value::Uint64(self.arg(1)),
            },
        ]
    }

    /// Event.Task: for TaskBegin and TaskEnd events.
    pub fn task(&self) -> Task {
        let (parent, typ) = match self.base.typ {
            spec::EV_USER_TASK_BEGIN => (self.arg(1), self.string(self.arg(2))),
            spec::EV_USER_TASK_END => (
                self.extra(0),
                self.table
                    .as_ref()
                    .map_or_else(String::new, |t| t.get_extra_string(self.extra(1))),
            ),
            _ => return Task::default(),
        };
        Task {
            id: self.arg(0),
            parent,
            typ,
        }
    }

    /// Event.Region: for RegionBegin and RegionEnd events.
    pub fn region(&self) -> Region {
        if !matches!(
            self.base.typ,
            spec::EV_USER_REGION_BEGIN | spec::EV_USER_REGION_END
        ) {
            return Region::default();
        }
        Region {
            task: self.arg(0),
            typ: self.string(self.arg(1)),
        }
    }

    /// Event.Log.
    pub fn log(&self) -> Log {
        if self.base.typ != spec::EV_USER_LOG {
            return Log::default();
        }
        Log {
            task: self.arg(0),
            category: self.string(self.arg(1)),
            message: self.string(self.arg(2)),
        }
    }

    /// Event.StateTransition.
    pub fn state_transition(&self) -> StateTransition {
        use GoState as G;
        use ProcState as P;
        let go = |id: GoID, from, to| StateTransition::make_go(id, from, to);
        match self.base.typ {
            spec::EV_PROC_START => {
                StateTransition::make_proc(self.arg(0) as ProcID, P::Idle, P::Running)
            }
            spec::EV_PROC_STOP => StateTransition::make_proc(self.ctx.p, P::Running, P::Idle),
            spec::EV_PROC_STEAL => {
                // ordering.advance puts the status the P was stolen from in the extra slot.
                // A steal from SyscallAbandoned lost information: the P is treated as idle,
                // as ProcStatus treats SyscallAbandoned, to avoid an invalid transition.
                let before = if self.extra(0) == u64::from(spec::PROC_SYSCALL_ABANDONED.0) {
                    P::Idle
                } else {
                    P::Running
                };
                StateTransition::make_proc(self.arg(0) as ProcID, before, P::Idle)
            }
            spec::EV_PROC_STATUS => StateTransition::make_proc(
                self.arg(0) as ProcID,
                ProcState::from_u8(self.extra(0) as u8).unwrap_or_default(),
                proc_status_to_state(self.arg(1)).unwrap_or_default(),
            ),
            spec::EV_GO_CREATE | spec::EV_GO_CREATE_BLOCKED => {
                let to = if self.base.typ == spec::EV_GO_CREATE_BLOCKED {
                    G::Waiting
                } else {
                    G::Runnable
                };
                let mut s = go(self.arg(0) as GoID, G::NotExist, to);
                s.stack = Stack::new(self.table.clone(), self.arg(1));
                s
            }
            spec::EV_GO_CREATE_SYSCALL => go(self.arg(0) as GoID, G::NotExist, G::Syscall),
            spec::EV_GO_START => go(self.arg(0) as GoID, G::Runnable, G::Running),
            spec::EV_GO_DESTROY => go(self.ctx.g, G::Running, G::NotExist),
            spec::EV_GO_DESTROY_SYSCALL => go(self.ctx.g, G::Syscall, G::NotExist),
            spec::EV_GO_STOP | spec::EV_GO_BLOCK => {
                let to = if self.base.typ == spec::EV_GO_STOP {
                    G::Runnable
                } else {
                    G::Waiting
                };
                let mut s = go(self.ctx.g, G::Running, to);
                s.reason = self.string(self.arg(0));
                s.stack = self.stack(); // The stack of the resource the event happened on.
                s
            }
            // GoSwitch and GoSwitchDestroy first unblock the goroutine they name, exactly
            // like GoUnblock (the ordering code emits the rest as separate events).
            spec::EV_GO_UNBLOCK | spec::EV_GO_SWITCH | spec::EV_GO_SWITCH_DESTROY => {
                go(self.arg(0) as GoID, G::Waiting, G::Runnable)
            }
            spec::EV_GO_SYSCALL_BEGIN => {
                let mut s = go(self.ctx.g, G::Running, G::Syscall);
                s.stack = self.stack();
                s
            }
            spec::EV_GO_SYSCALL_END => go(self.ctx.g, G::Syscall, G::Running),
            spec::EV_GO_SYSCALL_END_BLOCKED => go(self.ctx.g, G::Syscall, G::Runnable),
            spec::EV_GO_STATUS | spec::EV_GO_STATUS_STACK => {
                // ordering.advance packs the old state into the high 32 bits.
                let packed = self.arg(2);
                let (from, to) = (packed >> 32, packed & 0xffff_ffff);
                let mut s = go(
                    self.arg(0) as GoID,
                    u8::try_from(from)
                        .ok()
                        .and_then(GoState::from_u8)
                        .unwrap_or_default(),
                    go_status_to_state(to).unwrap_or_default(),
                );
                s.stack = self.stack();
                s
            }
            _ => StateTransition::default(),
        }
    }

    /// Event.Sync: details for the following events, up to the next Sync.
    pub fn sync(&self) -> Sync {
        if self.base.typ != EV_SYNC_EVENT {
            return Sync::default();
        }
        let mut s = Sync {
            n: self.arg(0),
            ..Sync::default()
        };
        if let Some(t) = &self.table {
            for (exp, batches) in &t.exp_batches {
                let name = spec::experiments()
                    .get(*exp as usize)
                    .copied()
                    .unwrap_or("");
                s.experimental_batches
                    .insert(name.to_string(), batches.clone());
            }
            if t.sync.has_clock_snapshot {
                s.clock_snapshot = Some(ClockSnapshot {
                    trace: t.sync.freq.mul(t.sync.snap_time),
                    wall: t.sync.snap_wall,
                    mono: t.sync.snap_mono,
                });
            }
            let ns = t.sync.freq.0.round();
            s.tick_ns = Some(if ns.is_finite() && ns >= 1.0 {
                ns as u64
            } else {
                1
            });
        }
        s
    }

    /// Event.Experimental.
    pub fn experimental(&self) -> ExperimentalEvent {
        if self.kind() != EventKind::Experimental {
            return ExperimentalEvent::default();
        }
        let spec = spec::spec_or_empty(self.base.typ);
        let args = spec.args.get(1..).unwrap_or(&[]); // Skip the timestamp.
        ExperimentalEvent {
            name: spec.name,
            experiment: spec::experiments()
                .get(spec.experiment as usize)
                .copied()
                .unwrap_or(""),
            args,
            table: self.table.clone(),
            arg_values: self.base.args.iter().take(args.len()).copied().collect(),
        }
    }

    /// event.go: validateTableIDs, checks that the event's stack and string IDs are in its
    /// table, so that the accessors' lookups succeed.
    pub(crate) fn validate_table_ids(&self) -> Result<(), TraceError> {
        if self.base.typ == EV_SYNC_EVENT {
            return Ok(());
        }
        let spec = spec::spec_or_empty(self.base.typ);
        let Some(table) = &self.table else {
            return Ok(());
        };
        for &i in spec.stack_ids {
            let id = self.arg(i.wrapping_sub(1));
            if table.stacks.get(id).is_none() {
                return Err(TraceError::Malformed(format!(
                    "found invalid stack ID {id} for event {}",
                    spec.name
                )));
            }
        }
        // Strings referenced by stack frames were validated when the stacks were read.
        for &i in spec.string_ids {
            let id = self.arg(i.wrapping_sub(1));
            if table.strings.get(id).is_none() {
                return Err(TraceError::Malformed(format!(
                    "found invalid string ID {id} for event {}",
                    spec.name
                )));
            }
        }
        Ok(())
    }
}
