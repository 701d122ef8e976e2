//! Finding runtime data in Go binaries without `.symtab` (built with `-ldflags=-s -w`).
//!
//! Function names and entries survive in `.gopclntab` (see [`super::pclntab`]); data symbols do
//! not. Two small runtime functions point at the data we need, so we decode their code:
//! - `runtime.forEachG` (`runtime/proc.go`): `lock(&allglock)`, then `for _, gp := range allgs`,
//!   which loads `runtime.allgs` (slice pointer) and `runtime.allgs+8` (length) RIP-relatively.
//! - `runtime.waitReason.String` (`runtime/runtime2.go`): bounds-checks the `uint8` wait reason
//!   against `len(waitReasonStrings)` (`CMPL AL, $N`), then indexes the table it `LEAQ`s.
//!
//! Also here: the module data lookup that gives the pclntab its `moduledata.text` and
//! `moduledata.gofunc` ([`load_pclntab`]), and an ELF reader that resolves PIE
//! `R_X86_64_RELATIVE` relocations. `prologue_end` lives in [`super::prologue`] (re-exported).

use super::pclntab::{Pclntab, PclntabError};
pub use super::prologue::prologue_end;
use super::prologue::{decode_at, next_insn};
use iced_x86::{FlowControl, Mnemonic, OpKind, Register};
use object::read::elf::ElfFile64;
use object::{LittleEndian, Object, ObjectSection, ObjectSegment, RelocationFlags};
use thiserror::Error;

/// Wait reasons are a `uint8` (`runtime/runtime2.go` `type waitReason uint8`).
const MAX_WAIT_REASONS: usize = 256;
/// Longest wait-reason string we accept (the real ones are < 64 bytes).
const MAX_WAIT_REASON_LEN: u64 = 1024;
/// How far into a function we decode looking for a pattern.
const MAX_INSNS: usize = 64;

