//! How a session begins and ends when things are not as expected: the target exits mid-session,
//! the PID is gone, the target is not Go, the file is not ELF, the user lacks privileges. Each
//! must give a clear error (exit code 1, never a panic's 101) and leave the target unharmed.

use std::process::{Command, Stdio};
use std::time::Duration;

use blockprobe_tests::{
    Proc, Scratch, attach_agent, blockprobe_bin, prepare, read_report, skip_or_fail, start_ready,
};

fn blockprobe(args: &[&str]) -> (i32, String) {
    let out = Command::new(blockprobe_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run blockprobe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn target_exiting_mid_session_ends_it_with_a_report() {
    for mode in ["scan", "precise"] {
        target_exiting(mode);
    }
}

fn target_exiting(mode: &str) {
    let Some(fixture) = prepare("1.27", "default", "parkers") else {
        return;
    };
    let scratch = Scratch::new(&format!("exit-{mode}"));
    let report_path = scratch.path("report.json");
    let mut target = start_ready(&fixture);
    let mut agent = attach_agent(
        target.pid(),
        &report_path,
        &["--mode", mode, "--threshold", "0s"],
    );
    target.send_line("go").unwrap();
    target
        .expect_stdout(Duration::from_secs(10), |l| l == "done")
        .unwrap();
    // Scan mode trusts a wait seen by two scans in a row (100 ms apart by default).
    std::thread::sleep(Duration::from_millis(300));
    // SIGUSR1: a summary now, on stderr, and the session goes on.
    agent.signal(libc::SIGUSR1);
    agent
        .expect_stderr(Duration::from_secs(5), |l| {
            l.contains("goroutine(s) blocked for at least")
        })
        .expect("a live summary on SIGUSR1");
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "SIGUSR1 ended the session"
    );
    target.child.kill().unwrap();
    target.child.wait().unwrap();

    let status = agent
        .wait_timeout(Duration::from_secs(10))
        .expect("blockprobe ends when its target exits");
    assert!(status.success(), "{:?}", agent.drain_stderr());
    let report = read_report(&report_path);
    assert_eq!(report["end_reason"], "target-exited");
    // What was blocked when it died is still reported (the goleak use case).
    let reasons: Vec<&str> = report["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["wait_reason"].as_str())
        .collect();
    assert!(reasons.contains(&"chan receive"), "{report:#}");
    assert!(reasons.contains(&"sync.Mutex.Lock"), "{report:#}");
}

#[test]
fn target_exec_ing_another_program_ends_the_session() {
    for mode in ["scan", "precise"] {
        target_exec_ing(mode);
    }
}

fn target_exec_ing(mode: &str) {
    let Some(fixture) = prepare("1.27", "default", "parkers") else {
        return;
    };
    let scratch = Scratch::new(&format!("exec-{mode}"));
    let report_path = scratch.path("report.json");
    let mut target = start_ready(&fixture);
    let mut agent = attach_agent(target.pid(), &report_path, &["--mode", mode]);
    target.send_line("exec").unwrap();
    let status = agent
        .wait_timeout(Duration::from_secs(10))
        .expect("blockprobe ends when its target execs");
    assert!(status.success(), "{:?}", agent.drain_stderr());
    let report = read_report(&report_path);
    assert_eq!(report["end_reason"], "target-exited");
    // The new program runs on, untouched.
    std::thread::sleep(Duration::from_millis(200));
    assert!(target.child.try_wait().unwrap().is_none(), "sleep died");
    let exe = std::fs::read_link(format!("/proc/{}/exe", target.pid())).unwrap();
    assert!(exe.ends_with("sleep"), "{}", exe.display());
}

#[test]
fn a_pid_that_is_gone_is_a_clear_error() {
    // A pid that existed and is now reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let (code, err) = blockprobe(&["attach", "--pid", &pid.to_string(), "--duration", "1s"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("process {pid} does not exist")),
        "{err}"
    );
}

#[test]
fn a_process_that_is_not_go_is_refused_before_attaching() {
    if blockprobe_tests::ebpf_unavailable_reason().is_some() {
        skip_or_fail("needs root to read another process's executable");
        return;
    }
    let sleeper = Proc::spawn(Command::new("sleep").arg("30")).unwrap();
    let (code, err) = blockprobe(&[
        "attach",
        "--pid",
        &sleeper.pid().to_string(),
        "--duration",
        "1s",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a Go binary"), "{err}");
}

#[test]
fn inspect_rejects_non_go_and_non_elf_files_clearly() {
    let (code, err) = blockprobe(&["inspect", "/bin/true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a Go binary"), "{err}");

    let scratch = Scratch::new("inspect");
    let text = scratch.path("notes.txt");
    std::fs::write(&text, "hello\n").unwrap();
    let (code, err) = blockprobe(&["inspect", text.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not an ELF executable"), "{err}");

    let (code, err) = blockprobe(&["inspect", "/nonexistent/prog"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot read /nonexistent/prog"), "{err}");
}

#[test]
fn an_unprivileged_user_is_told_what_is_missing() {
    let Some(fixture) = prepare("1.27", "default", "parkers") else {
        return;
    };
    if Command::new("setpriv").arg("--version").output().is_err() {
        skip_or_fail("setpriv (util-linux) is not installed");
        return;
    }
    let mut target = Proc::spawn(&mut Command::new(&fixture)).unwrap();
    target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .unwrap();
    // Run blockprobe as `nobody`, with no capabilities.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(blockprobe_bin())
        .args([
            "attach",
            "--pid",
            &target.pid().to_string(),
            "--duration",
            "1s",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs root"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
    assert!(err.contains("CAP_SYS_PTRACE"), "{err}");
    assert!(target.child.try_wait().unwrap().is_none(), "target died");
}

/// A copy of a fixture with `edit` applied to its bytes.
fn patched_fixture(scratch: &Scratch, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let go = blockprobe_tests::go_version_for("1.27").expect("Go 1.27 fixtures");
    let src = blockprobe_tests::fixture(&go, "default", "parkers");
    let mut bytes = std::fs::read(&src).expect("read fixture");
    edit(&mut bytes);
    let out = scratch.path(name);
    std::fs::write(&out, &bytes).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    out.to_string_lossy().into_owned()
}

#[test]
fn unsupported_go_versions_and_architectures_are_refused_before_anything_runs() {
    if prepare("1.27", "default", "parkers").is_none() {
        return;
    }
    let scratch = Scratch::new("unsupported");
    // The build info says go1.17.3 (same length as go1.27.3, so the varint prefix holds).
    let old_go = patched_fixture(&scratch, "oldgo", |b| {
        // The version string in .go.buildinfo, right after its header (src/debug/buildinfo).
        let magic = b"\xff Go buildinf:";
        let info = b
            .windows(magic.len())
            .position(|w| w == magic)
            .expect("buildinfo header");
        let at = info
            + b[info..]
                .windows(7)
                .position(|w| w == b"go1.27.")
                .expect("version string after the buildinfo header");
        b[at..at + 6].copy_from_slice(b"go1.17");
    });
    let (code, err) = blockprobe(&["inspect", &old_go]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("was built by go1.17"), "{err}");
    assert!(err.contains("supports Go 1.22 to 1.27"), "{err}");
    // `run` refuses it before starting it: the program never prints its ready line.
    let out = Command::new(blockprobe_bin())
        .args(["run", "--", &old_go])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "the program ran: {:?}", out.stdout);
    assert!(String::from_utf8_lossy(&out.stderr).contains("was built by go1.17"));

    // The ELF header says aarch64 (e_machine at offset 18).
    let arm = patched_fixture(&scratch, "arm64", |b| {
        b[18..20].copy_from_slice(&183u16.to_le_bytes());
    });
    let (code, err) = blockprobe(&["inspect", &arm]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("supports linux/amd64 Go binaries only"),
        "{err}"
    );
}
