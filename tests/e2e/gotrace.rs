//! Go execution traces: blockprobe's trace reader (`blockprobe::gotrace`, through the hidden
//! `blockprobe trace-dump FILE` command) against Go 1.27.3's own reader, `go tool trace
//! -d=parsed FILE`, which prints `Event.String()` for every event (src/cmd/trace/main.go
//! `debugProcessedEvents`). No root needed.
//!
//! - `oracle_go1_NN`: the `tracegen` fixture built by Go 1.NN writes a trace (`-mode stress`:
//!   ~2.2 s, 3 generations, every kind of wait, a CPU profile); both readers dump it; the dumps
//!   must agree (a) in the number of events per goroutine (the `G=` of each event's first line;
//!   an event is its `M=` line plus the `Stack=`/`TransitionStack=` lines that follow), (b) in
//!   each goroutine's sequence of block reasons (`GoID=N Running->Waiting Reason="..."`), and
//!   (c) line for line. Then `trace-dump --count` must count the same events; copies cut at 50%
//!   and 90% and in the middle of the last generation must dump, with exit status 0 and a
//!   truncation warning, a prefix of the full dump that holds every generation complete in the
//!   copy; and copies with bytes flipped in the middle must end with an error or a dump, never
//!   a panic (exit status 101) or a signal.
//! - The small traces under tests/data/gotrace/ (one per Go version, captured by the ignored
//!   test `capture_small_traces`, each with what Go's reader made of it in a `.expect.json`)
//!   are dumped without any toolchain, and read in process (gotrace/inproc.rs): whole, cut at
//!   random and around each generation's end, and mutated by a proptest (flips, cuts, splices,
//!   deletions, duplications) that must never make the reader panic. PROPTEST_CASES sets the
//!   number of cases (3000 mutations, 600 cuts by default).
//! - A `go 1.21 trace` header, and files that are no trace at all, are refused with a message.
//!
//! Nothing skips silently: without the toolchains, the fixtures or the trace-dump command, the
//! tests print SKIPPED, and under CI=true they fail.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use blockprobe_tests::gofixtures::xorshift;
use blockprobe_tests::{
    Scratch, blockprobe_bin, go_version_for, prepare_fixture, skip_or_fail, workspace_root,
};
use serde_json::{Value, json};

#[path = "gotrace/dumps.rs"]
mod dumps;
#[path = "gotrace/inproc.rs"]
mod inproc;

use dumps::{
    FNV_OFFSET, GenEnd, HEADER_LEN, Tally, compare_dumps, describe_diff, events, fnv1a, generations,
};

/// The toolchain whose `go tool trace` is the oracle (it reads every v2 trace version).
const ORACLE_GO: &str = "1.27.3";
/// A generous bound for one dump of a stress trace by a debug build.
const DUMP_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// The environment: oracle, fixture, blockprobe.

/// A scratch directory `name` for a test that runs trace-dump, or None when trace-dump is
/// unavailable (the test then ends, as [`skip_or_fail`] says).
fn trace_dump_scratch(name: &str) -> Option<Scratch> {
    if let Err(why) = trace_dump() {
        skip_or_fail(&why);
        return None;
    }
    Some(Scratch::new(name))
}

