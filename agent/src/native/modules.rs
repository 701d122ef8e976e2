//! The ELF files mapped into a target (the executable and its shared libraries, libc among
//! them): what unwinding and symbolizing their code needs, parsed once per file and cached by
//! GNU build id, so that the same libc in many targets, or many stacks through one binary, cost
//! one parse.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use crate::procfs::Mapping;

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file: {source}")]
    Parse { path: String, source: object::Error },
}

/// Section bytes shared between the cache and the unwinders built from it.
pub type Bytes = Arc<[u8]>;

/// A function symbol of an ELF file: link-time address, size, name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    pub size: u64,
    pub name: Arc<str>,
}

/// One ELF file, analysed.
pub struct ElfModule {
    /// File name (`libc.so.6`), for reports.
    pub name: String,
    /// The path it was read from.
    pub path: String,
    /// GNU build id (hex), the cache key; None for a file built without one.
    pub build_id: Option<String>,
    /// PT_LOAD segments: (p_vaddr, p_offset), to place a mapping.
    pub segments: Vec<(u64, u64)>,
    /// What framehop needs to unwind through its code (all addresses link-time).
    pub sections: framehop::ExplicitModuleSectionInfo<Bytes>,
    /// Function symbols (.symtab, else .dynsym), sorted by address.
    pub symbols: Vec<Symbol>,
    /// The whole file, for DWARF (parsed on first use, see `symbolize`).
    pub(super) data: Bytes,
    pub(super) dwarf: OnceLock<Option<super::symbolize::Dwarf>>,
    /// Symbolized addresses: a PC shared by many stacks is looked up once.
    pub(super) memo: Mutex<rustc_hash::FxHashMap<u64, Arc<[super::symbolize::NativeSym]>>>,
}

impl std::fmt::Debug for ElfModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfModule")
            .field("path", &self.path)
            .field("build_id", &self.build_id)
            .finish_non_exhaustive()
    }
}

fn section(file: &object::File<'_>, name: &str) -> Option<(Range<u64>, Bytes)> {
    let s = file.section_by_name(name)?;
    let data = s.uncompressed_data().ok()?;
    Some((s.address()..s.address() + s.size(), Arc::from(&*data)))
}

impl ElfModule {
    /// Parses an ELF file's bytes; `path` names it.
    pub fn parse(path: &str, data: Vec<u8>) -> Result<Self, ModuleError> {
        let data: Bytes = Arc::from(data);
        let file = object::File::parse(&*data).map_err(|source| ModuleError::Parse {
            path: path.to_string(),
            source,
        })?;
        let build_id = build_id_hex(&file);
        let segments = file
            .segments()
            .map(|s| (s.address(), s.file_range().0))
            .collect();
        let mut sections = framehop::ExplicitModuleSectionInfo::<Bytes>::default();
        if let Some((range, bytes)) = section(&file, ".text") {
            sections.text_svma = Some(range);
            sections.text = Some(bytes);
        }
        if let Some((range, bytes)) = section(&file, ".eh_frame") {
            sections.eh_frame_svma = Some(range);
            sections.eh_frame = Some(bytes);
        }
        if let Some((range, bytes)) = section(&file, ".eh_frame_hdr") {
            sections.eh_frame_hdr_svma = Some(range);
            sections.eh_frame_hdr = Some(bytes);
        }
        if let Some((_, bytes)) = section(&file, ".debug_frame") {
            sections.debug_frame = Some(bytes);
        }
        if let Some((range, _)) = section(&file, ".got") {
            sections.got_svma = Some(range);
        }
        Ok(Self {
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            path: path.to_string(),
            build_id,
            segments,
            sections,
            symbols: function_symbols(&file),
            data,
            dwarf: OnceLock::new(),
            memo: Mutex::default(),
        })
    }

