//! `blockprobe dump --pid N`: every goroutine in Go's traceback style, read from the live
//! process's memory, without eBPF and without stopping or signalling it.
//!
//! The oracle is the traceback the `demo` fixture prints of itself (`runtime.Stack(buf, true)`)
//! when it reads `stack` on stdin: the dump must list the goroutines it lists, and the stacks of
//! those blocked in both must agree with it frame by frame.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use blockprobe_tests::{
    Proc, dump, dump_demo_formed, dump_json, prepare, source_line, start_ready,
};
use serde_json::Value;

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "demo") else {
        return;
    };
    let mut target = start_ready(&fixture);
    let pid = target.pid();
    let gs = dump_demo_formed(pid);
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

    let text = dump(pid, &[]);
    assert!(text.contains("[sync.Mutex.Lock"), "{text}");
    assert!(text.contains("main.transfer(...)\n\t"), "{text}");
    assert!(text.contains(&lock_line), "{text}");
    assert!(
        text.contains("created by main.main in goroutine 1"),
        "{text}"
    );

    // The oracle, taken after the dump, then a second dump to tell stable goroutines apart.
    let oracle = parse_traceback(&oracle_lines(&mut target));
    let later = dump_json(pid);
    compare_with_oracle(go_minor, &gs, &oracle, &later);

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

/// Asks the fixture for its own traceback of all goroutines; returns the lines between the
/// markers.
fn oracle_lines(target: &mut Proc) -> Vec<String> {
    target
        .send_line("stack")
        .expect("ask the fixture for its traceback");
    let wait = Duration::from_secs(10);
    target
        .expect_stdout(wait, |l| l == "--- stack begin ---")
        .expect("the traceback begins");
    let mut lines = Vec::new();
    loop {
        let line = target
            .expect_stdout(wait, |_| true)
            .expect("the traceback ends");
        if line == "--- stack end ---" {
            return lines;
        }
        lines.push(line);
    }
}

/// One goroutine of a Go traceback: frames as (function, `file:line`, inlined).
#[derive(Debug)]
struct Traced {
    goid: u64,
    state: String,
    frames: Vec<(String, String, bool)>,
    /// (function, `file:line`) of the `go` statement.
    created_by: Option<(String, String)>,
}

/// Parses the text of src/runtime/traceback.go: `goroutineheader` (`goroutine N [state,
/// M minutes, locked to thread]:`), then per frame `function(args)` — `(...)` for an inlined
/// frame — and `\tfile:line +0xoff`, then `printcreatedby` (`created by F in goroutine M` and
/// its `\tfile:line +0xoff`).
fn parse_traceback(lines: &[String]) -> Vec<Traced> {
    let mut out: Vec<Traced> = Vec::new();
    // Whether the last line named a frame (false) or the creator (true), awaiting its location.
    let mut pending: Option<bool> = None;
    for line in lines {
        if let Some(h) = line
            .strip_prefix("goroutine ")
            .filter(|h| h.ends_with("]:"))
        {
            let (goid, rest) = h.split_once(' ').unwrap();
            let state = rest.trim_start_matches('[').trim_end_matches("]:");
            out.push(Traced {
                goid: goid.parse().unwrap(),
                // Drop ", N minutes", ", locked to thread" and the like.
                state: state.split(',').next().unwrap().to_string(),
                frames: Vec::new(),
                created_by: None,
            });
            pending = None;
            continue;
        }
        let Some(g) = out.last_mut() else { continue };
        if let Some(loc) = line.strip_prefix('\t') {
            let loc = loc.split(" +0x").next().unwrap().to_string();
            match pending.take() {
                Some(false) => g.frames.last_mut().unwrap().1 = loc,
                Some(true) => g.created_by.as_mut().unwrap().1 = loc,
                None => {} // "goroutine running on other thread; stack unavailable"
            }
        } else if let Some(c) = line.strip_prefix("created by ") {
            let function = c.split(" in goroutine ").next().unwrap();
            g.created_by = Some((function.to_string(), String::new()));
            pending = Some(true);
        } else if let Some(open) = line.rfind('(').filter(|_| line.ends_with(')')) {
            let inlined = &line[open..] == "(...)";
            g.frames
                .push((line[..open].to_string(), String::new(), inlined));
            pending = Some(false);
        }
        // Else a blank line, "...additional frames elided...", "[originating from ...]".
    }
    out
}

/// Whether Go's traceback at its default level shows a frame; `runtime.Stack` forces that
/// level (`m.traceback = 1`). src/runtime/traceback.go `showfuncinfo`: compiler-generated
/// wrappers are elided unless they call a panic (`elideWrapperCalling`); `runtime.gopanic` is
/// shown unless it is the first frame; otherwise a function is shown if its name has a package
/// and it is not in package runtime, or is exported from it (`isExportedRuntime`). So
/// runtime.gopark, chansend, semacquire1, goexit... are hidden, and time.Sleep (the runtime's
/// timeSleep, linknamed) and internal/sync.runtime_SemacquireMutex (likewise) are shown.
fn go_shows(frame: &Value, callee: Option<&Value>, first: bool) -> bool {
    let name = frame["function"].as_str().unwrap();
    let calls_panic = callee.is_some_and(|c| {
        ["runtime.gopanic", "runtime.sigpanic", "runtime.panicwrap"]
            .contains(&c["function"].as_str().unwrap())
    });
    if frame["wrapper"] == true && !calls_panic {
        return false;
    }
    if name == "runtime.gopanic" && !first {
        return true;
    }
    name.contains('.') && (!name.starts_with("runtime.") || is_exported_runtime(name))
}