#[derive(Debug, Error)]
pub enum StrippedError {
    #[error("not a readable ELF file: {0}")]
    Elf(#[from] object::Error),
    #[error("unsupported binary: {0}")]
    Unsupported(&'static str),
    #[error(transparent)]
    Pclntab(#[from] PclntabError),
    #[error("no {0} section (is this a Go binary?)")]
    MissingSection(&'static str),
    #[error("function {0} not found in the pclntab")]
    MissingFunction(&'static str),
    #[error("address range {addr:#x}+{len:#x} is not backed by file data")]
    Unmapped { addr: u64, len: u64 },
    #[error("cannot decode {func}: {reason}")]
    Pattern { func: &'static str, reason: String },
    #[error("runtime.firstmoduledata not found: {0}")]
    NoModuledata(&'static str),
    #[error("wait reason {index}: {reason}")]
    BadWaitReason { index: usize, reason: &'static str },
}

fn pattern(func: &'static str, reason: impl Into<String>) -> StrippedError {
    StrippedError::Pattern {
        func,
        reason: reason.into(),
    }
}

/// Reads memory at link-time (or, for a live process, run-time) virtual addresses.
pub trait VaddrReader {
    /// Exactly `len` bytes at `vaddr`.
    fn read_bytes(&self, vaddr: u64, len: usize) -> Result<Vec<u8>, StrippedError>;
    /// A pointer-sized value at `vaddr`, as the program sees it after relocation.
    fn read_ptr(&self, vaddr: u64) -> Result<u64, StrippedError> {
        let b = self.read_bytes(vaddr, 8)?;
        let b: [u8; 8] = b
            .as_slice()
            .try_into()
            .map_err(|_| StrippedError::Unmapped {
                addr: vaddr,
                len: 8,
            })?;
        Ok(u64::from_le_bytes(b))
    }
    /// `n` pointers at `vaddr`, `vaddr + stride`, ...
    fn read_ptrs(&self, vaddr: u64, stride: u64, n: usize) -> Result<Vec<u64>, StrippedError> {
        (0..n as u64)
            .map(|i| {
                let at = i.checked_mul(stride).and_then(|o| vaddr.checked_add(o));
                self.read_ptr(at.ok_or(StrippedError::Unmapped {
                    addr: vaddr,
                    len: 0,
                })?)
            })
            .collect()
    }
}

/// Adapts a closure `(vaddr, len) -> Option<bytes>` (e.g. reading `/proc/<pid>/mem`).
pub struct FnReader<F>(pub F);

impl<F: Fn(u64, usize) -> Option<Vec<u8>>> VaddrReader for FnReader<F> {
    fn read_bytes(&self, vaddr: u64, len: usize) -> Result<Vec<u8>, StrippedError> {
        (self.0)(vaddr, len)
            .filter(|b| b.len() == len)
            .ok_or(StrippedError::Unmapped {
                addr: vaddr,
                len: len as u64,
            })
    }
}

#[derive(Debug, Clone)]
struct SectionInfo<'a> {
    name: String,
    vaddr: u64,
    data: &'a [u8],
}

/// An x86-64 ELF file viewed at link-time virtual addresses, through its `PT_LOAD` segments.
///
/// In PIE binaries, pointers in `.data.rel.ro` and friends carry `R_X86_64_RELATIVE` dynamic
/// relocations. Go's internal linker also writes the link-time value into the file
/// (`cmd/link/internal/amd64/asm.go` `adddynrel`: "Not mark r done here. So we still apply it
/// statically"), and so does GNU ld for `-linkmode=external` (checked in the tests), but other
/// linkers may leave 0 there, so [`VaddrReader::read_ptr`] prefers the relocation's addend
/// whenever one exists for the address.
pub struct ElfImage<'a> {
    data: &'a [u8],
    segments: Vec<(u64, &'a [u8])>,
    sections: Vec<SectionInfo<'a>>,
    /// `(r_offset, r_addend)` of `R_X86_64_RELATIVE` relocations, sorted by offset.
    relative: Vec<(u64, u64)>,
}

impl<'a> ElfImage<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, StrippedError> {
        let file = ElfFile64::<LittleEndian>::parse(data)?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(StrippedError::Unsupported("not an x86-64 ELF file"));
        }
        let segments = file
            .segments()
            .filter_map(|s| Some((s.address(), s.data().ok()?)))
            .filter(|(_, d)| !d.is_empty())
            .collect();
        let sections = file
            .sections()
            .filter(|s| s.address() != 0)
            .filter_map(|s| {
                Some(SectionInfo {
                    name: s.name().ok()?.to_string(),
                    vaddr: s.address(),
                    data: s.data().ok()?,
                })
            })
            .collect();
        let mut relative: Vec<(u64, u64)> = file
            .dynamic_relocations()
            .into_iter()
            .flatten()
            .filter(|(_, r)| {
                matches!(r.flags(), RelocationFlags::Elf { r_type } if r_type == object::elf::R_X86_64_RELATIVE)
            })
            .map(|(off, r)| (off, r.addend() as u64))
            .collect();
        relative.sort_unstable();
        Ok(ElfImage {
            data,
            segments,
            sections,
            relative,
        })
    }

    /// The whole file.
    pub fn file_data(&self) -> &'a [u8] {
        self.data
    }

    /// Address and file bytes of a section (empty for `SHT_NOBITS`).
    pub fn section(&self, name: &str) -> Option<(u64, &'a [u8])> {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .map(|s| (s.vaddr, s.data))
    }

    /// The file bytes from `vaddr` to the end of the containing segment's file data.
    pub fn bytes_from(&self, vaddr: u64) -> Option<&'a [u8]> {
        self.segments.iter().find_map(|&(start, d)| {
            let off = usize::try_from(vaddr.checked_sub(start)?).ok()?;
            (off < d.len()).then(|| &d[off..])
        })
    }

    /// Exactly `len` file bytes at `vaddr` (without applying relocations).
    pub fn read(&self, vaddr: u64, len: usize) -> Result<&'a [u8], StrippedError> {
        self.bytes_from(vaddr)
            .and_then(|d| d.get(..len))
            .ok_or(StrippedError::Unmapped {
                addr: vaddr,
                len: len as u64,
            })
    }

    /// The code of `[entry, end)`.
    pub fn code(&self, entry: u64, end: u64) -> Result<&'a [u8], StrippedError> {
        let len = end.checked_sub(entry).and_then(|l| usize::try_from(l).ok());
        let len = len.ok_or(StrippedError::Unmapped {
            addr: entry,
            len: 0,
        })?;
        self.read(entry, len)
    }

    fn relocated(&self, vaddr: u64) -> Option<u64> {
        self.relative
            .binary_search_by_key(&vaddr, |r| r.0)
            .ok()
            .map(|i| self.relative[i].1)
    }
}

