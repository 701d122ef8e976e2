//! A parser of Go's `.gopclntab` (the runtime's function/line table), Go 1.20+ format only.
//!
//! Layout references (Go 1.22–1.27 all write the Go 1.20 format, magic `0xfffffff1`):
//! - header: `runtime/symtab.go` `pcHeader`, written by `cmd/link/internal/ld/pcln.go`
//!   `(*pclntab).generatePCHeader`;
//! - function table: `runtime/symtab.go` `functab` and `runtime/runtime2.go` `_func`;
//! - pc-value tables: `runtime/symtab.go` `pcvalue`, `step`, `readvarint`;
//! - file names: `runtime/symtab.go` `funcfile` (through `cutab`);
//! - inlining: `runtime/symtabinl.go` `inlinedCall`, `newInlineUnwinder`, `next`;
//! - table indices: `internal/abi/symtab.go` (`PCDATA_InlTreeIndex`, `FUNCDATA_InlTree`).
//!
//! Everything here is pure over byte slices and never panics on malformed input: every read is
//! bounds-checked and every loop is bounded by the input length.

use thiserror::Error;

/// `internal/abi/symtab.go`: `Go120PCLnTabMagic`, used by Go 1.20 and later.
pub const GO120_MAGIC: u32 = 0xffff_fff1;
const GO118_MAGIC: u32 = 0xffff_fff0;
const GO116_MAGIC: u32 = 0xffff_fffa;
const GO12_MAGIC: u32 = 0xffff_fffb;

/// `internal/abi/symtab.go`: `PCDATA_InlTreeIndex`.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `internal/abi/symtab.go`: `FUNCDATA_InlTree`.
const FUNCDATA_INL_TREE: u32 = 3;
/// Size of `pcHeader` on 64-bit targets (8 + 8 fields of 8 bytes).
const HEADER_SIZE: usize = 72;
/// Size of the fixed part of `runtime._func` (before the pcdata/funcdata arrays).
const FUNC_SIZE: usize = 44;
/// Size of `runtime.inlinedCall` (`runtime/symtabinl.go`).
const INLINED_CALL_SIZE: usize = 16;
/// Bound on inline-unwinding steps; real inline depth is a handful, this only stops cycles in
/// corrupt data.
const MAX_INLINE_DEPTH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PclntabError {
    #[error("pclntab is truncated ({0} bytes, need at least {HEADER_SIZE})")]
    TooShort(usize),
    #[error(
        "unsupported pclntab version (magic {magic:#010x}, {era}); only the Go 1.20+ format \
         (magic 0xfffffff1) is supported"
    )]
    UnsupportedVersion { magic: u32, era: &'static str },
    #[error("unsupported pclntab: {0}")]
    Unsupported(&'static str),
    #[error("corrupt pclntab: {0}")]
    Corrupt(&'static str),
}

/// A function of the table: the physical (outermost) function that owns a PC range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Func<'a> {
    pub name: &'a str,
    /// Absolute entry address (`text_start() + entryOff`).
    pub entry: u64,
    /// Entry of the next function in the table (exclusive end of this one).
    pub end: u64,
    /// `_func.startLine`: line of the `func` keyword / TEXT directive.
    pub start_line: i32,
    /// `_func.funcID` (`internal/abi/symtab.go` `FuncID`).
    pub func_id: u8,
    /// `_func.flag` (`internal/abi/symtab.go` `FuncFlag`).
    pub flag: u8,
    /// Index in the function table.
    pub index: usize,
    /// `_func.args`: size of the arguments and results on the stack (`abi.ArgsSizeUnknown`,
    /// i32::MIN, for the reflect call stubs).
    pub args: i32,
    func_off: usize,
    pcsp: u32,
    pcfile: u32,
    pcln: u32,
    npcdata: u32,
    nfuncdata: u8,
    cu_offset: u32,
}

/// One source-level frame at a PC; inlined frames come first, like `runtime.CallersFrames`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Name of the (possibly inlined) function.
    pub func: &'a str,
    pub file: &'a str,
    pub line: u32,
    /// True for a frame that was inlined into its caller (the next frame).
    pub inlined: bool,
    /// `FuncID` of the function (`inlinedCall.funcID` for inlined frames).
    pub func_id: u8,
}

