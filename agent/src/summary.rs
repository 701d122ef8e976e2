//! From the live model to the report: which goroutines are blocked, on what, since when, and
//! where they were created.

use crate::goruntime::{GoBinary, syncobj};
use crate::memory::ProcessMemory;
use crate::model::{Goroutine, Model};
use crate::native::stitch::{CgoUnwinder, SavedSyscall};
use rustc_hash::FxHashMap;

use crate::report::{
    BlockedGoroutine, BlockingSite, CreationSite, Hex, RunningGoroutine, SyscallGoroutine, Text,
};
use crate::scan::{Scan, status};
use crate::threads::{self, ThreadState};
use crate::unwind::{self, StackFrame};

/// Everything the report needs to know about the target besides the model.
pub struct Context<'a> {
    pub bin: &'a GoBinary,
    /// Load bias of the executable (PIE), to turn runtime PCs into link-time ones.
    pub bias: u64,
}

pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// The blocked goroutines (at least `threshold_ns` at `now`), and how many of the runtime's own
/// goroutines were left out.
pub fn blocked<S: std::hash::BuildHasher>(
    ctx: &Context<'_>,
    model: &Model,
    now: u64,
    threshold_ns: u64,
    stacks: &std::collections::HashMap<u64, unwind::Stack, S>,
) -> Blocked {
    let (bin, bias) = (ctx.bin, ctx.bias);
    let mut interned = Interner::default();
    let waiting = model.blocked(now, threshold_ns);
    // Sized once: growing a vector of 100k entries by doubling holds both copies at a time.
    let mut blocked = Vec::with_capacity(waiting.len());
    let mut runtime_goroutines_hidden = 0;
    // One lookup and one copy per distinct PC or reason, however many goroutines share it.
    let mut funcs: FxHashMap<u64, Option<Text>> = FxHashMap::default();
    let mut func = |pc: u64| -> Option<Text> {
        funcs
            .entry(pc)
            .or_insert_with(|| bin.func_name(pc.wrapping_sub(bias)).map(Text::from))
            .clone()
    };
    let mut sites: FxHashMap<u64, Option<(Text, Option<Text>)>> = FxHashMap::default();
    let mut reasons: FxHashMap<u32, Text> = FxHashMap::default();
    let unknown: Text = Text::from("?");
    for g in waiting {
        let start_function = func(g.startpc);
        if start_function
            .as_deref()
            .is_some_and(is_runtime_start_function)
        {
            runtime_goroutines_hidden += 1;
            continue;
        }
        let (object_kind, object) = wait_object(bin, g);
        let created_by = sites
            .entry(g.gopc)
            .or_insert_with(|| go_statement(ctx, g.gopc))
            .clone()
            // As in `creation_site`: the main goroutine has no creator worth naming.
            .filter(|_| g.parent_goid != 0)
            .map(|(function, location)| CreationSite {
                function,
                location,
                parent_goid: g.parent_goid,
            });
        blocked.push(BlockedGoroutine {
            goid: g.goid,
            wait_reason: reasons
                .entry(g.reason)
                .or_insert_with(|| Text::from(bin.wait_reason(g.reason).as_ref()))
                .clone(),
            wait_reason_code: g.reason,
            blocked_ns: now.saturating_sub(g.parked_at_ns.unwrap_or(now)),
            object_kind,
            object: Hex(object),
            // Without the probe's return address (a park precise mode took from its table, or
            // a scan found), gopark's caller is the walked stack's second frame.
            parked_in: func(g.park_pc)
                .or_else(|| func(stacks.get(&g.goid).and_then(|s| s.get(1).copied())?))
                .unwrap_or_else(|| unknown.clone()),
            tid: g.tid,
            blocked_before_attach: g.parked_before_attach,
            wait_chans: g.wait_chans.iter().map(|&c| Hex(c)).collect(),
            created_by,
            start_function,
            stack: stacks.get(&g.goid).map(|pcs| interned.intern(pcs)),
            blocked_at: None,
            made_at: None,
            source: if g.observed_by_scan { "scan" } else { "uprobe" },
        });
    }
    let table: Vec<Vec<StackFrame>> = interned
        .pcs
        .iter()
        .map(|pcs| unwind::symbolize(bin, bias, pcs))
        .collect();
    // One per stack, shared by the goroutines on it.
    let sites: Vec<Option<std::sync::Arc<BlockingSite>>> = table
        .iter()
        .map(|frames| {
            unwind::blocking_site(frames).map(|f| {
                std::sync::Arc::new(BlockingSite {
                    function: Text::from(f.function.as_str()),
                    location: Text::from(format!("{}:{}", f.file, f.line)),
                })
            })
        })
        .collect();
    for b in &mut blocked {
        b.blocked_at = b.stack.and_then(|i| sites[i].clone());
    }
    Blocked {
        goroutines: blocked,
        runtime_hidden: runtime_goroutines_hidden,
        stacks: table,
    }
}

/// What [`blocked`] finds.
pub struct Blocked {
    pub goroutines: Vec<BlockedGoroutine>,
    /// The runtime's own blocked goroutines, left out.
    pub runtime_hidden: usize,
    /// The distinct stacks, symbolized; `BlockedGoroutine::stack` indexes this.
    pub stacks: Vec<Vec<StackFrame>>,
}

/// Distinct PC lists, each given an index once.
#[derive(Default)]
struct Interner {
    pcs: Vec<Vec<u64>>,
    index: std::collections::HashMap<Vec<u64>, usize>,
}

