//! Shared harness for the end-to-end tests: where the fixtures and the agent are, running a
//! fixture, running `blockprobe`, and deciding whether eBPF tests can run here.
//!
//! `cargo xtask test` sets `BLOCKPROBE_FIXTURES`, `BLOCKPROBE_BIN` and `BLOCKPROBE_GO_VERSIONS`;
//! without them the defaults under `target/` are used. When `CI=true`, anything that would make
//! an eBPF test skip (no fixture, no privileges) is a failure instead.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skip (print why and return true) outside CI; fail in CI.
pub fn skip_or_fail(why: &str) -> bool {
    if in_ci() {
        panic!("CI=true and this test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
    true
}

pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("BLOCKPROBE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/fixtures"))
}

pub fn blockprobe_bin() -> PathBuf {
    std::env::var_os("BLOCKPROBE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/blockprobe"))
}

/// The fixture binary built by `cargo xtask fixtures`, e.g. `fixture("1.27.3", "pie", "parkers")`.
pub fn fixture(go: &str, variant: &str, name: &str) -> PathBuf {
    fixtures_dir()
        .join(format!("go{go}"))
        .join(variant)
        .join(name)
}

/// Full Go version installed for a minor series ("1.27" → "1.27.3"), from the fixtures dir.
pub fn go_version_for(minor: &str) -> Option<String> {
    let prefix = format!("go{minor}.");
    let mut found: Vec<String> = std::fs::read_dir(fixtures_dir())
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .map(|n| n.trim_start_matches("go").to_string())
        .collect();
    found.sort();
    found.pop()
}

/// Line number (1-based) of the first line of `tests/fixtures/<fixture>/main.go` containing
/// `needle`.
pub fn source_line(fixture: &str, needle: &str) -> usize {
    source_line_in(fixture, "main.go", needle)
}

/// Line number (1-based) of the first line of `tests/fixtures/<fixture>/<file>` containing
/// `needle`.
pub fn source_line_in(fixture: &str, file: &str, needle: &str) -> usize {
    let path = workspace_root().join(format!("tests/fixtures/{fixture}/{file}"));
    let src = std::fs::read_to_string(&path).expect("fixture source");
    src.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("`{needle}` not in {}", path.display()))
}

/// Whether this process can load eBPF programs (root or CAP_BPF+CAP_PERFMON+CAP_SYS_PTRACE).
pub fn ebpf_unavailable_reason() -> Option<String> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    let caps = blockprobe::privileges::effective_caps()?;
    let missing = blockprobe::privileges::missing_for_ebpf(caps);
    (!missing.is_empty()).then(|| format!("missing capabilities: {}", missing.join(", ")))
}

/// Everything needed before an eBPF e2e test; returns the fixture path, or None to skip.
pub fn prepare(go_minor: &str, variant: &str, name: &str) -> Option<PathBuf> {
    if let Some(why) = ebpf_unavailable_reason() {
        skip_or_fail(&why);
        return None;
    }
    prepare_fixture(go_minor, variant, name)
}

/// What a test without eBPF needs (the agent and a fixture); the fixture path, or None to skip.
pub fn prepare_fixture(go_minor: &str, variant: &str, name: &str) -> Option<PathBuf> {
    if !blockprobe_bin().exists() {
        skip_or_fail(&format!(
            "{} is not built (run `cargo xtask test`)",
            blockprobe_bin().display()
        ));
        return None;
    }
    let Some(go) = go_version_for(go_minor) else {
        skip_or_fail(&format!(
            "no fixtures built with Go {go_minor} under {} (run `cargo xtask fixtures --all-go`)",
            fixtures_dir().display()
        ));
        return None;
    };
    let path = fixture(&go, variant, name);
    if !path.exists() {
        skip_or_fail(&format!("fixture {} missing", path.display()));
        return None;
    }
    Some(path)
}

/// A running child process whose stdout/stderr lines arrive on channels. Killed on drop.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    pub stdout_seen: Vec<String>,
    pub stderr_seen: Vec<String>,
}

