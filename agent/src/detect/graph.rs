//! The wait-for graph. Nodes are goroutines and the objects they wait on (channels, Mutexes,
//! RWMutexes, WaitGroups, Conds). A blocked goroutine has an edge to each object it waits on
//! (observed: from its sudogs or the semaphore table); an object has an edge to each goroutine
//! that could end the wait, inferred from the operations observed on that object during the
//! session: for a send, the goroutines seen receiving from the channel; for a Lock, those seen
//! releasing the lock; and so on ([`Party`]). A goroutine whose only possible parties are
//! themselves blocked waits on them: cycles among blocked goroutines are deadlocks
//! ([`patterns::CHAN_CYCLE`], [`patterns::MUTEX_DEADLOCK`], [`patterns::MIXED_DEADLOCK`]), and
//! chains ending at one root are cascades ([`patterns::CASCADE`]).

use rustc_hash::{FxHashMap, FxHashSet};

use super::{Finding, INFERRED, Input, Link, human, patterns};
use crate::report::{BlockedGoroutine, Hex};

/// What a goroutine was seen doing on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Parked sending on the channel, or woke a goroutine parked receiving on it.
    Send,
    /// Parked receiving from the channel, or woke a goroutine parked sending on it.
    Recv,
    /// Parked in a select over it (either direction).
    Any,
    /// Parked acquiring the sync primitive (Lock, RLock, Wait).
    Acquire,
    /// Woke a goroutine parked acquiring it (Unlock, Done, Signal, Broadcast).
    Release,
}

/// A goroutine observed operating on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Party {
    pub goid: u64,
    pub op: Op,
}

/// The ops that can end a wait of `reason`.
fn serving_ops(reason: &str, kind: &str) -> &'static [Op] {
    match (reason, kind) {
        ("chan send", _) => &[Op::Recv, Op::Any],
        ("chan receive", _) => &[Op::Send, Op::Any],
        ("select", _) => &[Op::Send, Op::Recv, Op::Any],
        (_, "mutex" | "rwmutex" | "waitgroup" | "cond") => &[Op::Release],
        _ => &[],
    }
}

/// A node's state, for chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Blocked on a channel, select or lock: a wait only another goroutine can end.
    Blocked,
    /// Waiting for something that ends by itself or from outside: a timer, I/O.
    Idle,
    Running,
    Runnable,
    Syscall,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Blocked => "blocked",
            State::Idle => "waiting",
            State::Running => "running",
            State::Runnable => "runnable",
            State::Syscall => "syscall",
        }
    }
}

/// An edge goroutine → goroutine through an object.
#[derive(Debug, Clone, Copy)]
struct Edge {
    to: u64,
    object: u64,
}

pub struct WaitGraph {
    states: FxHashMap<u64, State>,
    edges: FxHashMap<u64, Vec<Edge>>,
}

impl WaitGraph {
    pub fn build(input: &Input<'_>, blocked: &[&BlockedGoroutine]) -> Self {
        let mut states = FxHashMap::default();
        for r in input.running {
            let s = if r.status == "running" {
                State::Running
            } else {
                State::Runnable
            };
            states.insert(r.goid, s);
        }
        for s in input.in_syscall {
            states.insert(s.goid, State::Syscall);
        }
        // Only goroutines that were seen as a party of some object can be an edge's target;
        // the rest need no state (100k lone waiters make no graph).
        let parties: FxHashSet<u64> = input
            .parties
            .values()
            .chain(input.inferred_parties.values())
            .flatten()
            .map(|p| p.goid)
            .collect();
        let stuck = |g: &BlockedGoroutine| super::classify(g, input.chans).is_some();
        for g in blocked.iter().filter(|g| parties.contains(&g.goid)) {
            states.insert(
                g.goid,
                if stuck(g) {
                    State::Blocked
                } else {
                    State::Idle
                },
            );
        }
        let mut edges: FxHashMap<u64, Vec<Edge>> = FxHashMap::default();
        for g in blocked.iter().filter(|g| stuck(g)) {
            let ops = serving_ops(&g.wait_reason, g.object_kind);
            let mut out: Vec<Edge> = Vec::new();
            for o in g.waited_on().filter(|&o| o != 0) {
                let observed = input.parties.get(&o).into_iter().flatten();
                let inferred = input.inferred_parties.get(&o).into_iter().flatten();
                for p in observed.chain(inferred) {
                    if p.goid != g.goid
                        && ops.contains(&p.op)
                        && states.contains_key(&p.goid)
                        && !out.iter().any(|e| e.to == p.goid)
                    {
                        out.push(Edge {
                            to: p.goid,
                            object: o,
                        });
                    }
                }
            }
            if !out.is_empty() {
                states.insert(g.goid, State::Blocked);
                edges.insert(g.goid, out);
            }
        }
        Self { states, edges }
    }

