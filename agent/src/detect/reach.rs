//! Is anyone else still holding the channel? A goroutine blocked on a channel that no other
//! goroutine can reach can never be served (the idea behind Go's own experimental goroutine-leak
//! profile, which asks the GC). blockprobe cannot walk the heap with types from outside, so it
//! looks where references to a channel usually sit: the global variables (`.data`, `.bss`), the
//! live stack frames of every other goroutine, and a few levels of objects those point to (a
//! `*Pool` on main's stack whose `jobs` field is the channel; a context's done channel). A channel found there is
//! *referenced*: its waiters may well be served later (an idle worker pool), so they make no
//! finding. One found nowhere is reported, with that said. Budgets bound the bytes read.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::goruntime::GoBinary;
use crate::memory::ProcessMemory;
use crate::scan::{Scan, status};

/// Most channels searched for.
pub const MAX_CANDIDATES: usize = 4096;
/// Most bytes of goroutine stacks read.
pub const STACK_BUDGET: u64 = 16 << 20;
/// Most objects followed from the stacks and globals, the bytes read of each, and how many
/// pointers deep.
pub const OBJECT_BUDGET: usize = 32_768;
/// Bytes read of each object: without the heap's span metadata the object's size is unknown, and
/// a longer window reaches into its neighbours (a dead `[]any` left by a `fmt.Sprintf` of the
/// channel counts as a reference): short, so that an unrelated neighbour rarely hides a leak.
pub const OBJECT_BYTES: usize = 64;
pub const MAX_DEPTH: usize = 3;

/// Most referencing goroutines remembered per object.
pub const MAX_OWNERS: usize = 8;
/// A word up to this far below a lock counts as a reference to it: a pointer to the struct
/// that holds the lock (`&account` for `account.mu`).
pub const LOCK_REACH: u64 = 64;

/// Where the candidates were found referenced, and whether the search was complete.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Object → who references it: goroutines by goid (from their live frames, and what those
    /// point to), 0 for the globals. A goroutine waiting on the object is not listed for it.
    pub refs: FxHashMap<u64, Vec<u64>>,
    /// Some region was left out (budget, or a read failed): an unreferenced verdict is weaker.
    pub partial: bool,
}

impl Reach {
    fn note(&mut self, obj: u64, owner: u64) {
        let owners = self.refs.entry(obj).or_default();
        if owners.len() < MAX_OWNERS && !owners.contains(&owner) {
            owners.push(owner);
        }
    }

    /// Objects referenced by anyone (besides their waiters).
    pub fn referenced(&self) -> FxHashSet<u64> {
        self.refs.keys().copied().collect()
    }
}

