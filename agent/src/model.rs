//! The live goroutine model: one record per goroutine, updated from probe events.
//!
//! A goroutine is *blocked* from its `gopark` until a `ready` names it. What it waits on is
//! gopark's `lock` argument, whose meaning depends on the wait reason (for channel operations it
//! is `&hchan.lock`, src/runtime/chan.go chansend/chanrecv; for select it is the select's lock
//! set, src/runtime/select.go selectgo; for sync primitives it is the semaphore root's lock,
//! src/runtime/sema.go semacquire1).

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use probes_ebpf::{EventKind, GoEvent};
use serde::Serialize;

use crate::detect::graph::{Op, Party};

/// One goroutine as currently known.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Goroutine {
    pub goid: u64,
    /// Blocked since (CLOCK_MONOTONIC ns), or None when runnable/running as far as we know.
    pub parked_at_ns: Option<u64>,
    /// Raw wait-reason number of the current park.
    pub reason: u32,
    /// gopark's lock argument of the current park.
    pub wait_obj: u64,
    /// The runtime function that parked it (return address of the gopark call).
    pub park_pc: u64,
    /// OS thread it parked on.
    pub tid: u32,
    /// Number of parks seen.
    pub parks: u64,
    /// The goroutine that last made it runnable (0 = the runtime on a system stack).
    pub last_waker: Option<u64>,
    /// True when the park was found by the attach-time scan rather than seen by a probe, so
    /// `parked_at_ns` is only a lower bound of the real wait.
    pub parked_before_attach: bool,
    /// PC of the `go` statement that created it (from the scan), 0 if unknown.
    pub gopc: u64,
    /// Entry PC of its start function (from the scan), 0 if unknown.
    pub startpc: u64,
    /// The goroutine that created it (from the scan), 0 if unknown.
    pub parent_goid: u64,
    /// Channels it waits on, from its sudogs (`g.waiting`; a select waits on several).
    pub wait_chans: crate::scan::Chans,
    /// How many sudogs `g.waiting` had at the park (a big select may have more than we copy).
    pub n_wait_chans: u32,
    /// For a wait on a sync primitive: its semaphore (address, `SemaKind` number; 0 = a
    /// semaphore found in the runtime's table whose primitive is not known yet).
    pub sema: Option<(u64, u32)>,
    /// The park's stack as the probes sent it (an id in [`Model::park_stack`]).
    pub stack_id: Option<u32>,
    /// Address of its `runtime.g` (from the scan), 0 if unknown.
    pub g_addr: u64,
    /// The current wait was found by the goroutine-table scanner, not seen by a probe: the
    /// block time is then the first scan that saw it (or `g.waitsince`, if earlier).
    pub observed_by_scan: bool,
    /// Scan mode: what the latest scans saw, for the consecutive-scan rule.
    #[serde(skip)]
    pub scan_obs: Option<ScanObservation>,
}

/// What consecutive scans saw of one waiting goroutine. Packed (32 bytes): the model holds one
/// per waiting goroutine, 100k of them in the agent's worst case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanObservation {
    pub key: WaitKey,
    /// Scans in a row that saw this same key.
    pub seen: u32,
    /// The scan generation that saw it last (its low 32 bits: only equality with the next
    /// generation is asked).
    pub generation: u32,
    /// CLOCK_MONOTONIC ns of the first of them.
    pub first_ns: u64,
}

/// A wait's identity: (wait object, wait reason, status, `g.trackingSeq`). The last tells a
/// goroutine that woke and parked again the same way (a sleep loop) from one that never ran in
/// between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitKey {
    pub obj: u64,
    pub reason: u32,
    pub status: u16,
    pub tracking_seq: u8,
}
const _: () = assert!(size_of::<ScanObservation>() == 32);

/// A wait is trusted once this many scans in a row saw it unchanged: one read of a g that the
/// runtime is rewriting (a torn record, or a g being reused) cannot make a report.
pub const STABLE_SCANS: u32 = 2;

/// What one scan changed, in scan mode.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanChanges {
    /// Goroutines now known blocked (seen [`STABLE_SCANS`] times in a row).
    pub blocked: Vec<u64>,
    /// Goroutines that were blocked and no longer wait the same way (or are gone).
    pub unblocked: Vec<u64>,
}

