//! The blocking-pattern detector (docs/patterns.md) under real eBPF, on the `patterns` fixture:
//! - every detected pattern's positive case, under `blockprobe run --fail-on all`, exits 3 and
//!   is reported with the right pattern, goroutine ids, object address, blocking line and `go`
//!   statement line (the fixture prints ids and `%p`; the lines are found by their markers);
//! - every negative case (`-ok`: the same work done correctly) exits 0 with no finding;
//! - with `attach` (reference search on the live target): a lock held across a channel send
//!   (BP15) and a lock-order inversion (BP11) are found as cycles with their chain, and a healthy
//!   idling program (worker pool, ticker, context waiter, HTTP server with a keep-alive client)
//!   gives no finding;
//! - the global deadlock is reported, live, before the runtime kills the process;
//! - every report validates against docs/report.schema.json.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use blockprobe_tests::{
    Proc, Scratch, attach_for, blockprobe_bin, ends_with, kv, open_findings, prepare, read_report,
    source_line, source_line_in,
};
use serde_json::Value;

#[path = "schema.rs"]
mod schema;
use schema::validate;

fn line(marker: &str) -> String {
    format!("main.go:{}", source_line("patterns", marker))
}

struct Ran {
    code: Option<i32>,
    ready: String,
    stderr: String,
    report: Value,
    events: String,
}

/// `blockprobe run` on one case.
fn run(fixture: &Path, scratch: &Scratch, case: &str, ok: bool, extra: &[&str]) -> Ran {
    let report = scratch.path(&format!("{case}-{ok}.json"));
    let events = scratch.path(&format!("{case}-{ok}.ndjson"));
    let out = Command::new(blockprobe_bin())
        .args(["run", "--threshold", "300ms", "--fail-on", "all", "--json"])
        .arg(&report)
        .arg("--events")
        .arg(&events)
        .args(extra)
        .arg("--")
        .arg(fixture)
        .args(["-case", case, &format!("-ok={ok}")])
        .stdin(Stdio::null())
        .output()
        .expect("run blockprobe");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ready = stdout
        .lines()
        .find(|l| l.starts_with("ready pid="))
        .unwrap_or_else(|| panic!("{case}: no ready line; stdout {stdout}; stderr {stderr}"))
        .to_string();
    let report = read_report(&report);
    validate(&report);
    Ran {
        code: out.status.code(),
        ready,
        stderr,
        report,
        events: std::fs::read_to_string(&events).unwrap_or_default(),
    }
}

/// A negative case's run: no open finding, exit status 0 (`what` names it in a failure).
fn assert_clean(r: &Ran, what: &str) {
    assert_eq!(
        open_findings(&r.report).len(),
        0,
        "{what}: {:#}",
        r.report["findings"]
    );
    assert_eq!(r.code, Some(0), "{what}: {}", r.stderr);
}

/// The goroutine ids that the ready line gives for `keys`, in the keys' order.
fn ready_ids(ready: &str, keys: &[&str]) -> Vec<u64> {
    keys.iter().map(|k| kv(ready, k).parse().unwrap()).collect()
}

/// [`ready_ids`], sorted (as [`goids`]).
fn sorted_ready_ids(ready: &str, keys: &[&str]) -> Vec<u64> {
    let mut v = ready_ids(ready, keys);
    v.sort_unstable();
    v
}

fn goids(f: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = f["goroutines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap())
        .collect();
    v.sort_unstable();
    v
}

/// What a positive case must report.
struct Want {
    case: &'static str,
    pattern: &'static str,
    /// Keys of the ready line holding the goroutine ids of the finding.
    goroutines: &'static [&'static str],
    /// Key of the ready line holding the object's address.
    object: Option<&'static str>,
    /// Marker of the blocking line (`// BLOCK:<x>`), and of the go statement (`// GO:<x>`).
    block: &'static str,
    go: Option<&'static str>,
    /// Keys of the ready line holding the chain's goroutines, in order.
    chain: &'static [&'static str],
}

