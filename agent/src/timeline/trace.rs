//! The execution trace's own events on the timeline (`analyze`, `fuse`, `attach --trace-from
//! --trace-out`): each goroutine's states as the trace records them (running, runnable,
//! waiting with the runtime's reason, in a system call), one track per goroutine under
//! [`super::PID_TRACE`], with a flow arrow from the goroutine that made it runnable again
//! (the trace names the unblocker: the goroutine executing the unblock event,
//! internal/trace's Event.Goroutine), all on the probes' clock.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{Value, json};

use super::PID_TRACE;
use crate::gotrace::base::TraceError;
use crate::gotrace::event::{EventKind, GoState, ResourceKind};
use crate::gotrace::reader::Reader;

/// Most trace events put on one timeline; a longer trace is cut (and says so).
pub const MAX_TRACE_EVENTS: usize = 1 << 20;

/// The trace's events as trace-event JSON, and how many were left out.
pub struct TraceTracks {
    pub events: Vec<Value>,
    pub left_out: u64,
}

struct Open {
    state: GoState,
    since: i64,
    reason: String,
}

fn state_name(s: GoState, reason: &str) -> Option<String> {
    let base = match s {
        GoState::Running => "running",
        GoState::Runnable => "runnable",
        GoState::Waiting => "waiting",
        GoState::Syscall => "syscall",
        _ => return None,
    };
    Some(if reason.is_empty() || s != GoState::Waiting {
        base.to_string()
    } else {
        format!("{base} ({reason})")
    })
}

/// Reads a whole trace; `offset_ns` puts its clock on CLOCK_MONOTONIC (the report's
/// `trace.clock.offset_ns`: trace + offset = monotonic).
pub fn read(r: impl Read, offset_ns: i64) -> Result<TraceTracks, TraceError> {
    let mut reader = Reader::new(r)?;
    let mut open: BTreeMap<u64, Open> = BTreeMap::new();
    let mut out: Vec<Value> = Vec::new();
    let mut left_out = 0u64;
    let mut flow = 0u64;
    let mut last = 0i64;
    let mut push = |out: &mut Vec<Value>, v: Value| {
        if out.len() < MAX_TRACE_EVENTS {
            out.push(v);
        } else {
            left_out += 1;
        }
    };
    let mono = |t: i64| t.saturating_add(offset_ns);
    while let Some(ev) = reader.read_event()? {
        last = last.max(ev.time());
        if ev.kind() != EventKind::StateTransition {
            continue;
        }
        let st = ev.state_transition();
        if st.resource.kind != ResourceKind::Goroutine {
            continue;
        }
        let Ok(goid) = u64::try_from(st.resource.goroutine()) else {
            continue;
        };
        let (_, to) = st.goroutine();
        let t = ev.time();
        if let Some(o) = open.remove(&goid)
            && let Some(name) = state_name(o.state, &o.reason)
        {
            push(
                &mut out,
                json!({"name": name, "cat": "trace", "ph": "X", "ts": mono(o.since),
                       "dur": t.saturating_sub(o.since).max(0), "pid": PID_TRACE, "tid": goid}),
            );
        }
        // Made runnable by another goroutine: the arrow from it. It binds, at its start, to
        // the unblocker's running slice, and at its end to the next slice of this goroutine
        // (its runnable span, which begins now).
        let by = u64::try_from(ev.goroutine()).ok().filter(|&g| g != goid);
        if let (GoState::Runnable, Some(by), true) = (to, by, st.goroutine().0 == GoState::Waiting)
        {
            push(
                &mut out,
                json!({"name": "unblock", "cat": "trace", "ph": "s", "id": format!("t{flow}"),
                       "ts": mono(t), "pid": PID_TRACE, "tid": by}),
            );
            push(
                &mut out,
                json!({"name": "unblock", "cat": "trace", "ph": "f", "id": format!("t{flow}"),
                       "ts": mono(t), "pid": PID_TRACE, "tid": goid}),
            );
            flow += 1;
        }
        open.insert(
            goid,
            Open {
                state: to,
                since: t,
                reason: st.reason.clone(),
            },
        );
    }
    // What is still open ends with the trace.
    for (goid, o) in open {
        if let Some(name) = state_name(o.state, &o.reason) {
            push(
                &mut out,
                json!({"name": name, "cat": "trace", "ph": "X", "ts": mono(o.since),
                       "dur": last.saturating_sub(o.since).max(0), "pid": PID_TRACE,
                       "tid": goid, "args": {"at_trace_end": true}}),
            );
        }
    }
    // A flow whose start or end was cut off by the cap is dropped whole.
    if left_out > 0 {
        let mut ids: BTreeMap<String, usize> = BTreeMap::new();
        for e in out.iter().filter(|e| e["ph"] == "s" || e["ph"] == "f") {
            *ids.entry(e["id"].to_string()).or_default() += 1;
        }
        out.retain(|e| !(e["ph"] == "s" || e["ph"] == "f") || ids[&e["id"].to_string()] == 2);
    }
    Ok(TraceTracks {
        events: out,
        left_out,
    })
}
