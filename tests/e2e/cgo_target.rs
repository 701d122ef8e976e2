//! A cgo target (built with CGO_ENABLED=1, so externally linked by the system linker): the
//! binary analysis and the goroutine-table scan work on it too, and the goroutines stuck inside
//! C get their whole stack: kernel frames, C frames (libc included, file:line where the C has
//! DWARF), the cgo boundary, and the Go frames up to the goroutine's start function, in order.

use std::process::Command;
use std::time::Duration;

use blockprobe_tests::{Proc, Scratch, attach_for, kv, open_findings, prepare, source_line};
use serde_json::Value;

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "cgoblock") else {
        return;
    };
    let scratch = Scratch::new(&format!("cgo-{go_minor}-{variant}"));
    let report_path = scratch.path("report.json");
    let mut target = Proc::spawn(&mut Command::new(&fixture)).expect("start cgoblock");
    let ready = target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .expect("cgoblock ready");
    let chan = kv(&ready, "chan");
    let report = attach_for(target.pid(), "300ms", &report_path);
    assert_eq!(report["target"]["cgo"], true, "{report:#}");
    assert_eq!(report["target"]["pie"], variant == "pie");
    let receiver = report["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["object"] == chan.as_str())
        .unwrap_or_else(|| panic!("receiver on {chan} not reported: {report:#}"));
    assert_eq!(receiver["wait_reason"], "chan receive");
    assert_eq!(receiver["start_function"], "main.main.func2");
    let exe = fixture.file_name().unwrap().to_str().unwrap();
    let dwarf = variant != "stripped";
    let line = |needle: &str| source_line("cgoblock", needle) as u64;

    // Inside C's read() on a pipe: in _Gsyscall, on the thread the fixture named, which the
    // scheduler saw asleep in the kernel's pipe read.
    let in_read = in_c(&report, "main.main.func1", &kv(&ready, "read_tid"));
    let frames = &in_read["stack"]["frames"];
    let kernel = kernel_functions(frames);
    assert!(kernel.iter().any(|f| f.contains("pipe_read")), "{kernel:?}");
    assert!(kernel.iter().any(|f| f.contains("vfs_read")), "{kernel:?}");
    let mut expect = vec![Want::c("libc.so.6", Some("read"), None)];
    if dwarf {
        // block_in_read is static, inlined into cgo's wrapper; DWARF keeps the inlined frame.
        expect.push(Want::c(
            exe,
            Some("block_in_read"),
            Some(line("return (int)read(fds[0]")),
        ));
        expect.push(Want::c(exe, Some("_Cfunc_block_in_read"), None));
    } else {
        expect.push(Want::c(exe, None, None));
    }
    expect.extend(go_tail(
        "main._Cfunc_block_in_read",
        "main.main.func1",
        line("C.block_in_read()"),
    ));
    assert_in_order(frames, &expect);

    // Self-deadlocked on a pthread mutex: asleep in futex(2) under pthread_mutex_lock.
    let in_lock = in_c(&report, "main.main.func3", &kv(&ready, "mutex_tid"));
    let frames = &in_lock["stack"]["frames"];
    let kernel = kernel_functions(frames);
    assert!(kernel.iter().any(|f| f.contains("futex")), "{kernel:?}");
    let mut expect = vec![Want::c("libc.so.6", Some("pthread_mutex_lock"), None)];
    if dwarf {
        expect.push(Want::c(
            exe,
            Some("take"),
            Some(line("int err = pthread_mutex_lock(m);")),
        ));
        expect.push(Want::c(
            exe,
            Some("deadlock_on_mutex"),
            Some(line("err |= take(&mu);")),
        ));
        expect.push(Want::c(exe, Some("_Cfunc_deadlock_on_mutex"), None));
    } else {
        expect.push(Want::c(exe, None, None));
    }
    expect.extend(go_tail(
        "main._Cfunc_deadlock_on_mutex",
        "main.main.func3",
        line("C.deadlock_on_mutex()"),
    ));
    assert_in_order(frames, &expect);
    // BP17: both are long cgo blocks, reported where the Go code made the call.
    for (g, needle) in [
        (in_read, "C.block_in_read()"),
        (in_lock, "C.deadlock_on_mutex()"),
    ] {
        let f = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["pattern"] == "BP17" && f["goroutines"][0] == g["goid"])
            .unwrap_or_else(|| panic!("no BP17 for goroutine {}: {report:#}", g["goid"]));
        let at = f["blocked_at"]["location"].as_str().unwrap();
        assert!(at.ends_with(&format!("main.go:{}", line(needle))), "{f:#}");
        let kernel = if needle.contains("read") {
            "pipe_read"
        } else {
            "futex"
        };
        assert!(f["explanation"].as_str().unwrap().contains(kernel), "{f:#}");
    }
    assert!(
        report["warnings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(target.child.try_wait().unwrap().is_none(), "target died");
    drop(target);

    // The negative: the same calls done right leave nothing in C and no finding.
    let mut target = Proc::spawn(Command::new(&fixture).arg("-ok")).expect("start cgoblock -ok");
    target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .expect("cgoblock -ok ready");
    let report = attach_for(target.pid(), "300ms", &scratch.path("ok.json"));
    assert_eq!(
        report["in_syscall"].as_array().map_or(0, Vec::len),
        0,
        "{report:#}"
    );
    let open = open_findings(&report);
    assert!(open.is_empty(), "{open:#?}");
}

/// The goroutine in C started by `start`, on the thread the fixture named, with a stitched stack
/// whose native part reached the Go code.
fn in_c<'a>(report: &'a Value, start: &str, tid: &str) -> &'a Value {
    let g = report["in_syscall"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["start_function"] == start)
        .unwrap_or_else(|| panic!("the goroutine {start} in C is not reported: {report:#}"));
    assert_eq!(g["tid"].to_string(), tid, "{g:#}");
    assert_eq!(g["thread"]["state"], "S", "{g:#}");
    assert_eq!(g["stack"]["native_end"], "cgo", "{g:#}");
    g
}

