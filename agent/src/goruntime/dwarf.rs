//! Reads the Go runtime struct layouts ([`GoLayout`]) out of a Go binary's DWARF.
//!
//! Go's linker (src/cmd/link/internal/ld/dwarf.go) emits every type DIE as a top-level
//! child of the `runtime` compile unit, which is the first unit in `.debug_info`, so the
//! search starts there and stops as soon as every wanted struct is found; the other
//! units are only searched if something is missing. Go writes DWARF 4 up to 1.24 and
//! DWARF 5 from 1.25, and compresses the sections with zlib (`SHF_COMPRESSED` with
//! `.debug_*` names in every supported release; older linkers used `.zdebug_*` names,
//! which `object` also finds and inflates). Names are inline `DW_FORM_string`s, member
//! offsets `DW_FORM_udata` constants; `.debug_str`/`.debug_line_str` forms and
//! `DW_OP_plus_uconst` locations are accepted too.
//!
//! A stripped binary (`-ldflags=-s -w`) has no `.debug_info`: that is
//! [`DwarfError::NoDebugInfo`], and the caller falls back to [`GoLayout::for_version`].

use std::borrow::Cow;
use std::sync::Arc;

use gimli::{
    Abbreviations, AttributeValue, DebugAbbrev, DebugAbbrevOffset, DebugInfo, DebugInfoOffset,
    DebugLineStr, DebugStr, EndianSlice, RunTimeEndian, UnitHeader, constants,
};
use object::{Object, ObjectSection};

use super::layout::{
    AbiTypeLayout, GLayout, GoLayout, HchanLayout, MLayout, PLayout, SudogLayout, WaitqLayout,
};

/// Why no layout could be read from DWARF.
#[derive(Debug, thiserror::Error)]
pub enum DwarfError {
    /// No (or an empty) `.debug_info`: the binary was stripped, e.g. `-ldflags=-s -w`.
    #[error("the binary has no DWARF debug info (no .debug_info; built with -ldflags=-s -w?)")]
    NoDebugInfo,
    /// The file is not an object file `object` can parse.
    #[error("cannot parse the binary: {0}")]
    Object(#[source] object::Error),
    /// A DWARF section could not be read or decompressed.
    #[error("cannot read section {section}: {source}")]
    Section {
        section: &'static str,
        #[source]
        source: object::Error,
    },
    /// The DWARF is malformed (truncated, bad abbreviation, ...).
    #[error("malformed DWARF: {0}")]
    Gimli(#[from] gimli::Error),
    /// A required struct is not described (not a Go binary, or an unexpected Go version).
    #[error("DWARF describes no struct {0} (not a Go binary, or an unsupported Go version)")]
    MissingStruct(&'static str),
    /// A required member is not in the struct (an unsupported Go version).
    #[error("struct {strukt} in DWARF has no member {member} (unsupported Go version?)")]
    MissingMember {
        strukt: &'static str,
        member: &'static str,
    },
    /// The DWARF is well-formed but not shaped as expected.
    #[error("unexpected DWARF for {what}: {why}")]
    Unexpected { what: String, why: &'static str },
}

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// The raw (uncompressed) DWARF sections this module reads.
#[derive(Clone, Copy, Debug)]
pub struct DwarfSections<'a> {
    pub endian: RunTimeEndian,
    pub debug_info: &'a [u8],
    pub debug_abbrev: &'a [u8],
    /// Empty if absent (Go writes none).
    pub debug_str: &'a [u8],
    /// Empty if absent (Go writes none).
    pub debug_line_str: &'a [u8],
}

/// Reads the layout from the DWARF of an ELF Go binary.
pub fn layout_from_dwarf(elf: &object::File<'_>) -> Result<GoLayout, DwarfError> {
    let endian = if elf.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let debug_info = load_section(elf, ".debug_info")?;
    if debug_info.is_empty() {
        return Err(DwarfError::NoDebugInfo);
    }
    // Only the sections needed for type DIEs: .debug_line/.debug_frame/.debug_loc* are
    // the bulk of Go's DWARF and are left compressed.
    let debug_abbrev = load_section(elf, ".debug_abbrev")?;
    let debug_str = load_section(elf, ".debug_str")?;
    let debug_line_str = load_section(elf, ".debug_line_str")?;
    layout_from_sections(&DwarfSections {
        endian,
        debug_info: &debug_info,
        debug_abbrev: &debug_abbrev,
        debug_str: &debug_str,
        debug_line_str: &debug_line_str,
    })
}

/// [`layout_from_dwarf`] on the bytes of a binary.
pub fn layout_from_elf_bytes(data: &[u8]) -> Result<GoLayout, DwarfError> {
    let file = object::File::parse(data).map_err(DwarfError::Object)?;
    layout_from_dwarf(&file)
}

/// A section's uncompressed data, or empty if the file has no such section.
/// `section_by_name` also finds the `.zdebug_*` spelling; `uncompressed_data` inflates
/// both that and `SHF_COMPRESSED`.
fn load_section<'d>(
    elf: &object::File<'d>,
    name: &'static str,
) -> Result<Cow<'d, [u8]>, DwarfError> {
    match elf.section_by_name(name) {
        None => Ok(Cow::Borrowed(&[])),
        Some(s) => s.uncompressed_data().map_err(|source| DwarfError::Section {
            section: name,
            source,
        }),
    }
}

// The structs searched for, by DWARF name. Indices into `Reader::structs`.
const G: usize = 0;
const M: usize = 1;
const HCHAN: usize = 2;
const WAITQ: usize = 3;
const SUDOG: usize = 4;
const GOBUF: usize = 5;
const STACK: usize = 6;
const P: usize = 7;
const ABI_TYPE: usize = 8;
const RUNTIME_TYPE: usize = 9;
const WANTED: [&str; 10] = [
    "runtime.g",         // src/runtime/runtime2.go
    "runtime.m",         // src/runtime/runtime2.go
    "runtime.hchan",     // src/runtime/chan.go
    "runtime.waitq",     // src/runtime/chan.go
    "runtime.sudog",     // src/runtime/runtime2.go
    "runtime.gobuf",     // src/runtime/runtime2.go
    "runtime.stack",     // src/runtime/stack.go
    "runtime.p",         // src/runtime/runtime2.go
    "internal/abi.Type", // src/internal/abi/type.go (Go >= 1.21)
    "runtime._type",     // an alias of abi.Type now; a struct of its own before Go 1.21
];

/// A unit's header and its abbreviations, kept to resolve type references.
struct UnitCtx<'a> {
    header: UnitHeader<R<'a>>,
    abbrevs: Arc<Abbreviations>,
}