/// The `trace` tool of Go 1.27.3, what `go tool trace` runs. The toolchain ships no prebuilt
/// `pkg/tool/.../trace` (the go command builds it on first use), so it is built here once, from
/// that toolchain's own `cmd/trace`, into target/gotrace-oracle/ (where `cargo xtask bench
/// --only trace` builds it too, the same way: either serves both).
fn oracle() -> Result<PathBuf, String> {
    static TOOL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOOL.get_or_init(|| {
        let go = workspace_root().join(format!(".tools/go/{ORACLE_GO}/bin/go"));
        if !go.is_file() {
            return Err(format!(
                "Go {ORACLE_GO} is not installed ({} is missing; run `cargo xtask setup`)",
                go.display()
            ));
        }
        let dir = workspace_root().join(format!("target/gotrace-oracle/go{ORACLE_GO}"));
        let tool = dir.join("trace");
        if tool.is_file() {
            return Ok(tool);
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // Other test processes may build it at the same time: build aside, rename into place.
        let tmp = dir.join(format!("trace.tmp{}", std::process::id()));
        let out = Command::new(&go)
            .args(["build", "-o"])
            .arg(&tmp)
            .arg("cmd/trace")
            .env("GOTOOLCHAIN", "local")
            .env("GOCACHE", workspace_root().join("target/go-cache"))
            .env("GOFLAGS", "")
            .env_remove("GOROOT")
            .output()
            .map_err(|e| format!("running {}: {e}", go.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} build cmd/trace` failed: {}",
                go.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&tmp, &tool).map_err(|e| format!("renaming {}: {e}", tmp.display()))?;
        Ok(tool)
    })
    .clone()
}

/// blockprobe, once `blockprobe trace-dump --help` works.
fn trace_dump() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = blockprobe_bin();
        if !bin.is_file() {
            return Err(format!(
                "{} is not built (run `cargo xtask test`, or `cargo build -p blockprobe`)",
                bin.display()
            ));
        }
        let out = Command::new(&bin)
            .args(["trace-dump", "--help"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        if out.status.success() {
            Ok(bin)
        } else {
            Err(format!(
                "`{} trace-dump --help` failed ({}): {}",
                bin.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// Running things.

struct Ran {
    status: ExitStatus,
    stderr: String,
}

impl Ran {
    /// Why this run counts as a crash: a panic (Rust's exit status 101) or a signal.
    fn crash(&self) -> Option<String> {
        match (self.status.code(), self.status.signal()) {
            (Some(101), _) => Some(format!("it panicked (exit status 101): {}", self.stderr)),
            (_, Some(sig)) => Some(format!("it was killed by signal {sig}: {}", self.stderr)),
            _ => None,
        }
    }
}

/// Runs `cmd` with stdout going to `stdout`, stderr collected; fails after `timeout`.
fn run(cmd: &mut Command, stdout: Stdio, timeout: Duration) -> Ran {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for a child") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?} (a hang?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        status,
        stderr: reader.join().unwrap_or_default(),
    }
}

fn to_file(path: &Path) -> Stdio {
    Stdio::from(File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display())))
}

/// `go tool trace -d=parsed TRACE > OUT`; must succeed.
fn go_dump(trace: &Path, out: &Path) {
    let tool = oracle().expect("checked by the caller");
    let ran = run(
        Command::new(&tool).arg("-d=parsed").arg(trace),
        to_file(out),
        DUMP_TIMEOUT,
    );
    assert!(
        ran.status.success(),
        "go tool trace -d=parsed {} failed ({}): {}",
        trace.display(),
        ran.status,
        ran.stderr
    );
}

/// `blockprobe trace-dump [ARGS] TRACE` with stdout to `out`.
fn our_dump(trace: &Path, args: &[&str], out: Stdio) -> Ran {
    let bin = trace_dump().expect("checked by the caller");
    run(
        Command::new(bin).arg("trace-dump").args(args).arg(trace),
        out,
        DUMP_TIMEOUT,
    )
}

/// Keeps a trace that made a test fail under target/gotrace-failures/, for the parser's authors.
fn keep(trace: &Path, name: &str) -> PathBuf {
    let dir = workspace_root().join("target/gotrace-failures");
    let _ = std::fs::create_dir_all(&dir);
    let dst = dir.join(name);
    let _ = std::fs::copy(trace, &dst);
    dst
}

// ---------------------------------------------------------------------------------------------
// The oracle test, per Go version.

/// What the stress trace must hold, for the comparison to mean something (checked on Go's
/// dump: a failure here is the fixture's, not the parser's).
fn check_coverage(t: &Tally, gens: usize, minor: &str) {
    let mut missing = Vec::new();
    if gens < 3 || t.syncs.len() < 4 {
        missing.push(format!(
            "3 generations (has {gens}, {} Sync events)",
            t.syncs.len()
        ));
    }
    for kind in [
        "StateTransition",
        "Metric",
        "Label",
        "Log",
        "RangeBegin",
        "RangeEnd",
        "TaskBegin",
        "TaskEnd",
        "RegionBegin",
        "RegionEnd",
        "StackSample",
    ] {
        if !t.kinds.contains_key(kind) {
            missing.push(format!("a {kind} event"));
        }
    }
    let reasons: std::collections::BTreeSet<&str> =
        t.reasons.values().flatten().map(String::as_str).collect();
    for r in [
        "chan receive",
        "chan send",
        "select",
        "sync",
        "sync.(*Cond).Wait",
        "sleep",
        "network",
        "forever",
    ] {
        if !reasons.contains(r) {
            missing.push(format!("block reason {r:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "the Go {minor} stress trace lacks {} (Go's dump has kinds {:?}, reasons {reasons:?})",
        missing.join(", "),
        t.kinds
    );
}

fn oracle_test(minor: &str) {
    let env = [oracle().err(), trace_dump().err()];
    let why: Vec<String> = env.into_iter().flatten().collect();
    if !why.is_empty() {
        skip_or_fail(&why.join("; "));
        return;
    }
    // The tracegen fixture built by Go `minor` (`cargo xtask fixtures --all-go`).
    let Some(tracegen) = prepare_fixture(minor, "default", "tracegen") else {
        return;
    };
    let scratch = Scratch::new(&format!("gotrace-{minor}"));
    let trace = scratch.path("stress.trace");
    let made = run(
        Command::new(tracegen)
            .arg("-out")
            .arg(&trace)
            .args(["-mode", "stress"]),
        Stdio::null(),
        Duration::from_secs(120),
    );
    assert!(
        made.status.success(),
        "tracegen failed ({}): {}",
        made.status,
        made.stderr
    );
    let data = std::fs::read(&trace).expect("read the trace");
    let (_, gens) = generations(&data).unwrap_or_else(|e| panic!("Go {minor}'s trace: {e}"));

    let go_txt = scratch.path("go.txt");
    go_dump(&trace, &go_txt);
    let ours_txt = scratch.path("ours.txt");
    let ran = our_dump(&trace, &[], to_file(&ours_txt));

    let mut failures = Vec::new();
    if let Some(c) = ran.crash() {
        failures.push(format!("trace-dump crashed: {c}"));
    } else if !ran.status.success() {
        failures.push(format!(
            "trace-dump failed ({}): {}",
            ran.status,
            ran.stderr.trim()
        ));
    }
    if ran.stderr.to_lowercase().contains("truncat") {
        failures.push(format!(
            "trace-dump warned of truncation on a whole trace: {}",
            ran.stderr.trim()
        ));
    }
    let (tally, diffs) = compare_dumps(&go_txt, &ours_txt);
    check_coverage(&tally, gens.len(), minor);
    failures.extend(diffs);
    let _ = std::fs::remove_file(&ours_txt);

    let count = scratch.path("count.json");
    failures.extend(check_count(
        &trace,
        &count,
        data.len(),
        tally.events,
        gens.len(),
    ));
    // At 50% and 90% (the first generation is often more than half of the trace), and in the
    // middle of the last generation (every other one whole).
    let mut cuts: Vec<(String, usize)> = [50, 90]
        .map(|pct| (format!("at {pct}%"), data.len() * pct / 100))
        .to_vec();
    if let [.., prev, last] = gens.as_slice() {
        cuts.push(("in the last generation".into(), (prev.end + last.end) / 2));
    }
    for (what, cut) in cuts {
        failures.extend(check_truncated(
            &scratch, &data, &go_txt, &tally, &gens, &what, cut,
        ));
    }
    failures.extend(check_flips(
        &scratch,
        &data,
        6,
        fnv1a(FNV_OFFSET, minor.as_bytes()),
    ));

    if !failures.is_empty() {
        let kept = keep(&trace, &format!("go{minor}-stress.trace"));
        panic!(
            "Go {minor}: blockprobe's reader disagrees with Go's ({} events in Go's dump; the \
             trace is kept at {}; `go tool trace -d=parsed` vs `blockprobe trace-dump`):\n\n{}",
            tally.events,
            kept.display(),
            failures.join("\n\n")
        );
    }
    eprintln!(
        "Go {minor}: {} events in {} generations, {} bytes: identical dumps",
        tally.events,
        gens.len(),
        data.len()
    );
}

/// `trace-dump --count`: `{"events":N,"bytes":B,"generations":G}` with Go's N, the file's
/// length and the generations in the file.
fn check_count(trace: &Path, out: &Path, bytes: usize, events: u64, gens: usize) -> Vec<String> {
    let ran = our_dump(trace, &["--count"], to_file(out));
    if let Some(c) = ran.crash() {
        return vec![format!("trace-dump --count crashed: {c}")];
    }
    if !ran.status.success() {
        return vec![format!(
            "trace-dump --count failed ({}): {}",
            ran.status,
            ran.stderr.trim()
        )];
    }
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let want = json!({"events": events, "bytes": bytes, "generations": gens});
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(v) if v == want => vec![],
        Ok(v) => vec![format!("trace-dump --count printed {v}, want {want}")],
        Err(e) => vec![format!(
            "trace-dump --count printed no JSON ({e}): {text:?}"
        )],
    }
}

/// A copy cut at `cut` bytes dumps, with exit status 0 and a warning that says it is truncated, a
/// prefix of the full dump holding at least every generation whole in the copy (and perhaps,
/// last, the Sync event that Go's reader emits before it reports the cut).
fn check_truncated(
    scratch: &Scratch,
    data: &[u8],
    full_go: &Path,
    full: &Tally,
    gens: &[GenEnd],
    where_: &str,
    cut: usize,
) -> Vec<String> {
    let what = format!("the copy cut {where_} ({cut} of {} bytes)", data.len());
    let path = scratch.path("cut.trace");
    std::fs::write(&path, &data[..cut]).expect("write the cut trace");
    let complete = gens.iter().filter(|g| g.end <= cut).count();
    // Events of the complete generations: those before Sync N=complete+1.
    let needed = full.syncs.get(complete).copied().unwrap_or(full.events);
    let out = scratch.path("cut.txt");
    let ran = our_dump(&path, &[], to_file(&out));
    let mut failures = Vec::new();
    if let Some(c) = ran.crash() {
        return vec![format!("{what}: trace-dump crashed: {c}")];
    }
    if !ran.status.success() {
        failures.push(format!(
            "{what}: trace-dump failed ({}), want exit status 0 and a warning: {}",
            ran.status,
            ran.stderr.trim()
        ));
    }
    if !ran.stderr.to_lowercase().contains("truncat") {
        failures.push(format!(
            "{what}: no truncation warning on stderr (it said {:?})",
            ran.stderr.trim()
        ));
    }
    let mut ours = events(&out).peekable();
    let mut full_evs = events(full_go);
    let mut n = 0u64;
    while let Some(o) = ours.next() {
        let last = ours.peek().is_none();
        match full_evs.next() {
            Some(f) if f.text == o.text => n += 1,
            Some(f) if last && o.sync_n().is_some() && o.sync_n() == f.sync_n() => {}
            f => {
                failures.push(format!(
                    "{what}: the dump is no prefix of the full dump: {}",
                    describe_diff(n, &VecDeque::new(), f.as_ref(), Some(&o))
                ));
                break;
            }
        }
    }
    if n < needed && failures.is_empty() {
        failures.push(format!(
            "{what}: {n} events dumped, but the {complete} whole generation(s) in it hold {needed}"
        ));
    }
    let _ = std::fs::remove_file(&out);
    failures
}

/// Copies with 1 to 4 bytes flipped in the middle half end with exit status 0 (the flip may
/// hit a byte that does not matter, such as a letter of a function name) or another status and
/// a message, never a panic or a signal.
fn check_flips(scratch: &Scratch, data: &[u8], runs: usize, seed: u64) -> Vec<String> {
    let mut rng = xorshift(seed | 1);
    let mut failures = Vec::new();
    let (mut ok, mut warned, mut refused) = (0, 0, 0);
    let path = scratch.path("flipped.trace");
    for run_no in 0..runs {
        let mut bytes = data.to_vec();
        let quarter = (data.len() / 4).max(1);
        let mut flips = Vec::new();
        for _ in 0..1 + rng() % 4 {
            let at = quarter + (rng() as usize) % (2 * quarter).max(1);
            let Some(b) = bytes.get_mut(at) else { continue };
            let x = (rng() % 255 + 1) as u8;
            *b ^= x;
            flips.push((at, x));
        }
        std::fs::write(&path, &bytes).expect("write the flipped trace");
        let ran = our_dump(&path, &[], Stdio::null());
        let name = format!("flipped-{seed:x}-{run_no}.trace");
        if let Some(c) = ran.crash() {
            let kept = keep(&path, &name);
            failures.push(format!(
                "bytes flipped at {flips:?} (kept at {}): trace-dump crashed: {c}",
                kept.display()
            ));
        } else if ran.status.success() {
            if ran.stderr.trim().is_empty() {
                ok += 1
            } else {
                warned += 1
            }
        } else if ran.stderr.trim().is_empty() {
            let kept = keep(&path, &name);
            failures.push(format!(
                "bytes flipped at {flips:?} (kept at {}): trace-dump failed ({}) without a message",
                kept.display(),
                ran.status
            ));
        } else {
            refused += 1;
        }
    }
    eprintln!(
        "byte flips: {runs} runs: {refused} refused, {warned} dumped with a warning, {ok} dumped"
    );
    failures
}

macro_rules! oracle_tests {
    ($($name:ident $minor:literal;)*) => {
        $( #[test] fn $name() { oracle_test($minor); } )*
    };
}

oracle_tests! {
    oracle_go1_22 "1.22";
    oracle_go1_23 "1.23";
    oracle_go1_24 "1.24";
    oracle_go1_25 "1.25";
    oracle_go1_26 "1.26";
    oracle_go1_27 "1.27";
}

// ---------------------------------------------------------------------------------------------
// The captured small traces (tests/data/gotrace/go1.NN.trace + go1.NN.expect.json).

const MINORS: [&str; 6] = ["1.22", "1.23", "1.24", "1.25", "1.26", "1.27"];
/// The captured traces stay small, to be read thousands of times by the proptest.
const SMALL_MAX: usize = 64 << 10;

fn data_dir() -> PathBuf {
    workspace_root().join("tests/data/gotrace")
}

/// A captured trace and what Go's reader made of it.
fn captured(minor: &str) -> (PathBuf, Vec<u8>, Value) {
    let trace = data_dir().join(format!("go{minor}.trace"));
    let expect = data_dir().join(format!("go{minor}.expect.json"));
    let data = std::fs::read(&trace).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (capture it: `cargo test -p blockprobe-tests --test gotrace capture_small_traces -- --ignored`)",
            trace.display()
        )
    });
    let want = std::fs::read_to_string(&expect)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| panic!("{} is missing or not JSON", expect.display()));
    (trace, data, want)
}

/// Writes tests/data/gotrace/go1.NN.{trace,expect.json} with each Go version's tracegen
/// (`-mode small`) and Go 1.27.3's reader. Run it by hand after a change to tracegen:
/// `cargo test -p blockprobe-tests --test gotrace capture_small_traces -- --ignored`.
#[test]
#[ignore = "rewrites the checked-in traces under tests/data/gotrace"]
fn capture_small_traces() {
    oracle().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(data_dir()).expect("create tests/data/gotrace");
    let scratch = Scratch::new("gotrace-capture");
    for minor in MINORS {
        let bin = prepare_fixture(minor, "default", "tracegen")
            .unwrap_or_else(|| panic!("no tracegen fixture for Go {minor} (see above)"));
        let trace = data_dir().join(format!("go{minor}.trace"));
        let small = (0..5).any(|_| {
            let ran = run(
                Command::new(&bin)
                    .arg("-out")
                    .arg(&trace)
                    .args(["-mode", "small"]),
                Stdio::null(),
                Duration::from_secs(60),
            );
            assert!(ran.status.success(), "tracegen: {}", ran.stderr);
            std::fs::metadata(&trace).is_ok_and(|m| (m.len() as usize) < SMALL_MAX)
        });
        assert!(
            small,
            "tracegen -mode small wrote {SMALL_MAX} bytes or more five times"
        );
        let data = std::fs::read(&trace).expect("read it back");
        let (header, gens) = generations(&data).unwrap_or_else(|e| panic!("{e}"));
        let txt = scratch.path("go.txt");
        go_dump(&trace, &txt);
        let tally = Tally::of(&txt);
        let mut v = tally.summary();
        v["go_version"] = json!(go_version_for(minor));
        v["oracle"] = json!(format!("go tool trace -d=parsed (Go {ORACLE_GO})"));
        v["header"] = json!(format!("go 1.{header} trace"));
        v["bytes"] = json!(data.len());
        v["generations"] = json!(gens.len());
        let expect = data_dir().join(format!("go{minor}.expect.json"));
        std::fs::write(
            &expect,
            serde_json::to_string_pretty(&v).expect("JSON") + "\n",
        )
        .expect("write the expect file");
        eprintln!(
            "captured {} ({} bytes, {} events)",
            trace.display(),
            data.len(),
            tally.events
        );
    }
}

/// The fields of an `.expect.json` that a dump must reproduce.
const EXPECTED_FIELDS: [&str; 4] = ["events", "syncs", "kinds", "fnv1a64"];

fn expect_fields(v: &Value) -> Value {
    EXPECTED_FIELDS
        .iter()
        .map(|k| (k.to_string(), v[k].clone()))
        .collect()
}

/// `trace-dump` of each captured trace reproduces Go's dump (its event count, kinds and
/// checksum); `--count` counts it. Needs no toolchain.
#[test]
fn captured_traces_dump_like_go() {
    let Some(scratch) = trace_dump_scratch("gotrace-captured") else {
        return;
    };
    let mut failures = Vec::new();
    for minor in MINORS {
        let (trace, data, want) = captured(minor);
        assert!(data.len() < SMALL_MAX, "{} is too big", trace.display());
        let out = scratch.path("ours.txt");
        let ran = our_dump(&trace, &[], to_file(&out));
        if !ran.status.success() {
            failures.push(format!(
                "go{minor}.trace: trace-dump failed ({}): {}",
                ran.status,
                ran.stderr.trim()
            ));
            continue;
        }
        let got = Tally::of(&out).summary();
        if expect_fields(&got) != expect_fields(&want) {
            failures.push(format!(
                "go{minor}.trace: our dump differs from Go's: ours {}, Go's {} (see the \
                 oracle_go1_NN test, or diff with `go tool trace -d=parsed {}`)",
                expect_fields(&got),
                expect_fields(&want),
                trace.display()
            ));
        }
        let gens = want["generations"].as_u64().unwrap_or(0) as usize;
        let events = want["events"].as_u64().unwrap_or(0);
        let count = scratch.path("count.json");
        failures.extend(
            check_count(&trace, &count, data.len(), events, gens)
                .into_iter()
                .map(|f| format!("go{minor}.trace: {f}")),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Many byte flips in each captured trace: an error with a message, or a dump; never a crash.
#[test]
fn captured_traces_survive_byte_flips() {
    let Some(scratch) = trace_dump_scratch("gotrace-flips") else {
        return;
    };
    let mut failures = Vec::new();
    for minor in MINORS {
        let (_, data, _) = captured(minor);
        failures.extend(check_flips(
            &scratch,
            &data,
            25,
            fnv1a(FNV_OFFSET, minor.as_bytes()) ^ 0x5eed,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A Go 1.21 (v1) trace is refused by name; files that are no trace at all are refused too.
#[test]
fn old_and_foreign_files_are_refused() {
    let Some(scratch) = trace_dump_scratch("gotrace-refused") else {
        return;
    };
    let (_, data, _) = captured("1.27");
    let mut old = b"go 1.21 trace\0\0\0".to_vec();
    old.extend_from_slice(&data[HEADER_LEN..]);
    let cases: [(&str, Vec<u8>, &[&str]); 4] = [
        (
            "go 1.21 header",
            old,
            &["unsupported trace version", "Go ≥ 1.22"],
        ),
        ("empty file", Vec::new(), &[]),
        ("text", b"hello, this is not a trace\n".to_vec(), &[]),
        ("header only", data[..HEADER_LEN].to_vec(), &[]),
    ];
    let mut failures = Vec::new();
    for (what, bytes, needles) in cases {
        let path = scratch.path("input.trace");
        std::fs::write(&path, &bytes).expect("write the input");
        let ran = our_dump(&path, &[], Stdio::null());
        if let Some(c) = ran.crash() {
            failures.push(format!("{what}: trace-dump crashed: {c}"));
            continue;
        }
        // A header with no generation after it is an empty trace, not an error.
        if what == "header only" {
            continue;
        }
        if ran.status.success() || ran.stderr.trim().is_empty() {
            failures.push(format!(
                "{what}: want a failure with a message, got {} and {:?}",
                ran.status,
                ran.stderr.trim()
            ));
        }
        for n in needles {
            if !ran.stderr.contains(n) {
                failures.push(format!(
                    "{what}: the message {:?} does not say {n:?}",
                    ran.stderr.trim()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