/// A parsed `.gopclntab`.
#[derive(Debug, Clone)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    min_lc: u8,
    nfunc: usize,
    nfiles: usize,
    header_text_start: u64,
    text_start: u64,
    funcnametab: &'a [u8],
    cutab: &'a [u8],
    filetab: &'a [u8],
    pctab: &'a [u8],
    /// `moduledata.pclntable`: the functab followed by the `_func` records.
    pclntable: &'a [u8],
    /// `moduledata.gofunc` and the bytes from there on (for FUNCDATA offsets), if known.
    gofunc: Option<(u64, &'a [u8])>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// A NUL-terminated string at `off` (`runtime/string.go` `gostringnocopy` on the tables).
fn cstr_at(b: &[u8], off: usize) -> Option<&str> {
    let s = b.get(off..)?;
    let n = s.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&s[..n]).ok()
}

/// `runtime/symtab.go` `readvarint`: a little-endian base-128 varint of at most 32 bits.
/// Returns the value and the number of bytes consumed.
fn read_varint(p: &[u8]) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    let mut shift = 0u32;
    for (i, &b) in p.iter().enumerate() {
        if shift > 28 {
            return None;
        }
        v |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
        shift += 7;
    }
    None
}

impl<'a> Pclntab<'a> {
    /// Parses the bytes of the `.gopclntab` section (`runtime/symtab.go` `pcHeader`).
    ///
    /// `text_start()` is taken from the header's `textStart` field. That field is 0 from Go 1.26
    /// on (see the `pcHeader` comment there: "no longer stored as it requires a relocation"), and
    /// in PIE binaries it is a link-time address that the dynamic loader relocates. debug/gosym
    /// (`debug/gosym/pclntab.go` `parsePclnTab`) ignores it for that reason and uses the address
    /// its caller passes; the runtime uses `moduledata.text` (`runtime/symtab.go`
    /// `moduledata.textAddr`). Call [`Pclntab::set_text_start`] with `moduledata.text` (see
    /// `stripped::load_pclntab`) or the address of `runtime.text` when the header holds 0.
    pub fn parse(data: &'a [u8]) -> Result<Self, PclntabError> {
        if data.len() < HEADER_SIZE {
            return Err(PclntabError::TooShort(data.len()));
        }
        let magic = u32_at(data, 0).ok_or(PclntabError::TooShort(data.len()))?;
        let era = match magic {
            GO120_MAGIC => None,
            GO118_MAGIC => Some("Go 1.18-1.19"),
            GO116_MAGIC => Some("Go 1.16-1.17"),
            GO12_MAGIC => Some("Go 1.2-1.15"),
            m if m.swap_bytes() == GO120_MAGIC => Some("big-endian"),
            _ => Some("not a Go pclntab"),
        };
        if let Some(era) = era {
            return Err(PclntabError::UnsupportedVersion { magic, era });
        }
        if data[4] != 0 || data[5] != 0 {
            return Err(PclntabError::Corrupt("header padding is not zero"));
        }
        let min_lc = data[6];
        if min_lc != 1 {
            return Err(PclntabError::Unsupported(
                "instruction size quantum is not 1 (not amd64)",
            ));
        }
        if data[7] != 8 {
            return Err(PclntabError::Unsupported("pointer size is not 8"));
        }
        let field = |i: usize| u64_at(data, 8 + 8 * i).ok_or(PclntabError::TooShort(data.len()));
        let nfunc = field(0)?;
        let nfiles = field(1)?;
        let header_text_start = field(2)?;
        let table = |i: usize, what: &'static str| -> Result<&'a [u8], PclntabError> {
            let off = usize::try_from(field(i)?).map_err(|_| PclntabError::Corrupt(what))?;
            if off < HEADER_SIZE {
                return Err(PclntabError::Corrupt(what));
            }
            data.get(off..).ok_or(PclntabError::Corrupt(what))
        };
        let funcnametab = table(3, "funcname offset out of range")?;
        let cutab = table(4, "cu offset out of range")?;
        let filetab = table(5, "filetab offset out of range")?;
        let pctab = table(6, "pctab offset out of range")?;
        let pclntable = table(7, "pcln offset out of range")?;
        // The functab has nfunc+1 entries of 8 bytes (`runtime/symtab.go` `functab`; the last
        // one only holds the end offset).
        let nfunc = usize::try_from(nfunc)
            .ok()
            .filter(|n| {
                n.checked_add(1)
                    .and_then(|m| m.checked_mul(8))
                    .is_some_and(|sz| sz <= pclntable.len())
            })
            .ok_or(PclntabError::Corrupt("function count exceeds the table"))?;
        let nfiles = usize::try_from(nfiles).map_err(|_| PclntabError::Corrupt("file count"))?;
        Ok(Pclntab {
            data,
            min_lc,
            nfunc,
            nfiles,
            header_text_start,
            text_start: header_text_start,
            funcnametab,
            cutab,
            filetab,
            pctab,
            pclntable,
            gofunc: None,
        })
    }