#[derive(Debug)]
struct Member {
    name: String,
    offset: Option<u64>,
    ty: Option<DebugInfoOffset>,
}

#[derive(Debug)]
struct Struct {
    name: &'static str,
    size: Option<u64>,
    members: Vec<Member>,
}

struct Reader<'a> {
    s: DwarfSections<'a>,
    info: DebugInfo<R<'a>>,
    abbrev: DebugAbbrev<R<'a>>,
    /// Abbreviation tables by offset: Go's units all share one.
    abbrev_cache: Vec<(DebugAbbrevOffset, Arc<Abbreviations>)>,
    units: Vec<UnitCtx<'a>>,
    /// The size of the units searched (to test that the search stops early).
    scanned_bytes: usize,
    structs: [Option<Struct>; WANTED.len()],
}

/// Reads the layout from raw DWARF sections. Never panics on malformed input.
pub fn layout_from_sections(s: &DwarfSections<'_>) -> Result<GoLayout, DwarfError> {
    if s.debug_info.is_empty() {
        return Err(DwarfError::NoDebugInfo);
    }
    let mut r = Reader::new(s);
    r.find_structs()?;
    r.build()
}

/// How many bytes of `.debug_info` units the search read, for tests.
#[cfg(test)]
fn scanned_bytes(s: &DwarfSections<'_>) -> Result<usize, DwarfError> {
    let mut r = Reader::new(s);
    r.find_structs()?;
    Ok(r.scanned_bytes)
}

impl<'a> Reader<'a> {
    fn new(s: &DwarfSections<'a>) -> Self {
        Reader {
            s: *s,
            info: DebugInfo::new(s.debug_info, s.endian),
            abbrev: DebugAbbrev::new(s.debug_abbrev, s.endian),
            abbrev_cache: Vec::new(),
            units: Vec::new(),
            scanned_bytes: 0,
            structs: Default::default(),
        }
    }

