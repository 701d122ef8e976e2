//! The OS-thread view of the target: which of its threads are on or off CPU, since when, why
//! (the task state they went to sleep in), and the kernel stack of their current sleep.
//!
//! The eBPF side (probes-ebpf/src/sched.rs) keeps one `ThreadSched` per thread in the `THREADS`
//! map from the `sched/sched_switch` and `sched/sched_waking` tracepoints, filtered in the kernel
//! to the target's tgid. A thread that went to sleep before the attach produces no event until
//! it wakes, so [`attach_sched`] seeds the map from /proc/PID/task/*/stat right after attaching;
//! seeded states began before the attach and their durations are lower bounds. For
//! `--timeline`, [`spans`] records the history of every thread's off-CPU spans as well.
//!
//! Task states and their letters: include/linux/sched.h (TASK_* and TASK_REPORT),
//! fs/proc/array.c (`task_state_array`), and include/trace/events/sched.h
//! (`__trace_sched_switch_state`, the `prev_state` of sched_switch).

use std::collections::HashMap as StdHashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, MapError, StackTraceMap};
use aya::programs::{ProgramError, TracePoint};
use probes_ebpf::{
    MAP_KSTACKS, MAP_SCHED_CONFIG, MAP_THREADS, PROG_SCHED_SWITCH, PROG_SCHED_WAKING,
    SCHED_F_KSTACKS, SCHED_F_SPANS, SchedConfig, THREAD_F_SEEDED, ThreadSched, task_state,
};
use serde::Serialize;
use thiserror::Error;

use crate::goruntime::layout::GoLayout;
use crate::kallsyms::{Kallsyms, KernelFrame, parse_proc_stack};
use crate::memory::ProcessMemory;

/// Where tracefs is normally mounted, and the old debugfs location.
const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
/// The largest pid/tid on 64-bit Linux (include/linux/threads.h, PID_MAX_LIMIT).
const PID_MAX_LIMIT: u64 = 4 * 1024 * 1024;
/// `BPF_NOEXIST` (include/uapi/linux/bpf.h).
const BPF_NOEXIST: u64 = 1;

#[derive(Debug, Error)]
pub enum ThreadsError {
    #[error(
        "the scheduler tracepoints need tracefs, which is not mounted (checked {dirs}), and \
         mounting it at /sys/kernel/tracing failed: {reason}. Mount it as root with \
         `mount -t tracefs tracefs /sys/kernel/tracing` (raw and BTF tracepoints, which would not \
         need it, are not implemented as a fallback)",
        dirs = TRACEFS_DIRS.join(", ")
    )]
    NoTracefs { reason: String },
    #[error("tracepoint format {path}: {detail}")]
    Format { path: String, detail: String },
    #[error("eBPF program or map `{0}` missing from the object (build mismatch)")]
    Missing(&'static str),
    #[error("eBPF program `{program}`: {source}")]
    Program {
        program: &'static str,
        source: ProgramError,
    },
    #[error("eBPF map `{map}`: {source}")]
    Map { map: &'static str, source: MapError },
    #[error(
        "the scheduler programs are not configured on this eBPF object (call attach_sched first)"
    )]
    NotAttached,
    #[error("process {pid} does not exist (or has exited)")]
    NoSuchProcess { pid: u32 },
    #[error("listing the threads of process {pid} (/proc/{pid}/task): {source}")]
    Tasks { pid: u32, source: std::io::Error },
    #[error("watching the off-CPU spans ring buffer: {0}")]
    SpansRing(std::io::Error),
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> ThreadsError {
    move |source| ThreadsError::Map { map, source }
}

// ---------------------------------------------------------------------------------------------
// Task states

/// The `task_state` bits (as sched_switch reports them) for a /proc state letter
/// (fs/proc/array.c `task_state_array`: R S D T t X Z P I). None for anything else.
pub fn state_bits_from_letter(letter: char) -> Option<u32> {
    Some(match letter {
        'R' => task_state::RUNNING,
        'S' => task_state::INTERRUPTIBLE,
        'D' => task_state::UNINTERRUPTIBLE,
        'T' => task_state::STOPPED,
        't' => task_state::TRACED,
        'X' => task_state::DEAD,
        'Z' => task_state::ZOMBIE,
        'P' => task_state::PARKED,
        'I' => task_state::IDLE,
        _ => return None,
    })
}

