//! The ordering state machine, ported from Go 1.27.3's `internal/trace/order.go`.
//!
//! Events come in per-M batches whose timestamps cannot be fully trusted. [`Ordering`]
//! emulates the scheduler's state (goroutines, procs, threads, GC, tasks and ranges) to decide
//! whether an event can happen next: the reader offers it candidate events, earliest first,
//! and [`Ordering::advance`] accepts one when its preconditions hold (e.g. a GoStart's sequence
//! number follows the goroutine's last one). Accepted events, with the scheduling context they
//! happened in, are queued and picked off with [`Ordering::next`]. Any inconsistency is an
//! error: the trace is broken.
//!
//! The per-event handlers are in `order_go.rs` (goroutines and procs) and here (the rest).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use super::base::{
    BaseEvent, EvTable, GoID, NO_GOROUTINE, NO_PROC, NO_THREAD, ProcID, StringId, ThreadID,
    TraceError,
};
use super::event::{Event, TaskId};
use super::spec::{self, EventType, GoStatus, ProcStatus};
use super::version::Version;

/// order.go: schedCtx, the scheduling resources associated with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedCtx {
    /// The goroutine.
    pub g: GoID,
    /// The proc.
    pub p: ProcID,
    /// The thread.
    pub m: ThreadID,
}

impl SchedCtx {
    /// The context with goroutine `g` (Go's `newCtx := curCtx; newCtx.G = g`).
    pub(crate) fn with_g(self, g: GoID) -> SchedCtx {
        SchedCtx { g, ..self }
    }

    /// The context with proc `p`.
    pub(crate) fn with_p(self, p: ProcID) -> SchedCtx {
        SchedCtx { p, ..self }
    }
}

/// What Go passes every handler (`ev *baseEvent, evt *evTable, m ThreadID, gen uint64,
/// curCtx schedCtx`; `m` is `cur.m`), in that order: the event, which a handler may rewrite
/// to pass data up to the Event, the tables of its generation, the generation, and the M's
/// current context.
pub(crate) struct Step<'a>(
    pub &'a mut BaseEvent,
    pub &'a Arc<EvTable>,
    pub u64,
    pub SchedCtx,
);

/// The result of a handler: Go's `(schedCtx, bool, error)` without the error. `None` means
/// "cannot advance yet" (try other candidates); `Some(ctx)` is the new context of the M.
pub(crate) type Advanced = Result<Option<SchedCtx>, TraceError>;

/// A broken-trace error (Go's fmt.Errorf in order.go).
pub(crate) fn broken(msg: String) -> TraceError {
    TraceError::Malformed(msg)
}

/// order.go: ordering, the emulated scheduler state, for validation and for putting events
/// in the right order.
#[derive(Debug)]
pub struct Ordering {
    pub(crate) trace_ver: Version,
    pub(crate) g_states: HashMap<GoID, GState>,
    pub(crate) p_states: HashMap<ProcID, PState>,
    pub(crate) m_states: HashMap<ThreadID, MState>,
    pub(crate) active_tasks: HashMap<TaskId, TaskState>,
    pub(crate) gc_seq: u64,
    pub(crate) gc_state: GcState,
    pub(crate) initial_gen: u64,
    pub(crate) queue: VecDeque<Event>,
}

impl Ordering {
    /// An empty ordering for a trace of version `ver` (reader.go: NewReader).
    pub fn new(ver: Version) -> Ordering {
        Ordering {
            trace_ver: ver,
            g_states: HashMap::new(),
            p_states: HashMap::new(),
            m_states: HashMap::new(),
            active_tasks: HashMap::new(),
            gc_seq: 0,
            gc_state: GcState::Undetermined,
            initial_gen: 0,
            queue: VecDeque::new(),
        }
    }

