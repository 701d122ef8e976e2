//! Goroutines that blocked *before* blockprobe attached are found by reading the runtime's
//! goroutine table (`runtime.allgs`) from the live process. The `demo` fixture deadlocks two
//! goroutines on two Mutexes (AB/BA) and leaks a goroutine per request on an unbuffered send,
//! all before it prints `ready`; the report must name each one with its wait reason, channel,
//! and the file:line of the `go` statement that created it.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use blockprobe_tests::{Proc, Scratch, attach_for, ends_with, kv, prepare};
use serde_json::Value;

fn demo_line(needle: &str) -> usize {
    blockprobe_tests::source_line("demo", needle)
}

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "demo") else {
        return;
    };
    let scratch = Scratch::new(&format!("scan-{go_minor}-{variant}"));
    let report_path = scratch.path("report.json");
    let mut target = Proc::spawn(&mut Command::new(&fixture)).expect("start demo");
    let accounts = target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("accounts "))
        .expect("demo prints its accounts");
    target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .expect("demo ready");
    let (a_mu, b_mu) = (kv(&accounts, "a.mu"), kv(&accounts, "b.mu"));
    let report = attach_for(target.pid(), "700ms", &report_path);
    assert_eq!(report["end_reason"], "duration");
    let blocked = report["blocked"].as_array().expect("blocked list");

    // The AB/BA deadlock: both transfers, created at their `go` statements, blocked on a Mutex.
    let src_suffix = "tests/fixtures/demo/main.go";
    // transfer(a, b) holds a and waits for b; transfer(b, a) the reverse.
    for (needle, start, waits_on) in [
        ("go transfer(a, b", "main.main.gowrap1", &b_mu),
        ("go transfer(b, a", "main.main.gowrap2", &a_mu),
    ] {
        let line = demo_line(needle);
        let g = blocked
            .iter()
            .find(|b| {
                b["created_by"]["location"]
                    .as_str()
                    .is_some_and(|l| l.ends_with(&format!("{src_suffix}:{line}")))
            })
            .unwrap_or_else(|| panic!("no goroutine created at demo line {line}: {report:#}"));
        assert_eq!(g["wait_reason"], "sync.Mutex.Lock", "{g}");
        assert_eq!(g["blocked_before_attach"], true, "{g}");
        assert_eq!(g["source"], "scan", "{g}");
        assert_eq!(g["created_by"]["function"], "main.main", "{g}");
        assert_eq!(g["created_by"]["parent_goid"], 1, "{g}");
        assert_eq!(g["start_function"], start, "{g}");
        // Blocked taking the second lock, found by a frame-pointer walk from g.sched.
        assert_eq!(g["blocked_at"]["function"], "main.transfer", "{g}");
        assert!(
            ends_with(
                &g["blocked_at"]["location"],
                &format!("{src_suffix}:{}", demo_line("to.mu.Lock()"))
            ),
            "{g}"
        );
        // The Mutex comes from the runtime's semaphore table, located through .symtab, or in
        // a stripped binary by decoding the runtime code that indexes it.
        assert_eq!(g["object_kind"], "mutex", "{g}");
        assert_eq!(g["object"], waits_on.as_str(), "{g}");
        assert!(g["blocked_ns"].as_u64().unwrap() >= 500_000_000, "{g}");
    }

    // The leak: the five workers of the requests handled before `ready`, each blocked sending
    // on its own channel (object = the hchan, also in wait_chans).
    let leak_line = demo_line("go func() {");
    let leaked: Vec<&Value> = blocked
        .iter()
        .filter(|b| b["blocked_before_attach"] == true && b["wait_reason"] == "chan send")
        .collect();
    assert!(
        leaked.len() >= 5,
        "expected >= 5 leaked senders: {report:#}"
    );
    let mut chans = HashSet::new();
    for g in &leaked {
        assert_eq!(g["object_kind"], "chan", "{g}");
        assert_eq!(g["wait_chans"][0], g["object"], "{g}");
        assert!(
            chans.insert(g["object"].as_str().unwrap().to_string()),
            "{g}"
        );
        assert_eq!(g["created_by"]["function"], "main.handle", "{g}");
        assert!(
            ends_with(
                &g["created_by"]["location"],
                &format!("{src_suffix}:{leak_line}")
            ),
            "{g}"
        );
        assert_eq!(g["start_function"], "main.handle.func1", "{g}");
        assert!(
            ends_with(
                &g["blocked_at"]["location"],
                &format!("{src_suffix}:{}", demo_line("result <- id * 2"))
            ),
            "{g}"
        );
    }
    // Goroutines blocked at one site share one stack entry, symbolized once.
    let idx = leaked[0]["stack"]
        .as_u64()
        .expect("a stack for the leaked senders");
    assert!(leaked.iter().all(|g| g["stack"] == idx), "{report:#}");
    let frames = report["stacks"][idx as usize].as_array().unwrap();
    assert_eq!(frames[0]["function"], "runtime.gopark", "{frames:?}");
    assert!(
        frames.iter().any(|f| f["function"] == "main.handle.func1"),
        "{frames:?}"
    );

    // The runtime's own goroutines (GC workers, finalizer) are counted, not listed.
    assert!(
        report["runtime_goroutines_hidden"].as_u64().unwrap() >= 2,
        "{report:#}"
    );
    assert!(
        blocked.iter().all(|b| !b["start_function"]
            .as_str()
            .unwrap_or("")
            .starts_with("runtime.")
            || b["start_function"] == "runtime.main"),
        "{report:#}"
    );
    assert!(target.child.try_wait().unwrap().is_none(), "demo died");
}

blockprobe_tests::go_matrix!(run);