const RUN_CASES: &[Want] = &[
    Want {
        case: "full",
        pattern: "BP01",
        goroutines: &["gsender"],
        object: Some("chan"),
        block: "BLOCK:full",
        go: Some("GO:full"),
        chain: &[],
    },
    Want {
        case: "unbuffered",
        pattern: "BP02",
        goroutines: &["gsender"],
        object: Some("chan"),
        block: "BLOCK:unbuffered",
        go: Some("GO:unbuffered"),
        chain: &[],
    },
    Want {
        case: "orphanrecv",
        pattern: "BP03",
        goroutines: &["greceiver"],
        object: Some("chan"),
        block: "BLOCK:orphanrecv",
        go: Some("GO:orphanrecv"),
        chain: &[],
    },
    Want {
        case: "nilsend",
        pattern: "BP04",
        goroutines: &["gsender"],
        object: None,
        block: "BLOCK:nilsend",
        go: Some("GO:nilsend"),
        chain: &[],
    },
    Want {
        case: "nilrecv",
        pattern: "BP05",
        goroutines: &["greceiver"],
        object: None,
        block: "BLOCK:nilrecv",
        go: Some("GO:nilrecv"),
        chain: &[],
    },
    Want {
        case: "selectnone",
        pattern: "BP06",
        goroutines: &["gwaiter"],
        object: None,
        block: "BLOCK:selectnone",
        go: Some("GO:selectnone"),
        chain: &[],
    },
    Want {
        case: "selectall",
        pattern: "BP07",
        goroutines: &["gwaiter"],
        object: None,
        block: "BLOCK:selectall",
        go: Some("GO:selectall"),
        chain: &[],
    },
    Want {
        case: "cycle",
        pattern: "BP09",
        goroutines: &["g1", "g2"],
        object: None,
        block: "BLOCK:cycle1",
        go: Some("GO:cycle"),
        chain: &["g1", "g2"],
    },
    Want {
        case: "cascade",
        pattern: "BP10",
        goroutines: &["gsource", "gstage", "gsink"],
        object: None,
        block: "BLOCK:cascade-source",
        go: Some("GO:cascade-source"),
        chain: &["gsource", "gstage", "gsink"],
    },
    Want {
        case: "doublelock",
        pattern: "BP11",
        goroutines: &["glocker"],
        object: Some("mutex"),
        block: "BLOCK:doublelock",
        go: Some("GO:doublelock"),
        chain: &[],
    },
    Want {
        case: "lockorder",
        pattern: "BP11",
        goroutines: &["g1", "g2"],
        object: None,
        block: "BLOCK:lockorder",
        go: None,
        chain: &[],
    },
    Want {
        case: "rwrecursive",
        pattern: "BP12",
        goroutines: &["greader"],
        object: Some("rwmutex"),
        block: "BLOCK:rwrecursive",
        go: Some("GO:rwrecursive"),
        chain: &[],
    },
    Want {
        case: "waitgroup",
        pattern: "BP13",
        goroutines: &["gwaiter"],
        object: Some("wg"),
        block: "BLOCK:waitgroup",
        go: Some("GO:waitgroup"),
        chain: &[],
    },
    Want {
        case: "cond",
        pattern: "BP14",
        goroutines: &["gwaiter"],
        object: Some("cond"),
        block: "BLOCK:cond",
        go: Some("GO:cond"),
        chain: &[],
    },
];

/// BP16: the leaked goroutines are one finding that keeps growing.
fn leak_growth(fixture: &Path, scratch: &Scratch) {
    let pos = run(fixture, scratch, "leakgrowth", false, &[]);
    assert_eq!(pos.code, Some(3), "{}", pos.stderr);
    let f = open_findings(&pos.report)
        .into_iter()
        .find(|f| f["pattern"] == "BP16")
        .unwrap_or_else(|| panic!("no BP16: {:#}", pos.report));
    let count = f["count"].as_u64().unwrap();
    assert!(count >= 5, "{f:#}");
    assert!(
        ends_with(&f["blocked_at"]["location"], &line("BLOCK:leakgrowth")),
        "{f:#}"
    );
    // The same finding says what the leak holds: each leaked goroutine keeps a 64 KiB buffer
    // (the fixture's leakHold), all live at the window's end; the heap grew over it (a GC in
    // between may free other garbage, so the growth itself is not bounded below by the leak).
    let h = &f["heap_growth"];
    let n = |k: &str| {
        h[k].as_u64()
            .unwrap_or_else(|| panic!("heap_growth.{k}: {f:#}"))
    };
    assert!(n("to_ns") > n("from_ns"), "{h}");
    assert!(
        n("heap_alloc_to") >= count * (64 << 10),
        "{count} leaked: {h}"
    );
    assert!(n("heap_alloc_to") > n("heap_alloc_from"), "{h}");
    assert!(
        f["explanation"]
            .as_str()
            .unwrap()
            .contains("the heap grew by"),
        "{f:#}"
    );
    assert!(
        ends_with(&f["created_by"]["location"], &line("GO:leakgrowth")),
        "{f:#}"
    );
    // Folded in: no lone finding for the same goroutines.
    assert!(
        open_findings(&pos.report)
            .iter()
            .all(|o| o["pattern"] == "BP16"),
        "{:#}",
        pos.report["findings"]
    );
    let neg = run(fixture, scratch, "leakgrowth", true, &[]);
    assert_clean(&neg, "leakgrowth -ok");
}

