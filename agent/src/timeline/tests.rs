use super::*;
use std::collections::BTreeMap;

fn report() -> ReportView {
    ReportView::from_json(
        r#"{"schema": "blockprobe.report/3", "mode": "precise", "at_mono_ns": 10000000,
        "target": {"pid": 42, "exe": "/x/patterns"},
        "blocked": [
          {"goid": 20, "wait_reason": "sync.Mutex.Lock", "blocked_ns": 4000000,
           "object_kind": "mutex", "object": "0xa", "source": "uprobe"},
          {"goid": 5, "wait_reason": "chan receive", "blocked_ns": 9000000,
           "object_kind": "chan", "object": "0xc", "source": "scan", "blocked_before_attach": true,
           "start_function": "main.worker"}],
        "threads": [{"tid": 7, "comm": "patterns", "on_cpu": false, "state": "S",
                     "state_name": "sleeping", "since_ns": 2000000,
                     "kernel_stack": [{"function": "futex_wait"}]},
                    {"tid": 8, "on_cpu": true, "state": "R", "state_name": "running"}]}"#,
    )
    .unwrap()
}

fn lines(text: &str) -> Vec<Event> {
    let (mut tee, kept) = TeeSink::new(None);
    // Split mid-line: the sink must join the pieces.
    let (a, b) = text.split_at(text.len() / 2);
    tee.write_all(a.as_bytes()).unwrap();
    tee.write_all(b.as_bytes()).unwrap();
    kept.lock().unwrap().events.clone()
}

const STREAM: &str = r#"{"event":"create","parent_goid":1,"ts_ns":1}
{"event":"park","goid":19,"ts_ns":1000000,"wait_reason":"chan send","object_kind":"chan","object":"0xb","start_function":"main.f","source":"uprobe"}
{"event":"park","goid":19,"ts_ns":1000000,"wait_reason":"chan send","object_kind":"chan","object":"0xb","parked_in":null,"source":"uprobe"}
{"event":"ready","goid":19,"ts_ns":3000000,"waker_goid":20,"tid":7}
{"event":"park","goid":19,"ts_ns":1000000,"wait_reason":"chan send","object_kind":"chan","object":"0xb","source":"uprobe"}
{"event":"park","goid":20,"ts_ns":6000000,"wait_reason":"sync.Mutex.Lock","object_kind":"sema","object":"0xfff","source":"uprobe"}
{"event":"ready","goid":21,"ts_ns":6500000,"waker_goid":0}
{"event":"exit","goid":19,"ts_ns":7000000}
"#;

#[test]
fn the_tee_keeps_whole_events_and_passes_the_bytes_on() {
    let buf: Vec<u8> = Vec::new();
    let shared = Arc::new(Mutex::new(buf));
    struct W(Arc<Mutex<Vec<u8>>>);
    impl Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (mut tee, kept) = TeeSink::new(Some(Box::new(W(shared.clone()))));
    for chunk in STREAM.as_bytes().chunks(7) {
        tee.write_all(chunk).unwrap();
    }
    assert_eq!(&*shared.lock().unwrap(), STREAM.as_bytes());
    // The create carries no goid the timeline uses: 7 of 8 kept.
    assert_eq!(kept.lock().unwrap().events.len(), 7);
}

fn by_ph<'a>(doc: &'a Value, ph: &str) -> Vec<&'a Value> {
    doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == ph)
        .collect()
}

#[test]
fn spans_flows_and_tracks() {
    let doc = build(&lines(STREAM), 0, &report(), None, None);
    let spans: Vec<&Value> = by_ph(&doc, "X")
        .into_iter()
        .filter(|e| e["cat"] == "blocked")
        .collect();
    let got: Vec<(u64, f64, f64, &str)> = spans
        .iter()
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["ts"].as_f64().unwrap(),
                e["dur"].as_f64().unwrap(),
                e["name"].as_str().unwrap(),
            )
        })
        .collect();
    // µs from the earliest event (goroutine 5's wait, 9 ms before the report at 10 ms).
    assert_eq!(
        got,
        [
            (5, 0.0, 9000.0, "chan receive on chan 0xc"),
            (19, 0.0, 2000.0, "chan send on chan 0xb"),
            // Still blocked at the report: named from the report (the Mutex, not the sema).
            (20, 5000.0, 4000.0, "sync.Mutex.Lock on mutex 0xa"),
        ]
    );
    assert_eq!(spans[0]["args"]["began_before_attach"], true);
    // 20 woke 19: a flow from 20's track to 19's, at the wake.
    let s = by_ph(&doc, "s");
    let f = by_ph(&doc, "f");
    assert_eq!((s.len(), f.len()), (1, 1));
    assert_eq!(
        (s[0]["tid"].as_u64(), f[0]["tid"].as_u64()),
        (Some(20), Some(19))
    );
    assert_eq!(s[0]["id"], f[0]["id"]);
    assert_eq!(f[0]["bp"], "e");
    // Tracks named; the sleeping thread has its off-CPU span, the running one none.
    let names: Vec<&str> = by_ph(&doc, "M")
        .iter()
        .filter(|m| m["name"] == "thread_name")
        .map(|m| m["args"]["name"].as_str().unwrap())
        .collect();
    for n in [
        "goroutine 19 (main.f)",
        "goroutine 5 (main.worker)",
        "thread 7 (patterns)",
    ] {
        assert!(names.contains(&n), "{n}: {names:?}");
    }
    let off: Vec<&Value> = by_ph(&doc, "X")
        .into_iter()
        .filter(|e| e["cat"] == "off-cpu")
        .collect();
    assert_eq!(off.len(), 1);
    assert_eq!(off[0]["tid"], 7);
    assert_eq!(off[0]["args"]["kernel_stack"][0], "futex_wait");
    assert_eq!(doc["otherData"]["base_mono_ns"], 1000000);
}

