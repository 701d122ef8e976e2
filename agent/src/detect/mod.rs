//! From goroutine states to verdicts: each blocked goroutine is classified into a blocking
//! pattern ([`patterns`]), the goroutines are joined into a wait-for graph ([`graph`]) whose
//! cycles and chains become findings of their own, and the findings are grouped so that 100
//! goroutines stuck at one site make one finding with a count.
//!
//! Pure: everything comes in as [`Input`] (what the report knows, plus the channels' buffer
//! state and the parties observed on each object), so it is tested without a process.

pub mod allow;
pub mod busy;
pub mod gather;
pub mod graph;
pub mod growth;
pub mod live;
pub mod patterns;
pub mod reach;
pub mod sarif;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::report::{
    BlockedGoroutine, BlockingSite, CreationSite, Hex, RunningGoroutine, SyscallGoroutine, Text,
};
use patterns::{Pattern, Severity};

/// A channel's buffer as read at the report (`runtime.hchan`: dataqsiz, qcount, closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChanState {
    pub cap: u64,
    pub len: u64,
    pub closed: bool,
    /// A timer's channel (`time.Timer.C`, `time.Ticker.C`): the runtime sends on it, so a
    /// receiver on it is waiting for time, not for another goroutine. Go >= 1.23 marks them
    /// (`hchan.timer`); before, a buffered channel of one `time.Time` (24 bytes) is taken as one.
    pub timer: bool,
}

/// Everything the detector looks at.
pub struct Input<'a> {
    /// Goroutines blocked at least the threshold (runtime-internal ones left out).
    pub blocked: &'a [BlockedGoroutine],
    pub in_syscall: &'a [SyscallGoroutine],
    pub running: &'a [RunningGoroutine],
    /// Channels waited on, by address.
    pub chans: &'a FxHashMap<u64, ChanState>,
    /// Object address → goroutines observed operating on it (parked on it, or waking a goroutine
    /// parked on it), over the session.
    pub parties: &'a FxHashMap<u64, Vec<graph::Party>>,
    /// More parties, inferred on the live target (references to the object, see [`reach`]).
    pub inferred_parties: &'a FxHashMap<u64, Vec<graph::Party>>,
    /// Channels found referenced outside the goroutines waiting on them (see [`reach`]): their
    /// waiters may still be served, so they make no lone-wait finding.
    pub referenced: &'a rustc_hash::FxHashSet<u64>,
    /// Goroutines spinning through a select with default (sampled while running).
    pub spinning: &'a [busy::Spinner],
    /// Sites (a `go` statement and a wait reason) whose count of blocked goroutines kept rising.
    pub growth: &'a [growth::GrowthSite],
    /// Goroutines of the program (runtime-internal ones left out) in the last scan, whatever
    /// their state: a global deadlock needs every one of them blocked.
    pub user_goroutines: usize,
    pub threshold_ns: u64,
}

/// How sure a finding or a link is: "observed" (read from the target or seen by a probe) or
/// "inferred" (deduced, e.g. a channel's possible peers from the operations seen on it).
pub const OBSERVED: &str = "observed";
pub const INFERRED: &str = "inferred";

/// One link of a root-cause chain: a goroutine, what it waits on, and how the next link was
/// found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Link {
    pub goid: u64,
    /// "blocked", "running", "runnable", "syscall".
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_reason: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Hex>,
    /// Where `object`, a channel, was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub made_at: Option<std::sync::Arc<crate::chansites::MadeAt>>,
    /// How the edge to the next link is known: "observed" or "inferred"; None on the last link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_by: Option<&'static str>,
}