impl Goroutine {
    /// Takes what a goroutine-table scan found a waiting goroutine blocked on: its reason,
    /// its channels (`g.waiting`), and the semaphore it queues on, whose primitive the wait
    /// reason names (`wait_reason` is the reason's name in this binary).
    pub fn set_scanned_wait(&mut self, sg: &crate::scan::ScannedG, wait_reason: &str) {
        self.observed_by_scan = true;
        self.reason = sg.wait_reason;
        self.wait_obj = sg.wait_chans.first().copied().unwrap_or(0);
        self.wait_chans = sg.wait_chans.clone();
        self.n_wait_chans = sg.wait_chans.len() as u32;
        self.sema = scanned_sema(sg, wait_reason);
    }
}

/// The semaphore a scan found a goroutine queued on (from the runtime's semaphore table), with
/// the primitive its wait reason implies, 0 when the reason does not say (see
/// `syncwait::refine`, which settles that from the stack).
pub fn scanned_sema(sg: &crate::scan::ScannedG, wait_reason: &str) -> Option<(u64, u32)> {
    sg.sema_addr.map(|addr| {
        let kind = crate::goruntime::syncobj::kind_for_reason(wait_reason);
        (addr, kind.map_or(0, |k| k as u32))
    })
}

/// When a wait the scans found began: `g.waitsince` when the runtime set it before `seen_ns`
/// (the GC records it, src/runtime/mgcmark.go markroot), else `seen_ns`.
fn wait_start(sg: &crate::scan::ScannedG, seen_ns: u64) -> u64 {
    match u64::try_from(sg.waitsince) {
        Ok(w) if w > 0 && w < seen_ns => w,
        _ => seen_ns,
    }
}

/// All goroutines seen by the probes.
#[derive(Debug, Default)]
pub struct Model {
    /// By goid. Fx hashing: a scan of 100k goroutines looks every one of them up, and goids
    /// are not attacker-chosen keys.
    goroutines: FxHashMap<u64, Goroutine>,
    pub events: u64,
    /// Goroutines seen exiting.
    pub exits: u64,
    /// `go` statements run since attach, by the PC of the statement (gopc).
    pub creations: HashMap<u64, u64>,
    /// Scans taken in scan mode.
    pub scan_generation: u64,
    /// Object → goroutines observed operating on it (parked on it, or waking a goroutine parked
    /// on it): the parties of the wait-for graph (`detect::graph`). Bounded: at most
    /// [`MAX_PARTY_OBJECTS`] objects and [`MAX_PARTIES`] parties each.
    pub parties: FxHashMap<u64, Vec<Party>>,
    /// The operation each wait reason number stands for (set by the session from the binary's
    /// wait-reason names, see [`op_of_reason`]).
    pub reason_ops: Vec<Option<Op>>,
    /// The binary's wait-reason names, by number: a semaphore the probes attach to a park counts
    /// only when the park's reason is that primitive's (a goroutine may take a semaphore without
    /// parking, and park later on something else).
    reason_names: Vec<String>,
    /// The park stacks the probes sent, each once (100k goroutines blocked at one site share
    /// one), and their ids.
    park_stacks: Vec<Box<[u64]>>,
    park_stack_ids: FxHashMap<Box<[u64]>, u32>,
    /// Scan mode: the waits the scans saw end, by wait reason (for the metrics; precise mode
    /// counts every wait in the kernel instead).
    pub finished_waits: crate::metrics::waits::WaitTally,
}

/// Bounds of [`Model::parties`].
pub const MAX_PARTY_OBJECTS: usize = 16_384;
pub const MAX_PARTIES: usize = 16;

/// The operation a park with this wait reason performs on its object.
pub fn op_of_reason(reason: &str) -> Option<Op> {
    Some(match reason {
        "chan send" => Op::Send,
        "chan receive" => Op::Recv,
        "select" => Op::Any,
        r if r.starts_with("sync.") || r == "semacquire" => Op::Acquire,
        _ => return None,
    })
}

/// The operation of the goroutine that ends a wait doing `op`.
fn complement(op: Op) -> Op {
    match op {
        Op::Send => Op::Recv,
        Op::Recv => Op::Send,
        Op::Any => Op::Any,
        Op::Acquire | Op::Release => Op::Release,
    }
}