impl VaddrReader for ElfImage<'_> {
    fn read_bytes(&self, vaddr: u64, len: usize) -> Result<Vec<u8>, StrippedError> {
        Ok(self.read(vaddr, len)?.to_vec())
    }
    fn read_ptr(&self, vaddr: u64) -> Result<u64, StrippedError> {
        if let Some(v) = self.relocated(vaddr) {
            return Ok(v);
        }
        let b = self.read(vaddr, 8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| {
            StrippedError::Unmapped {
                addr: vaddr,
                len: 8,
            }
        })?))
    }
}

/// The bytes of a whole ELF file, read at link-time addresses. Each call parses the file
/// again; build an [`ElfImage`] once for repeated reads.
impl VaddrReader for [u8] {
    fn read_bytes(&self, vaddr: u64, len: usize) -> Result<Vec<u8>, StrippedError> {
        ElfImage::parse(self)?.read_bytes(vaddr, len)
    }
    fn read_ptr(&self, vaddr: u64) -> Result<u64, StrippedError> {
        ElfImage::parse(self)?.read_ptr(vaddr)
    }
    fn read_ptrs(&self, vaddr: u64, stride: u64, n: usize) -> Result<Vec<u64>, StrippedError> {
        ElfImage::parse(self)?.read_ptrs(vaddr, stride, n)
    }
}

impl VaddrReader for Vec<u8> {
    fn read_bytes(&self, vaddr: u64, len: usize) -> Result<Vec<u8>, StrippedError> {
        self.as_slice().read_bytes(vaddr, len)
    }
    fn read_ptr(&self, vaddr: u64) -> Result<u64, StrippedError> {
        self.as_slice().read_ptr(vaddr)
    }
    fn read_ptrs(&self, vaddr: u64, stride: u64, n: usize) -> Result<Vec<u64>, StrippedError> {
        self.as_slice().read_ptrs(vaddr, stride, n)
    }
}

/// Fields of `runtime.firstmoduledata` (`runtime/symtab.go` `moduledata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleData {
    /// Address of the moduledata itself.
    pub vaddr: u64,
    /// `moduledata.text` (= `runtime.text`): the base of pclntab entry offsets.
    pub text: u64,
    pub etext: u64,
    /// `moduledata.rodata` (= `runtime.rodata`, at or just after the start of `.rodata`).
    pub rodata: u64,
    /// `moduledata.gofunc` (= `go:func.*`): the base of FUNCDATA offsets.
    pub gofunc: u64,
}

/// Offsets in `runtime.moduledata` on amd64 (`runtime/symtab.go`). The prefix up to `etext` is
/// the same in Go 1.20–1.27: pcHeader 0, six slices 8..152, findfunctab 152, minpc 160,
/// maxpc 168, text 176, etext 184.
const MD_FUNCNAMETAB: u64 = 8;
const MD_TEXT: u64 = 176;
const MD_ETEXT: u64 = 184;
/// `(rodata, gofunc)` offsets. Go 1.20–1.26: `..., types, etypes, rodata, gofunc` →
/// (312, 320). Go 1.27 has `types, typedesclen, etypes, itaboffset, itabsize, rodata, gofunc` →
/// (336, 344).
const MD_LAYOUTS: [(u64, u64); 2] = [(312, 320), (336, 344)];