#[test]
fn every_event_has_the_format_fields() {
    let doc = build(&lines(STREAM), 0, &report(), None, None);
    for e in doc["traceEvents"].as_array().unwrap() {
        assert!(e["name"].is_string() && e["ph"].is_string(), "{e}");
        assert!(e["pid"].is_u64() && e["tid"].is_u64(), "{e}");
        assert!(e["ts"].is_number(), "{e}");
        if e["ph"] == "X" {
            assert!(e["dur"].as_f64().unwrap() >= 0.0, "{e}");
        }
    }
}

#[test]
fn a_report_alone_makes_a_timeline() {
    let doc = build(&[], 0, &report(), None, None);
    let blocked = by_ph(&doc, "X")
        .into_iter()
        .filter(|e| e["cat"] == "blocked")
        .count();
    assert_eq!(blocked, 2);
}

/// A trace the `patterns` fixture wrote (`-case orphanrecv -trace FILE`, Go 1.27).
fn captured_trace() -> trace::TraceTracks {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/traces/orphanrecv-go1.27.trace");
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    trace::read(&bytes[..], 1_000).expect("reads")
}

#[test]
fn a_trace_becomes_state_spans_and_unblock_arrows() {
    let t = captured_trace();
    assert_eq!(t.left_out, 0);
    let spans: Vec<&Value> = t.events.iter().filter(|e| e["ph"] == "X").collect();
    assert!(spans.len() > 10, "{}", spans.len());
    for s in &spans {
        let name = s["name"].as_str().unwrap();
        assert!(
            ["running", "runnable", "syscall"].contains(&name) || name.starts_with("waiting"),
            "{name}"
        );
        assert_eq!(s["pid"], PID_TRACE);
    }
    // Per goroutine, its states follow each other without overlapping.
    let mut by_g: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::new();
    for s in &spans {
        let ts = s["ts"].as_i64().unwrap();
        by_g.entry(s["tid"].as_u64().unwrap())
            .or_default()
            .push((ts, ts + s["dur"].as_i64().unwrap()));
    }
    for (g, mut v) in by_g {
        v.sort();
        for w in v.windows(2) {
            assert!(w[1].0 >= w[0].1, "goroutine {g}: {w:?}");
        }
    }
    // The orphaned receiver waits on a channel receive at the trace's end.
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "waiting (chan receive)" && s["args"]["at_trace_end"] == true),
        "no open chan receive"
    );
    // Arrows pair up, start and end at one time.
    let starts: Vec<&Value> = t.events.iter().filter(|e| e["ph"] == "s").collect();
    let ends: Vec<&Value> = t.events.iter().filter(|e| e["ph"] == "f").collect();
    assert_eq!(starts.len(), ends.len());
    for s in starts {
        let f = ends.iter().find(|f| f["id"] == s["id"]).expect("its end");
        assert_eq!(s["ts"], f["ts"]);
        assert_ne!(s["tid"], f["tid"]);
    }
}

#[test]
fn a_trace_joins_the_timeline_instead_of_the_fused_summary() {
    let doc = build(&[], 0, &report(), Some(captured_trace()), None);
    let names: Vec<&str> = by_ph(&doc, "M")
        .iter()
        .filter(|m| m["pid"] == PID_TRACE && m["name"] == "thread_name")
        .map(|m| m["args"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"goroutine 1 (trace)"), "{names:?}");
    assert_eq!(doc["otherData"]["trace_events_left_out"], 0);
}

#[test]
fn a_cut_trace_is_an_error_not_a_panic() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/traces/orphanrecv-go1.27.trace");
    let bytes = std::fs::read(&p).unwrap();
    for cut in [0, 5, 16, 100, bytes.len() / 2] {
        let _ = trace::read(&bytes[..cut], 0);
    }
    assert!(trace::read(&b"not a trace"[..], 0).is_err());
}