    /// Like [`Pclntab::parse`], with the text start address given by the caller (the value of
    /// `moduledata.text`, i.e. the address of `runtime.text`).
    pub fn parse_with_text_start(data: &'a [u8], text_start: u64) -> Result<Self, PclntabError> {
        let mut t = Self::parse(data)?;
        t.text_start = text_start;
        Ok(t)
    }

    /// Sets the base address of function entry offsets (`moduledata.text`).
    pub fn set_text_start(&mut self, text_start: u64) {
        self.text_start = text_start;
    }

    /// Sets `moduledata.gofunc` (the `go:func.*` symbol) and the bytes from that address to the
    /// end of its section/segment. FUNCDATA offsets are relative to it (`runtime/symtab.go`
    /// `funcdata`); without it, [`Pclntab::frames_for_pc`] cannot expand inlined frames.
    pub fn set_gofunc(&mut self, vaddr: u64, data: &'a [u8]) {
        self.gofunc = Some((vaddr, data));
    }

    /// The base address of function entry offsets used for all lookups.
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// The raw `pcHeader.textStart` field: a link-time address in Go 1.20–1.25 (relocated at load
    /// time in PIE binaries; the file holds the link-time value), 0 in Go 1.26 and later.
    pub fn header_text_start(&self) -> u64 {
        self.header_text_start
    }

    /// Whether `moduledata.gofunc` was provided, so inlined frames can be expanded.
    pub fn has_gofunc(&self) -> bool {
        self.gofunc.is_some()
    }

    pub fn nfunc(&self) -> usize {
        self.nfunc
    }

    pub fn nfiles(&self) -> usize {
        self.nfiles
    }

    /// The raw section bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// `pcHeader.funcnameOffset`: offset of the function name table in the section.
    pub fn funcname_offset(&self) -> usize {
        self.data.len() - self.funcnametab.len()
    }

    /// Exclusive end of the covered text (`text_start + functab[nfunc].entryoff`).
    pub fn text_end(&self) -> Option<u64> {
        let off = u32_at(self.pclntable, self.nfunc * 8)?;
        self.text_start.checked_add(u64::from(off))
    }

    fn entry_off(&self, i: usize) -> Option<u32> {
        u32_at(self.pclntable, i.checked_mul(8)?)
    }