fn pump(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        let stdout = pump(child.stdout.take().expect("piped"));
        let stderr = pump(child.stderr.take().expect("piped"));
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            stdout_seen: Vec::new(),
            stderr_seen: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line satisfying `pred` and returns it.
    pub fn expect_stdout(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.stdout_seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    let stderr = self.drain_stderr();
                    bail!(
                        "timed out after {timeout:?} waiting for a stdout line; stdout so far: {:?}; stderr: {stderr:?}",
                        self.stdout_seen
                    )
                }
            }
        }
    }

    /// Waits for a stderr line satisfying `pred`.
    pub fn expect_stderr(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => bail!(
                    "timed out after {timeout:?} waiting for a stderr line; stderr so far: {:?}",
                    self.stderr_seen
                ),
            }
        }
    }

    pub fn drain_stderr(&mut self) -> Vec<String> {
        while let Ok(l) = self.stderr.try_recv() {
            self.stderr_seen.push(l);
        }
        self.stderr_seen.clone()
    }

    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("stdin closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for exit with a timeout; Err if it does not exit in time.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if std::time::Instant::now() > deadline {
                bail!("process {} did not exit within {timeout:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a fixture and waits for its `ready pid=` line.
pub fn start_ready(fixture: &Path) -> Proc {
    let mut target = Proc::spawn(&mut Command::new(fixture)).expect("start fixture");
    target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .expect("fixture ready");
    target
}

/// Starts `blockprobe attach --pid PID --json REPORT ARGS...` and waits until it says it is
/// attached.
pub fn attach_agent(pid: u32, report: &Path, args: &[&str]) -> Proc {
    let mut agent = Proc::spawn(
        Command::new(blockprobe_bin())
            .args(["attach", "--pid", &pid.to_string()])
            .args(args)
            .arg("--json")
            .arg(report),
    )
    .expect("start blockprobe");
    agent
        .expect_stderr(Duration::from_secs(20), |l| l.contains("attached to pid"))
        .expect("blockprobe attached");
    agent
}

/// Runs `blockprobe attach --pid PID --duration D --threshold 0s --json REPORT` to its end,
/// checks it succeeded, and returns the report.
pub fn attach_for(pid: u32, duration: &str, report: &Path) -> serde_json::Value {
    let mut agent = Proc::spawn(
        Command::new(blockprobe_bin())
            .args(["attach", "--pid", &pid.to_string()])
            .args(["--duration", duration, "--threshold", "0s", "--json"])
            .arg(report),
    )
    .expect("start blockprobe");
    let status = agent
        .wait_timeout(Duration::from_secs(30))
        .expect("blockprobe ends after --duration");
    assert!(
        status.success(),
        "blockprobe failed: {:?}",
        agent.drain_stderr()
    );
    read_report(report)
}

/// The agent's unit-test helpers for Go toolchains (`toolchains`, and `addr2line`, which runs
/// `go tool addr2line`), shared rather than written again.
#[path = "../../agent/tests/gofixtures/mod.rs"]
pub mod gofixtures;

/// `blockprobe dump --pid PID EXTRA...`: its stdout, once it has succeeded.
pub fn dump(pid: u32, extra: &[&str]) -> String {
    let out = Command::new(blockprobe_bin())
        .args(["dump", "--pid", &pid.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run blockprobe dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("dump is UTF-8")
}

/// `blockprobe dump --pid PID --json`: every goroutine.
pub fn dump_json(pid: u32) -> Vec<serde_json::Value> {
    serde_json::from_str(&dump(pid, &["--json"])).expect("dump --json is JSON")
}

/// The `demo` fixture's dump once its AB/BA deadlock (2 goroutines in sync.Mutex.Lock) and its
/// first five leaked senders (chan send) have formed, or the last dump after 10 s. `ready`
/// comes once the first requests timed out, but their last worker (20 ms) and the transfers
/// (50 ms) may still be sleeping on a loaded machine; the callers' assertions say what is
/// missing if they never form.
pub fn dump_demo_formed(pid: u32) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let gs = dump_json(pid);
        let count = |state: &str| gs.iter().filter(|g| g["state"] == state).count();
        let formed = count("sync.Mutex.Lock") >= 2 && count("chan send") >= 5;
        if formed || std::time::Instant::now() > deadline {
            return gs;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The JSON report blockprobe wrote to `path`.
pub fn read_report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("report written");
    serde_json::from_str(&text).expect("report is JSON")
}

/// A report's findings that no allow rule matched.
pub fn open_findings(report: &serde_json::Value) -> Vec<&serde_json::Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["allowed"] != true)
        .collect()
}

/// The value of `key=` in a whitespace-separated line, e.g. `kv("ready pid=7", "pid")`.
pub fn kv(line: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_string()
}

/// Whether a JSON string value ends with `suffix` (e.g. a `file:line` location).
pub fn ends_with(v: &serde_json::Value, suffix: &str) -> bool {
    v.as_str().is_some_and(|s| s.ends_with(suffix))
}

/// A scratch directory under target/, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = workspace_root().join("target/e2e-scratch").join(format!(
            "{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Expands to one `#[test]` per supported Go version × build variant, each calling
/// `$run(go_minor, variant)`.
#[macro_export]
macro_rules! go_matrix {
    ($run:ident) => {
        $crate::go_matrix!(@ $run;
            go1_22_default "1.22" "default"; go1_22_pie "1.22" "pie"; go1_22_stripped "1.22" "stripped";
            go1_23_default "1.23" "default"; go1_23_pie "1.23" "pie"; go1_23_stripped "1.23" "stripped";
            go1_24_default "1.24" "default"; go1_24_pie "1.24" "pie"; go1_24_stripped "1.24" "stripped";
            go1_25_default "1.25" "default"; go1_25_pie "1.25" "pie"; go1_25_stripped "1.25" "stripped";
            go1_26_default "1.26" "default"; go1_26_pie "1.26" "pie"; go1_26_stripped "1.26" "stripped";
            go1_27_default "1.27" "default"; go1_27_pie "1.27" "pie"; go1_27_stripped "1.27" "stripped";
        );
    };
    (@ $run:ident; $($name:ident $minor:literal $variant:literal;)*) => {
        $( #[test] fn $name() { $run($minor, $variant); } )*
    };
}