    /// order.go: (*ordering).Advance, checks whether it is valid to proceed with `ev`, which
    /// came from thread `m` of generation `generation` (non-decreasing across calls).
    ///
    /// Ok(true): the event (and possibly others it implies) was queued; [`Ordering::next`]
    /// returns them. Ok(false): not yet valid; the caller should try other candidates (if
    /// none can advance, the trace is broken). Err: the trace is broken; stop parsing.
    /// `ev` may be rewritten (the ordering passes data up to the Event in spare arguments).
    pub fn advance(
        &mut self,
        ev: &mut BaseEvent,
        evt: &Arc<EvTable>,
        m: ThreadID,
        generation: u64,
    ) -> Result<bool, TraceError> {
        if self.initial_gen == 0 {
            // Set the initial generation if necessary.
            self.initial_gen = generation;
        }
        let mut cur_ctx = SchedCtx {
            g: NO_GOROUTINE,
            p: NO_PROC,
            m,
        };
        if m != NO_THREAD {
            // Pull out or create the mState for this event.
            let ms = self.m_states.entry(m).or_insert(MState {
                g: NO_GOROUTINE,
                p: NO_PROC,
            });
            cur_ctx.p = ms.p;
            cur_ctx.g = ms.g;
        }
        let new_ctx = self.dispatch(Step(ev, evt, generation, cur_ctx))?;
        let Some(new_ctx) = new_ctx else {
            return Ok(false);
        };
        if m != NO_THREAD {
            // Update the mState for this event.
            if let Some(ms) = self.m_states.get_mut(&m) {
                ms.p = new_ctx.p;
                ms.g = new_ctx.g;
            }
        }
        Ok(true)
    }

