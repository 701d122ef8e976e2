//! The stacks bench: what stacks of goroutines stuck inside C cost. The cgoblock fixture leaves
//! two threads asleep in C (a pipe read, a pthread mutex); `blockprobe bench-stacks` then times,
//! on them, the capture of a sleeping thread's registers and stack window, the first (cold)
//! stitched stacks with an empty module cache, the same stacks again (warm), and Go-only
//! symbolization for comparison. All in one invocation, on the same target.
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::proc::Proc;
use super::runs::{Ctx, wait_ready};

pub const STACKS_WORKLOAD: &str = "stacks";
pub const STACKS_FIXTURE: &str = "cgoblock";

/// One run of a hidden bench command of blockprobe (`bench-stacks`, `bench-stat`): its JSON, or
/// what went wrong.
pub struct JsonRun {
    pub result: Option<Value>,
    pub error: Option<String>,
}

impl From<Result<Value>> for JsonRun {
    fn from(r: Result<Value>) -> Self {
        match r {
            Ok(v) => JsonRun {
                result: Some(v),
                error: None,
            },
            Err(e) => JsonRun {
                result: None,
                error: Some(format!("{e:#}")),
            },
        }
    }
}

pub fn run_stacks(ctx: &Ctx) -> JsonRun {
    // A third of the throughput runs' length per phase (3 phases), at least a second.
    let secs = (ctx.secs / 3.0).max(1.0);
    let args = ["--secs".to_string(), secs.to_string()];
    hidden_command(
        ctx,
        Command::new(ctx.fixture(STACKS_FIXTURE)),
        "bench-stacks",
        &args,
    )
    .into()
}

/// Starts the workload `cmd` (stdout and stderr piped here), waits for its `ready pid=` line,
/// runs blockprobe's hidden bench command `sub --pid PID args...` on it and parses its JSON,
/// then stops the workload.
pub fn hidden_command(ctx: &Ctx, mut cmd: Command, sub: &str, args: &[String]) -> Result<Value> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut wl = Proc::spawn("workload", &mut cmd)?;
    let (mut out, mut err) = (
        wl.stdout_lines().context("workload stdout")?,
        wl.stderr_lines().context("workload stderr")?,
    );
    let result = (|| {
        let pid = wait_ready(&mut wl, &mut out, &mut err)?;
        let got = Command::new(&ctx.agent)
            .args([sub, "--pid", &pid.to_string()])
            .args(args)
            .output()
            .with_context(|| format!("running blockprobe {sub}"))?;
        if !got.status.success() {
            bail!(
                "blockprobe {sub} failed ({}): {}",
                got.status,
                String::from_utf8_lossy(&got.stderr)
            );
        }
        serde_json::from_slice::<Value>(&got.stdout)
            .with_context(|| format!("parsing {sub}'s JSON"))
    })();
    wl.stop(Duration::from_secs(2))?;
    result
}

/// One line for the console and the final table.
pub fn line(r: &JsonRun) -> String {
    let Some(v) = &r.result else {
        return format!(
            "stacks: failed: {}",
            r.error.as_deref().unwrap_or("unknown")
        );
    };
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "stacks: {} thread(s) in C, {:.1} frames each | capture {:.1} µs per thread \
         ({} KiB window) | stitched+symbolized: cold {:.0} stacks/s ({:.1} ms, module cache \
         empty), warm {:.0} stacks/s ({:.0}x cold) | Go-only {:.0} stacks/s",
        v["threads"],
        f("frames_per_stack"),
        f("capture_us"),
        v["window_bytes"].as_u64().unwrap_or(0) / 1024,
        f("cold_stacks_per_s"),
        f("cold_ms"),
        f("warm_stacks_per_s"),
        f("warm_stacks_per_s") / f("cold_stacks_per_s"),
        f("go_stacks_per_s"),
    )
}