/// Finds `runtime.firstmoduledata`: the 8-aligned word holding the pclntab address
/// (`moduledata.pcHeader`) followed by the `funcnametab` slice pointer. Go 1.26+ puts it in its
/// own `.go.module` section; older versions in `.noptrdata`. We scan every loaded segment.
pub fn find_moduledata(
    image: &ElfImage<'_>,
    pclntab_vaddr: u64,
    tab: &Pclntab<'_>,
) -> Result<ModuleData, StrippedError> {
    let funcnametab = pclntab_vaddr
        .checked_add(tab.funcname_offset() as u64)
        .ok_or(StrippedError::NoModuledata("pclntab address overflows"))?;
    let mut candidates: Vec<u64> = image
        .relative
        .iter()
        .filter(|r| r.1 == pclntab_vaddr)
        .map(|r| r.0)
        .collect();
    let want = pclntab_vaddr.to_le_bytes();
    for &(start, d) in &image.segments {
        let skip = ((8 - start % 8) % 8) as usize;
        let Some(d) = d.get(skip..) else { continue };
        for (i, w) in d.chunks_exact(8).enumerate() {
            if w == want {
                candidates.push(start.wrapping_add(skip as u64 + 8 * i as u64));
            }
        }
    }
    // `runtime.rodata` is the start of Go's read-only data: the start of `.rodata` with the
    // internal linker, a little after it with the system linker.
    let rodata_section = image
        .section(".rodata")
        .map(|(a, d)| a..a.saturating_add(d.len() as u64));
    let mut found = Vec::new();
    for md in candidates {
        let at = |off: u64| md.checked_add(off).and_then(|a| image.read_ptr(a).ok());
        if at(0) != Some(pclntab_vaddr) || at(MD_FUNCNAMETAB) != Some(funcnametab) {
            continue;
        }
        let (Some(text), Some(etext)) = (at(MD_TEXT), at(MD_ETEXT)) else {
            continue;
        };
        if text > etext || image.bytes_from(text).is_none() {
            continue;
        }
        for (ro, gf) in MD_LAYOUTS {
            let (Some(rodata), Some(gofunc)) = (at(ro), at(gf)) else {
                continue;
            };
            let rodata_ok = match &rodata_section {
                Some(range) => range.contains(&rodata),
                None => image.bytes_from(rodata).is_some(),
            };
            if rodata_ok && rodata <= gofunc && image.bytes_from(gofunc).is_some() {
                found.push(ModuleData {
                    vaddr: md,
                    text,
                    etext,
                    rodata,
                    gofunc,
                });
            }
        }
    }
    found.sort_unstable_by_key(|m| m.vaddr);
    found.dedup();
    match found.as_slice() {
        [m] => Ok(*m),
        [] => Err(StrippedError::NoModuledata(
            "no word matches the moduledata layout",
        )),
        _ => Err(StrippedError::NoModuledata("several candidates match")),
    }
}

/// Address and bytes of the pclntab: the `.gopclntab` section, or `.data.rel.ro.gopclntab` in
/// Go ≤ 1.25 PIE builds (as `cmd/internal/objfile/elf.go` `pcln` also knows). The system linker
/// merges the latter into `.data.rel.ro` (Go ≤ 1.25, `-linkmode=external`); then this finds
/// the header's magic (`runtime/symtab.go` `pcHeader`: `0xfffffff1, 0, 0, 1, 8`) in a loaded
/// segment and keeps the candidate that a moduledata points at.
pub fn pclntab_section<'a>(image: &ElfImage<'a>) -> Result<(u64, &'a [u8]), StrippedError> {
    if let Some(s) = image
        .section(".gopclntab")
        .or_else(|| image.section(".data.rel.ro.gopclntab"))
    {
        return Ok(s);
    }
    let mut magic = super::pclntab::GO120_MAGIC.to_le_bytes().to_vec();
    magic.extend_from_slice(&[0, 0, 1, 8]);
    for &(start, d) in &image.segments {
        let skip = ((8 - start % 8) % 8) as usize;
        let Some(aligned) = d.get(skip..) else {
            continue;
        };
        for (i, w) in aligned.chunks_exact(8).enumerate() {
            if w != magic.as_slice() {
                continue;
            }
            let vaddr = start.wrapping_add(skip as u64 + 8 * i as u64);
            let data = &aligned[8 * i..];
            if let Ok(tab) = Pclntab::parse(data)
                && find_moduledata(image, vaddr, &tab).is_ok()
            {
                return Ok((vaddr, data));
            }
        }
    }
    Err(StrippedError::MissingSection(".gopclntab"))
}

/// Parses the pclntab and completes it from the module data: `text_start` = `moduledata.text`
/// and `gofunc` (for inlined frames). If the module data cannot be found, falls back to the
/// header's `textStart` or else the `.text` section address (as `go tool addr2line` does; wrong
/// for externally linked binaries, where C start-up code precedes `runtime.text`) and returns
/// `None` for it; inlined frames are then not expanded.
pub fn load_pclntab<'a>(
    image: &ElfImage<'a>,
) -> Result<(Pclntab<'a>, Option<ModuleData>), StrippedError> {
    let (vaddr, data) = pclntab_section(image)?;
    let mut tab = Pclntab::parse(data)?;
    match find_moduledata(image, vaddr, &tab) {
        Ok(md) => {
            tab.set_text_start(md.text);
            if let Some(bytes) = image.bytes_from(md.gofunc) {
                tab.set_gofunc(md.gofunc, bytes);
            }
            Ok((tab, Some(md)))
        }
        Err(_) => {
            if tab.header_text_start() == 0 {
                let text = image.section(".text").map(|s| s.0);
                tab.set_text_start(text.ok_or(StrippedError::MissingSection(".text"))?);
            }
            Ok((tab, None))
        }
    }
}

