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
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};
use aya::{Ebpf, include_bytes_aligned};
use probes_ebpf::{
    GoEvent, MAP_EVENTS, MAP_LAYOUT, MAP_LOST, MAP_PARKS, MAP_PRECISE_CONFIG, MAP_SEMA,
    MAP_WAIT_HIST, ParkStack, SemaKind,
};
use thiserror::Error;

use crate::goruntime::{GoBinary, GoBinaryError};
use crate::privileges;

/// The eBPF object built by build.rs (aya-build) from probes-ebpf.
pub(crate) static PROBES_OBJ: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probes"));

/// A runtime function blockprobe can probe, and the eBPF program that handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Go symbols, in order of preference: the first one the binary has is probed (names move
    /// between Go versions, e.g. `internal/sync.runtime_SemacquireMutex` from Go 1.24).
    pub symbols: &'static [&'static str],
    /// Program name in the eBPF object.
    pub program: &'static str,
    /// The attach cookie the program reads (`bpf_get_attach_cookie`), e.g. a `SemaKind`.
    pub cookie: Option<u64>,
    /// Whether the target may lack every symbol (the linker drops what the program never uses:
    /// a program without sync.Cond has no `sync.runtime_notifyListWait`). A missing required
    /// symbol is an error; a missing optional one is skipped.
    pub optional: bool,
}

impl ProbeSpec {
    const fn required(symbol: &'static [&'static str], program: &'static str) -> Self {
        Self {
            symbols: symbol,
            program,
            cookie: None,
            optional: false,
        }
    }

    const fn sema(symbols: &'static [&'static str], kind: SemaKind) -> Self {
        Self {
            symbols,
            program: "semacquire",
            cookie: Some(kind as u64),
            optional: true,
        }
    }

    /// The name shown to people: the first symbol.
    pub fn name(&self) -> &'static str {
        self.symbols[0]
    }
}

/// Block start: every park of a goroutine (src/runtime/proc.go, gopark).
pub const GOPARK: ProbeSpec = ProbeSpec::required(&["runtime.gopark"], "gopark");
/// Unblock: a parked goroutine made runnable (src/runtime/proc.go, ready; goready calls it).
pub const READY: ProbeSpec = ProbeSpec::required(&["runtime.ready"], "ready");
/// Creation: a `go` statement (src/runtime/proc.go, newproc1).
pub const NEWPROC1: ProbeSpec = ProbeSpec::required(&["runtime.newproc1"], "newproc1");
/// Exit: a goroutine returning from its function (src/runtime/proc.go, goexit1).
pub const GOEXIT1: ProbeSpec = ProbeSpec::required(&["runtime.goexit1"], "goexit1");
/// The sync primitives' way into the runtime's semaphores (src/runtime/sema.go).
pub const SEMA_PROBES: [ProbeSpec; 5] = [
    ProbeSpec::sema(
        &[
            "internal/sync.runtime_SemacquireMutex",
            "sync.runtime_SemacquireMutex",
        ],
        SemaKind::Mutex,
    ),
    ProbeSpec::sema(&["sync.runtime_SemacquireRWMutexR"], SemaKind::RWMutexR),
    ProbeSpec::sema(&["sync.runtime_SemacquireRWMutex"], SemaKind::RWMutexW),
    // WaitGroup.Wait calls runtime_SemacquireWaitGroup from Go 1.24, runtime_Semacquire before.
    ProbeSpec::sema(
        &[
            "sync.runtime_SemacquireWaitGroup",
            "sync.runtime_Semacquire",
        ],
        SemaKind::WaitGroup,
    ),
    ProbeSpec::sema(&["sync.runtime_notifyListWait"], SemaKind::Cond),
];

/// No-op programs at the probe points of precise mode's hot probes (gopark and ready): the
/// cost of the bare uprobe traps, the floor under precise mode (benchmarks only).
pub const TRAPS: [ProbeSpec; 2] = [
    ProbeSpec::required(&["runtime.gopark"], "noop"),
    ProbeSpec::required(&["runtime.ready"], "noop"),
];

