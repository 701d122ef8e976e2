//! What blockprobe knows about a Go binary and its runtime: version, symbols, struct layouts,
//! wait-reason names, and where to put a uprobe on a runtime function.
//!
//! Everything here reads the executable file only; nothing needs privileges, so
//! `blockprobe inspect BIN` works as any user.

pub mod buildinfo;
pub mod dwarf;
pub mod layout;
pub mod pclntab;
pub mod prologue;
pub mod semtable;
pub mod stackmap;
pub mod stripped;
pub mod syncobj;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};
use probes_ebpf::RuntimeLayout;
use thiserror::Error;

pub use buildinfo::{BuildInfo, BuildInfoError};
pub use layout::GoLayout;

/// Go minor versions blockprobe supports, oldest first.
pub const SUPPORTED: (u32, u32) = (22, 27);

#[derive(Debug, Error)]
pub enum GoBinaryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF executable: {reason}")]
    NotElf { path: PathBuf, reason: String },
    #[error("{path} is built for {arch}; blockprobe supports linux/amd64 Go binaries only")]
    Arch { path: PathBuf, arch: String },
    #[error("{path}: {source}")]
    NotGo {
        path: PathBuf,
        source: BuildInfoError,
    },
    #[error("{path} was built by {version}; blockprobe supports Go 1.{} to 1.{}", SUPPORTED.0, SUPPORTED.1)]
    UnsupportedGo { path: PathBuf, version: String },
    #[error("{path}: no struct layout for {version}: {reason}")]
    Layout {
        path: PathBuf,
        version: String,
        reason: String,
    },
    #[error("{path}: function {name} not found")]
    NoFunction { path: PathBuf, name: String },
    #[error("{path}: {name}: {reason}")]
    ProbePoint {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{path}: cannot read function symbols: {reason}")]
    Symbols { path: PathBuf, reason: String },
}

/// Where the struct offsets in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutSource {
    /// The binary's own DWARF.
    Dwarf,
    /// blockprobe's per-Go-version table (stripped binaries).
    VersionTable,
}

impl fmt::Display for LayoutSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dwarf => "dwarf",
            Self::VersionTable => "version-table",
        })
    }
}

/// A function's address range (link-time virtual addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncSym {
    pub name: String,
    pub entry: u64,
    pub end: u64,
}

/// Where a uprobe goes on a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePoint {
    /// Function entry (link-time vaddr).
    pub entry: u64,
    /// Bytes past the entry: the first instruction after the stack-check prologue.
    pub offset_in_func: u64,
    /// File offset of the probed instruction, what the kernel's uprobe API takes.
    pub file_offset: u64,
}

/// A PT_LOAD segment.
#[derive(Debug, Clone, Copy)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
}

/// A Go executable, analysed.
pub struct GoBinary {
    /// The path it was opened from (for a live target, `/proc/PID/exe`).
    pub path: PathBuf,
    /// The path to show to people.
    pub display_path: PathBuf,
    pub build: BuildInfo,
    pub minor: u32,
    pub pie: bool,
    pub stripped: bool,
    pub cgo: bool,
    pub layout: GoLayout,
    pub layout_source: LayoutSource,
    /// `runtime.waitReasonStrings`, indexed by waitReason.
    pub wait_reasons: Vec<String>,
    data: Vec<u8>,
    segments: Vec<Segment>,
    /// Functions sorted by entry, from .gopclntab (present in stripped binaries too, and named
    /// as the runtime names them, without .symtab's `.abi0` suffixes).
    funcs: Vec<FuncSym>,
    by_name: HashMap<String, usize>,
    /// Where the pclntab lives in `data`, and the bases it needs (see `pclntab()`).
    pcln: PclnLocation,
    /// `runtime.allgs` (link-time address).
    allgs: Result<u64, String>,
    /// `runtime.semtable` (link-time address, size): from .symtab, or decoded from the code.
    semtable: Option<(u64, u64)>,
}

/// Enough to rebuild a [`pclntab::Pclntab`] over `GoBinary::data` cheaply on demand.
#[derive(Debug, Clone)]
struct PclnLocation {
    range: std::ops::Range<usize>,
    text_start: u64,
    /// `moduledata.gofunc` (vaddr) and where its bytes start in `data`: for inlined frames.
    gofunc: Option<(u64, std::ops::Range<usize>)>,
}

/// The position of `sub` inside `whole`, if it is a subslice of it.
fn subslice_range(whole: &[u8], sub: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (sub.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(sub.len())?;
    (end <= whole.len()).then_some(start..end)
}

impl fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoBinary")
            .field("path", &self.display_path)
            .field("go", &self.build.go_version)
            .field("pie", &self.pie)
            .field("stripped", &self.stripped)
            .finish_non_exhaustive()
    }
}

