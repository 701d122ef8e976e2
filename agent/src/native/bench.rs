//! `blockprobe bench-stacks` (hidden; run by `cargo xtask bench --only stacks`): what stacks of
//! goroutines inside cgo calls cost, on a live target whose threads sleep in C.
//! - capture: one sleeping thread's registers (the eBPF task iterator) and its 16 KiB stack
//!   window (process_vm_readv), with the /proc checks that make them one consistent snapshot;
//! - cold: the first stitched stacks after attach: the target's ELF files read and parsed (a
//!   fresh module cache), the unwinder built, each stack unwound and symbolized once;
//! - warm: the same stacks again with every cache filled (framehop's rule cache, the symbolized
//!   addresses), as later reports of a long session pay;
//! - Go: goroutine stacks walked and symbolized from the pclntab, for comparison.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::modules::ModuleCache;
use super::stitch::{CgoUnwinder, SavedSyscall};
use crate::memory::ProcessMemory;
use crate::scan::status;
use crate::unwind::{self, Innermost};

#[derive(Debug, Serialize)]
pub struct StackBench {
    /// Threads asleep in C or a system call (one stack each).
    pub threads: usize,
    /// Frames per stitched stack (mean), so that the rates can be compared.
    pub frames_per_stack: f64,
    pub captures: usize,
    /// Mean cost of one capture (registers + window), µs.
    pub capture_us: f64,
    /// Bytes per window.
    pub window_bytes: usize,
    /// Cold: the first stacks with an empty module cache, ms in all, and stacks/s.
    pub cold_ms: f64,
    pub cold_stacks_per_s: f64,
    /// Warm: stitched stacks per second with every cache filled.
    pub warm_stacks_per_s: f64,
    /// Goroutine stacks (Go frames only, from the goroutine table) symbolized per second.
    pub go_stacks: usize,
    pub go_stacks_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    #[error(transparent)]
    Stitch(#[from] super::stitch::StitchError),
    #[error("loading the eBPF object: {0}")]
    Load(String),
    #[error("no thread of pid {0} sleeps in C or a system call for a goroutine")]
    NoThreads(u32),
}

/// Measures for about `secs` seconds per phase.
pub fn run(pid: u32, secs: f64) -> Result<StackBench, BenchError> {
    let (bin, exe) = crate::session::open_target(pid)?;
    let bias = crate::session::load_bias(pid, &exe, &bin);
    let scan = crate::scan::Scanner::new(&bin, pid, bias)?.scan()?;
    let mem = ProcessMemory::new(pid);
    let mut ebpf = aya::Ebpf::load(crate::probes::PROBES_OBJ)
        .map_err(|e| BenchError::Load(format!("{e:#}")))?;
    let budget = Duration::from_secs_f64(secs);

    let in_syscall: Vec<(u32, SavedSyscall)> = scan
        .goroutines
        .iter()
        .filter(|g| g.status == status::SYSCALL)
        .filter_map(|g| {
            let tid = crate::threads::thread_of_g(&mem, &bin.layout, g.addr)?;
            Some((tid, SavedSyscall::read(&mem, &bin.layout.g, g.addr)))
        })
        .collect();

    // Cold: a cache of its own, so that nothing is parsed before the clock starts.
    let cache = ModuleCache::default();
    let t = Instant::now();
    let mut cgo = CgoUnwinder::with_cache(&mut ebpf, pid, &cache)?;
    let mut snaps = Vec::new();
    for &(tid, saved) in &in_syscall {
        if let Ok(s) = cgo.capture(tid) {
            snaps.push((s, saved));
        }
    }
    if snaps.is_empty() {
        return Err(BenchError::NoThreads(pid));
    }
    let mut frames = 0;
    for (snap, saved) in &snaps {
        frames += cgo.stitch(&bin, bias, snap, *saved, &[]).frames.len();
    }
    let cold = t.elapsed();

    let t = Instant::now();
    let mut captures = 0;
    while t.elapsed() < budget {
        for &(tid, _) in &in_syscall {
            if cgo.capture(tid).is_ok() {
                captures += 1;
            }
        }
    }
    let capture_us = t.elapsed().as_secs_f64() * 1e6 / captures.max(1) as f64;

    let t = Instant::now();
    let mut warm = 0;
    while t.elapsed() < budget {
        for (snap, saved) in &snaps {
            std::hint::black_box(cgo.stitch(&bin, bias, snap, *saved, &[]));
            warm += 1;
        }
    }
    let warm_stacks_per_s = warm as f64 / t.elapsed().as_secs_f64();

    // Go frames only: every goroutine's stack, walked once, symbolized again and again.
    let l = &bin.layout.g;
    let walks: Vec<(u64, u64, [u32; 2])> = scan
        .goroutines
        .iter()
        .filter(|g| g.status == status::WAITING)
        .map(|g| (g.goid, g.addr, [l.sched_pc, l.sched_bp]))
        .collect();
    let go: Vec<Vec<u64>> = unwind::walk_from_gs(&mem, &walks).into_values().collect();
    let t = Instant::now();
    let mut go_done = 0;
    while !go.is_empty() && t.elapsed() < budget {
        for pcs in &go {
            std::hint::black_box(unwind::symbolize_stack(
                &bin,
                bias,
                pcs,
                Innermost::ReturnAddress,
            ));
            go_done += 1;
        }
    }
    Ok(StackBench {
        threads: snaps.len(),
        frames_per_stack: frames as f64 / snaps.len() as f64,
        captures,
        capture_us,
        window_bytes: super::stitch::STACK_WINDOW,
        cold_ms: cold.as_secs_f64() * 1e3,
        cold_stacks_per_s: snaps.len() as f64 / cold.as_secs_f64(),
        warm_stacks_per_s,
        go_stacks: go.len(),
        go_stacks_per_s: go_done as f64 / t.elapsed().as_secs_f64(),
    })
}
