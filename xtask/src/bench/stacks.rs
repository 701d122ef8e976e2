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
    stacks(ctx).into()
}

fn stacks(ctx: &Ctx) -> Result<Value> {
    let mut cmd = Command::new(ctx.fixture(STACKS_FIXTURE));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut wl = Proc::spawn("workload", &mut cmd)?;
    let (mut out, mut err) = (
        wl.stdout_lines().context("workload stdout")?,
        wl.stderr_lines().context("workload stderr")?,
    );
    let result = (|| {
        let pid = wait_ready(&mut wl, &mut out, &mut err)?;
        // A third of the throughput runs' length per phase (3 phases), at least a second.
        let secs = (ctx.secs / 3.0).max(1.0);
        let got = Command::new(&ctx.agent)
            .args(["bench-stacks", "--pid", &pid.to_string()])
            .args(["--secs", &secs.to_string()])
            .output()
            .context("running blockprobe bench-stacks")?;
        if !got.status.success() {
            bail!(
                "blockprobe bench-stacks failed ({}): {}",
                got.status,
                String::from_utf8_lossy(&got.stderr)
            );
        }
        serde_json::from_slice::<Value>(&got.stdout).context("parsing bench-stacks' JSON")
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