#[test]
fn an_early_park_time_never_overlaps_the_previous_span() {
    // Scan mode dates a park from the first scan that saw it, or the runtime's g.waitsince,
    // which may precede the last wake-up the scans saw.
    let stream = r#"{"event":"park","goid":9,"ts_ns":1000,"wait_reason":"chan receive","source":"scan"}
{"event":"ready","goid":9,"ts_ns":5000,"waker_goid":null,"source":"scan"}
{"event":"park","goid":9,"ts_ns":4000,"wait_reason":"select","source":"scan"}
{"event":"ready","goid":9,"ts_ns":9000,"waker_goid":null,"source":"scan"}
"#;
    let r =
        ReportView::from_json(r#"{"schema": "blockprobe.report/3", "at_mono_ns": 10000}"#).unwrap();
    let doc = build(&lines(stream), 0, &r, None, None);
    let got: Vec<(f64, f64)> = by_ph(&doc, "X")
        .iter()
        .map(|e| (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap()))
        .collect();
    assert_eq!(got, [(0.0, 4.0), (4.0, 4.0)]);
}

#[test]
fn recorded_off_cpu_spans_fill_the_thread_tracks() {
    use probes_ebpf::{OffCpuSpan, task_state};
    let sleep = |tid: u32, off_ns: u64, on_ns: u64, kstack_id: i64| OffCpuSpan {
        off_ns,
        on_ns,
        woken_ns: on_ns - 100_000,
        kstack_id,
        tid,
        prev_state: task_state::INTERRUPTIBLE,
        waker_tid: 3,
        cpu: 1,
        ..OffCpuSpan::default()
    };
    let mut ts = ThreadSpans {
        spans: vec![
            sleep(7, 1_000_000, 1_500_000, 4),
            // Thread 9 exited: not in the report's view, still a track, named from its comm.
            sleep(9, 1_200_000, 1_300_000, -1),
            // Overlaps the report's open span of thread 7 (off CPU since 2 ms): cut there.
            sleep(7, 1_800_000, 2_500_000, 4),
            OffCpuSpan {
                prev_state: task_state::PREEMPTED,
                woken_ns: 0,
                ..sleep(8, 3_000_000, 3_200_000, -1)
            },
        ],
        min_span_ns: 1000,
        capacity: 10,
        received: 5,
        dropped_oldest: 1,
        ..ThreadSpans::default()
    };
    ts.comms.insert(9, "worker".into());
    ts.kernel_stacks.insert(4, vec!["futex_wait_queue".into()]);
    let doc = build(&[], 0, &report(), None, Some(&ts));
    let off: Vec<&Value> = by_ph(&doc, "X")
        .into_iter()
        .filter(|e| e["cat"] == "off-cpu")
        .collect();
    let on = |tid: u64| -> Vec<(&str, f64, f64)> {
        off.iter()
            .filter(|e| e["tid"] == tid)
            .map(|e| {
                (
                    e["name"].as_str().unwrap(),
                    e["ts"].as_f64().unwrap(),
                    e["dur"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    // Times in µs from the earliest event (1 ms).
    assert_eq!(
        on(7),
        [
            ("off CPU: sleeping", 1000.0, 8000.0),
            ("off CPU (S: futex_wait_queue)", 0.0, 500.0),
            ("off CPU (S: futex_wait_queue)", 800.0, 200.0),
        ]
    );
    assert_eq!(on(8), [("off CPU (R+: preempted)", 2000.0, 200.0)]);
    assert_eq!(on(9), [("off CPU (S: sleeping)", 200.0, 100.0)]);
    let first = off
        .iter()
        .find(|e| e["tid"] == 7 && e["ts"] == 0.0)
        .unwrap();
    assert_eq!(first["args"]["state"], "S");
    assert_eq!(first["args"]["waker_tid"], 3);
    assert_eq!(first["args"]["kernel_stack"][0], "futex_wait_queue");
    assert_eq!(first["args"]["duration_ms"], 0.5);
    assert_eq!(first["args"]["runnable_ms"], 0.1);
    let preempted = off.iter().find(|e| e["tid"] == 8).unwrap();
    assert!(preempted["args"]["waker_tid"].is_null());
    let names: Vec<&str> = by_ph(&doc, "M")
        .iter()
        .filter(|e| e["pid"] == PID_THREADS && e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["thread 7 (patterns)", "thread 8", "thread 9 (worker)"]
    );
    let meta = &doc["otherData"]["offcpu_spans"];
    assert_eq!(meta["kept"], 4);
    assert_eq!(meta["dropped_oldest"], 1);
    // Without a recording, the metadata says so.
    let bare = build(&[], 0, &report(), None, None);
    assert!(bare["otherData"]["offcpu_spans"].is_null());
}