/// The /proc letter for sched_switch's `prev_state` bits: the lowest set report bit, as in the
/// tracepoint's print format; 0 and the preempted bit (TASK_REPORT_MAX) are R.
pub fn state_letter(bits: u32) -> char {
    const LETTERS: [char; 8] = ['S', 'D', 'T', 't', 'X', 'Z', 'P', 'I'];
    let sleep = bits & task_state::SLEEP_MASK;
    if sleep == 0 {
        return 'R';
    }
    LETTERS
        .get(sleep.trailing_zeros() as usize)
        .copied()
        .unwrap_or('?')
}

/// The long name of a state letter (fs/proc/array.c `task_state_array`).
pub fn state_name(letter: char) -> &'static str {
    match letter {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'X' => "dead",
        'Z' => "zombie",
        'P' => "parked",
        'I' => "idle",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// /proc/PID/task/TID/stat

/// The fields of /proc/PID/task/TID/stat used for seeding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStat {
    pub tid: u32,
    pub comm: String,
    /// Field 3, the state letter.
    pub state: char,
}

/// Parses a stat line (fs/proc/array.c do_task_stat: `pid (comm) state ...`). The comm may
/// hold spaces and parentheses, so the state is the first field after the *last* `)`.
pub fn parse_task_stat(text: &str) -> Option<TaskStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let (tid, comm) = head.split_once(" (")?;
    let state = rest.split_ascii_whitespace().next()?;
    let mut chars = state.chars();
    let letter = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    Some(TaskStat {
        tid: tid.trim().parse().ok()?,
        comm: comm.to_string(),
        state: letter,
    })
}

/// Every thread of `pid` with its current state. Threads that exit while we list are skipped.
pub fn list_tasks(pid: u32) -> Result<Vec<TaskStat>, ThreadsError> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ThreadsError::NoSuchProcess { pid }
        } else {
            ThreadsError::Tasks { pid, source }
        }
    })?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("{dir}/{tid}/stat")) else {
            continue;
        };
        if let Some(st) = parse_task_stat(&text).filter(|s| s.tid == tid) {
            out.push(st);
        }
    }
    out.sort_by_key(|t| t.tid);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// tracefs and tracepoint formats

/// Parses a tracepoint `format` file: the (offset, size) of field `name`. Lines look like
/// `\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;` (kernel/trace/trace_events.c,
/// f_show).
pub fn format_field(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let field = decl.split_ascii_whitespace().last()?;
        let field = field.split('[').next()?;
        if field != name {
            return None;
        }
        let num = |key: &str| -> Option<u32> {
            let v = rest.split(';').find_map(|p| p.trim().strip_prefix(key))?;
            v.trim().parse().ok()
        };
        Some((num("offset:")?, num("size:")?))
    })
}

/// The tracefs mount in use, mounting it at /sys/kernel/tracing when absent.
/// Returns the directory and whether this call mounted it.
pub fn ensure_tracefs() -> Result<(PathBuf, bool), ThreadsError> {
    let mounted = |d: &Path| d.join("events").is_dir();
    if let Some(d) = TRACEFS_DIRS.iter().map(Path::new).find(|d| mounted(d)) {
        return Ok((d.to_path_buf(), false));
    }
    let target = Path::new(TRACEFS_DIRS[0]);
    if !target.is_dir() {
        return Err(ThreadsError::NoTracefs {
            reason: format!("{} does not exist (no CONFIG_TRACING?)", target.display()),
        });
    }
    // SAFETY: NUL-terminated constant strings; a null data pointer is allowed for tracefs.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        let reason = if err.raw_os_error() == Some(libc::EPERM) {
            format!("{err} (needs root / CAP_SYS_ADMIN)")
        } else {
            err.to_string()
        };
        return Err(ThreadsError::NoTracefs { reason });
    }
    if !mounted(target) {
        return Err(ThreadsError::NoTracefs {
            reason: "mounted, but it has no events/ directory".into(),
        });
    }
    tracing::info!("mounted tracefs at /sys/kernel/tracing for the sched tracepoints");
    Ok((target.to_path_buf(), true))
}

