//! Unit tests of the ordering state machine (order.rs, order_go.rs, order_misc.rs) on
//! hand-built event sequences: which events advance, which wait for others, which are errors,
//! and the events (with their M/P/G context and text) that come out.

use std::sync::Arc;

use super::base::{BaseEvent, EvTable, MAX_ARGS, NO_GOROUTINE, NO_PROC, TraceError};
use super::event::{Event, EventKind, GoState, ProcState};
use super::order::Ordering;
use super::spec::{self, EventType};
use super::version::Version;

const NONE: u64 = u64::MAX; // -1 on the wire (NoThread etc.)

fn table() -> Arc<EvTable> {
    let mut t = EvTable::default();
    for (id, s) in [
        (1, "chan receive"),
        (2, "task-a"),
        (3, "region-x"),
        (4, "GC mark termination"),
    ] {
        t.strings.insert(id, s.to_string()).unwrap();
    }
    Arc::new(t)
}

fn ev(typ: EventType, time: i64, args: &[u64]) -> BaseEvent {
    let mut e = BaseEvent {
        typ,
        time,
        args: [0; MAX_ARGS],
    };
    e.args[..args.len()].copy_from_slice(args);
    e
}

/// A test harness: an ordering, a table, a generation.
struct H {
    o: Ordering,
    t: Arc<EvTable>,
    generation: u64,
    time: i64,
}

impl H {
    fn new() -> H {
        H {
            o: Ordering::new(Version::Go123),
            t: table(),
            generation: 1,
            time: 0,
        }
    }

    /// Offers an event from M `m`: Ok(true) if it advanced.
    fn try_ev(&mut self, m: i64, typ: EventType, args: &[u64]) -> Result<bool, TraceError> {
        self.time += 10;
        let mut e = ev(typ, self.time, args);
        self.o.advance(&mut e, &self.t, m, self.generation)
    }

    /// Offers an event that must advance, and returns the events it queued.
    fn ok(&mut self, m: i64, typ: EventType, args: &[u64]) -> Vec<Event> {
        let name = spec::spec_or_empty(typ).name;
        assert!(self.try_ev(m, typ, args).unwrap(), "{name} did not advance");
        std::iter::from_fn(|| self.o.next_event()).collect()
    }

    /// Offers an event that must not advance yet.
    fn waits(&mut self, m: i64, typ: EventType, args: &[u64]) {
        let name = spec::spec_or_empty(typ).name;
        assert!(!self.try_ev(m, typ, args).unwrap(), "{name} advanced");
        assert!(self.o.next_event().is_none());
    }

    /// Offers an event that must be an error; returns its text.
    fn err(&mut self, m: i64, typ: EventType, args: &[u64]) -> String {
        match self.try_ev(m, typ, args) {
            Err(e) => e.to_string(),
            Ok(ok) => panic!("expected an error, advanced={ok}"),
        }
    }

    /// M `m` runs P `p` and goroutine `g` (status events of the first generation).
    fn running(&mut self, m: i64, p: u64, g: u64) {
        self.ok(m, spec::EV_PROC_STATUS, &[p, 1]);
        self.ok(m, spec::EV_GO_STATUS, &[g, m as u64, 2]);
    }
}

fn one(evs: Vec<Event>) -> Event {
    assert_eq!(evs.len(), 1, "{evs:?}");
    evs.into_iter().next().unwrap()
}

fn ctx(e: &Event) -> (i64, i64, i64) {
    (e.thread(), e.proc(), e.goroutine())
}

