//! Precise stack roots: which words of a parked goroutine's stack hold live pointers, as Go's
//! garbage collector decides it, read from outside.
//!
//! Followed sources (the same in Go 1.22 to 1.27):
//! - the scan: `runtime/mgcmark.go` `scanstack` (roots besides the frames: `g.sched.ctxt`, the
//!   `_defer` records' `fn`/`link`, `g._panic`) and `scanframeworker` (locals and arguments
//!   bitmaps, stack objects);
//! - the frames: `runtime/traceback.go` `unwinder.initAt`/`resolveInternal`/`next` (amd64: no
//!   link register, frame pointers enabled): `fp = sp + funcspdelta(pc) + 8`, the return PC at
//!   `fp - 8`, `varp = fp - 8`, less 8 more for the saved BP when the frame is not empty,
//!   `argp = fp`;
//! - the maps: `runtime/stkframe.go` `getStackMap` (index `PCDATA_StackMapIndex` at `pc - 1`,
//!   except at a function's entry, where -1, like a missing value, means map 0),
//!   `runtime/symtab.go` `stackmap`/`stackmapdata` (`{n, nbit int32; bytedata}`, each bitmap
//!   `(nbit+7)/8` bytes), `runtime/stack.go` `stackObjectRecord` (`{off, size, ptrBytes int32;
//!   gcdataoff uint32}` after a `uintptr` count; Go 1.22/1.23 name the third field `_ptrdata`,
//!   negative for a GC program);
//! - the indices: `internal/abi/symtab.go` (`PCDATA_StackMapIndex` = 1, `FUNCDATA_*`,
//!   `FuncFlag*`, `ArgsSizeUnknown`).
//!
//! Anything the runtime would treat as a special case (an injected call: `asyncPreempt`,
//! `debugCallV2`, `sigpanic`; an SP-writing function past the innermost frame; a reflect stub
//! with a dynamic argument map), and anything unknown or inconsistent (a PC outside the pclntab,
//! a missing map, a frame past the stack's top, a saved BP that disagrees with the frame) makes
//! [`stack_roots`] give up: the caller then scans that stack conservatively.

use std::rc::Rc;

use rustc_hash::FxHashMap;

use super::pclntab::{Func, Pclntab};

/// `internal/abi/symtab.go`: `PCDATA_StackMapIndex`.
pub const PCDATA_STACK_MAP_INDEX: u32 = 1;
/// `internal/abi/symtab.go`: `FUNCDATA_ArgsPointerMaps`.
pub const FUNCDATA_ARGS_POINTER_MAPS: u32 = 0;
/// `internal/abi/symtab.go`: `FUNCDATA_LocalsPointerMaps`.
pub const FUNCDATA_LOCALS_POINTER_MAPS: u32 = 1;
/// `internal/abi/symtab.go`: `FUNCDATA_StackObjects`.
pub const FUNCDATA_STACK_OBJECTS: u32 = 2;
/// `internal/abi/symtab.go`: `FuncFlagTopFrame`, `FuncFlagSPWrite`.
const FUNC_FLAG_TOP_FRAME: u8 = 1;
const FUNC_FLAG_SP_WRITE: u8 = 2;
/// `internal/abi/symtab.go`: `ArgsSizeUnknown` (the reflect stubs' dynamic argument maps).
const ARGS_SIZE_UNKNOWN: i32 = i32::MIN;
/// Functions the runtime calls by injecting a call into an interrupted goroutine
/// (`runtime/traceback.go` `isInjectedCall`): the frame below stopped at an arbitrary
/// instruction, which the GC scans conservatively (`scanframeworker`).
const INJECTED_CALLS: [&str; 3] = [
    "runtime.sigpanic",
    "runtime.asyncPreempt",
    "runtime.debugCallV2",
];
/// `runtime/runtime2.go` `_defer`: `heap, rangefunc bool; sp, pc uintptr; fn func();
/// link *_defer; head`: `fn` at 24, `link` at 32 (Go 1.22 to 1.27).
pub const DEFER_FN: u64 = 24;
pub const DEFER_LINK: u64 = 32;
const DEFER_SIZE: u64 = 48;