    /// The `i`-th function of the table, or `None` if it is out of range or corrupt.
    pub fn func_by_index(&self, i: usize) -> Option<Func<'a>> {
        if i >= self.nfunc {
            return None;
        }
        let entry_off = self.entry_off(i)?;
        let end_off = self.entry_off(i + 1)?;
        let func_off = u32_at(self.pclntable, i * 8 + 4)? as usize;
        // `runtime/runtime2.go` `_func`.
        let f = self
            .pclntable
            .get(func_off..func_off.checked_add(FUNC_SIZE)?)?;
        let name_off = u32_at(f, 4)? as i32;
        let name = usize::try_from(name_off)
            .ok()
            .and_then(|o| cstr_at(self.funcnametab, o))
            .unwrap_or("?");
        let entry = self.text_start.checked_add(u64::from(entry_off))?;
        let end = self
            .text_start
            .checked_add(u64::from(end_off.max(entry_off)))?;
        Some(Func {
            name,
            entry,
            end,
            start_line: u32_at(f, 36)? as i32,
            func_id: f[40],
            flag: f[41],
            index: i,
            args: u32_at(f, 8)? as i32,
            func_off,
            pcsp: u32_at(f, 16)?,
            pcfile: u32_at(f, 20)?,
            pcln: u32_at(f, 24)?,
            npcdata: u32_at(f, 28)?,
            nfuncdata: f[43],
            cu_offset: u32_at(f, 32)?,
        })
    }

    /// All functions, in address order. Corrupt entries are skipped.
    pub fn functions(&self) -> impl Iterator<Item = Func<'a>> + '_ {
        (0..self.nfunc).filter_map(move |i| self.func_by_index(i))
    }

    /// The function containing `pc`: a binary search of the functab (the runtime uses
    /// `findfunctab` buckets for speed, `runtime/symtab.go` `findfunc`; the result is the same).
    pub fn find_func(&self, pc: u64) -> Option<Func<'a>> {
        let off = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        if self.nfunc == 0 || off >= self.entry_off(self.nfunc)? {
            return None;
        }
        // Largest i with entryoff(i) <= off.
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.entry_off(mid)? <= off {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let f = self.func_by_index(lo)?;
        (f.entry <= pc && pc < f.end).then_some(f)
    }

    /// The function with this exact name (a linear scan).
    pub fn lookup_function(&self, name: &str) -> Option<Func<'a>> {
        self.functions().find(|f| f.name == name)
    }

    /// `runtime/symtab.go` `pcvalue`: the value of the pc-value table at `off` (an offset into
    /// pctab) for `target`, decoding (value delta, pc delta) pairs as in `step`. `None` if the
    /// table is absent (`off == 0`), `target` is past its end, or it is corrupt.
    fn pcvalue(&self, f: &Func<'a>, off: u32, target: u64) -> Option<i32> {
        if off == 0 || target < f.entry {
            return None;
        }
        let mut p = self.pctab.get(off as usize..)?;
        let mut pc = f.entry;
        let mut val: i32 = -1;
        let mut first = true;
        // Each iteration consumes at least two bytes of `p`, so this terminates.
        loop {
            let (uvdelta, n) = read_varint(p)?;
            if uvdelta == 0 && !first {
                return None;
            }
            p = p.get(n..)?;
            // zig-zag: -(uvdelta & 1) ^ (uvdelta >> 1)
            let delta = (uvdelta >> 1) as i32 ^ -((uvdelta & 1) as i32);
            val = val.wrapping_add(delta);
            let (pcdelta, n) = read_varint(p)?;
            p = p.get(n..)?;
            pc = pc.checked_add(u64::from(pcdelta) * u64::from(self.min_lc))?;
            first = false;
            if target < pc {
                return Some(val);
            }
        }
    }

    /// `runtime/symtab.go` `pcdatavalue` (`pcdatastart` + `pcvalue`): PCDATA table `table` at
    /// `target`; -1, as the runtime answers, if the function has no such table; `None` if the
    /// table is corrupt or does not cover `target`.
    pub fn pcdata(&self, f: &Func<'a>, table: u32, target: u64) -> Option<i32> {
        if table >= f.npcdata {
            return Some(-1);
        }
        let off = u32_at(self.pclntable, f.func_off + FUNC_SIZE + 4 * table as usize)?;
        if off == 0 {
            return Some(-1);
        }
        self.pcvalue(f, off, target)
    }

    /// `runtime/symtab.go` `funcspdelta`: the bytes SP is below its value at entry (return
    /// address excluded). `None` without a pc-sp table (`_func.pcsp == 0`) or with a corrupt one.
    pub fn sp_delta(&self, f: &Func<'a>, target: u64) -> Option<i32> {
        self.pcvalue(f, f.pcsp, target)
    }

    /// The largest `funcspdelta` anywhere in `f`: on amd64 with frame pointers, the frame's
    /// size below the return address (the saved BP and locals, `PUSHQ BP; SUBQ $x, SP`), which
    /// is SP's distance from entry at every call in the body. `None` without a pc-sp table or
    /// with a corrupt one.
    pub fn max_sp_delta(&self, f: &Func<'a>) -> Option<i32> {
        if f.pcsp == 0 {
            return None;
        }
        let mut p = self.pctab.get(f.pcsp as usize..)?;
        let (mut val, mut max, mut first) = (-1i32, None::<i32>, true);
        // As `pcvalue`, to the table's end: each iteration consumes at least two bytes.
        loop {
            let (uvdelta, n) = read_varint(p)?;
            if uvdelta == 0 && !first {
                return max;
            }
            p = p.get(n..)?;
            val = val.wrapping_add((uvdelta >> 1) as i32 ^ -((uvdelta & 1) as i32));
            let (_, n) = read_varint(p)?;
            p = p.get(n..)?;
            max = Some(max.map_or(val, |m| m.max(val)));
            first = false;
        }
    }

    /// `runtime/symtab.go` `funcdata`: the bytes at `gofunc + funcdata[i]`.
    pub fn funcdata(&self, f: &Func<'a>, i: u32) -> Option<&'a [u8]> {
        if i >= u32::from(f.nfuncdata) {
            return None;
        }
        let (_, gofunc) = self.gofunc?;
        let at = f
            .func_off
            .checked_add(FUNC_SIZE)?
            .checked_add(4usize.checked_mul(f.npcdata as usize)?)?
            .checked_add(4 * i as usize)?;
        let off = u32_at(self.pclntable, at)?;
        if off == u32::MAX {
            return None;
        }
        gofunc.get(off as usize..)
    }

    /// `runtime/symtab.go` `funcfile`: file number → name through the CU's slice of `cutab`.
    fn file_name(&self, f: &Func<'a>, fileno: i32) -> Option<&'a str> {
        let idx = f.cu_offset.checked_add(u32::try_from(fileno).ok()?)? as usize;
        let off = u32_at(self.cutab, idx.checked_mul(4)?)?;
        if off == u32::MAX {
            return None;
        }
        cstr_at(self.filetab, off as usize)
    }

    /// `runtime/symtab.go` `funcline1`: file and line of `pc` within `f` (the innermost source
    /// position, which for inlined code is inside the inlined function).
    fn file_line(&self, f: &Func<'a>, pc: u64) -> Option<(&'a str, u32)> {
        let fileno = self.pcvalue(f, f.pcfile, pc)?;
        let line = self.pcvalue(f, f.pcln, pc)?;
        Some((self.file_name(f, fileno)?, u32::try_from(line).ok()?))
    }

    /// Source file and line of `pc` (innermost position, as `go tool addr2line` reports it).
    pub fn line_for_pc(&self, pc: u64) -> Option<(&'a str, u32)> {
        let f = self.find_func(pc)?;
        self.file_line(&f, pc)
    }

    /// The source frames at `pc`, innermost first, expanding inlined calls through the inline
    /// tree as `runtime/symtabinl.go` `newInlineUnwinder`/`next` do: the frame's PC becomes
    /// `entry + inlinedCall.parentPc`, whose position is the call site, until the
    /// `PCDATA_InlTreeIndex` value is -1 (the physical function).
    ///
    /// Without `gofunc` (see [`Pclntab::set_gofunc`]) there is one frame: the physical function
    /// with the innermost file:line. Empty if `pc` is in no function or the tables are corrupt.
    pub fn frames_for_pc(&self, pc: u64) -> Vec<Frame<'a>> {
        let mut frames = Vec::new();
        let Some(f) = self.find_func(pc) else {
            return frames;
        };
        let inltree = self.funcdata(&f, FUNCDATA_INL_TREE);
        let mut cur = pc;
        for _ in 0..MAX_INLINE_DEPTH {
            let Some((file, line)) = self.file_line(&f, cur) else {
                break;
            };
            let index = match inltree {
                Some(_) => self.pcdata(&f, PCDATA_INL_TREE_INDEX, cur).unwrap_or(-1),
                None => -1,
            };
            let call = usize::try_from(index).ok().and_then(|i| {
                let at = i.checked_mul(INLINED_CALL_SIZE)?;
                inltree?.get(at..at.checked_add(INLINED_CALL_SIZE)?)
            });
            let Some(call) = call else {
                frames.push(Frame {
                    func: f.name,
                    file,
                    line,
                    inlined: false,
                    func_id: f.func_id,
                });
                break;
            };
            // `runtime/symtabinl.go` `inlinedCall`: funcID u8, _ [3]byte, nameOff int32,
            // parentPc int32, startLine int32.
            let name = u32_at(call, 4)
                .and_then(|o| cstr_at(self.funcnametab, o as usize))
                .unwrap_or("?");
            frames.push(Frame {
                func: name,
                file,
                line,
                inlined: true,
                func_id: call[0],
            });
            let Some(parent) = u32_at(call, 8).and_then(|p| u64::try_from(p as i32).ok()) else {
                break;
            };
            match f.entry.checked_add(parent) {
                Some(next) if next < f.end => cur = next,
                _ => break,
            }
        }
        frames
    }
}

