//! `blockprobe dump --pid N`: every goroutine of a live process in Go's own traceback style
//! (py-spy's `dump`, for Go). Reads the target's memory only: no eBPF, no ptrace stop, no signal.

use std::fmt::Write as _;

use serde::Serialize;

use crate::goruntime::GoBinary;
use crate::memory::ProcessMemory;
use crate::model::Goroutine;
use crate::scan::{Scan, ScannedG, status};
use crate::summary::{self, Context};
use crate::unwind::{self, Innermost, StackFrame};

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
    /// and reading its live stack would need stopping it. Every frame, the runtime's included,
    /// as Go's traceback shows them at GOTRACEBACK=system; at its default level it hides the
    /// runtime's unexported functions and compiler-generated wrappers (src/runtime/traceback.go
    /// `showfuncinfo`), which `StackFrame::wrapper` marks. Positions are looked up as that
    /// traceback does (`unwinder.symPC`): every PC walked from a saved context is a return
    /// address (see `unwind::lookup_pcs`). tests/e2e/dump.rs checks all of this against the
    /// traceback a fixture prints of itself. Each frame carries the link-time address it was
    /// looked up at (`pc`, JSON only), which tests/e2e/addr2line.rs checks with `go tool addr2line`.
    pub stack: Vec<StackFrame>,
    pub created_by: Option<crate::report::CreationSite>,
}

/// Dumps the goroutines of a live process: reads its executable and its goroutine table.
pub fn dump_pid(pid: u32) -> Result<Vec<DumpedGoroutine>, crate::session::SessionError> {
    let (bin, exe) = crate::session::open_target(pid)?;
    let bias = crate::session::load_bias(pid, &exe, &bin);
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
    let l = &bin.layout.g;
    // Where each stack can be walked from: a parked goroutine's gobuf (mcall saved it in
    // gopark), a goroutine in a syscall's saved syscall pc/bp (src/runtime/proc.go,
    // reentersyscall; syscallbp exists from Go 1.23). A running goroutine's are stale.
    let walks: Vec<(u64, u64, [u32; 2])> = scan
        .goroutines
        .iter()
        .filter_map(|g| {
            let offs = match g.status {
                status::WAITING | status::RUNNABLE | status::PREEMPTED => {
                    Some([l.sched_pc, l.sched_bp])
                }
                status::SYSCALL => l.syscallbp.map(|bp| [l.syscallpc, bp]),
                _ => None,
            }?;
            Some((g.goid, g.addr, offs))
        })
        .collect();
    let mem = ProcessMemory::new(pid);
    let stacks = unwind::walk_from_gs(&mem, &walks);
    scan.goroutines
        .iter()
        .map(|g| {
            let pcs = stacks.get(&g.goid);
            let stack = pcs
                .map(|pcs| {
                    unwind::symbolize_stack_with_pcs(bin, bias, pcs, Innermost::ReturnAddress)
                })
                .unwrap_or_default();
            let (object_kind, object) = object_of(bin, bias, &mem, g, pcs.map_or(&[], |p| p));
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

/// What a waiting goroutine waits on, by the same rule as the session's reports (the stack
/// settles pre-1.24 WaitGroups and Conds, see `syncwait`).
fn object_of(
    bin: &GoBinary,
    bias: u64,
    mem: &ProcessMemory,
    g: &ScannedG,
    pcs: &[u64],
) -> (Option<String>, Option<String>) {
    if g.status != status::WAITING {
        return (None, None);
    }
    let mut view = Goroutine {
        g_addr: g.addr,
        reason: g.wait_reason,
        ..Goroutine::default()
    };
    view.set_scanned_wait(g, &bin.wait_reason(g.wait_reason));
    crate::syncwait::refine(bin, bias, mem, &mut view, pcs);
    match summary::wait_object(bin, &view) {
        ("none", _) => (None, None),
        (kind, addr) => (Some(kind.to_string()), Some(summary::hex(addr))),
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
                wrapper: false,
                pc: Some(0x4a1f2b),
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