/// `runtime/symtab.go` `stackmap`: `n` bitmaps of `nbit` bits each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackMap<'a> {
    pub n: i32,
    pub nbit: i32,
    bytedata: &'a [u8],
}

impl<'a> StackMap<'a> {
    /// The map at the start of `b` (a FUNCDATA's bytes).
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let n = i32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
        let nbit = i32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
        (n >= 0 && nbit >= 0).then_some(StackMap {
            n,
            nbit,
            bytedata: &b[8..],
        })
    }

    /// `runtime/symtab.go` `stackmapdata`: bitmap `i`, at byte `i * ((nbit+7) >> 3)`.
    pub fn bitmap(&self, i: i32) -> Option<Bitvector<'a>> {
        if i < 0 || i >= self.n {
            return None;
        }
        let len = (self.nbit as usize).div_ceil(8);
        let at = (i as usize).checked_mul(len)?;
        Some(Bitvector {
            n: self.nbit,
            bytes: self.bytedata.get(at..at.checked_add(len)?)?,
        })
    }
}

/// `runtime/stack.go` `bitvector`: bit `i` set = word `i` of the region holds a pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitvector<'a> {
    pub n: i32,
    bytes: &'a [u8],
}

impl Bitvector<'_> {
    /// The indices of the pointer words, ascending (`runtime/mgcmark.go` `scanblock` reads
    /// bit `i` as `bytes[i/8] >> (i%8) & 1`).
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.n as u32).filter(|&i| self.bytes[(i / 8) as usize] >> (i % 8) & 1 != 0)
    }
}

/// `runtime/stack.go` `stackObjectRecord`: an address-taken local (`off` < 0, from varp) or
/// argument (`off` >= 0, from argp) with pointers; its pointers are in the first `ptr_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackObject {
    pub off: i32,
    pub size: u32,
    pub ptr_bytes: u32,
}

/// The records of `FUNCDATA_StackObjects`: a `uintptr` count, then 16-byte records (the
/// compiler's `liveness.emitStackObjects`).
pub fn parse_stack_objects(b: &[u8]) -> Option<Vec<StackObject>> {
    let n = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= (b.len() - 8) / 16)?;
    (0..n)
        .map(|i| {
            let r = &b[8 + 16 * i..8 + 16 * (i + 1)];
            let word = |o: usize| i32::from_le_bytes(r[o..o + 4].try_into().unwrap_or_default());
            let size = u32::try_from(word(4)).ok()?;
            Some(StackObject {
                off: word(0),
                size,
                // Go 1.22/1.23: `_ptrdata`, negated when the type uses a GC program.
                ptr_bytes: word(8).unsigned_abs().min(size),
            })
        })
        .collect()
}

/// What the GC needs of a frame at one PC, every offset from the frame's SP (so one description
/// serves every goroutine parked there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// `fp - sp`: `funcspdelta` + the return address.
    pub fp_off: u64,
    /// `varp - sp` when the frame saved the caller's BP at varp (a non-empty frame).
    pub saved_bp: Option<u64>,
    /// Byte offsets of the live pointer words: locals (below varp) and arguments (from argp).
    pub slots: Vec<u32>,
    /// Stack objects already allocated in the frame: (offset, size, pointer bytes).
    pub objects: Vec<(u64, u64, u64)>,
    pub top: bool,
    pub sp_write: bool,
    pub injected: bool,
}

