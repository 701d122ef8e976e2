//! Is anyone else still holding the channel? A goroutine blocked on a channel that no other
//! goroutine can reach can never be served (the idea behind Go's own experimental goroutine-leak
//! profile, which asks the GC). blockprobe cannot walk the heap with types from outside, so it
//! looks where references to a channel usually sit: the global variables (`.data`, `.bss`), the
//! live stack frames of every other goroutine, and a few levels of objects those point to (a
//! `*Pool` on main's stack whose `jobs` field is the channel; a context's done channel). A
//! channel found there is *referenced*: its waiters may well be served later (an idle worker
//! pool), so they make no finding. One found nowhere is reported, with that said. Budgets bound
//! the bytes read.
//!
//! A stack's roots are the words Go's GC would take for live pointers: its frames' stack maps
//! and stack objects, the closure context and the defer records (`goruntime::stackmap`). Dead
//! slots hold stale pointers to freed objects, whose memory may since hold anything, a closure
//! capturing the channel included. Where the stack maps cannot be used, the stack is scanned
//! whole (conservatively): a missed reference would make a false finding.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::goruntime::stackmap::{self, Goroutine, PclnFrames};
use crate::goruntime::{GoBinary, layout::GLayout};
use crate::memory::ProcessMemory;
use crate::scan::{GRoot, status};

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
    gs: &[GRoot],
    candidates: &FxHashMap<u64, Vec<u64>>,
    locks: &[u64],
) -> Reach {
    let mut reach = Reach::default();
    if candidates.is_empty() {
        return reach;
    }
    let started = std::time::Instant::now();
    // Regions: (start, len, owner goid or 0 for globals, the goroutine's saved state).
    let mut regions: Vec<(u64, u64, u64, Option<Goroutine>)> = bin
        .pointer_sections()
        .into_iter()
        .map(|(a, n)| (a.wrapping_add(bias), n, 0, None))
        .collect();
    let offs = GOffsets::new(&bin.layout.g);
    let tab = bin.pclntab().filter(|t| t.has_gofunc());
    let precise = offs.precise && tab.is_some();
    if !precise {
        tracing::debug!(
            "stack roots: no stack maps for this binary, scanning stacks conservatively"
        );
    }
    // Stacks, in chunks, until the budget is spent: with 100k goroutines only the first few
    // thousand stacks are read, and only their bounds and saved registers are held.
    let mut budget = STACK_BUDGET;
    let live = gs.iter().filter(|g| {
        matches!(
            g.status,
            status::WAITING | status::RUNNABLE | status::SYSCALL
        )
    });
    let mut chunk: Vec<&GRoot> = Vec::with_capacity(1024);
    let mut heads: Vec<u8> = Vec::new();
    let mut live = live.peekable();
    while budget > 0 && live.peek().is_some() {
        chunk.clear();
        chunk.extend(live.by_ref().take(1024));
        heads.clear();
        heads.resize(chunk.len() * offs.len, 0);
        let mut ranges: Vec<(u64, &mut [u8])> = chunk
            .iter()
            .zip(heads.chunks_exact_mut(offs.len))
            .map(|(g, b)| (g.addr, b))
            .collect();
        let ok = mem
            .read_many(&mut ranges)
            .unwrap_or_else(|_| vec![false; chunk.len()]);
        drop(ranges);
        for ((g, head), ok) in chunk.iter().zip(heads.chunks_exact(offs.len)).zip(ok) {
            match ok.then(|| offs.goroutine(head)) {
                Some(st) if st.sp != 0 && st.hi > st.sp && st.hi - st.sp <= 1 << 30 => {
                    let len = st.hi - st.sp;
                    if len > budget {
                        budget = 0;
                        reach.partial = true;
                        break;
                    }
                    budget -= len;
                    regions.push((st.sp, len, g.goid, Some(st)));
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
    let mut runtime_objects: Vec<u64> = gs
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
    // Each stack is read once; its roots are the words its live frames hold (see
    // `goruntime::stackmap`), or, where that is unknown, every word (conservatively).
    let mut frames = tab.as_ref().map(|t| PclnFrames::new(t, bias));
    let (mut exact, mut whole) = (0usize, 0usize);
    let mut roots: Vec<u64> = Vec::new();
    for chunk in regions.chunks(64) {
        let mut bufs: Vec<Vec<u8>> = chunk
            .iter()
            .map(|&(_, n, _, _)| vec![0u8; n as usize])
            .collect();
        let mut ranges: Vec<(u64, &mut [u8])> = chunk
            .iter()
            .zip(bufs.iter_mut())
            .map(|(&(a, _, _, _), b)| (a, b.as_mut_slice()))
            .collect();
        let ok = mem
            .read_many(&mut ranges)
            .unwrap_or_else(|_| vec![false; chunk.len()]);
        for ((&(_, _, owner, st), buf), ok) in chunk.iter().zip(&bufs).zip(ok) {
            if !ok {
                reach.partial = true;
                continue;
            }
            let levels = if owner == 0 { 0 } else { MAX_DEPTH };
            roots.clear();
            let precise_roots = match (st, frames.as_mut()) {
                (Some(st), Some(frames)) if precise => {
                    match stackmap::stack_roots(frames, &st, buf, &mut roots) {
                        Ok(_) => true,
                        Err(why) => {
                            tracing::trace!(goid = owner, ?why, "stack scanned conservatively");
                            roots.clear();
                            false
                        }
                    }
                }
                _ => false,
            };
            if precise_roots {
                exact += 1;
            } else {
                if let Some(st) = st {
                    whole += 1;
                    if offs.precise && st.ctxt != 0 {
                        roots.push(st.ctxt);
                    }
                }
                roots.extend(
                    buf.chunks_exact(8)
                        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))),
                );
            }
            for &word in &roots {
                check(word, owner, levels, &mut reach, &mut pointers);
            }
        }
    }
    tracing::debug!(
        precise = exact,
        conservative = whole,
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "stack roots: goroutine stacks scanned by their stack maps (precise) or whole"
    );
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

/// Where `search` reads a goroutine's saved state in `runtime.g` (`runtime/runtime2.go`):
/// `stack {lo, hi}`, `stackguard0`, `stackguard1`, `_panic`, `_defer`, `m`, `sched` (a `gobuf`:
/// `sp`, `pc`, `g`, `ctxt`, ..., `bp`), `syscallsp`, `syscallpc`, `syscallbp` (Go 1.23+): the
/// order of Go 1.22 to 1.27. `_panic`, `_defer` and `sched.ctxt` have no layout entry: they are
/// placed by that order, which the layout in use must confirm (else `precise` is false).
struct GOffsets {
    lo: usize,
    hi: usize,
    sched_sp: usize,
    sched_pc: usize,
    sched_bp: usize,
    ctxt: usize,
    syscallsp: usize,
    syscallpc: usize,
    syscallbp: Option<usize>,
    defer: usize,
    panic: usize,
    /// Bytes read of each g.
    len: usize,
    precise: bool,
}

impl GOffsets {
    fn new(l: &GLayout) -> Self {
        let o = |v: u32| v as usize;
        let precise = l.stack_lo == 0
            && l.stack_hi == 8
            && l.m == 48
            && l.sched == 56
            && l.sched_sp == l.sched
            && l.sched_pc == l.sched + 8;
        let mut g = GOffsets {
            lo: o(l.stack_lo),
            hi: o(l.stack_hi),
            sched_sp: o(l.sched_sp),
            sched_pc: o(l.sched_pc),
            sched_bp: o(l.sched_bp),
            ctxt: o(l.sched) + 24,
            syscallsp: o(l.syscallsp),
            syscallpc: o(l.syscallpc),
            syscallbp: l.syscallbp.map(o),
            defer: o(l.m).saturating_sub(8),
            panic: o(l.m).saturating_sub(16),
            len: 0,
            precise,
        };
        g.len = [
            g.lo,
            g.hi,
            g.sched_sp,
            g.sched_pc,
            g.sched_bp,
            g.ctxt,
            g.syscallsp,
            g.syscallpc,
        ]
        .into_iter()
        .chain(g.syscallbp)
        .max()
        .unwrap_or(0)
            + 8;
        g
    }

    /// The saved state in the first `len` bytes of a g, with the registers `unwinder.initAt`
    /// (`runtime/traceback.go`) starts from: `g.syscall*` when `syscallsp != 0`, else `g.sched`.
    fn goroutine(&self, head: &[u8]) -> Goroutine {
        let w = |o: usize| {
            head.get(o..o + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        };
        let syscallsp = w(self.syscallsp);
        let (sp, pc, bp) = match syscallsp {
            0 => (w(self.sched_sp), w(self.sched_pc), Some(w(self.sched_bp))),
            sp => (sp, w(self.syscallpc), self.syscallbp.map(w)),
        };
        Goroutine {
            lo: w(self.lo),
            hi: w(self.hi),
            sp,
            pc,
            bp,
            ctxt: w(self.ctxt),
            defer: w(self.defer),
            panic: w(self.panic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    /// Kills the fixture however the test ends.
    struct Kill(Child);

    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `key=value` in a fixture's line.
    fn kv<'a>(line: &'a str, key: &str) -> &'a str {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    }

    /// tests/fixtures/pprofserve, live, for each Go version built by `cargo xtask fixtures`
    /// (`$BLOCKPROBE_FIXTURES`, else target/fixtures), as `blockprobe attach --trace-from` sees
    /// it at the end of a session: its worker waits on a channel no other goroutine holds, while
    /// the HTTP accept loop's stack keeps, in dead slots, a pointer to freed memory since reused
    /// by the worker's closure (which holds the channel). Scanned whole, that stack referenced the
    /// channel (every run); scanned by its stack maps, no stack does.
    #[test]
    fn a_dead_stack_slot_is_no_reference() {
        let root = std::env::var_os("BLOCKPROBE_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
        let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.path().join("default/pprofserve"))
            .filter(|p| p.is_file())
            .collect();
        fixtures.sort();
        if fixtures.is_empty() {
            eprintln!(
                "skipping: no pprofserve under {} (cargo xtask fixtures)",
                root.display()
            );
            return;
        }
        // All at once: each serves a two-second trace before it is searched.
        let running: Vec<_> = fixtures
            .iter()
            .map(|path| {
                let mut child = Kill(
                    Command::new(path)
                        .args(["-hold", "60s"])
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap(),
                );
                let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
                let ready = out.next().unwrap().unwrap();
                // The pipeline starts with a trace.
                let mut http = std::net::TcpStream::connect(kv(&ready, "addr")).unwrap();
                http.write_all(b"GET /debug/pprof/trace?seconds=2 HTTP/1.0\r\n\r\n")
                    .unwrap();
                (path, child, out, ready, http)
            })
            .collect();
        for (path, _child, mut out, ready, mut http) in running {
            let pid: u32 = kv(&ready, "pid").parse().unwrap();
            let pipeline = out.next().unwrap().unwrap();
            let chan =
                u64::from_str_radix(kv(&pipeline, "chan").trim_start_matches("0x"), 16).unwrap();
            let worker: u64 = kv(&pipeline, "gworker").parse().unwrap();
            // The trace ends, its connection closes; the producer has sent its jobs and returned.
            std::io::copy(&mut http, &mut std::io::sink()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));

            let exe = std::fs::canonicalize(path).unwrap();
            let bin = GoBinary::open(&exe).unwrap();
            let bias = crate::session::load_bias(pid, &exe, &bin);
            let scan = crate::scan::Scanner::new(&bin, pid, bias)
                .unwrap()
                .scan()
                .unwrap();
            let g = scan.goroutines.iter().find(|g| g.goid == worker).unwrap();
            assert_eq!(g.wait_chans.as_slice(), [chan], "{}", path.display());
            let candidates: FxHashMap<u64, Vec<u64>> = [(chan, vec![worker])].into_iter().collect();
            let mem = ProcessMemory::new(pid);
            let reach = search(&mem, &bin, bias, &scan.roots(), &candidates, &[]);
            assert_eq!(reach.refs, FxHashMap::default(), "{}", path.display());
            assert!(!reach.partial, "{}", path.display());
        }
    }
}
