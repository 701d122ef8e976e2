//! `--timeline FILE`: the session as Chrome trace-event JSON (the JSON Object Format of the
//! Trace Event Format), which the Perfetto UI and chrome://tracing load.
//!
//! - Process 1, one track per goroutine: its blocked spans ("X" events, named for the wait
//!   reason and the object), from the session's park/ready events, the waits still in progress
//!   ending at the report; flow arrows ("s"/"f") from the goroutine that woke it, where the
//!   probes saw who (precise mode's `runtime.ready`).
//! - Process 2, one track per OS thread: its off-CPU spans from the scheduler tracepoints: every
//!   span the session recorded (at least `--timeline-min-offcpu` long, threads::spans), named
//!   for the state and the kernel function it slept in, and the current one as the report has
//!   it (with its kernel stack). A report read back from JSON has only the current one.
//! - Process 3, the fused execution trace (`attach --trace-from`, `fuse`): each finding's
//!   goroutine as the trace saw it: its state, creation, and who unblocked it.
//!
//! The events come from the NDJSON stream (events.rs) the session already writes: [`TeeSink`]
//! wraps the `--events` writer (or stands in for it) and keeps the parsed events.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Value, json};

use probes_ebpf::OffCpuSpan;

use crate::reportview::{ReportView, is_null_addr};
use crate::threads::spans::{self, ThreadSpans};

/// The tracks' processes (Chrome trace-event `pid`s: labels, not the target's pid).
pub const PID_GOROUTINES: u32 = 1;
pub const PID_THREADS: u32 = 2;
pub const PID_TRACE: u32 = 3;

/// One event of the NDJSON stream, as much as the timeline uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    Park {
        ts_ns: u64,
        goid: u64,
        #[serde(default)]
        tid: u32,
        #[serde(default)]
        wait_reason: Option<String>,
        #[serde(default)]
        object_kind: Option<String>,
        #[serde(default)]
        object: Option<String>,
        #[serde(default)]
        parked_in: Option<String>,
        #[serde(default)]
        start_function: Option<String>,
        #[serde(default)]
        source: Option<String>,
    },
    Ready {
        ts_ns: u64,
        goid: u64,
        #[serde(default)]
        tid: Option<u32>,
        #[serde(default)]
        waker_goid: Option<u64>,
    },
    Exit {
        ts_ns: u64,
        goid: u64,
    },
    Finding {
        ts_ns: u64,
        #[serde(default)]
        pattern: String,
        #[serde(default)]
        goroutines: Vec<u64>,
    },
    #[serde(other)]
    Other,
}

/// Parses one NDJSON line; None for what the timeline does not use.
pub fn parse_line(line: &[u8]) -> Option<Event> {
    match serde_json::from_slice::<Event>(line) {
        Ok(Event::Other) | Err(_) => None,
        Ok(e) => Some(e),
    }
}

/// Most events kept for one timeline (a few hundred bytes each): a long precise-mode session
/// with `--min-wait 0` streams millions; the later ones are counted, not kept.
pub const MAX_KEPT: usize = 1 << 20;

/// The events kept for the timeline.
#[derive(Debug, Default)]
pub struct Kept {
    pub events: Vec<Event>,
    /// Events past [`MAX_KEPT`], left out.
    pub dropped: u64,
}

impl Kept {
    pub fn push(&mut self, e: Event) {
        if self.events.len() < MAX_KEPT {
            self.events.push(e);
        } else {
            self.dropped += 1;
        }
    }
}

pub type Collected = Arc<Mutex<Kept>>;

/// A writer for the session's event stream that keeps each event for the timeline and passes
/// the bytes on to the `--events` file, if there is one.
pub struct TeeSink {
    inner: Option<Box<dyn Write + Send>>,
    partial: Vec<u8>,
    kept: Collected,
}

impl TeeSink {
    pub fn new(inner: Option<Box<dyn Write + Send>>) -> (Self, Collected) {
        let kept = Collected::default();
        (
            Self {
                inner,
                partial: Vec::new(),
                kept: kept.clone(),
            },
            kept,
        )
    }
}

