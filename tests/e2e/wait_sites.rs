//! Precise mode's per-site wait histograms: the fixture `waitsites` parks goroutines a few
//! hundred times each at tagged lines (channel receive and send, select, Mutex, RWMutex read and
//! write locks, Cond, WaitGroup, sleep), every wait ending soon after it starts. The kernel
//! counts each finished wait under one return address read at a per-reason offset above the
//! parking function; the report must put each tagged line's waits at that line, with its wait
//! reason, for every supported Go version and build variant.

use std::process::Command;

use blockprobe_tests::{Scratch, blockprobe_bin, ends_with, prepare, read_report, source_line};
use serde_json::Value;

/// Rounds per site in the fixture (`rounds`).
const ROUNDS: u64 = 300;

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "waitsites") else {
        return;
    };
    let scratch = Scratch::new(&format!("waitsites-{go_minor}-{variant}"));
    let report_path = scratch.path("report.json");
    let out = Command::new(blockprobe_bin())
        .args(["run", "--mode", "precise", "--json"])
        .arg(&report_path)
        .arg("--")
        .arg(&fixture)
        .output()
        .expect("run blockprobe");
    assert!(
        out.status.success(),
        "blockprobe run: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    let report = read_report(&report_path);
    let hists = report["wait_histograms"]
        .as_array()
        .expect("wait_histograms");

    // WaitGroup.Wait has its own wait reason from Go 1.24 (src/runtime/runtime2.go,
    // waitReasonSyncWaitGroupWait); before, it is a plain semacquire.
    let minor: u32 = go_minor.trim_start_matches("1.").parse().unwrap();
    let wg_reason = if minor >= 24 {
        "sync.WaitGroup.Wait"
    } else {
        "semacquire"
    };
    let sites = [
        ("chanrecv", "chan receive"),
        ("chansend", "chan send"),
        ("select", "select"),
        ("mutex", "sync.Mutex.Lock"),
        ("rlock", "sync.RWMutex.RLock"),
        ("wlock", "sync.RWMutex.Lock"),
        ("cond", "sync.Cond.Wait"),
        ("waitgroup", wg_reason),
        ("sleep", "sleep"),
    ];
    for (tag, reason) in sites {
        let line = source_line("waitsites", &format!("// site:{tag}"));
        let at = format!("tests/fixtures/waitsites/main.go:{line}");
        let found: Vec<&Value> = hists
            .iter()
            .filter(|h| ends_with(&h["blocked_at"]["location"], &at))
            .collect();
        assert!(
            !found.is_empty(),
            "Go {go_minor} {variant}: no histogram at {at} ({tag}); histograms: {hists:#?}"
        );
        for h in &found {
            assert_eq!(h["wait_reason"], reason, "{tag} at {at}: {h}");
            assert!(
                h["blocked_at"]["function"]
                    .as_str()
                    .unwrap()
                    .starts_with("main.main.func"),
                "{h}"
            );
        }
        // Each round parks once; a round whose peer was already there does not park, so
        // allow a few (seen: 298-300 of 300).
        let count: u64 = found.iter().map(|h| h["count"].as_u64().unwrap()).sum();
        assert!(
            (ROUNDS * 9 / 10..=ROUNDS + 1).contains(&count),
            "Go {go_minor} {variant}: {count} waits at {at} ({tag})"
        );
    }
    // Every wait the fixture's own goroutines made has a site: a key read from the wrong frame
    // would show as a histogram without one.
    let unplaced: Vec<&Value> = hists
        .iter()
        .filter(|h| h["blocked_at"].is_null() && h["wait_reason"] != "(other sites)")
        .collect();
    assert!(
        unplaced.is_empty(),
        "Go {go_minor} {variant}: waits without a site: {unplaced:#?}"
    );
}

blockprobe_tests::go_matrix!(run);