/// One finding: a pattern, the goroutines in it, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Pattern id (`BP01`), slug and name.
    pub pattern: &'static str,
    pub slug: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    /// "observed" or "inferred".
    pub confidence: &'static str,
    pub goroutines: Vec<u64>,
    pub count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Hex>,
    /// Every object the goroutines wait on, when more than one (e.g. a leak that makes a
    /// channel per goroutine; at most [`MAX_OBJECTS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_reason: Option<Text>,
    /// The longest wait among the goroutines, ns.
    pub blocked_ns: u64,
    /// The longest wait began before the attach: `blocked_ns` is a lower bound.
    pub blocked_before_attach: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_at: Option<std::sync::Arc<BlockingSite>>,
    /// Where `object`, a channel, was made (the first goroutine's `made_at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub made_at: Option<std::sync::Arc<crate::chansites::MadeAt>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<CreationSite>,
    /// Index into the report's `stacks` (the first goroutine's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<usize>,
    /// The root-cause chain, from the first goroutine to the root; empty for a lone wait.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<Link>,
    /// One line in plain words.
    pub explanation: String,
    /// Matched an allow rule (`--allow`, the allow file, the default allowlist): reported, but
    /// never fails a run.
    pub allowed: bool,
    /// The execution trace's view and the probes' view of the first goroutine, side by side
    /// (`attach --trace-from`, `fuse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused: Option<Box<crate::fuse::join::Fused>>,
    /// A leak's (BP16) heap over the window in which its goroutines piled up: what the leaked
    /// goroutines hold, read from the runtime's own statistics (`crate::health`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_growth: Option<crate::health::window::HeapGrowth>,
}

impl Finding {
    /// A finding of `pat` about `goroutines`, everything else empty.
    pub fn new(
        pat: Pattern,
        confidence: &'static str,
        goroutines: Vec<u64>,
        explanation: String,
    ) -> Self {
        Self {
            pattern: pat.id,
            slug: pat.slug,
            name: pat.name,
            severity: pat.severity,
            confidence,
            count: goroutines.len(),
            goroutines,
            object_kind: None,
            object: None,
            objects: Vec::new(),
            wait_reason: None,
            blocked_ns: 0,
            blocked_before_attach: false,
            blocked_at: None,
            made_at: None,
            created_by: None,
            stack: None,
            chain: Vec::new(),
            explanation,
            allowed: false,
            fused: None,
            heap_growth: None,
        }
    }

    /// A finding of `pat` about `goroutines`, described by the wait of `first` (its object,
    /// reason, sites and stack) and lasting `blocked_ns`.
    pub fn about(
        pat: Pattern,
        confidence: &'static str,
        goroutines: Vec<u64>,
        first: &BlockedGoroutine,
        blocked_ns: u64,
        explanation: String,
    ) -> Self {
        Self {
            object_kind: Some(first.object_kind).filter(|k| *k != "none"),
            object: Some(first.object).filter(|o| o.0 != 0),
            wait_reason: Some(first.wait_reason.clone()),
            blocked_ns,
            blocked_before_attach: first.blocked_before_attach,
            blocked_at: first.blocked_at.clone(),
            made_at: first.made_at.clone(),
            created_by: first.created_by.clone(),
            stack: first.stack,
            ..Self::new(pat, confidence, goroutines, explanation)
        }
    }
}

/// Most objects listed in one finding.
pub const MAX_OBJECTS: usize = 16;

/// Whether a channel wait may still be served: a timer's channel, or a channel referenced by
/// someone else.
fn may_be_served(g: &BlockedGoroutine, input: &Input<'_>) -> bool {
    g.waited_on()
        .any(|c| input.referenced.contains(&c) || input.chans.get(&c).is_some_and(|s| s.timer))
}