impl Write for TeeSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.inner.as_mut() {
            Some(w) => w.write(buf)?,
            None => buf.len(),
        };
        self.partial.extend_from_slice(&buf[..n]);
        if self.partial.contains(&b'\n') {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let mut rest = self.partial.as_slice();
            while let Some(i) = rest.iter().position(|&b| b == b'\n') {
                if let Some(e) = parse_line(&rest[..i]) {
                    kept.push(e);
                }
                rest = &rest[i + 1..];
            }
            self.partial = rest.to_vec();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.inner.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// A blocked span on a goroutine's track.
#[derive(Debug, Clone)]
struct Span {
    /// The park's own time, as streamed (`start` may be later: after the previous span).
    park_ts: u64,
    start: u64,
    end: u64,
    reason: String,
    kind: String,
    object: String,
    source: String,
    /// Still blocked at the report.
    open_at_end: bool,
    before_attach: bool,
}

impl Span {
    fn name(&self) -> String {
        if is_null_addr(&self.object) || matches!(self.kind.as_str(), "none" | "") {
            self.reason.clone()
        } else {
            format!("{} on {} {}", self.reason, self.kind, self.object)
        }
    }
}

struct Wake {
    ts: u64,
    /// When the woken goroutine's wait began.
    since: u64,
    waker: u64,
    woken: u64,
}

/// The trace-event document, from the session's events (`dropped`: how many more were left
/// out, see [`MAX_KEPT`]), its report, the execution trace's own events if the trace was
/// read ([`trace::read`]; else each finding's fused view of it stands in), and the session's
/// recorded off-CPU spans, if it recorded them.
pub fn build(
    events: &[Event],
    dropped: u64,
    r: &ReportView,
    trace: Option<trace::TraceTracks>,
    thread_spans: Option<&ThreadSpans>,
) -> Value {
    let mut open: BTreeMap<u64, Span> = BTreeMap::new();
    let mut spans: BTreeMap<u64, Vec<Span>> = BTreeMap::new();
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    let mut wakes: Vec<Wake> = Vec::new();
    let mut exits: Vec<(u64, u64)> = Vec::new();
    let mut instants: Vec<Value> = Vec::new();
    // Per goroutine, its last closed span: (park time as streamed, end).
    let mut last_closed: BTreeMap<u64, (u64, u64)> = BTreeMap::new();

    for e in events {
        match e {
            Event::Park {
                ts_ns,
                goid,
                wait_reason,
                object_kind,
                object,
                start_function,
                source,
                ..
            } => {
                if let Some(f) = start_function {
                    names.entry(*goid).or_insert_with(|| f.clone());
                }
                // Precise mode may send a long wait's park twice (at the park and with its
                // wake-up), with one start time: one span.
                if last_closed.get(goid).map(|c| c.0) == Some(*ts_ns)
                    || open.get(goid).is_some_and(|s| s.park_ts == *ts_ns)
                {
                    continue;
                }
                if let Some(mut s) = open.remove(goid) {
                    // A park without the ready of the previous one: it ended by this one.
                    s.end = (*ts_ns).max(s.start);
                    last_closed.insert(*goid, (s.park_ts, s.end));
                    spans.entry(*goid).or_default().push(s);
                }
                // Spans on one track never overlap (a scan's park time may be an estimate
                // earlier than the last wake-up seen).
                let start = (*ts_ns).max(last_closed.get(goid).map_or(0, |c| c.1));
                open.insert(
                    *goid,
                    Span {
                        park_ts: *ts_ns,
                        start,
                        end: start,
                        reason: wait_reason.clone().unwrap_or_else(|| "blocked".into()),
                        kind: object_kind.clone().unwrap_or_default(),
                        object: object.clone().unwrap_or_default(),
                        source: source.clone().unwrap_or_default(),
                        open_at_end: false,
                        before_attach: false,
                    },
                );
            }
            Event::Ready {
                ts_ns,
                goid,
                waker_goid,
                ..
            } => {
                if let Some(mut s) = open.remove(goid) {
                    s.end = (*ts_ns).max(s.start);
                    last_closed.insert(*goid, (s.park_ts, s.end));
                    // Goroutine 0 is no goroutine: the scheduler or a timer woke it.
                    if let Some(w) = waker_goid.filter(|&w| w != 0 && w != *goid) {
                        wakes.push(Wake {
                            ts: s.end,
                            since: s.start,
                            waker: w,
                            woken: *goid,
                        });
                    }
                    spans.entry(*goid).or_default().push(s);
                }
            }
            Event::Exit { ts_ns, goid } => exits.push((*ts_ns, *goid)),
            Event::Finding {
                ts_ns,
                pattern,
                goroutines,
            } => instants.push(json!({
                "name": format!("{pattern}: every goroutine blocked"), "ph": "i", "s": "g",
                "ts": *ts_ns, "pid": PID_GOROUTINES, "tid": 0, "cat": "finding",
                "args": {"goroutines": goroutines},
            })),
            Event::Other => {}
        }
    }

    // The waits in progress end at the report; the report's own view of a blocked goroutine
    // (its object read from the semaphore table or the sudogs) names the span.
    let end = r.at_mono_ns;
    for (goid, mut s) in std::mem::take(&mut open) {
        s.end = end.max(s.start);
        s.open_at_end = true;
        if let Some(b) = r.blocked_goroutine(goid) {
            s.reason = b.wait_reason.clone();
            s.kind = b.object_kind.clone();
            s.object = b.object.clone();
        }
        spans.entry(goid).or_default().push(s);
    }
    for b in &r.blocked {
        if let Some(f) = &b.start_function {
            names.entry(b.goid).or_insert_with(|| f.clone());
        }
        let track = spans.entry(b.goid).or_default();
        if track.iter().any(|s| s.open_at_end) || end == 0 {
            continue;
        }
        // A wait the stream never showed (blocked before the attach, or its park not streamed
        // yet): from the report's duration, after whatever the track already holds.
        let after = track.iter().map(|s| s.end).max().unwrap_or(0);
        let start = end.saturating_sub(b.blocked_ns).max(after).min(end);
        track.push(Span {
            park_ts: start,
            start,
            end,
            reason: b.wait_reason.clone(),
            kind: b.object_kind.clone(),
            object: b.object.clone(),
            source: b.source.clone(),
            open_at_end: true,
            before_attach: b.blocked_before_attach,
        });
    }

    let mut out: Vec<Value> = Vec::new();
    for (goid, track) in &spans {
        for s in track {
            out.push(json!({
                "name": s.name(), "cat": "blocked", "ph": "X",
                "ts": s.start, "dur": s.end - s.start,
                "pid": PID_GOROUTINES, "tid": goid,
                "args": {
                    "goid": goid, "wait_reason": s.reason, "object_kind": s.kind,
                    "object": s.object, "source": s.source,
                    "blocked_at_report": s.open_at_end, "began_before_attach": s.before_attach,
                },
            }));
        }
    }
    for (id, w) in wakes.iter().enumerate() {
        // The flow leaves a short slice on the waker's track (flows bind to slices), and
        // arrives at the end of the woken goroutine's blocked span.
        out.push(json!({
            "name": format!("wakes goroutine {}", w.woken), "cat": "wake", "ph": "X",
            "ts": w.ts, "dur": 0, "pid": PID_GOROUTINES, "tid": w.waker,
            "args": {"woken": w.woken},
        }));
        out.push(
            json!({"name": "wake", "cat": "wake", "ph": "s", "id": id, "ts": w.ts,
                        "pid": PID_GOROUTINES, "tid": w.waker}),
        );
        // Inside the end of the blocked span, which it binds to ("bp": "e": the enclosing
        // slice; a slice's very end is ambiguous).
        let inside = w.ts - (w.ts.saturating_sub(w.since) / 2).min(1_000);
        out.push(
            json!({"name": "wake", "cat": "wake", "ph": "f", "bp": "e", "id": id,
                        "ts": inside, "pid": PID_GOROUTINES, "tid": w.woken}),
        );
        names.entry(w.waker).or_default();
    }
    for &(ts, goid) in &exits {
        if spans.contains_key(&goid) {
            out.push(
                json!({"name": "exit", "cat": "lifecycle", "ph": "i", "s": "t", "ts": ts,
                            "pid": PID_GOROUTINES, "tid": goid}),
            );
        }
    }
    out.extend(instants);
    for s in &r.in_syscall {
        names
            .entry(s.goid)
            .or_insert_with(|| s.start_function.clone().unwrap_or_default());
    }
    threads(&mut out, r, thread_spans);
    let trace_left_out = match trace {
        Some(t) => {
            let goids: std::collections::BTreeSet<u64> =
                t.events.iter().filter_map(|e| e["tid"].as_u64()).collect();
            for goid in goids {
                out.push(meta_thread(
                    PID_TRACE,
                    goid,
                    &format!("goroutine {goid} (trace)"),
                ));
            }
            out.extend(t.events);
            t.left_out
        }
        None => {
            fused(&mut out, r);
            0
        }
    };

    // Track names (and order: goroutines by goid, threads by tid).
    for goid in spans
        .keys()
        .chain(names.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let name = match names.get(goid).filter(|n| !n.is_empty()) {
            Some(f) => format!("goroutine {goid} ({f})"),
            None => format!("goroutine {goid}"),
        };
        out.push(meta_thread(PID_GOROUTINES, *goid, &name));
    }
    let exe = r.target.exe.rsplit('/').next().unwrap_or(&r.target.exe);
    for (pid, what, order) in [
        (PID_GOROUTINES, "goroutines", 0),
        (PID_THREADS, "OS threads", 1),
        (PID_TRACE, "Go execution trace (fused)", 2),
    ] {
        out.push(
            json!({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                        "args": {"name": format!("{what} of pid {} {exe}", r.target.pid)}}),
        );
        out.push(
            json!({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                        "args": {"sort_index": order}}),
        );
    }
    let mut doc = finish(out, dropped, trace_left_out, r);
    doc["otherData"]["offcpu_spans"] = thread_spans.map_or(Value::Null, |t| {
        json!({
            "min_ns": t.min_span_ns, "received": t.received, "kept": t.spans.len(),
            "capacity": t.capacity, "dropped_oldest": t.dropped_oldest,
            "lost_in_kernel": t.lost_in_kernel,
        })
    });
    doc
}

fn meta_thread(pid: u32, tid: u64, name: &str) -> Value {
    json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
}

/// Each OS thread's off-CPU spans from the scheduler tracepoints: those the session recorded
/// (`spans`), then the current one from the report's thread view (each thread's current state
/// and when it began), which wins where they overlap. Threads that exited during the session
/// keep their tracks, named from their comm as read when their first span arrived.
fn threads(out: &mut Vec<Value>, r: &ReportView, recorded: Option<&ThreadSpans>) {
    let mut names: BTreeMap<u32, String> = recorded
        .map(|s| s.comms.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let mut open_from: BTreeMap<u32, u64> = BTreeMap::new();
    for t in &r.threads {
        if let Some(c) = &t.comm {
            names.insert(t.tid, c.clone());
        }
        if t.on_cpu != Some(false) || r.at_mono_ns == 0 {
            continue;
        }
        let start = t.since_ns.min(r.at_mono_ns);
        open_from.insert(t.tid, start);
        let kernel: Vec<&str> = t.kernel_stack.iter().map(|k| k.function.as_str()).collect();
        out.push(json!({
            "name": format!("off CPU: {}", t.state_name), "cat": "off-cpu", "ph": "X",
            "ts": start, "dur": r.at_mono_ns - start, "pid": PID_THREADS, "tid": t.tid,
            "args": {
                "state": t.state, "began_before_attach": t.since_before_attach,
                "kernel_stack": kernel, "waker_tid": t.waker_tid,
                "switches": t.switches, "off_cpu_total_ns": t.off_cpu_total_ns,
                "off_cpu_at_report": true,
            },
        }));
    }
    let mut tids: std::collections::BTreeSet<u32> = r.threads.iter().map(|t| t.tid).collect();
    if let Some(ts) = recorded {
        let mut by_tid: BTreeMap<u32, Vec<&OffCpuSpan>> = BTreeMap::new();
        for s in &ts.spans {
            by_tid.entry(s.tid).or_default().push(s);
        }
        for (tid, mine) in by_tid {
            tids.insert(tid);
            for sl in spans::track(mine, tid, open_from.get(&tid).copied()) {
                out.push(recorded_span(ts, &sl));
            }
        }
    }
    for tid in tids {
        let name = match names.get(&tid) {
            Some(c) => format!("thread {tid} ({c})"),
            None => format!("thread {tid}"),
        };
        out.push(meta_thread(PID_THREADS, u64::from(tid), &name));
    }
}

/// One recorded off-CPU span as a complete event on its thread's track.
fn recorded_span(ts: &ThreadSpans, sl: &spans::Slice<'_>) -> Value {
    let s = sl.span;
    let kernel = ts.kernel_stack(s);
    let ms = |ns: u64| ns as f64 / 1e6;
    // Woken: the sleep lasted until the wake-up, then the thread waited for a CPU.
    let woken =
        (s.woken_ns != 0 && s.woken_ns >= s.off_ns && s.woken_ns <= s.on_ns).then_some(s.woken_ns);
    json!({
        "name": spans::slice_name(s.prev_state, kernel), "cat": "off-cpu", "ph": "X",
        "ts": sl.start, "dur": sl.end - sl.start, "pid": PID_THREADS, "tid": s.tid,
        "args": {
            "state": spans::state_label(s.prev_state),
            "state_name": spans::state_description(s.prev_state),
            "duration_ms": ms(s.on_ns.saturating_sub(s.off_ns)),
            "waker_tid": woken.map(|_| s.waker_tid),
            "asleep_ms": woken.map(|w| ms(w - s.off_ns)),
            "runnable_ms": woken.map(|w| ms(s.on_ns - w)),
            "kernel_stack": kernel, "cpu": s.cpu,
            "began_before_attach": spans::before_attach(s),
            "off_cpu_at_report": false,
        },
    })
}

/// The execution trace's view of each finding's goroutine (`fused`), on its own tracks.
fn fused(out: &mut Vec<Value>, r: &ReportView) {
    let end = r
        .trace
        .as_ref()
        .map(|t| t.end_mono_ns)
        .filter(|&e| e > 0)
        .unwrap_or(r.at_mono_ns as i64);
    let mut flow = 1_000_000u64;
    let mut seen = std::collections::BTreeSet::new();
    for f in r.findings.iter().filter_map(|f| f.fused.as_ref()) {
        let Some(t) = &f.trace else { continue };
        if !seen.insert(f.goid) {
            continue;
        }
        let tid = f.goid;
        out.push(meta_thread(
            PID_TRACE,
            tid,
            &format!("goroutine {tid} (trace)"),
        ));
        if t.since_mono_ns > 0 && end >= t.since_mono_ns {
            out.push(json!({
                "name": format!("{}{}", t.state,
                    t.block_reason.as_deref().map(|b| format!(" ({b})")).unwrap_or_default()),
                "cat": "trace", "ph": "X", "ts": t.since_mono_ns, "dur": end - t.since_mono_ns,
                "pid": PID_TRACE, "tid": tid,
                "args": {"wait_reason": t.wait_reason, "since_before_trace": t.since_before_trace},
            }));
        }
        if let Some(c) = t.created_mono_ns.filter(|&c| c > 0) {
            out.push(
                json!({"name": "created", "cat": "trace", "ph": "i", "s": "t", "ts": c,
                            "pid": PID_TRACE, "tid": tid,
                            "args": {"by": t.created_by, "at": t.created_at}}),
            );
        }
        for u in t.unblocked.iter().filter(|u| u.mono_ns > 0) {
            out.push(
                json!({"name": "unblocked", "cat": "trace", "ph": "i", "s": "t",
                            "ts": u.mono_ns, "pid": PID_TRACE, "tid": tid,
                            "args": {"by": u.by, "thread": u.thread}}),
            );
            if let Some(by) = u.by.filter(|&b| b != tid) {
                // A short slice on the unblocker's track for the arrow to leave from; it
                // arrives at this goroutine's next slice (no "bp": the unblock may predate
                // its current state's span).
                out.push(json!({
                    "name": format!("unblocks goroutine {tid}"), "cat": "trace", "ph": "X",
                    "ts": u.mono_ns, "dur": 0, "pid": PID_TRACE, "tid": by,
                }));
                out.push(
                    json!({"name": "unblock", "cat": "trace", "ph": "s", "id": flow,
                                "ts": u.mono_ns, "pid": PID_TRACE, "tid": by}),
                );
                out.push(json!({"name": "unblock", "cat": "trace", "ph": "f",
                                "id": flow, "ts": u.mono_ns, "pid": PID_TRACE, "tid": tid}));
                out.push(meta_thread(
                    PID_TRACE,
                    by,
                    &format!("goroutine {by} (trace)"),
                ));
                flow += 1;
            }
        }
    }
}

/// Puts the times in microseconds from the earliest event (the format's unit), and wraps the
/// events in the JSON Object Format.
fn finish(mut events: Vec<Value>, dropped: u64, trace_left_out: u64, r: &ReportView) -> Value {
    let base = events
        .iter()
        .filter(|e| e["ph"] != "M")
        .filter_map(|e| {
            e["ts"]
                .as_i64()
                .or_else(|| e["ts"].as_u64().map(|u| u as i64))
        })
        .min()
        .unwrap_or(0);
    for e in &mut events {
        if e["ph"] == "M" {
            e["ts"] = json!(0);
            continue;
        }
        if let Some(ts) = e["ts"]
            .as_i64()
            .or_else(|| e["ts"].as_u64().map(|u| u as i64))
        {
            e["ts"] = json!((ts - base) as f64 / 1e3);
        }
        if let Some(d) = e["dur"]
            .as_i64()
            .or_else(|| e["dur"].as_u64().map(|u| u as i64))
        {
            e["dur"] = json!(d as f64 / 1e3);
        }
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "producer": "blockprobe",
            "clock": "CLOCK_MONOTONIC",
            "base_mono_ns": base,
            "target_pid": r.target.pid,
            "exe": r.target.exe,
            "mode": r.mode,
            "events_left_out": dropped,
            "trace_events_left_out": trace_left_out,
        },
    })
}

pub mod trace;

#[cfg(test)]
mod tests;