#[test]
fn statuses_bind_the_thread() {
    let mut h = H::new();
    let e = one(h.ok(1, spec::EV_PROC_STATUS, &[0, 1]));
    assert_eq!(ctx(&e), (1, NO_PROC, NO_GOROUTINE));
    assert_eq!(
        e.state_transition().proc(),
        (ProcState::Undetermined, ProcState::Running)
    );
    let e = one(h.ok(1, spec::EV_GO_STATUS, &[7, 1, 2]));
    assert_eq!(
        ctx(&e),
        (1, 0, NO_GOROUTINE),
        "the binding event is in the 'before' context"
    );
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Undetermined, GoState::Running)
    );
    assert_eq!(
        e.to_string(),
        "M=1 P=0 G=-1 StateTransition Time=20 GoID=7 Undetermined->Running Reason=\"\""
    );
    // Now the thread runs G 7 on P 0.
    let e = one(h.ok(1, spec::EV_GO_BLOCK, &[1, 0]));
    assert_eq!(ctx(&e), (1, 0, 7));
    assert_eq!(
        e.to_string(),
        "M=1 P=0 G=7 StateTransition Time=30 GoID=7 Running->Waiting Reason=\"chan receive\""
    );
    // A status in a later generation must match; a new goroutine's status is an error there.
    h.generation = 2;
    assert!(
        h.err(1, spec::EV_GO_STATUS, &[7, NONE, 1])
            .contains("inconsistent status")
    );
    let e = one(h.ok(1, spec::EV_GO_STATUS, &[7, NONE, 4]));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Waiting, GoState::Waiting)
    );
    let msg = h.err(1, spec::EV_GO_STATUS, &[8, NONE, 4]);
    assert!(msg.contains("found goroutine status for new goroutine after the first generation"));
    // A P first seen after the first generation did not exist before.
    let e = one(h.ok(2, spec::EV_PROC_STATUS, &[5, 2]));
    assert_eq!(
        e.state_transition().proc(),
        (ProcState::NotExist, ProcState::Idle)
    );
    assert!(
        h.err(2, spec::EV_PROC_STATUS, &[6, 9])
            .contains("invalid status for proc 6: 9")
    );
}

#[test]
fn unblock_and_start_follow_sequence_numbers() {
    let mut h = H::new();
    h.running(1, 0, 1);
    h.ok(2, spec::EV_PROC_STATUS, &[1, 1]);
    h.ok(1, spec::EV_GO_CREATE, &[5, 0, 0]);
    // G 5 is runnable at seq 0: a GoStart with seq 2 must wait, seq 1 advances.
    h.waits(2, spec::EV_GO_START, &[5, 2]);
    let e = one(h.ok(2, spec::EV_GO_START, &[5, 1]));
    assert_eq!(ctx(&e), (2, 1, NO_GOROUTINE));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Runnable, GoState::Running)
    );
    let e = one(h.ok(2, spec::EV_GO_BLOCK, &[1, 0]));
    assert_eq!(ctx(&e), (2, 1, 5));
    // Unblocked from M 1 (seq 2), started again on M 2 (seq 3).
    h.waits(2, spec::EV_GO_START, &[5, 3]);
    h.waits(1, spec::EV_GO_UNBLOCK, &[5, 3]);
    let e = one(h.ok(1, spec::EV_GO_UNBLOCK, &[5, 2, 0]));
    assert_eq!(ctx(&e), (1, 0, 1));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Waiting, GoState::Runnable)
    );
    h.ok(2, spec::EV_GO_START, &[5, 3]);
    // A GoStart on a thread that already runs a goroutine is an error.
    h.ok(1, spec::EV_GO_CREATE, &[6, 0, 0]);
    let msg = h.err(1, spec::EV_GO_START, &[6, 1]);
    assert!(msg.contains("expected no goroutine but had one"), "{msg}");
    // Creating an existing goroutine is an error.
    assert!(
        h.err(1, spec::EV_GO_CREATE, &[5, 0, 0])
            .contains("already exists")
    );
    // Destroy unbinds.
    let e = one(h.ok(2, spec::EV_GO_DESTROY, &[]));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Running, GoState::NotExist)
    );
    assert_eq!(
        h.err(2, spec::EV_GO_STOP, &[1, 0]),
        "malformed trace: expected a goroutine but didn't have one"
    );
}

#[test]
fn syscall_blocked_waits_for_the_steal() {
    let mut h = H::new();
    h.running(1, 0, 1);
    h.ok(2, spec::EV_PROC_STATUS, &[1, 2]); // P 1 idle
    h.ok(2, spec::EV_PROC_START, &[1, 1]);
    let e = one(h.ok(1, spec::EV_GO_SYSCALL_BEGIN, &[1, 0]));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Running, GoState::Syscall)
    );
    // The goroutine comes out blocked: not before its P is taken away.
    h.waits(1, spec::EV_GO_SYSCALL_END_BLOCKED, &[]);
    // M 2 can't steal P 0 out of sequence, nor while it runs P 1... it may: P is MayHave.
    h.waits(2, spec::EV_PROC_STEAL, &[0, 3, 1]);
    let e = one(h.ok(2, spec::EV_PROC_STEAL, &[0, 2, 1]));
    assert_eq!(ctx(&e), (2, 1, NO_GOROUTINE));
    assert_eq!(
        e.state_transition().proc(),
        (ProcState::Running, ProcState::Idle)
    );
    assert_eq!(
        e.to_string(),
        "M=2 P=1 G=-1 StateTransition Time=80 ProcID=0 Running->Idle Reason=\"\""
    );
    let e = one(h.ok(1, spec::EV_GO_SYSCALL_END_BLOCKED, &[]));
    assert_eq!(ctx(&e), (1, NO_PROC, 1));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Syscall, GoState::Runnable)
    );
    // A wrong P sequence number on a syscall is an error, not a wait.
    h.ok(1, spec::EV_PROC_START, &[0, 3]);
    h.ok(1, spec::EV_GO_START, &[1, 1]);
    let msg = h.err(1, spec::EV_GO_SYSCALL_BEGIN, &[9, 0]);
    assert!(
        msg.contains("can't make sequence: 3 (gen=1) -> 9 (gen=1)"),
        "{msg}"
    );
}

