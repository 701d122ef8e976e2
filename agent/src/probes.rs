//! Loading blockprobe's eBPF object and attaching its uprobes to one Go process.
//!
//! Uprobes are attached by file offset of the probed instruction, scoped to the target's pid,
//! and only at function entry (never uretprobes: Go moves stacks). The aya `Ebpf` owns the links:
//! dropping [`Attached`] detaches everything, and so does the agent's exit (the kernel closes the
//! perf-event fds), so an agent that dies never leaves probes behind.

use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{UProbe, uprobe::UProbeScope};
use aya::{Ebpf, include_bytes_aligned};
use probes_ebpf::{GoEvent, MAP_EVENTS, MAP_LAYOUT, MAP_LOST, RuntimeLayout};
use thiserror::Error;

use crate::goruntime::{GoBinary, GoBinaryError};
use crate::privileges;

/// The eBPF object built by build.rs (aya-build) from probes-ebpf.
static PROBES_OBJ: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probes"));

/// A runtime function blockprobe can probe, and the eBPF program that handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Go symbol, e.g. `runtime.gopark`.
    pub symbol: &'static str,
    /// Program name in the eBPF object.
    pub program: &'static str,
}

/// Block start: every park of a goroutine (src/runtime/proc.go, gopark).
pub const GOPARK: ProbeSpec = ProbeSpec {
    symbol: "runtime.gopark",
    program: "gopark",
};
/// Unblock: a parked goroutine made runnable (src/runtime/proc.go, ready; goready calls it).
pub const READY: ProbeSpec = ProbeSpec {
    symbol: "runtime.ready",
    program: "ready",
};

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Binary(#[from] GoBinaryError),
    #[error("process {pid} does not exist (or has exited)")]
    NoSuchProcess { pid: u32 },
    #[error("{0}")]
    Privileges(String),
    #[error("loading the eBPF object failed: {source}{hint}")]
    Load {
        source: aya::EbpfError,
        hint: String,
    },
    #[error("eBPF program or map `{0}` missing from the object (build mismatch)")]
    Missing(&'static str),
    #[error("eBPF program `{program}`: {source}")]
    Program {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map `{map}`: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
}

/// Where a probe went: for `inspect` and for the attach log.
#[derive(Debug, Clone)]
pub struct AttachedProbe {
    pub spec: ProbeSpec,
    pub entry: u64,
    pub offset_in_func: u64,
    pub file_offset: u64,
}

/// Probes attached to one process. Drop detaches them.
pub struct Attached {
    // Field order matters for drop: the ring buffer map is closed before the programs.
    events: RingBuf<MapData>,
    ebpf: Ebpf,
    pub probes: Vec<AttachedProbe>,
    pub pid: u32,
    pub exe: PathBuf,
}

impl Attached {
    /// Loads the eBPF object, writes the target's runtime layout, and attaches `specs` to the
    /// process `pid`, whose executable is `bin`. Nothing is attached when any step fails.
    pub fn attach(pid: u32, bin: &GoBinary, specs: &[ProbeSpec]) -> Result<Self, ProbeError> {
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(ProbeError::NoSuchProcess { pid });
        }
        privileges::require_for_ebpf().map_err(ProbeError::Privileges)?;
        let pid_nz = NonZeroU32::new(pid).ok_or(ProbeError::NoSuchProcess { pid })?;

        // Resolve every probe point before touching the kernel, so that a missing symbol or an
        // unexpected prologue aborts with nothing attached.
        let mut points = Vec::with_capacity(specs.len());
        for spec in specs {
            let p = bin.probe_point(spec.symbol)?;
            points.push((*spec, p));
        }

        let mut ebpf = Ebpf::load(PROBES_OBJ).map_err(|source| ProbeError::Load {
            hint: privileges::load_hint(&source),
            source,
        })?;
        {
            let map = ebpf.map_mut(MAP_LAYOUT).ok_or(ProbeError::Missing(MAP_LAYOUT))?;
            let mut layout: Array<_, RuntimeLayout> =
                Array::try_from(map).map_err(|source| ProbeError::Map {
                    map: MAP_LAYOUT,
                    source,
                })?;
            layout
                .set(0, bin.runtime_layout_abi(), 0)
                .map_err(|source| ProbeError::Map {
                    map: MAP_LAYOUT,
                    source,
                })?;
        }

        let mut probes = Vec::new();
        for (spec, point) in points {
            let prog: &mut UProbe = ebpf
                .program_mut(spec.program)
                .ok_or(ProbeError::Missing(spec.program))?
                .try_into()
                .map_err(|source| ProbeError::Program {
                    program: spec.program,
                    source,
                })?;
            if prog.fd().is_err() {
                prog.load().map_err(|source| ProbeError::Program {
                    program: spec.program,
                    source,
                })?;
            }
            prog.attach(
                aya::programs::uprobe::UProbeAttachLocation::AbsoluteOffset(point.file_offset),
                &exe,
                UProbeScope::OneProcess(pid_nz),
            )
            .map_err(|source| ProbeError::Program {
                program: spec.program,
                source,
            })?;
            tracing::debug!(
                symbol = spec.symbol,
                entry = format_args!("{:#x}", point.entry),
                skip = point.offset_in_func,
                "attached uprobe"
            );
            probes.push(AttachedProbe {
                spec,
                entry: point.entry,
                offset_in_func: point.offset_in_func,
                file_offset: point.file_offset,
            });
        }

        let map = ebpf.take_map(MAP_EVENTS).ok_or(ProbeError::Missing(MAP_EVENTS))?;
        let events = RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            map: MAP_EVENTS,
            source,
        })?;
        Ok(Self {
            events,
            ebpf,
            probes,
            pid,
            exe,
        })
    }

    /// Drains every event currently in the ring buffer, oldest first.
    pub fn drain(&mut self, mut f: impl FnMut(GoEvent)) -> usize {
        let mut n = 0;
        while let Some(item) = self.events.next() {
            if item.len() >= size_of::<GoEvent>() {
                // SAFETY: GoEvent is Pod (repr(C), integers only); read_unaligned copes with any
                // alignment of the ring buffer slot.
                let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<GoEvent>()) };
                f(ev);
                n += 1;
            }
        }
        n
    }

    /// Events the probes could not send because the ring buffer was full, summed over CPUs.
    pub fn lost(&self) -> Result<u64, ProbeError> {
        let map = self.ebpf.map(MAP_LOST).ok_or(ProbeError::Missing(MAP_LOST))?;
        let lost: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(|source| {
            ProbeError::Map {
                map: MAP_LOST,
                source,
            }
        })?;
        let per_cpu = lost.get(&0, 0).map_err(|source| ProbeError::Map {
            map: MAP_LOST,
            source,
        })?;
        Ok(per_cpu.iter().sum())
    }
}

impl AsRawFd for Attached {
    /// The ring buffer's fd: readable when events are waiting (for epoll / tokio's AsyncFd).
    fn as_raw_fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }
}