/// `runtime.forEachG` → address of `runtime.allgs` (a `[]*g`: pointer, len, cap).
///
/// After the stack check and `CALL runtime.lock2` (for `lock(&allglock)`), the range loop loads
/// `allgs` and `allgs+8` RIP-relatively (`runtime/proc.go` `forEachG`; the same in Go
/// 1.22–1.27). `runtime.allglen`, a separate variable, is only read by `forEachGRace`.
///
/// `code` is the function's code (or a prefix of it), starting at `func_entry`.
pub fn find_allgs(code: &[u8], func_entry: u64) -> Result<u64, StrippedError> {
    const F: &str = "runtime.forEachG";
    let start = prologue_end(code, func_entry)?;
    let mut dec = decode_at(
        code.get(start as usize..).unwrap_or(&[]),
        func_entry.wrapping_add(start),
    );
    let mut after_call = false;
    let mut loads = Vec::new();
    for _ in 0..MAX_INSNS {
        let ins = next_insn(&mut dec, F)?;
        if !after_call {
            after_call = ins.flow_control() == FlowControl::Call;
            continue;
        }
        if ins.mnemonic() == Mnemonic::Mov
            && ins.op0_kind() == OpKind::Register
            && ins.is_ip_rel_memory_operand()
        {
            loads.push(ins.ip_rel_memory_address());
            if let [ptr, len] = loads[..] {
                return if len == ptr.wrapping_add(8) {
                    Ok(ptr)
                } else {
                    Err(pattern(
                        F,
                        format!("loads {ptr:#x} and {len:#x} are not a slice"),
                    ))
                };
            }
        }
        if matches!(
            ins.flow_control(),
            FlowControl::Return | FlowControl::UnconditionalBranch
        ) && loads.is_empty()
        {
            break;
        }
    }
    Err(pattern(
        F,
        "no two RIP-relative loads after the CALL to lock2",
    ))
}

/// `runtime.waitReason.String` → (address of `runtime.waitReasonStrings`, number of entries).
///
/// The function (`runtime/runtime2.go`) is `if w >= len(waitReasonStrings) { return "unknown
/// wait reason" }; return waitReasonStrings[w]`, compiled to `CMPL AL, $N; JCS ok; LEAQ
/// "unknown…"(SB), AX; ...; RET; ok: ...; LEAQ runtime.waitReasonStrings(SB), DX; MOVQ
/// (DX)(CX*1), AX`. The table is the RIP-relative LEA whose register is then used as an indexed
/// base; the first LEA (the "unknown" string) is not.
///
/// `code` is the function's code, starting at `func_entry`.
pub fn find_wait_reason_table(code: &[u8], func_entry: u64) -> Result<(u64, usize), StrippedError> {
    const F: &str = "runtime.waitReason.String";
    let start = prologue_end(code, func_entry)?;
    let mut dec = decode_at(
        code.get(start as usize..).unwrap_or(&[]),
        func_entry.wrapping_add(start),
    );
    let cmp = next_insn(&mut dec, F)?;
    let is_cmp_al = cmp.mnemonic() == Mnemonic::Cmp
        && cmp.op0_kind() == OpKind::Register
        && cmp.op0_register() == Register::AL
        && matches!(cmp.op1_kind(), OpKind::Immediate8);
    if !is_cmp_al {
        return Err(pattern(F, "does not begin with CMPB AL, $N"));
    }
    let imm = usize::from(cmp.immediate8());
    let count = match next_insn(&mut dec, F)?.mnemonic() {
        Mnemonic::Jb | Mnemonic::Jae => imm,     // w < N
        Mnemonic::Jbe | Mnemonic::Ja => imm + 1, // w <= N-1
        m => return Err(pattern(F, format!("CMPB AL, $N followed by {m:?}"))),
    };
    let mut leas: Vec<(Register, u64)> = Vec::new();
    for _ in 0..MAX_INSNS {
        if !dec.can_decode() {
            break;
        }
        let ins = next_insn(&mut dec, F)?;
        if ins.mnemonic() == Mnemonic::Lea && ins.is_ip_rel_memory_operand() {
            leas.push((
                ins.op0_register().full_register(),
                ins.ip_rel_memory_address(),
            ));
            continue;
        }
        let indexed = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory)
            && ins.memory_index() != Register::None;
        if indexed {
            let base = ins.memory_base().full_register();
            if let Some(&(_, addr)) = leas.iter().rev().find(|(r, _)| *r == base) {
                return Ok((addr, count));
            }
        }
    }
    Err(pattern(F, "no LEAQ of the table used as an indexed base"))
}