#[test]
fn syscall_end_and_self_steal() {
    let mut h = H::new();
    h.running(1, 0, 1);
    h.ok(1, spec::EV_GO_SYSCALL_BEGIN, &[1, 0]);
    let e = one(h.ok(1, spec::EV_GO_SYSCALL_END, &[]));
    assert_eq!(ctx(&e), (1, 0, 1));
    h.ok(1, spec::EV_GO_SYSCALL_BEGIN, &[2, 0]);
    // The M takes its own P back (ProcSteal from itself): like a ProcStop.
    let e = one(h.ok(1, spec::EV_PROC_STEAL, &[0, 3, 1]));
    assert_eq!(ctx(&e), (1, 0, 1));
    let e = one(h.ok(1, spec::EV_GO_SYSCALL_END_BLOCKED, &[]));
    assert_eq!(ctx(&e), (1, NO_PROC, 1));
    // Stopping a P the thread doesn't have is an error.
    assert!(
        h.err(1, spec::EV_PROC_STOP, &[])
            .contains("for proc (-1) that doesn't exist")
    );
}

#[test]
fn goroutine_in_syscall_on_another_thread() {
    let mut h = H::new();
    h.ok(1, spec::EV_PROC_STATUS, &[0, 1]);
    // G 9 has been in a syscall on M 5, which wrote nothing: the event is put on M 5.
    let e = one(h.ok(1, spec::EV_GO_STATUS, &[9, 5, 3]));
    assert_eq!(ctx(&e), (5, 0, NO_GOROUTINE));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Undetermined, GoState::Syscall)
    );
    // Next generation: M 5 is known to have G 9.
    h.generation = 2;
    h.ok(1, spec::EV_PROC_STATUS, &[0, 1]);
    let e = one(h.ok(1, spec::EV_GO_STATUS, &[9, 5, 3]));
    assert_eq!(ctx(&e), (5, 0, 9));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::Syscall, GoState::Syscall)
    );
    let msg = h.err(1, spec::EV_GO_STATUS, &[9, NONE, 3]);
    assert!(
        msg.contains("found goroutine 9 in syscall without a thread"),
        "{msg}"
    );
}

#[test]
fn syscall_abandoned_procs() {
    let mut h = H::new();
    h.running(1, 0, 1);
    h.ok(1, spec::EV_GO_SYSCALL_BEGIN, &[1, 0]);
    // Next generation: P 0 is reported SyscallAbandoned by another thread; it is promoted
    // to Syscall and emitted in the context of the thread it is bound to.
    h.generation = 2;
    let e = one(h.ok(2, spec::EV_PROC_STATUS, &[0, 4]));
    assert_eq!(ctx(&e), (1, 0, 1));
    assert_eq!(
        e.state_transition().proc(),
        (ProcState::Running, ProcState::Running)
    );
    h.generation = 3;
    h.ok(2, spec::EV_PROC_STATUS, &[3, 4]);
    // A steal of an abandoned P is Idle -> Idle and leaves the threads alone.
    let e = one(h.ok(2, spec::EV_PROC_STEAL, &[3, 1, 7]));
    assert_eq!(
        e.state_transition().proc(),
        (ProcState::Idle, ProcState::Idle)
    );
}