    fn abbreviations(&mut self, off: DebugAbbrevOffset) -> Result<Arc<Abbreviations>, DwarfError> {
        if let Some((_, a)) = self.abbrev_cache.iter().find(|(o, _)| *o == off) {
            return Ok(a.clone());
        }
        let a = Arc::new(self.abbrev.abbreviations(off)?);
        self.abbrev_cache.push((off, a.clone()));
        Ok(a)
    }

    /// Whether the search can stop: every struct found, `abi.Type` under either name.
    fn all_found(&self) -> bool {
        let either_type = self.structs[ABI_TYPE].is_some() || self.structs[RUNTIME_TYPE].is_some();
        self.structs
            .iter()
            .enumerate()
            .all(|(i, s)| s.is_some() || (either_type && (i == ABI_TYPE || i == RUNTIME_TYPE)))
    }

    /// Searches the units named `runtime`, smallest first, then (only if something is
    /// still missing) the rest. The linker (src/cmd/link/internal/ld/dwarf.go,
    /// `movetomodule`) appends every type DIE to one of the runtime package's units,
    /// whose position among them varies by release; it is smaller than the unit holding
    /// most of the runtime's functions in every supported release, so smallest-first finds
    /// it without reading that one.
    fn find_structs(&mut self) -> Result<(), DwarfError> {
        let mut headers = self.info.units();
        while let Some(header) = headers.next()? {
            let abbrevs = self.abbreviations(header.debug_abbrev_offset())?;
            self.units.push(UnitCtx { header, abbrevs });
        }
        let mut order: Vec<(bool, usize, usize)> = Vec::with_capacity(self.units.len());
        for (idx, u) in self.units.iter().enumerate() {
            let runtime = self.is_runtime_unit(idx)?;
            let len = if runtime {
                u.header.length_including_self()
            } else {
                0
            };
            order.push((!runtime, len, idx));
        }
        order.sort_unstable();
        for (_, _, idx) in order {
            self.scanned_bytes += self.units[idx].header.length_including_self();
            self.scan_unit(idx)?;
            if self.all_found() {
                break;
            }
        }
        Ok(())
    }

    fn is_runtime_unit(&self, idx: usize) -> Result<bool, DwarfError> {
        let u = &self.units[idx];
        let mut tree = u.header.entries_tree(&u.abbrevs, None)?;
        let root = tree.root()?;
        Ok(self
            .name_of(root.entry())
            .is_some_and(|n| n.slice() == b"runtime"))
    }