/// The record offsets the programs need, from the format files under `tracefs`.
pub fn read_offsets(tracefs: &Path) -> Result<SchedConfig, ThreadsError> {
    let read = |event: &str| -> Result<(String, String), ThreadsError> {
        let path = tracefs.join("events/sched").join(event).join("format");
        let p = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| ThreadsError::Format {
            path: p.clone(),
            detail: e.to_string(),
        })?;
        Ok((p, text))
    };
    let field =
        |(path, text): &(String, String), name: &str, sizes: &[u32]| match format_field(text, name)
        {
            Some((off, size)) if sizes.contains(&size) => Ok(off),
            Some((_, size)) => Err(ThreadsError::Format {
                path: path.clone(),
                detail: format!("field {name} has size {size}, expected one of {sizes:?}"),
            }),
            None => Err(ThreadsError::Format {
                path: path.clone(),
                detail: format!("no field {name}"),
            }),
        };
    let switch = read("sched_switch")?;
    let waking = read("sched_waking")?;
    Ok(SchedConfig {
        switch_prev_pid: field(&switch, "prev_pid", &[4])?,
        switch_prev_state: field(&switch, "prev_state", &[8])?,
        switch_next_pid: field(&switch, "next_pid", &[4])?,
        waking_pid: field(&waking, "pid", &[4])?,
        ..SchedConfig::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Attach

/// What [`attach_sched`] did.
#[derive(Debug, Clone, Serialize)]
pub struct SchedAttached {
    /// The tracepoints attached, as `category/name`.
    pub tracepoints: Vec<&'static str>,
    /// CLOCK_MONOTONIC ns right after the programs were attached.
    pub attach_ns: u64,
    /// Threads seeded from /proc (their current state began before `attach_ns`).
    pub seeded: usize,
    /// Whether tracefs had to be mounted (it stays mounted).
    pub mounted_tracefs: bool,
}

/// Options for [`attach_sched_with`]; the default captures no kernel stacks and sends no spans.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedOptions {
    /// Capture the kernel stack when a thread goes to sleep (one `bpf_get_stackid` per sleep).
    /// Off by default: it costs the target about 1.5 µs at every sleep of one of its threads
    /// (measured with kernel.bpf_stats_enabled on the ping-pong bench: sched_switch 1.6 µs a
    /// run with it, about 0.1 µs without), and a thread's current sleep is read as well at
    /// report time by the `task_kstack` iterator ([`read_threads_with`]). The timeline's
    /// history of past sleeps needs it.
    pub kernel_stacks: bool,
    /// Send every finished off-CPU span at least this long into the spans ring
    /// ([`spans::SpanRing`] drains it); None sends none.
    pub spans_min_ns: Option<u64>,
}

/// Attaches the scheduler programs of `ebpf` (the object loaded by `probes::Attached`) for the
/// process `tgid`, with the default [`SchedOptions`]. See [`attach_sched_with`].
pub fn attach_sched(ebpf: &mut Ebpf, tgid: u32) -> Result<SchedAttached, ThreadsError> {
    attach_sched_with(ebpf, tgid, SchedOptions::default())
}

/// Mounts tracefs if needed, writes the tgid filter and the record offsets into the config map,
/// loads and attaches `sched/sched_switch` and `sched/sched_waking` (the wake-up in the waker's
/// context; `sched_wakeup` may run on the wakee's idle CPU instead), then seeds the thread map
/// from /proc/TGID/task/*/stat. The links live as long as `ebpf`.
pub fn attach_sched_with(
    ebpf: &mut Ebpf,
    tgid: u32,
    opts: SchedOptions,
) -> Result<SchedAttached, ThreadsError> {
    if tgid == 0 || !Path::new(&format!("/proc/{tgid}")).exists() {
        return Err(ThreadsError::NoSuchProcess { pid: tgid });
    }
    let (tracefs, mounted_tracefs) = ensure_tracefs()?;
    let mut cfg = read_offsets(&tracefs)?;
    cfg.tgid = tgid;
    cfg.flags = if opts.kernel_stacks {
        SCHED_F_KSTACKS
    } else {
        0
    };
    if let Some(min) = opts.spans_min_ns {
        cfg.flags |= SCHED_F_SPANS;
        cfg.min_span_ns = min;
    }
    write_config(ebpf, cfg)?;

    let mut tracepoints = Vec::new();
    for (program, name) in [
        (PROG_SCHED_SWITCH, "sched/sched_switch"),
        (PROG_SCHED_WAKING, "sched/sched_waking"),
    ] {
        let prog: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or(ThreadsError::Missing(program))?
            .try_into()
            .map_err(|source| ThreadsError::Program { program, source })?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|source| ThreadsError::Program { program, source })?;
        }
        let (category, event) = name.split_once('/').unwrap_or(("sched", program));
        prog.attach(category, event)
            .map_err(|source| ThreadsError::Program { program, source })?;
        tracepoints.push(name);
    }

    // Everything that happens from here on is seen by the programs; whatever state a thread is
    // in now without having switched began before this instant.
    cfg.attach_ns = monotonic_ns();
    write_config(ebpf, cfg)?;
    let seeded = seed(ebpf, tgid)?;
    tracing::debug!(tgid, seeded, "attached sched tracepoints");
    Ok(SchedAttached {
        tracepoints,
        attach_ns: cfg.attach_ns,
        seeded,
        mounted_tracefs,
    })
}

