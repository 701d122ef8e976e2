//! Kernel symbolization from /proc/kallsyms: address → `function+offset [module]`.
//!
//! The format is one symbol a line, `ADDR TYPE NAME` or `ADDR TYPE NAME\t[MODULE]`
//! (kernel/kallsyms.c, s_show). Only text symbols (types t, T, w, W) are kept. Without
//! privileges (kptr_restrict, kernel/kallsyms.c kallsyms_show_value) every address reads as 0;
//! that is reported as an error rather than symbolizing everything to the first symbol.
//!
//! Like the kernel's own stack dumps for a sleeping task (/proc/PID/stack, wchan:
//! kernel/stacktrace.c `stack_trace_consume_entry_nosched` → `in_sched_functions()` in
//! kernel/sched/core.c), frames inside the scheduler (`__sched_text_start..__sched_text_end`) and
//! lock functions (`__lock_text_start..__lock_text_end`) can be recognized and dropped, so that a
//! stack taken at sched_switch reads from the blocking call outwards.

use std::path::Path;

use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KallsymsError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "/proc/kallsyms shows no addresses (all zero): kernel.kptr_restrict hides them; run as root with kptr_restrict < 2"
    )]
    Restricted,
    #[error("/proc/kallsyms has no text symbols")]
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sym {
    addr: u64,
    name: String,
    module: Option<String>,
}

/// A kernel frame, symbolized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelFrame {
    /// The return address, when known (procfs stacks show `[<0>]`, i.e. hide it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<u64>,
    /// The function, or `?` when the address matches no symbol.
    pub function: String,
    /// Offset of `addr` into `function`.
    pub offset: u64,
    /// The module, for code outside vmlinux.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

impl std::fmt::Display for KernelFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:#x}", self.function, self.offset)?;
        if let Some(m) = &self.module {
            write!(f, " [{m}]")?;
        }
        Ok(())
    }
}

/// The kernel's text symbols, sorted by address.
#[derive(Debug, Clone)]
pub struct Kallsyms {
    syms: Vec<Sym>,
    sched_text: Option<(u64, u64)>,
    lock_text: Option<(u64, u64)>,
}

impl Kallsyms {
    /// Reads and parses /proc/kallsyms.
    pub fn load() -> Result<Self, KallsymsError> {
        Self::load_from(Path::new("/proc/kallsyms"))
    }