    /// A module made of parts, for tests of the unwinder and the symbolizers.
    #[cfg(test)]
    pub(crate) fn synthetic(
        name: &str,
        sections: framehop::ExplicitModuleSectionInfo<Bytes>,
        symbols: Vec<Symbol>,
    ) -> Self {
        Self {
            name: name.into(),
            path: format!("/{name}"),
            build_id: None,
            segments: vec![(0, 0)],
            sections,
            symbols,
            data: Arc::from(Vec::new()),
            dwarf: OnceLock::new(),
            memo: Mutex::default(),
        }
    }

    /// The load bias of a mapping of this file: runtime address = link-time address + bias.
    /// The mapping's file offset names the PT_LOAD segment it maps.
    pub fn bias_of(&self, m: &Mapping) -> Option<u64> {
        crate::procfs::mapping_bias(m, &self.segments)
    }

    /// The function symbol containing a link-time address (within its size; a symbol of size 0
    /// is taken to extend to the next one).
    pub fn symbol(&self, addr: u64) -> Option<&Symbol> {
        let i = self.symbols.partition_point(|s| s.addr <= addr);
        let s = self.symbols.get(i.checked_sub(1)?)?;
        let end = match s.size {
            0 => self.symbols.get(i).map_or(u64::MAX, |n| n.addr),
            size => s.addr + size,
        };
        (addr < end).then_some(s)
    }
}

/// Function symbols, from .symtab when there is one (it has the local ones too), else .dynsym;
/// one name per address (the first, which for glibc's aliases such as `__read`/`read` is the
/// one the linker emitted first).
fn function_symbols(file: &object::File<'_>) -> Vec<Symbol> {
    let from = |syms: &mut dyn Iterator<Item = object::Symbol<'_, '_>>| -> Vec<Symbol> {
        syms.filter(|s| s.kind() == SymbolKind::Text && s.address() != 0 && s.is_definition())
            .filter_map(|s| {
                Some(Symbol {
                    addr: s.address(),
                    size: s.size(),
                    name: Arc::from(s.name().ok()?),
                })
            })
            .collect()
    };
    let mut syms = from(&mut file.symbols());
    if syms.is_empty() {
        syms = from(&mut file.dynamic_symbols());
    }
    // Prefer the sized, public-looking name among aliases at one address.
    syms.sort_by(|a, b| {
        a.addr
            .cmp(&b.addr)
            .then(b.size.cmp(&a.size))
            .then(a.name.starts_with('_').cmp(&b.name.starts_with('_')))
    });
    syms.dedup_by_key(|s| s.addr);
    syms
}

/// A file as stat(2) identifies it: device, inode, size, mtime.
type FileIdentity = (u64, u64, u64, i64);

/// ELF modules by build id (or by path, for a file without one), for the agent's lifetime.
/// A second index by file identity (device, inode, size, mtime) spares re-reading a file whose
/// module is cached.
#[derive(Default)]
pub struct ModuleCache {
    by_key: Mutex<HashMap<String, Arc<ElfModule>>>,
    by_file: Mutex<HashMap<FileIdentity, Arc<ElfModule>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ModuleCache {
    /// The process-wide cache.
    pub fn global() -> &'static ModuleCache {
        static CACHE: OnceLock<ModuleCache> = OnceLock::new();
        CACHE.get_or_init(ModuleCache::default)
    }

    /// The module for the file mapped at `m` in process `pid`. The file is read through
    /// /proc/PID/map_files (the very inode mapped, even if the path was replaced or deleted since),
    /// else through the process's root; it is parsed only when its build id is not cached.
    pub fn load(&self, pid: u32, m: &Mapping) -> Result<Arc<ElfModule>, ModuleError> {
        use std::os::unix::fs::MetadataExt;
        let map_file = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        let root_path = format!("/proc/{pid}/root{}", m.path);
        let read_err = |source| ModuleError::Read {
            path: m.path.clone(),
            source,
        };
        let file = if std::fs::metadata(&map_file).is_ok() {
            map_file
        } else {
            root_path
        };
        let meta = std::fs::metadata(&file).map_err(read_err)?;
        let identity = (meta.dev(), meta.ino(), meta.size(), meta.mtime());
        if let Some(hit) = lock(&self.by_file).get(&identity) {
            return Ok(hit.clone());
        }
        let data = std::fs::read(&file).map_err(read_err)?;
        let key = build_id_of(&data).unwrap_or_else(|| format!("path:{}", m.path));
        let cached = lock(&self.by_key).get(&key).cloned();
        let module = match cached {
            Some(hit) => hit,
            None => {
                let module = Arc::new(ElfModule::parse(&m.path, data)?);
                lock(&self.by_key).insert(key, module.clone());
                module
            }
        };
        lock(&self.by_file).insert(identity, module.clone());
        Ok(module)
    }
}

