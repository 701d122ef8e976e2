//! The first end-to-end probe: uprobes on `runtime.gopark` and `runtime.ready` of a live Go
//! process (Go's register ABI: g in R14, arguments in RAX, RBX, RCX), for every supported Go
//! version and for default, PIE and stripped builds. The fixture `parkers` blocks goroutines in
//! known ways after blockprobe attached, and prints their goids and channel addresses; the test
//! checks blockprobe's report and event stream against that account.

use std::collections::HashMap;
use std::time::Duration;

use blockprobe_tests::{Scratch, attach_agent, ends_with, prepare, read_report, start_ready};
use serde_json::Value;

struct Blocked {
    what: String,
    goid: u64,
    obj: String,
    /// For select3: every case's channel.
    chans: Vec<String>,
}

fn parse_blocked(line: &str) -> Option<Blocked> {
    // "blocked <what> goid=<n> obj=<0x...>"
    let mut it = line.split_whitespace();
    (it.next()? == "blocked").then_some(())?;
    let what = it.next()?.to_string();
    let goid = it.next()?.strip_prefix("goid=")?.parse().ok()?;
    let obj = it.next()?.strip_prefix("obj=")?.to_string();
    let chans = it
        .next()
        .and_then(|c| c.strip_prefix("chans="))
        .map(|c| c.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    Some(Blocked {
        what,
        goid,
        obj,
        chans,
    })
}

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "parkers") else {
        return;
    };
    let scratch = Scratch::new(&format!("park-{go_minor}-{variant}"));
    let events_path = scratch.path("events.ndjson");
    let report_path = scratch.path("report.json");
    let scan_report_path = scratch.path("scan-report.json");

    let mut target = start_ready(&fixture);
    let events = events_path.to_str().unwrap();
    let mut agent = attach_agent(
        target.pid(),
        &report_path,
        &[
            "--mode",
            "precise",
            "--threshold",
            "50ms",
            "--events",
            events,
        ],
    );
    // A second agent, in scan mode, watches the same process at the same time: it must find
    // the same blocked goroutines with the same facts, without a single uprobe.
    let mut scan_agent = attach_agent(
        target.pid(),
        &scan_report_path,
        &["--mode", "scan", "--threshold", "50ms"],
    );

    target.send_line("go").expect("tell fixture to block");
    target
        .expect_stdout(Duration::from_secs(10), |l| l == "done")
        .expect("fixture blocked its goroutines");
    let blocked: Vec<Blocked> = target
        .stdout_seen
        .iter()
        .filter_map(|l| parse_blocked(l))
        .collect();
    assert_eq!(blocked.len(), 9, "fixture output: {:?}", target.stdout_seen);

    let spinner: u64 = target
        .stdout_seen
        .iter()
        .find_map(|l| l.strip_prefix("spinning goid="))
        .expect("spinner line")
        .parse()
        .unwrap();

    // Scan mode sees a wait once two scans in a row found it (100 ms apart by default); main
    // has just gone to sleep after printing "done". A second leaves room for a loaded machine
    // (seen: one scan in 400 ms with the other core busy).
    std::thread::sleep(Duration::from_millis(1000));
    // SIGINT: blockprobe detaches and writes its report.
    agent.signal(libc::SIGINT);
    scan_agent.signal(libc::SIGINT);
    let status = scan_agent
        .wait_timeout(Duration::from_secs(10))
        .expect("scan-mode blockprobe exits after SIGINT");
    assert!(status.success(), "{:?}", scan_agent.drain_stderr());
    let status = agent
        .wait_timeout(Duration::from_secs(10))
        .expect("blockprobe exits after SIGINT");
    assert!(
        status.success(),
        "blockprobe failed: {:?}",
        agent.drain_stderr()
    );

    let report = read_report(&report_path);
    assert_eq!(report["end_reason"], "signal");
    assert_eq!(report["events_lost"], 0);
    assert_eq!(report["target"]["pie"], variant == "pie");
    assert_eq!(report["target"]["stripped"], variant == "stripped");
    let expected_source = if variant == "stripped" {
        "version-table"
    } else {
        "dwarf"
    };
    assert_eq!(report["target"]["layout_source"], expected_source);
    assert!(
        report["target"]["go_version"]
            .as_str()
            .unwrap()
            .starts_with(&format!("go{go_minor}.")),
        "{}",
        report["target"]
    );
    // Every probe sits after its function's stack-check prologue (never on the ABI0 wrapper or
    // the memory-reading CMP, which the kernel would single-step).
    let probes = report["probes"].as_array().unwrap();
    for sym in [
        "runtime.gopark",
        "runtime.ready",
        "runtime.newproc1",
        "runtime.goexit1",
    ] {
        let p = probes
            .iter()
            .find(|p| p["symbol"] == sym)
            .unwrap_or_else(|| panic!("{sym} not probed: {probes:?}"));
        assert!(p["offset"].as_u64().unwrap() >= 6, "{p}");
    }
    assert!(
        probes.len() >= 9,
        "every sync probe is linked in parkers: {probes:?}"
    );
    let by_goid: HashMap<u64, &Value> = report["blocked"]
        .as_array()
        .expect("blocked list")
        .iter()
        .map(|b| (b["goid"].as_u64().unwrap(), b))
        .collect();

    for b in &blocked {
        let got = by_goid.get(&b.goid).unwrap_or_else(|| {
            panic!(
                "goroutine {} ({}) not reported blocked; report: {report:#}",
                b.goid, b.what
            )
        });
        let minor: u32 = go_minor.trim_start_matches("1.").parse().unwrap();
        // WaitGroup.Wait parks as "semacquire" before Go 1.24 (src/sync/waitgroup.go calls
        // runtime_Semacquire there, runtime_SemacquireWaitGroup from 1.24).
        let wg_reason = if minor >= 24 {
            "sync.WaitGroup.Wait"
        } else {
            "semacquire"
        };
        let (reason, kind, parked_in) = match b.what.as_str() {
            "chan-receive" => ("chan receive", "chan", "runtime.chanrecv"),
            "chan-send" => ("chan send", "chan", "runtime.chansend"),
            "select" | "select3" => ("select", "select", "runtime.selectgo"),
            "mutex" => ("sync.Mutex.Lock", "mutex", "runtime.semacquire1"),
            "rwmutex-lock" => ("sync.RWMutex.Lock", "rwmutex", "runtime.semacquire1"),
            "rwmutex-rlock" => ("sync.RWMutex.RLock", "rwmutex", "runtime.semacquire1"),
            "waitgroup" => (wg_reason, "waitgroup", "runtime.semacquire1"),
            "cond" => ("sync.Cond.Wait", "cond", "sync.runtime_notifyListWait"),
            other => panic!("unknown fixture block {other}"),
        };
        assert_eq!(got["wait_reason"], reason, "goroutine {}: {got}", b.goid);
        assert_eq!(got["object_kind"], kind, "goroutine {}: {got}", b.goid);
        assert_eq!(got["parked_in"], parked_in, "goroutine {}: {got}", b.goid);
        // The fixture printed the object with %p: the hchan, Mutex, RWMutex, WaitGroup or Cond.
        // A select's object is one of its channels (the first in selectgo's lock order).
        if kind == "select" {
            let obj = got["object"].as_str().unwrap().to_string();
            assert!(b.chans.contains(&obj), "goroutine {}: {got}", b.goid);
        } else {
            assert_eq!(got["object"], b.obj.as_str(), "goroutine {}: {got}", b.goid);
        }
        if !b.chans.is_empty() {
            // A select's channels, in any order (selectgo sorts its cases by lock address).
            let mut want = b.chans.clone();
            want.sort();
            let mut have: Vec<String> = got["wait_chans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            have.sort();
            assert_eq!(have, want, "goroutine {}: {got}", b.goid);
        }
        // Where it blocked: the fixture's line tagged `// block:<what>`, in its closure.
        let tag = format!("// block:{}", b.what);
        let line = blockprobe_tests::source_line("parkers", &tag);
        let site = &got["blocked_at"];
        assert!(
            ends_with(
                &site["location"],
                &format!("tests/fixtures/parkers/main.go:{line}")
            ),
            "goroutine {} ({}): {got}",
            b.goid,
            b.what
        );
        assert!(
            site["function"]
                .as_str()
                .unwrap()
                .starts_with("main.main.func"),
            "{got}"
        );
        // Creation site: every fixture goroutine is a closure created by main.main.
        assert_eq!(got["created_by"]["function"], "main.main", "{got}");
        assert_eq!(got["created_by"]["parent_goid"], 1, "{got}");
        assert!(
            got["start_function"]
                .as_str()
                .unwrap()
                .starts_with("main.main.func"),
            "{got}"
        );
        let blocked_ns = got["blocked_ns"].as_u64().unwrap();
        assert!(
            blocked_ns > 100_000_000 && blocked_ns < 60_000_000_000,
            "goroutine {} blocked_ns {blocked_ns}",
            b.goid
        );
    }

    // The spinning goroutine is listed as running (or, if preempted at that instant, runnable),
    // and while running, on one of the target's own threads.
    let running = report["running"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goid"] == spinner)
        .unwrap_or_else(|| panic!("spinner {spinner} not in running: {report:#}"));
    if running["status"] == "running" {
        let tid = running["tid"]
            .as_u64()
            .expect("a running goroutine's thread");
        let task = format!("/proc/{}/task/{tid}", target.pid());
        assert!(std::path::Path::new(&task).exists(), "{running}");
    } else {
        assert_eq!(running["status"], "runnable", "{running}");
    }

    // The NDJSON stream has each fixture goroutine's park with the same facts.
    let events = std::fs::read_to_string(&events_path).expect("events written");
    let parks: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("NDJSON line"))
        .filter(|e| e["event"] == "park")
        .collect();
    for b in &blocked {
        assert!(
            parks
                .iter()
                .any(|e| e["goid"] == b.goid && e["source"] == "uprobe"),
            "no park event for goroutine {}",
            b.goid
        );
    }
    same_answers_in_scan_mode(&report, &read_report(&scan_report_path), &blocked);

    // The target is unharmed: still running after detach.
    assert!(target.child.try_wait().unwrap().is_none(), "target died");
}

