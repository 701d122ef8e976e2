//! Go stacks from frame pointers, and their symbolization from the pclntab.
//!
//! Go keeps frame pointers on amd64 (src/cmd/compile/abi-internal.md, "Frame pointer"): each
//! frame stores the caller's BP at [BP] and the return address at [BP+8]. The walkers are pure
//! functions over a memory reader, so they run on captured bytes in tests; `walk_from_gs` binds
//! them to a live process.

use serde::Serialize;

use crate::goruntime::GoBinary;
use crate::memory::ProcessMemory;

/// Most frames followed in one walk (a torn or cyclic chain must end).
pub const MAX_FRAMES: usize = 64;

/// Walks the frame-pointer chains of many stacks at once. Each start is (innermost PC, that
/// frame's BP). A walk stops at a zero or non-increasing BP (stacks grow down, so callers'
/// frames are at higher addresses), a zero return address, a failed read, or [`MAX_FRAMES`].
/// One level per round, so a round costs one batched read (`read16` reads [BP] and [BP+8] at
/// each address; None where it faults) instead of one syscall per frame: 100k parked goroutines
/// take ~10 rounds, not ~1M reads.
pub fn fp_walk_many(
    read16: impl Fn(&[u64]) -> Vec<Option<[u64; 2]>>,
    starts: &[(u64, u64)],
) -> Vec<Vec<u64>> {
    let mut stacks: Vec<Vec<u64>> = starts.iter().map(|&(pc, _)| vec![pc]).collect();
    let mut active: Vec<(usize, u64)> = starts
        .iter()
        .enumerate()
        .filter(|(_, (_, bp))| *bp != 0)
        .map(|(i, &(_, bp))| (i, bp))
        .collect();
    while !active.is_empty() {
        let addrs: Vec<u64> = active.iter().map(|&(_, bp)| bp).collect();
        let words = read16(&addrs);
        let mut next = Vec::with_capacity(active.len());
        for (&(i, bp), w) in active.iter().zip(words) {
            let Some([next_bp, ret]) = w else { continue };
            if ret == 0 || stacks[i].len() >= MAX_FRAMES {
                continue;
            }
            stacks[i].push(ret);
            if next_bp > bp && next_bp != 0 && stacks[i].len() < MAX_FRAMES {
                next.push((i, next_bp));
            }
        }
        active = next;
    }
    stacks
}

/// Stacks of goroutines of a live process, walked from a (pc, bp) pair saved in each `runtime.g`:
/// `gs` holds (key, g address, [offset of the pc, offset of the bp]), e.g. `g.sched` for a
/// parked goroutine or `g.syscallpc`/`g.syscallbp` for one in a system call. Every read is
/// batched across goroutines ([`fp_walk_many`]). Returns key → PCs; a goroutine whose saved
/// registers cannot be read is left out.
pub fn walk_from_gs(
    mem: &ProcessMemory,
    gs: &[(u64, u64, [u32; 2])],
) -> std::collections::HashMap<u64, Vec<u64>> {
    let read_pairs = |at: &[(u64, [u32; 2])]| read_pairs(mem, at);
    let saved: Vec<(u64, [u32; 2])> = gs.iter().map(|&(_, a, offs)| (a, offs)).collect();
    let (keys, starts): (Vec<u64>, Vec<(u64, u64)>) = gs
        .iter()
        .zip(read_pairs(&saved))
        .filter_map(|(&(key, _, _), w)| w.map(|[pc, bp]| (key, (pc, bp))))
        .unzip();
    let frame = |bps: &[u64]| read_frames(mem, bps);
    keys.into_iter().zip(fp_walk_many(frame, &starts)).collect()
}

/// The frame records at each BP of a live process: [BP] (the caller's BP) and [BP+8] (the
/// return address); None where the read faults.
pub fn read_frames(mem: &ProcessMemory, bps: &[u64]) -> Vec<Option<[u64; 2]>> {
    let at: Vec<(u64, [u32; 2])> = bps.iter().map(|&bp| (bp, [0, 8])).collect();
    read_pairs(mem, &at)
}

/// One stack of a live process, walked by frame pointers from (pc, bp): see [`fp_walk_many`].
pub fn fp_walk(mem: &ProcessMemory, pc: u64, bp: u64) -> Vec<u64> {
    fp_walk_many(|bps: &[u64]| read_frames(mem, bps), &[(pc, bp)])
        .pop()
        .unwrap_or_default()
}

