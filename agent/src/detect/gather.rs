//! What a session hands the detector: the report's goroutines, plus what only the live target
//! and the session's own trackers know (channel buffers, references, parties, growth, spinners).

use crate::scanmode::ScanLoop;
use crate::summary::Context;

/// The verdicts on what the session found (see `detect`), each marked allowed or not. With a
/// final scan of the live target (`last`), the channels waited on are read (buffers, timers)
/// and searched for references elsewhere (`detect::reach`); a target that has exited has
/// nothing left to read, and what was still blocked at its exit stands as found.
#[allow(clippy::too_many_arguments)]
pub fn findings(
    ctx: &Context<'_>,
    pid: u32,
    last: Option<&[crate::scan::GRoot]>,
    blocked: &[crate::report::BlockedGoroutine],
    (in_syscall, running): (
        &[crate::report::SyscallGoroutine],
        &[crate::report::RunningGoroutine],
    ),
    observed_parties: &rustc_hash::FxHashMap<u64, Vec<crate::detect::graph::Party>>,
    scans: &mut ScanLoop,
    threshold_ns: u64,
    policy: &crate::detect::allow::Policy,
) -> Vec<crate::detect::Finding> {
    let mut referenced = rustc_hash::FxHashSet::default();
    let mut parties: rustc_hash::FxHashMap<u64, Vec<crate::detect::graph::Party>> =
        Default::default();
    if let Some(last) = last {
        let mem = crate::memory::ProcessMemory::new(pid);
        // The objects waited on, and who waits on each: channels (is anyone else holding the
        // channel?) and locks (who else holds a reference to the lock: its possible holders).
        let mut waiters: rustc_hash::FxHashMap<u64, Vec<u64>> = Default::default();
        let mut locks = Vec::new();
        for g in blocked.iter().filter(|g| g.blocked_ns >= threshold_ns) {
            let objects: Vec<u64> = match (g.wait_chans.is_empty(), g.object_kind) {
                (false, _) => g.wait_chans.iter().map(|c| c.0).collect(),
                (true, "chan") => vec![g.object.0],
                (true, "mutex" | "rwmutex") => {
                    locks.push(g.object.0);
                    vec![g.object.0]
                }
                _ => continue,
            };
            for o in objects {
                if waiters.len() < crate::detect::reach::MAX_CANDIDATES || waiters.contains_key(&o)
                {
                    waiters.entry(o).or_default().push(g.goid);
                }
            }
        }
        locks.sort_unstable();
        locks.dedup();
        let chans: Vec<u64> = waiters
            .keys()
            .filter(|o| locks.binary_search(o).is_err())
            .copied()
            .collect();
        scans.chans.note_many(&mem, &ctx.bin.layout.hchan, &chans);
        let reach = crate::detect::reach::search(&mem, ctx.bin, ctx.bias, last, &waiters, &locks);
        tracing::debug!(
            refs = reach.refs.len(),
            partial = reach.partial,
            "references to waited-on objects"
        );
        // Inferred parties: a goroutine that references a lock and does not wait on it may be
        // holding it; one that references a channel may send or receive on it.
        for (&obj, owners) in &reach.refs {
            let op = if locks.binary_search(&obj).is_ok() {
                crate::detect::graph::Op::Release
            } else {
                crate::detect::graph::Op::Any
            };
            for &goid in owners.iter().filter(|&&o| o != 0) {
                // Within the model's bounds, which reach's own (MAX_OWNERS owners of at most
                // MAX_CANDIDATES objects) keep below.
                crate::model::note_party(&mut parties, obj, goid, op);
            }
        }
        referenced = reach.referenced();
    }
    // Growing sites, named as the report names them.
    let growth: Vec<crate::detect::growth::GrowthSite> = scans
        .growth
        .growing()
        .into_iter()
        .map(|g| crate::detect::growth::GrowthSite {
            location: crate::summary::go_statement(ctx, g.gopc).and_then(|(_, loc)| loc),
            reason: crate::report::Text::from(&*ctx.bin.wait_reason(g.reason)),
            heap: scans
                .heap
                .series
                .over(g.start_ns, g.start_ns.saturating_add(g.span_ns)),
            growth: g,
        })
        .collect();
    let spinning: Vec<crate::detect::busy::Spinner> = scans
        .busy
        .spinning()
        .into_iter()
        .map(|(goid, seen)| crate::detect::busy::Spinner {
            goid,
            site: seen
                .site
                .as_ref()
                .map(|(f, l)| crate::report::BlockingSite {
                    function: crate::report::Text::from(f.as_str()),
                    location: crate::report::Text::from(l.as_str()),
                }),
            created_by: crate::summary::creation_site(ctx, seen.gopc, seen.parent_goid),
            seen: seen.clone(),
        })
        .collect();
    let input = crate::detect::Input {
        spinning: &spinning,
        growth: &growth,
        blocked,
        in_syscall,
        running,
        chans: &scans.chans.chans,
        parties: observed_parties,
        inferred_parties: &parties,
        referenced: &referenced,
        user_goroutines: scans.watch.last.user,
        threshold_ns,
    };
    let mut findings = crate::detect::analyze(&input);
    for f in &mut findings {
        f.allowed = policy.allows(f);
    }
    findings
}