/// Searches process `mem` for references to the `candidates` (object address → goids waiting
/// on it; a goroutine's own stack does not count for an object it waits on). `locks` (sorted)
/// are the candidates that are locks, which interior pointers also reach (see [`LOCK_REACH`]).
pub fn search(
    mem: &ProcessMemory,
    bin: &GoBinary,
    bias: u64,
    scan: &Scan,
    candidates: &FxHashMap<u64, Vec<u64>>,
    locks: &[u64],
) -> Reach {
    let mut reach = Reach::default();
    if candidates.is_empty() {
        return reach;
    }
    let l = &bin.layout.g;
    // Regions: (start, len, owner goid or 0 for globals).
    let mut regions: Vec<(u64, u64, u64)> = bin
        .pointer_sections()
        .into_iter()
        .map(|(a, n)| (a.wrapping_add(bias), n, 0))
        .collect();
    // Stacks, in chunks, until the budget is spent: with 100k goroutines only the first few
    // thousand stacks are read, and only their bounds are held.
    let mut budget = STACK_BUDGET;
    let live = scan.goroutines.iter().filter(|g| {
        matches!(
            g.status,
            status::WAITING | status::RUNNABLE | status::SYSCALL
        )
    });
    let mut chunk: Vec<&crate::scan::ScannedG> = Vec::with_capacity(1024);
    let mut live = live.peekable();
    while budget > 0 && live.peek().is_some() {
        chunk.clear();
        chunk.extend(live.by_ref().take(1024));
        let at: Vec<(u64, [u32; 2])> = chunk
            .iter()
            .map(|g| {
                let sp = if g.status == status::SYSCALL {
                    l.syscallsp
                } else {
                    l.sched_sp
                };
                (g.addr, [sp, l.stack_hi])
            })
            .collect();
        for (g, pair) in chunk.iter().zip(crate::unwind::read_pairs(mem, &at)) {
            match pair {
                Some([sp, hi]) if sp != 0 && hi > sp && hi - sp <= 1 << 30 => {
                    let len = hi - sp;
                    if len > budget {
                        budget = 0;
                        reach.partial = true;
                        break;
                    }
                    budget -= len;
                    regions.push((sp, len, g.goid));
                }
                _ => reach.partial = true,
            }
        }
    }
    if live.peek().is_some() {
        reach.partial = true;
    }
    // (word, owner, levels left) to follow. Globals count only by their own words: the
    // runtime's (allgs → g → g.sched.ctxt → the goroutine's closure) would otherwise lead to
    // every waiter's channel.
    let mut pointers: Vec<(u64, u64, usize)> = Vec::new();
    // Never followed: the runtime's own objects that link goroutines to what they wait on (a
    // g, its sudogs, and the channels themselves), which would make every waiter reference its
    // neighbours'.
    let mut runtime_objects: Vec<u64> = scan
        .goroutines
        .iter()
        .flat_map(|g| [g.addr, g.waiting])
        .filter(|&a| a != 0)
        .collect();
    runtime_objects.sort_unstable();
    // By (pointer, owner): an object reached first from a waiter's own stack must still count
    // when another goroutine reaches it too.
    let mut seen_ptr: FxHashSet<(u64, u64)> = FxHashSet::default();
    // A candidate found counts unless only its own waiters' stacks lead to it; any other
    // aligned word may be a pointer, followed once (budgeted).
    let mut check = |word: u64,
                     owner: u64,
                     levels: usize,
                     reach: &mut Reach,
                     pointers: &mut Vec<(u64, u64, usize)>| {
        let lock = match locks.partition_point(|&l| l < word) {
            i if i < locks.len() && locks[i] - word <= LOCK_REACH => Some(locks[i]),
            _ => None,
        };
        if let Some(obj) = candidates.get_key_value(&word).map(|(k, _)| *k).or(lock) {
            let waiters = &candidates[&obj];
            if owner == 0 || !waiters.contains(&owner) {
                reach.note(obj, owner);
            }
        }
        if !candidates.contains_key(&word)
            && lock.is_none()
            && runtime_objects.binary_search(&word).is_err()
            && levels > 0
            && word >= 0x1000
            && word.is_multiple_of(8)
        {
            if seen_ptr.len() >= OBJECT_BUDGET {
                reach.partial = true;
            } else if seen_ptr.insert((word, owner)) {
                pointers.push((word, owner, levels - 1));
            }
        }
    };
    for chunk in regions.chunks(64) {
        let mut bufs: Vec<Vec<u8>> = chunk
            .iter()
            .map(|&(_, n, _)| vec![0u8; n as usize])
            .collect();
        let mut ranges: Vec<(u64, &mut [u8])> = chunk
            .iter()
            .zip(bufs.iter_mut())
            .map(|(&(a, _, _), b)| (a, b.as_mut_slice()))
            .collect();
        let ok = mem
            .read_many(&mut ranges)
            .unwrap_or_else(|_| vec![false; chunk.len()]);
        for ((&(_, _, owner), buf), ok) in chunk.iter().zip(&bufs).zip(ok) {
            if !ok {
                reach.partial = true;
                continue;
            }
            let levels = if owner == 0 { 0 } else { MAX_DEPTH };
            for w in buf.chunks_exact(8) {
                let word = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
                check(word, owner, levels, &mut reach, &mut pointers);
            }
        }
    }
    // Further: the first bytes of each object pointed to, breadth first, a few levels (a
    // context's done channel sits three pointers from the `cancel` func on main's stack).
    let mut frontier = pointers;
    for _ in 0..MAX_DEPTH {
        if frontier.is_empty() {
            break;
        }
        let mut next: Vec<(u64, u64, usize)> = Vec::new();
        for chunk in frontier.chunks(4096) {
            let mut bufs = vec![[0u8; OBJECT_BYTES]; chunk.len()];
            let mut ranges: Vec<(u64, &mut [u8])> = chunk
                .iter()
                .zip(bufs.iter_mut())
                .map(|(&(a, _, _), b)| (a, &mut b[..]))
                .collect();
            let ok = mem
                .read_many(&mut ranges)
                .unwrap_or_else(|_| vec![false; chunk.len()]);
            for ((&(_, owner, levels), buf), ok) in chunk.iter().zip(&bufs).zip(ok) {
                if !ok {
                    continue; // not a pointer after all
                }
                for w in buf.chunks_exact(8) {
                    let word = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
                    check(word, owner, levels, &mut reach, &mut next);
                }
            }
        }
        frontier = next;
    }
    if frontier.iter().any(|&(_, _, levels)| levels > 0) {
        reach.partial = true;
    }
    reach
}