    fn out(&self, g: u64) -> &[Edge] {
        self.edges.get(&g).map_or(&[], |v| v)
    }

    /// Cycles and cascades as findings, and the goroutines they fold in (which then get no
    /// lone-wait finding of their own).
    pub fn findings(&self, blocked: &[&BlockedGoroutine]) -> (Vec<Finding>, FxHashSet<u64>) {
        // Only goroutines on an edge can be in a cycle or a chain: with 100k lone waiters the
        // graph stays as small as its edges.
        let on_edges: FxHashSet<u64> = self
            .edges
            .iter()
            .flat_map(|(&g, es)| std::iter::once(g).chain(es.iter().map(|e| e.to)))
            .collect();
        let by_goid: FxHashMap<u64, &BlockedGoroutine> = blocked
            .iter()
            .filter(|g| on_edges.contains(&g.goid))
            .map(|g| (g.goid, *g))
            .collect();
        let mut findings = Vec::new();
        let mut folded = FxHashSet::default();

        // Cycles: strongly connected components of blocked goroutines, two or more.
        for scc in self.sccs(&by_goid) {
            let cycle = self.cycle_in(&scc);
            let kinds: FxHashSet<&str> = cycle
                .iter()
                .filter_map(|&(g, _)| by_goid.get(&g).map(|b| chan_or_lock(b.object_kind)))
                .collect();
            let pat = match (kinds.contains("chan"), kinds.contains("lock")) {
                (true, false) => patterns::CHAN_CYCLE,
                (false, true) => patterns::MUTEX_DEADLOCK,
                _ => patterns::MIXED_DEADLOCK,
            };
            let chain: Vec<Link> = cycle
                .iter()
                .map(|&(g, obj)| self.link(g, obj, &by_goid, true))
                .collect();
            // "goroutine 6 waits on mutex X, which goroutine 7 holds; goroutine 7 waits on ..."
            let words: Vec<String> = cycle
                .iter()
                .enumerate()
                .map(|(i, &(g, obj))| {
                    let next = cycle[(i + 1) % cycle.len()].0;
                    let verb = match by_goid.get(&g).map(|b| chan_or_lock(b.object_kind)) {
                        Some("lock") => "holds",
                        _ => "would serve",
                    };
                    format!(
                        "goroutine {g} waits on {}, which goroutine {next} {verb}",
                        describe(&by_goid, g, obj)
                    )
                })
                .collect();
            let first = by_goid[&cycle[0].0];
            findings.push(finding(
                pat,
                &scc,
                first,
                chain,
                format!("deadlock cycle: {}", words.join("; ")),
                &by_goid,
            ));
            folded.extend(scc);
        }

        // Cascades: goroutines waiting, through one or more others, on one root.
        let mut behind: FxHashMap<u64, Vec<u64>> = FxHashMap::default();
        let mut starts: Vec<u64> = self
            .edges
            .keys()
            .copied()
            .filter(|g| !folded.contains(g))
            .collect();
        starts.sort_unstable();
        for g in starts {
            // A root blocks: it is stuck itself, or asleep in a system call. A goroutine that
            // runs, or waits for a timer or I/O, may yet serve the chain.
            if let Some(root) = self.root_of(g, &folded)
                && matches!(
                    self.states.get(&root),
                    Some(State::Blocked | State::Syscall)
                )
            {
                behind.entry(root).or_default().push(g);
            }
        }
        let mut roots: Vec<(u64, Vec<u64>)> =
            behind.into_iter().filter(|(_, v)| v.len() >= 2).collect();
        roots.sort_by_key(|(r, _)| *r);
        for (root, mut members) in roots {
            members.sort_unstable();
            let deepest = members
                .iter()
                .copied()
                .max_by_key(|&g| (self.path_to(g, root, &folded).len(), std::cmp::Reverse(g)))
                .unwrap_or(members[0]);
            let path = self.path_to(deepest, root, &folded);
            let chain: Vec<Link> = path
                .iter()
                .map(|&(g, obj)| self.link(g, obj, &by_goid, g != root))
                .collect();
            let root_words = match self.states.get(&root) {
                Some(State::Blocked) => by_goid
                    .get(&root)
                    .map(|b| {
                        format!(
                            "goroutine {root}, itself blocked ({}) on {}",
                            b.wait_reason, b.object
                        )
                    })
                    .unwrap_or_else(|| format!("goroutine {root}")),
                Some(s) => format!("goroutine {root} ({})", s.word()),
                None => format!("goroutine {root}"),
            };
            let first = by_goid[&deepest];
            let mut goids = members.clone();
            goids.push(root);
            findings.push(finding(
                patterns::CASCADE,
                &goids,
                first,
                chain,
                format!(
                    "{} goroutines are blocked behind {root_words}; the longest chain is {} deep",
                    members.len(),
                    path.len()
                ),
                &by_goid,
            ));
            folded.extend(members);
        }
        (findings, folded)
    }