/// Reads the `count` Go strings (`{ptr, len}`, 16 bytes each) of the wait reason table.
/// Entry 0 (`waitReasonZero`) is the empty string with a nil pointer.
pub fn read_wait_reason_strings<R: VaddrReader + ?Sized>(
    reader: &R,
    table_vaddr: u64,
    count: usize,
) -> Result<Vec<String>, StrippedError> {
    if count > MAX_WAIT_REASONS {
        return Err(StrippedError::BadWaitReason {
            index: count,
            reason: "more entries than a uint8 can index",
        });
    }
    let bad = |index, reason| StrippedError::BadWaitReason { index, reason };
    // Lengths are plain integers; pointers may carry PIE relocations.
    let raw = reader.read_bytes(table_vaddr, 16 * count)?;
    let ptrs = reader.read_ptrs(table_vaddr, 16, count)?;
    let mut spans = Vec::with_capacity(count);
    for (index, (entry, &ptr)) in raw.chunks_exact(16).zip(&ptrs).enumerate() {
        let len = u64::from_le_bytes(entry[8..].try_into().unwrap_or_default());
        if len > MAX_WAIT_REASON_LEN {
            return Err(bad(index, "implausible string length"));
        }
        let end = ptr
            .checked_add(len)
            .ok_or(bad(index, "string address overflows"))?;
        spans.push((ptr, end));
    }
    // The strings sit together in .rodata: read them in one go when that works.
    let used = spans.iter().filter(|(p, e)| e > p);
    let lo = used.clone().map(|s| s.0).min().unwrap_or(0);
    let hi = used.map(|s| s.1).max().unwrap_or(0);
    let blob = (hi > lo && hi - lo <= 1 << 20)
        .then(|| reader.read_bytes(lo, (hi - lo) as usize).ok())
        .flatten();
    let mut out = Vec::with_capacity(count);
    for (index, &(ptr, end)) in spans.iter().enumerate() {
        let bytes = match &blob {
            _ if end == ptr => Vec::new(),
            Some(b) => b[(ptr - lo) as usize..(end - lo) as usize].to_vec(),
            None => reader.read_bytes(ptr, (end - ptr) as usize)?,
        };
        out.push(String::from_utf8(bytes).map_err(|_| bad(index, "not UTF-8"))?);
    }
    Ok(out)
}

/// What [`locate_runtime_data`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeData {
    /// Address of `runtime.allgs` (slice header: ptr at +0, len at +8, cap at +16).
    pub allgs: u64,
    /// Address of `runtime.waitReasonStrings`.
    pub wait_reason_table: u64,
    /// The table's strings, indexed by `waitReason`.
    pub wait_reasons: Vec<String>,
}