/// The objects a goroutine's current wait is on: its channels, or its sync primitive (the
/// primitive's address, as reports name it: see goruntime::syncobj).
fn wait_objects(g: &Goroutine) -> crate::scan::Chans {
    if !g.wait_chans.is_empty() {
        return g.wait_chans.clone();
    }
    match g.sema {
        Some((addr, kind)) if kind != 0 => probes_ebpf::SemaKind::try_from(kind)
            .map(|k| {
                smallvec::smallvec![addr.wrapping_sub(crate::goruntime::syncobj::field_offset(k))]
            })
            .unwrap_or_default(),
        _ => crate::scan::Chans::new(),
    }
}

/// Records that `goid` did `op` on `obj`, within the bounds.
pub fn note_party(parties: &mut FxHashMap<u64, Vec<Party>>, obj: u64, goid: u64, op: Op) {
    if obj == 0 || (parties.len() >= MAX_PARTY_OBJECTS && !parties.contains_key(&obj)) {
        return;
    }
    let list = parties.entry(obj).or_default();
    let p = Party { goid, op };
    if list.len() < MAX_PARTIES && !list.contains(&p) {
        list.push(p);
    }
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets which operation each wait reason number stands for, from the binary's names.
    pub fn set_reason_ops<S: AsRef<str>>(&mut self, names: &[S]) {
        self.reason_ops = names.iter().map(|n| op_of_reason(n.as_ref())).collect();
        self.reason_names = names.iter().map(|n| n.as_ref().to_string()).collect();
    }

    /// Applies one probe event with the park stack the probes sent along (empty if none).
    pub fn apply_with_stack(&mut self, ev: &GoEvent, pcs: &[u64]) {
        if pcs.is_empty() {
            return self.apply(ev);
        }
        let id = match self.park_stack_ids.get(pcs) {
            Some(&id) => id,
            None => {
                let id = self.park_stacks.len() as u32;
                self.park_stacks.push(pcs.into());
                self.park_stack_ids.insert(pcs.into(), id);
                id
            }
        };
        self.apply(&GoEvent {
            stack_id: id,
            ..*ev
        });
    }

    /// A park stack by its id (innermost first, from inside runtime.gopark).
    pub fn park_stack(&self, id: u32) -> Option<&[u64]> {
        self.park_stacks.get(id as usize).map(|s| &s[..])
    }

    /// Applies one probe event. Unknown kinds are counted and ignored.
    pub fn apply(&mut self, ev: &GoEvent) {
        self.events += 1;
        let Ok(kind) = EventKind::try_from(ev.kind) else {
            return;
        };
        match kind {
            EventKind::Create => {
                *self.creations.entry(ev.gopc).or_default() += 1;
                return;
            }
            EventKind::Exit => {
                self.exits += 1;
                self.goroutines.remove(&ev.goid);
                return;
            }
            EventKind::Park | EventKind::Ready => {}
        }
        let g = self.goroutines.entry(ev.goid).or_insert_with(|| Goroutine {
            goid: ev.goid,
            ..Goroutine::default()
        });
        match kind {
            EventKind::Park => {
                g.parked_before_attach = false;
                g.observed_by_scan = false;
                let n = (ev.n_chans as usize).min(ev.chans.len());
                g.wait_chans = ev.chans[..n].iter().copied().filter(|&c| c != 0).collect();
                g.n_wait_chans = ev.n_chans;
                g.sema = self
                    .reason_names
                    .get(ev.reason as usize)
                    .and_then(|n| {
                        crate::goruntime::syncobj::object_of(ev.sema_kind, ev.sema_addr, n)
                    })
                    .map(|_| (ev.sema_addr, ev.sema_kind));
                g.stack_id = (ev.stack_id != probes_ebpf::NO_STACK).then_some(ev.stack_id);
                g.gopc = ev.gopc;
                g.startpc = ev.startpc;
                g.parent_goid = ev.parent_goid;
                g.parked_at_ns = Some(ev.ts_ns);
                g.reason = ev.reason;
                g.wait_obj = ev.obj;
                g.park_pc = ev.caller_pc;
                g.tid = ev.tid;
                g.parks += 1;
                if let Some(op) = self.reason_ops.get(g.reason as usize).copied().flatten() {
                    for o in wait_objects(g) {
                        note_party(&mut self.parties, o, ev.goid, op);
                    }
                }
            }
            EventKind::Ready => {
                // The waker did the complementary operation on the objects of this wait.
                if ev.peer_goid != 0
                    && g.parked_at_ns.is_some()
                    && let Some(op) = self.reason_ops.get(g.reason as usize).copied().flatten()
                {
                    let objects = wait_objects(g);
                    for o in objects {
                        note_party(&mut self.parties, o, ev.peer_goid, complement(op));
                    }
                }
                g.parked_at_ns = None;
                g.parked_before_attach = false;
                g.observed_by_scan = false;
                g.wait_chans.clear();
                g.sema = None;
                g.stack_id = None;
                g.last_waker = Some(ev.peer_goid);
            }
            EventKind::Create | EventKind::Exit => {}
        }
    }

    /// Seeds the model from the attach-time scan: goroutines already blocked before the probes
    /// were attached. Their wait started at `waitsince` when the runtime set it, else no later
    /// than `scan_ns`.
    pub fn seed<'r>(
        &mut self,
        scan: &crate::scan::Scan,
        scan_ns: u64,
        reason_name: impl Fn(u32) -> std::borrow::Cow<'r, str>,
    ) {
        for sg in &scan.goroutines {
            let g = self.scanned(sg);
            if sg.status == crate::scan::status::WAITING && g.parks == 0 {
                g.parked_at_ns = Some(wait_start(sg, scan_ns));
                g.parked_before_attach = true;
                g.set_scanned_wait(sg, &reason_name(sg.wait_reason));
            }
        }
    }

    /// Takes one waiting goroutine from a scan (precise mode's catch-up, for a wait no probe
    /// saw): blocked since `since_ns` (or `g.waitsince`, if earlier), unless the model already
    /// has this wait from an earlier scan, whose time stands. True when the wait is new to it.
    pub fn seed_one(
        &mut self,
        sg: &crate::scan::ScannedG,
        since_ns: u64,
        wait_reason: &str,
    ) -> bool {
        let g = self.scanned(sg);
        let new = !(g.parked_at_ns.is_some() && g.observed_by_scan && g.reason == sg.wait_reason);
        if new {
            g.parked_at_ns = Some(wait_start(sg, since_ns));
        }
        g.set_scanned_wait(sg, wait_reason);
        new
    }

    /// The record of a goroutine a scan found, created if new, with what the scan says of its
    /// g record and its creation.
    fn scanned(&mut self, sg: &crate::scan::ScannedG) -> &mut Goroutine {
        let g = self.goroutines.entry(sg.goid).or_insert_with(|| Goroutine {
            goid: sg.goid,
            ..Goroutine::default()
        });
        g.g_addr = sg.addr;
        g.gopc = sg.gopc;
        g.startpc = sg.startpc;
        g.parent_goid = sg.parent_goid;
        g
    }

    /// Scan mode: takes one scan of the goroutine table at `now_ns`. A goroutine counts as
    /// blocked once [`STABLE_SCANS`] scans in a row saw the same (goid, status, wait reason,
    /// wait object, trackingSeq); its wait began at the first of them, or at `g.waitsince` when the runtime
    /// set that earlier (src/runtime/mgcmark.go, markroot sets it to the GC cycle's start for a
    /// g found waiting; proc.go, execute and exitsyscall clear it, so it always belongs to the
    /// current wait). Only waiting goroutines are kept. `first` marks the scan at attach.
    pub fn observe_scan<'r>(
        &mut self,
        scan: &crate::scan::Scan,
        now_ns: u64,
        first: bool,
        reason_name: impl Fn(u32) -> std::borrow::Cow<'r, str>,
    ) -> ScanChanges {
        use crate::scan::status;
        self.scan_generation += 1;
        let generation = self.scan_generation;
        let mut changes = ScanChanges::default();
        // Waits that ended: (reason, duration), tallied once the goroutines are let go.
        let mut ended: Vec<(u32, u64)> = Vec::new();
        // Grown once to what this scan needs at most: rehashing step by step would hold the old
        // and the new table at once, the agent's peak RSS with 100k goroutines.
        let waiting = scan
            .goroutines
            .iter()
            .filter(|g| g.status == status::WAITING)
            .count();
        self.goroutines
            .reserve(waiting.saturating_sub(self.goroutines.len()));
        for sg in scan
            .goroutines
            .iter()
            .filter(|g| g.status == status::WAITING)
        {
            let obj = sg.wait_chans.first().copied().or(sg.sema_addr).unwrap_or(0);
            let key = WaitKey {
                obj,
                reason: sg.wait_reason,
                // Statuses are the runtime's _G* constants, all below 0x1000 (runtime2.go).
                status: sg.status as u16,
                tracking_seq: sg.tracking_seq,
            };
            let generation = generation as u32;
            let g = self.scanned(sg);
            match &mut g.scan_obs {
                Some(o) if o.key == key && o.generation.wrapping_add(1) == generation => {
                    o.seen += 1;
                    o.generation = generation;
                }
                o => {
                    if let Some(since) = g.parked_at_ns.take() {
                        changes.unblocked.push(sg.goid);
                        ended.push((g.reason, now_ns.saturating_sub(since)));
                    }
                    *o = Some(ScanObservation {
                        key,
                        seen: 1,
                        first_ns: now_ns,
                        generation,
                    });
                    g.parked_before_attach = first;
                }
            }
            let o = g.scan_obs.unwrap_or_else(|| unreachable!());
            if o.seen >= STABLE_SCANS && g.parked_at_ns.is_none() {
                g.parked_at_ns = Some(wait_start(sg, o.first_ns));
                let reason = reason_name(sg.wait_reason);
                g.set_scanned_wait(sg, &reason);
                changes.blocked.push(sg.goid);
                if let Some(op) = op_of_reason(&reason) {
                    for obj in wait_objects(g) {
                        note_party(&mut self.parties, obj, sg.goid, op);
                    }
                }
            }
        }
        // Whatever this scan did not see waiting has run, exited, or was a torn read.
        self.goroutines.retain(|&goid, g| {
            let keep = g
                .scan_obs
                .is_some_and(|o| o.generation == generation as u32);
            if !keep && let Some(since) = g.parked_at_ns {
                changes.unblocked.push(goid);
                ended.push((g.reason, now_ns.saturating_sub(since)));
            }
            keep
        });
        for (reason, ns) in ended {
            self.finished_waits.record(reason, ns);
        }
        changes.unblocked.sort_unstable();
        changes
    }

    /// Keeps only the blocked goroutines a later scan still finds waiting with the same reason:
    /// a lost `ready` event must not leave a ghost. Goroutines the scan does not list are gone.
    pub fn reconcile(&mut self, scan: &crate::scan::Scan) {
        let waiting: std::collections::HashMap<u64, u32> = scan
            .goroutines
            .iter()
            .filter(|g| g.status == crate::scan::status::WAITING)
            .map(|g| (g.goid, g.wait_reason))
            .collect();
        for g in self.goroutines.values_mut() {
            if g.parked_at_ns.is_some() && waiting.get(&g.goid) != Some(&g.reason) {
                g.parked_at_ns = None;
            }
        }
        for sg in &scan.goroutines {
            if let Some(g) = self.goroutines.get_mut(&sg.goid) {
                g.g_addr = sg.addr;
                if g.gopc == 0 {
                    g.gopc = sg.gopc;
                    g.startpc = sg.startpc;
                    g.parent_goid = sg.parent_goid;
                }
                if g.wait_chans.is_empty() && g.parked_at_ns.is_some() {
                    g.wait_chans = sg.wait_chans.clone();
                }
            }
        }
    }

    /// Every goroutine parked now, in no order (cheap: no sort, no allocation).
    pub fn blocked_unsorted(&self) -> impl Iterator<Item = &Goroutine> {
        self.goroutines
            .values()
            .filter(|g| g.parked_at_ns.is_some())
    }

    /// Goroutines parked for at least `min_ns` at time `now_ns`, longest first.
    pub fn blocked(&self, now_ns: u64, min_ns: u64) -> Vec<&Goroutine> {
        let mut v: Vec<_> = self
            .goroutines
            .values()
            .filter(|g| {
                g.parked_at_ns
                    .is_some_and(|t| now_ns.saturating_sub(t) >= min_ns)
            })
            .collect();
        v.sort_by_key(|g| (g.parked_at_ns, g.goid));
        v
    }

    pub fn get(&self, goid: u64) -> Option<&Goroutine> {
        self.goroutines.get(&goid)
    }

    /// Whether a probe event (not a scan) says this goroutine is parked now.
    pub fn parked_by_probe(&self, goid: u64) -> bool {
        self.get(goid)
            .is_some_and(|g| g.parked_at_ns.is_some() && !g.observed_by_scan)
    }

    pub fn get_mut(&mut self, goid: u64) -> Option<&mut Goroutine> {
        self.goroutines.get_mut(&goid)
    }

    pub fn len(&self) -> usize {
        self.goroutines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.goroutines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, goid: u64, ts: u64) -> GoEvent {
        GoEvent {
            ts_ns: ts,
            goid,
            kind: kind as u32,
            reason: 7,
            obj: 0xc000010000,
            ..GoEvent::default()
        }
    }

    #[test]
    fn park_then_ready_unblocks() {
        let mut m = Model::new();
        m.apply(&ev(EventKind::Park, 5, 100));
        m.apply(&ev(EventKind::Park, 6, 200));
        assert_eq!(m.blocked(1_000, 0).len(), 2);
        let mut ready = ev(EventKind::Ready, 5, 300);
        ready.peer_goid = 1;
        m.apply(&ready);
        let blocked = m.blocked(1_000, 0);
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0].goid, 6);
        assert_eq!(m.get(5).unwrap().last_waker, Some(1));
        // Threshold: 6 parked at 200 has waited 800 ns by t=1000.
        assert!(m.blocked(1_000, 801).is_empty());
        assert_eq!(m.blocked(1_000, 800).len(), 1);
    }

    #[test]
    fn park_carries_select_channels_and_sema_and_exit_forgets() {
        let mut m = Model::new();
        let mut p = ev(EventKind::Park, 9, 10);
        p.n_chans = 3;
        p.chans[..3].copy_from_slice(&[0xa0, 0xb0, 0xc0]);
        p.gopc = 0x401000;
        m.apply(&p);
        let g = m.get(9).unwrap();
        assert_eq!(&g.wait_chans[..], [0xa0, 0xb0, 0xc0]);
        assert_eq!(g.gopc, 0x401000);
        assert_eq!(g.sema, None);

        // A semaphore counts only when the park's reason is its primitive's: a goroutine that
        // took a Mutex's semaphore without parking, then parked on a channel, is not waiting
        // on the Mutex.
        m.set_reason_ops(&["", "chan receive", "sync.Mutex.Lock"]);
        let mut s = ev(EventKind::Park, 10, 20);
        s.sema_kind = 1;
        s.sema_addr = 0xc000010004;
        s.reason = 2;
        m.apply(&s);
        assert_eq!(m.get(10).unwrap().sema, Some((0xc000010004, 1)));
        s.reason = 1;
        m.apply(&s);
        assert_eq!(m.get(10).unwrap().sema, None);

        let mut c = ev(EventKind::Create, 0, 30);
        c.gopc = 0x402000;
        m.apply(&c);
        m.apply(&c);
        assert_eq!(m.creations.get(&0x402000), Some(&2));

        m.apply(&ev(EventKind::Exit, 9, 40));
        assert!(m.get(9).is_none());
        assert_eq!(m.exits, 1);
    }

    #[test]
    fn unknown_kind_is_counted_not_applied() {
        let mut m = Model::new();
        let mut e = ev(EventKind::Park, 1, 1);
        e.kind = 99;
        m.apply(&e);
        assert_eq!(m.events, 1);
        assert!(m.is_empty());
    }

    fn waiting(goid: u64, reason: u32, chan: u64, seq: u8) -> crate::scan::ScannedG {
        crate::scan::ScannedG {
            addr: 0xc000001000 + goid * 0x100,
            goid,
            status: crate::scan::status::WAITING,
            wait_reason: reason,
            waitsince: 0,
            tracking_seq: seq,
            waiting: 0xc000200000 + goid * 0x60,
            parent_goid: 1,
            gopc: 0x401000,
            startpc: 0x402000,
            wait_chans: smallvec::smallvec![chan],
            sema_addr: None,
        }
    }

    fn scan_of(gs: Vec<crate::scan::ScannedG>) -> crate::scan::Scan {
        crate::scan::Scan {
            goroutines: gs,
            skipped: 0,
        }
    }

    fn name(_: u32) -> std::borrow::Cow<'static, str> {
        "chan receive".into()
    }

    #[test]
    fn a_wait_counts_once_two_scans_in_a_row_agree() {
        let mut m = Model::new();
        let s = scan_of(vec![waiting(7, 14, 0xa0, 3)]);
        let c = m.observe_scan(&s, 1_000, true, name);
        assert!(c.blocked.is_empty(), "one scan is not enough");
        assert!(m.blocked(1_000, 0).is_empty());
        let c = m.observe_scan(&s, 2_000, false, name);
        assert_eq!(c.blocked, vec![7]);
        let g = m.get(7).unwrap();
        // Blocked since the first scan that saw it, before the attach, found by a scan.
        assert_eq!(g.parked_at_ns, Some(1_000));
        assert!(g.parked_before_attach && g.observed_by_scan);
        assert_eq!(&g.wait_chans[..], [0xa0]);
        // A third identical scan changes nothing.
        let c = m.observe_scan(&s, 3_000, false, name);
        assert_eq!(c, ScanChanges::default());
    }

    #[test]
    fn a_changed_read_restarts_the_count_and_ends_the_wait() {
        let mut m = Model::new();
        m.observe_scan(&scan_of(vec![waiting(7, 14, 0xa0, 3)]), 1_000, false, name);
        m.observe_scan(&scan_of(vec![waiting(7, 14, 0xa0, 3)]), 2_000, false, name);
        // Same reason and channel, but it ran in between (trackingSeq moved): a new wait.
        let c = m.observe_scan(&scan_of(vec![waiting(7, 14, 0xa0, 4)]), 3_000, false, name);
        assert_eq!(c.unblocked, vec![7]);
        assert!(c.blocked.is_empty());
        let c = m.observe_scan(&scan_of(vec![waiting(7, 14, 0xa0, 4)]), 4_000, false, name);
        assert_eq!(c.blocked, vec![7]);
        assert_eq!(m.get(7).unwrap().parked_at_ns, Some(3_000));
        // A torn read (another channel) for one scan, then the old value again: never blocked
        // on the torn value, and the wait restarts.
        let c = m.observe_scan(
            &scan_of(vec![waiting(7, 14, 0xdead, 4)]),
            5_000,
            false,
            name,
        );
        assert_eq!(c.unblocked, vec![7]);
        let c = m.observe_scan(&scan_of(vec![waiting(7, 14, 0xa0, 4)]), 6_000, false, name);
        assert!(c.blocked.is_empty());
    }

    #[test]
    fn a_skipped_scan_breaks_the_run_and_gone_goroutines_are_forgotten() {
        let mut m = Model::new();
        let s = scan_of(vec![waiting(7, 14, 0xa0, 3)]);
        m.observe_scan(&s, 1_000, false, name);
        // Not in the next scan (it ran, or its record did not read back): not "in a row".
        m.observe_scan(&scan_of(vec![]), 2_000, false, name);
        assert!(m.get(7).is_none());
        m.observe_scan(&s, 3_000, false, name);
        let c = m.observe_scan(&s, 4_000, false, name);
        assert_eq!(c.blocked, vec![7]);
        let c = m.observe_scan(&scan_of(vec![]), 5_000, false, name);
        assert_eq!(c.unblocked, vec![7]);
        assert!(m.is_empty());
    }

    #[test]
    fn waitsince_tightens_the_start_when_earlier() {
        let mut m = Model::new();
        let mut g = waiting(7, 14, 0xa0, 3);
        g.waitsince = 400;
        let s = scan_of(vec![g]);
        m.observe_scan(&s, 1_000, true, name);
        m.observe_scan(&s, 2_000, false, name);
        assert_eq!(m.get(7).unwrap().parked_at_ns, Some(400));
    }
}
