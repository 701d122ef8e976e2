//! Scan mode's loop: the goroutine table read at a fixed interval, each scan folded into the
//! model under the consecutive-scan rule ([`crate::model::Model::observe_scan`]), with the
//! stacks of newly blocked goroutines walked once, when they become blocked.

use rustc_hash::FxHashMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Interval, MissedTickBehavior};

use crate::detect::live::{Census, ChanCache, GlobalWatch};
use crate::events::{write_scan_park, write_scan_ready};
use crate::memory::ProcessMemory;
use crate::model::Model;
use crate::scan::{Scan, Scanner};
use crate::session::{Mode, monotonic_ns};
use crate::summary::Context;
use crate::unwind;

/// Most goroutines whose stacks one scan walks.
const MAX_WALKS: usize = 256;

/// What the scans cost and saw, for the report (and `cargo xtask bench`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanStats {
    pub interval_ns: u64,
    /// Scans taken after the one at attach (which is part of attaching), so that
    /// `cpu_ns_total / scans` is the mean cost of the scans it counts.
    pub scans: u64,
    /// Scans that failed (the target exiting, or allgs unreadable for a moment).
    pub failed: u64,
    /// Goroutines (not dead) in the latest scan.
    pub goroutines: usize,
    /// g records skipped as unreadable or invalid, over all scans.
    pub skipped: u64,
    /// The agent's CPU time per scan (read, fold into the model, walk new stacks, write
    /// events): total, and the most expensive scan.
    pub cpu_ns_total: u64,
    pub cpu_ns_max: u64,
}

/// `g.sched`'s (pc, bp) of each goroutine, None where unreadable.
fn read_sched(mem: &ProcessMemory, gs: &[(u64, u64, [u32; 2])]) -> Vec<Option<[u64; 2]>> {
    let at: Vec<(u64, [u32; 2])> = gs.iter().map(|&(_, g, offs)| (g, offs)).collect();
    unwind::read_pairs(mem, &at)
}