/// `stkframe.getStackMap` and the frame layout of `unwinder.resolveInternal` for the function
/// `f` at `pc` (a link-time address; a return address except at the innermost frame). `None`
/// where the runtime would throw, or the tables are missing or corrupt.
pub fn frame_info(tab: &Pclntab<'_>, f: &Func<'_>, pc: u64) -> Option<FrameInfo> {
    let delta = u64::try_from(tab.sp_delta(f, pc)?).ok()?;
    if !delta.is_multiple_of(8) {
        return None;
    }
    let fp_off = delta + 8;
    let (varp_off, saved_bp) = match delta {
        0 => (0, None),
        d => (d - 8, Some(d - 8)),
    };
    // Back up into the CALL, except at the entry, whose map is map 0 (-1 also means "no value
    // here", which the runtime takes to be the prologue).
    let index = match pc {
        pc if pc != f.entry => tab.pcdata(f, PCDATA_STACK_MAP_INDEX, pc - 1)?,
        _ => -1,
    };
    let index = if index == -1 { 0 } else { index };
    let mut slots = Vec::new();
    if varp_off > 0 {
        let map = StackMap::parse(tab.funcdata(f, FUNCDATA_LOCALS_POINTER_MAPS)?)?;
        if map.n <= 0 {
            return None;
        }
        if map.nbit > 0 {
            let bits = map.bitmap(index)?;
            let base = varp_off.checked_sub(8 * bits.n as u64)?;
            slots.extend(bits.slots().map(|i| base as u32 + 8 * i));
        }
    }
    if f.args == ARGS_SIZE_UNKNOWN || f.args < 0 {
        return None;
    }
    if f.args >= 8 {
        let map = StackMap::parse(tab.funcdata(f, FUNCDATA_ARGS_POINTER_MAPS)?)?;
        if map.n <= 0 || index < 0 || index >= map.n {
            return None;
        }
        if map.nbit > 0 {
            let bits = map.bitmap(index)?;
            slots.extend(bits.slots().map(|i| fp_off as u32 + 8 * i));
        }
    }
    let objects = match tab.funcdata(f, FUNCDATA_STACK_OBJECTS) {
        Some(b) => parse_stack_objects(b)?
            .into_iter()
            .filter_map(|o| {
                let base = if o.off >= 0 { fp_off } else { varp_off };
                // Below SP: not allocated in the frame yet.
                let at = u64::try_from(base as i64 + i64::from(o.off)).ok()?;
                Some((at, u64::from(o.size), u64::from(o.ptr_bytes)))
            })
            .collect(),
        None => Vec::new(),
    };
    Some(FrameInfo {
        fp_off,
        saved_bp,
        slots,
        objects,
        top: f.flag & FUNC_FLAG_TOP_FRAME != 0,
        sp_write: f.flag & FUNC_FLAG_SP_WRITE != 0,
        injected: INJECTED_CALLS.contains(&f.name),
    })
}

/// Frame descriptions by runtime PC.
pub trait Frames {
    fn frame(&mut self, pc: u64) -> Option<Rc<FrameInfo>>;
}

/// [`Frames`] from a binary's pclntab, cached per PC (100k goroutines park at a few PCs).
pub struct PclnFrames<'t, 'a> {
    tab: &'t Pclntab<'a>,
    bias: u64,
    cache: FxHashMap<u64, Option<Rc<FrameInfo>>>,
}

impl<'t, 'a> PclnFrames<'t, 'a> {
    /// `bias`: the load bias (runtime address − link-time address).
    pub fn new(tab: &'t Pclntab<'a>, bias: u64) -> Self {
        PclnFrames {
            tab,
            bias,
            cache: FxHashMap::default(),
        }
    }
}

impl Frames for PclnFrames<'_, '_> {
    fn frame(&mut self, pc: u64) -> Option<Rc<FrameInfo>> {
        let (tab, bias) = (self.tab, self.bias);
        self.cache
            .entry(pc)
            .or_insert_with(|| {
                let pc = pc.wrapping_sub(bias);
                let f = tab.find_func(pc)?;
                frame_info(tab, &f, pc).map(Rc::new)
            })
            .clone()
    }
}