/// The pattern of one blocked goroutine on its own, and the confidence of that verdict.
pub fn classify(
    g: &BlockedGoroutine,
    chans: &FxHashMap<u64, ChanState>,
) -> Option<(Pattern, &'static str)> {
    use patterns::*;
    let reason = g.wait_reason.as_ref();
    Some(match (reason, g.object_kind) {
        ("chan send (nil chan)", _) => (NIL_CHAN_SEND, OBSERVED),
        ("chan receive (nil chan)", _) => (NIL_CHAN_RECV, OBSERVED),
        ("select (no cases)", _) => (SELECT_NO_CASES, OBSERVED),
        ("chan send", _) => match chans.get(&g.object.0) {
            Some(c) if c.cap > 0 && c.len >= c.cap => (CHAN_SEND_FULL, OBSERVED),
            Some(c) if c.cap == 0 => (CHAN_SEND_NO_RECEIVER, OBSERVED),
            // A buffered channel with room: a send parks only when full; it was read racing.
            Some(_) => (CHAN_SEND_FULL, INFERRED),
            None => (CHAN_SEND_NO_RECEIVER, INFERRED),
        },
        ("chan receive", _) => (CHAN_RECV_NO_SENDER, OBSERVED),
        ("select", _) => (SELECT_ALL_BLOCKED, OBSERVED),
        ("sync.Mutex.Lock", _) | (_, "mutex") => (MUTEX_DEADLOCK, INFERRED),
        ("sync.RWMutex.RLock" | "sync.RWMutex.Lock", _) | (_, "rwmutex") => {
            (RWMUTEX_DEADLOCK, INFERRED)
        }
        ("sync.WaitGroup.Wait", _) | (_, "waitgroup") => (WAITGROUP_NEVER_DONE, OBSERVED),
        ("sync.Cond.Wait", _) | (_, "cond") => (COND_NO_SIGNAL, OBSERVED),
        _ => return None,
    })
}

/// Plain words for a lone wait (`n` goroutines on `objects` distinct objects).
fn explain(
    pat: Pattern,
    g: &BlockedGoroutine,
    chan: Option<&ChanState>,
    n: usize,
    objects: usize,
) -> String {
    use patterns::*;
    let (who, s, is) = if n == 1 {
        (format!("goroutine {}", g.goid), "s", "is")
    } else {
        (format!("{n} goroutines (e.g. {})", g.goid), "", "are")
    };
    // "channel 0x…", or "7 different channels (e.g. 0x…)".
    let on = |what: &str| {
        if objects > 1 {
            format!("{objects} different {what}s (e.g. {})", g.object)
        } else if g.object.0 == 0 {
            // Unknown address (an execution trace records none).
            let article = if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {what}")
        } else if let Some(m) = &g.made_at {
            format!("{what} {} (made at {})", g.object, m.location)
        } else {
            format!("{what} {}", g.object)
        }
    };
    match pat.id {
        id if id == CHAN_SEND_FULL.id => match chan {
            Some(c) if objects <= 1 => format!(
                "{who} send{s} on {} whose buffer is full ({}/{}) and nobody receives",
                on("channel"),
                c.len,
                c.cap
            ),
            _ => format!(
                "{who} send{s} on {}, full, and nobody receives",
                on("buffered channel")
            ),
        },
        // No channel read (an execution trace alone): whether it is buffered is unknown.
        id if id == CHAN_SEND_NO_RECEIVER.id && g.object.0 == 0 && chan.is_none() => format!(
            "{who} send{s} on a channel and no goroutine receives (unbuffered, or buffered \
             and full: the trace does not say)"
        ),
        id if id == CHAN_SEND_NO_RECEIVER.id => format!(
            "{who} send{s} on {} and no goroutine receives",
            on("unbuffered channel")
        ),
        id if id == CHAN_RECV_NO_SENDER.id => format!(
            "{who} receive{s} on {} and no goroutine sends or closes",
            on("channel")
        ),
        id if id == NIL_CHAN_SEND.id => format!("{who} send{s} on a nil channel: it never returns"),
        id if id == NIL_CHAN_RECV.id => {
            format!("{who} receive{s} from a nil channel: it never returns")
        }
        id if id == SELECT_NO_CASES.id => format!("{who} {is} in select {{}}: it never returns"),
        id if id == SELECT_ALL_BLOCKED.id => format!(
            "{who} wait{s} in a select on {} channel(s), none of which becomes ready",
            g.wait_chans.len().max(1)
        ),
        id if id == MUTEX_DEADLOCK.id => format!(
            "{who} wait{s} for {}, never released (a double Lock, or a holder that is blocked \
             itself)",
            on("Mutex")
        ),
        id if id == RWMUTEX_DEADLOCK.id => format!(
            "{who} wait{s} on {} ({}), never released",
            on("RWMutex"),
            g.wait_reason
        ),
        id if id == WAITGROUP_NEVER_DONE.id => format!(
            "{who} wait{s} on {} whose counter never reaches zero (an Add without a Done)",
            on("WaitGroup")
        ),
        id if id == COND_NO_SIGNAL.id => {
            format!(
                "{who} wait{s} on {} and no Signal or Broadcast comes",
                on("Cond")
            )
        }
        _ => format!("{who} {is} blocked ({})", g.wait_reason),
    }
}