/// CPU time of the calling thread (the session runs on one thread).
fn thread_cpu_ns() -> u64 {
    crate::procfs::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Running goroutines sampled at most per scan (each sample reads a thread's registers).
pub const MAX_SAMPLES_PER_SCAN: usize = 16;

pub struct ScanLoop {
    mode: Mode,
    interval: Interval,
    stats: ScanStats,
    /// Stacks of the goroutines blocked now, by goid (walked from `g.sched` when they became
    /// blocked; a parked goroutine's stack does not change until it runs again).
    pub stacks: FxHashMap<u64, unwind::Stack>,
    /// The distinct stacks among them.
    pub stack_set: unwind::StackSet,
    /// Blocked goroutines whose stack walk must be retried.
    pending: rustc_hash::FxHashSet<u64>,
    /// Buffers of the channels goroutines were seen sending on.
    pub chans: ChanCache,
    /// Whether the whole program is stuck, scan after scan.
    pub watch: GlobalWatch,
    /// Blocked goroutines per site over time (leak growth).
    pub growth: crate::detect::growth::GrowthTracker,
    /// The heap at the growth samples, for the leak findings' heap growth.
    pub heap: crate::health::window::HeapSampler,
    /// Running goroutines sampled scan after scan (busy selects).
    pub busy: crate::detect::busy::BusyTracker,
    /// Reads a thread's user registers, for the samples; None when it could not be loaded.
    pub task_regs: Option<crate::native::taskregs::TaskRegs>,
    /// Findings are made about waits of at least this long.
    threshold_ns: u64,
    /// By wait-reason code: a wait only another goroutine can end (filled on first use).
    stuck_reason: Vec<bool>,
    /// Start PC → the goroutine is the runtime's own.
    runtime_start: FxHashMap<u64, bool>,
}

impl ScanLoop {
    pub fn new(mode: Mode, every: Duration, threshold: Duration) -> Self {
        let every = every.max(Duration::from_millis(1));
        // The scan at attach was just taken: the next one is a full interval later, so that
        // two scans in a row are never a few microseconds apart.
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            mode,
            interval,
            stats: ScanStats {
                interval_ns: every.as_nanos() as u64,
                scans: 0,
                ..ScanStats::default()
            },
            stacks: FxHashMap::default(),
            stack_set: Default::default(),
            pending: Default::default(),
            chans: ChanCache::default(),
            watch: GlobalWatch::default(),
            growth: Default::default(),
            heap: Default::default(),
            busy: Default::default(),
            task_regs: None,
            threshold_ns: threshold.as_nanos() as u64,
            stuck_reason: Vec::new(),
            runtime_start: FxHashMap::default(),
        }
    }

    /// Everything a scan tells the detector beyond the model, in one pass over the goroutines:
    /// the census of the global-deadlock watch, the growth sample, and the samples of the
    /// running goroutines for the busy-select tracker.
    pub fn observe_program(
        &mut self,
        scan: &Scan,
        model: &Model,
        ctx: &Context<'_>,
        pid: u32,
        events: &mut Option<Box<dyn Write + Send>>,
    ) -> std::io::Result<()> {
        if self.stuck_reason.is_empty() {
            self.stuck_reason = ctx
                .bin
                .wait_reasons
                .iter()
                .map(|r| crate::detect::live::is_stuck_reason(r))
                .collect();
        }
        let now = monotonic_ns();
        let mut census = Census::default();
        // (goid, gopc, parent, running, g address): running goroutines of the program, and the
        // tracked ones still there.
        let mut listed: Vec<(u64, u64, u64, bool, u64)> = Vec::new();
        let tracking = !self.busy.seen.is_empty();
        for g in &scan.goroutines {
            let runtime = *self.runtime_start.entry(g.startpc).or_insert_with(|| {
                ctx.bin
                    .func_name(g.startpc.wrapping_sub(ctx.bias))
                    .is_some_and(crate::summary::is_runtime_start_function)
            });
            if runtime || g.status == crate::scan::status::DEAD {
                continue;
            }
            census.user += 1;
            let running = g.status == crate::scan::status::RUNNING;
            if g.status == crate::scan::status::WAITING
                && self
                    .stuck_reason
                    .get(g.wait_reason as usize)
                    .copied()
                    .unwrap_or(false)
            {
                census.stuck += 1;
            }
            if running || (tracking && self.busy.seen.contains_key(&g.goid)) {
                listed.push((g.goid, g.gopc, g.parent_goid, running, g.addr));
            }
        }
        self.watch(census, now, events)?;
        self.sample_growth(model, ctx, pid, now);
        self.sample_running(&listed, ctx, pid, now);
        Ok(())
    }

    /// A leak-growth sample, if one is due, and the heap with it.
    pub fn sample_growth(&mut self, model: &Model, ctx: &Context<'_>, pid: u32, now: u64) {
        if self.growth.sample(model, now) {
            self.heap.sample(ctx.bin, pid, ctx.bias, now);
        }
    }

    /// Samples the stacks of the program's running goroutines, for the busy-select tracker: the
    /// thread's registers of its last interrupt (a timer tick at most ago), then its frame
    /// pointers. At most [`MAX_SAMPLES_PER_SCAN`] goroutines a scan.
    fn sample_running(
        &mut self,
        listed: &[(u64, u64, u64, bool, u64)],
        ctx: &Context<'_>,
        pid: u32,
        now: u64,
    ) {
        let Some(regs) = self.task_regs.as_ref() else {
            return;
        };
        let mem = ProcessMemory::new(pid);
        let mut samples: FxHashMap<u64, crate::detect::busy::Sample> = FxHashMap::default();
        for &(goid, _, _, running, addr) in listed {
            if !running || samples.len() >= MAX_SAMPLES_PER_SCAN {
                continue;
            }
            let Some(tid) = crate::threads::thread_of_g(&mem, &ctx.bin.layout, addr) else {
                continue;
            };
            let Ok(r) = regs.read(tid) else { continue };
            // Go code at the PC: the goroutine's own (not a signal handler, not C).
            if ctx.bin.func_at(r.ip.wrapping_sub(ctx.bias)).is_none() {
                continue;
            }
            let pcs = unwind::fp_walk(&mem, r.ip, r.bp);
            let frames = unwind::symbolize_stack(ctx.bin, ctx.bias, &pcs, unwind::Innermost::Exact);
            samples.insert(
                goid,
                frames
                    .into_iter()
                    .map(|f| (f.function, format!("{}:{}", f.file, f.line)))
                    .collect(),
            );
        }
        let listed = listed.iter().map(|&(g, pc, p, r, _)| (g, pc, p, r));
        self.busy.observe(now, listed, &samples);
    }

    /// Folds a census into the global-deadlock watch; reports a program that has been stuck
    /// for the threshold at once (stderr, and the event stream), since the runtime may kill it
    /// as soon as its last timer is gone.
    fn watch(
        &mut self,
        census: Census,
        now: u64,
        events: &mut Option<Box<dyn Write + Send>>,
    ) -> std::io::Result<()> {
        if self.watch.observe(census, now, self.threshold_ns) {
            let p = crate::detect::patterns::GLOBAL_DEADLOCK;
            let since = self.watch.stuck_since_ns.unwrap_or(now);
            eprintln!(
                "blockprobe: {} {}: all {} goroutines of the program have been blocked on \
                 channels, selects or locks for {} ms, and none runs",
                p.id,
                p.slug,
                census.user,
                now.saturating_sub(since) / 1_000_000
            );
            if let Some(out) = events.as_mut() {
                let ev = serde_json::json!({
                    "event": "finding", "ts_ns": now, "pattern": p.id, "slug": p.slug,
                    "severity": p.severity, "goroutines": census.user,
                    "stuck_since_ns": since,
                });
                writeln!(out, "{ev}")?;
                out.flush()?;
            }
        }
        Ok(())
    }

    pub async fn tick(&mut self) {
        self.interval.tick().await;
    }

    /// Takes one scan. A scan of a target that no longer runs the same program is dropped.
    pub fn scan(
        &mut self,
        scanner: &Scanner<'_>,
        model: &mut Model,
        ctx: &Context<'_>,
        pid: u32,
        events: &mut Option<Box<dyn Write + Send>>,
        same_program: &dyn Fn() -> bool,
    ) -> std::io::Result<()> {
        let cpu0 = thread_cpu_ns();
        self.stats.scans += 1;
        match scanner.scan() {
            Ok(s) if same_program() => self.take(&s, model, ctx, pid, events)?,
            Ok(_) => {}
            Err(e) => {
                self.stats.failed += 1;
                tracing::debug!("scan: {e}");
            }
        }
        let cpu = thread_cpu_ns().saturating_sub(cpu0);
        tracing::debug!(cpu_us = cpu / 1000, scan = self.stats.scans, "scan");
        self.stats.cpu_ns_total += cpu;
        self.stats.cpu_ns_max = self.stats.cpu_ns_max.max(cpu);
        Ok(())
    }

    /// Folds a scan into the model; streams what changed; walks the newly blocked stacks.
    pub fn take(
        &mut self,
        scan: &Scan,
        model: &mut Model,
        ctx: &Context<'_>,
        pid: u32,
        events: &mut Option<Box<dyn Write + Send>>,
    ) -> std::io::Result<()> {
        let now = monotonic_ns();
        let changes = model.observe_scan(scan, now, false, |r| ctx.bin.wait_reason(r));
        self.observe_program(scan, model, ctx, pid, events)?;
        self.stats.goroutines = scan.goroutines.len();
        self.stats.skipped += scan.skipped as u64;
        for goid in &changes.unblocked {
            self.stacks.remove(goid);
            self.pending.remove(goid);
            if let Some(out) = events.as_mut() {
                write_scan_ready(out, *goid, now)?;
            }
        }
        let mem = ProcessMemory::new(pid);
        // The channels of the new sends, read in one batch.
        let mut sends: Vec<u64> = changes
            .blocked
            .iter()
            .filter_map(|goid| model.get(*goid))
            .filter(|g| ctx.bin.wait_reason(g.reason) == "chan send")
            .filter_map(|g| g.wait_chans.first().copied())
            .collect();
        if !sends.is_empty() {
            sends.sort_unstable();
            sends.dedup();
            self.chans.note_many(&mem, &ctx.bin.layout.hchan, &sends);
        }
        self.walk_blocked(&changes.blocked, model, ctx, &mem);
        if let Some(out) = events.as_mut() {
            for goid in &changes.blocked {
                if let Some(g) = model.get(*goid) {
                    write_scan_park(out, ctx, g)?;
                }
            }
        }
        Ok(())
    }

    /// Precise mode: the stacks of the waits a catch-up scan took (see `precise::OpenParks`),
    /// replacing any walked for an earlier wait of the same goroutine.
    pub fn walk_taken(&mut self, taken: &[u64], model: &mut Model, ctx: &Context<'_>, pid: u32) {
        for goid in taken {
            self.stacks.remove(goid);
        }
        self.walk_blocked(taken, model, ctx, &ProcessMemory::new(pid));
    }

    /// Walks the stacks of goroutines that just became blocked (and of those left pending by
    /// earlier calls), at most [`MAX_WALKS`] a call; scan mode's scans and precise mode's
    /// catch-up scans both call it, while the target still runs.
    pub fn walk_blocked(
        &mut self,
        blocked: &[u64],
        model: &mut Model,
        ctx: &Context<'_>,
        mem: &ProcessMemory,
    ) {
        let sched = [ctx.bin.layout.g.sched_pc, ctx.bin.layout.g.sched_bp];
        // At most MAX_WALKS per scan, so that 100k goroutines blocking at once spread their
        // walks over several scans instead of making one scan slow; the rest wait in `pending`.
        self.pending.extend(blocked.iter().copied());
        let mut want: Vec<u64> = Vec::new();
        self.pending.retain(|&goid| {
            let blocked = model.get(goid).is_some_and(|g| g.parked_at_ns.is_some());
            if blocked && want.len() < MAX_WALKS {
                want.push(goid);
                return false;
            }
            blocked
        });
        let to_walk: Vec<(u64, u64, [u32; 2])> = want
            .iter()
            .filter_map(|&goid| model.get(goid).map(|g| (goid, g.g_addr, sched)))
            .collect();
        // The GC may shrink (move) a parked goroutine's stack under the walk (src/runtime/
        // stack.go, shrinkstack, which also rewrites g.sched), so a walk counts only if g.sched
        // read the same before and after it; the others are retried at the next scan.
        let before = read_sched(mem, &to_walk);
        let walked = unwind::walk_from_gs(mem, &to_walk);
        let after = read_sched(mem, &to_walk);
        for ((&(goid, _, _), b), a) in to_walk.iter().zip(before).zip(after) {
            match walked.get(&goid) {
                Some(pcs)
                    if b.is_some() && b == a && pcs.first() == b.map(|[pc, _]| pc).as_ref() =>
                {
                    self.stacks.insert(goid, self.stack_set.intern(pcs));
                }
                _ => {
                    self.pending.insert(goid);
                }
            }
        }
        // What the reason and the semaphore table leave open (pre-1.24 WaitGroups, Conds).
        for goid in &want {
            if let (Some(g), Some(stack)) = (model.get_mut(*goid), self.stacks.get(goid)) {
                crate::syncwait::refine(ctx.bin, ctx.bias, mem, g, stack);
            }
        }
    }

    /// The report's scan figures: scan mode only.
    pub fn stats(&self) -> Option<ScanStats> {
        (self.mode == Mode::Scan).then(|| self.stats.clone())
    }
}