#[cfg(test)]
#[path = "../../tests/gofixtures/mod.rs"]
pub(crate) mod gofixtures;

#[cfg(test)]
mod tests {
    use super::gofixtures::{self as fx, Variant};
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn synthetic_table() {
        let (d, gofunc) = fx::synthetic_pclntab();
        let mut t = Pclntab::parse(&d).unwrap();
        assert_eq!(
            (t.nfunc(), t.text_start(), t.text_end()),
            (2, 0x1000, Some(0x1020))
        );
        let names: Vec<_> = t.functions().map(|f| (f.name, f.entry, f.end)).collect();
        assert_eq!(
            names,
            [("main.f", 0x1000, 0x1010), ("main.g", 0x1010, 0x1020)]
        );
        assert_eq!(t.find_func(0xfff), None);
        assert_eq!(t.find_func(0x100f).unwrap().name, "main.f");
        assert_eq!(t.find_func(0x1010).unwrap().name, "main.g");
        assert_eq!(t.find_func(0x1020), None);
        assert_eq!(t.lookup_function("main.g").unwrap().entry, 0x1010);
        assert_eq!(t.line_for_pc(0x1003), Some(("a.go", 10)));
        assert_eq!(t.line_for_pc(0x1004), Some(("a.go", 11)));
        assert_eq!(t.line_for_pc(0x1011), Some(("b.go", 20)));
        // Without gofunc: one frame, physical function with the innermost position.
        assert_eq!(t.frames_for_pc(0x1011).len(), 1);
        t.set_gofunc(0x9000, &gofunc);
        let fr: Vec<_> = t
            .frames_for_pc(0x1011)
            .iter()
            .map(|f| (f.func, f.line, f.inlined))
            .collect();
        assert_eq!(fr, [("main.f", 20, true), ("main.g", 30, false)]);
        let fr: Vec<_> = t
            .frames_for_pc(0x1018)
            .iter()
            .map(|f| (f.func, f.line))
            .collect();
        assert_eq!(fr, [("main.g", 30)]);
    }

