//! Fusion of an execution trace with the live probes, under real eBPF, on the `pprofserve`
//! fixture: a service with net/http/pprof on loopback whose first trace request starts a
//! worker and a producer; the producer unblocks the worker five times and returns, leaving it
//! waiting on a channel nobody else holds.
//! - `attach --trace-from URL` (Go ≥ 1.25): the report's finding for the worker has the
//!   channel's address from the probes and, from the trace, its creation site, its five
//!   unblocks by the producer, and a clock aligned by the trace's clock snapshots with a
//!   residual under 1 µs; the two views agree.
//! - `fuse --events --trace` offline (Go 1.24, no clock snapshots): the precise-mode event
//!   stream and the trace are aligned by matching transitions, and the fused finding is the same.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use blockprobe_tests::{
    Proc, Scratch, blockprobe_bin, ends_with, kv, prepare, read_report, source_line, start_ready,
};
use serde_json::Value;

#[path = "schema.rs"]
mod schema;
use schema::validate;

fn line(marker: &str) -> String {
    format!("main.go:{}", source_line("pprofserve", marker))
}

struct Pipeline {
    chan: String,
    worker: u64,
    producer: u64,
}

/// Runs `attach` with `--trace-from` against the fixture; the pipeline it started, and the
/// report.
fn attach_with_trace(fixture: &Path, scratch: &Scratch, extra: &[&str]) -> (Pipeline, Value) {
    let mut target = start_ready(fixture);
    let ready = target.stdout_seen.last().cloned().expect("the ready line");
    let url = format!("http://{}/debug/pprof/trace?seconds=2", kv(&ready, "addr"));
    let report = scratch.path("report.json");
    let mut agent = Proc::spawn(
        Command::new(blockprobe_bin())
            .args(["attach", "--pid", &target.pid().to_string()])
            .args([
                "--duration",
                "3500ms",
                "--threshold",
                "500ms",
                "--trace-from",
                &url,
            ])
            .args(extra)
            .arg("--json")
            .arg(&report),
    )
    .expect("start blockprobe");
    let pipe = target
        .expect_stdout(Duration::from_secs(15), |l| l.starts_with("pipeline "))
        .expect("the trace request started the pipeline");
    let status = agent
        .wait_timeout(Duration::from_secs(60))
        .expect("blockprobe ends");
    let stderr = agent.drain_stderr();
    assert!(status.success(), "blockprobe failed: {stderr:?}");
    let report = read_report(&report);
    validate(&report);
    (
        Pipeline {
            chan: kv(&pipe, "chan"),
            worker: kv(&pipe, "gworker").parse().unwrap(),
            producer: kv(&pipe, "gproducer").parse().unwrap(),
        },
        report,
    )
}

/// The worker's finding, with both views checked.
fn check_worker_finding(report: &Value, p: &Pipeline) -> Value {
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["goroutines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == p.worker)
        })
        .unwrap_or_else(|| {
            panic!(
                "no finding for the worker {}: {:#}",
                p.worker, report["findings"]
            )
        })
        .clone();
    assert_eq!(f["pattern"], "BP03", "{f:#}");
    let fused = &f["fused"];
    assert_eq!(fused["goid"], p.worker, "{f:#}");
    // From the probes: the channel's address.
    assert_eq!(fused["probe"]["object"], p.chan.as_str(), "{fused:#}");
    assert_eq!(f["object"], p.chan.as_str(), "{f:#}");
    // From the trace: where it was created, and who unblocked it, five times.
    let t = &fused["trace"];
    assert_eq!(t["state"], "waiting", "{t:#}");
    assert_eq!(t["block_reason"], "chan receive", "{t:#}");
    assert!(ends_with(&t["created_at"], &line("GO:worker")), "{t:#}");
    assert_eq!(t["unblock_count"], 5, "{t:#}");
    let unblocked = t["unblocked"].as_array().unwrap();
    assert_eq!(unblocked.len(), 5, "{t:#}");
    assert!(
        unblocked.iter().all(|u| u["by"] == p.producer),
        "unblocked by the producer {}: {t:#}",
        p.producer
    );
    // Ordered in time, 100 ms apart, and all before the block the report is about.
    let times: Vec<i64> = unblocked
        .iter()
        .map(|u| u["mono_ns"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] > 50_000_000),
        "{times:?}"
    );
    assert!(t["since_mono_ns"].as_i64().unwrap() > *times.last().unwrap());
    assert!(
        t["stack"]
            .as_array()
            .unwrap()
            .iter()
            .any(|fr| fr["line"].as_u64() == Some(source_line("pprofserve", "BLOCK:worker") as u64)),
        "{t:#}"
    );
    // Precise mode sees each park: no disagreement. Scan mode sees one long wait where the
    // worker ran between two scans; the fused view says so, and nothing else.
    let disagreements = fused["disagreements"].as_array().unwrap();
    if fused["probe"]["source"] == "uprobe" {
        assert!(disagreements.is_empty(), "{fused:#}");
    } else {
        assert!(
            disagreements.iter().all(|d| d.as_str().is_some_and(|d| d
                .starts_with("blocked since:")
                && d.contains("too short for the scans"))),
            "{fused:#}"
        );
    }
    f
}