/// Finds `runtime.allgs` and the wait-reason strings of a Go binary, with or without
/// `.symtab`, from the code of `runtime.forEachG` and `runtime.waitReason.String`.
pub fn locate_runtime_data(image: &ElfImage<'_>) -> Result<RuntimeData, StrippedError> {
    let (tab, _) = load_pclntab(image)?;
    let func = |name: &'static str| -> Result<(u64, &[u8]), StrippedError> {
        let f = tab
            .lookup_function(name)
            .ok_or(StrippedError::MissingFunction(name))?;
        Ok((f.entry, image.code(f.entry, f.end)?))
    };
    let (entry, code) = func("runtime.forEachG")?;
    let allgs = find_allgs(code, entry)?;
    let (entry, code) = func("runtime.waitReason.String")?;
    let (table, count) = find_wait_reason_table(code, entry)?;
    Ok(RuntimeData {
        allgs,
        wait_reason_table: table,
        wait_reasons: read_wait_reason_strings(image, table, count)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::pclntab::gofixtures::{self as fx, Variant};
    use super::*;

    const EXPECTED_REASONS: [&str; 4] = ["chan receive", "chan send", "select", "sync.Mutex.Lock"];

    #[test]
    fn real_binaries() {
        for tc in fx::toolchains() {
            let v = &tc.version;
            let mut reasons = Vec::new();
            for variant in Variant::ALL {
                let bin = std::fs::read(fx::build(&tc, variant)).unwrap();
                let image = ElfImage::parse(&bin).unwrap();
                let (tab, md) = load_pclntab(&image).unwrap();
                let md = md.unwrap_or_else(|| panic!("{v} {variant:?}: no moduledata"));
                let data = locate_runtime_data(&image).unwrap();
                assert!(data.wait_reasons.len() > 30, "{v}: {:?}", data.wait_reasons);
                assert_eq!(data.wait_reasons[0], "");
                for want in EXPECTED_REASONS {
                    assert!(data.wait_reasons.iter().any(|r| r == want), "{v}: {want}");
                }
                if matches!(variant, Variant::Pie | Variant::PieStripped) {
                    check_pie_relocations(&image, &data, v);
                }
                eprintln!(
                    "{v} {variant:?}: {} wait reasons, allgs {:#x}, moduledata {:#x}, \
                     header textStart {:#x}, {} R_X86_64_RELATIVE",
                    data.wait_reasons.len(),
                    data.allgs,
                    md.vaddr,
                    tab.header_text_start(),
                    image.relative.len()
                );
                if !variant.stripped() {
                    let syms = fx::symtab(&bin);
                    assert_eq!(md.vaddr, syms["runtime.firstmoduledata"].0, "{v}");
                    assert_eq!(md.text, syms["runtime.text"].0, "{v}");
                    assert_eq!(md.gofunc, syms["go:func.*"].0, "{v}");
                    assert_eq!(md.rodata, syms["runtime.rodata"].0, "{v}");
                    assert_eq!(data.allgs, syms["runtime.allgs"].0, "{v}");
                    let (table, size, _) = syms["runtime.waitReasonStrings"];
                    assert_eq!(data.wait_reason_table, table, "{v}");
                    assert_eq!(data.wait_reasons.len() as u64, size / 16, "{v}");
                    let via_symtab = read_wait_reason_strings(&bin, table, size as usize / 16);
                    assert_eq!(via_symtab.unwrap(), data.wait_reasons, "{v}");
                }
                // Inlined frames resolve in the stripped build exactly as in the unstripped.
                let compute = tab.lookup_function("main.compute").unwrap();
                let frames: Vec<Vec<String>> = (compute.entry..compute.end)
                    .map(|pc| {
                        tab.frames_for_pc(pc)
                            .iter()
                            .map(|f| format!("{f:?}"))
                            .collect()
                    })
                    .collect();
                assert!(
                    frames.iter().any(|f| f.len() > 1),
                    "{v} {variant:?}: no inlining"
                );
                reasons.push((data.wait_reasons, frames));
            }
            assert_eq!(reasons[0], reasons[1], "{v}: stripped differs");
            assert_eq!(reasons[2], reasons[3], "{v}: stripped PIE differs");
            assert_eq!(reasons[0].0, reasons[2].0, "{v}: PIE differs");
        }
    }

    /// PIE binaries linked by the system linker: base address 0, and `runtime.text` is not the
    /// start of `.text` (crt code comes first), so only `moduledata.text` gives the right base.
    #[test]
    fn externally_linked_pie() {
        if !fx::have_gcc() {
            eprintln!("skipping: no gcc for -linkmode=external");
            return;
        }
        for tc in fx::toolchains() {
            let v = &tc.version;
            let mut results = Vec::new();
            for variant in Variant::EXTERNAL {
                let bin = std::fs::read(fx::build(&tc, variant)).unwrap();
                let image = ElfImage::parse(&bin).unwrap();
                let (tab, md) = load_pclntab(&image).unwrap();
                let md = md.unwrap();
                let data = locate_runtime_data(&image).unwrap();
                check_pie_relocations(&image, &data, v);
                if variant == Variant::ExtPie {
                    let syms = fx::symtab(&bin);
                    assert_eq!(md.text, syms["runtime.text"].0, "{v}");
                    assert_ne!(md.text, image.section(".text").unwrap().0, "{v}");
                    assert_eq!(data.allgs, syms["runtime.allgs"].0, "{v}");
                    assert_eq!(data.wait_reason_table, syms["runtime.waitReasonStrings"].0);
                    let mut checked = 0;
                    for (name, &(addr, size, in_text)) in &syms {
                        if in_text && size > 0 && md.text <= addr && addr < md.etext {
                            let f = tab.find_func(addr).unwrap_or_else(|| panic!("{v}: {name}"));
                            assert_eq!(f.entry, addr, "{v}: {name}");
                            checked += 1;
                        }
                    }
                    assert!(checked > 1000, "{v}: {checked}");
                }
                let compute = tab.lookup_function("main.compute").unwrap();
                let frames: Vec<String> = (compute.entry..compute.end)
                    .map(|pc| format!("{:?}", tab.frames_for_pc(pc)))
                    .collect();
                results.push((data.wait_reasons, frames));
            }
            assert_eq!(results[0], results[1], "{v}: stripped differs");
        }
    }

    /// In PIE builds the table's string pointers carry R_X86_64_RELATIVE relocations. Go's
    /// internal linker also stores the link-time value in the file; check that, then check that
    /// the addends alone suffice (as with linkers that leave zeros in the file).
    fn check_pie_relocations(image: &ElfImage<'_>, data: &RuntimeData, v: &str) {
        let n = data.wait_reasons.len();
        for i in 1..n as u64 {
            let at = data.wait_reason_table + 16 * i;
            let addend = image
                .relocated(at)
                .unwrap_or_else(|| panic!("{v}: no reloc at {at:#x}"));
            let raw = u64::from_le_bytes(image.read(at, 8).unwrap().try_into().unwrap());
            assert_eq!(raw, addend, "{v}: file content differs from the addend");
        }
        let mut zeroed = image.file_data().to_vec();
        let (start, off) = {
            let f = object::File::parse(image.file_data()).unwrap();
            let seg = f
                .segments()
                .find(|s| {
                    let a = data.wait_reason_table;
                    s.address() <= a && a < s.address() + s.size()
                })
                .unwrap();
            (seg.address(), seg.file_range().0)
        };
        for i in 0..n as u64 {
            let o = (off + data.wait_reason_table - start + 16 * i) as usize;
            zeroed[o..o + 8].fill(0);
        }
        let z = ElfImage::parse(&zeroed).unwrap();
        let got = read_wait_reason_strings(&z, data.wait_reason_table, n).unwrap();
        assert_eq!(got, data.wait_reasons, "{v}: reading through addends");
    }

    #[test]
    fn garbage_never_panics() {
        let mut rnd = fx::xorshift(0x2545_f491_4f6c_dd1du64);
        for _ in 0..2000 {
            let code: Vec<u8> = (0..rnd() % 64).map(|_| rnd() as u8).collect();
            let _ = prologue_end(&code, 0x1000);
            let _ = prologue_end(&code, u64::MAX - rnd() % 64);
            let _ = find_allgs(&code, u64::MAX - rnd() % 64);
            let _ = find_wait_reason_table(&code, u64::MAX - rnd() % 64);
            let _ = find_allgs(&code, 0x1000);
            let _ = find_wait_reason_table(&code, 0x1000);
        }
        let reader = FnReader(|_, len| Some(vec![0xff; len]));
        assert!(read_wait_reason_strings(&reader, 0, 300).is_err());
        assert!(read_wait_reason_strings(&reader, u64::MAX - 20, 5).is_err());
        let Some(tc) = fx::toolchains().pop() else {
            return;
        };
        let bin = std::fs::read(fx::build(&tc, Variant::PieStripped)).unwrap();
        for len in (0..bin.len()).step_by(bin.len() / 97) {
            if let Ok(img) = ElfImage::parse(&bin[..len]) {
                let _ = locate_runtime_data(&img);
            }
        }
        for _ in 0..60 {
            let mut b = bin.clone();
            for _ in 0..1 + rnd() % 64 {
                let i = rnd() as usize % b.len();
                b[i] = rnd() as u8;
            }
            if let Ok(img) = ElfImage::parse(&b) {
                let _ = locate_runtime_data(&img);
            }
        }
    }
}
