//! Runtime health of a live Go process, read from its memory without stopping it and without
//! any code in the target: the figures of `runtime.ReadMemStats` (heap, GC, stacks), the
//! scheduler figures of `GODEBUG=schedtrace`, goroutines by state, and pending timers per P.
//!
//! - [`layout`]: struct offsets (DWARF, or the per-release table for stripped binaries).
//! - [`globals`]: where `memstats`, `gcController`, `mheap_`, `sched`, `allp` live.
//! - [`read`]: one reading of the target's memory.
//! - [`memstats`]: the `readmemstats_m` computation over it.
//! - [`trend`]: a timer leak told from a busy timer, across readings.
//! - [`view`]: the schedtrace-style text line.
//! - [`prom`]: the figures as Prometheus metrics.
//! - [`window`]: heap growth over a window (a goroutine leak's), for same-run diagnosis.
//! - [`cli`]: `blockprobe stat` and `bench-stat`.
//!
//! The reads are not atomic with respect to the target (it keeps running): a figure may be torn
//! between two updates. Counters the runtime changes only under a stop-the-world (NumGC, the P
//! count) are exact; the byte figures are as good as a ReadMemStats a moment earlier or later.

pub mod cli;
pub mod globals;
pub mod layout;
pub mod memstats;
pub mod prom;
pub mod read;
pub mod trend;
pub mod view;
pub mod window;

use std::path::Path;

use thiserror::Error;

use crate::goruntime::{GoBinary, GoBinaryError, LayoutSource};
use crate::memory::MemError;

pub use globals::Globals;
pub use layout::HealthLayout;
pub use read::{HealthReader, Stat};

#[derive(Debug, Error)]
pub enum HealthError {
    // Not `#[source]`: their messages already end with their causes, which `{:#}` would
    // print a second time.
    #[error("{0}")]
    Binary(GoBinaryError),
    #[error("{0}")]
    Mem(MemError),
    #[error("runtime struct layout: {0}")]
    Layout(String),
    #[error("the binary has no DWARF")]
    NoDwarf,
    #[error("the binary's symbol table lacks the runtime globals")]
    NoSymbol,
    #[error("cannot locate the runtime globals in a stripped binary: {0}")]
    Stripped(String),
    #[error("no health layout for Go 1.{0} (blockprobe supports 1.22 to 1.27)")]
    NoLayout(u32),
    #[error("{0}")]
    Target(String),
    #[error("the target's runtime state does not look sane: {0}")]
    Implausible(String),
}

impl From<GoBinaryError> for HealthError {
    fn from(e: GoBinaryError) -> Self {
        Self::Binary(e)
    }
}

impl From<MemError> for HealthError {
    fn from(e: MemError) -> Self {
        Self::Mem(e)
    }
}

/// Where the layout and the global addresses of a target came from.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sources {
    /// `dwarf` or `version-table`.
    pub layout: &'static str,
    /// `symtab` or `code` (decoded from runtime functions; stripped binaries).
    pub globals: &'static str,
}

/// The layout and globals of a binary.
pub fn resolve(bin: &GoBinary) -> Result<(HealthLayout, Globals, Sources), HealthError> {
    let file = object::File::parse(bin.file_data()).map_err(|e| {
        HealthError::Layout(format!("cannot parse {}: {e}", bin.display_path.display()))
    })?;
    let (layout, lsrc) = match HealthLayout::from_elf(&file) {
        Ok(l) => (l, LayoutSource::Dwarf),
        Err(HealthError::NoDwarf) => (
            HealthLayout::for_minor(bin.minor)
                .cloned()
                .ok_or(HealthError::NoLayout(bin.minor))?,
            LayoutSource::VersionTable,
        ),
        Err(e) => return Err(e),
    };
    let (globals, gsrc) = match Globals::from_symtab(&file) {
        Some(g) => (g, "symtab"),
        None => (Globals::from_code(bin)?, "code"),
    };
    let sources = Sources {
        layout: match lsrc {
            LayoutSource::Dwarf => "dwarf",
            LayoutSource::VersionTable => "version-table",
        },
        globals: gsrc,
    };
    Ok((layout, globals, sources))
}

/// Opens `/proc/PID/exe` and prepares a reader.
pub fn open_pid(pid: u32) -> Result<(GoBinary, u64), HealthError> {
    let display = crate::procfs::exe_path(pid)
        .map_err(|e| HealthError::Target(format!("process {pid}: {e}")))?;
    let bin = GoBinary::open_as(format!("/proc/{pid}/exe"), &display)?;
    let bias = crate::session::load_bias(pid, Path::new(&display), &bin);
    Ok((bin, bias))
}
