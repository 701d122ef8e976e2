//! The whole stack of a goroutine inside a cgo call or a system call: kernel frames, native (C)
//! frames, the cgo boundary, and the Go frames that made the call, in one list, innermost first.
//!
//! How a cgo call runs (Go 1.22–1.27, amd64):
//! - src/runtime/cgocall.go `cgocall` calls `entersyscall` and then `asmcgocall(fn, arg)`.
//!   `entersyscall` → `reentersyscall` (src/runtime/proc.go) saves the caller's pc and sp in
//!   `g.syscallpc`/`g.syscallsp`, and from Go 1.23 its frame pointer in `g.syscallbp`.
//! - src/runtime/asm_amd64.s `asmcgocall` switches to the M's system stack (`g0`), keeps the
//!   caller's BP (its frame has size 0, so the assembler adds no BP prologue), and CALLs `fn`
//!   with the C ABI. The C code then runs on g0's stack, a pthread stack without Go frames.
//!
//! So the thread's registers, captured while it sleeps in the kernel, unwind (DWARF CFI) through
//! the C frames (libc included) to a return address inside `runtime.asmcgocall`: the boundary.
//! There the CFI-restored BP is still `cgocall`'s frame pointer; the Go frames continue from
//! `g.syscallpc` (in `cgocall`) and that frame pointer (`g.syscallbp` when the version has it),
//! the chain Go keeps on amd64.
//!
//! A goroutine in a plain system call (no cgo) has Go code at the thread's registers already:
//! its Go frames come straight from them (ip, and BP for the frame-pointer chain).

use std::ops::Not;

use aya::Ebpf;
use serde::Serialize;

use super::modules::{ModuleCache, Placed, placed_modules};
use super::taskregs::{self, Snapshot, TaskRegs, TaskRegsError};
use super::unwind::{End, NativeUnwinder, StartRegs};
use crate::goruntime::GoBinary;
use crate::kallsyms::KernelFrame;
use crate::memory::ProcessMemory;
use crate::unwind::{self, Innermost, StackFrame};

/// Bytes of a sleeping thread's stack captured for the CFI unwind (perf's `--call-graph dwarf`
/// default is 8 KiB). The C frames of a blocked cgo call take a few hundred bytes.
pub const STACK_WINDOW: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    #[error(transparent)]
    Regs(#[from] TaskRegsError),
    #[error("listing the target's mappings: {0}")]
    Maps(#[from] crate::procfs::ProcError),
}

/// One frame of a mixed stack.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Frame {
    /// "kernel", "c" (native code: the executable's C parts, shared libraries), or "go".
    pub kind: &'static str,
    pub function: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub line: u32,
    /// Inlined into the next (calling) frame.
    #[serde(skip_serializing_if = "Not::not")]
    pub inlined: bool,
    /// The file the code is in, for native frames (`libc.so.6`, the executable's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Where C returns to Go (`runtime.asmcgocall`): the cgo boundary.
    #[serde(skip_serializing_if = "Not::not")]
    pub cgo_boundary: bool,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Frame {
    fn go(f: StackFrame) -> Self {
        Self {
            kind: "go",
            function: f.function,
            file: f.file,
            line: f.line,
            inlined: f.inlined,
            module: None,
            cgo_boundary: false,
        }
    }

    /// A native frame known by name only (no file:line).
    fn c(function: String, module: Option<String>) -> Self {
        Self {
            kind: "c",
            function,
            file: String::new(),
            line: 0,
            inlined: false,
            module,
            cgo_boundary: false,
        }
    }

    fn kernel(f: &KernelFrame) -> Self {
        Self {
            kind: "kernel",
            ..Self::c(f.function.clone(), f.module.clone())
        }
    }
}

/// A stitched stack and how its native part ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MixedStack {
    pub frames: Vec<Frame>,
    /// "cgo" (C frames, then the boundary and the Go caller), "go" (a plain system call: Go code
    /// at the registers), "truncated" (the CFI unwind stopped before reaching Go code; the Go
    /// frames saved in the g follow).
    pub native_end: &'static str,
}

/// What the g says of its system call: `g.syscallpc`, and `g.syscallbp` where the version saves
/// it (Go >= 1.23) and it could be read.
#[derive(Debug, Clone, Copy)]
pub struct SavedSyscall {
    pub pc: u64,
    pub bp: Option<u64>,
}

impl SavedSyscall {
    /// Reads them from the g at `g_addr` (src/runtime/runtime2.go: g.syscallpc, g.syscallbp).
    pub fn read(
        mem: &ProcessMemory,
        layout: &crate::goruntime::layout::GLayout,
        g_addr: u64,
    ) -> Self {
        Self {
            pc: mem
                .read_u64(g_addr + u64::from(layout.syscallpc))
                .unwrap_or(0),
            bp: layout
                .syscallbp
                .and_then(|off| mem.read_u64(g_addr + u64::from(off)).ok()),
        }
    }
}

/// Unwinds the threads of one target through C, the cgo boundary and Go.
pub struct CgoUnwinder {
    regs: TaskRegs,
    placed: Vec<Placed>,
    unwinder: NativeUnwinder,
    mem: ProcessMemory,
    pid: u32,
}

impl CgoUnwinder {
    /// Loads the register iterator into `ebpf` and the target's modules from `cache` (keyed by
    /// build id).
    pub fn with_cache(ebpf: &mut Ebpf, pid: u32, cache: &ModuleCache) -> Result<Self, StitchError> {
        Self::with_regs(TaskRegs::load(ebpf)?, pid, cache)
    }

