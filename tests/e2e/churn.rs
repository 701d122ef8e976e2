//! Scan mode under churn: the `churn` fixture keeps 100 goroutines blocked while it creates and
//! finishes 1,000,000 short-lived ones (each parking briefly on a Mutex or a channel), so g
//! records are rewritten and reused under the scanner all the time. blockprobe, scanning every
//! 10 ms, must report exactly the 100 (no false report, none missed), and neither its report
//! nor its event stream may carry a torn or reused g record.

use std::collections::HashMap;
use std::time::Duration;

use blockprobe_tests::{Scratch, attach_agent, kv, prepare, read_report, start_ready};
use serde_json::Value;

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "churn") else {
        return;
    };
    let scratch = Scratch::new(&format!("churn-{go_minor}-{variant}"));
    let report_path = scratch.path("report.json");
    let events_path = scratch.path("events.ndjson");
    let mut target = start_ready(&fixture);
    // goid → (kind, object) as the fixture printed them.
    let blocked: HashMap<u64, (String, String)> = target
        .stdout_seen
        .iter()
        .filter(|l| l.starts_with("blocked "))
        .map(|l| {
            let kind = l.split_whitespace().nth(1).unwrap().to_string();
            (kv(l, "goid").parse().unwrap(), (kind, kv(l, "obj")))
        })
        .collect();
    assert_eq!(blocked.len(), 100, "{:?}", target.stdout_seen);

    let mut agent = attach_agent(
        target.pid(),
        &report_path,
        &[
            "--scan-interval",
            "10ms",
            "--threshold",
            "0s",
            "--events",
            events_path.to_str().unwrap(),
        ],
    );
    target.send_line("go").unwrap();
    let churned = target
        .expect_stdout(Duration::from_secs(120), |l| l.starts_with("churned "))
        .expect("the fixture finishes its churn");
    assert_eq!(kv(&churned, "n"), "1000000");
    let max_goid: u64 = kv(&churned, "maxgoid").parse().unwrap();
    // Let a few more scans see the quiet state, then end the session.
    std::thread::sleep(Duration::from_millis(300));
    agent.signal(libc::SIGINT);
    let status = agent
        .wait_timeout(Duration::from_secs(20))
        .expect("blockprobe exits after SIGINT");
    assert!(status.success(), "{:?}", agent.drain_stderr());

    let report = read_report(&report_path);
    assert_eq!(report["mode"], "scan");
    let scans = report["scan"]["scans"].as_u64().unwrap();
    assert!(
        scans >= 20,
        "too few scans to mean anything: {}",
        report["scan"]
    );

    // Exactly the 100, each with the fixture's facts.
    let reported = report["blocked"].as_array().unwrap();
    let mut found = 0;
    for b in reported {
        let goid = b["goid"].as_u64().unwrap();
        let (kind, obj) = blocked
            .get(&goid)
            .unwrap_or_else(|| panic!("false report: {b}"));
        let (reason, object_kind) = match kind.as_str() {
            "chan-receive" => ("chan receive", "chan"),
            "mutex" => ("sync.Mutex.Lock", "mutex"),
            "select" => ("select", "select"),
            other => panic!("fixture kind {other}"),
        };
        assert_eq!(b["wait_reason"], reason, "{b}");
        assert_eq!(b["object_kind"], object_kind, "{b}");
        if kind == "select" {
            let chans: Vec<&str> = b["wait_chans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert!(chans.contains(&obj.as_str()), "{b}");
        } else {
            assert_eq!(&b["object"], obj.as_str(), "{b}");
        }
        assert_eq!(b["created_by"]["function"], "main.main", "{b}");
        assert_eq!(b["source"], "scan", "{b}");
        found += 1;
    }
    assert_eq!(found, 100, "all 100 found: {report:#}");

    // The event stream: every goroutine a scan called blocked is a real one (goid within what
    // the program created) with a wait reason the runtime has, and a creation site.
    let events = std::fs::read_to_string(&events_path).unwrap();
    let mut parks = 0;
    for line in events.lines() {
        let e: Value = serde_json::from_str(line).expect("NDJSON line");
        if e["event"] != "park" {
            continue;
        }
        parks += 1;
        let goid = e["goid"].as_u64().unwrap();
        assert!(goid >= 1 && goid <= max_goid, "garbage goid: {e}");
        let reason = e["wait_reason"].as_str().unwrap();
        assert!(
            !reason.is_empty() && !reason.starts_with("waitReason("),
            "garbage wait reason: {e}"
        );
        if goid != 1 {
            assert!(e["created_at"].is_string(), "no creation site: {e}");
        }
    }
    assert!(parks >= 100, "{parks} park events");
    assert!(target.child.try_wait().unwrap().is_none(), "target died");
}

blockprobe_tests::go_matrix!(run);