impl Interner {
    fn intern(&mut self, pcs: &[u64]) -> usize {
        if let Some(&i) = self.index.get(pcs) {
            return i;
        }
        self.pcs.push(pcs.to_vec());
        self.index.insert(pcs.to_vec(), self.pcs.len() - 1);
        self.pcs.len() - 1
    }
}

/// Whether a goroutine with this start function belongs to the runtime itself
/// (src/runtime/traceback.go, isSystemGoroutine: start function in package runtime, except
/// runtime.main, runtime.corostart and runtime.handleAsyncEvent).
pub fn is_runtime_start_function(name: &str) -> bool {
    name.starts_with("runtime.")
        && !matches!(
            name,
            "runtime.main" | "runtime.corostart" | "runtime.handleAsyncEvent"
        )
}

/// What a blocked goroutine waits on: the sync primitive its semacquire entry point named, else
/// the channel(s) from its sudogs, else what gopark's lock argument says.
pub fn wait_object(bin: &GoBinary, g: &Goroutine) -> (&'static str, u64) {
    let reason = bin.wait_reason(g.reason);
    if let Some(obj) = g
        .sema
        .and_then(|(addr, kind)| syncobj::object_of(kind, addr, &reason))
    {
        return obj;
    }
    if let Some((addr, 0)) = g.sema {
        // In the semaphore table, primitive unknown (e.g. a runtime-internal semaphore).
        return ("semaphore", addr);
    }
    match (g.wait_chans.first(), reason.as_ref()) {
        (Some(&c), "select") => ("select", c),
        (Some(&c), _) => ("chan", c),
        (None, _) if g.observed_by_scan => ("none", 0),
        (None, _) => bin.describe_wait_object(g.reason, g.wait_obj),
    }
}

/// The creation site of a goroutine from its `gopc` (runtime address) and parent.
pub fn creation_site(ctx: &Context<'_>, gopc: u64, parent_goid: u64) -> Option<CreationSite> {
    // The main goroutine (parent 0) has no creator worth naming, as in Go's tracebacks.
    go_statement(ctx, gopc)
        .filter(|_| parent_goid != 0)
        .map(|(function, location)| CreationSite {
            function,
            location,
            parent_goid,
        })
}

/// The function and `file:line` of the `go` statement at `gopc` (runtime address).
pub fn go_statement(ctx: &Context<'_>, gopc: u64) -> Option<(Text, Option<Text>)> {
    let gopc = gopc.wrapping_sub(ctx.bias);
    ctx.bin.func_name(gopc).map(|f| {
        (
            Text::from(f),
            // gopc is the return address of the newproc call; the line of the `go` statement
            // is that of the call instruction, one byte earlier (as src/runtime/traceback.go
            // printcreatedby does with pc-1).
            ctx.bin.source_line(gopc.wrapping_sub(1)).map(Text::from),
        )
    })
}

/// Goroutines the scan found in `_Gsyscall` (a system call or a cgo call), each joined with its
/// OS thread: `g.m.procid` (src/runtime/runtime2.go, m.procid) is the tid the scheduler
/// tracepoints key the thread view by. With `cgo`, the stack of each one whose thread sleeps in
/// the kernel is stitched whole: kernel, C, the cgo boundary, Go (see `native::stitch`).
pub fn in_syscall(
    ctx: &Context<'_>,
    scan: &Scan,
    pid: u32,
    thread_states: &[ThreadState],
    mut cgo: Option<&mut CgoUnwinder>,
) -> Vec<SyscallGoroutine> {
    let mem = ProcessMemory::new(pid);
    scan.goroutines
        .iter()
        .filter(|g| g.status == status::SYSCALL)
        .map(|g| {
            let tid = threads::thread_of_g(&mem, &ctx.bin.layout, g.addr);
            let thread = tid.and_then(|t| thread_states.iter().find(|s| s.tid == t).cloned());
            let asleep = thread
                .as_ref()
                .is_some_and(|t| matches!(t.state, 'S' | 'D') && t.on_cpu != Some(true));
            let (stack, stack_error) = match (cgo.as_deref_mut(), tid, &thread) {
                (Some(cgo), Some(tid), Some(t)) if asleep => {
                    let saved = SavedSyscall::read(&mem, &ctx.bin.layout.g, g.addr);
                    match cgo.stack(ctx.bin, ctx.bias, tid, saved, &t.kernel_stack) {
                        Ok(s) => (Some(s), None),
                        Err(e) => (None, Some(e.to_string())),
                    }
                }
                _ => (None, None),
            };
            SyscallGoroutine {
                goid: g.goid,
                start_function: ctx
                    .bin
                    .func_name(g.startpc.wrapping_sub(ctx.bias))
                    .map(str::to_string),
                created_by: creation_site(ctx, g.gopc, g.parent_goid),
                tid,
                thread,
                stack,
                stack_error,
            }
        })
        .collect()
}

/// Goroutines the scan found running or runnable; a running one's OS thread is `g.m.procid`
/// (a runnable one has no M).
pub fn running(ctx: &Context<'_>, scan: &Scan, pid: u32) -> Vec<RunningGoroutine> {
    let mem = ProcessMemory::new(pid);
    scan.goroutines
        .iter()
        .filter(|g| g.status == status::RUNNING || g.status == status::RUNNABLE)
        .map(|g| RunningGoroutine {
            goid: g.goid,
            status: status::name(g.status),
            start_function: ctx
                .bin
                .func_name(g.startpc.wrapping_sub(ctx.bias))
                .map(str::to_string),
            tid: (g.status == status::RUNNING)
                .then(|| threads::thread_of_g(&mem, &ctx.bin.layout, g.addr))
                .flatten(),
        })
        .collect()
}