    #[test]
    fn rejects_old_and_foreign_tables() {
        let (mut d, _) = fx::synthetic_pclntab();
        for (magic, era) in [
            (0xffff_fff0u32, "1.18"),
            (0xffff_fffa, "1.16"),
            (0xffff_fffb, "1.2"),
        ] {
            d[..4].copy_from_slice(&magic.to_le_bytes());
            let e = Pclntab::parse(&d).unwrap_err();
            assert!(matches!(e, PclntabError::UnsupportedVersion { .. }), "{e}");
            assert!(
                e.to_string().contains("unsupported pclntab version")
                    && e.to_string().contains(era)
            );
        }
        assert_eq!(
            Pclntab::parse(&d[..10]).unwrap_err(),
            PclntabError::TooShort(10)
        );
    }

    /// Queries a (possibly corrupt) table everywhere; the point is that nothing panics.
    fn exercise(data: &[u8], gofunc: &[u8], pcs: &[u64]) {
        if let Ok(mut t) = Pclntab::parse(data) {
            t.set_gofunc(0, gofunc);
            let _ = t.functions().take(4000).count();
            let _ = t.text_end();
            for &pc in pcs {
                let _ = t.find_func(pc);
                let _ = t.line_for_pc(pc);
                let _ = t.frames_for_pc(pc);
            }
        }
    }

    /// Loop-based fuzzing with a fixed-seed xorshift: truncations and random byte corruption of
    /// the synthetic table and of a real Go pclntab (when a toolchain is installed).
    #[test]
    fn corrupt_tables_never_panic() {
        let (syn, syn_gofunc) = fx::synthetic_pclntab();
        let mut inputs = vec![(syn, syn_gofunc, (0xff0..0x1030).collect::<Vec<u64>>())];
        if let Some(tc) = fx::toolchains().pop() {
            let bin = std::fs::read(fx::build(&tc, Variant::Plain)).unwrap();
            let syms = fx::symtab(&bin);
            let (_, tab) = fx::section(&bin, ".gopclntab").unwrap();
            let t = Pclntab::parse_with_text_start(tab, syms["runtime.text"].0).unwrap();
            let pcs = t
                .functions()
                .step_by(97)
                .map(|f| f.entry + (f.end - f.entry) / 2)
                .collect();
            let gofunc = gofunc_bytes(&bin, &syms).1.to_vec();
            inputs.push((tab.to_vec(), gofunc, pcs));
        }
        let mut rnd = fx::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for (data, gofunc, pcs) in &inputs {
            for len in (0..data.len().min(400)).chain((0..200).map(|_| rnd() as usize % data.len()))
            {
                exercise(&data[..len], &gofunc[..gofunc.len().min(len)], pcs);
            }
            for _ in 0..300 {
                let mut d = data.clone();
                let mut g = gofunc.clone();
                for _ in 0..1 + rnd() % 16 {
                    let i = rnd() as usize % d.len();
                    d[i] = rnd() as u8;
                    if !g.is_empty() {
                        let j = rnd() as usize % g.len();
                        g[j] = rnd() as u8;
                    }
                }
                // Keep the header valid half of the time so the deeper paths are reached.
                if rnd().is_multiple_of(2) {
                    d[..8].copy_from_slice(&data[..8]);
                }
                exercise(&d, &g, pcs);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            pcs in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..8),
        ) {
            let mut d = GO120_MAGIC.to_le_bytes().to_vec();
            d.extend_from_slice(&[0, 0, 1, 8]);
            d.extend_from_slice(&body);
            exercise(&d, &body, &pcs);
        }
    }

