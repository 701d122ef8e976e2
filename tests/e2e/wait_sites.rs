//! Precise mode's per-site wait histograms: the fixture `waitsites` parks goroutines a few
//! hundred times each at tagged lines (channel receive and send, select, Mutex, RWMutex read and
//! write locks, Cond, WaitGroup, sleep), every wait ending soon after it starts. The kernel
//! counts each finished wait under one return address read at a per-reason offset above the
//! parking function; the report must put each tagged line's waits at that line, with its wait
//! reason, for every supported Go version and build variant.
//!
//! With `--exact-sites` every wait is counted at its site, so each line's count is the
//! fixture's. By default a CPU's parks beyond 64 a millisecond have their site read one time in
//! 16 (weighted), and this fixture parks faster than that at times: the sites are still every
//! tagged line's and only those, and a histogram that took samples says so (`sampled`).

use std::process::Command;

use blockprobe_tests::{Scratch, blockprobe_bin, ends_with, prepare, read_report, source_line};
use serde_json::Value;

/// Rounds per site in the fixture (`rounds`).
const ROUNDS: u64 = 300;
/// Round trips of the fixture's final ping-pong (`burstRounds`).
const BURST_ROUNDS: u64 = 20_000;

fn run(go_minor: &str, variant: &str) {
    check(go_minor, variant, true);
}

/// The default, sampled beyond the burst: one build.
#[test]
fn sampled_sites_are_still_the_tagged_lines() {
    check("1.27", "default", false);
}

fn check(go_minor: &str, variant: &str, exact: bool) {
    let Some(fixture) = prepare(go_minor, variant, "waitsites") else {
        return;
    };
    let scratch = Scratch::new(&format!("waitsites-{go_minor}-{variant}-{exact}"));
    let report_path = scratch.path("report.json");
    let mut cmd = Command::new(blockprobe_bin());
    cmd.args(["run", "--mode", "precise"]);
    if exact {
        cmd.arg("--exact-sites");
    }
    let out = cmd
        .arg("--json")
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
    let mut total_sampled = 0;
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
        let count: u64 = found.iter().map(|h| h["count"].as_u64().unwrap()).sum();
        let sampled: u64 = found.iter().map(|h| h["sampled"].as_u64().unwrap()).sum();
        if exact {
            // Each round parks once; a round whose peer was already there does not park, so
            // allow a few (seen: 298-300 of 300).
            assert_eq!(sampled, 0, "{tag} at {at}: {found:?}");
            assert!(
                (ROUNDS * 9 / 10..=ROUNDS + 1).contains(&count),
                "Go {go_minor} {variant}: {count} waits at {at} ({tag})"
            );
        } else {
            // A sampled wait counts 16 times: the count is at least what was sampled.
            assert!(count >= sampled, "{tag} at {at}: {found:?}");
        }
        total_sampled += sampled;
    }
    // The final ping-pong: each hand-off parks exactly once (whoever comes first), so its four
    // lines hold two parks a round trip between them, hundreds of them a millisecond.
    let (mut count, mut sampled) = (0, 0);
    for (tag, reason) in [
        ("range", "chan receive"),
        ("pongsend", "chan send"),
        ("pingsend", "chan send"),
        ("pongrecv", "chan receive"),
    ] {
        let line = source_line("waitsites", &format!("// burst:{tag}"));
        let at = format!("tests/fixtures/waitsites/main.go:{line}");
        for h in hists
            .iter()
            .filter(|h| ends_with(&h["blocked_at"]["location"], &at))
        {
            assert_eq!(h["wait_reason"], reason, "{tag} at {at}: {h}");
            let (c, s) = (h["count"].as_u64().unwrap(), h["sampled"].as_u64().unwrap());
            // A sampled wait counts 16 times.
            assert!(c >= 16 * s, "{tag} at {at}: {h}");
            count += c;
            sampled += s;
        }
    }
    if exact {
        assert_eq!(sampled, 0);
        assert!(
            (2 * BURST_ROUNDS - 2..=2 * BURST_ROUNDS + 2).contains(&count),
            "Go {go_minor} {variant}: {count} parks in the ping-pong"
        );
    } else {
        // Beyond the burst of exactly read sites: sampled.
        assert!(sampled > 0, "no sampled waits in the ping-pong: {hists:#?}");
        total_sampled += sampled;
    }
    assert!(exact || total_sampled > 0);

    // Each wait reason's totals count every wait, whatever the sampling.
    let totals = report["wait_totals"].as_array().expect("wait_totals");
    let total = |reason: &str| -> u64 {
        totals
            .iter()
            .filter(|t| t["wait_reason"] == reason)
            .map(|t| t["count"].as_u64().unwrap())
            .sum()
    };
    let all: u64 = totals.iter().map(|t| t["count"].as_u64().unwrap()).sum();
    let sites: u64 = hists.iter().map(|h| h["count"].as_u64().unwrap()).sum();
    if exact {
        assert_eq!(all, sites, "totals {totals:#?} vs histograms {hists:#?}");
    }
    // The ping-pong's hand-offs alone are two parks a round trip, on channels.
    let chan = total("chan receive") + total("chan send");
    assert!(
        chan >= 2 * BURST_ROUNDS - 2,
        "Go {go_minor} {variant}: {chan} channel waits in {totals:#?}"
    );
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