    /// order.go: (*ordering).Next, the next ordered event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.queue.pop_front()
    }

    /// order.go: evName.
    pub(crate) fn ev_name(&self, typ: EventType) -> String {
        self.trace_ver.event_name(typ)
    }

    /// Queues `ev` as it is, in `ctx` (Go's `o.queue.push(Event{table: evt, ctx: curCtx,
    /// base: *ev})`).
    pub(crate) fn push(&mut self, evt: &Arc<EvTable>, ctx: SchedCtx, ev: &BaseEvent) {
        self.queue.push_back(Event::new(evt, ctx, *ev));
    }

    /// Queues `ev` in `ctx` and moves the M to `new_ctx`: how a handler ends when it can
    /// advance (Go's `o.queue.push(Event{table: evt, ctx: curCtx, base: *ev})` and
    /// `return newCtx, true, nil`).
    pub(crate) fn accept(
        &mut self,
        evt: &Arc<EvTable>,
        ctx: SchedCtx,
        ev: &BaseEvent,
        new_ctx: SchedCtx,
    ) -> Advanced {
        self.push(evt, ctx, ev);
        Ok(Some(new_ctx))
    }

    /// The state of proc `p`, which an event of type `typ` needs to exist (Go's
    /// "uninitialized proc" error otherwise).
    pub(crate) fn proc_found_during(
        &mut self,
        p: ProcID,
        typ: EventType,
    ) -> Result<&mut PState, TraceError> {
        let ver = self.trace_ver;
        self.p_states.get_mut(&p).ok_or_else(|| {
            broken(format!(
                "uninitialized proc {p} found during {}",
                ver.event_name(typ)
            ))
        })
    }

    /// The state of the current goroutine `g`, which `what` needs to be known (Go's
    /// "encountered ... without known state for current goroutine" errors).
    pub(crate) fn current_g_state(
        &mut self,
        g: GoID,
        what: fmt::Arguments<'_>,
    ) -> Result<&mut GState, TraceError> {
        self.g_states.get_mut(&g).ok_or_else(|| {
            broken(format!(
                "encountered {what} without known state for current goroutine {g}"
            ))
        })
    }

    /// order.go: orderingDispatch.
    fn dispatch(&mut self, s: Step<'_>) -> Advanced {
        match s.0.typ {
            // Procs.
            spec::EV_PROCS_CHANGE => self.advance_annotation(s),
            spec::EV_PROC_START => self.advance_proc_start(s),
            spec::EV_PROC_STOP => self.advance_proc_stop(s),
            spec::EV_PROC_STEAL => self.advance_proc_steal(s),
            spec::EV_PROC_STATUS => self.advance_proc_status(s),
            // Goroutines.
            spec::EV_GO_CREATE | spec::EV_GO_CREATE_BLOCKED => self.advance_go_create(s),
            spec::EV_GO_CREATE_SYSCALL => self.advance_go_create_syscall(s),
            spec::EV_GO_START => self.advance_go_start(s),
            spec::EV_GO_DESTROY | spec::EV_GO_STOP | spec::EV_GO_BLOCK => {
                self.advance_go_stop_exec(s)
            }
            spec::EV_GO_DESTROY_SYSCALL => self.advance_go_destroy_syscall(s),
            spec::EV_GO_UNBLOCK => self.advance_go_unblock(s),
            spec::EV_GO_SYSCALL_BEGIN => self.advance_go_syscall_begin(s),
            spec::EV_GO_SYSCALL_END => self.advance_go_syscall_end(s),
            spec::EV_GO_SYSCALL_END_BLOCKED => self.advance_go_syscall_end_blocked(s),
            spec::EV_GO_STATUS | spec::EV_GO_STATUS_STACK => self.advance_go_status(s),
            // STW.
            spec::EV_STW_BEGIN => self.advance_go_range_begin(s),
            spec::EV_STW_END => self.advance_go_range_end(s),
            // GC events.
            spec::EV_GC_ACTIVE => self.advance_gc_active(s),
            spec::EV_GC_BEGIN => self.advance_gc_begin(s),
            spec::EV_GC_END => self.advance_gc_end(s),
            spec::EV_GC_SWEEP_ACTIVE => self.advance_gc_sweep_active(s),
            spec::EV_GC_SWEEP_BEGIN => self.advance_gc_sweep_begin(s),
            spec::EV_GC_SWEEP_END => self.advance_gc_sweep_end(s),
            spec::EV_GC_MARK_ASSIST_ACTIVE => self.advance_go_range_active(s),
            spec::EV_GC_MARK_ASSIST_BEGIN => self.advance_go_range_begin(s),
            spec::EV_GC_MARK_ASSIST_END => self.advance_go_range_end(s),
            spec::EV_HEAP_ALLOC | spec::EV_HEAP_GOAL => self.advance_heap_metric(s),
            // Annotations.
            spec::EV_GO_LABEL | spec::EV_USER_LOG => self.advance_annotation(s),
            spec::EV_USER_TASK_BEGIN => self.advance_user_task_begin(s),
            spec::EV_USER_TASK_END => self.advance_user_task_end(s),
            spec::EV_USER_REGION_BEGIN => self.advance_user_region_begin(s),
            spec::EV_USER_REGION_END => self.advance_user_region_end(s),
            // Coroutines. Added in Go 1.23.
            spec::EV_GO_SWITCH | spec::EV_GO_SWITCH_DESTROY => self.advance_go_switch(s),
            // Experimental events: heap span, heap object and goroutine stack events, added
            // in Go 1.23, are passed through unvalidated.
            typ if spec::is_experimental(typ) => self.advance_alloc_free(s),
            typ => Err(broken(format!(
                "bad event type found while ordering: {typ}"
            ))),
        }
    }

    /// order.go: dumpOrdering, the state for "failed to advance" errors.
    pub(crate) fn dump(&self) -> String {
        use fmt::Write as _;
        let mut sb = String::new();
        for (id, s) in &self.g_states {
            let _ = writeln!(sb, "G {id} [status={} seq={}]", s.status, s.seq);
        }
        sb.push('\n');
        for (id, s) in &self.p_states {
            let _ = writeln!(sb, "P {id} [status={} seq={}]", s.status, s.seq);
        }
        sb.push('\n');
        for (id, s) in &self.m_states {
            let _ = writeln!(sb, "M {id} [g={} p={}]", s.g, s.p);
        }
        sb.push('\n');
        let _ = writeln!(sb, "GC {} {}", self.gc_seq, self.gc_state);
        sb
    }
}