/// src/runtime/traceback.go `isExportedRuntime`: `runtime.Gosched`, `runtime.(*Func).Name`.
fn is_exported_runtime(name: &str) -> bool {
    let Some(name) = name.strip_prefix("runtime.") else {
        return false;
    };
    let (rcvr, func) = name.rsplit_once('.').unwrap_or(("", name));
    let rcvr = rcvr
        .strip_prefix("(*")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(rcvr);
    let upper = |s: &str| s.starts_with(|c: char| c.is_ascii_uppercase());
    upper(func) && (rcvr.is_empty() || upper(rcvr))
}

/// A dumped goroutine's frames as Go's traceback would show them: (function, `file:line`,
/// inlined). The dump shows every frame, as GOTRACEBACK=system does.
fn shown_frames(g: &Value) -> Vec<(String, String, bool)> {
    let stack = g["stack"].as_array().unwrap();
    let mut shown = Vec::new();
    for (i, f) in stack.iter().enumerate() {
        let name = f["function"].as_str().unwrap();
        assert!(!name.starts_with('?'), "unsymbolized frame: {g:#}");
        if go_shows(f, i.checked_sub(1).map(|c| &stack[c]), shown.is_empty()) {
            let loc = format!("{}:{}", f["file"].as_str().unwrap(), f["line"]);
            shown.push((name.to_string(), loc, f["inlined"] == true));
        }
    }
    shown
}

/// What the dump says of the goroutine's creator, as Go prints it: `printcreatedby` leaves it
/// out for goroutine 1 and when the creator is a frame Go hides.
fn shown_creator(g: &Value) -> Option<(String, String)> {
    let c = &g["created_by"];
    let function = c["function"].as_str()?;
    let shown = go_shows(&serde_json::json!({ "function": function }), None, false);
    (shown && g["goid"] != 1).then(|| {
        (
            function.to_string(),
            c["location"].as_str().unwrap_or("").to_string(),
        )
    })
}

/// The done-when check of `dump`: it lists the goroutines the fixture's own traceback lists,
/// and for every goroutine blocked in both, in the same state, its stack agrees with the
/// traceback function by function, file:line by file:line, with the same creator.
///
/// Races: the fixture keeps running. Goroutine 1 alternates between `select` and `sleep`, each
/// request starts a worker that sleeps and then blocks in `chan send`, and the stdin reader
/// leaves read(2) to pass the request on. So a goroutine is compared only when its state is
/// the same in the dump before the traceback (`before`), in the traceback, and in a dump after
/// it (`after`), and both dumps show it with the same stack (one read while it moved between
/// its status and its stack would not be). Those blocked for good — the two transfers, the
/// leaked senders — must be among the compared.
fn compare_with_oracle(go_minor: &str, before: &[Value], oracle: &[Traced], after: &[Value]) {
    let by_goid = |gs: &[Value]| -> BTreeMap<u64, Value> {
        gs.iter()
            .map(|g| (g["goid"].as_u64().unwrap(), g.clone()))
            .collect()
    };
    let (before, after) = (by_goid(before), by_goid(after));
    let ctx = || format!("oracle: {oracle:#?}\ndump: {before:#?}");

    // Listed: every goroutine of the traceback but those that can exit in between (one whose
    // timer has not fired may yet be received from and return).
    for o in oracle {
        if !["running", "runnable", "sleep"].contains(&o.state.as_str()) {
            assert!(
                after.contains_key(&o.goid),
                "goroutine {} not dumped: {}",
                o.goid,
                ctx()
            );
        }
    }

    let mut compared = BTreeMap::new();
    for o in oracle {
        let (Some(b), Some(a)) = (before.get(&o.goid), after.get(&o.goid)) else {
            continue;
        };
        let stable =
            b["state"] == o.state.as_str() && a["state"] == b["state"] && a["stack"] == b["stack"];
        // Running: the dump has no stack (its saved registers are stale while it runs).
        if !stable || o.state == "running" {
            continue;
        }
        // g.syscallbp, where a walk of a goroutine in a system call starts, exists from Go 1.23
        // (src/runtime/runtime2.go); before, the dump shows no stack rather than a wrong one.
        if o.state == "syscall" && go_minor == "1.22" {
            assert_eq!(b["stack"], serde_json::json!([]), "{b:#}");
            continue;
        }
        assert_eq!(
            shown_frames(b),
            o.frames,
            "goroutine {} [{}]: the dump's frames (left) differ from the traceback's: {b:#}\n{o:#?}",
            o.goid,
            o.state
        );
        assert_eq!(
            shown_creator(b),
            o.created_by,
            "goroutine {}: {b:#}\n{o:#?}",
            o.goid
        );
        compared.insert(o.goid, o.state.as_str());
    }

    // Blocked in `state` in `f` in the traceback and already in the dump before it: the
    // transfers, and the senders leaked before `ready` (not those of later requests, which the
    // first dump may have seen still sleeping).
    let having = |f: &str, state: &str| -> BTreeSet<u64> {
        oracle
            .iter()
            .filter(|o| o.state == state && o.frames.iter().any(|fr| fr.0 == f))
            .filter(|o| before.get(&o.goid).is_some_and(|b| b["state"] == state))
            .map(|o| o.goid)
            .collect()
    };
    let transfers = having("main.transfer", "sync.Mutex.Lock");
    let senders = having("main.handle.func1", "chan send");
    assert_eq!(transfers.len(), 2, "{}", ctx());
    assert!(senders.len() >= 5, "{}", ctx());
    assert!(
        transfers.union(&senders).all(|g| compared.contains_key(g)),
        "compared {compared:?}, not all of the transfers {transfers:?} and senders {senders:?}: {}",
        ctx()
    );
    eprintln!(
        "go{go_minor}: compared {} goroutines with the traceback: {compared:?}",
        compared.len()
    );
}

blockprobe_tests::go_matrix!(run);