    pub fn load_from(path: &Path) -> Result<Self, KallsymsError> {
        let text = std::fs::read_to_string(path).map_err(|source| KallsymsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses kallsyms text. Malformed lines are skipped.
    pub fn parse(text: &str) -> Result<Self, KallsymsError> {
        let mut syms = Vec::new();
        let (mut sched_start, mut sched_end, mut lock_start, mut lock_end) =
            (None, None, None, None);
        let mut any_nonzero = false;
        let mut any_line = false;
        for line in text.lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            any_line = true;
            any_nonzero |= addr != 0;
            match name {
                "__sched_text_start" => sched_start = Some(addr),
                "__sched_text_end" => sched_end = Some(addr),
                "__lock_text_start" => lock_start = Some(addr),
                "__lock_text_end" => lock_end = Some(addr),
                _ => {}
            }
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            // Padding and CFI markers before each function (CONFIG_FUNCTION_PADDING, kCFI) are not
            // functions a return address can be in.
            if name.starts_with("__pfx_") || name.starts_with("__cfi_") {
                continue;
            }
            let module = it
                .next()
                .and_then(|m| m.strip_prefix('[')?.strip_suffix(']'))
                .map(str::to_string);
            syms.push(Sym {
                addr,
                name: name.to_string(),
                module,
            });
        }
        if any_line && !any_nonzero {
            return Err(KallsymsError::Restricted);
        }
        if syms.is_empty() {
            return Err(KallsymsError::Empty);
        }
        // Of several names at one address, a function beats a section marker (`_stext`,
        // `__sched_text_end`, ...); otherwise the first in file order wins (stable sort).
        syms.sort_by_key(|s| (s.addr, is_marker(&s.name)));
        syms.dedup_by_key(|s| s.addr);
        let range = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if a < b => Some((a, b)),
            _ => None,
        };
        Ok(Self {
            syms,
            sched_text: range(sched_start, sched_end),
            lock_text: range(lock_start, lock_end),
        })
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The symbol containing `addr`: the last one starting at or below it.
    pub fn symbolize(&self, addr: u64) -> KernelFrame {
        let i = self.syms.partition_point(|s| s.addr <= addr);
        match i.checked_sub(1).and_then(|i| self.syms.get(i)) {
            Some(s) => KernelFrame {
                addr: Some(addr),
                function: s.name.clone(),
                offset: addr - s.addr,
                module: s.module.clone(),
            },
            None => KernelFrame {
                addr: Some(addr),
                function: "?".to_string(),
                offset: 0,
                module: None,
            },
        }
    }

    /// Whether `addr` is in scheduler or lock code (the kernel's `in_sched_functions`).
    pub fn in_sched_functions(&self, addr: u64) -> bool {
        let inside = |r: Option<(u64, u64)>| r.is_some_and(|(a, b)| addr >= a && addr < b);
        inside(self.sched_text) || inside(self.lock_text)
    }

    /// Symbolizes a stack (innermost first), dropping the scheduler frames on top the way the
    /// kernel does for /proc/PID/stack. Frames further out are all kept.
    pub fn symbolize_stack(&self, ips: &[u64]) -> Vec<KernelFrame> {
        let skip = ips
            .iter()
            .take_while(|&&ip| self.in_sched_functions(ip))
            .count();
        ips[skip..].iter().map(|&ip| self.symbolize(ip)).collect()
    }
}

/// Linker-script boundary symbols, which share their address with a real function.
fn is_marker(name: &str) -> bool {
    matches!(
        name,
        "_text" | "_stext" | "_etext" | "_sinittext" | "_einittext"
    ) || (name.starts_with("__") && (name.ends_with("_start") || name.ends_with("_end")))
}

/// Parses /proc/PID/stack (or /proc/PID/task/TID/stack) text: lines like
/// `[<0>] pipe_read+0x1a4/0x3e0` or `[<0>] foo+0x10/0x20 [module]` (kernel/stacktrace.c and
/// fs/proc/base.c proc_pid_stack: `[<%pK>] %pB`). Malformed lines are skipped.
pub fn parse_proc_stack(text: &str) -> Vec<KernelFrame> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("[<")?;
            let (addr, rest) = rest.split_once(">]")?;
            let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16)
                .ok()
                .filter(|&a| a != 0);
            let mut it = rest.split_ascii_whitespace();
            let sym = it.next()?;
            let module = it
                .next()
                .and_then(|m| m.strip_prefix('[')?.strip_suffix(']'))
                .map(str::to_string);
            let (function, offset) = match sym.split_once('+') {
                Some((f, off)) => {
                    let off = off.split('/').next().unwrap_or("0");
                    let off = u64::from_str_radix(off.trim_start_matches("0x"), 16).unwrap_or(0);
                    (f, off)
                }
                None => (sym, 0),
            };
            Some(KernelFrame {
                addr,
                function: function.to_string(),
                offset,
                module,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
ffffffff81000000 T _text
ffffffff81000000 T _stext
ffffffff81001000 t __pfx_foo
ffffffff81001010 t foo
ffffffff81001100 T bar
ffffffff81002000 D some_data
ffffffff81003000 T __sched_text_start
ffffffff81003000 T __schedule
ffffffff81003400 T schedule
ffffffff81003800 T __sched_text_end
ffffffff81003800 T pipe_read
ffffffffc0a00000 t mod_fn\t[ext4]
garbage
zz T bad_addr
";

    #[test]
    fn symbolizes_and_picks_the_containing_symbol() {
        let k = Kallsyms::parse(TEXT).unwrap();
        let f = k.symbolize(0xffffffff81001020);
        assert_eq!((f.function.as_str(), f.offset), ("foo", 0x10));
        assert_eq!(f.to_string(), "foo+0x10");
        // The padding symbol is dropped, so its bytes belong to the function before it.
        assert_eq!(k.symbolize(0xffffffff81001008).function, "_text");
        // Data symbols are not text.
        assert_eq!(k.symbolize(0xffffffff81002010).function, "bar");
        let m = k.symbolize(0xffffffffc0a00004);
        assert_eq!(m.module.as_deref(), Some("ext4"));
        assert_eq!(m.to_string(), "mod_fn+0x4 [ext4]");
        assert_eq!(k.symbolize(0x1000).function, "?");
        // Aliases at one address: a function rather than a marker, else the first in file order.
        assert_eq!(k.symbolize(0xffffffff81000000).function, "_text");
        assert_eq!(k.symbolize(0xffffffff81003000).function, "__schedule");
        assert_eq!(k.symbolize(0xffffffff81003800).function, "pipe_read");
    }

    #[test]
    fn drops_scheduler_frames_on_top_only() {
        let k = Kallsyms::parse(TEXT).unwrap();
        assert!(k.in_sched_functions(0xffffffff81003410));
        assert!(!k.in_sched_functions(0xffffffff81003810));
        let frames = k.symbolize_stack(&[
            0xffffffff81003010,
            0xffffffff81003410,
            0xffffffff81003820,
            0xffffffff81001104,
        ]);
        let names: Vec<_> = frames.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, ["pipe_read", "bar"]);
        assert!(k.symbolize_stack(&[]).is_empty());
    }

    #[test]
    fn restricted_and_empty_are_errors() {
        let hidden = "0000000000000000 T _text\n0000000000000000 t foo\n";
        assert!(matches!(
            Kallsyms::parse(hidden),
            Err(KallsymsError::Restricted)
        ));
        assert!(matches!(Kallsyms::parse(""), Err(KallsymsError::Empty)));
        assert!(matches!(
            Kallsyms::parse("ffffffff81002000 D only_data\n"),
            Err(KallsymsError::Empty)
        ));
    }

    #[test]
    fn parses_proc_stack() {
        let s = "[<0>] pipe_read+0x1a4/0x3e0\n[<0>] vfs_read+0x2c1/0x330\n\
                 [<ffffffffc0a00004>] mod_fn+0x4/0x40 [ext4]\nnonsense\n[<0>] bare\n";
        let f = parse_proc_stack(s);
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].function, "pipe_read");
        assert_eq!(f[0].offset, 0x1a4);
        assert_eq!(f[0].addr, None);
        assert_eq!(f[2].addr, Some(0xffffffffc0a00004));
        assert_eq!(f[2].module.as_deref(), Some("ext4"));
        assert_eq!((f[3].function.as_str(), f[3].offset), ("bare", 0));
    }

    #[test]
    fn live_kallsyms_if_readable() {
        // Root on the project's machines; elsewhere the file may be restricted, which must be an
        // error, never a panic.
        match Kallsyms::load() {
            Ok(k) => {
                assert!(!k.is_empty());
                assert!(k.sched_text.is_some(), "no __sched_text_start/end");
            }
            Err(e) => eprintln!("kallsyms unavailable: {e}"),
        }
    }
}