fn write_config(ebpf: &mut Ebpf, cfg: SchedConfig) -> Result<(), ThreadsError> {
    let map = ebpf
        .map_mut(MAP_SCHED_CONFIG)
        .ok_or(ThreadsError::Missing(MAP_SCHED_CONFIG))?;
    let mut arr: Array<_, SchedConfig> = Array::try_from(map).map_err(map_err(MAP_SCHED_CONFIG))?;
    arr.set(0, cfg, 0).map_err(map_err(MAP_SCHED_CONFIG))
}

/// The map entry for a thread found in `letter` state by /proc at attach.
pub fn seed_entry(letter: char) -> Option<ThreadSched> {
    Some(ThreadSched {
        prev_state: state_bits_from_letter(letter)?,
        kstack_id: -1,
        flags: THREAD_F_SEEDED,
        ..ThreadSched::default()
    })
}

/// Inserts a seeded entry for each thread of `tgid` that the programs have not already recorded
/// (BPF_NOEXIST: an event since the attach is exact and wins). A thread that switches in between
/// its stat read and the insert keeps a stale seeded state until its next switch-out.
fn seed(ebpf: &mut Ebpf, tgid: u32) -> Result<usize, ThreadsError> {
    let tasks = list_tasks(tgid)?;
    let map = ebpf
        .map_mut(MAP_THREADS)
        .ok_or(ThreadsError::Missing(MAP_THREADS))?;
    let mut threads: HashMap<_, u32, ThreadSched> =
        HashMap::try_from(map).map_err(map_err(MAP_THREADS))?;
    let mut n = 0;
    for t in tasks {
        let Some(entry) = seed_entry(t.state) else {
            continue;
        };
        if threads.insert(t.tid, entry, BPF_NOEXIST).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Reading the view

/// One thread of the target as the scheduler sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadState {
    pub tid: u32,
    /// The thread's name (/proc/PID/task/TID/comm), if it could be read.
    pub comm: Option<String>,
    /// On a CPU right now. None when unknown: a thread seen only by the seed, in state R
    /// (running or waiting for a CPU).
    pub on_cpu: Option<bool>,
    /// The state letter: R, S (interruptible sleep), D (uninterruptible), T, t, Z, P, I.
    pub state: char,
    /// What `state` means here: "running", "runnable (preempted)", "runnable (woken)",
    /// "runnable (yielded)", or the /proc name of the sleep ("sleeping", "disk sleep", ...).
    pub state_name: &'static str,
    /// CLOCK_MONOTONIC ns when the current state began; the attach time when it began before.
    pub since_ns: u64,
    /// The state began before the attach: `since_ns` and the durations are lower bounds.
    pub since_before_attach: bool,
    /// `now - since_ns`.
    pub in_state_for_ns: u64,
    /// When off CPU: how long since it went off (a lower bound if `since_before_attach`).
    pub off_cpu_for_ns: Option<u64>,
    /// Switch-outs and wake-ups seen since the attach.
    pub switches: u64,
    pub wakeups: u64,
    /// Total off-CPU and on-CPU time over periods seen whole since the attach.
    pub off_cpu_total_ns: u64,
    pub on_cpu_total_ns: u64,
    /// Who did the last wake-up: a tid of any process, or 0 for the idle task (an interrupt,
    /// e.g. a timer, on an idle CPU). None when no wake-up was seen.
    pub waker_tid: Option<u32>,
    pub cpu: Option<u32>,
    /// Kernel stack of the current sleep, innermost first, scheduler frames dropped.
    pub kernel_stack: Vec<KernelFrame>,
    /// Where `kernel_stack` comes from, all symbolized with /proc/kallsyms: "ebpf"
    /// (bpf_get_stackid at the switch-out, when [`SchedOptions::kernel_stacks`] is on),
    /// "task_iter" (bpf_get_task_stack by the `task_kstack` iterator, read now) or "procfs"
    /// (/proc/PID/task/TID/stack read now, when there is no iterator).
    pub kernel_stack_source: Option<&'static str>,
}

/// Derives the user-facing state of one map entry. Pure: no I/O.
pub fn describe(tid: u32, t: &ThreadSched, attach_ns: u64, now_ns: u64) -> ThreadState {
    let seeded = t.flags & THREAD_F_SEEDED != 0;
    let sleep_bits = t.prev_state & task_state::SLEEP_MASK;
    let (on_cpu, state, state_name, since) = if t.on_cpu != 0 {
        (Some(true), 'R', "running", t.on_since_ns)
    } else if t.woken_ns != 0 {
        (Some(false), 'R', "runnable (woken)", t.woken_ns)
    } else if seeded {
        let letter = state_letter(t.prev_state);
        if letter == 'R' {
            (None, letter, "running or runnable", 0)
        } else {
            (Some(false), letter, state_name(letter), 0)
        }
    } else if sleep_bits == 0 {
        let name = if t.prev_state & task_state::PREEMPTED != 0 {
            "runnable (preempted)"
        } else {
            "runnable (yielded)"
        };
        (Some(false), 'R', name, t.off_since_ns)
    } else {
        let letter = state_letter(t.prev_state);
        (Some(false), letter, state_name(letter), t.off_since_ns)
    };
    let before = since == 0;
    let since = if before { attach_ns } else { since };
    let off_cpu_for_ns = match on_cpu {
        Some(false) => Some(if t.off_since_ns != 0 {
            now_ns.saturating_sub(t.off_since_ns)
        } else {
            now_ns.saturating_sub(attach_ns)
        }),
        _ => None,
    };
    ThreadState {
        tid,
        comm: None,
        on_cpu,
        state,
        state_name,
        since_ns: since,
        since_before_attach: before,
        in_state_for_ns: now_ns.saturating_sub(since),
        off_cpu_for_ns,
        switches: t.switches,
        wakeups: t.wakeups,
        off_cpu_total_ns: t.off_cpu_ns,
        on_cpu_total_ns: t.on_cpu_ns,
        waker_tid: (t.wakeups != 0).then_some(t.waker_tid),
        cpu: (t.switches != 0).then_some(t.cpu),
        kernel_stack: Vec::new(),
        kernel_stack_source: None,
    }
}

/// /proc/kallsyms, parsed once per process (kernel text does not move; a module loaded later
/// symbolizes as the nearest earlier symbol).
fn kallsyms() -> Option<&'static Kallsyms> {
    static K: OnceLock<Option<Kallsyms>> = OnceLock::new();
    K.get_or_init(|| match Kallsyms::load() {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!("kernel stacks will not be symbolized: {e}");
            None
        }
    })
    .as_ref()
}

