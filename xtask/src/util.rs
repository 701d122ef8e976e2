//! Small helpers shared by the xtask commands: paths, running commands, timing.
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

/// The workspace root: the parent of this crate's manifest directory.
pub fn project_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where project-local tools live (git-ignored). `BLOCKPROBE_TOOLS_DIR` overrides it,
/// e.g. for a CI cache shared between checkouts.
pub fn tools_dir(root: &Path) -> PathBuf {
    match std::env::var_os("BLOCKPROBE_TOOLS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => root.join(".tools"),
    }
}

/// The cargo that runs us (set by `cargo run`), else `cargo` from PATH.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
}

/// `~/.cargo/bin` (or `$CARGO_HOME/bin`), where `cargo install` puts binaries.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h).join("bin"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").join("bin"))
}

/// Finds an executable on PATH, then in the cargo bin dir.
pub fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(cargo_bin_dir());
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// PATH with `dir` in front (unless it is already on PATH).
pub fn path_with(dir: &Path) -> std::ffi::OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&current).collect();
    if !dirs.iter().any(|d| d == dir) {
        dirs.insert(0, dir.to_path_buf());
    }
    std::env::join_paths(dirs).unwrap_or(current)
}

/// The effective user id, read from /proc (no libc needed); falls back to `id -u`.
pub fn euid() -> Option<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(uid) = parse_proc_status_euid(&status)
    {
        return Some(uid);
    }
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `Uid:\treal\teffective\tsaved\tfs` -> effective.
pub fn parse_proc_status_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A shell-like rendering of a command, with the env vars it sets, for `$ ` lines.
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        parts.push(format!("(cd {} &&", quote(dir.as_os_str())));
    }
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            parts.push(format!("{}={}", k.to_string_lossy(), quote(v)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    let mut s = parts.join(" ");
    if cmd.get_current_dir().is_some() {
        s.push(')');
    }
    s
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Prints `$ <command>` and flushes, so it appears before the command's own output.
pub fn announce(cmd: &Command) {
    println!("$ {}", display(cmd));
    let _ = std::io::stdout().flush();
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// Runs a command with inherited stdio; an error names the command and its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    announce(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({})", display(cmd), describe_status(status));
    }
    Ok(())
}

/// Runs a command and captures its output; does not check the exit status.
/// Used for quick probes (version checks); the command is printed all the same.
pub fn probe(cmd: &mut Command) -> Result<Output> {
    announce(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))
}

/// What a teed command printed, and how it ended.
pub struct Teed {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command, streaming its stdout and stderr to ours while also keeping a copy.
pub fn run_teed(cmd: &mut Command) -> Result<Teed> {
    announce(cmd);
    let mut child = cmd
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    let out = child.stdout.take().context("child stdout")?;
    let err = child.stderr.take().context("child stderr")?;
    let (stdout, stderr) = std::thread::scope(|s| {
        let o = s.spawn(|| pump(out, std::io::stdout()));
        let e = s.spawn(|| pump(err, std::io::stderr()));
        (o.join().unwrap_or_default(), e.join().unwrap_or_default())
    });
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{}`", display(cmd)))?;
    Ok(Teed {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Copies `from` to `to` chunk by chunk (partial lines show up at once) and keeps a copy.
fn pump(mut from: impl Read, mut to: impl Write) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = to.write_all(&buf[..n]);
                let _ = to.flush();
                kept.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    kept
}

/// Describes a failed teed command.
pub fn teed_failure(cmd: &Command, status: ExitStatus) -> String {
    format!("`{}` failed ({})", display(cmd), describe_status(status))
}

/// Seconds since `start`, for phase timings.
pub fn secs(start: Instant) -> String {
    format!("{:.1}s", start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euid_from_proc_status() {
        let s = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_proc_status_euid(s), Some(0));
        assert_eq!(parse_proc_status_euid("Name:\tx\n"), None);
        assert_eq!(parse_proc_status_euid("Uid:\tbad\n"), None);
    }

    #[test]
    fn display_quotes_and_shows_env() {
        let mut c = Command::new("go");
        c.args(["build", "-ldflags=-s -w", "-o", "out"])
            .env("CGO_ENABLED", "0");
        assert_eq!(
            display(&c),
            "CGO_ENABLED=0 go build '-ldflags=-s -w' -o out"
        );
    }

    #[test]
    fn path_with_prepends_once() {
        let d = Path::new("/nonexistent/xtask-test-dir");
        let p = path_with(d);
        let dirs: Vec<_> = std::env::split_paths(&p).collect();
        assert_eq!(dirs[0], d);
    }
}
