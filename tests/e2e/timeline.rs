//! `--timeline`: `blockprobe run --mode precise --timeline T --events E` on the AB/BA lock-order
//! deadlock of the `patterns` fixture (Go 1.27). The file is checked against the Chrome
//! trace-event format (JSON Object Format: `traceEvents`; every event's required fields and
//! their types per phase; flow starts and ends paired by id; complete events nested on their
//! track), and its spans against the fixture's known blocks: each of g1 and g2 sleeps 100 ms
//! holding its first Mutex (`time.Sleep`), then blocks on the other one until the program
//! exits: a `sync.Mutex.Lock` span on the Mutex the fixture printed, still open at the report.
//! Every wake-up the event stream names a waker for is a flow arrow from that goroutine. The
//! same run's `--html` page has each goroutine's wait on its Mutex.
//!
//! The OS threads' tracks hold every off-CPU span the session recorded: `run --timeline` on the
//! `threadsleep` fixture, whose goroutine locked to its thread sleeps in nanosleep(2) 8 times
//! for 50 ms; that thread's track has a slice per sleep, in state S, in the kernel's nanosleep,
//! none overlapping another.
//!
//! With an execution trace fused (`attach --trace-from --trace-out` on the `pprofserve`
//! fixture, scan mode): the worker's blocked span on its channel, and the trace's own events on
//! their tracks: the worker waiting on a channel receive, with an arrow from the producer for
//! each of the five unblocks the fixture makes.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use std::time::Duration;

use blockprobe_tests::{Proc, Scratch, blockprobe_bin, kv, prepare, read_report, start_ready};
use serde_json::Value;

/// The fields each phase needs (the Trace Event Format document: "X" complete events carry
/// `dur`, flow events `id`, metadata events `args`), all events `name`, `ph`, `pid`, `tid`, `ts`.
fn validate_event(e: &Value) -> Result<(), String> {
    let obj = e.as_object().ok_or("not an object")?;
    let ph = obj.get("ph").and_then(Value::as_str).ok_or("no ph")?;
    if !obj.get("name").is_some_and(Value::is_string) {
        return Err("no name".into());
    }
    for k in ["pid", "tid"] {
        if !obj.get(k).is_some_and(Value::is_u64) {
            return Err(format!("{k} is not an unsigned integer"));
        }
    }
    let ts = obj
        .get("ts")
        .and_then(Value::as_f64)
        .ok_or("ts is not a number")?;
    if ts < 0.0 {
        return Err("negative ts".into());
    }
    match ph {
        "X" => {
            let dur = obj
                .get("dur")
                .and_then(Value::as_f64)
                .ok_or("X without dur")?;
            if dur < 0.0 {
                return Err("negative dur".into());
            }
        }
        "s" | "t" | "f" => {
            if !obj.get("id").is_some_and(|v| v.is_u64() || v.is_string()) {
                return Err("flow without id".into());
            }
            if ph == "f" && obj.get("bp").is_some_and(|b| b != "e") {
                return Err("bp other than e".into());
            }
        }
        "i" | "I" => {
            if obj
                .get("s")
                .is_some_and(|s| !matches!(s.as_str(), Some("g" | "p" | "t")))
            {
                return Err("instant scope not g/p/t".into());
            }
        }
        "M" => {
            let name = obj["name"].as_str().unwrap();
            if !matches!(
                name,
                "process_name"
                    | "process_labels"
                    | "process_sort_index"
                    | "thread_name"
                    | "thread_sort_index"
            ) {
                return Err(format!("unknown metadata {name}"));
            }
            if !obj.get("args").is_some_and(Value::is_object) {
                return Err("metadata without args".into());
            }
        }
        "B" | "E" | "C" | "b" | "e" | "n" => {}
        other => return Err(format!("unknown phase {other}")),
    }
    if let Some(a) = obj.get("args")
        && !a.is_object()
    {
        return Err("args is not an object".into());
    }
    Ok(())
}

