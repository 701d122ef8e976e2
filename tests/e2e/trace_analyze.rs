//! `blockprobe analyze` on execution traces written by real Go programs: the `patterns`
//! fixture records a trace of one case (`-trace FILE`, from before the case starts until its
//! goroutines are stuck), and the analysis must find the blocked goroutines with the right
//! pattern, goroutine id, wait reason, blocking line and `go` statement line, from the trace
//! alone. Also: the negative cases give no finding, leak growth shows per creation site, a
//! truncated trace still yields its complete generations, a pre-1.22 trace is refused with a
//! clear error, and every report validates against docs/report.schema.json.
//! No eBPF: these run anywhere the fixtures are built.

use std::path::Path;
use std::process::{Command, Stdio};

use blockprobe_tests::{
    Scratch, blockprobe_bin, ends_with, kv, open_findings, prepare_fixture, read_report,
    source_line,
};
use serde_json::Value;

#[path = "schema.rs"]
mod schema;
use schema::validate;

fn line(marker: &str) -> String {
    format!("main.go:{}", source_line("patterns", marker))
}

/// Runs the fixture's case with a trace; the ready line.
fn record(fixture: &Path, case: &str, ok: bool, trace: &Path, extra: &[&str]) -> String {
    let out = Command::new(fixture)
        .args(["-case", case, &format!("-ok={ok}"), "-hold", "0s", "-trace"])
        .arg(trace)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run the fixture");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find(|l| l.starts_with("ready pid="))
        .unwrap_or_else(|| panic!("{case}: no ready line in {stdout}"))
        .to_string()
}

struct Analyzed {
    code: Option<i32>,
    stderr: String,
    report: Option<Value>,
}

fn analyze(trace: &Path, report: &Path, extra: &[&str]) -> Analyzed {
    let _ = std::fs::remove_file(report);
    let out = Command::new(blockprobe_bin())
        .args(["analyze", "--threshold", "100ms", "--report"])
        .arg(report)
        .args(extra)
        .arg(trace)
        .stdin(Stdio::null())
        .output()
        .expect("run blockprobe analyze");
    let report = report.exists().then(|| read_report(report));
    if let Some(r) = &report {
        validate(r);
    }
    Analyzed {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

/// (case, pattern, ready key of the goroutine, blocking marker, go marker, wait reason)
const CASES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "orphanrecv",
        "BP03",
        "greceiver",
        "BLOCK:orphanrecv",
        "GO:orphanrecv",
        "chan receive",
    ),
    (
        "unbuffered",
        "BP02",
        "gsender",
        "BLOCK:unbuffered",
        "GO:unbuffered",
        "chan send",
    ),
    (
        "nilsend",
        "BP04",
        "gsender",
        "BLOCK:nilsend",
        "GO:nilsend",
        "chan send (nil chan)",
    ),
    (
        "nilrecv",
        "BP05",
        "greceiver",
        "BLOCK:nilrecv",
        "GO:nilrecv",
        "chan receive (nil chan)",
    ),
    (
        "selectnone",
        "BP06",
        "gwaiter",
        "BLOCK:selectnone",
        "GO:selectnone",
        "select (no cases)",
    ),
    (
        "selectall",
        "BP07",
        "gwaiter",
        "BLOCK:selectall",
        "GO:selectall",
        "select",
    ),
    (
        "waitgroup",
        "BP13",
        "gwaiter",
        "BLOCK:waitgroup",
        "GO:waitgroup",
        "sync.WaitGroup.Wait",
    ),
    (
        "cond",
        "BP14",
        "gwaiter",
        "BLOCK:cond",
        "GO:cond",
        "sync.Cond.Wait",
    ),
];

