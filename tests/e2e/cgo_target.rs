//! A cgo target (built with CGO_ENABLED=1, so externally linked by the system linker): the
//! binary analysis, the uprobes and the goroutine-table scan work on it too.

use std::process::Command;
use std::time::Duration;

use blockprobe_tests::{Proc, Scratch, attach_for, kv, prepare};

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
    // The goroutine inside C's read(): in _Gsyscall, on a thread the scheduler saw asleep in
    // the kernel's pipe read.
    let in_c = report["in_syscall"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["start_function"] == "main.main.func1")
        .unwrap_or_else(|| panic!("the goroutine in C is not reported: {report:#}"));
    assert!(in_c["tid"].as_u64().is_some(), "{in_c}");
    assert_eq!(in_c["thread"]["state"], "S", "{in_c}");
    let frames: Vec<&str> = in_c["thread"]["kernel_stack"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert!(frames.iter().any(|f| f.contains("pipe_read")), "{frames:?}");
    assert!(frames.iter().any(|f| f.contains("vfs_read")), "{frames:?}");
    assert!(
        report["warnings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(target.child.try_wait().unwrap().is_none(), "target died");
}

blockprobe_tests::go_matrix!(run);