/// The kernel frames, which must all come first.
fn kernel_functions(frames: &Value) -> Vec<&str> {
    let frames = frames.as_array().expect("frames");
    let n = frames.iter().take_while(|f| f["kind"] == "kernel").count();
    assert!(n > 0, "no kernel frames: {frames:#?}");
    assert!(
        frames[n..].iter().all(|f| f["kind"] != "kernel"),
        "kernel frames after user ones: {frames:#?}"
    );
    frames[..n]
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect()
}

/// A frame expected in a stack: its kind, module, a piece of its function name, its line.
struct Want {
    kind: &'static str,
    module: Option<String>,
    function: Option<String>,
    line: Option<u64>,
    boundary: bool,
}

impl Want {
    fn c(module: &str, function: Option<&str>, line: Option<u64>) -> Self {
        Self {
            kind: "c",
            module: Some(module.to_string()),
            function: function.map(str::to_string),
            line,
            boundary: false,
        }
    }

    fn go(function: &str, line: Option<u64>) -> Self {
        Self {
            kind: "go",
            module: None,
            function: Some(function.to_string()),
            line,
            boundary: false,
        }
    }

    fn matches(&self, f: &Value) -> bool {
        f["kind"] == self.kind
            && self
                .module
                .as_ref()
                .is_none_or(|m| f["module"] == m.as_str())
            && self.function.as_ref().is_none_or(|n| {
                f["function"]
                    .as_str()
                    .is_some_and(|s| s == n || (self.kind == "c" && s.contains(n.as_str())))
            })
            && self.line.is_none_or(|l| f["line"] == l)
            && (!self.boundary || f["cgo_boundary"] == true)
    }
}

/// The cgo boundary and the Go frames that made the call, up to the goroutine's start function.
fn go_tail(cfunc: &str, start: &str, start_line: u64) -> Vec<Want> {
    vec![
        Want {
            boundary: true,
            ..Want::go("runtime.asmcgocall", None)
        },
        Want::go("runtime.cgocall", None),
        Want::go(cfunc, None),
        Want::go(start, Some(start_line)),
    ]
}

/// Each wanted frame appears, in this order, after the kernel frames; the native ones come
/// right after each other (no frame skipped between libc and the boundary).
fn assert_in_order(frames: &Value, want: &[Want]) {
    let frames = frames.as_array().unwrap();
    let user = frames.iter().skip_while(|f| f["kind"] == "kernel");
    let mut at = 0;
    let mut seen = Vec::new();
    for f in user {
        if at < want.len() && want[at].matches(f) {
            seen.push(at);
            at += 1;
        } else if at < want.len() && want[at].kind == "c" && at > 0 {
            panic!(
                "frame {f} is not the expected {:?} {:?} (line {:?}): {frames:#?}",
                want[at].module, want[at].function, want[at].line
            );
        }
    }
    assert_eq!(
        at,
        want.len(),
        "frames missing or out of order (matched {seen:?}): {frames:#?}"
    );
}

blockprobe_tests::go_matrix!(run);