    /// Tarjan's algorithm over the blocked goroutines; components of two or more.
    fn sccs(&self, blocked: &FxHashMap<u64, &BlockedGoroutine>) -> Vec<Vec<u64>> {
        struct T<'a> {
            g: &'a WaitGraph,
            blocked: &'a FxHashMap<u64, &'a BlockedGoroutine>,
            index: FxHashMap<u64, usize>,
            low: FxHashMap<u64, usize>,
            on: FxHashSet<u64>,
            stack: Vec<u64>,
            next: usize,
            out: Vec<Vec<u64>>,
        }
        impl T<'_> {
            fn visit(&mut self, v: u64) {
                self.index.insert(v, self.next);
                self.low.insert(v, self.next);
                self.next += 1;
                self.stack.push(v);
                self.on.insert(v);
                for e in self.g.out(v).to_vec() {
                    if !self.blocked.contains_key(&e.to) {
                        continue;
                    }
                    if !self.index.contains_key(&e.to) {
                        self.visit(e.to);
                        let l = self.low[&v].min(self.low[&e.to]);
                        self.low.insert(v, l);
                    } else if self.on.contains(&e.to) {
                        let l = self.low[&v].min(self.index[&e.to]);
                        self.low.insert(v, l);
                    }
                }
                if self.low[&v] == self.index[&v] {
                    let mut comp = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on.remove(&w);
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() >= 2 {
                        comp.sort_unstable();
                        self.out.push(comp);
                    }
                }
            }
        }
        let mut t = T {
            g: self,
            blocked,
            index: FxHashMap::default(),
            low: FxHashMap::default(),
            on: FxHashSet::default(),
            stack: Vec::new(),
            next: 0,
            out: Vec::new(),
        };
        let mut nodes: Vec<u64> = blocked.keys().copied().collect();
        nodes.sort_unstable();
        for v in nodes {
            if !t.index.contains_key(&v) {
                t.visit(v);
            }
        }
        t.out
    }

    /// The shortest cycle through a component's smallest goid (breadth first): (goroutine,
    /// object it waits on towards the next one).
    fn cycle_in(&self, scc: &[u64]) -> Vec<(u64, u64)> {
        let inside: FxHashSet<u64> = scc.iter().copied().collect();
        let start = scc[0];
        // node → (previous node, object of the edge from it).
        let mut prev: FxHashMap<u64, (u64, u64)> = FxHashMap::default();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        while let Some(at) = queue.pop_front() {
            for e in self.out(at).iter().filter(|e| inside.contains(&e.to)) {
                if e.to == start {
                    closing = Some((at, e.object));
                    break;
                }
                if let std::collections::hash_map::Entry::Vacant(v) = prev.entry(e.to) {
                    v.insert((at, e.object));
                    queue.push_back(e.to);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let Some((mut at, obj)) = closing else {
            return vec![(start, 0)];
        };
        let mut cycle = vec![(at, obj)];
        while at != start {
            let (p, o) = prev[&at];
            cycle.push((p, o));
            at = p;
        }
        cycle.reverse();
        cycle
    }

    /// The root a blocked goroutine waits behind: following the (first) edge of each link until
    /// a goroutine without edges, one that is not blocked, or one folded into a cycle.
    fn root_of(&self, g: u64, folded: &FxHashSet<u64>) -> Option<u64> {
        let path = self.path_to_end(g, folded);
        (path.len() >= 2)
            .then(|| path.last().map(|&(r, _)| r))
            .flatten()
    }

    fn path_to_end(&self, g: u64, folded: &FxHashSet<u64>) -> Vec<(u64, u64)> {
        let mut path: Vec<(u64, u64)> = Vec::new();
        let mut seen = FxHashSet::default();
        let mut at = g;
        loop {
            seen.insert(at);
            let next = if self.states.get(&at) == Some(&State::Blocked) && !folded.contains(&at)
                || at == g
            {
                self.out(at).iter().find(|e| !seen.contains(&e.to)).copied()
            } else {
                None
            };
            match next {
                Some(e) => {
                    path.push((at, e.object));
                    at = e.to;
                }
                None => {
                    path.push((at, 0));
                    return path;
                }
            }
        }
    }

    fn path_to(&self, g: u64, root: u64, folded: &FxHashSet<u64>) -> Vec<(u64, u64)> {
        let path = self.path_to_end(g, folded);
        match path.iter().position(|&(n, _)| n == root) {
            Some(i) => path[..=i].to_vec(),
            None => path,
        }
    }

    fn link(
        &self,
        g: u64,
        obj: u64,
        by_goid: &FxHashMap<u64, &BlockedGoroutine>,
        has_next: bool,
    ) -> Link {
        let b = by_goid.get(&g);
        let object = if obj != 0 {
            Some(Hex(obj))
        } else {
            b.map(|b| b.object).filter(|o| o.0 != 0)
        };
        Link {
            goid: g,
            state: self.states.get(&g).map_or("unknown", |s| s.word()),
            wait_reason: b.map(|b| b.wait_reason.clone()),
            object_kind: b.map(|b| b.object_kind).filter(|k| *k != "none"),
            made_at: b
                .filter(|b| Some(b.object) == object)
                .and_then(|b| b.made_at.clone()),
            object,
            next_by: has_next.then_some(INFERRED),
        }
    }
}

fn chan_or_lock(kind: &str) -> &'static str {
    match kind {
        "chan" | "select" => "chan",
        _ => "lock",
    }
}

fn describe(by_goid: &FxHashMap<u64, &BlockedGoroutine>, g: u64, obj: u64) -> String {
    match by_goid.get(&g) {
        Some(b) => format!("{} {} ({})", b.object_kind, Hex(obj), b.wait_reason),
        None => format!("{}", Hex(obj)),
    }
}

fn finding(
    pat: patterns::Pattern,
    goids: &[u64],
    first: &BlockedGoroutine,
    chain: Vec<Link>,
    explanation: String,
    by_goid: &FxHashMap<u64, &BlockedGoroutine>,
) -> Finding {
    let shortest = goids
        .iter()
        .filter_map(|g| by_goid.get(g).map(|b| b.blocked_ns))
        .min()
        .unwrap_or(first.blocked_ns);
    Finding {
        chain,
        ..Finding::about(
            pat,
            INFERRED,
            goids.to_vec(),
            first,
            shortest,
            format!("{explanation} (for at least {})", human(shortest)),
        )
    }
}