    /// `go:func.*` from the symbol table, with the bytes of the section holding it.
    fn gofunc_bytes<'a>(
        bin: &'a [u8],
        syms: &std::collections::HashMap<String, (u64, u64, bool)>,
    ) -> (u64, &'a [u8]) {
        use object::{Object, ObjectSection};
        let addr = syms["go:func.*"].0;
        let file = object::File::parse(bin).unwrap();
        let s = file
            .sections()
            .find(|s| s.address() <= addr && addr < s.address() + s.size())
            .unwrap();
        (addr, &s.data().unwrap()[(addr - s.address()) as usize..])
    }

    fn pclntab_section(bin: &[u8]) -> &[u8] {
        fx::section(bin, ".gopclntab")
            .or_else(|| fx::section(bin, ".data.rel.ro.gopclntab"))
            .expect("no pclntab section")
            .1
    }

    /// Against `.symtab` and `go tool addr2line`, for every installed Go version.
    #[test]
    fn matches_symtab_and_addr2line() {
        for tc in fx::toolchains() {
            let mut lists = Vec::new();
            for variant in Variant::ALL {
                let path = fx::build(&tc, variant);
                let bin = std::fs::read(&path).unwrap();
                let data = pclntab_section(&bin);
                let mut t = Pclntab::parse(data).unwrap();
                let text = fx::section(&bin, ".text").unwrap().0;
                let hdr = t.header_text_start();
                assert!(
                    hdr == 0 || hdr == text,
                    "{} {variant:?}: textStart {hdr:#x}",
                    tc.version
                );
                t.set_text_start(text);
                lists.push(
                    t.functions()
                        .map(|f| (f.name.to_string(), f.entry))
                        .collect::<Vec<_>>(),
                );
                if variant.stripped() {
                    continue;
                }
                let syms = fx::symtab(&bin);
                assert_eq!(syms["runtime.text"].0, text);
                let (gaddr, gbytes) = gofunc_bytes(&bin, &syms);
                t.set_gofunc(gaddr, gbytes);
                let mut checked = 0;
                for (name, &(addr, size, in_text)) in &syms {
                    if !in_text || size == 0 {
                        continue; // runtime.text/etext markers
                    }
                    let f = t
                        .find_func(addr)
                        .unwrap_or_else(|| panic!("{name} not found"));
                    // The linker's symtab marks ABI0 functions with ".abi0"; pclntab does not
                    // (cmd/link/internal/ld/symtab.go `mangleABIName`), and since Go 1.23 it
                    // writes the "·" of some compiler-generated names as ".".
                    let name = name.strip_suffix(".abi0").unwrap_or(name);
                    let fname = f.name.replace('·', ".");
                    assert_eq!(
                        (fname.as_str(), f.entry),
                        (name, addr),
                        "{} {variant:?}",
                        tc.version
                    );
                    assert!(f.end >= addr + size, "{name}: end {:#x}", f.end);
                    checked += 1;
                }
                assert!(checked > 1000, "{checked}");
                check_addr2line(&tc, &path, &t);
            }
            // The same functions, at the same addresses, whether stripped or not (PIE and non-PIE
            // builds have different layouts, so compare within each pair).
            assert_eq!(lists[0], lists[1], "{}: stripped differs", tc.version);
            assert_eq!(lists[2], lists[3], "{}: stripped PIE differs", tc.version);
            let names =
                |l: &Vec<(String, u64)>| l.iter().map(|x| x.0.clone()).collect::<BTreeSet<_>>();
            assert_eq!(
                names(&lists[0]),
                names(&lists[2]),
                "{}: PIE function names",
                tc.version
            );
        }
    }

    fn check_addr2line(tc: &fx::Toolchain, path: &std::path::Path, t: &Pclntab<'_>) {
        let mut pcs = Vec::new();
        for (i, f) in t.functions().enumerate() {
            let sample = f.name.starts_with("main.")
                || (f.name.starts_with("runtime.") && i % 9 == 0)
                || f.name == "runtime.gopark";
            if sample {
                let len = f.end - f.entry;
                pcs.extend([f.entry, f.entry + len / 3, f.entry + len / 2, f.end - 1]);
            }
        }
        // Every PC of main.compute, which inlines add and point.sum.
        let compute = t.lookup_function("main.compute").unwrap();
        pcs.extend(compute.entry..compute.end);
        pcs.sort_unstable();
        pcs.dedup();
        assert!(pcs.len() > 300, "{}", pcs.len());
        let want = fx::addr2line(tc, path, &pcs);
        let mut inlined = 0;
        for (pc, w) in pcs.iter().zip(&want) {
            let frames = t.frames_for_pc(*pc);
            let got = t.line_for_pc(*pc);
            if w.line == 0 {
                // Padding after a function's code: debug/gosym reports line 0, we report nothing.
                assert_eq!(got, None, "{pc:#x} {w:?}");
                continue;
            }
            assert_eq!(
                got,
                Some((w.file.as_str(), w.line)),
                "{} {pc:#x}",
                tc.version
            );
            let (inner, outer) = (frames.first().unwrap(), frames.last().unwrap());
            assert_eq!(
                (inner.file, inner.line),
                (w.file.as_str(), w.line),
                "{pc:#x}"
            );
            assert_eq!(outer.func, w.func, "{} {pc:#x}: {frames:?}", tc.version);
            if frames.len() > 1 {
                inlined += 1;
                assert!(frames[..frames.len() - 1].iter().all(|f| f.inlined));
            }
        }
        let inl: BTreeSet<_> = (compute.entry..compute.end)
            .flat_map(|pc| t.frames_for_pc(pc))
            .filter(|f| f.inlined)
            .map(|f| f.func)
            .collect();
        assert!(
            inl.contains("main.add") && inl.contains("main.point.sum"),
            "{inl:?}"
        );
        assert!(inlined > 0, "{}: no inlined PC sampled", tc.version);
    }

    /// A function's largest SP delta is its frame as its prologue sets it up (`PUSHQ BP;
    /// MOVQ SP, BP; SUBQ $x, SP`: x + 8), for every installed Go version: the decoded
    /// instructions are the oracle.
    #[test]
    fn max_sp_delta_is_the_prologues_frame() {
        use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
        for tc in fx::toolchains() {
            let bin = std::fs::read(fx::build(&tc, Variant::Plain)).unwrap();
            let mut t = Pclntab::parse(pclntab_section(&bin)).unwrap();
            let (text, code) = fx::section(&bin, ".text").unwrap();
            t.set_text_start(text);
            let mut checked = 0;
            for f in t.functions() {
                // Assembly functions (internal/abi FuncFlagAsm) keep their own SP discipline.
                let Some(body) = code.get((f.entry - text) as usize..(f.end - text) as usize)
                else {
                    continue;
                };
                if f.flag & 4 != 0 {
                    continue;
                }
                let mut d = Decoder::with_ip(64, body, f.entry, DecoderOptions::NONE);
                // The prologue, after the stack-bound check: PUSHQ BP, MOVQ SP, BP, SUBQ $x, SP.
                let ins: Vec<_> = d.iter().take(12).collect();
                let Some(push) = ins.iter().position(|i| {
                    i.mnemonic() == Mnemonic::Push && i.op0_register() == Register::RBP
                }) else {
                    continue;
                };
                // SUBQ $x, SP, or ADDQ $-x, SP where -x fits a byte (x = 0x80).
                let frame = ins
                    .get(push + 2)
                    .filter(|i| {
                        i.op0_register() == Register::RSP
                            && matches!(
                                i.op1_kind(),
                                OpKind::Immediate8to64 | OpKind::Immediate32to64
                            )
                    })
                    .and_then(|i| match i.mnemonic() {
                        Mnemonic::Sub => Some(i.immediate(1) as i64),
                        Mnemonic::Add => Some(-(i.immediate(1) as i64)),
                        _ => None,
                    })
                    .map_or(0, |x| x as i32);
                assert_eq!(
                    t.max_sp_delta(&f),
                    Some(frame + 8),
                    "{} {}",
                    tc.version,
                    f.name
                );
                checked += 1;
            }
            assert!(checked > 1000, "{}: {checked} functions", tc.version);
            let chanrecv1 = t.lookup_function("runtime.chanrecv1").unwrap();
            assert_eq!(t.max_sp_delta(&chanrecv1), Some(0x18 + 8), "{}", tc.version);
        }
    }
}