blockprobe_tests::go_matrix!(run);

/// Scan mode finds what precise mode found: the same goroutines, each with the same wait
/// reason, object, channels, creation site and blocking site.
fn same_answers_in_scan_mode(precise: &Value, scan: &Value, fixture: &[Blocked]) {
    assert_eq!(scan["mode"], "scan");
    // No uprobe on a per-operation path: only the makechan probe, which scan mode keeps only
    // within its hit-rate budget (crate::chansites).
    assert!(
        scan["probes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["symbol"] == "runtime.makechan"),
        "scan mode attached uprobes: {}",
        scan["probes"]
    );
    assert!(
        scan["scan"]["scans"].as_u64().unwrap() >= 2,
        "{}",
        scan["scan"]
    );
    let facts = |r: &Value| -> HashMap<u64, Value> {
        r["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let mut chans: Vec<&str> = b["wait_chans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap())
                    .collect();
                chans.sort();
                let key = serde_json::json!({
                    "wait_reason": b["wait_reason"], "object_kind": b["object_kind"],
                    "object": b["object"], "wait_chans": chans,
                    "created_by": b["created_by"], "start_function": b["start_function"],
                    "blocked_at": b["blocked_at"],
                });
                (b["goid"].as_u64().unwrap(), key)
            })
            .collect()
    };
    let (p, s) = (facts(precise), facts(scan));
    for b in fixture {
        assert_eq!(
            s.get(&b.goid),
            p.get(&b.goid),
            "goroutine {} ({}): scan vs precise",
            b.goid,
            b.what
        );
        let g = scan["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["goid"] == b.goid)
            .unwrap();
        assert_eq!(g["source"], "scan", "{g}");
    }
    let mut pk: Vec<u64> = p.keys().copied().collect();
    let mut sk: Vec<u64> = s.keys().copied().collect();
    pk.sort();
    sk.sort();
    assert_eq!(sk, pk, "the same goroutines blocked in both modes");
}