/// A stack's PCs, shared: 100k goroutines parked at one site hold one copy.
pub type Stack = std::sync::Arc<[u64]>;

/// Hands out one shared [`Stack`] per distinct PC list.
#[derive(Default)]
pub struct StackSet(std::collections::HashSet<Stack>);

impl StackSet {
    pub fn intern(&mut self, pcs: &[u64]) -> Stack {
        if let Some(s) = self.0.get(pcs) {
            return s.clone();
        }
        let s: Stack = pcs.into();
        self.0.insert(s.clone());
        s
    }
}

/// Two words at each address, at two offsets from it (e.g. `g.sched.pc` and `g.sched.bp` of
/// many g records), in batched reads; None where either faults.
pub fn read_pairs(mem: &ProcessMemory, at: &[(u64, [u32; 2])]) -> Vec<Option<[u64; 2]>> {
    let mut bufs = vec![[0u8; 16]; at.len()];
    let mut ranges: Vec<(u64, &mut [u8])> = Vec::with_capacity(at.len() * 2);
    for (&(a, offs), b) in at.iter().zip(bufs.iter_mut()) {
        let (lo, hi) = b.split_at_mut(8);
        ranges.push((a + u64::from(offs[0]), lo));
        ranges.push((a + u64::from(offs[1]), hi));
    }
    let ok = mem.read_many(&mut ranges).unwrap_or_default();
    drop(ranges);
    let word = |r: &[u8]| u64::from_le_bytes(r.try_into().unwrap_or_default());
    bufs.iter()
        .enumerate()
        .map(|(i, b)| {
            (ok.get(2 * i) == Some(&true) && ok.get(2 * i + 1) == Some(&true))
                .then(|| [word(&b[..8]), word(&b[8..])])
        })
        .collect()
}

/// One symbolized frame.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StackFrame {
    pub function: String,
    pub file: String,
    pub line: u32,
    /// Inlined into the next (calling) frame.
    pub inlined: bool,
    /// Compiler-generated code (`FuncIDWrapper` in internal/abi/symtab.go: method-value and
    /// pointer-receiver wrappers, the `gowrapN` closures of `go f(x)`, ...), which Go's own
    /// tracebacks leave out (src/runtime/traceback.go `showfuncinfo`). Serialized only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub wrapper: bool,
    /// The link-time address the position was looked up at (runtime PC minus the load bias,
    /// minus 1 for a return address, see [`lookup_pcs`]); every frame expanded from one PC
    /// shares it. Set only by [`symbolize_stack_with_pcs`] (the dump's JSON, which
    /// tests/e2e/addr2line.rs compares with `go tool addr2line`); serialized as "0x…".
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex_pc")]
    pub pc: Option<u64>,
}

fn hex_pc<S: serde::Serializer>(pc: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match pc {
        Some(pc) => s.serialize_str(&format!("{pc:#x}")),
        None => s.serialize_none(),
    }
}

/// How the innermost PC of a stack was captured, which decides where its source position is
/// looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Innermost {
    /// The next instruction to execute: a uprobe hit (the probes' stacks).
    Exact,
    /// A return address, like every outer frame: `g.sched.pc` as mcall saved it in gopark,
    /// `g.syscallpc` as entersyscall saved it (the dump's stacks, walked as Go's traceback walks
    /// a goroutine that is not running).
    ReturnAddress,
}

/// Functions the runtime calls by injecting a call into an interrupted goroutine: the frame
/// below one of them was stopped mid-instruction, not calling, so its PC is exact
/// (src/runtime/traceback.go `unwinder.next`, `injectedCall`).
const INJECTED_CALLS: [&str; 3] = [
    "runtime.sigpanic",
    "runtime.asyncPreempt",
    "runtime.debugCallV2",
];

/// `FuncIDWrapper` of the binary's Go version: the last `abi.FuncID` (internal/abi/symtab.go).
/// Go 1.25 replaced `FuncID_runfinq` with `FuncID_runFinalizers` and `FuncID_runCleanups`,
/// moving it from 22 to 23; later versions are assumed to keep 23.
pub fn func_id_wrapper(go_minor: u32) -> u8 {
    if go_minor >= 25 { 23 } else { 22 }
}

