//! The capabilities deploy/k8s/daemonset.yaml grants, tried for real on this machine (no
//! cluster can run here, but the kernel's checks can): blockprobe runs as UID 0 with exactly
//! that capability set (the bounding set after `setpriv`, as a container with `drop: [ALL]` and
//! those `add:`s gets it), against a Go program of another user whose executable that user made
//! unreadable to others (mode 0711).
//!
//! - With the DaemonSet's set, `daemon` and scan-mode `attach` work. Precise mode's uprobes
//!   need CAP_SYS_ADMIN as well on current kernels (see below); the DaemonSet does not use them.
//! - Without CAP_DAC_READ_SEARCH, the kernel refuses to open the executable (fs/namei.c
//!   generic_permission: no CAP_DAC_OVERRIDE either, since the container drops it).
//! - Without CAP_BPF, CAP_PERFMON or CAP_SYS_PTRACE, blockprobe refuses to start, naming it.
//!
//! Not emulated: namespaces, seccomp, AppArmor (docs/deploy.md says what those need).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use blockprobe_tests::{Proc, blockprobe_bin, prepare, skip_or_fail, workspace_root};

const NOBODY: &str = "65534";

/// The capabilities the DaemonSet adds, from the manifest itself.
fn daemonset_caps() -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join("deploy/k8s/daemonset.yaml")).unwrap();
    let mut caps = Vec::new();
    let mut in_add = false;
    for line in text.lines() {
        let t = line.trim();
        if t == "add:" {
            in_add = true;
        } else if in_add && let Some(cap) = t.strip_prefix("- ") {
            caps.push(cap.to_string());
        } else if in_add && !t.starts_with('#') {
            in_add = false;
        }
    }
    assert!(!caps.is_empty(), "no capabilities.add in daemonset.yaml");
    caps
}

/// `setpriv` running `blockprobe ARGS` as UID 0 with only `caps` (bounding set; root's
/// permitted and effective sets become it at exec).
fn with_caps(caps: &[String], args: &[&str]) -> Command {
    let set: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--bounding-set=-all,{}", set.join(",")))
        .arg("--inh-caps=-all")
        .arg(blockprobe_bin())
        .args(args);
    cmd
}

fn without(caps: &[String], drop: &str) -> Vec<String> {
    caps.iter().filter(|c| *c != drop).cloned().collect()
}

/// The demo fixture, copied to a directory of its own as nobody's, mode 0711, and started as
/// nobody.
fn start_unreadable_target(fixture: &Path) -> (Proc, PathBuf) {
    let dir = std::env::temp_dir().join(format!("blockprobe-caps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("demo");
    std::fs::copy(fixture, &exe).unwrap();
    std::os::unix::fs::chown(&exe, Some(65534), Some(65534)).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut target = Proc::spawn(
        Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .arg(&exe),
    )
    .expect("start the fixture as nobody");
    target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .expect("fixture ready");
    (target, dir)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run setpriv blockprobe");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// GET /metrics over plain HTTP/1.0.
fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn the_daemonset_capabilities_suffice_and_are_needed() {
    let Some(fixture) = prepare("1.27", "default", "demo") else {
        return;
    };
    if Command::new("setpriv").arg("--version").output().is_err() {
        skip_or_fail("setpriv (util-linux) is missing");
        return;
    }
    let caps = daemonset_caps();
    let (target, dir) = start_unreadable_target(&fixture);
    let pid = target.pid().to_string();

    // Scan mode: what the daemon runs.
    let (ok, text) = run(&mut with_caps(
        &caps,
        &["attach", "--pid", &pid, "--duration", "1500ms"],
    ));
    assert!(ok, "scan mode with {caps:?}:\n{text}");
    assert!(text.contains("mutex-deadlock"), "{text}");
    // Precise mode's uprobes: since a 2025 kernel change ("perf: Require CAP_SYS_ADMIN for
    // uprobes", kernel/events/core.c perf_uprobe_event_init) CAP_PERFMON no longer opens a
    // uprobe perf event; before it, it did. The DaemonSet runs scan mode only.
    let (ok, text) = run(&mut with_caps(
        &caps,
        &[
            "attach",
            "--pid",
            &pid,
            "--mode",
            "precise",
            "--duration",
            "1s",
        ],
    ));
    // When refused, blockprobe says what is missing (agent/src/privileges.rs, uprobe_refusal).
    assert!(
        ok || text.contains("this kernel requires CAP_SYS_ADMIN (or root) for uprobes"),
        "precise mode with {caps:?}:\n{text}"
    );
    let mut admin = caps.clone();
    admin.push("SYS_ADMIN".into());
    let (ok, text) = run(&mut with_caps(
        &admin,
        &[
            "attach",
            "--pid",
            &pid,
            "--mode",
            "precise",
            "--duration",
            "1500ms",
        ],
    ));
    assert!(
        ok && text.contains("mutex-deadlock"),
        "precise mode with {admin:?}:\n{text}"
    );

    // The daemon, as the DaemonSet runs it (on loopback here), finds the target.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let regex = format!("^{}", dir.display());
    let mut daemon = Proc::spawn(&mut with_caps(
        &caps,
        &[
            "daemon",
            "--metrics",
            &format!("127.0.0.1:{port}"),
            "--match",
            "path",
            &regex,
        ],
    ))
    .expect("start the daemon");
    let want = format!("pid=\"{pid}\"");
    let start = Instant::now();
    let metrics = loop {
        match scrape(port) {
            Some(m)
                if m.lines()
                    .any(|l| l.starts_with("blockprobe_goroutines{") && l.contains(&want)) =>
            {
                break m;
            }
            m if start.elapsed() > Duration::from_secs(20) => {
                panic!(
                    "no blockprobe_goroutines series for {want}; last scrape:\n{}\nstderr: {:?}",
                    m.unwrap_or_default(),
                    daemon.drain_stderr()
                );
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    assert!(metrics.contains("blockprobe_target_info{"), "{metrics}");
    daemon.signal(libc::SIGTERM);
    let st = daemon
        .wait_timeout(Duration::from_secs(10))
        .expect("daemon exits");
    assert!(st.success(), "{st:?} {:?}", daemon.drain_stderr());

    // Without CAP_DAC_READ_SEARCH the kernel keeps the executable closed (even `dump`, which
    // needs no eBPF).
    let (ok, text) = run(&mut with_caps(
        &without(&caps, "DAC_READ_SEARCH"),
        &["dump", "--pid", &pid],
    ));
    assert!(!ok && text.contains("Permission denied"), "{text}");

    // Without each of the eBPF ones, blockprobe says which is missing.
    for cap in ["BPF", "PERFMON", "SYS_PTRACE"] {
        let (ok, text) = run(&mut with_caps(
            &without(&caps, cap),
            &["attach", "--pid", &pid, "--duration", "1s"],
        ));
        assert!(
            !ok && text.contains(&format!("missing: CAP_{cap}")),
            "without {cap}:\n{text}"
        );
    }
    drop(target);
    let _ = std::fs::remove_dir_all(&dir);
}