/// Writes extra slot `i` of `ev` (base.go: baseEvent.extra); a no-op if the event type has no
/// such slot (Go would index out of range on such a corrupt input).
pub(crate) fn set_extra(ev: &mut BaseEvent, i: usize, v: u64) {
    if let Some(slot) = ev.extra_mut().get_mut(i) {
        *slot = v;
    }
}

/// order.go: constraint, a presence requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Constraint(u8);
pub(crate) const MUST_NOT_HAVE: Constraint = Constraint(0);
pub(crate) const MAY_HAVE: Constraint = Constraint(1);
pub(crate) const MUST_HAVE: Constraint = Constraint(2);

/// order.go: schedReqs, constraints on what the scheduling context must look like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SchedReqs {
    pub m: Constraint,
    pub p: Constraint,
    pub g: Constraint,
}

impl SchedReqs {
    /// Go's `schedReqs{M: m, P: p, G: g}`.
    pub(crate) const fn new(m: Constraint, p: Constraint, g: Constraint) -> SchedReqs {
        SchedReqs { m, p, g }
    }
}

/// order.go: userGoReqs, common to events that are running or close to running user code.
pub(crate) const USER_GO_REQS: SchedReqs = SchedReqs::new(MUST_HAVE, MUST_HAVE, MUST_HAVE);

/// order.go: validateCtx, checks that `ctx` conforms to `reqs`.
pub(crate) fn validate_ctx(ctx: SchedCtx, reqs: SchedReqs) -> Result<(), TraceError> {
    let check = |req: Constraint, has: bool, what: &str| -> Result<(), TraceError> {
        if req == MUST_HAVE && !has {
            return Err(broken(format!("expected {what} but didn't have one")));
        }
        if req == MUST_NOT_HAVE && has {
            return Err(broken(format!("expected no {} but had one", &what[2..])));
        }
        Ok(())
    };
    // Check thread, proc, then goroutine requirements.
    check(reqs.m, ctx.m != NO_THREAD, "a thread")?;
    check(reqs.p, ctx.p != NO_PROC, "a proc")?;
    check(reqs.g, ctx.g != NO_GOROUTINE, "a goroutine")
}

/// order.go: gcState, the GC's state: a trinary, with "undetermined".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GcState {
    Undetermined,
    NotRunning,
    Running,
}

impl fmt::Display for GcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GcState::Undetermined => "Undetermined",
            GcState::NotRunning => "NotRunning",
            GcState::Running => "Running",
        })
    }
}

/// order.go: userRegion, a user region active on a goroutine. The name is resolved because
/// string IDs change across generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserRegion {
    pub task_id: TaskId,
    pub name: String,
}

impl fmt::Display for UserRegion {
    /// Go's `%v` of the struct.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{} {}}}", self.task_id, self.name)
    }
}

/// order.go: rangeType, a kind of special range of time: its "Begin" event type and an
/// optional subtype (the STW reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RangeType {
    pub typ: EventType,
    pub desc: StringId,
}

impl fmt::Display for RangeType {
    /// Go's `%v` of the struct.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{} {}}}", self.typ, self.desc)
    }
}

/// order.go: makeRangeType (the type of an End or Active event is that of its Begin).
pub(crate) fn make_range_type(typ: EventType, desc: StringId) -> RangeType {
    let styp = spec::spec_or_empty(typ).start_ev;
    RangeType {
        typ: if styp != spec::EV_NONE { styp } else { typ },
        desc,
    }
}

/// order.go: gState, the state of a goroutine.
#[derive(Debug, Clone)]
pub(crate) struct GState {
    pub id: GoID,
    pub status: GoStatus,
    pub seq: SeqCounter,
    /// The active user regions, innermost last.
    pub regions: Vec<UserRegion>,
    pub range_state: RangeState,
}

impl GState {
    pub(crate) fn new(id: GoID, status: GoStatus, seq: SeqCounter) -> GState {
        GState {
            id,
            status,
            seq,
            regions: Vec::new(),
            range_state: RangeState::default(),
        }
    }