/// Every probe of the precise mode: block/unblock, creation/exit, and sync-object addresses.
pub fn all_probes() -> Vec<ProbeSpec> {
    let mut v = vec![GOPARK, READY, NEWPROC1, GOEXIT1];
    v.extend(SEMA_PROBES);
    v
}

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
        source: Box<aya::EbpfError>,
        hint: String,
    },
    #[error("eBPF program or map `{0}` missing from the object (build mismatch)")]
    Missing(&'static str),
    #[error("eBPF program `{program}`: {source}")]
    Program {
        program: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF map `{map}`: {source}")]
    Map {
        map: &'static str,
        source: Box<aya::maps::MapError>,
    },
}

/// Where a probe went: for `inspect` and for the attach log.
#[derive(Debug, Clone)]
pub struct AttachedProbe {
    pub spec: ProbeSpec,
    /// The symbol actually probed (one of `spec.symbols`).
    pub symbol: &'static str,
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
    /// The task iterators, loaded with the object (one parse of the kernel's BTF for both); None
    /// when the kernel refused them. See [`Attached::take_task_regs`].
    task_regs: Option<crate::native::taskregs::TaskRegs>,
}

impl Attached {
    /// Loads the eBPF object, writes the target's runtime layout and precise mode's settings
    /// (`min_wait_ns`: see [`crate::precise::config`]), and attaches `specs` to the process
    /// `pid`, whose executable is `bin`. Nothing is attached when any step fails.
    pub fn attach(
        pid: u32,
        bin: &GoBinary,
        specs: &[ProbeSpec],
        min_wait_ns: u64,
    ) -> Result<Self, ProbeError> {
        let exe = format!("/proc/{pid}/exe");
        Self::attach_to(pid, Path::new(&exe), bin, specs, min_wait_ns)
    }

    /// Like [`Attached::attach`], with the executable named explicitly: for a child that has not
    /// exec'd the target yet (`blockprobe run`), the uprobes go on the target's file and fire in
    /// that pid once it runs the file (uprobes follow the inode; the perf event follows the task
    /// across exec).
    pub fn attach_to(
        pid: u32,
        exe: &Path,
        bin: &GoBinary,
        specs: &[ProbeSpec],
        min_wait_ns: u64,
    ) -> Result<Self, ProbeError> {
        let precise = crate::precise::Settings::min_wait(min_wait_ns);
        Self::attach_to_with(pid, exe, bin, specs, precise, false)
    }

    /// [`Attached::attach_to`], keeping the map of channel make sites at its full size when
    /// `chan_sites` (the makechan probe, `crate::chansites`, is attached afterwards); without
    /// it the map shrinks to one entry, as the uprobes' maps do in scan mode.
    pub fn attach_to_with(
        pid: u32,
        exe: &Path,
        bin: &GoBinary,
        specs: &[ProbeSpec],
        settings: crate::precise::Settings,
        chan_sites: bool,
    ) -> Result<Self, ProbeError> {
        let exe = exe.to_path_buf();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(ProbeError::NoSuchProcess { pid });
        }
        privileges::require_for_ebpf().map_err(ProbeError::Privileges)?;
        let pid_nz = NonZeroU32::new(pid).ok_or(ProbeError::NoSuchProcess { pid })?;

        // Resolve every probe point before touching the kernel, so that a missing symbol or an
        // unexpected prologue aborts with nothing attached.
        let mut points = Vec::with_capacity(specs.len());
        for spec in specs {
            match spec.symbols.iter().find(|s| bin.function(s).is_some()) {
                Some(sym) => points.push((*spec, *sym, bin.probe_point(sym)?)),
                None if spec.optional => {
                    tracing::debug!(symbol = spec.name(), "not in the binary; not probed");
                }
                None => {
                    return Err(GoBinaryError::NoFunction {
                        path: bin.display_path.clone(),
                        name: spec.name().to_string(),
                    }
                    .into());
                }
            }
        }

        let mut loader = aya::EbpfLoader::new();
        if points.is_empty() {
            // No uprobe (scan mode): the maps only the uprobes use shrink to nothing. The
            // 16 MiB event ring would otherwise be mapped into the agent (32 MiB of its RSS:
            // the kernel maps a ring's data pages twice) and the park table would pin 12 MiB
            // of kernel memory, for nothing. (The park table keeps one set: its index is masked
            // by a constant in the programs, whose lookups then miss, harmlessly.)
            loader.map_max_entries(MAP_EVENTS, 4096);
            loader.map_max_entries(MAP_PARKS, 2);
            for map in [MAP_WAIT_HIST, MAP_SEMA, probes_ebpf::MAP_REASON_HIST] {
                loader.map_max_entries(map, 1);
            }
        }
        if !chan_sites {
            loader.map_max_entries(probes_ebpf::MAP_CHAN_SITES, 1);
        }
        let mut ebpf = loader.load(PROBES_OBJ).map_err(|source| ProbeError::Load {
            hint: privileges::load_hint(&source),
            source: Box::new(source),
        })?;
        // The loader's parse of the kernel's BTF (tens of megabytes) goes before the iterators
        // parse it again, and both before the session says it is attached: the ~100 ms of CPU
        // they take must not land on the target's observed run (on a 2-core machine the
        // throughput bench saw it).
        drop(loader);
        let task_regs = crate::native::taskregs::TaskRegs::load(&mut ebpf)
            .inspect_err(|e| tracing::debug!("no task iterators: {e}"))
            .ok();
        // Settings before any probe runs: a spawned program's first waits already count.
        set_first(&mut ebpf, MAP_LAYOUT, bin.runtime_layout_abi())?;
        let precise = crate::precise::config(bin, settings);
        set_first(&mut ebpf, MAP_PRECISE_CONFIG, precise)?;

        let mut probes = Vec::new();
        for (spec, symbol, point) in points {
            attach_uprobe(
                &mut ebpf,
                spec.program,
                point.file_offset,
                spec.cookie,
                &exe,
                pid_nz,
            )?;
            tracing::debug!(
                symbol,
                entry = format_args!("{:#x}", point.entry),
                skip = point.offset_in_func,
                "attached uprobe"
            );
            probes.push(AttachedProbe {
                spec,
                symbol,
                entry: point.entry,
                offset_in_func: point.offset_in_func,
                file_offset: point.file_offset,
            });
        }

        let map = ebpf
            .take_map(MAP_EVENTS)
            .ok_or(ProbeError::Missing(MAP_EVENTS))?;
        let events = RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            map: MAP_EVENTS,
            source: Box::new(source),
        })?;
        Ok(Self {
            events,
            ebpf,
            probes,
            pid,
            exe,
            task_regs,
        })
    }

    /// The task iterators loaded with the object (thread registers, kernel stacks), once.
    pub fn take_task_regs(&mut self) -> Option<crate::native::taskregs::TaskRegs> {
        self.task_regs.take()
    }

    /// Drains every event currently in the ring buffer, oldest first: each event, and for a
    /// park sent with its stack (a `ParkStack`, told apart by its length) the stack's PCs.
    pub fn drain(&mut self, mut f: impl FnMut(GoEvent, &[u64])) -> usize {
        let mut n = 0;
        while let Some(item) = self.events.next() {
            if item.len() >= size_of::<ParkStack>() {
                // SAFETY: ParkStack is Pod (repr(C), integers only); read_unaligned copes with
                // any alignment of the ring buffer slot.
                let p = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ParkStack>()) };
                let k = (p.n_pcs as usize).min(p.pcs.len());
                f(p.ev, &p.pcs[..k]);
                n += 1;
            } else if item.len() >= size_of::<GoEvent>() {
                // SAFETY: as above, for GoEvent.
                let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<GoEvent>()) };
                f(ev, &[]);
                n += 1;
            }
        }
        n
    }

    /// Events the probes could not send because the ring buffer was full, summed over CPUs.
    pub fn lost(&self) -> Result<u64, ProbeError> {
        let map = self
            .ebpf
            .map(MAP_LOST)
            .ok_or(ProbeError::Missing(MAP_LOST))?;
        let lost: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| ProbeError::Map {
                map: MAP_LOST,
                source: Box::new(source),
            })?;
        let per_cpu = lost.get(&0, 0).map_err(|source| ProbeError::Map {
            map: MAP_LOST,
            source: Box::new(source),
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

// Accessors for the scheduler (OS-thread) programs in `threads` (attach_sched/read_threads),
// which live in the same eBPF object.
impl Attached {
    /// The loaded eBPF object.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The loaded eBPF object, to attach more programs or write maps.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// Attaches the uprobe program `program` of `ebpf` (loaded first if it is not yet) at
/// `file_offset` of `exe`, for process `pid` only. A refusal for want of privileges says what is
/// missing ([`ProbeError::Privileges`]).
pub fn attach_uprobe(
    ebpf: &mut Ebpf,
    program: &'static str,
    file_offset: u64,
    cookie: Option<u64>,
    exe: &Path,
    pid: NonZeroU32,
) -> Result<UProbeLinkId, ProbeError> {
    let prog_err = |source| ProbeError::Program {
        program,
        source: Box::new(source),
    };
    let prog: &mut UProbe = ebpf
        .program_mut(program)
        .ok_or(ProbeError::Missing(program))?
        .try_into()
        .map_err(prog_err)?;
    if prog.fd().is_err() {
        prog.load().map_err(prog_err)?;
    }
    prog.attach(
        UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(file_offset),
            cookie,
        },
        exe,
        UProbeScope::OneProcess(pid),
    )
    .map_err(|source| {
        match privileges::uprobe_refusal(&source, privileges::effective_caps()) {
            Some(why) => ProbeError::Privileges(why),
            None => prog_err(source),
        }
    })
}

/// Writes entry 0 of the array map `name`.
fn set_first<T: aya::Pod>(ebpf: &mut Ebpf, name: &'static str, v: T) -> Result<(), ProbeError> {
    let map_err = |source| ProbeError::Map {
        map: name,
        source: Box::new(source),
    };
    let map = ebpf.map_mut(name).ok_or(ProbeError::Missing(name))?;
    let mut a: Array<_, T> = Array::try_from(map).map_err(map_err)?;
    a.set(0, v, 0).map_err(map_err)
}