impl GoBinary {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GoBinaryError> {
        let p = path.as_ref().to_path_buf();
        Self::open_as(p.clone(), p)
    }

    /// Opens `path` but names it `display_path` in messages (e.g. /proc/PID/exe → the real path).
    pub fn open_as(
        path: impl AsRef<Path>,
        display_path: impl AsRef<Path>,
    ) -> Result<Self, GoBinaryError> {
        let path = path.as_ref().to_path_buf();
        let display = display_path.as_ref().to_path_buf();
        let data = std::fs::read(&path).map_err(|source| GoBinaryError::Read {
            path: display.clone(),
            source,
        })?;
        Self::from_bytes(data, path, display)
    }

    fn from_bytes(data: Vec<u8>, path: PathBuf, display: PathBuf) -> Result<Self, GoBinaryError> {
        let d = display.clone();
        let file = object::File::parse(&*data).map_err(|e| GoBinaryError::NotElf {
            path: d.clone(),
            reason: e.to_string(),
        })?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(GoBinaryError::NotElf {
                path: d,
                reason: format!("{:?} format", file.format()),
            });
        }
        if file.architecture() != object::Architecture::X86_64 {
            return Err(GoBinaryError::Arch {
                path: d,
                arch: format!("{:?}", file.architecture()),
            });
        }
        let section = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .unwrap_or(&[]);
        let build = BuildInfo::parse(section).map_err(|source| GoBinaryError::NotGo {
            path: d.clone(),
            source,
        })?;
        let minor = layout::go_minor(&build.go_version)
            .filter(|(major, minor)| *major == 1 && (SUPPORTED.0..=SUPPORTED.1).contains(minor))
            .map(|(_, minor)| minor)
            .ok_or_else(|| GoBinaryError::UnsupportedGo {
                path: d.clone(),
                version: build.go_version.clone(),
            })?;
        let pie = file.kind() == object::ObjectKind::Dynamic;
        let stripped = file.section_by_name(".symtab").is_none();
        let cgo = build.cgo_enabled();

        let (layout, layout_source) = match dwarf::layout_from_dwarf(&file) {
            Ok(l) => (l, LayoutSource::Dwarf),
            Err(dwarf_err) => {
                let l = GoLayout::for_version(&build.go_version).ok_or_else(|| {
                    GoBinaryError::Layout {
                        path: d.clone(),
                        version: build.go_version.clone(),
                        reason: format!("no usable DWARF ({dwarf_err}) and no built-in table"),
                    }
                })?;
                (l, LayoutSource::VersionTable)
            }
        };

