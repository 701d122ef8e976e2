//! `blockprobe run -- PROG`: the probes are attached before the program runs, the program's
//! stdout is untouched (byte-identical with and without the agent), blockprobe exits with the
//! program's exit code, and the report lists what was still blocked when it exited.

use std::process::{Command, Stdio};

use blockprobe_tests::{Scratch, blockprobe_bin, ends_with, kv, prepare, read_report};

fn line_of(needle: &str) -> usize {
    blockprobe_tests::source_line("leaky", needle)
}

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "leaky") else {
        return;
    };
    // Both modes find the same leaks: precise sees them park, scan mode finds them in the
    // goroutine table.
    for mode in ["precise", "scan"] {
        run_in(&fixture, go_minor, variant, mode);
    }
}

fn run_in(fixture: &std::path::Path, go_minor: &str, variant: &str, mode: &str) {
    let scratch = Scratch::new(&format!("run-{go_minor}-{variant}-{mode}"));
    let report_path = scratch.path("report.json");

    let alone = Command::new(fixture).stdin(Stdio::null()).output().unwrap();
    let under = Command::new(blockprobe_bin())
        .args(["run", "--mode", mode, "--json"])
        .arg(&report_path)
        .arg("--")
        .arg(fixture)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&under.stderr);
    assert_eq!(alone.status.code(), Some(3));
    assert_eq!(under.status.code(), Some(3), "blockprobe run: {err}");

    // The program's stdout, byte for byte, with and without blockprobe.
    assert_eq!(alone.stdout, under.stdout);
    assert_eq!(String::from_utf8_lossy(&under.stdout), "sum=40425\nbye\n");
    // The leaked objects' addresses, which the program prints on stderr (blockprobe's report
    // text would follow them there, but --json sends it to a file).
    let stderr = String::from_utf8_lossy(&under.stderr).into_owned();
    let leaked = stderr
        .lines()
        .find(|l| l.starts_with("leaked "))
        .unwrap_or_else(|| panic!("leaked line in {stderr}"));
    let (chan, mutex) = (kv(leaked, "chan"), kv(leaked, "mutex"));
    let report = read_report(&report_path);
    assert_eq!(report["end_reason"], "target-exited");
    assert_eq!(report["mode"], mode);
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["events_lost"], 0);
    let blocked = report["blocked"].as_array().unwrap();
    let find = |obj: &str| {
        blocked
            .iter()
            .find(|b| b["object"] == obj)
            .unwrap_or_else(|| panic!("{obj} not reported: {report:#}"))
    };
    let receiver = find(&chan);
    assert_eq!(receiver["wait_reason"], "chan receive");
    let source = if mode == "precise" { "uprobe" } else { "scan" };
    assert_eq!(receiver["source"], source, "{receiver}");
    assert_eq!(receiver["blocked_before_attach"], false);
    assert!(
        ends_with(
            &receiver["created_by"]["location"],
            &format!("leaky/main.go:{}", line_of("<-orphan") - 1)
        ),
        "{receiver}"
    );
    assert!(
        ends_with(
            &receiver["blocked_at"]["location"],
            &format!("leaky/main.go:{}", line_of("<-orphan"))
        ),
        "{receiver}"
    );
    let locker = find(&mutex);
    assert!(
        ends_with(
            &locker["blocked_at"]["location"],
            &format!("leaky/main.go:{}", line_of("mu.Lock() // leaked"))
        ),
        "{locker}"
    );
    assert_eq!(locker["wait_reason"], "sync.Mutex.Lock");
    assert_eq!(locker["object_kind"], "mutex");
    assert!(
        ends_with(
            &locker["created_by"]["location"],
            &format!("leaky/main.go:{}", line_of("mu.Lock() // leaked") - 1)
        ),
        "{locker}"
    );
    // The 50 workers finished: none of them is reported.
    assert!(
        blocked.iter().all(|b| b["wait_reason"] != "chan send"),
        "{report:#}"
    );
}

blockprobe_tests::go_matrix!(run);