/// Where each PC's source position is looked up, as src/runtime/traceback.go `unwinder.symPC`
/// does: at PC-1 (inside the call instruction, whose line is the call's) for a return address
/// past its function's entry; at the PC itself for an exact innermost PC, for the frame below
/// an injected call, and at a function's entry (a goroutine that never ran: newproc1 and
/// gostartcall set `g.sched.pc` to the entry of its function). Looking a return address up at
/// the PC itself can give the line after the call: `syscall.Syscall` at its
/// `runtime_exitsyscall()` line instead of `runtime_entersyscall()`.
/// `func_of` gives the entry and name of the function containing a PC.
pub fn lookup_pcs<'a>(
    pcs: &[u64],
    innermost: Innermost,
    func_of: impl Fn(u64) -> Option<(u64, &'a str)>,
) -> Vec<u64> {
    let mut exact = innermost == Innermost::Exact;
    pcs.iter()
        .map(|&pc| {
            let func = func_of(pc);
            let lookup = match func {
                Some((entry, _)) if !exact && pc > entry => pc - 1,
                _ => pc,
            };
            exact = func.is_some_and(|(_, name)| INJECTED_CALLS.contains(&name));
            lookup
        })
        .collect()
}

/// Symbolizes runtime PCs (`bias` = load bias) with the binary's pclntab, inlined frames
/// included; the first PC is exact (a probe hit), every other one a return address.
pub fn symbolize(bin: &GoBinary, bias: u64, pcs: &[u64]) -> Vec<StackFrame> {
    symbolize_stack(bin, bias, pcs, Innermost::Exact)
}

/// Symbolizes a stack whose innermost PC was captured as `innermost` says (see [`lookup_pcs`]).
pub fn symbolize_stack(
    bin: &GoBinary,
    bias: u64,
    pcs: &[u64],
    innermost: Innermost,
) -> Vec<StackFrame> {
    let mut frames = symbolize_stack_with_pcs(bin, bias, pcs, innermost);
    // Reports intern and compare frames: keep them free of addresses.
    for f in &mut frames {
        f.pc = None;
    }
    frames
}

/// [`symbolize_stack`], each frame carrying the link-time address it was looked up at.
pub fn symbolize_stack_with_pcs(
    bin: &GoBinary,
    bias: u64,
    pcs: &[u64],
    innermost: Innermost,
) -> Vec<StackFrame> {
    let Some(tab) = bin.pclntab() else {
        return Vec::new();
    };
    let wrapper = func_id_wrapper(bin.minor);
    let pcs: Vec<u64> = pcs.iter().map(|pc| pc.wrapping_sub(bias)).collect();
    let lookups = lookup_pcs(&pcs, innermost, |pc| {
        tab.find_func(pc).map(|f| (f.entry, f.name))
    });
    let mut out = Vec::new();
    for (&pc, &lookup) in pcs.iter().zip(&lookups) {
        let frames = tab.frames_for_pc(lookup);
        if frames.is_empty() {
            out.push(StackFrame {
                function: format!("?{pc:#x}"),
                file: String::new(),
                line: 0,
                inlined: false,
                wrapper: false,
                pc: Some(lookup),
            });
        }
        for f in frames {
            out.push(StackFrame {
                function: f.func.to_string(),
                file: f.file.to_string(),
                line: f.line,
                inlined: f.inlined,
                wrapper: f.func_id == wrapper,
                pc: Some(lookup),
            });
        }
    }
    out
}

/// Whether a frame belongs to the machinery of blocking rather than to the code that blocked:
/// the runtime, and the sync primitives' own methods.
fn is_machinery(function: &str) -> bool {
    [
        "runtime.",
        "internal/",
        "sync.",
        "sync/atomic.",
        "time.Sleep",
    ]
    .iter()
    .any(|p| function.starts_with(p))
}