    fn name_of(&self, e: &gimli::DebuggingInformationEntry<R<'a>>) -> Option<R<'a>> {
        match e.attr(constants::DW_AT_name)?.value() {
            AttributeValue::String(s) => Some(s),
            AttributeValue::DebugStrRef(o) => DebugStr::new(self.s.debug_str, self.s.endian)
                .get_str(o)
                .ok(),
            AttributeValue::DebugLineStrRef(o) => {
                DebugLineStr::new(self.s.debug_line_str, self.s.endian)
                    .get_str(o)
                    .ok()
            }
            // Index forms (strx) need the unit's str_offsets_base; Go never writes them.
            _ => None,
        }
    }

    /// Collects the wanted structs among the unit's top-level DIEs.
    fn scan_unit(&mut self, idx: usize) -> Result<(), DwarfError> {
        let header = self.units[idx].header;
        let abbrevs = self.units[idx].abbrevs.clone();
        let mut tree = header.entries_tree(&abbrevs, None)?;
        let root = tree.root()?;
        let mut top = root.children();
        while let Some(node) = top.next()? {
            let e = node.entry();
            if e.tag() != constants::DW_TAG_structure_type {
                continue;
            }
            let Some(name) = self.name_of(e) else {
                continue;
            };
            let Some(i) = WANTED.iter().position(|w| w.as_bytes() == name.slice()) else {
                continue;
            };
            if self.structs[i].is_some() {
                continue;
            }
            let size = e
                .attr(constants::DW_AT_byte_size)
                .and_then(|a| a.udata_value());
            let members = self.members(&header, node)?;
            self.structs[i] = Some(Struct {
                name: WANTED[i],
                size,
                members,
            });
            if self.all_found() {
                break;
            }
        }
        Ok(())
    }

    fn members(
        &self,
        header: &UnitHeader<R<'a>>,
        node: gimli::EntriesTreeNode<'_, '_, R<'a>>,
    ) -> Result<Vec<Member>, DwarfError> {
        let encoding = header.encoding();
        let mut out = Vec::new();
        let mut kids = node.children();
        while let Some(child) = kids.next()? {
            let c = child.entry();
            if c.tag() != constants::DW_TAG_member {
                continue;
            }
            let name = self
                .name_of(c)
                .map(|n| String::from_utf8_lossy(n.slice()).into_owned())
                .unwrap_or_default();
            let offset = c
                .attr(constants::DW_AT_data_member_location)
                .and_then(|a| member_location(a.raw_value(), encoding));
            let ty = match c.attr(constants::DW_AT_type).map(|a| a.value()) {
                Some(AttributeValue::UnitRef(o)) => o.to_debug_info_offset(header),
                Some(AttributeValue::DebugInfoRef(o)) => Some(o),
                _ => None,
            };
            out.push(Member { name, offset, ty });
        }
        Ok(out)
    }

    /// What the type DIE at a `.debug_info` offset is (members read for a struct).
    fn type_at(&self, off: DebugInfoOffset, what: &str) -> Result<DieKind, DwarfError> {
        let (u, uoff) = self
            .units
            .iter()
            .find_map(|u| Some((u, off.to_unit_offset(&u.header)?)))
            .ok_or_else(|| DwarfError::Unexpected {
                what: what.to_owned(),
                why: "type reference outside .debug_info's units",
            })?;
        let mut tree = u.header.entries_tree(&u.abbrevs, Some(uoff))?;
        let node = tree.root()?;
        let e = node.entry();
        Ok(match e.tag() {
            constants::DW_TAG_structure_type => DieKind::Struct(self.members(&u.header, node)?),
            constants::DW_TAG_typedef => match e.attr(constants::DW_AT_type).map(|a| a.value()) {
                Some(AttributeValue::UnitRef(o)) => {
                    DieKind::Typedef(o.to_debug_info_offset(&u.header))
                }
                Some(AttributeValue::DebugInfoRef(o)) => DieKind::Typedef(Some(o)),
                _ => DieKind::Typedef(None),
            },
            _ => DieKind::Scalar,
        })
    }

    fn get(&self, i: usize) -> Result<&Struct, DwarfError> {
        self.structs[i]
            .as_ref()
            .ok_or(DwarfError::MissingStruct(WANTED[i]))
    }

    /// The offset of the word holding the address that member `name` of `st` points at:
    /// the member itself if it is a pointer, else the `vu` of a `maybeTraceablePtr`
    /// (src/runtime/runtime2.go, Go >= 1.26), through embedded single-field structs
    /// such as `maybeTraceableChan`.
    fn address_word(&self, st: &Struct, name: &'static str) -> Result<u64, DwarfError> {
        let m = st.member(name)?;
        let what = || format!("{}.{}", st.name, name);
        let mut off = m.offset.ok_or_else(|| no_location(st, name))?;
        let mut ty = m.ty;
        for _ in 0..8 {
            let Some(t) = ty else {
                return Ok(off);
            };
            match self.type_at(t, &what())? {
                DieKind::Scalar => return Ok(off),
                DieKind::Typedef(next) => ty = next,
                DieKind::Struct(members) => {
                    let inner = match members.iter().find(|m| m.name == "vu") {
                        Some(vu) => vu,
                        None if members.len() == 1 => &members[0],
                        None => {
                            return Err(DwarfError::Unexpected {
                                what: what(),
                                why: "a struct with neither a vu field nor a single field",
                            });
                        }
                    };
                    let inner_off = inner.offset.ok_or_else(|| DwarfError::Unexpected {
                        what: what(),
                        why: "an inner member without a constant location",
                    })?;
                    off = checked_add(off, inner_off, &what())?;
                    if inner.name == "vu" {
                        return Ok(off);
                    }
                    ty = inner.ty;
                }
            }
        }
        Err(DwarfError::Unexpected {
            what: what(),
            why: "type chain too deep",
        })
    }

    fn build(&self) -> Result<GoLayout, DwarfError> {
        let g = self.get(G)?;
        let gobuf = self.get(GOBUF)?;
        let stack = self.get(STACK)?;
        let g_stack = g.off("stack")?;
        let g_sched = g.off("sched")?;
        let nested = |outer: u32, inner: u32, what: &str| -> Result<u32, DwarfError> {
            to_u32(checked_add(outer.into(), inner.into(), what)?, what)
        };
        let g_layout = GLayout {
            size: g.size()?,
            stack_lo: nested(g_stack, stack.off("lo")?, "g.stack.lo")?,
            stack_hi: nested(g_stack, stack.off("hi")?, "g.stack.hi")?,
            m: g.off("m")?,
            sched: g_sched,
            sched_sp: nested(g_sched, gobuf.off("sp")?, "g.sched.sp")?,
            sched_pc: nested(g_sched, gobuf.off("pc")?, "g.sched.pc")?,
            sched_bp: nested(g_sched, gobuf.off("bp")?, "g.sched.bp")?,
            syscallsp: g.off("syscallsp")?,
            syscallpc: g.off("syscallpc")?,
            syscallbp: g.opt("syscallbp"),
            atomicstatus: g.off("atomicstatus")?,
            goid: g.off("goid")?,
            waitsince: g.off("waitsince")?,
            tracking_seq: g.off("trackingSeq")?,
            waitreason: g.off("waitreason")?,
            parent_goid: g.off("parentGoid")?,
            gopc: g.off("gopc")?,
            startpc: g.off("startpc")?,
            waiting: g.off("waiting")?,
        };

        let m = self.get(M)?;
        let m_layout = MLayout {
            size: m.size()?,
            g0: m.off("g0")?,
            procid: m.off("procid")?,
            curg: m.off("curg")?,
            p: m.opt("p"),
            id: m.off("id")?,
        };

        let h = self.get(HCHAN)?;
        let hchan = HchanLayout {
            size: h.size()?,
            qcount: h.off("qcount")?,
            dataqsiz: h.off("dataqsiz")?,
            buf: h.off("buf")?,
            elemsize: h.off("elemsize")?,
            closed: h.off("closed")?,
            timer: h.opt("timer"),
            elemtype: h.off("elemtype")?,
            sendx: h.off("sendx")?,
            recvx: h.off("recvx")?,
            recvq: h.off("recvq")?,
            sendq: h.off("sendq")?,
            bubble: h.opt("bubble"),
            lock: h.off("lock")?,
        };

        let w = self.get(WAITQ)?;
        let waitq = WaitqLayout {
            first: w.off("first")?,
            last: w.off("last")?,
        };

        let s = self.get(SUDOG)?;
        let sudog = SudogLayout {
            size: s.size()?,
            g: s.off("g")?,
            next: s.off("next")?,
            prev: s.off("prev")?,
            elem: to_u32(self.address_word(s, "elem")?, "sudog.elem")?,
            c: to_u32(self.address_word(s, "c")?, "sudog.c")?,
            waitlink: s.off("waitlink")?,
            is_select: s.off("isSelect")?,
            ticket: s.off("ticket")?,
            success: s.opt("success"),
            parent: s.opt("parent"),
            waittail: s.opt("waittail"),
            acquiretime: s.opt("acquiretime"),
            releasetime: s.opt("releasetime"),
        };

        // Optional: a missing struct or member leaves these out rather than failing.
        let p = self.structs[P].as_ref().and_then(|p| {
            Some(PLayout {
                size: p.size().ok()?,
                id: p.opt("id")?,
                status: p.opt("status")?,
                m: p.opt("m")?,
                runqhead: p.opt("runqhead")?,
                runqtail: p.opt("runqtail")?,
                runnext: p.opt("runnext")?,
            })
        });
        let abi_type = match (&self.structs[ABI_TYPE], &self.structs[RUNTIME_TYPE]) {
            (Some(t), _) => t.opt("Size_"),
            (None, Some(t)) => t.opt("size"),
            (None, None) => None,
        }
        .map(|size_| AbiTypeLayout { size_ });

        Ok(GoLayout {
            g: g_layout,
            m: m_layout,
            hchan,
            waitq,
            sudog,
            p,
            abi_type,
        })
    }
}

enum DieKind {
    Struct(Vec<Member>),
    Typedef(Option<DebugInfoOffset>),
    Scalar,
}

impl Struct {
    fn member(&self, name: &'static str) -> Result<&Member, DwarfError> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .ok_or(DwarfError::MissingMember {
                strukt: self.name,
                member: name,
            })
    }

    fn off(&self, name: &'static str) -> Result<u32, DwarfError> {
        let off = self
            .member(name)?
            .offset
            .ok_or_else(|| no_location(self, name))?;
        to_u32(off, name)
    }

    fn opt(&self, name: &'static str) -> Option<u32> {
        self.off(name).ok()
    }

    fn size(&self) -> Result<u32, DwarfError> {
        let size = self.size.ok_or_else(|| DwarfError::Unexpected {
            what: self.name.to_owned(),
            why: "no DW_AT_byte_size",
        })?;
        to_u32(size, self.name)
    }
}