fn cases_for(go_minor: &str, only: &[&str]) {
    let Some(fixture) = prepare_fixture(go_minor, "default", "patterns") else {
        return;
    };
    let scratch = Scratch::new(&format!("analyze-{go_minor}"));
    for &(case, pattern, key, block, go, reason) in CASES {
        if !only.is_empty() && !only.contains(&case) {
            continue;
        }
        let trace = scratch.path(&format!("{case}.trace"));
        let ready = record(&fixture, case, false, &trace, &[]);
        let goid: u64 = kv(&ready, key).parse().unwrap();
        let a = analyze(&trace, &scratch.path(&format!("{case}.json")), &[]);
        assert_eq!(a.code, Some(0), "{case}: {}", a.stderr);
        let report = a.report.expect("report written");
        assert_eq!(report["mode"], "trace");
        assert!(
            report["trace"]["format"]
                .as_str()
                .is_some_and(|f| f.starts_with("go 1.")),
            "{case}: {}",
            report["trace"]
        );
        let findings = open_findings(&report);
        let f = findings
            .iter()
            .find(|f| f["pattern"] == pattern)
            .unwrap_or_else(|| {
                panic!("Go {go_minor} {case}: no {pattern} finding in {findings:#?}")
            });
        let goids: Vec<u64> = f["goroutines"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(goids, vec![goid], "Go {go_minor} {case}: {f:#}");
        assert_eq!(f["wait_reason"], reason, "Go {go_minor} {case}: {f:#}");
        assert!(
            ends_with(&f["blocked_at"]["location"], &line(block)),
            "Go {go_minor} {case}: blocked_at {} (want {})",
            f["blocked_at"],
            line(block)
        );
        assert!(
            ends_with(&f["created_by"]["location"], &line(go)),
            "Go {go_minor} {case}: created_by {} (want {})",
            f["created_by"],
            line(go)
        );
        // Blocked from the settle (400 ms) to the trace's end.
        let ns = f["blocked_ns"].as_u64().unwrap();
        assert!(
            (200_000_000..5_000_000_000).contains(&ns),
            "{case}: blocked_ns {ns}"
        );
        let g = report["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["goid"] == goid)
            .expect("the goroutine among the blocked");
        assert_eq!(g["source"], "trace");
        let stack = &report["stacks"][g["stack"].as_u64().unwrap() as usize];
        assert!(
            stack
                .as_array()
                .unwrap()
                .iter()
                .any(|fr| fr["line"].as_u64() == Some(source_line("patterns", block) as u64)),
            "{case}: the blocking line is in the stack: {stack:#}"
        );
        // The report says what a trace cannot tell.
        assert!(
            report["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains("no channel, mutex"))),
            "{case}: {}",
            report["warnings"]
        );
        // Negative: the same work done right.
        let ok_trace = scratch.path(&format!("{case}-ok.trace"));
        record(&fixture, case, true, &ok_trace, &[]);
        let a = analyze(
            &ok_trace,
            &scratch.path(&format!("{case}-ok.json")),
            &["--fail-on", "all"],
        );
        let report = a.report.expect("report written");
        assert_eq!(
            open_findings(&report).len(),
            0,
            "Go {go_minor} {case} -ok: {:#}",
            report["findings"]
        );
        assert_eq!(a.code, Some(0), "{case} -ok: {}", a.stderr);
    }
}

#[test]
fn go1_27_patterns_from_a_trace() {
    cases_for("1.27", &[]);
}

#[test]
fn go1_22_patterns_from_a_trace() {
    cases_for("1.22", &["orphanrecv", "nilsend", "nilrecv", "selectnone"]);
}

#[test]
fn go1_24_patterns_from_a_trace() {
    cases_for("1.24", &["orphanrecv", "nilrecv"]);
}

/// Goroutines leaked by one `go` statement, one every 100 ms: BP16 names the site.
#[test]
fn leak_growth_from_a_trace() {
    let Some(fixture) = prepare_fixture("1.27", "default", "patterns") else {
        return;
    };
    let scratch = Scratch::new("analyze-growth");
    let trace = scratch.path("growth.trace");
    record(
        &fixture,
        "leakgrowth",
        false,
        &trace,
        &["-trace-for", "1500ms"],
    );
    let a = analyze(&trace, &scratch.path("growth.json"), &["--fail-on", "BP16"]);
    assert_eq!(a.code, Some(3), "{}", a.stderr);
    let report = a.report.unwrap();
    let f = open_findings(&report)
        .into_iter()
        .find(|f| f["pattern"] == "BP16")
        .unwrap_or_else(|| panic!("no BP16: {:#}", report["findings"]));
    assert!(
        ends_with(&f["created_by"]["location"], &line("GO:leakgrowth")),
        "{f:#}"
    );
    assert!(f["count"].as_u64().unwrap() >= 8, "{f:#}");
}

/// A trace cut short: the complete generations are analyzed and the report says what was lost;
/// a trace from before Go 1.22 and garbage are refused with a clear error.
#[test]
fn truncated_and_unsupported_traces() {
    let Some(fixture) = prepare_fixture("1.27", "default", "patterns") else {
        return;
    };
    let scratch = Scratch::new("analyze-bad");
    let trace = scratch.path("full.trace");
    record(
        &fixture,
        "orphanrecv",
        false,
        &trace,
        &["-trace-for", "2500ms"],
    );
    let bytes = std::fs::read(&trace).unwrap();
    for cut in [bytes.len() * 9 / 10, bytes.len() / 2, 40] {
        let cut_path = scratch.path(&format!("cut-{cut}.trace"));
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let a = analyze(&cut_path, &scratch.path(&format!("cut-{cut}.json")), &[]);
        assert_eq!(a.code, Some(0), "cut at {cut}: {}", a.stderr);
        assert!(a.stderr.contains("truncated"), "cut at {cut}: {}", a.stderr);
        let report = a.report.unwrap();
        assert!(
            report["trace"]["truncated"].as_str().is_some(),
            "{}",
            report["trace"]
        );
    }
    let mut old = bytes.clone();
    old[..16].copy_from_slice(b"go 1.21 trace\0\0\0");
    let old_path = scratch.path("old.trace");
    std::fs::write(&old_path, &old).unwrap();
    let a = analyze(&old_path, &scratch.path("old.json"), &[]);
    assert_eq!(a.code, Some(1));
    assert!(
        a.stderr.contains("unsupported trace version") && a.stderr.contains("Go ≥ 1.22"),
        "{}",
        a.stderr
    );
    let junk = scratch.path("junk.trace");
    std::fs::write(&junk, b"\x7fELF this is not a trace").unwrap();
    let a = analyze(&junk, &scratch.path("junk.json"), &[]);
    assert_eq!(a.code, Some(1), "{}", a.stderr);
    assert!(
        a.stderr.contains("not a Go execution trace"),
        "{}",
        a.stderr
    );
    assert!(a.report.is_none());
}
