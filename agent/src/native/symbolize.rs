//! Symbolization of native code: function, file:line and inlined calls from the file's DWARF
//! (addr2line), else the function from its ELF symbol table. glibc as distributions ship it has
//! no DWARF and only .dynsym; the C parts of a cgo executable have DWARF (cgo compiles them with
//! `-g`), with positions in the Go file whose preamble holds the C code.

use std::sync::{Arc, Mutex};

use object::{Object, ObjectSection};

use super::modules::ElfModule;

pub(super) type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;
/// A file's DWARF, indexed lazily by addr2line.
pub(super) type Dwarf = Mutex<addr2line::Context<Reader>>;

/// One symbolized native frame (one of several when calls were inlined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeSym {
    pub function: Arc<str>,
    /// Empty when unknown.
    pub file: Arc<str>,
    pub line: u32,
    /// Inlined into the next (outer) entry.
    pub inlined: bool,
}

fn load_dwarf(data: &[u8]) -> Option<Dwarf> {
    let file = object::File::parse(data).ok()?;
    file.section_by_name(".debug_info")?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let dwarf = gimli::Dwarf::load(|id| -> Result<Reader, gimli::Error> {
        let bytes: Arc<[u8]> = match file.section_by_name(id.name()) {
            Some(s) => Arc::from(&*s.uncompressed_data().unwrap_or_default()),
            None => Arc::from(&[][..]),
        };
        Ok(gimli::EndianArcSlice::new(bytes, endian))
    })
    .ok()?;
    addr2line::Context::from_dwarf(dwarf).ok().map(Mutex::new)
}

impl ElfModule {
    /// Whether the file carries DWARF (parsed on the first call).
    pub fn has_dwarf(&self) -> bool {
        self.dwarf.get_or_init(|| load_dwarf(&self.data)).is_some()
    }

    /// [`ElfModule::symbolize`], remembered per address.
    pub fn symbolize_cached(&self, addr: u64) -> Arc<[NativeSym]> {
        let hit = self
            .memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&addr)
            .cloned();
        if let Some(hit) = hit {
            return hit;
        }
        let syms: Arc<[NativeSym]> = Arc::from(self.symbolize(addr));
        self.memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr, syms.clone());
        syms
    }

    /// The frames at link-time address `addr`, innermost (most inlined) first: from DWARF when
    /// it covers the address, else the ELF symbol containing it; empty when neither knows it.
    pub fn symbolize(&self, addr: u64) -> Vec<NativeSym> {
        let mut out = Vec::new();
        if let Some(dwarf) = self.dwarf.get_or_init(|| load_dwarf(&self.data)) {
            let ctx = dwarf.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(mut frames) = ctx.find_frames(addr).skip_all_loads() {
                while let Ok(Some(f)) = frames.next() {
                    let function = f
                        .function
                        .as_ref()
                        .and_then(|n| n.demangle().ok())
                        .map(|n| Arc::from(&*n));
                    let (file, line) = f
                        .location
                        .map(|l| (l.file.unwrap_or(""), l.line.unwrap_or(0)))
                        .unwrap_or(("", 0));
                    out.push(NativeSym {
                        function: function.unwrap_or_else(|| Arc::from("??")),
                        file: Arc::from(file),
                        line,
                        inlined: true,
                    });
                }
            }
        }
        if out.is_empty()
            && let Some(s) = self.symbol(addr)
        {
            out.push(NativeSym {
                function: s.name.clone(),
                file: Arc::from(""),
                line: 0,
                inlined: false,
            });
        }
        // Each entry but the outermost is inlined into the next one.
        if let Some(last) = out.last_mut() {
            last.inlined = false;
        }
        // DWARF without a name for the outermost function: the symbol table has it.
        if let Some(last) = out.last_mut()
            && &*last.function == "??"
            && let Some(s) = self.symbol(addr)
        {
            last.function = s.name.clone();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;

    /// C with a static function gcc inlines at -O2 and a noinline one.
    const C_SRC: &str = r#"#include <unistd.h>
static int twice(int fd) {
	char b[2];
	return (int)read(fd, b, 2) * 2;
}
__attribute__((noinline)) int outer(int fd) {
	return twice(fd) + 1;
}
int main(void) { return outer(0); }
"#;

    /// Builds C_SRC with gcc (`extra` flags) in target/, once per flag set.
    fn build(extra: &[&str], name: &str) -> Option<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/native-symbolize");
        std::fs::create_dir_all(&dir).ok()?;
        // One source per build: tests run in parallel, and a rewrite under a running gcc would
        // hand it a truncated file.
        let src = dir.join(format!("{name}.c"));
        std::fs::write(&src, C_SRC).ok()?;
        let out = dir.join(name);
        let ok = Command::new("gcc")
            .args(["-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .args(extra)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "gcc failed under CI"
            );
            eprintln!("skipping: gcc is not available");
            return None;
        }
        std::fs::read(out).ok()
    }

    fn line_of(needle: &str) -> u32 {
        C_SRC.lines().position(|l| l.contains(needle)).unwrap() as u32 + 1
    }

    #[test]
    fn dwarf_gives_lines_and_inlined_frames() {
        let Some(data) = build(&["-g"], "t-g") else {
            return;
        };
        let m = ElfModule::parse("/t-g", data).unwrap();
        assert!(m.has_dwarf());
        let outer = m
            .symbols
            .iter()
            .find(|s| &*s.name == "outer")
            .unwrap()
            .clone();
        let at_entry = m.symbolize(outer.addr);
        assert_eq!(&*at_entry.last().unwrap().function, "outer");
        assert!(at_entry.last().unwrap().file.ends_with("t-g.c"));
        // Somewhere in outer is the inlined body of twice: its frame first, then outer's.
        let inlined = (outer.addr..outer.addr + outer.size)
            .map(|a| m.symbolize(a))
            .find(|f| f.len() == 2)
            .expect("an address of twice inlined into outer");
        assert_eq!(&*inlined[0].function, "twice");
        assert!(inlined[0].inlined && !inlined[1].inlined);
        assert!(
            (line_of("static int twice")..=line_of("return (int)read")).contains(&inlined[0].line),
            "{inlined:?}"
        );
        assert_eq!(&*inlined[1].function, "outer");
        assert_eq!(inlined[1].line, line_of("return twice(fd) + 1;"));
        // Cached lookups give the same frames.
        assert_eq!(&*m.symbolize_cached(outer.addr), &at_entry[..]);
        assert_eq!(&*m.symbolize_cached(outer.addr), &at_entry[..]);
    }

    #[test]
    fn without_dwarf_the_symbol_table_names_functions() {
        let Some(data) = build(&[], "t-nodebug") else {
            return;
        };
        let m = ElfModule::parse("/t-nodebug", data).unwrap();
        assert!(!m.has_dwarf());
        let outer = m
            .symbols
            .iter()
            .find(|s| &*s.name == "outer")
            .unwrap()
            .clone();
        let f = m.symbolize(outer.addr + 1);
        assert_eq!(f.len(), 1);
        assert_eq!(&*f[0].function, "outer");
        assert!(f[0].file.is_empty() && f[0].line == 0);
        // Stripped: nothing names it, and nothing is made up.
        let Some(data) = build(&["-s"], "t-stripped") else {
            return;
        };
        let m = ElfModule::parse("/t-stripped", data).unwrap();
        assert!(
            m.symbolize(outer.addr + 1)
                .iter()
                .all(|f| &*f.function != "outer")
        );
    }
}