        let segments: Vec<Segment> = file
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                Segment {
                    vaddr: s.address(),
                    memsz: s.size(),
                    offset,
                    filesz,
                }
            })
            .collect();

        let sym_err = |reason: String| GoBinaryError::Symbols {
            path: d.clone(),
            reason,
        };
        let image = stripped::ElfImage::parse(&data).map_err(|e| sym_err(e.to_string()))?;
        // The moduledata gives the real text base (the pclntab header's is 0 from Go 1.26 on)
        // and gofunc, the base of the inline tree (src/runtime/symtab.go, moduledata).
        let (tab, moduledata) =
            stripped::load_pclntab(&image).map_err(|e| sym_err(e.to_string()))?;
        let pcln = PclnLocation {
            range: subslice_range(&data, tab.data())
                .ok_or_else(|| sym_err("pclntab outside the file".into()))?,
            text_start: tab.text_start(),
            gofunc: moduledata.and_then(|md| {
                let bytes = image.bytes_from(md.gofunc)?;
                Some((md.gofunc, subslice_range(&data, bytes)?))
            }),
        };
        let mut funcs: Vec<FuncSym> = tab
            .functions()
            .map(|f| FuncSym {
                name: f.name.to_string(),
                entry: f.entry,
                end: f.end,
            })
            .collect();
        if funcs.is_empty() {
            return Err(sym_err("the pclntab lists no functions".into()));
        }
        funcs.sort_by_key(|f| f.entry);
        // A name may appear twice: an ABI0 wrapper and the ABIInternal function it calls
        // (e.g. runtime.goexit1, called from assembly). Probe the function, not the wrapper: the
        // wrapper starts with an instruction the kernel must single-step, and takes no register
        // arguments.
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(funcs.len());
        for (i, f) in funcs.iter().enumerate() {
            let wrapper = |j: usize| {
                let f = &funcs[j];
                image
                    .code(f.entry, f.end)
                    .is_ok_and(|c| prologue::is_abi0_wrapper(c, f.entry))
            };
            match by_name.get(&f.name) {
                Some(&j) if !wrapper(j) => {}
                _ => {
                    by_name.insert(f.name.clone(), i);
                }
            }
        }

        // Data symbols: .symtab when present; otherwise decoded from the runtime functions that
        // use them (src/runtime/proc.go forEachG; runtime2.go waitReason.String).
        let symtab = |name: &str| {
            file.symbols()
                .find(|s| s.kind() == SymbolKind::Data && s.name() == Ok(name))
                .map(|s| (s.address(), s.size()))
        };
        let func_code = |name: &'static str| -> Result<(&[u8], u64), String> {
            let f = tab
                .lookup_function(name)
                .ok_or_else(|| format!("{name} not found"))?;
            Ok((
                image.code(f.entry, f.end).map_err(|e| e.to_string())?,
                f.entry,
            ))
        };
        // Stripped: from the inlined `semTable.rootFor` of runtime.semrelease1/semacquire1
        // (src/runtime/sema.go), see `semtable.rs`. Link-time addresses, as from .symtab; the
        // scanner adds a PIE's load bias.
        let semtable = symtab("runtime.semtable")
            .filter(|&(_, size)| size > 0)
            .map(Ok)
            .unwrap_or_else(|| semtable::locate_semtable(&image, &tab))
            .map_err(|e| {
                tracing::warn!(
                    "{}: runtime.semtable not found ({e}): semaphore waits will not show \
                     their object",
                    d.display()
                );
            })
            .ok();
        let allgs = match symtab("runtime.allgs") {
            Some((addr, _)) => Ok(addr),
            None => func_code("runtime.forEachG").and_then(|(code, entry)| {
                stripped::find_allgs(code, entry).map_err(|e| e.to_string())
            }),
        };
        let wait_table = match symtab("runtime.waitReasonStrings") {
            Some((addr, size)) => Ok((addr, (size / 16) as usize)),
            None => func_code("runtime.waitReason.String").and_then(|(code, entry)| {
                stripped::find_wait_reason_table(code, entry).map_err(|e| e.to_string())
            }),
        };
        let wait_reasons = wait_table
            .and_then(|(addr, n)| {
                stripped::read_wait_reason_strings(&image, addr, n).map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| {
                tracing::warn!("{}: wait reason names unavailable: {e}", d.display());
                Vec::new()
            });
        // `tab` and `image` borrow `data`, which moves into the GoBinary below.
        let _ = (tab, image);

        let mut bin = GoBinary {
            path,
            display_path: display,
            build,
            minor,
            pie,
            stripped,
            cgo,
            layout,
            layout_source,
            wait_reasons,
            data: Vec::new(),
            segments,
            funcs,
            by_name,
            pcln,
            allgs,
            semtable,
        };
        drop(file);
        bin.data = data;
        Ok(bin)
    }

    /// File bytes backing `len` bytes at link-time vaddr `addr`.
    pub fn bytes_at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let off = self.file_offset(addr)?;
        self.data
            .get(off as usize..(off as usize).checked_add(len)?)
    }

    /// Link-time vaddr → file offset, through the PT_LOAD segment holding it.
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| addr >= s.vaddr && addr < s.vaddr + s.memsz.max(s.filesz))
            .filter(|s| addr - s.vaddr < s.filesz)
            .map(|s| addr - s.vaddr + s.offset)
    }

    /// Link-time (address, size) of the sections whose words the GC scans for pointers: Go's
    /// global variables (`.data`, `.bss`; the `.noptr*` sections hold none).
    pub fn pointer_sections(&self) -> Vec<(u64, u64)> {
        use object::{Object, ObjectSection};
        let Ok(file) = object::File::parse(&*self.data) else {
            return Vec::new();
        };
        [".data", ".bss"]
            .iter()
            .filter_map(|n| file.section_by_name(n))
            .map(|s| (s.address(), s.size()))
            .filter(|&(a, n)| a != 0 && n != 0)
            .collect()
    }

    /// The (p_vaddr, p_offset) of each PT_LOAD segment, to compute the load bias of a PIE.
    pub fn load_segments(&self) -> Vec<(u64, u64)> {
        self.segments.iter().map(|s| (s.vaddr, s.offset)).collect()
    }

    pub fn function(&self, name: &str) -> Option<&FuncSym> {
        self.by_name.get(name).map(|&i| &self.funcs[i])
    }

    /// The function containing `pc` (link-time address).
    pub fn func_at(&self, pc: u64) -> Option<&FuncSym> {
        let i = self.funcs.partition_point(|f| f.entry <= pc);
        let f = self.funcs.get(i.checked_sub(1)?)?;
        (pc < f.end).then_some(f)
    }

    pub fn func_name(&self, pc: u64) -> Option<&str> {
        self.func_at(pc).map(|f| f.name.as_str())
    }

    /// Where to put a uprobe on `name`: after its stack-check prologue (a uprobe on the
    /// memory-reading `CMPQ SP, 16(R14)` is single-stepped out of line, ~18x dearer).
    pub fn probe_point(&self, name: &str) -> Result<ProbePoint, GoBinaryError> {
        let f = self
            .function(name)
            .ok_or_else(|| GoBinaryError::NoFunction {
                path: self.display_path.clone(),
                name: name.to_string(),
            })?;
        let err = |reason: String| GoBinaryError::ProbePoint {
            path: self.display_path.clone(),
            name: name.to_string(),
            reason,
        };
        let len = (f.end - f.entry).min(64) as usize;
        let code = self
            .bytes_at(f.entry, len)
            .ok_or_else(|| err("code not backed by the file".into()))?;
        let skip = prologue::prologue_end(code, f.entry).map_err(|e| err(e.to_string()))?;
        let file_offset = self
            .file_offset(f.entry + skip)
            .ok_or_else(|| err("probe address not backed by the file".into()))?;
        Ok(ProbePoint {
            entry: f.entry,
            offset_in_func: skip,
            file_offset,
        })
    }

    /// The name of wait reason `code` in this binary's runtime.
    pub fn wait_reason(&self, code: u32) -> Cow<'_, str> {
        match self.wait_reasons.get(code as usize) {
            Some(s) if !s.is_empty() => Cow::Borrowed(s),
            _ => Cow::Owned(format!("waitReason({code})")),
        }
    }

    /// What gopark's `lock` argument means for a wait reason: for channel operations it is
    /// `&hchan.lock` (src/runtime/chan.go, chansend/chanrecv call gopark with
    /// `unsafe.Pointer(&c.lock)`), so the channel is `lock - offsetof(hchan, lock)`.
    pub fn describe_wait_object(&self, code: u32, lock: u64) -> (&'static str, u64) {
        let reason = self.wait_reason(code);
        match reason.as_ref() {
            "chan send" | "chan receive" if lock != 0 => {
                ("chan", lock.wrapping_sub(u64::from(self.layout.hchan.lock)))
            }
            "select" => ("select", lock),
            r if r.starts_with("sync.") || r.starts_with("semacquire") => ("sema", lock),
            _ if lock == 0 => ("none", 0),
            _ => ("other", lock),
        }
    }

    /// The offsets the eBPF programs need, in their ABI form.
    pub fn runtime_layout_abi(&self) -> RuntimeLayout {
        let l = &self.layout;
        RuntimeLayout {
            g_goid: l.g.goid,
            g_parent_goid: l.g.parent_goid,
            g_gopc: l.g.gopc,
            g_startpc: l.g.startpc,
            g_waiting: l.g.waiting,
            sudog_c: l.sudog.c,
            sudog_waitlink: l.sudog.waitlink,
            g_sched_pc: l.g.sched_pc,
            g_sched_bp: l.g.sched_bp,
            g_m: l.g.m,
            m_curg: l.m.curg,
        }
    }

    /// Link-time address of `runtime.allgs`: from .symtab, or, when stripped, from the code of
    /// `runtime.forEachG`, which loads the slice's pointer and length right after locking
    /// allglock (src/runtime/proc.go, forEachG).
    pub fn allgs_addr(&self) -> Result<u64, String> {
        self.allgs.clone()
    }

    /// The executable's bytes, for readers that parse other parts of it (`health`).
    pub fn file_data(&self) -> &[u8] {
        &self.data
    }

    /// `runtime.semtable`, the runtime's semaphore wait queues (src/runtime/sema.go): link-time
    /// address and total size (251 entries). From .symtab, or in stripped binaries decoded from
    /// `runtime.semrelease1`/`runtime.semacquire1` (see [`semtable::locate_semtable`]).
    pub fn semtable(&self) -> Option<(u64, u64)> {
        self.semtable
    }

    /// The binary's pclntab, for file:line and inlined frames (works on stripped binaries).
    pub fn pclntab(&self) -> Option<pclntab::Pclntab<'_>> {
        let mut tab = pclntab::Pclntab::parse_with_text_start(
            self.data.get(self.pcln.range.clone())?,
            self.pcln.text_start,
        )
        .ok()?;
        if let Some((vaddr, range)) = &self.pcln.gofunc {
            tab.set_gofunc(*vaddr, self.data.get(range.clone())?);
        }
        Some(tab)
    }

    /// `file:line` of a PC (link-time address).
    pub fn source_line(&self, pc: u64) -> Option<String> {
        let tab = self.pclntab()?;
        let (file, line) = tab.line_for_pc(pc)?;
        Some(format!("{file}:{line}"))
    }

    pub fn functions(&self) -> &[FuncSym] {
        &self.funcs
    }
}