/// Reads the thread map: every thread of the target the programs or the seed know, sorted by
/// tid, with its kernel stack when it sleeps. `now_ns` is CLOCK_MONOTONIC (e.g.
/// `session::monotonic_ns()`). Threads that no longer exist in /proc are left out.
pub fn read_threads(ebpf: &Ebpf, now_ns: u64) -> Result<Vec<ThreadState>, ThreadsError> {
    read_threads_with(ebpf, now_ns, None)
}

/// [`read_threads`], with the kernel stacks of sleeping threads that have none from a
/// switch-out read by the `task_kstack` iterator of `regs` (the default: kernel stacks are not
/// captured at every sleep, see [`SchedOptions::kernel_stacks`]), before /proc.
pub fn read_threads_with(
    ebpf: &Ebpf,
    now_ns: u64,
    regs: Option<&crate::native::taskregs::TaskRegs>,
) -> Result<Vec<ThreadState>, ThreadsError> {
    let cfg_map = ebpf
        .map(MAP_SCHED_CONFIG)
        .ok_or(ThreadsError::Missing(MAP_SCHED_CONFIG))?;
    let cfg = Array::<_, SchedConfig>::try_from(cfg_map)
        .map_err(map_err(MAP_SCHED_CONFIG))?
        .get(&0, 0)
        .map_err(map_err(MAP_SCHED_CONFIG))?;
    if cfg.tgid == 0 {
        return Err(ThreadsError::NotAttached);
    }
    let map = ebpf
        .map(MAP_THREADS)
        .ok_or(ThreadsError::Missing(MAP_THREADS))?;
    let threads: HashMap<_, u32, ThreadSched> =
        HashMap::try_from(map).map_err(map_err(MAP_THREADS))?;
    let mut entries: Vec<(u32, ThreadSched)> = threads.iter().filter_map(Result::ok).collect();
    entries.sort_by_key(|(tid, _)| *tid);

    let stacks = ebpf
        .map(MAP_KSTACKS)
        .and_then(|m| StackTraceMap::try_from(m).ok());
    let mut stack_cache: StdHashMap<u32, Vec<KernelFrame>> = StdHashMap::new();
    let task_dir = format!("/proc/{}/task", cfg.tgid);
    let process_alive = Path::new(&task_dir).is_dir();

    let mut out = Vec::with_capacity(entries.len());
    for (tid, t) in entries {
        let dir = format!("{task_dir}/{tid}");
        if process_alive && !Path::new(&dir).is_dir() {
            continue;
        }
        let mut st = describe(tid, &t, cfg.attach_ns, now_ns);
        st.comm = std::fs::read_to_string(format!("{dir}/comm"))
            .ok()
            .map(|s| s.trim_end().to_string());
        if st.on_cpu != Some(false) || st.state == 'R' {
            out.push(st);
            continue;
        }
        if t.kstack_id >= 0 {
            let id = t.kstack_id as u32;
            if let Some(frames) = stack_cache.get(&id) {
                st.kernel_stack = frames.clone();
            } else if let Some(frames) = stacks.as_ref().and_then(|m| kernel_stack(m, id)) {
                stack_cache.insert(id, frames.clone());
                st.kernel_stack = frames;
            }
            if !st.kernel_stack.is_empty() {
                st.kernel_stack_source = Some("ebpf");
            }
        }
        if st.kernel_stack.is_empty()
            && let Some(Ok(ips)) = regs.and_then(|r| r.kernel_stack(tid))
            && let Some(k) = kallsyms()
        {
            // No stack from a switch-out (kernel stacks off, asleep since before the attach,
            // or a stack-map collision): where it sleeps now, read from its task_struct.
            st.kernel_stack = k.symbolize_stack(&ips);
            if !st.kernel_stack.is_empty() {
                st.kernel_stack_source = Some("task_iter");
            }
        }
        if st.kernel_stack.is_empty() {
            // Still none (no iterator on this kernel): the kernel shows where it sleeps now
            // (root only; the file is empty or unreadable otherwise).
            if let Ok(text) = std::fs::read_to_string(format!("{dir}/stack")) {
                st.kernel_stack = parse_proc_stack(&text);
                if !st.kernel_stack.is_empty() {
                    st.kernel_stack_source = Some("procfs");
                }
            }
        }
        out.push(st);
    }
    Ok(out)
}