/// The first frame of the code that blocked: `file:line` and function.
pub fn blocking_site(frames: &[StackFrame]) -> Option<&StackFrame> {
    frames
        .iter()
        .find(|f| !is_machinery(&f.function) && !f.file.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// One walk over captured memory.
    fn fp_walk(read: impl Fn(u64) -> Option<u64>, pc: u64, bp: u64) -> Vec<u64> {
        let read16 = |addrs: &[u64]| -> Vec<Option<[u64; 2]>> {
            addrs
                .iter()
                .map(|&a| Some([read(a)?, read(a.wrapping_add(8))?]))
                .collect()
        };
        fp_walk_many(read16, &[(pc, bp)]).pop().unwrap_or_default()
    }

    #[test]
    fn walks_a_captured_frame_chain() {
        // A stack window: three frames at 0x1000, 0x1040, 0x1080, then a zero BP.
        let mem: HashMap<u64, u64> = [
            (0x1000, 0x1040),
            (0x1008, 0x401111),
            (0x1040, 0x1080),
            (0x1048, 0x402222),
            (0x1080, 0),
            (0x1088, 0x403333),
        ]
        .into_iter()
        .collect();
        let pcs = fp_walk(|a| mem.get(&a).copied(), 0x400000, 0x1000);
        assert_eq!(pcs, vec![0x400000, 0x401111, 0x402222, 0x403333]);
    }

    #[test]
    fn a_batch_walks_each_stack_on_its_own() {
        let mem: HashMap<u64, u64> = [
            (0x1000, 0x1040),
            (0x1008, 0x401111),
            (0x1040, 0),
            (0x1048, 0x402222),
            (0x2000, 0x2000), // a cycle
            (0x2008, 0x409999),
        ]
        .into_iter()
        .collect();
        let read16 = |addrs: &[u64]| -> Vec<Option<[u64; 2]>> {
            addrs
                .iter()
                .map(|&a| Some([*mem.get(&a)?, *mem.get(&(a + 8))?]))
                .collect()
        };
        let starts = [
            (0x400000, 0x1000),
            (0x500000, 0x2000),
            (0x600000, 0x3000),
            (7, 0),
        ];
        assert_eq!(
            fp_walk_many(read16, &starts),
            vec![
                vec![0x400000, 0x401111, 0x402222],
                vec![0x500000, 0x409999],
                vec![0x600000],
                vec![7],
            ]
        );
    }

    #[test]
    fn a_cycle_or_a_fault_ends_the_walk() {
        let cyclic: HashMap<u64, u64> = [(0x2000, 0x2000), (0x2008, 0x401000)].into();
        assert_eq!(
            fp_walk(|a| cyclic.get(&a).copied(), 1, 0x2000),
            vec![1, 0x401000]
        );
        assert_eq!(fp_walk(|_| None, 7, 0x3000), vec![7]);
        assert_eq!(fp_walk(|_| Some(0x5000), 7, 0), vec![7]);
    }

    #[test]
    fn return_addresses_are_looked_up_inside_the_call() {
        // Functions: f at 0x100, g at 0x200, runtime.asyncPreempt at 0x300.
        let func_of = |pc: u64| -> Option<(u64, &'static str)> {
            match pc {
                0x100..0x200 => Some((0x100, "main.f")),
                0x200..0x300 => Some((0x200, "main.g")),
                0x300..0x400 => Some((0x300, "runtime.asyncPreempt")),
                _ => None,
            }
        };
        let pcs = [0x110, 0x220, 0x999];
        assert_eq!(
            lookup_pcs(&pcs, Innermost::Exact, func_of),
            vec![0x110, 0x21f, 0x999]
        );
        assert_eq!(
            lookup_pcs(&pcs, Innermost::ReturnAddress, func_of),
            vec![0x10f, 0x21f, 0x999]
        );
        // A goroutine that never ran sits at its function's entry.
        assert_eq!(
            lookup_pcs(&[0x200], Innermost::ReturnAddress, func_of),
            vec![0x200]
        );
        // The frame an injected call interrupted is at an exact PC; the one above, a call.
        assert_eq!(
            lookup_pcs(&[0x310, 0x120, 0x220], Innermost::ReturnAddress, func_of),
            vec![0x30f, 0x120, 0x21f]
        );
    }

    #[test]
    fn wrapper_func_ids_follow_the_go_version() {
        assert_eq!(func_id_wrapper(22), 22);
        assert_eq!(func_id_wrapper(24), 22);
        assert_eq!(func_id_wrapper(25), 23);
        assert_eq!(func_id_wrapper(27), 23);
    }

    #[test]
    fn the_blocking_site_skips_runtime_and_sync_frames() {
        let f = |function: &str, file: &str| StackFrame {
            function: function.into(),
            file: file.into(),
            line: 1,
            inlined: false,
            wrapper: false,
            pc: None,
        };
        let frames = vec![
            f("runtime.gopark", "proc.go"),
            f("runtime.semacquire1", "sema.go"),
            f("internal/sync.runtime_SemacquireMutex", "sema.go"),
            f("sync.(*Mutex).Lock", "mutex.go"),
            f("main.transfer", "/src/main.go"),
        ];
        assert_eq!(blocking_site(&frames).unwrap().function, "main.transfer");
        assert!(blocking_site(&frames[..4]).is_none());
    }
}
