//! The stat bench: what one `blockprobe stat` reading costs the agent (CPU time per complete
//! reading of the heap, GC, scheduler, goroutine and timer figures). The health fixture runs
//! with 10 000 parked goroutines; `blockprobe bench-stat` reads it
//! 200 times and reports the thread CPU time per reading. The target is never stopped.
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::proc::Proc;
use super::runs::{Ctx, wait_ready};
use super::stacks::JsonRun;

pub const STAT_WORKLOAD: &str = "stat";
pub const STAT_FIXTURE: &str = "health";
/// The budget for one reading (issue: "less than 5 ms of agent CPU").
pub const STAT_BUDGET_MS: f64 = 5.0;
const PARKED: u32 = 10_000;

pub fn run_stat(ctx: &Ctx) -> JsonRun {
    stat(ctx).into()
}

fn stat(ctx: &Ctx) -> Result<Value> {
    let mut cmd = Command::new(ctx.fixture(STAT_FIXTURE));
    cmd.args(["-parked", &PARKED.to_string(), "-mode", "leak"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut wl = Proc::spawn("workload", &mut cmd)?;
    let (mut out, mut err) = (
        wl.stdout_lines().context("workload stdout")?,
        wl.stderr_lines().context("workload stderr")?,
    );
    let result = (|| {
        let pid = wait_ready(&mut wl, &mut out, &mut err)?;
        let got = Command::new(&ctx.agent)
            .args(["bench-stat", "--pid", &pid.to_string(), "--iters", "200"])
            .output()
            .context("running blockprobe bench-stat")?;
        if !got.status.success() {
            bail!(
                "blockprobe bench-stat failed ({}): {}",
                got.status,
                String::from_utf8_lossy(&got.stderr)
            );
        }
        serde_json::from_slice::<Value>(&got.stdout).context("parsing bench-stat's JSON")
    })();
    wl.stop(Duration::from_secs(2))?;
    result
}

/// One line for the console and the final table.
pub fn line(r: &JsonRun) -> String {
    let Some(v) = &r.result else {
        return format!("stat: failed: {}", r.error.as_deref().unwrap_or("unknown"));
    };
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mean_ms = f("cpu_us_mean") / 1e3;
    format!(
        "stat: one reading (heap, GC, scheduler, {} goroutines by state and site, timers) \
         costs {:.3} ms of agent CPU (max {:.3} ms; budget {STAT_BUDGET_MS} ms: {}), \
         {:.3} ms wall; setup {:.1} ms once",
        v["goroutines"],
        mean_ms,
        f("cpu_us_max") / 1e3,
        if mean_ms < STAT_BUDGET_MS {
            "met"
        } else {
            "MISSED"
        },
        f("wall_us_mean") / 1e3,
        f("setup_cpu_ms"),
    )
}