fn validate(doc: &Value) -> Vec<&Value> {
    let events = doc["traceEvents"]
        .as_array()
        .expect("JSON Object Format: traceEvents array");
    if let Some(u) = doc.get("displayTimeUnit") {
        assert!(matches!(u.as_str(), Some("ms" | "ns")), "{u}");
    }
    for e in events {
        if let Err(why) = validate_event(e) {
            panic!("invalid trace event ({why}): {e}");
        }
    }
    // Flows: each start has one end with its id, not before it.
    let mut starts: BTreeMap<String, f64> = BTreeMap::new();
    let mut ends: BTreeMap<String, f64> = BTreeMap::new();
    for e in events {
        let id = e["id"].to_string();
        match e["ph"].as_str() {
            Some("s") => assert!(starts.insert(id, e["ts"].as_f64().unwrap()).is_none()),
            Some("f") => assert!(ends.insert(id, e["ts"].as_f64().unwrap()).is_none()),
            _ => {}
        }
    }
    assert_eq!(
        starts.keys().collect::<Vec<_>>(),
        ends.keys().collect::<Vec<_>>()
    );
    for (id, s) in &starts {
        assert!(ends[id] >= *s, "flow {id} ends before it starts");
    }
    // Complete events on one track nest or follow each other: none straddles another's end.
    let mut tracks: BTreeMap<(u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let ts = e["ts"].as_f64().unwrap();
        tracks
            .entry((e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
            .or_default()
            .push((ts, ts + e["dur"].as_f64().unwrap()));
    }
    for (track, mut spans) in tracks {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        for w in spans.windows(2) {
            let ((_, e0), (s1, e1)) = (w[0], w[1]);
            assert!(
                s1 >= e0 - 1e-3 || e1 <= e0 + 1e-3,
                "{track:?}: {w:?} overlap without nesting"
            );
        }
    }
    events.iter().collect()
}

#[test]
fn lockorder_timeline_under_precise_mode() {
    let Some(fixture) = prepare("1.27", "default", "patterns") else {
        return;
    };
    let scratch = Scratch::new("timeline");
    let (json, timeline, events) = (
        scratch.path("report.json"),
        scratch.path("timeline.json"),
        scratch.path("events.ndjson"),
    );
    let out = Command::new(blockprobe_bin())
        .args(["run", "--mode", "precise", "--threshold", "0s", "--json"])
        .arg(&json)
        .arg("--timeline")
        .arg(&timeline)
        .arg("--events")
        .arg(&events)
        .arg("--html")
        .arg(scratch.path("report.html"))
        .arg("--")
        .arg(&fixture)
        .args(["-case", "lockorder", "-hold", "1s"])
        .output()
        .expect("run blockprobe run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ready = stdout
        .lines()
        .find(|l| l.starts_with("ready pid="))
        .unwrap_or_else(|| panic!("no ready line: {stdout}"));
    let (g1, g2) = (
        kv(ready, "g1").parse::<u64>().unwrap(),
        kv(ready, "g2").parse::<u64>().unwrap(),
    );
    let (a, b) = (kv(ready, "mutexa"), kv(ready, "mutexb"));
    let report = read_report(&json);

    let doc: Value =
        serde_json::from_slice(&std::fs::read(&timeline).expect("timeline written")).unwrap();
    let all = validate(&doc);
    assert_eq!(doc["otherData"]["target_pid"], report["target"]["pid"]);

    let track_name = |pid: u64, tid: u64| {
        all.iter()
            .find(|e| {
                e["ph"] == "M" && e["name"] == "thread_name" && e["pid"] == pid && e["tid"] == tid
            })
            .and_then(|e| e["args"]["name"].as_str())
            .map(str::to_string)
    };
    let spans_of = |goid: u64| -> Vec<&Value> {
        let mut v: Vec<&Value> = all
            .iter()
            .copied()
            .filter(|e| {
                e["ph"] == "X" && e["cat"] == "blocked" && e["pid"] == 1 && e["tid"] == goid
            })
            .collect();
        v.sort_by(|x, y| {
            x["ts"]
                .as_f64()
                .unwrap()
                .total_cmp(&y["ts"].as_f64().unwrap())
        });
        v
    };
    // g1 holds A and waits for B; g2 holds B and waits for A.
    for (goid, waits_on) in [(g1, &b), (g2, &a)] {
        let name = track_name(1, goid).unwrap_or_else(|| panic!("no track for {goid}"));
        assert!(
            name.starts_with(&format!("goroutine {goid} (main.lockOrder")),
            "{name}"
        );
        let spans = spans_of(goid);
        let last = spans.last().unwrap_or_else(|| panic!("no span of {goid}"));
        assert_eq!(
            last["name"],
            format!("sync.Mutex.Lock on mutex {waits_on}"),
            "{spans:#?}"
        );
        assert_eq!(last["args"]["wait_reason"], "sync.Mutex.Lock");
        assert_eq!(last["args"]["object"], waits_on.as_str());
        assert_eq!(last["args"]["blocked_at_report"], true);
        assert_eq!(last["args"]["source"], "uprobe");
        // Blocked from the park until the report: the report's duration, to the microsecond.
        let blocked_ns = report["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["goid"] == goid)
            .unwrap()["blocked_ns"]
            .as_u64()
            .unwrap();
        let dur_us = last["dur"].as_f64().unwrap();
        assert!(
            (dur_us - blocked_ns as f64 / 1e3).abs() < 2.0,
            "{dur_us} µs vs {blocked_ns} ns"
        );
        // Before it, the 100 ms sleep holding the first lock (the clock never goes back).
        let sleep = spans
            .iter()
            .rev()
            .find(|s| s["args"]["wait_reason"] == "sleep")
            .unwrap_or_else(|| panic!("no sleep span of {goid}: {spans:#?}"));
        let slept = sleep["dur"].as_f64().unwrap();
        assert!((100_000.0..2_000_000.0).contains(&slept), "{slept}");
        assert!(
            sleep["ts"].as_f64().unwrap() + slept <= last["ts"].as_f64().unwrap() + 1.0,
            "{spans:#?}"
        );
    }

    // Who woke whom: every wake-up the stream names a waker for is a flow from the waker.
    let text = std::fs::read_to_string(&events).unwrap();
    let named: BTreeSet<(u64, u64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "ready")
        .filter_map(|e| {
            Some((
                e["waker_goid"].as_u64().filter(|&w| w != 0)?,
                e["goid"].as_u64()?,
            ))
        })
        .filter(|(w, g)| w != g && !spans_of(*g).is_empty())
        .collect();
    let flows: BTreeMap<String, (u64, u64)> = all
        .iter()
        .filter(|e| e["ph"] == "s")
        .map(|s| {
            let f = all
                .iter()
                .find(|f| f["ph"] == "f" && f["id"] == s["id"])
                .unwrap();
            (
                s["id"].to_string(),
                (s["tid"].as_u64().unwrap(), f["tid"].as_u64().unwrap()),
            )
        })
        .collect();
    let drawn: BTreeSet<(u64, u64)> = flows.values().copied().collect();
    assert!(named.is_subset(&drawn), "{named:?} not all in {drawn:?}");

    // `run --html` too: at the exit nobody is left to hold the locks (no reference search on a
    // dead process), so the graph has each goroutine waiting on its Mutex, without the cycle.
    let page = std::fs::read_to_string(scratch.path("report.html")).expect("html written");
    assert!(page.contains("data-pattern=\"BP11\""), "{page}");
    for (g, m) in [(g1, &b), (g2, &a)] {
        assert!(page.contains(&format!("data-goid=\"{g}\"")), "{g}");
        assert!(
            page.contains(&format!(
                "data-from=\"g{g}\" data-to=\"o{m}\" data-rel=\"waits\""
            )),
            "g{g} -> {m}"
        );
    }

    // The OS threads: one track each, named, from the report's thread view.
    for t in report["threads"].as_array().unwrap() {
        let tid = t["tid"].as_u64().unwrap();
        assert!(track_name(2, tid).is_some(), "no track for thread {tid}");
    }
}

#[test]
fn fused_trace_on_the_timeline() {
    let Some(fixture) = prepare("1.27", "default", "pprofserve") else {
        return;
    };
    let scratch = Scratch::new("timeline-fused");
    let mut target = start_ready(&fixture);
    let ready = target.stdout_seen.last().cloned().expect("the ready line");
    let url = format!("http://{}/debug/pprof/trace?seconds=2", kv(&ready, "addr"));
    let (json, timeline) = (scratch.path("report.json"), scratch.path("timeline.json"));
    let mut agent = Proc::spawn(
        Command::new(blockprobe_bin())
            .args(["attach", "--pid", &target.pid().to_string()])
            .args(["--duration", "3500ms", "--threshold", "500ms"])
            .args(["--trace-from", &url, "--trace-out"])
            .arg(scratch.path("fetched.trace"))
            .arg("--json")
            .arg(&json)
            .arg("--timeline")
            .arg(&timeline),
    )
    .expect("start blockprobe");
    let pipe = target
        .expect_stdout(Duration::from_secs(15), |l| l.starts_with("pipeline "))
        .expect("the trace request started the pipeline");
    let status = agent
        .wait_timeout(Duration::from_secs(60))
        .expect("blockprobe ends");
    assert!(status.success(), "{:?}", agent.drain_stderr());
    let (chan, worker, producer) = (
        kv(&pipe, "chan"),
        kv(&pipe, "gworker").parse::<u64>().unwrap(),
        kv(&pipe, "gproducer").parse::<u64>().unwrap(),
    );
    let report = read_report(&json);
    assert!(
        report["trace"].is_object(),
        "no trace fused: {:#}",
        report["warnings"]
    );
    let doc: Value =
        serde_json::from_slice(&std::fs::read(&timeline).expect("timeline written")).unwrap();
    let all = validate(&doc);
    let on = |pid: u64, tid: u64, ph: &str| -> Vec<&Value> {
        all.iter()
            .copied()
            .filter(|e| e["pid"] == pid && e["tid"] == tid && e["ph"] == ph)
            .collect()
    };
    // The probes' view: the worker waits on the channel, to the report.
    let blocked = on(1, worker, "X");
    let last = blocked
        .last()
        .unwrap_or_else(|| panic!("no span of the worker {worker}"));
    assert_eq!(
        last["name"],
        format!("chan receive on chan {chan}"),
        "{blocked:#?}"
    );
    assert_eq!(last["args"]["blocked_at_report"], true);
    // The trace's own events: the worker waiting on a channel receive, and unblocked by the
    // producer five times (pprofserve's pipeline), each an arrow from the producer's track.
    let states = on(3, worker, "X");
    assert!(
        states.iter().any(|s| s["name"] == "waiting (chan receive)"),
        "{states:#?}"
    );
    assert!(states.iter().any(|s| s["name"] == "running"), "{states:#?}");
    let from_producer = on(3, worker, "f")
        .iter()
        .filter(|f| {
            all.iter()
                .find(|s| s["ph"] == "s" && s["id"] == f["id"])
                .is_some_and(|s| s["pid"] == 3 && s["tid"] == producer)
        })
        .count();
    assert_eq!(from_producer, 5, "unblocks of the worker by the producer");
    assert_eq!(doc["otherData"]["trace_events_left_out"], 0);
}

#[test]
fn every_sleep_of_an_os_thread_on_its_track() {
    let Some(fixture) = prepare("1.27", "default", "threadsleep") else {
        return;
    };
    let scratch = Scratch::new("timeline-threads");
    let (json, timeline) = (scratch.path("report.json"), scratch.path("timeline.json"));
    let (n, sleep_ms) = (8usize, 50.0f64);
    let out = Command::new(blockprobe_bin())
        .args(["run", "--threshold", "100ms", "--json"])
        .arg(&json)
        .arg("--timeline")
        .arg(&timeline)
        .arg("--")
        .arg(&fixture)
        .args([
            "-n",
            &n.to_string(),
            "-d",
            &format!("{sleep_ms}ms"),
            "-hold",
            "1s",
        ])
        .output()
        .expect("run blockprobe run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line: {stdout}"))
            .to_string()
    };
    let tid: u64 = kv(&line("sleeper "), "tid").parse().unwrap();
    let interrupted: usize = kv(&line("slept "), "interrupted").parse().unwrap();
    assert_eq!(interrupted, 0, "a nanosleep was cut short: {stdout}");
    let report = read_report(&json);
    assert!(
        report["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["wait_reason"] == "chan receive"),
        "{:#}",
        report["blocked"]
    );

    let doc: Value =
        serde_json::from_slice(&std::fs::read(&timeline).expect("timeline written")).unwrap();
    let all = validate(&doc);
    // Nothing left out: the fixture's few threads are far from the ring's or the history's size.
    let meta = &doc["otherData"]["offcpu_spans"];
    assert_eq!(meta["lost_in_kernel"], 0, "{meta}");
    assert_eq!(meta["dropped_oldest"], 0, "{meta}");
    assert_eq!(meta["min_ns"], 1_000_000, "{meta}");

    let name = all
        .iter()
        .find(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["pid"] == 2 && e["tid"] == tid)
        .and_then(|e| e["args"]["name"].as_str())
        .unwrap_or_else(|| panic!("no track for thread {tid}"));
    assert_eq!(name, format!("thread {tid} (threadsleep)"));
    let mut track: Vec<&Value> = all
        .iter()
        .copied()
        .filter(|e| e["ph"] == "X" && e["pid"] == 2 && e["tid"] == tid)
        .collect();
    track.sort_by(|a, b| {
        a["ts"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["ts"].as_f64().unwrap())
    });
    // Strictly one after another on this track: no slice begins before the previous ends.
    for w in track.windows(2) {
        let end = w[0]["ts"].as_f64().unwrap() + w[0]["dur"].as_f64().unwrap();
        assert!(
            w[1]["ts"].as_f64().unwrap() >= end - 1e-3,
            "overlap: {} and {}",
            w[0],
            w[1]
        );
    }
    // The sleeps the session recorded (not the report's view of the thread's current state):
    // each ~50 ms (generous bounds: a check of the spans, not of the timer), state S, woken by
    // someone. The scheduler programs attach once the program runs, so the first
    // sleep may have begun before: that span starts at the attach (a lower bound, no kernel
    // stack captured). Every other one is whole, with the kernel stack of its nanosleep.
    let sleeps: Vec<&Value> = track
        .iter()
        .copied()
        .filter(|e| {
            let ms = e["dur"].as_f64().unwrap() / 1e3;
            e["cat"] == "off-cpu"
                && e["args"]["off_cpu_at_report"] == false
                && (sleep_ms * 0.9..sleep_ms * 3.0).contains(&ms)
        })
        .collect();
    let whole: Vec<&Value> = sleeps
        .iter()
        .copied()
        .filter(|e| e["args"]["began_before_attach"] == false)
        .collect();
    assert!(
        whole.len() >= n - 1 && sleeps.len() - whole.len() <= 1,
        "{} whole sleeps of ~{sleep_ms} ms, {} in all: {track:#?}",
        whole.len(),
        sleeps.len()
    );
    for s in &sleeps {
        let args = &s["args"];
        assert_eq!(args["state"], "S", "{s}");
        assert!(args["waker_tid"].is_u64(), "{s}");
    }
    for s in &whole {
        let stack: Vec<&str> = s["args"]["kernel_stack"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(stack.iter().any(|f| f.contains("nanosleep")), "{s}");
        assert!(
            s["name"].as_str().unwrap().starts_with("off CPU (S: "),
            "{s}"
        );
    }
    // Nothing else on the track lasts that long: the other off-CPU slices are the thread's
    // short waits and its final sleep on a futex (the goroutine blocked, its locked M parked).
    assert!(sleeps.len() <= n, "{track:#?}");
}