#[test]
fn cgo_callback_goroutines() {
    let mut h = H::new();
    h.ok(1, spec::EV_PROC_STATUS, &[0, 2]);
    // A C thread calls into Go: the goroutine appears in a syscall.
    let e = one(h.ok(3, spec::EV_GO_CREATE_SYSCALL, &[20]));
    assert_eq!(ctx(&e), (3, NO_PROC, NO_GOROUTINE));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::NotExist, GoState::Syscall)
    );
    h.ok(3, spec::EV_GO_SYSCALL_END_BLOCKED, &[]);
    h.ok(3, spec::EV_PROC_START, &[0, 1]);
    h.ok(3, spec::EV_GO_START, &[20, 1]);
    h.ok(3, spec::EV_GO_SYSCALL_BEGIN, &[2, 0]);
    // Destroyed with its P: an extra self-steal comes first.
    let evs = h.ok(3, spec::EV_GO_DESTROY_SYSCALL, &[]);
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].wire_type(), spec::EV_PROC_STEAL);
    assert_eq!(
        evs[0].state_transition().proc(),
        (ProcState::Running, ProcState::Idle)
    );
    assert_eq!(ctx(&evs[0]), (3, 0, 20));
    assert_eq!(
        evs[1].state_transition().goroutine(),
        (GoState::Syscall, GoState::NotExist)
    );
    // The thread has nothing left.
    let e = one(h.ok(3, spec::EV_GO_CREATE_SYSCALL, &[21]));
    assert_eq!(ctx(&e), (3, NO_PROC, NO_GOROUTINE));
}

#[test]
fn go_switch_is_three_events() {
    let mut h = H::new();
    h.running(1, 0, 1);
    let e = one(h.ok(1, spec::EV_GO_CREATE_BLOCKED, &[2, 0, 0]));
    assert_eq!(
        e.state_transition().goroutine(),
        (GoState::NotExist, GoState::Waiting)
    );
    h.waits(1, spec::EV_GO_SWITCH, &[2, 2]);
    let evs = h.ok(1, spec::EV_GO_SWITCH, &[2, 1]);
    let text: Vec<String> = evs.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "M=1 P=0 G=1 StateTransition Time=50 GoID=2 Waiting->Runnable Reason=\"\"",
            "M=1 P=0 G=1 StateTransition Time=50 GoID=1 Running->Waiting Reason=\"\"",
            "M=1 P=0 G=-1 StateTransition Time=50 GoID=2 Runnable->Running Reason=\"\"",
        ]
    );
    // Back to G 1 (seq 1), destroying G 2.
    let evs = h.ok(1, spec::EV_GO_SWITCH_DESTROY, &[1, 1]);
    assert_eq!(evs.len(), 3);
    assert_eq!(
        evs[1].state_transition().goroutine(),
        (GoState::Running, GoState::NotExist)
    );
    assert_eq!(ctx(&evs[2]), (1, 0, NO_GOROUTINE));
    let e = one(h.ok(1, spec::EV_GO_BLOCK, &[1, 0]));
    assert_eq!(e.goroutine(), 1);
}

#[test]
fn tasks_and_regions() {
    let mut h = H::new();
    h.running(1, 0, 1);
    let e = one(h.ok(1, spec::EV_USER_TASK_BEGIN, &[5, 0, 2, 0]));
    assert_eq!(e.kind(), EventKind::TaskBegin);
    assert_eq!(
        e.to_string(),
        "M=1 P=0 G=1 TaskBegin Time=30 ID=5 Parent=18446744073709551615 Type=\"task-a\""
    );
    assert!(
        h.err(1, spec::EV_USER_TASK_BEGIN, &[5, 0, 2, 0])
            .contains("task ID conflict: 5")
    );
    assert!(
        h.err(1, spec::EV_USER_TASK_BEGIN, &[6, 0, 99, 0])
            .contains("invalid string ID 99")
    );
    // The end, in a later generation whose table lacks the name, still names the task.
    h.generation = 2;
    h.t = Arc::new(EvTable::default());
    let e = one(h.ok(1, spec::EV_USER_TASK_END, &[5, 0]));
    assert_eq!(
        e.to_string(),
        "M=1 P=0 G=1 TaskEnd Time=60 ID=5 Parent=18446744073709551615 Type=\"task-a\""
    );
    let e = one(h.ok(1, spec::EV_USER_TASK_END, &[5, 0]));
    assert_eq!(e.task().typ, "");
    // Regions must nest; an end without a begin (begun before tracing) is fine.
    h.t = table();
    h.ok(1, spec::EV_USER_REGION_END, &[5, 3, 0]);
    h.ok(1, spec::EV_USER_REGION_BEGIN, &[5, 3, 0]);
    h.ok(1, spec::EV_USER_REGION_BEGIN, &[5, 2, 0]);
    let msg = h.err(1, spec::EV_USER_REGION_END, &[5, 3, 0]);
    assert!(
        msg.contains(
            "region end {5 region-x} when the inner-most active region start event is {5 task-a}"
        ),
        "{msg}"
    );
}

