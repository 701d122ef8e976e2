//! `blockprobe stat` against the target's own figures (tests/fixtures/health): for Go 1.22–1.27,
//! in the default, PIE and stripped builds.
//!
//! Oracle: the fixture settles (a forced GC that also returns free memory to the OS, after
//! which every goroutine is parked and nothing allocates but the command handling), prints
//! its own `runtime.ReadMemStats`, `runtime/metrics` and `runtime.NumGoroutine()`, blockprobe
//! reads it, and the fixture prints its figures again. Counters that cannot move while it is
//! quiescent (NumGC, GOMAXPROCS, goroutines, threads) must equal both readings.
//!
//! Goroutine leaks (`stat --interval`): a site whose goroutines keep growing is reported with
//! the heap's growth over the same window.
//!
//! Timers: a fixture arming `time.AfterFunc(time.Hour, f)` per request without stopping it
//! shows the pending count growing by one per request; with `Stop()`, or with one function
//! re-arming itself, it does not grow.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use blockprobe_tests::{Proc, blockprobe_bin, prepare_fixture};
use serde_json::Value;

const MINORS: [&str; 6] = ["1.22", "1.23", "1.24", "1.25", "1.26", "1.27"];
const VARIANTS: [&str; 3] = ["default", "pie", "stripped"];
/// Concurrent fixtures (the machines have 2 cores; most of each job is waiting on pipes).
const WORKERS: usize = 4;

/// Heap byte figures (HeapAlloc, HeapInuse, HeapIdle, StackInuse, TotalAlloc, Sys, and NextGC
/// under a memory limit), beyond the range of the fixture's two readings around blockprobe's.
/// Between blockprobe's read and the fixture's ReadMemStats: the fixture reads and splits the
/// `memstats` command line (a few small objects, which may take a fresh 8 KiB span), and
/// ReadMemStats itself, with the world stopped, flushes every P's stack cache
/// (mstats.go flushallmcaches → stack.go stackcache_clear), which can free whole 32 KiB stack
/// spans back to the heap: StackInuse goes down and HeapIdle up by as much, and the memory
/// limit's heap goal with them. blockprobe cannot stop the world to do that flush. Measured
/// differences are 0 to 72 KiB (two stack spans and the command's objects); the tolerance is
/// four stack spans.
const BYTES_TOLERANCE: i64 = 128 << 10;
/// Mallocs, Frees, HeapObjects: the same few objects of the command handling.
const OBJECTS_TOLERANCE: i64 = 64;

/// Figures that only change in a GC or a stop-the-world, or not at all while quiescent: equal.
const EXACT: &[&str] = &[
    "NumGC",
    "NumForcedGC",
    "LastGC",
    "PauseTotalNs",
    "GCCPUFraction",
    "NextGC",
];
const BYTES: &[&str] = &[
    "Alloc",
    "TotalAlloc",
    "Sys",
    "HeapAlloc",
    "HeapSys",
    "HeapIdle",
    "HeapInuse",
    "HeapReleased",
    "StackInuse",
    "StackSys",
    "MSpanInuse",
    "MCacheInuse",
];
/// Runtime metadata (MSpanSys, MCacheSys, BuckHashSys, GCSys, OtherSys): persistentalloc
/// (src/runtime/malloc.go, persistentalloc1) charges each 256 KiB chunk to OtherSys and then
/// moves every allocation from it to the stat it is for, so memory moves between these
/// figures while the runtime works in the background (e.g. the heap profile's buckets after
/// the fixture's first sampled allocation). One chunk is the tolerance.
const METADATA: &[&str] = &["MSpanSys", "MCacheSys", "BuckHashSys", "GCSys", "OtherSys"];
const METADATA_TOLERANCE: i64 = 256 << 10;
const OBJECTS: &[&str] = &["Mallocs", "Frees", "HeapObjects"];
/// runtime/metrics samples that must be equal.
const EXACT_METRICS: &[&str] = &[
    "/gc/heap/goal:bytes",
    "/gc/cycles/total:gc-cycles",
    "/gc/cycles/forced:gc-cycles",
    "/gc/gogc:percent",
    "/gc/gomemlimit:bytes",
    "/sched/gomaxprocs:threads",
    "/sched/goroutines:goroutines",
];