/// The kernel stack `id` of the stack map, symbolized (innermost first, scheduler frames
/// dropped). None when the id is gone or /proc/kallsyms is unreadable.
pub(crate) fn kernel_stack(stacks: &StackTraceMap<&MapData>, id: u32) -> Option<Vec<KernelFrame>> {
    let k = kallsyms()?;
    let trace = stacks.get(&id, 0).ok()?;
    let ips: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
    Some(k.symbolize_stack(&ips))
}

// ---------------------------------------------------------------------------------------------
// Goroutine → OS thread

/// The OS thread (tid) a goroutine is running on or sits in a syscall/cgo call on: `g.m` →
/// `m.procid` (src/runtime/runtime2.go; `minit` sets `procid = gettid()`). None when the g has no
/// M (it is parked or runnable), when a read faults, when the M does not run this g
/// (`m.curg != g`: a torn read of a g that moved), or when the tid is out of range.
pub fn thread_of_g(mem: &ProcessMemory, layout: &GoLayout, g_addr: u64) -> Option<u32> {
    if g_addr == 0 || !g_addr.is_multiple_of(8) {
        return None;
    }
    let m = mem
        .read_u64(g_addr.checked_add(u64::from(layout.g.m))?)
        .ok()?;
    if m == 0 || !m.is_multiple_of(8) {
        return None;
    }
    let curg = mem
        .read_u64(m.checked_add(u64::from(layout.m.curg))?)
        .ok()?;
    if curg != g_addr {
        return None;
    }
    let procid = mem
        .read_u64(m.checked_add(u64::from(layout.m.procid))?)
        .ok()?;
    (procid != 0 && procid <= PID_MAX_LIMIT).then_some(procid as u32)
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    crate::procfs::clock_ns(libc::CLOCK_MONOTONIC)
}

pub mod spans;

#[cfg(test)]
mod tests;