fn human(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.1}s", ns as f64 / 1e9)
    } else {
        format!("{}ms", ns / 1_000_000)
    }
}

/// Every finding, most severe first. Goroutines that are members of a cycle or stand behind a
/// cascade's root appear in that finding rather than in lone-wait findings of their own.
pub fn analyze(input: &Input<'_>) -> Vec<Finding> {
    let threshold = input.threshold_ns;
    let blocked: Vec<&BlockedGoroutine> = input
        .blocked
        .iter()
        .filter(|g| g.blocked_ns >= threshold)
        .collect();
    let mut findings = Vec::new();
    let graph = graph::WaitGraph::build(input, &blocked);
    let (structural, mut folded) = graph.findings(&blocked);
    findings.extend(structural);
    for site in input.growth {
        let gs: Vec<&BlockedGoroutine> = blocked
            .iter()
            .filter(|g| {
                !folded.contains(&g.goid)
                    && g.wait_reason == site.reason
                    && g.created_by.as_ref().and_then(|c| c.location.as_ref())
                        == site.location.as_ref()
            })
            .copied()
            .collect();
        let Some(first) = gs.first() else { continue };
        let gr = site.growth;
        let mut explanation = format!(
            "goroutines created at {} and blocked in {} ({}) keep piling up: {} then {} over {} \
             ({} rises, never a fall); {} are blocked now",
            site.location.as_deref().unwrap_or("?"),
            first.blocked_at.as_ref().map_or("?", |b| &*b.location),
            site.reason,
            gr.first,
            gr.last,
            human(gr.span_ns),
            gr.rises,
            gs.len()
        );
        // "The goroutines leaked and they hold N MB": the heap over the same window.
        if let Some(h) = &site.heap {
            explanation.push_str("; ");
            explanation.push_str(&h.describe(gr.last - gr.first));
        }
        let longest = gs.iter().map(|g| g.blocked_ns).max().unwrap_or(0);
        findings.push(Finding {
            blocked_before_attach: gs.iter().any(|g| g.blocked_before_attach),
            heap_growth: site.heap,
            ..Finding::about(
                patterns::LEAK_GROWTH,
                OBSERVED,
                gs.iter().map(|g| g.goid).collect(),
                first,
                longest,
                explanation,
            )
        });
        folded.extend(gs.iter().map(|g| g.goid));
    }

    // Lone waits, grouped by (pattern, blocking site, creation site): goroutines leaked by one
    // `go` statement make one finding however many channels they wait on.
    let mut groups: Vec<(Pattern, &'static str, Vec<&BlockedGoroutine>)> = Vec::new();
    let mut index: FxHashMap<(&'static str, Option<Text>, Option<Text>), usize> =
        FxHashMap::default();
    for g in &blocked {
        if folded.contains(&g.goid) {
            continue;
        }
        let Some((pat, confidence)) = classify(g, input.chans) else {
            continue;
        };
        let on_channels = [
            patterns::CHAN_SEND_FULL.id,
            patterns::CHAN_SEND_NO_RECEIVER.id,
            patterns::CHAN_RECV_NO_SENDER.id,
            patterns::SELECT_ALL_BLOCKED.id,
        ];
        if on_channels.contains(&pat.id) && may_be_served(g, input) {
            continue;
        }
        // Mutex waits all go in one group: several locks waited on at once is the mark of a
        // lock-order inversion.
        let key = if pat.id == patterns::MUTEX_DEADLOCK.id {
            (pat.id, None, None)
        } else {
            (
                pat.id,
                g.blocked_at.as_ref().map(|b| b.location.clone()),
                g.created_by.as_ref().and_then(|c| c.location.clone()),
            )
        };
        match index.get(&key) {
            Some(&i) => groups[i].2.push(g),
            None => {
                index.insert(key, groups.len());
                groups.push((pat, confidence, vec![g]));
            }
        }
    }
    for (pat, confidence, gs) in groups {
        let longest = gs
            .iter()
            .max_by_key(|g| g.blocked_ns)
            .copied()
            .unwrap_or(gs[0]);
        let first = gs[0];
        let chan = input.chans.get(&first.object.0);
        let mut objects: Vec<Hex> = Vec::new();
        for g in &gs {
            if g.object.0 != 0 && !objects.contains(&g.object) && objects.len() < MAX_OBJECTS {
                objects.push(g.object);
            }
        }
        let what = if pat.id == patterns::MUTEX_DEADLOCK.id && objects.len() >= 2 {
            format!(
                "{} goroutines each wait for a different Mutex ({}), none released: a lock-order \
                 inversion (each holds a lock another waits for)",
                gs.len(),
                objects
                    .iter()
                    .map(Hex::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            explain(pat, first, chan, gs.len(), objects.len())
        };
        let explanation = format!(
            "{what} for {}{}",
            if longest.blocked_before_attach {
                "more than "
            } else {
                ""
            },
            human(longest.blocked_ns)
        );
        findings.push(Finding {
            objects: if objects.len() > 1 {
                objects
            } else {
                Vec::new()
            },
            blocked_before_attach: longest.blocked_before_attach,
            ..Finding::about(
                pat,
                confidence,
                gs.iter().map(|g| g.goid).collect(),
                first,
                longest.blocked_ns,
                explanation,
            )
        });
    }

    findings.extend(long_syscalls(input));
    findings.extend(input.spinning.iter().map(busy_select));
    if let Some(f) = global_deadlock(input, &blocked) {
        findings.insert(0, f);
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.pattern.cmp(b.pattern)));
    findings
}

/// BP08: a goroutine found running scan after scan, its samples inside a non-blocking select.
fn busy_select(s: &busy::Spinner) -> Finding {
    let pat = patterns::BUSY_SELECT;
    let seen = &s.seen;
    let span = seen.last_ns.saturating_sub(seen.first_ns);
    let explanation = format!(
        "goroutine {} was running in {} of {} scans over {}, and {} of {} samples of its stack \
         were inside a select with default: it spins without blocking while its channels stay \
         empty",
        s.goid,
        seen.running,
        seen.scans,
        human(span),
        seen.in_select,
        seen.samples
    );
    Finding {
        blocked_ns: span,
        blocked_at: s.site.clone().map(std::sync::Arc::new),
        created_by: s.created_by.clone(),
        ..Finding::new(pat, INFERRED, vec![s.goid], explanation)
    }
}

/// BP17: goroutines whose thread has slept in the kernel (a cgo call or a system call) at least
/// the threshold.
fn long_syscalls(input: &Input<'_>) -> Vec<Finding> {
    let pat = patterns::LONG_SYSCALL;
    input
        .in_syscall
        .iter()
        .filter_map(|s| {
            let t = s.thread.as_ref()?;
            let asleep = matches!(t.state, 'S' | 'D') && t.on_cpu != Some(true);
            if !asleep || t.in_state_for_ns < input.threshold_ns {
                return None;
            }
            let frames = s.stack.as_ref().map(|st| &st.frames[..]).unwrap_or(&[]);
            let kernel = frames
                .iter()
                .find(|f| f.kind == "kernel")
                .map(|f| f.function.clone())
                .or_else(|| t.kernel_stack.first().map(|f| f.function.clone()));
            // The innermost C function of the program's own (not a shared library's), else the
            // innermost C frame; the Go code that made the call, past cgo's generated wrappers.
            let exe_module = frames
                .iter()
                .filter(|f| f.kind == "c")
                .filter_map(|f| f.module.as_deref())
                .find(|m| !m.contains(".so"));
            let c = frames
                .iter()
                .filter(|f| f.kind == "c")
                .find(|f| {
                    exe_module.is_some()
                        && f.module.as_deref() == exe_module
                        && !f.function.starts_with("_cgo_")
                })
                .or_else(|| frames.iter().find(|f| f.kind == "c"));
            let libc = frames
                .iter()
                .find(|f| f.kind == "c" && f.module.as_deref().is_some_and(|m| m.contains(".so")));
            let go = frames.iter().find(|f| {
                f.kind == "go"
                    && !f.cgo_boundary
                    && !f.function.starts_with("runtime.")
                    && !f.function.contains("._Cfunc_")
                    && !f.file.ends_with("_cgo_gotypes.go")
            });
            let place = match (c, go) {
                (Some(c), _) => format!(
                    "in C function {}{}",
                    c.function,
                    match libc {
                        Some(l) if l.function != c.function => format!(
                            " (in {} of {})",
                            l.function,
                            l.module.as_deref().unwrap_or("?")
                        ),
                        _ => String::new(),
                    }
                ),
                (None, Some(g)) => format!("in a system call from {}", g.function),
                _ => "in a system call or cgo call".to_string(),
            };
            let explanation = format!(
                "goroutine {} has been {place} for {}{}, its thread {} asleep in the kernel{}",
                s.goid,
                if t.since_before_attach {
                    "more than "
                } else {
                    ""
                },
                human(t.in_state_for_ns),
                t.tid,
                kernel.map(|k| format!(" at {k}")).unwrap_or_default()
            );
            Some(Finding {
                wait_reason: Some(Text::from("syscall")),
                blocked_ns: t.in_state_for_ns,
                blocked_before_attach: t.since_before_attach,
                blocked_at: go.map(|g| {
                    std::sync::Arc::new(BlockingSite {
                        function: Text::from(g.function.as_str()),
                        location: Text::from(format!("{}:{}", g.file, g.line)),
                    })
                }),
                created_by: s.created_by.clone(),
                ..Finding::new(pat, OBSERVED, vec![s.goid], explanation)
            })
        })
        .collect()
}

/// BP00: every goroutine of the program is blocked on a channel, a select or a sync primitive,
/// none runs, none is in a system call: nothing is left to unblock them.
fn global_deadlock(input: &Input<'_>, blocked: &[&BlockedGoroutine]) -> Option<Finding> {
    if input.user_goroutines == 0
        || blocked.len() < input.user_goroutines
        || !input.in_syscall.is_empty()
        || input.running.iter().any(|r| {
            !r.start_function
                .as_deref()
                .is_some_and(crate::summary::is_runtime_start_function)
        })
        || !blocked.iter().all(|g| classify(g, input.chans).is_some())
    {
        return None;
    }
    let pat = patterns::GLOBAL_DEADLOCK;
    let shortest = blocked.iter().map(|g| g.blocked_ns).min().unwrap_or(0);
    let main = blocked
        .iter()
        .find(|g| g.created_by.is_none())
        .copied()
        .unwrap_or(blocked[0]);
    let explanation = format!(
        "all {} goroutines of the program have been blocked for at least {} on channels, \
         selects or locks, with none running and none in a system call: the whole process is \
         stuck (the Go runtime reports this only once no timer is left either)",
        blocked.len(),
        human(shortest)
    );
    Some(Finding {
        blocked_ns: shortest,
        blocked_at: main.blocked_at.clone(),
        stack: main.stack,
        ..Finding::new(
            pat,
            OBSERVED,
            blocked.iter().map(|g| g.goid).collect(),
            explanation,
        )
    })
}

#[cfg(test)]
mod tests;