fn start(path: &std::path::Path, mode: &str) -> anyhow::Result<Proc> {
    let mut p = Proc::spawn(Command::new(path).args(["-mode", mode]))?;
    p.expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
    Ok(p)
}

fn command(p: &mut Proc, cmd: &str, reply: &str) -> anyhow::Result<String> {
    p.send_line(cmd)?;
    p.expect_stdout(Duration::from_secs(10), |l| l.starts_with(reply))
}

fn stat(pid: u32) -> anyhow::Result<Value> {
    let out = Command::new(blockprobe_bin())
        .args(["stat", "--pid", &pid.to_string(), "--json"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "blockprobe stat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// One oracle comparison; returns the mismatches.
fn oracle(minor: &str, variant: &str, path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    oracle_with(minor, variant, path, false)
}

/// The same under a memory limit that sets the heap goal: GOGC=400 puts the GOGC goal at
/// 16 MiB (heapMinimum), GOMEMLIMIT=12MiB brings it down (mgcpacer.go, memoryLimitHeapGoal).
/// That goal moves with every allocation (it subtracts the heap in use), so NextGC is then a
/// byte figure rather than an exact one.
fn oracle_limited(
    minor: &str,
    variant: &str,
    path: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    oracle_with(minor, variant, path, true)
}

fn oracle_with(
    minor: &str,
    variant: &str,
    path: &std::path::Path,
    limited: bool,
) -> anyhow::Result<Vec<String>> {
    let mut cmd = Command::new(path);
    cmd.args(["-mode", "leak"]);
    if limited {
        cmd.env("GOGC", "400").env("GOMEMLIMIT", "12MiB");
    }
    let mut p = Proc::spawn(&mut cmd)?;
    p.expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
    command(&mut p, "settle", "settled")?;
    // The fixture's own reading just before and just after blockprobe's: one-off growth of
    // the runtime (the 1.4 MiB heap-profile bucket table, allocated at the first sampled
    // allocation; a 256 KiB persistentalloc chunk for OtherSys) may land between two readings,
    // so blockprobe's figure must lie between the two, within the tolerance.
    let before: Value = serde_json::from_str(&command(&mut p, "memstats", "{")?)?;
    let bp = stat(p.pid())?;
    let go: Value = serde_json::from_str(&command(&mut p, "memstats", "{")?)?;
    let mut bad = Vec::new();
    let (bm, gm, g0) = (&bp["memstats"], &go["memstats"], &before["memstats"]);
    let moving: &[&str] = if limited { &["NextGC"] } else { &[] };
    for k in EXACT.iter().filter(|k| !moving.contains(k)) {
        if bm[k] != gm[k] || bm[k] != g0[k] {
            bad.push(format!(
                "{k}: blockprobe {} != Go {} (before: {})",
                bm[k], gm[k], g0[k]
            ));
        }
    }
    for (keys, tol) in [
        (moving, BYTES_TOLERANCE),
        (BYTES, BYTES_TOLERANCE),
        (METADATA, METADATA_TOLERANCE),
        (OBJECTS, OBJECTS_TOLERANCE),
    ] {
        for k in keys {
            match (bm[k].as_i64(), g0[k].as_i64(), gm[k].as_i64()) {
                (Some(b), Some(g0), Some(g1)) if b >= g0.min(g1) - tol && b <= g0.max(g1) + tol => {
                }
                _ => bad.push(format!(
                    "{k}: blockprobe {} vs Go {} before, {} after (tolerance {tol})",
                    bm[k], g0[k], gm[k]
                )),
            }
        }
    }
    if limited && bm["NextGC"].as_u64().is_none_or(|g| g >= 16 << 20) {
        bad.push(format!(
            "NextGC {} is not the memory limit's goal",
            bm["NextGC"]
        ));
    }
    let goal = "/gc/heap/goal:bytes";
    for k in EXACT_METRICS.iter().filter(|k| !limited || **k != goal) {
        let (b, g) = (num(&bp["metrics"][k]), num(&go["metrics"][k]));
        if b != g {
            bad.push(format!("metric {k}: blockprobe {b} != Go {g}"));
        }
    }
    let total = &bp["goroutines"]["total"];
    if total.as_u64() != go["num_goroutine"].as_u64() {
        bad.push(format!(
            "goroutines: blockprobe {total} != NumGoroutine {}",
            go["num_goroutine"]
        ));
    }
    // The fixture's 8 parked goroutines and main (in read(2) on stdin, or parked on the
    // netpoller on some versions) are all there is.
    let waiting = bp["goroutines"]["by_state"]["waiting"]
        .as_u64()
        .unwrap_or(0);
    if waiting < 8 {
        bad.push(format!(
            "goroutines waiting: {waiting} < 8 ({})",
            bp["goroutines"]
        ));
    }
    // The 8 parked goroutines by their `go` statement.
    let line = blockprobe_tests::source_line("health", "go func() { <-block }()");
    let site = format!("health/main.go:{line}");
    let at_site = bp["goroutines"]["by_site"]
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| k.ends_with(&site)))
        .and_then(|(_, v)| v.as_u64());
    if at_site != Some(8) {
        bad.push(format!(
            "by_site: want 8 at {site}: {}",
            bp["goroutines"]["by_site"]
        ));
    }
    if bp["sched"]["threads"].as_u64() != go["threads"].as_u64() {
        bad.push(format!(
            "threads: blockprobe {} != threadcreate {}",
            bp["sched"]["threads"], go["threads"]
        ));
    }
    let nps = bp["sched"]["ps"].as_array().map_or(0, |a| a.len()) as u64;
    if Some(nps) != bp["sched"]["gomaxprocs"].as_u64() {
        bad.push(format!(
            "{nps} Ps listed for gomaxprocs {}",
            bp["sched"]["gomaxprocs"]
        ));
    }
    let want = if variant == "stripped" {
        ("version-table", "code")
    } else {
        ("dwarf", "symtab")
    };
    let src = (&bp["sources"]["layout"], &bp["sources"]["globals"]);
    if src.0 != want.0 || src.1 != want.1 {
        bad.push(format!("sources {src:?}, want {want:?}"));
    }
    command(&mut p, "exit", "").ok();
    Ok(bad
        .into_iter()
        .map(|b| format!("Go {minor} {variant}: {b}"))
        .collect())
}

fn pending(pid: u32) -> anyhow::Result<u64> {
    stat(pid)?["timers"]["pending"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no timers.pending"))
}

/// The timer modes; returns the mismatches.
fn timers(minor: &str, variant: &str, path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut bad = Vec::new();
    let tag = format!("Go {minor} {variant}");
    // leak: +100 per 100 requests.
    let mut p = start(path, "leak")?;
    let base = pending(p.pid())?;
    command(&mut p, "req 100", "done")?;
    let one = pending(p.pid())?;
    command(&mut p, "req 100", "done")?;
    let two = pending(p.pid())?;
    if one < base + 100 || two < one + 100 {
        bad.push(format!(
            "{tag} leak: pending {base} → {one} → {two}, want +100 per 100 requests"
        ));
    }
    drop(p);
    // stop: the stopped timers are not pending.
    let mut p = start(path, "stop")?;
    let base = pending(p.pid())?;
    command(&mut p, "req 200", "done")?;
    let after = pending(p.pid())?;
    if after > base + 2 {
        bad.push(format!(
            "{tag} stop: pending {base} → {after} after 200 stopped timers"
        ));
    }
    drop(p);
    // rearm: one timer pending at a time, however long it runs (requests arm none).
    let mut p = start(path, "rearm")?;
    command(&mut p, "req 200", "done")?;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(pending(p.pid())?);
        std::thread::sleep(Duration::from_millis(40));
    }
    if seen.iter().any(|&n| n > 2) {
        bad.push(format!(
            "{tag} rearm: pending {seen:?}, want at most the one re-armed timer"
        ));
    }
    drop(p);
    // Over time (`stat --interval`), with requests arriving all along: only the leak is
    // called one.
    for (mode, leak) in [("leak", true), ("stop", false), ("rearm", false)] {
        let mut p = Proc::spawn(Command::new(path).args(["-mode", mode, "-rate", "20"]))?;
        p.expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
        let out = Command::new(blockprobe_bin())
            .args(["stat", "--pid", &p.pid().to_string(), "--json"])
            .args(["--interval", "50ms", "--count", "8"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let counts: Vec<_> = lines
            .iter()
            .map(|l| l["timers"]["pending"].clone())
            .collect();
        // Flagged in some reading (the leak) or in none (the others).
        let flagged = lines.iter().any(|l| !l["timers"]["growth"].is_null());
        if lines.len() != 8 || flagged != leak {
            bad.push(format!(
                "{tag} {mode} -rate 20: {} readings, pending {counts:?}, flagged as growing: {flagged}",
                lines.len()
            ));
        }
    }
    Ok(bad)
}

/// `stat --interval` on goroutines leaked by one `go` statement, each holding a 64 KiB heap
/// buffer: the site is reported growing, with the heap's growth over the same window; the same
/// goroutines exiting after 5ms are not reported.
fn goroutine_leak(
    minor: &str,
    variant: &str,
    path: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    let mut bad = Vec::new();
    let tag = format!("Go {minor} {variant}");
    let line = blockprobe_tests::source_line("health", "go serve()");
    let site = format!("health/main.go:{line}");
    for (mode, leak) in [("goleak", true), ("gobusy", false)] {
        let mut p = Proc::spawn(Command::new(path).args(["-mode", mode, "-rate", "2"]))?;
        p.expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
        let out = Command::new(blockprobe_bin())
            .args(["stat", "--pid", &p.pid().to_string(), "--json"])
            .args(["--interval", "50ms", "--count", "10"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Every site flagged in some reading (the latest flag of each).
        let mut growing: Vec<Value> = Vec::new();
        for l in stdout.lines() {
            let v: Value = serde_json::from_str(l)?;
            for g in v["goroutines"]["growing"].as_array().into_iter().flatten() {
                growing.retain(|h| h["site"] != g["site"]);
                growing.push(g.clone());
            }
        }
        let found = growing
            .iter()
            .find(|g| g["site"].as_str().is_some_and(|s| s.ends_with(&site)));
        match (found, leak) {
            (Some(g), true) => {
                let more = g["growth"]["to"].as_u64().unwrap_or(0)
                    - g["growth"]["from"].as_u64().unwrap_or(0);
                let heap = &g["heap"];
                let grew = heap["heap_alloc_to"].as_i64().unwrap_or(0)
                    - heap["heap_alloc_from"].as_i64().unwrap_or(0);
                // Each leaked goroutine holds 64 KiB; half of that bounds the garbage a GC
                // in the window may have collected from the starting figure.
                if grew < (more as i64) * (32 << 10) {
                    bad.push(format!(
                        "{tag} goleak: {more} more goroutines but the heap grew by {grew} bytes: {g}"
                    ));
                }
            }
            (None, false) => {}
            (found, _) => {
                let counts: Vec<String> = stdout
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .map(|v| {
                        let by_site = v["goroutines"]["by_site"].as_object().cloned();
                        let n = by_site.and_then(|m| {
                            m.iter()
                                .find(|(k, _)| k.ends_with(&site))
                                .map(|(_, n)| n.clone())
                        });
                        format!("{}@{}", n.unwrap_or(Value::Null), v["unix_ms"])
                    })
                    .collect();
                bad.push(format!(
                    "{tag} {mode}: growing sites {growing:?} (want {site}: {leak}; found \
                     {found:?}); counts at the site per reading: {counts:?}"
                ))
            }
        }
    }
    Ok(bad)
}

type Job<'a> = (&'a str, &'a str, std::path::PathBuf);

fn run_all(f: fn(&str, &str, &std::path::Path) -> anyhow::Result<Vec<String>>) {
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for minor in MINORS {
        for variant in VARIANTS {
            match prepare_fixture(minor, variant, "health") {
                Some(p) => jobs.push((minor, variant, p)),
                None => return,
            }
        }
    }
    let jobs = Mutex::new(jobs);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let Some((minor, variant, path)) = jobs.lock().unwrap().pop() else {
                        break;
                    };
                    let r = f(minor, variant, &path)
                        .unwrap_or_else(|e| vec![format!("Go {minor} {variant}: {e:#}")]);
                    failures.lock().unwrap().extend(r);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn stat_matches_readmemstats() {
    run_all(oracle);
}

#[test]
fn stat_follows_a_memory_limit() {
    run_all(oracle_limited);
}

#[test]
fn goroutine_leak_comes_with_its_heap_growth() {
    run_all(goroutine_leak);
}

#[test]
fn timer_leak_grows_stop_and_rearm_do_not() {
    run_all(timers);
}

/// deploy/prometheus/health.rules.yml, unit-tested by promtool (installed by `cargo xtask
/// setup` with the `prometheus` Debian package).
#[test]
fn health_alert_rules_pass_promtool() {
    let dir = blockprobe_tests::workspace_root().join("deploy/prometheus");
    let out = match Command::new("promtool")
        .args(["test", "rules", "health.rules.test.yml"])
        .current_dir(&dir)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            blockprobe_tests::skip_or_fail(&format!("promtool not runnable: {e}"));
            return;
        }
    };
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let check = Command::new("promtool")
        .args(["check", "rules", "health.rules.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool ran above");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// A stripped program that never calls `runtime.ReadMemStats` links no `readmemstats_m`: the
/// globals are then found from functions every program links (gcMarkTermination, gcinit,
/// mallocinit; agent/src/health/globals.rs, whose unit test checks each recorded reference
/// against the symbol table). `leakticker` is such a program.
#[test]
fn stat_reads_a_stripped_program_without_readmemstats() {
    for minor in MINORS {
        let Some(path) = prepare_fixture(minor, "stripped", "leakticker") else {
            return;
        };
        let bytes = std::fs::read(&path).unwrap();
        let needle = b"runtime.readmemstats_m";
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "Go {minor}: leakticker links readmemstats_m; the test needs a program that does not"
        );
        let mut p = Proc::spawn(&mut Command::new(&path)).unwrap();
        p.expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
            .unwrap();
        let s = stat(p.pid()).unwrap_or_else(|e| panic!("Go {minor}: {e:#}"));
        assert_eq!(
            s["sources"]["globals"], "code",
            "Go {minor}: {}",
            s["sources"]
        );
        let cpus = std::thread::available_parallelism().unwrap().get() as f64;
        assert_eq!(num(&s["sched"]["gomaxprocs"]), cpus, "Go {minor}");
        let (inuse, sys) = (num(&s["memstats"]["HeapInuse"]), num(&s["memstats"]["Sys"]));
        assert!(
            inuse > 0.0 && inuse < sys,
            "Go {minor}: HeapInuse {inuse}, Sys {sys}"
        );
        // main sleeps between leaks: its timer is pending.
        assert!(
            num(&s["timers"]["pending"]) >= 1.0,
            "Go {minor}: {}",
            s["timers"]
        );
    }
}
