//! `cargo xtask demo`: starts the `demo` fixture (goroutines that block), attaches
//! blockprobe to it for a few seconds and shows the report.
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::fixtures::{self, Variant};
use crate::setup::{self, GoWanted};
use crate::util;

const DEMO_FIXTURE: &str = "demo";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const ATTACH_DURATION: &str = "3s";

/// Kills and reaps the demo process however `demo` ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ready pid=1234` -> 1234.
pub fn parse_ready(line: &str) -> Option<u32> {
    line.trim()
        .strip_prefix("ready pid=")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn demo(root: &Path) -> Result<()> {
    let setup = setup::setup(root, &GoWanted::Newest)?;

    let agent = setup.build_agent()?;

    println!("\n==> building the demo fixture");
    let newest = setup::newest_go();
    let go: Vec<_> = setup
        .go
        .iter()
        .filter(|g| g.version == newest)
        .cloned()
        .collect();
    if go.is_empty() {
        bail!("Go {newest} is not installed: run `cargo xtask setup`");
    }
    fixtures::build(
        &setup,
        &fixtures::Selection {
            toolchains: &go,
            variants: &[Variant::Default],
            only: &[DEMO_FIXTURE],
        },
    )
    .context("building the demo fixture failed")?;
    let demo_bin = fixtures::binary_path(root, newest, Variant::Default, DEMO_FIXTURE);

    println!("\n==> starting the demo program");
    let mut cmd = Command::new(&demo_bin);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    util::announce(&cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", demo_bin.display()))?;
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().context("demo stdout")?;

    // Forward the demo's stdout, and hand its `ready pid=` line over. The thread keeps
    // draining the pipe afterwards so the demo never blocks on a full pipe.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("demo: {line}");
            if let Some(pid) = parse_ready(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(pid);
            }
        }
    });
    let pid = match rx.recv_timeout(READY_TIMEOUT) {
        Ok(pid) => pid,
        Err(mpsc::RecvTimeoutError::Timeout) => bail!(
            "the demo program did not print `ready pid=<pid>` within {}s",
            READY_TIMEOUT.as_secs()
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child.0.wait().ok();
            bail!(
                "the demo program closed its stdout without printing `ready pid=<pid>` (status: {})",
                status.map_or("unknown".into(), |s| s.to_string())
            )
        }
    };
    if pid != child.0.id() {
        println!(
            "demo: note: it reported pid {pid}, its process is {}",
            child.0.id()
        );
    }

    println!("\n==> attaching blockprobe for {ATTACH_DURATION}");
    let attached = util::run(Command::new(&agent).args([
        "attach",
        "--pid",
        &pid.to_string(),
        "--duration",
        ATTACH_DURATION,
    ]));
    println!("\n==> stopping the demo program");
    drop(child);
    attached.context("blockprobe attach failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        assert_eq!(parse_ready("ready pid=4242\n"), Some(4242));
        assert_eq!(parse_ready("ready pid=17 goroutines=5"), Some(17));
        assert_eq!(parse_ready("ready pid="), None);
        assert_eq!(parse_ready("starting"), None);
    }
}
