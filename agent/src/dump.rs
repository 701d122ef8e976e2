//! `blockprobe dump --pid N`: every goroutine of a live process in Go's own traceback style
//! (py-spy's `dump`, for Go). Reads the target's memory only: no eBPF, no ptrace stop, no signal.

use std::fmt::Write as _;

use serde::Serialize;

use crate::goruntime::GoBinary;
use crate::memory::ProcessMemory;
use crate::scan::{Scan, ScannedG, status};
use crate::summary::{self, Context};
use crate::unwind::{self, StackFrame};

/// One goroutine as `dump` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DumpedGoroutine {
    pub goid: u64,
    /// "chan receive", "running", "syscall", ...: the wait reason when waiting, else the status.
    pub state: String,
    /// Minutes blocked, when the runtime recorded `g.waitsince` (as Go's traceback prints it).
    pub wait_minutes: Option<u64>,
    /// What it waits on: ("chan", address) etc.
    pub object_kind: Option<String>,
    pub object: Option<String>,
    /// Innermost first. Empty for a running goroutine: its saved context is stale while it runs,
    /// and reading its live stack would need stopping it.
    pub stack: Vec<StackFrame>,
    pub created_by: Option<crate::report::CreationSite>,
}

/// Dumps the goroutines of a live process: reads its executable and its goroutine table.
pub fn dump_pid(pid: u32) -> Result<Vec<DumpedGoroutine>, crate::session::SessionError> {
    let exe = crate::procfs::exe_path(pid)?;
    let bin = GoBinary::open_as(format!("/proc/{pid}/exe"), &exe)?;
    let bias = crate::procfs::load_bias(
        &crate::procfs::maps(pid)?,
        &exe.to_string_lossy(),
        &bin.load_segments(),
    )
    .unwrap_or(0);
    let scan = crate::scan::Scanner::new(&bin, pid, bias)?.scan()?;
    Ok(collect(
        &bin,
        pid,
        bias,
        &scan,
        crate::session::monotonic_ns(),
    ))
}

/// Reads and describes every live goroutine. `bias` is the load bias (PIE).
pub fn collect(
    bin: &GoBinary,
    pid: u32,
    bias: u64,
    scan: &Scan,
    now_ns: u64,
) -> Vec<DumpedGoroutine> {
    let ctx = Context { bin, bias };
    let mem = ProcessMemory::new(pid);
    let l = &bin.layout.g;
    let word = |a: u64| mem.read_u64(a).ok();
    scan.goroutines
        .iter()
        .map(|g| {
            // Where its stack can be walked from: a parked goroutine's gobuf (mcall saved it in
            // gopark), a goroutine in a syscall's saved syscall pc/bp (src/runtime/proc.go,
            // reentersyscall; syscallbp exists from Go 1.23).
            let start = match g.status {
                status::WAITING | status::RUNNABLE | status::PREEMPTED => {
                    word(g.addr + u64::from(l.sched_pc)).zip(word(g.addr + u64::from(l.sched_bp)))
                }
                status::SYSCALL => l.syscallbp.and_then(|bp_off| {
                    word(g.addr + u64::from(l.syscallpc)).zip(word(g.addr + u64::from(bp_off)))
                }),
                _ => None,
            };
            let stack = start
                .map(|(pc, bp)| unwind::fp_walk(word, pc, bp))
                .map(|pcs| unwind::symbolize(bin, bias, &pcs))
                .unwrap_or_default();
            let (object_kind, object) = object_of(bin, g);
            DumpedGoroutine {
                goid: g.goid,
                state: state_of(bin, g),
                wait_minutes: (g.status == status::WAITING && g.waitsince > 0)
                    .then(|| now_ns.saturating_sub(g.waitsince as u64) / 60_000_000_000)
                    .filter(|&m| m >= 1),
                object_kind,
                object,
                stack,
                created_by: summary::creation_site(&ctx, g.gopc, g.parent_goid),
            }
        })
        .collect()
}

fn state_of(bin: &GoBinary, g: &ScannedG) -> String {
    if g.status == status::WAITING {
        bin.wait_reason(g.wait_reason).into_owned()
    } else {
        status::name(g.status).to_string()
    }
}

fn object_of(bin: &GoBinary, g: &ScannedG) -> (Option<String>, Option<String>) {
    let reason = bin.wait_reason(g.wait_reason);
    if let Some(addr) = g.sema_addr
        && let Some(kind) = crate::goruntime::syncobj::kind_for_reason(&reason)
        && let Some((name, obj)) = crate::goruntime::syncobj::object_of(kind as u32, addr, &reason)
    {
        return (Some(name.into()), Some(format!("{obj:#x}")));
    }
    match g.wait_chans.first() {
        Some(c) if reason == "select" => (Some("select".into()), Some(format!("{c:#x}"))),
        Some(c) => (Some("chan".into()), Some(format!("{c:#x}"))),
        None => (None, None),
    }
}

/// Go's traceback text: `goroutine N [state, M minutes]:`, the frames, `created by`.
pub fn render(goroutines: &[DumpedGoroutine]) -> String {
    let mut out = String::new();
    for g in goroutines {
        let minutes = match g.wait_minutes {
            Some(1) => ", 1 minute".to_string(),
            Some(m) => format!(", {m} minutes"),
            None => String::new(),
        };
        let _ = writeln!(out, "goroutine {} [{}{minutes}]:", g.goid, g.state);
        if let (Some(k), Some(o)) = (&g.object_kind, &g.object) {
            let _ = writeln!(out, "# waiting on {k} {o}");
        }
        for f in &g.stack {
            let _ = writeln!(out, "{}(...)\n\t{}:{}", f.function, f.file, f.line);
        }
        if let Some(c) = &g.created_by {
            let _ = writeln!(
                out,
                "created by {} in goroutine {}",
                c.function, c.parent_goid
            );
            if let Some(l) = &c.location {
                let _ = writeln!(out, "\t{l}");
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_go_tracebacks() {
        let g = DumpedGoroutine {
            goid: 7,
            state: "chan send".into(),
            wait_minutes: Some(2),
            object_kind: Some("chan".into()),
            object: Some("0xc000020060".into()),
            stack: vec![StackFrame {
                function: "main.worker".into(),
                file: "/src/main.go".into(),
                line: 41,
                inlined: false,
            }],
            created_by: Some(crate::report::CreationSite {
                function: "main.main".into(),
                location: Some("/src/main.go:39".into()),
                parent_goid: 1,
            }),
        };
        let text = render(&[g]);
        assert_eq!(
            text,
            "goroutine 7 [chan send, 2 minutes]:\n# waiting on chan 0xc000020060\n\
             main.worker(...)\n\t/src/main.go:41\ncreated by main.main in goroutine 1\n\
             \t/src/main.go:39\n\n"
        );
    }
}
