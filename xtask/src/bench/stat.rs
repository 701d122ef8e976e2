//! The stat bench: what one `blockprobe stat` reading costs the agent (CPU time per complete
//! reading of the heap, GC, scheduler, goroutine and timer figures). The health fixture runs
//! with 10 000 parked goroutines; `blockprobe bench-stat` reads it
//! 200 times and reports the thread CPU time per reading. The target is never stopped.
use std::process::{Command, Stdio};

use super::runs::Ctx;
use super::stacks::{JsonRun, hidden_command};

pub const STAT_WORKLOAD: &str = "stat";
pub const STAT_FIXTURE: &str = "health";
/// The budget for one reading (issue: "less than 5 ms of agent CPU").
pub const STAT_BUDGET_MS: f64 = 5.0;
const PARKED: u32 = 10_000;

pub fn run_stat(ctx: &Ctx) -> JsonRun {
    let mut cmd = Command::new(ctx.fixture(STAT_FIXTURE));
    // The fixture runs until its stdin closes.
    cmd.args(["-parked", &PARKED.to_string(), "-mode", "leak"])
        .stdin(Stdio::piped());
    hidden_command(
        ctx,
        cmd,
        "bench-stat",
        &["--iters".to_string(), "200".to_string()],
    )
    .into()
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