fn check(want: &Want, ready: &str, report: &Value) {
    let ctx = || format!("{}: {report:#}", want.case);
    let expected = sorted_ready_ids(ready, want.goroutines);
    let f = open_findings(report)
        .into_iter()
        .find(|f| f["pattern"] == want.pattern && goids(f) == expected)
        .unwrap_or_else(|| {
            panic!(
                "no {} finding for goroutines {expected:?}: {}",
                want.pattern,
                ctx()
            )
        });
    if let Some(k) = want.object {
        assert_eq!(f["object"], kv(ready, k).as_str(), "{}", ctx());
    }
    assert!(
        ends_with(&f["blocked_at"]["location"], &line(want.block)),
        "{f:#}"
    );
    if let Some(g) = want.go {
        assert!(ends_with(&f["created_by"]["location"], &line(g)), "{f:#}");
    }
    let chain: Vec<u64> = f["chain"]
        .as_array()
        .map(|c| c.iter().map(|l| l["goid"].as_u64().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(chain, ready_ids(ready, want.chain), "{f:#}");
    assert!(!f["explanation"].as_str().unwrap_or("").is_empty());
}

fn positives_and_negatives(go_minor: &str) {
    let Some(fixture) = prepare(go_minor, "default", "patterns") else {
        return;
    };
    let scratch = Scratch::new(&format!("patterns-run-{go_minor}"));
    for want in RUN_CASES {
        let pos = run(&fixture, &scratch, want.case, false, &[]);
        assert_eq!(pos.code, Some(3), "{}: {}", want.case, pos.stderr);
        check(want, &pos.ready, &pos.report);

        let neg = run(&fixture, &scratch, want.case, true, &[]);
        assert_clean(&neg, &format!("{} -ok", want.case));
    }
    leak_growth(&fixture, &scratch);
    // BP15's positive needs a live target (who holds the lock: see `live_graph`); its negative
    // runs here with the others.
    let neg = run(&fixture, &scratch, "mixed", true, &[]);
    assert_clean(&neg, "mixed -ok");
}

fn global_deadlock(go_minor: &str) {
    let Some(fixture) = prepare(go_minor, "default", "patterns") else {
        return;
    };
    let scratch = Scratch::new(&format!("patterns-gd-{go_minor}"));
    let r = run(&fixture, &scratch, "globaldeadlock", false, &[]);
    // The runtime kills it (exit 2) once its last timer fired; the findings fail the run.
    assert_eq!(r.report["exit_code"], 2, "{:#}", r.report);
    assert_eq!(r.code, Some(3));
    // Reported live, before the runtime's own verdict: both go to the same stderr.
    let ours = r
        .stderr
        .find("BP00 global-deadlock")
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let theirs = r
        .stderr
        .find("all goroutines are asleep - deadlock!")
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(ours < theirs, "{}", r.stderr);
    let event: Value = r
        .events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "finding" && e["pattern"] == "BP00")
        .unwrap_or_else(|| panic!("no BP00 event: {}", r.events));
    assert_eq!(event["goroutines"], 2);
    let f = open_findings(&r.report)
        .into_iter()
        .find(|f| f["pattern"] == "BP00")
        .unwrap_or_else(|| panic!("{:#}", r.report));
    assert_eq!(goids(f), sorted_ready_ids(&r.ready, &["gmain", "gworker"]));

    let ok = run(&fixture, &scratch, "globaldeadlock", true, &[]);
    assert_clean(&ok, "globaldeadlock -ok");
}

/// `attach` to a case held for a while; the report.
fn attach_case(fixture: &PathBuf, scratch: &Scratch, case: &str) -> (String, Value) {
    let mut target = Proc::spawn(Command::new(fixture).args(["-case", case, "-hold", "60s"]))
        .expect("start patterns");
    let ready = target
        .expect_stdout(Duration::from_secs(20), |l| l.starts_with("ready pid="))
        .expect("ready");
    let report = attach_for(
        target.pid(),
        "800ms",
        &scratch.path(&format!("{case}.json")),
    );
    validate(&report);
    assert!(target.child.try_wait().unwrap().is_none(), "target died");
    (ready, report)
}

fn live_graph(go_minor: &str) {
    let Some(fixture) = prepare(go_minor, "default", "patterns") else {
        return;
    };
    let scratch = Scratch::new(&format!("patterns-attach-{go_minor}"));
    // Who holds a lock is inferred from who else references it: the producer holds mu while it
    // sends on ch; the consumer waits for mu, and would receive from ch.
    let (ready, report) = attach_case(&fixture, &scratch, "mixed");
    let chain = ["gproducer", "gconsumer"];
    let f = open_findings(&report)
        .into_iter()
        .find(|f| f["pattern"] == "BP15")
        .unwrap_or_else(|| panic!("no BP15: {report:#}"));
    let order = ready_ids(&ready, &chain);
    assert_eq!(goids(f), sorted_ready_ids(&ready, &chain));
    let got: Vec<u64> = f["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["goid"].as_u64().unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{f:#}");
    assert!(got == order || got == [order[1], order[0]], "{f:#}");
    let objects: Vec<&str> = f["chain"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["object"].as_str())
        .collect();
    assert!(objects.contains(&kv(&ready, "chan").as_str()), "{f:#}");
    assert!(objects.contains(&kv(&ready, "mutex").as_str()), "{f:#}");

    let (ready, report) = attach_case(&fixture, &scratch, "lockorder");
    let f = open_findings(&report)
        .into_iter()
        .find(|f| f["pattern"] == "BP11")
        .unwrap_or_else(|| panic!("no BP11: {report:#}"));
    assert_eq!(goids(f), sorted_ready_ids(&ready, &["g1", "g2"]));
    assert_eq!(f["chain"].as_array().map_or(0, Vec::len), 2, "{f:#}");

    // Idling correctly: nothing to report.
    let (_, report) = attach_case(&fixture, &scratch, "healthy");
    assert!(
        report["blocked"].as_array().unwrap().len() >= 6,
        "the healthy program's goroutines wait: {report:#}"
    );
    assert_eq!(open_findings(&report).len(), 0, "{:#}", report["findings"]);
}

/// `blockprobe run -- ./pkg.test`: a `go test -c` binary, the CI use; `--allow` and `--sarif`.
fn test_binary(go_minor: &str) {
    let Some(fixture) = prepare(go_minor, "default", "gotestleak") else {
        return;
    };
    let scratch = Scratch::new(&format!("patterns-gotest-{go_minor}"));
    let line_of = |m: &str| source_line_in("gotestleak", "leak_test.go", m);
    let sarif = scratch.path("leak.sarif");
    let go = |test: &str, extra: &[&str]| {
        let report = scratch.path(&format!("{test}.json"));
        let out = Command::new(blockprobe_bin())
            .args(["run", "--threshold", "300ms", "--fail-on", "all", "--json"])
            .arg(&report)
            .args(extra)
            .arg("--")
            .arg(&fixture)
            .args(["-test.run", &format!("^{test}$"), "-test.v"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let report = read_report(&report);
        validate(&report);
        (out, report)
    };
    let (out, report) = go("TestLeaks", &["--sarif", sarif.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--- PASS: TestLeaks"), "{stdout}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leaked: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ready leaked="))
        .unwrap()
        .parse()
        .unwrap();
    let open = open_findings(&report);
    assert_eq!(open.len(), 1, "{:#}", report["findings"]);
    assert_eq!(
        (open[0]["pattern"].as_str(), goids(open[0])),
        (Some("BP03"), vec![leaked])
    );
    let at = format!("leak_test.go:{}", line_of("BLOCK:gotestleak"));
    assert!(
        ends_with(&open[0]["blocked_at"]["location"], &at),
        "{:#}",
        open[0]
    );
    let go_line = format!("leak_test.go:{}", line_of("GO:gotestleak"));
    assert!(
        ends_with(&open[0]["created_by"]["location"], &go_line),
        "{:#}",
        open[0]
    );
    // The testing package's own wait (t.Run for the test) is allowed by default.
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["allowed"] == true
                && f["blocked_at"]["function"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("testing."))),
        "{:#}",
        report["findings"]
    );
    // SARIF: the finding on its source line.
    let log: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    let result = &log["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "BP03");
    let loc = &result["locations"][0]["physicalLocation"];
    assert!(
        ends_with(&loc["artifactLocation"]["uri"], "gotestleak/leak_test.go"),
        "{loc:#}"
    );
    assert_eq!(loc["region"]["startLine"], line_of("BLOCK:gotestleak"));

    // Allowed by a rule: reported, not failing.
    let (out, report) = go("TestLeaks", &["--allow", "gotestleak\\.TestLeaks"]);
    assert_eq!(out.status.code(), Some(0), "{:#}", report["findings"]);
    assert!(
        open_findings(&report).is_empty(),
        "{:#}",
        report["findings"]
    );

    let (out, report) = go("TestClean", &[]);
    assert_eq!(out.status.code(), Some(0), "{:#}", report["findings"]);
    assert!(
        open_findings(&report).is_empty(),
        "{:#}",
        report["findings"]
    );
}

#[test]
fn go1_27_test_binary() {
    test_binary("1.27");
}

#[test]
fn go1_22_test_binary() {
    test_binary("1.22");
}

#[test]
fn go1_27_run() {
    positives_and_negatives("1.27");
}

#[test]
fn go1_22_run() {
    positives_and_negatives("1.22");
}

#[test]
fn go1_27_global_deadlock() {
    global_deadlock("1.27");
}

#[test]
fn go1_22_global_deadlock() {
    global_deadlock("1.22");
}

#[test]
fn go1_27_attach() {
    live_graph("1.27");
}

#[test]
fn go1_22_attach() {
    live_graph("1.22");
}