    /// gState.beginRegion.
    pub(crate) fn begin_region(&mut self, r: UserRegion) {
        self.regions.push(r);
    }

    /// gState.endRegion: must end the innermost active region (regions begun before the
    /// trace started are unknown, and their ends accepted).
    pub(crate) fn end_region(&mut self, r: UserRegion) -> Result<(), TraceError> {
        let Some(next) = self.regions.last() else {
            return Ok(());
        };
        if *next != r {
            return Err(broken(format!(
                "misuse of region in goroutine {}: region end {r} when the inner-most active \
                 region start event is {next}",
                self.id
            )));
        }
        self.regions.pop();
        Ok(())
    }
}

/// order.go: pState, the state of a proc.
#[derive(Debug, Clone)]
pub(crate) struct PState {
    pub status: ProcStatus,
    pub seq: SeqCounter,
    pub range_state: RangeState,
}

/// order.go: mState, the state of a thread: the goroutine (executing) and proc bound to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MState {
    pub g: GoID,
    pub p: ProcID,
}

/// order.go: rangeState, the special ranges in flight on a resource.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeState {
    pub in_flight: Vec<RangeType>,
}

impl RangeState {
    /// rangeState.beginRange: fails if the range is already in progress.
    pub(crate) fn begin_range(&mut self, typ: RangeType) -> Result<(), TraceError> {
        if self.has_range(typ) {
            return Err(broken(format!(
                "discovered event already in-flight for when starting event {}",
                spec::spec_or_empty(typ.typ).name
            )));
        }
        self.in_flight.push(typ);
        Ok(())
    }

    /// rangeState.activeRange: marks the range active in the initial generation, or checks
    /// that it is in later ones.
    pub(crate) fn active_range(
        &mut self,
        typ: RangeType,
        is_initial_gen: bool,
    ) -> Result<(), TraceError> {
        if is_initial_gen {
            if self.has_range(typ) {
                return Err(broken(format!(
                    "found named active range already in first gen: {typ}"
                )));
            }
            self.in_flight.push(typ);
        } else if !self.has_range(typ) {
            let list: Vec<String> = self.in_flight.iter().map(ToString::to_string).collect();
            return Err(broken(format!(
                "resource is missing active range: {} [{}]",
                spec::spec_or_empty(typ.typ).name,
                list.join(" ")
            )));
        }
        Ok(())
    }

    /// rangeState.hasRange.
    fn has_range(&self, typ: RangeType) -> bool {
        self.in_flight.contains(&typ)
    }

    /// rangeState.endRange: ends the range begun by the start event of `typ`, returning its
    /// subtype.
    pub(crate) fn end_range(&mut self, typ: EventType) -> Result<StringId, TraceError> {
        let st = spec::spec_or_empty(typ).start_ev;
        let Some(idx) = self.in_flight.iter().position(|r| r.typ == st) else {
            return Err(broken(format!(
                "tried to end event {}, but not in-flight",
                spec::spec_or_empty(st).name
            )));
        };
        // Swap remove, as Go.
        Ok(self.in_flight.swap_remove(idx).desc)
    }
}

/// order.go: seqCounter, a resource's sequence number within a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqCounter {
    pub generation: u64,
    pub seq: u64,
}

/// order.go: makeSeq.
pub(crate) fn make_seq(generation: u64, seq: u64) -> SeqCounter {
    SeqCounter { generation, seq }
}

impl SeqCounter {
    /// seqCounter.succeeds: `self` immediately follows `b`.
    pub(crate) fn succeeds(self, b: SeqCounter) -> bool {
        self.generation == b.generation && self.seq == b.seq.wrapping_add(1)
    }
}

impl fmt::Display for SeqCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (gen={})", self.seq, self.generation)
    }
}

/// order.go: taskState, an active task.
#[derive(Debug, Clone)]
pub(crate) struct TaskState {
    pub name: String,
    pub parent_id: TaskId,
}
