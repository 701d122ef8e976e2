//! `blockprobe dump --pid N`: every goroutine in Go's traceback style, read from the live
//! process's memory, without eBPF and without stopping or signalling it.

use std::process::{Command, Stdio};

use blockprobe_tests::{blockprobe_bin, prepare, source_line, start_ready};
use serde_json::Value;

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "demo") else {
        return;
    };
    let mut target = start_ready(&fixture);
    let pid = target.pid().to_string();
    let dump = |extra: &[&str]| {
        let out = Command::new(blockprobe_bin())
            .args(["dump", "--pid", &pid])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let gs: Vec<Value> = serde_json::from_str(&dump(&["--json"])).unwrap();
    let lock_line = format!(
        "tests/fixtures/demo/main.go:{}",
        source_line("demo", "to.mu.Lock()")
    );
    let transfers: Vec<&Value> = gs
        .iter()
        .filter(|g| {
            g["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["function"] == "main.transfer")
        })
        .collect();
    assert_eq!(transfers.len(), 2, "{gs:#?}");
    for g in &transfers {
        assert_eq!(g["state"], "sync.Mutex.Lock", "{g}");
        let f = g["stack"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["function"] == "main.transfer")
            .unwrap();
        assert!(
            format!("{}:{}", f["file"].as_str().unwrap(), f["line"]).ends_with(&lock_line),
            "{f}"
        );
        assert_eq!(g["created_by"]["function"], "main.main", "{g}");
    }
    // The leaked senders, in the handler's closure.
    let senders = gs.iter().filter(|g| g["state"] == "chan send").count();
    assert!(senders >= 5, "{gs:#?}");

    let text = dump(&[]);
    assert!(text.contains("[sync.Mutex.Lock"), "{text}");
    assert!(text.contains("main.transfer(...)\n\t"), "{text}");
    assert!(text.contains(&lock_line), "{text}");
    assert!(
        text.contains("created by main.main in goroutine 1"),
        "{text}"
    );

    // Not stopped, not killed.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        state != "T" && state != "t" && state != "Z",
        "state {state}"
    );
    assert!(target.child.try_wait().unwrap().is_none());
}

blockprobe_tests::go_matrix!(run);