fn no_location(st: &Struct, name: &str) -> DwarfError {
    DwarfError::Unexpected {
        what: format!("{}.{}", st.name, name),
        why: "no constant DW_AT_data_member_location",
    }
}

/// A constant `DW_AT_data_member_location`, or a `DW_OP_plus_uconst N` expression.
fn member_location(v: AttributeValue<R<'_>>, encoding: gimli::Encoding) -> Option<u64> {
    if let Some(n) = v.udata_value() {
        return Some(n);
    }
    let mut expr = v.exprloc_value()?.0;
    match gimli::Operation::parse(&mut expr, encoding).ok()? {
        gimli::Operation::PlusConstant { value } if expr.is_empty() => Some(value),
        _ => None,
    }
}

fn checked_add(a: u64, b: u64, what: &str) -> Result<u64, DwarfError> {
    a.checked_add(b).ok_or_else(|| DwarfError::Unexpected {
        what: what.to_owned(),
        why: "offset overflows",
    })
}

fn to_u32(v: u64, what: &str) -> Result<u32, DwarfError> {
    u32::try_from(v).map_err(|_| DwarfError::Unexpected {
        what: what.to_owned(),
        why: "offset does not fit in 32 bits",
    })
}

#[cfg(test)]
mod tests {
    //! Checks the DWARF reader on programs built by every installed Go toolchain (see
    //! `layout::tests::go_toolchains`) and on malformed input.
    use std::path::Path;