    /// With the register iterator already loaded.
    pub fn with_regs(regs: TaskRegs, pid: u32, cache: &ModuleCache) -> Result<Self, StitchError> {
        let placed = placed_modules(pid, cache)?;
        Ok(Self {
            regs,
            unwinder: NativeUnwinder::new(&placed),
            placed,
            mem: ProcessMemory::new(pid),
            pid,
        })
    }

    /// The registers and stack window of thread `tid`, asleep in the kernel.
    pub fn capture(&self, tid: u32) -> Result<Snapshot, StitchError> {
        Ok(taskregs::snapshot(
            &self.regs,
            &self.mem,
            self.pid,
            tid,
            STACK_WINDOW,
        )?)
    }

    /// The stack of thread `tid`, asleep in the kernel on behalf of a goroutine in `_Gsyscall`
    /// whose g saved `saved`. `kernel` is the thread's kernel stack (innermost first).
    pub fn stack(
        &mut self,
        bin: &GoBinary,
        bias: u64,
        tid: u32,
        saved: SavedSyscall,
        kernel: &[KernelFrame],
    ) -> Result<MixedStack, StitchError> {
        let snap = self.capture(tid)?;
        Ok(self.stitch(bin, bias, &snap, saved, kernel))
    }

    /// Unwinds a captured thread and stitches its frames: kernel, C, the cgo boundary, Go.
    /// The Go frames above the boundary are read from the live process (the goroutine's stack,
    /// which does not move while it sits in the call).
    pub fn stitch(
        &mut self,
        bin: &GoBinary,
        bias: u64,
        snap: &Snapshot,
        saved: SavedSyscall,
        kernel: &[KernelFrame],
    ) -> MixedStack {
        let start = StartRegs {
            ip: snap.regs.ip,
            sp: snap.regs.sp,
            bp: snap.regs.bp,
        };
        let is_go = |pc: u64| bin.func_at(pc.wrapping_sub(bias)).is_some();
        let unwound = self.unwinder.unwind(start, &snap.stack, is_go);
        let mut frames: Vec<Frame> = kernel.iter().map(Frame::kernel).collect();
        frames.extend(symbolize_native(&self.placed, &unwound.frames));
        let go_walk = |pc: u64, bp: u64| unwind::fp_walk(&self.mem, pc, bp);
        let native_end = match unwound.end {
            End::Boundary(ret) if unwound.frames.is_empty() => {
                // Go code at the registers: a plain system call. The ip is exact.
                let pcs = go_walk(ret, start.bp);
                let go = unwind::symbolize_stack(bin, bias, &pcs, Innermost::Exact);
                frames.extend(go.into_iter().map(Frame::go));
                "go"
            }
            End::Boundary(ret) => {
                // The frame-pointer chain from the CFI-restored BP: [BP+8] returns into
                // `cgocall` (after its call of asmcgocall), and on up. Where that chain does not
                // lead into cgocall (C code that clobbered BP without CFI for it), the g's saved
                // syscallpc/syscallbp (Go >= 1.23) give the same frames.
                let mut pcs = go_walk(ret, unwound.bp);
                let through_cgocall = pcs.get(1).is_some_and(|&pc| {
                    bin.func_name(pc.wrapping_sub(bias).wrapping_sub(1)) == Some("runtime.cgocall")
                });
                if !through_cgocall && let Some(bp) = saved.bp.filter(|&bp| bp != 0) {
                    pcs = std::iter::once(ret).chain(go_walk(saved.pc, bp)).collect();
                }
                let mut go = unwind::symbolize_stack(bin, bias, &pcs, Innermost::ReturnAddress)
                    .into_iter()
                    .map(Frame::go);
                // The boundary: `runtime.asmcgocall`, on the g0 stack.
                frames.extend(go.next().map(|f| Frame {
                    cgo_boundary: true,
                    ..f
                }));
                frames.extend(go);
                "cgo"
            }
            End::StackEnd | End::Truncated => {
                if let Some(bp) = saved.bp.filter(|&bp| bp != 0) {
                    let pcs = go_walk(saved.pc, bp);
                    let go = unwind::symbolize_stack(bin, bias, &pcs, Innermost::ReturnAddress);
                    frames.extend(go.into_iter().map(Frame::go));
                }
                "truncated"
            }
        };
        MixedStack { frames, native_end }
    }
}

/// Symbolizes native PCs (the first exact, the others return addresses, looked up at PC-1 so
/// that a call's line is the call's) with the modules they fall in.
pub fn symbolize_native(placed: &[Placed], pcs: &[u64]) -> Vec<Frame> {
    let mut out = Vec::new();
    for (i, &pc) in pcs.iter().enumerate() {
        let lookup = if i == 0 { pc } else { pc.wrapping_sub(1) };
        let Some(p) = placed.iter().find(|p| p.avma.contains(&lookup)) else {
            out.push(Frame::c(format!("?{pc:#x}"), None));
            continue;
        };
        let link = lookup.wrapping_sub(p.bias);
        let syms = p.module.symbolize_cached(link);
        if syms.is_empty() {
            out.push(Frame::c(
                format!("{}+{link:#x}", p.module.name),
                Some(p.module.name.clone()),
            ));
        }
        out.extend(syms.iter().map(|s| Frame {
            file: s.file.to_string(),
            line: s.line,
            inlined: s.inlined,
            ..Frame::c(s.function.to_string(), Some(p.module.name.clone()))
        }));
    }
    out
}