/// A goroutine's saved state (`runtime/runtime2.go` `g`, `gobuf`): the registers of
/// `g.syscall*` when `syscallsp != 0`, else of `g.sched`, as `unwinder.initAt` picks them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Goroutine {
    /// `g.stack` [lo, hi).
    pub lo: u64,
    pub hi: u64,
    pub sp: u64,
    pub pc: u64,
    /// The saved frame pointer, when the runtime saves one there (`syscallbp` is Go 1.23+).
    pub bp: Option<u64>,
    /// `g.sched.ctxt`: the closure context of a goroutine not started yet, or preempted in a
    /// prologue (`runtime/asm_amd64.s` `morestack`).
    pub ctxt: u64,
    /// `g._defer`, `g._panic`.
    pub defer: u64,
    pub panic: u64,
}

/// Why a stack could not be scanned precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imprecise {
    /// A PC without a usable frame description.
    UnknownPc(u64),
    /// A frame the runtime scans conservatively, or a walk the runtime would not make.
    Special(u64),
    /// A frame or object outside the stack, or a saved BP that disagrees with the frame.
    Inconsistent(u64),
}

/// The words a precise scan of goroutine `g` treats as pointers out of its stack (to the heap
/// or the data segments), appended to `out`; `stack` holds the bytes of [g.sp, g.hi). Pointers
/// into the stack are not listed: they lead to the stack objects they point into, whose words
/// are scanned in turn (`runtime/mgcmark.go` `scanstack`: `state.putPtr`, `findObject`;
/// conservatively within the object's pointer bytes, where the runtime uses its type's mask).
/// Returns the number of frames.
pub fn stack_roots(
    frames: &mut impl Frames,
    g: &Goroutine,
    stack: &[u8],
    out: &mut Vec<u64>,
) -> Result<usize, Imprecise> {
    let (sp0, hi) = (g.sp, g.hi);
    if stack.len() as u64 != hi.wrapping_sub(sp0) || sp0 == 0 || hi <= sp0 {
        return Err(Imprecise::Inconsistent(sp0));
    }
    let word = |a: u64| -> Option<u64> {
        let off = usize::try_from(a.checked_sub(sp0)?).ok()?;
        let b = stack.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    };
    let mut into_stack: Vec<u64> = Vec::new();
    let mut push = |v: u64, into_stack: &mut Vec<u64>| {
        if (g.lo..hi).contains(&v) {
            // Below SP only dead frames: nothing live points there.
            if v >= sp0 {
                into_stack.push(v);
            }
        } else if v != 0 {
            out.push(v);
        }
    };
    let mut objects: Vec<(u64, u64, u64)> = Vec::new();
    let (mut pc, mut sp, mut expect_bp) = (g.pc, sp0, g.bp);
    let mut n = 0;
    // Each frame moves SP up by at least a word, so the walk ends.
    loop {
        let fi = frames.frame(pc).ok_or(Imprecise::UnknownPc(pc))?;
        let innermost = n == 0;
        if fi.injected || (fi.sp_write && !innermost) {
            return Err(Imprecise::Special(pc));
        }
        let fp = sp + fi.fp_off;
        if fp > hi {
            return Err(Imprecise::Inconsistent(pc));
        }
        if let Some(off) = fi.saved_bp {
            let varp = sp + off;
            if expect_bp.is_some_and(|bp| bp != varp) {
                return Err(Imprecise::Inconsistent(pc));
            }
            expect_bp = Some(word(varp).ok_or(Imprecise::Inconsistent(pc))?);
        }
        for &off in &fi.slots {
            let v = word(sp + u64::from(off)).ok_or(Imprecise::Inconsistent(pc))?;
            push(v, &mut into_stack);
        }
        for &(off, size, ptr_bytes) in &fi.objects {
            if sp + off + size > hi {
                return Err(Imprecise::Inconsistent(pc));
            }
            objects.push((sp + off, size, ptr_bytes));
        }
        n += 1;
        if fi.top {
            break;
        }
        // The caller: the return address below fp (`resolveInternal`, `lrPtr`).
        pc = word(fp - 8).ok_or(Imprecise::Inconsistent(pc))?;
        sp = fp;
        if pc == 0 || sp >= hi {
            return Err(Imprecise::Inconsistent(pc));
        }
    }
    push(g.ctxt, &mut into_stack);
    push(g.panic, &mut into_stack);
    // The defer chain: each record's closure, and the heap records (`scanstack`). A record on
    // the stack is not a stack object; one on the heap is followed like any other pointer.
    let mut d = g.defer;
    for _ in 0..=stack.len() / DEFER_SIZE as usize {
        if d == 0 {
            break;
        }
        if !(g.lo..hi).contains(&d) {
            push(d, &mut into_stack);
            break;
        }
        let fn_ = word(d + DEFER_FN).ok_or(Imprecise::Inconsistent(d))?;
        push(fn_, &mut into_stack);
        d = word(d + DEFER_LINK).ok_or(Imprecise::Inconsistent(d))?;
    }
    // Stack objects reachable from the live words (`stackScanState.findObject`), transitively.
    objects.sort_unstable();
    let mut scanned = vec![false; objects.len()];
    while let Some(p) = into_stack.pop() {
        let i = objects.partition_point(|o| o.0 <= p);
        let Some(i) = i.checked_sub(1) else { continue };
        let (at, size, ptr_bytes) = objects[i];
        if p >= at + size || std::mem::replace(&mut scanned[i], true) {
            continue;
        }
        for a in (at..at + ptr_bytes).step_by(8) {
            if let Some(v) = word(a) {
                push(v, &mut into_stack);
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `net/http.(*Server).Serve` of Go 1.27.3 (tests/fixtures/pprofserve): its
    /// FUNCDATA_LocalsPointerMaps, FUNCDATA_ArgsPointerMaps and FUNCDATA_StackObjects, as linked.
    const SERVE_LOCALS: &str = "0b000000170000000000000200600200700a0070020060820070860070a6\
                                0070e2007092007082007a";
    const SERVE_ARGS: &str = "0b000000030000000505010100010101010101";
    const SERVE_OBJECTS: &str = "040000000000000088ffffff1800000018000000382f0200a0ffffff10000000\
                                 10000000282f0200b0ffffff180000001800000018300200c8ffffff20000000\
                                 20000000502f0200";

    #[test]
    fn decodes_captured_maps() {
        let locals = unhex(SERVE_LOCALS);
        let m = StackMap::parse(&locals).unwrap();
        assert_eq!((m.n, m.nbit), (11, 23));
        let slots = |i| m.bitmap(i).unwrap().slots().collect::<Vec<_>>();
        assert_eq!(slots(0), [0u32; 0]);
        assert_eq!(slots(1), [1, 21, 22]);
        assert_eq!(slots(4), [1, 21, 22]);
        assert_eq!(slots(10), [1, 7, 17, 19, 20, 21, 22]);
        assert_eq!(m.bitmap(11), None);
        assert_eq!(m.bitmap(-1), None);
        // A map cut short has no last bitmap.
        assert_eq!(
            StackMap::parse(&locals[..locals.len() - 1])
                .unwrap()
                .bitmap(10),
            None
        );
        let args = unhex(SERVE_ARGS);
        let a = StackMap::parse(&args).unwrap();
        assert_eq!((a.n, a.nbit), (11, 3));
        assert_eq!(a.bitmap(0).unwrap().slots().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(a.bitmap(4).unwrap().slots().count(), 0);
        let objs = parse_stack_objects(&unhex(SERVE_OBJECTS)).unwrap();
        let o = |off, size| StackObject {
            off,
            size,
            ptr_bytes: size,
        };
        assert_eq!(objs, [o(-120, 24), o(-96, 16), o(-80, 24), o(-56, 32)]);
        assert_eq!(parse_stack_objects(&unhex(SERVE_OBJECTS)[..70]), None);
        assert_eq!(StackMap::parse(&[1, 0, 0]), None);
    }

    #[test]
    fn bitmaps_to_slots() {
        // Two bitmaps of 10 bits, two bytes each, low bit first.
        let b = [2, 0, 0, 0, 10, 0, 0, 0, 0b1000_0001, 0b10, 0xff, 0x03];
        let m = StackMap::parse(&b).unwrap();
        let slots = |i| m.bitmap(i).unwrap().slots().collect::<Vec<_>>();
        assert_eq!(slots(0), [0, 7, 9]);
        assert_eq!(slots(1), (0..10).collect::<Vec<_>>());
        // nbit = 0: empty bitmaps, no bytes.
        let m = StackMap::parse(&[2, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(m.bitmap(1).unwrap().slots().count(), 0);
        // Go 1.22/1.23 negate `_ptrdata` for a GC program; never more than the object.
        let mut rec = 1u64.to_le_bytes().to_vec();
        for w in [-32i32, 24, -16, 0] {
            rec.extend(w.to_le_bytes());
        }
        assert_eq!(
            parse_stack_objects(&rec).unwrap(),
            [StackObject {
                off: -32,
                size: 24,
                ptr_bytes: 16
            }]
        );
        rec[16..20].copy_from_slice(&(-64i32).to_le_bytes());
        assert_eq!(parse_stack_objects(&rec).unwrap()[0].ptr_bytes, 24);
        rec[..8].copy_from_slice(&2u64.to_le_bytes());
        assert_eq!(parse_stack_objects(&rec), None);
    }

    /// Frames by PC, for walks over hand-made stacks.
    #[derive(Default)]
    struct Fake(FxHashMap<u64, Rc<FrameInfo>>);

    impl Frames for Fake {
        fn frame(&mut self, pc: u64) -> Option<Rc<FrameInfo>> {
            self.0.get(&pc).cloned()
        }
    }

    const SP: u64 = 0x1000;
    const HI: u64 = 0x1100;
    const LIVE: u64 = 0xc000_0010;
    const DEAD: u64 = 0xc000_0020;
    const ARG: u64 = 0xc000_0030;
    const IN_OBJ: u64 = 0xc000_0040;
    const STALE: u64 = 0xc000_0050;
    const CTXT: u64 = 0xc000_0060;
    const DEFER_FN_VAL: u64 = 0xc000_0070;
    const HEAP_DEFER: u64 = 0xc000_0080;

    /// Three frames: A (innermost, pc 0xa1) at 0x1000, B (0xb1) at 0x1030, C (0xc1, the top
    /// frame) at 0x1070; a `_defer` record on the stack at 0x1080.
    fn fixture() -> (Fake, Goroutine, Vec<u8>) {
        let mut frames = Fake::default();
        let info = |fp_off, saved_bp, slots: &[u32], objects: &[(u64, u64, u64)]| FrameInfo {
            fp_off,
            saved_bp,
            slots: slots.to_vec(),
            objects: objects.to_vec(),
            ..FrameInfo::default()
        };
        // A: a live local at +8 (a dead one at +0x10), an argument at fp+0, an object at +0x18.
        let a = info(0x30, Some(0x20), &[0x08, 0x30], &[(0x18, 8, 8)]);
        // B: a live pointer to A's object at +0, an object at +0x8 nothing points to.
        let b = info(0x40, Some(0x30), &[0x00], &[(0x08, 16, 16)]);
        let c = FrameInfo {
            top: true,
            ..info(8, None, &[], &[])
        };
        frames.0.insert(0xa1, Rc::new(a));
        frames.0.insert(0xb1, Rc::new(b));
        frames.0.insert(0xc1, Rc::new(c));
        let mut stack = vec![0u8; (HI - SP) as usize];
        let mut put = |at: u64, v: u64| {
            let o = (at - SP) as usize;
            stack[o..o + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(0x1008, LIVE);
        put(0x1010, DEAD);
        put(0x1018, IN_OBJ);
        put(0x1020, 0x1060); // A's saved BP: B's frame pointer
        put(0x1028, 0xb1); // A's return address
        put(0x1030, 0x1018); // B's live local, A's argument: a pointer to A's object
        put(0x1038, STALE);
        put(0x1060, 0); // B's saved BP
        put(0x1068, 0xc1);
        put(0x1080 + DEFER_FN, DEFER_FN_VAL);
        put(0x1080 + DEFER_LINK, HEAP_DEFER);
        let g = Goroutine {
            lo: 0x800,
            hi: HI,
            sp: SP,
            pc: 0xa1,
            bp: Some(0x1020),
            ctxt: CTXT,
            defer: 0x1080,
            panic: 0,
        };
        (frames, g, stack)
    }

    fn roots(frames: &mut Fake, g: &Goroutine, stack: &[u8]) -> Result<Vec<u64>, Imprecise> {
        let mut out = Vec::new();
        stack_roots(frames, g, stack, &mut out)?;
        out.sort_unstable();
        Ok(out)
    }

    #[test]
    fn walks_frames_and_keeps_live_words_only() {
        let (mut frames, g, stack) = fixture();
        let mut out = Vec::new();
        assert_eq!(stack_roots(&mut frames, &g, &stack, &mut out), Ok(3));
        out.sort_unstable();
        // A's argument slot (fp+0 = 0x1030) points into A's object too: not a root itself.
        assert_eq!(out, [LIVE, IN_OBJ, CTXT, DEFER_FN_VAL, HEAP_DEFER]);
        assert!(!out.contains(&DEAD) && !out.contains(&STALE));
        // An argument word that points out of the stack is a root.
        let mut s2 = stack.clone();
        s2[0x30..0x38].copy_from_slice(&ARG.to_le_bytes());
        let got = roots(&mut frames, &g, &s2).unwrap();
        assert!(got.contains(&ARG) && !got.contains(&IN_OBJ), "{got:x?}");
        // No frame pointer saved (Go 1.22's syscallbp): no check.
        let g2 = Goroutine { bp: None, ..g };
        assert!(roots(&mut frames, &g2, &stack).is_ok());
    }

    #[test]
    fn anything_unknown_gives_up() {
        let (frames, g, stack) = fixture();
        let run = |edit: &dyn Fn(&mut Fake, &mut Goroutine, &mut Vec<u8>)| {
            let (mut f, mut g, mut s) = (Fake(frames.0.clone()), g, stack.clone());
            edit(&mut f, &mut g, &mut s);
            roots(&mut f, &g, &s)
        };
        let edit_b = |f: &mut Fake, e: &dyn Fn(&mut FrameInfo)| {
            let mut b = (*f.0[&0xb1]).clone();
            e(&mut b);
            f.0.insert(0xb1, Rc::new(b));
        };
        // A saved BP that is not the frame's.
        assert!(matches!(
            run(&|_, g, _| g.bp = Some(0x1028)),
            Err(Imprecise::Inconsistent(0xa1))
        ));
        // A return address of no known function.
        assert_eq!(
            run(&|_, _, s| s[0x28..0x30].copy_from_slice(&0x99u64.to_le_bytes())),
            Err(Imprecise::UnknownPc(0x99))
        );
        // An injected call, or an SP-writing function past the innermost frame.
        assert_eq!(
            run(&|f, _, _| edit_b(f, &|b| b.injected = true)),
            Err(Imprecise::Special(0xb1))
        );
        assert_eq!(
            run(&|f, _, _| edit_b(f, &|b| b.sp_write = true)),
            Err(Imprecise::Special(0xb1))
        );
        let mut a = (*frames.0[&0xa1]).clone();
        a.sp_write = true;
        let mut f = Fake(frames.0.clone());
        f.0.insert(0xa1, Rc::new(a));
        assert!(
            roots(&mut f, &g, &stack).is_ok(),
            "the innermost may write SP"
        );
        // A frame or an object past the stack's top; a buffer that is not the stack.
        assert!(run(&|f, _, _| edit_b(f, &|b| b.fp_off = 0x400)).is_err());
        assert!(run(&|f, _, _| edit_b(f, &|b| b.objects = vec![(0xc0, 0x100, 8)])).is_err());
        assert!(run(&|_, _, s| s.truncate(0x80)).is_err());
        // No top frame before the stack ends.
        assert!(
            run(&|f, _, _| {
                let mut c = (*f.0[&0xc1]).clone();
                c.top = false;
                f.0.insert(0xc1, Rc::new(c));
            })
            .is_err()
        );
    }

    #[test]
    fn stack_objects_are_scanned_when_reached() {
        let (mut frames, mut g, mut stack) = fixture();
        // The panic record points into B's other object, which holds STALE.
        g.panic = 0x1038;
        assert!(roots(&mut frames, &g, &stack).unwrap().contains(&STALE));
        // A chain of objects: B's object points to A's, which points to the heap.
        g.panic = 0;
        stack[0x30..0x38].copy_from_slice(&0u64.to_le_bytes());
        assert!(!roots(&mut frames, &g, &stack).unwrap().contains(&IN_OBJ));
        stack[0x40..0x48].copy_from_slice(&0x1018u64.to_le_bytes());
        stack[0x30..0x38].copy_from_slice(&0x1040u64.to_le_bytes());
        let got = roots(&mut frames, &g, &stack).unwrap();
        assert!(got.contains(&IN_OBJ) && got.contains(&STALE), "{got:x?}");
    }

    /// Every Go function of a real binary (each installed Go version; plain and stripped PIE),
    /// at its entry and at PCs across its body: the frame's maps are found and fit the frame,
    /// as the runtime requires wherever the GC may stop.
    #[test]
    fn every_go_function_has_its_maps() {
        use crate::goruntime::pclntab::gofixtures::{self as fx, Variant};
        const FUNC_FLAG_ASM: u8 = 4;
        for tc in fx::toolchains() {
            for variant in [Variant::Plain, Variant::PieStripped] {
                let bin = crate::goruntime::GoBinary::open(fx::build(&tc, variant)).unwrap();
                let tab = bin.pclntab().unwrap();
                assert!(tab.has_gofunc(), "{} {variant:?}", tc.version);
                let (mut ok, mut bad) = (0, Vec::new());
                for f in tab.functions().filter(|f| f.flag & FUNC_FLAG_ASM == 0) {
                    let step = ((f.end - f.entry) / 16).max(1);
                    for pc in (f.entry..f.end).step_by(step as usize) {
                        if tab.sp_delta(&f, pc).is_none() {
                            continue; // padding past the code
                        }
                        match frame_info(&tab, &f, pc) {
                            Some(_) => ok += 1,
                            None => bad.push(format!("{}+{:#x}", f.name, pc - f.entry)),
                        }
                    }
                }
                assert!(ok > 10_000, "{} {variant:?}: {ok}", tc.version);
                assert!(bad.is_empty(), "{} {variant:?}: {bad:?}", tc.version);
                // A function at its entry (no frame yet), and the top frame.
                if tc.version == "1.27.3" && variant == Variant::Plain {
                    let f = tab.lookup_function("main.compute").unwrap();
                    let fi = frame_info(&tab, &f, f.entry).unwrap();
                    assert_eq!((fi.fp_off, fi.saved_bp, fi.top), (8, None, false));
                    let exit = tab.lookup_function("runtime.goexit").unwrap();
                    assert!(frame_info(&tab, &exit, exit.entry + 1).unwrap().top);
                }
            }
        }
    }
}