#[test]
fn gc_cycles_and_ranges() {
    let mut h = H::new();
    h.running(1, 0, 1);
    h.ok(2, spec::EV_PROC_STATUS, &[1, 1]);
    // The first GC event of the first generation sets the cycle.
    let e = one(h.ok(2, spec::EV_GC_ACTIVE, &[7]));
    assert_eq!(
        e.to_string(),
        "M=2 P=1 G=-1 RangeActive Time=40 Name=\"GC concurrent mark phase\" Scope=None"
    );
    h.waits(1, spec::EV_GC_END, &[9]);
    h.ok(1, spec::EV_GC_END, &[8]);
    assert!(
        h.err(1, spec::EV_GC_END, &[9])
            .contains("GC was not in progress")
    );
    h.waits(1, spec::EV_GC_BEGIN, &[10, 0]);
    h.ok(1, spec::EV_GC_BEGIN, &[9, 0]);
    // STW: the end gets the kind of its begin.
    h.ok(1, spec::EV_STW_BEGIN, &[4, 0]);
    let e = one(h.ok(1, spec::EV_STW_END, &[]));
    assert_eq!(
        e.to_string(),
        "M=1 P=0 G=1 RangeEnd Time=110 Name=\"stop-the-world (GC mark termination)\" Scope=Goroutine(1) Attributes=[]"
    );
    assert!(
        h.err(1, spec::EV_STW_END, &[])
            .contains("tried to end event STWBegin, but not in-flight")
    );
    // Sweeps belong to the P.
    h.ok(1, spec::EV_GC_SWEEP_BEGIN, &[0]);
    assert!(
        h.err(1, spec::EV_GC_SWEEP_BEGIN, &[0])
            .contains("already in-flight")
    );
    let e = one(h.ok(1, spec::EV_GC_SWEEP_END, &[4096, 1024]));
    assert_eq!(
        e.to_string(),
        "M=1 P=0 G=1 RangeEnd Time=150 Name=\"GC incremental sweep\" Scope=Proc(0) Attributes=[\"bytes swept\"=Value{Uint64(4096)} \"bytes reclaimed\"=Value{Uint64(1024)}]"
    );
    // Mark assists active at a generation start must have been seen in the previous one.
    h.ok(1, spec::EV_GC_MARK_ASSIST_BEGIN, &[0]);
    h.generation = 2;
    h.ok(1, spec::EV_GO_STATUS, &[1, 1, 2]);
    h.ok(1, spec::EV_GC_MARK_ASSIST_ACTIVE, &[1]);
    let msg = h.err(1, spec::EV_GC_SWEEP_ACTIVE, &[1]);
    assert!(
        msg.contains("resource is missing active range: GCSweepBegin []"),
        "{msg}"
    );
    assert!(
        h.err(1, spec::EV_GC_MARK_ASSIST_ACTIVE, &[77])
            .contains("uninitialized goroutine 77")
    );
}

#[test]
fn metrics_annotations_and_bad_events() {
    let mut h = H::new();
    h.ok(1, spec::EV_PROC_STATUS, &[0, 1]);
    // Heap metrics need a P but no G; labels need a G.
    let e = one(h.ok(1, spec::EV_HEAP_ALLOC, &[1 << 20]));
    assert_eq!(
        e.to_string(),
        "M=1 P=0 G=-1 Metric Time=20 Name=\"/memory/classes/heap/objects:bytes\" Value=Value{Uint64(1048576)}"
    );
    assert!(
        h.err(1, spec::EV_GO_LABEL, &[1])
            .contains("expected a goroutine")
    );
    // Experimental events pass through.
    let e = one(h.ok(1, spec::EV_SPAN_ALLOC, &[0x1000, 4, 2]));
    assert_eq!(
        e.to_string(),
        "M=1 P=0 G=-1 Experimental Time=40 Name=SpanAlloc Args=[id=Value{Uint64(4096)}, npages_value=Value{Uint64(4)}, kindclass=Value{Uint64(2)}]"
    );
    // Structural and unknown types can't be ordered.
    assert!(
        h.err(1, spec::EV_STRINGS, &[])
            .contains("bad event type found while ordering: 4")
    );
    assert!(h.err(1, 200, &[]).contains("bad event type"));
    // Events from no thread have no context.
    assert!(
        h.err(-1, spec::EV_GO_BLOCK, &[1, 0])
            .contains("expected a thread")
    );
}