fn build_id_of(data: &[u8]) -> Option<String> {
    build_id_hex(&object::File::parse(data).ok()?)
}

/// The GNU build id (`.note.gnu.build-id`), in hex.
fn build_id_hex(file: &object::File<'_>) -> Option<String> {
    let id = file.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// One executable mapping of an ELF file in a process, and its module.
#[derive(Debug, Clone)]
pub struct Placed {
    pub module: Arc<ElfModule>,
    /// Runtime address range of the executable mapping.
    pub avma: Range<u64>,
    /// Runtime address = link-time address + bias.
    pub bias: u64,
}

/// The executable file mappings of process `pid`, each with its (cached) module. Files that
/// cannot be read or parsed are left out: their frames stay unsymbolized, and unwinding stops
/// at them.
pub fn placed_modules(
    pid: u32,
    cache: &ModuleCache,
) -> Result<Vec<Placed>, crate::procfs::ProcError> {
    let maps = crate::procfs::maps(pid)?;
    Ok(maps
        .iter()
        .filter(|m| m.perms.contains('x') && m.path.starts_with('/'))
        .filter_map(|m| {
            let module = cache
                .load(pid, m)
                .map_err(|e| tracing::debug!("no unwind info for {}: {e}", m.path))
                .ok()?;
            let bias = module.bias_of(m)?;
            Some(Placed {
                module,
                avma: m.start..m.end,
                bias,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_with(symbols: &[(u64, u64, &str)]) -> ElfModule {
        let symbols = symbols
            .iter()
            .map(|&(addr, size, name)| Symbol {
                addr,
                size,
                name: name.into(),
            })
            .collect();
        let mut m = ElfModule::synthetic("t", Default::default(), symbols);
        m.segments = vec![(0, 0), (0x1000, 0x1000)];
        m
    }

    #[test]
    fn symbol_lookup_respects_sizes() {
        let m = module_with(&[(0x1000, 0x10, "a"), (0x1020, 0, "b"), (0x1040, 8, "c")]);
        assert_eq!(m.symbol(0x1000).map(|s| &*s.name), Some("a"));
        assert_eq!(m.symbol(0x100f).map(|s| &*s.name), Some("a"));
        // Between a's end and b: no symbol, rather than a wrong one.
        assert_eq!(m.symbol(0x1010), None);
        // b has no size: it runs to c.
        assert_eq!(m.symbol(0x103f).map(|s| &*s.name), Some("b"));
        assert_eq!(m.symbol(0x1048), None);
        assert_eq!(m.symbol(0xfff), None);
    }

    #[test]
    fn bias_from_the_mapped_segment() {
        let m = module_with(&[]);
        let text = Mapping {
            start: 0x7f00_0000_1000,
            end: 0x7f00_0000_2000,
            offset: 0x1000,
            perms: "r-xp".into(),
            path: "/t".into(),
        };
        assert_eq!(m.bias_of(&text), Some(0x7f00_0000_0000));
        let other = Mapping {
            offset: 0x5000,
            ..text
        };
        assert_eq!(m.bias_of(&other), None);
    }

    #[test]
    fn parses_this_test_binary() {
        // The running test executable is an ELF file with unwind info and a build id.
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let m = ElfModule::parse("/proc/self/exe", exe).unwrap();
        assert!(m.sections.eh_frame.is_some() && m.sections.eh_frame_hdr.is_some());
        assert!(m.build_id.is_some());
        assert!(!m.symbols.is_empty());
        assert!(m.symbols.windows(2).all(|w| w[0].addr < w[1].addr));
    }
}