    use super::*;
    use crate::goruntime::layout::tests::{
        assert_known_values, assert_plausible, go_build, minor_key, scratch_dir, toolchains_or_skip,
    };

    fn layout_of(path: &Path) -> Result<GoLayout, DwarfError> {
        let data = std::fs::read(path).expect("read binary");
        layout_from_elf_bytes(&data)
    }

    /// The uncompressed (.debug_info, .debug_abbrev) of a binary.
    fn info_and_abbrev(path: &Path) -> (Vec<u8>, Vec<u8>) {
        let data = std::fs::read(path).expect("read binary");
        let file = object::File::parse(&*data).expect("parse");
        let info = load_section(&file, ".debug_info")
            .expect("info")
            .into_owned();
        let abbrev = load_section(&file, ".debug_abbrev")
            .expect("abbrev")
            .into_owned();
        (info, abbrev)
    }

    /// For each installed toolchain: DWARF of a default and a PIE build equals the table
    /// (so the table is a faithful fallback), and a stripped build has no DWARF.
    #[test]
    fn dwarf_matches_table_for_every_installed_go() {
        let Some(chains) = toolchains_or_skip("dwarf_matches_table_for_every_installed_go") else {
            return;
        };
        let dir = scratch_dir("match");
        std::thread::scope(|s| {
            let handles: Vec<_> = chains
                .iter()
                .map(|(v, go)| {
                    let d = dir.join(v);
                    s.spawn(move || {
                        let minor = minor_key(v);
                        let table = GoLayout::for_version(v).unwrap_or_else(|| {
                            panic!("no table entry for {minor} (go{v}); regenerate layouts.json")
                        });
                        for (name, flags) in
                            [("default", &[][..]), ("pie", &["-buildmode=pie"][..])]
                        {
                            let bin = go_build(go, &d, name, flags);
                            let t = std::time::Instant::now();
                            let l = layout_of(&bin).unwrap_or_else(|e| panic!("go{v} {name}: {e}"));
                            eprintln!("go{v} {name}: layout from DWARF in {:?}", t.elapsed());
                            assert_eq!(l, table, "go{v} {name}: DWARF differs from the table");
                            assert_known_values(&minor, &l);
                            assert_plausible(&l);
                            // The search stops early: it does not read the whole section.
                            let (info, abbrev) = info_and_abbrev(&bin);
                            let read = scanned_bytes(&raw(&info, &abbrev)).expect("scan");
                            eprintln!("go{v} {name}: read {read} of {} bytes", info.len());
                            assert!(
                                read < info.len() / 2,
                                "go{v} {name}: read {read} of {}",
                                info.len()
                            );
                        }
                        let bin = go_build(go, &d, "stripped", &["-ldflags=-s -w"]);
                        let r = layout_of(&bin);
                        assert!(
                            matches!(r, Err(DwarfError::NoDebugInfo)),
                            "go{v} stripped: {r:?}"
                        );
                    })
                })
                .collect();
            for h in handles {
                if let Err(p) = h.join() {
                    std::panic::resume_unwind(p);
                }
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn sections(info: &[u8], abbrev: &[u8]) -> Result<GoLayout, DwarfError> {
        layout_from_sections(&raw(info, abbrev))
    }

    fn raw<'a>(info: &'a [u8], abbrev: &'a [u8]) -> DwarfSections<'a> {
        DwarfSections {
            endian: RunTimeEndian::Little,
            debug_info: info,
            debug_abbrev: abbrev,
            debug_str: &[],
            debug_line_str: &[],
        }
    }

    #[test]
    fn garbage_dwarf_is_an_error() {
        assert!(matches!(sections(&[], &[]), Err(DwarfError::NoDebugInfo)));
        assert!(matches!(
            sections(&[0xff; 3], &[]),
            Err(DwarfError::Gimli(_))
        ));
        // A DWARF 4 unit header claiming 0x1000 bytes, with 8 present.
        let long = [0x00, 0x10, 0, 0, 4, 0, 0, 0, 0, 0, 8, 1];
        assert!(matches!(sections(&long, &[]), Err(DwarfError::Gimli(_))));
        // A complete unit whose DIE uses an abbreviation code the (empty) table lacks.
        let unit = [8, 0, 0, 0, 4, 0, 0, 0, 0, 0, 8, 1];
        assert!(sections(&unit, &[0]).is_err());
        // A valid empty unit (root DIE only): no structs.
        let abbrev = [1, 0x11, 0, 0, 0, 0]; // code 1: DW_TAG_compile_unit, no children
        assert!(matches!(
            sections(&unit, &abbrev),
            Err(DwarfError::MissingStruct("runtime.g"))
        ));
        assert!(matches!(
            layout_from_elf_bytes(b"\x7fELF not really"),
            Err(DwarfError::Object(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn random_dwarf_never_panics(
            info in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            abbrev in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let _ = sections(&info, &abbrev);
        }
    }

    /// Real `.debug_info`, cut short or with flipped bytes: an error (inside the runtime
    /// unit) or a result, never a panic.
    #[test]
    fn corrupted_real_dwarf_does_not_panic() {
        let Some(chains) = toolchains_or_skip("corrupted_real_dwarf_does_not_panic") else {
            return;
        };
        let (v, go) = chains.last().expect("non-empty");
        let dir = scratch_dir("corrupt");
        let bin = go_build(go, &dir.join(v), "default", &[]);
        let (info, abbrev) = info_and_abbrev(&bin);
        assert!(sections(&info, &abbrev).is_ok(), "intact sections work");
        let first_unit_len = u32::from_le_bytes([info[0], info[1], info[2], info[3]]) as usize + 4;
        for cut in [
            1,
            4,
            11,
            12,
            100,
            4096,
            first_unit_len / 3,
            first_unit_len - 1,
        ] {
            let r = sections(&info[..cut], &abbrev);
            assert!(r.is_err(), "cut at {cut} of {first_unit_len}: {r:?}");
        }
        let _ = sections(&info[..info.len() / 2], &abbrev);
        assert!(sections(&info, &abbrev[..abbrev.len() / 2]).is_err());
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..200 {
            let mut bad = info.clone();
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % first_unit_len as u64) as usize;
                bad[i] ^= (state >> 56) as u8 | 1;
            }
            let _ = sections(&bad, &abbrev);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