#[test]
fn attach_fetches_and_fuses_a_trace_go1_27() {
    live("1.27");
}

#[test]
fn attach_fetches_and_fuses_a_trace_go1_25() {
    live("1.25");
}

fn live(go_minor: &str) {
    let Some(fixture) = prepare(go_minor, "default", "pprofserve") else {
        return;
    };
    let scratch = Scratch::new(&format!("fusion-{go_minor}"));
    let (p, report) = attach_with_trace(&fixture, &scratch, &[]);
    let tr = &report["trace"];
    assert!(tr["events"].as_u64().unwrap() > 0, "{tr:#}");
    let clock = &tr["clock"];
    assert_eq!(clock["method"], "clock-snapshot", "{clock:#}");
    let residual = clock["residual_ns"].as_u64().expect("a measured residual");
    assert!(residual < 1_000, "clock residual {residual} ns: {clock:#}");
    eprintln!("Go {go_minor}: clock {clock}");
    check_worker_finding(&report, &p);
}

/// Go 1.24 writes no clock snapshot: the precise-mode stream's transitions align the clocks,
/// live and offline (`blockprobe fuse`).
#[test]
fn fuse_aligns_by_transitions_go1_24() {
    let Some(fixture) = prepare("1.24", "default", "pprofserve") else {
        return;
    };
    let scratch = Scratch::new("fusion-1.24");
    let events = scratch.path("events.ndjson");
    let trace = scratch.path("trace.out");
    let (p, report) = attach_with_trace(
        &fixture,
        &scratch,
        &[
            "--mode",
            "precise",
            "--events",
            events.to_str().unwrap(),
            "--trace-out",
            trace.to_str().unwrap(),
        ],
    );
    let clock = &report["trace"]["clock"];
    assert_eq!(clock["method"], "transitions", "{clock:#}");
    check_worker_finding(&report, &p);

    let fused = scratch.path("fused.json");
    let out = Command::new(blockprobe_bin())
        .args(["fuse", "--threshold", "500ms", "--events"])
        .arg(&events)
        .arg("--trace")
        .arg(&trace)
        .arg("--report")
        .arg(&fused)
        .stdin(Stdio::null())
        .output()
        .expect("run blockprobe fuse");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline = read_report(&fused);
    validate(&offline);
    let clock = &offline["trace"]["clock"];
    assert_eq!(clock["method"], "transitions", "{clock:#}");
    assert!(clock["samples"].as_u64().unwrap() >= 5, "{clock:#}");
    // The probe fires in gopark/ready, microseconds before the runtime writes its event.
    let residual = clock["residual_ns"].as_u64().unwrap();
    let offset = clock["offset_ns"].as_i64().unwrap();
    eprintln!("Go 1.24 offline: clock {clock}");
    assert!(residual < 100_000, "{clock:#}");
    assert!(
        offset.abs() < 1_000_000,
        "same clock (CLOCK_MONOTONIC): {clock:#}"
    );
    check_worker_finding(&offline, &p);
}

/// A trace that cannot be fetched (nothing listens) leaves the probes' report whole, with a
/// warning; a URL that is not http:// is refused before anything is attached.
#[test]
fn an_unreachable_trace_endpoint_is_a_warning() {
    let Some(fixture) = prepare("1.27", "default", "pprofserve") else {
        return;
    };
    let scratch = Scratch::new("fusion-unreachable");
    let target = start_ready(&fixture);
    let report = scratch.path("report.json");
    let out = Command::new(blockprobe_bin())
        .args([
            "attach",
            "--pid",
            &target.pid().to_string(),
            "--duration",
            "1s",
        ])
        .args([
            "--trace-from",
            "http://127.0.0.1:1/debug/pprof/trace?seconds=1",
            "--json",
        ])
        .arg(&report)
        .stdin(Stdio::null())
        .output()
        .expect("run blockprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_report(&report);
    validate(&r);
    assert!(r.get("trace").is_none(), "{}", r["trace"]);
    assert!(
        r["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.starts_with("no execution trace fused"))),
        "{}",
        r["warnings"]
    );
    let out = Command::new(blockprobe_bin())
        .args(["attach", "--pid", &target.pid().to_string()])
        .args(["--trace-from", "https://example.com/trace"])
        .stdin(Stdio::null())
        .output()
        .expect("run blockprobe");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wants an http:// URL"), "{stderr}");
}
