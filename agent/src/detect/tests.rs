use rustc_hash::FxHashMap;

use super::graph::{Op, Party};
use super::*;
use crate::report::{BlockingSite, CreationSite, Hex, Text};

const S: u64 = 1_000_000_000;

fn g(goid: u64, reason: &str, kind: &'static str, object: u64, line: u32) -> BlockedGoroutine {
    BlockedGoroutine {
        goid,
        wait_reason: Text::from(reason),
        wait_reason_code: 0,
        blocked_ns: 5 * S,
        object_kind: kind,
        object: Hex(object),
        parked_in: Text::from("runtime.gopark"),
        tid: 0,
        blocked_before_attach: false,
        wait_chans: if kind == "chan" || kind == "select" {
            smallvec::smallvec![Hex(object)]
        } else {
            Default::default()
        },
        created_by: Some(CreationSite {
            function: Text::from("main.main"),
            location: Some(Text::from("/app/main.go:5")),
            parent_goid: 1,
        }),
        start_function: Some(Text::from("main.worker")),
        blocked_at: Some(std::sync::Arc::new(BlockingSite {
            function: Text::from("main.worker"),
            location: Text::from(format!("/app/main.go:{line}")),
        })),
        made_at: None,
        stack: None,
        source: "scan",
    }
}

struct Case {
    blocked: Vec<BlockedGoroutine>,
    chans: FxHashMap<u64, ChanState>,
    parties: FxHashMap<u64, Vec<Party>>,
    running: Vec<RunningGoroutine>,
    user: usize,
    referenced: rustc_hash::FxHashSet<u64>,
    growth: Vec<super::growth::GrowthSite>,
}

impl Case {
    fn new(blocked: Vec<BlockedGoroutine>) -> Self {
        let user = blocked.len() + 1;
        Self {
            blocked,
            chans: FxHashMap::default(),
            parties: FxHashMap::default(),
            running: Vec::new(),
            user,
            referenced: Default::default(),
            growth: Vec::new(),
        }
    }
    fn party(mut self, obj: u64, goid: u64, op: Op) -> Self {
        self.parties
            .entry(obj)
            .or_default()
            .push(Party { goid, op });
        self
    }
    fn chan(mut self, addr: u64, cap: u64, len: u64) -> Self {
        self.chans.insert(
            addr,
            ChanState {
                cap,
                len,
                closed: false,
                timer: false,
            },
        );
        self
    }
    fn run(&self) -> Vec<Finding> {
        let referenced = self.referenced.clone();
        analyze(&Input {
            spinning: &[],
            growth: &self.growth,
            referenced: &referenced,
            blocked: &self.blocked,
            in_syscall: &[],
            running: &self.running,
            chans: &self.chans,
            parties: &self.parties,
            inferred_parties: &FxHashMap::default(),
            user_goroutines: self.user,
            threshold_ns: S,
        })
    }
}

fn ids(f: &[Finding]) -> Vec<&str> {
    f.iter().map(|f| f.pattern).collect()
}

#[test]
fn lone_channel_waits() {
    let c = Case::new(vec![
        g(10, "chan send", "chan", 0xa0, 11),
        g(11, "chan send", "chan", 0xb0, 12),
        g(12, "chan receive", "chan", 0xc0, 13),
        g(13, "chan send (nil chan)", "none", 0, 14),
        g(14, "chan receive (nil chan)", "none", 0, 15),
        g(15, "select (no cases)", "none", 0, 16),
        g(16, "select", "select", 0xd0, 17),
    ])
    .chan(0xa0, 4, 4)
    .chan(0xb0, 0, 0);
    let f = c.run();
    let mut got = ids(&f);
    got.sort_unstable();
    assert_eq!(
        got,
        ["BP01", "BP02", "BP03", "BP04", "BP05", "BP06", "BP07"]
    );
    let full = f.iter().find(|f| f.pattern == "BP01").unwrap();
    assert_eq!(
        (full.goroutines.clone(), full.object),
        (vec![10], Some(Hex(0xa0)))
    );
    assert!(
        full.explanation.contains("full (4/4)"),
        "{}",
        full.explanation
    );
    // Errors first.
    assert_eq!(f[0].severity, Severity::Error);
}

#[test]
fn waits_at_one_site_make_one_finding_and_short_ones_none() {
    let mut short = g(4, "chan receive", "chan", 0xc0, 9);
    short.blocked_ns = S / 2;
    let c = Case::new(vec![
        g(1, "chan receive", "chan", 0xc0, 9),
        g(2, "chan receive", "chan", 0xc0, 9),
        g(3, "chan receive", "chan", 0xc0, 9),
        short,
        g(5, "sleep", "none", 0, 3),
        g(6, "IO wait", "none", 0, 3),
    ]);
    let f = c.run();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!((f[0].count, f[0].goroutines.clone()), (3, vec![1, 2, 3]));
}

#[test]
fn a_channel_cycle() {
    // 1 sends on c1, which only 2 was seen receiving from; 2 sends on c2, which only 1 was
    // seen receiving from.
    let c = Case::new(vec![
        g(1, "chan send", "chan", 0xc1, 20),
        g(2, "chan send", "chan", 0xc2, 30),
    ])
    .chan(0xc1, 0, 0)
    .chan(0xc2, 0, 0)
    .party(0xc1, 2, Op::Recv)
    .party(0xc1, 1, Op::Send)
    .party(0xc2, 1, Op::Recv)
    .party(0xc2, 2, Op::Send);
    let f = c.run();
    assert_eq!(ids(&f), ["BP09"], "{f:#?}");
    assert_eq!(f[0].goroutines, [1, 2]);
    let chain: Vec<(u64, Option<Hex>)> = f[0].chain.iter().map(|l| (l.goid, l.object)).collect();
    assert_eq!(chain, [(1, Some(Hex(0xc1))), (2, Some(Hex(0xc2)))]);
    assert_eq!(f[0].confidence, INFERRED);
}

#[test]
fn senders_on_one_channel_are_not_a_cycle() {
    let c = Case::new(vec![
        g(1, "chan send", "chan", 0xc1, 20),
        g(2, "chan send", "chan", 0xc1, 20),
    ])
    .chan(0xc1, 1, 1)
    .party(0xc1, 1, Op::Send)
    .party(0xc1, 2, Op::Send);
    assert_eq!(ids(&c.run()), ["BP01"]);
}

#[test]
fn lock_and_mixed_cycles() {
    let c = Case::new(vec![
        g(1, "sync.Mutex.Lock", "mutex", 0xa, 20),
        g(2, "sync.Mutex.Lock", "mutex", 0xb, 30),
    ])
    .party(0xa, 2, Op::Release)
    .party(0xb, 1, Op::Release);
    assert_eq!(ids(&c.run()), ["BP11"]);
    let c = Case::new(vec![
        g(1, "sync.Mutex.Lock", "mutex", 0xa, 20),
        g(2, "chan send", "chan", 0xc, 30),
    ])
    .chan(0xc, 0, 0)
    .party(0xa, 2, Op::Release)
    .party(0xc, 1, Op::Recv);
    assert_eq!(ids(&c.run()), ["BP15"]);
}

#[test]
fn a_cascade_names_its_root() {
    // 1 → c1 → 2 → c2 → 3, and 3 waits on c3 that nobody serves.
    let c = Case::new(vec![
        g(1, "chan send", "chan", 0xc1, 20),
        g(2, "chan send", "chan", 0xc2, 30),
        g(3, "chan receive", "chan", 0xc3, 40),
    ])
    .chan(0xc1, 0, 0)
    .chan(0xc2, 0, 0)
    .party(0xc1, 2, Op::Recv)
    .party(0xc2, 3, Op::Recv);
    let f = c.run();
    let mut got = ids(&f);
    got.sort_unstable();
    assert_eq!(got, ["BP03", "BP10"], "{f:#?}");
    let cascade = f.iter().find(|f| f.pattern == "BP10").unwrap();
    assert_eq!(cascade.goroutines, [1, 2, 3]);
    let chain: Vec<u64> = cascade.chain.iter().map(|l| l.goid).collect();
    assert_eq!(chain, [1, 2, 3]);
    assert_eq!(cascade.chain.last().unwrap().next_by, None);
    assert!(
        cascade.explanation.contains("behind goroutine 3"),
        "{}",
        cascade.explanation
    );
    // The root keeps its own finding.
    assert_eq!(
        f.iter().find(|f| f.pattern == "BP03").unwrap().goroutines,
        [3]
    );
}

#[test]
fn global_deadlock_only_when_nothing_else_can_run() {
    let mut c = Case::new(vec![
        g(1, "chan receive", "chan", 0xc1, 20),
        g(2, "sync.WaitGroup.Wait", "waitgroup", 0xd, 30),
    ]);
    c.user = 2;
    assert!(ids(&c.run()).contains(&"BP00"));
    c.running.push(RunningGoroutine {
        goid: 9,
        status: "running",
        start_function: None,
        tid: None,
    });
    assert!(!ids(&c.run()).contains(&"BP00"));
    c.running.clear();
    c.user = 3; // a sleeping goroutine (below the list) may still wake the others
    assert!(!ids(&c.run()).contains(&"BP00"));
}

#[test]
fn referenced_and_timer_channels_may_still_be_served() {
    let mut c = Case::new(vec![
        g(1, "chan receive", "chan", 0xc1, 20), // an idle worker: main still holds the channel
        g(2, "chan receive", "chan", 0xc2, 30), // a ticker loop
        g(3, "select", "select", 0xc3, 40),     // a select over a referenced channel
        g(4, "chan receive", "chan", 0xc4, 50), // an orphan
    ]);
    c.blocked[2].wait_chans = smallvec::smallvec![Hex(0xc5), Hex(0xc3)];
    c.referenced.insert(0xc1);
    c.referenced.insert(0xc3);
    c.chans.insert(
        0xc2,
        ChanState {
            cap: 1,
            len: 0,
            closed: false,
            timer: true,
        },
    );
    let f = c.run();
    assert_eq!(ids(&f), ["BP03"], "{f:#?}");
    assert_eq!(f[0].goroutines, [4]);
}

#[test]
fn a_growing_site_is_one_leak_finding() {
    let mut c = Case::new(
        (1..=6)
            .map(|i| g(i, "chan receive", "chan", 0x100 * i, 20))
            .collect(),
    );
    c.growth.push(super::growth::GrowthSite {
        location: Some(Text::from("/app/main.go:5")),
        reason: Text::from("chan receive"),
        growth: super::growth::Growth {
            gopc: 1,
            reason: 2,
            first: 1,
            last: 6,
            rises: 5,
            span_ns: 2 * S,
            start_ns: 10 * S,
        },
        heap: None,
    });
    let f = c.run();
    assert_eq!(ids(&f), ["BP16"], "{f:#?}");
    assert_eq!(f[0].count, 6);
    assert!(
        f[0].explanation.contains("1 then 6"),
        "{}",
        f[0].explanation
    );
    assert_eq!(f[0].heap_growth, None);

    // With the heap sampled over the same window: one finding that says what the leak holds.
    let heap = crate::health::window::HeapGrowth {
        from_ns: 10 * S,
        to_ns: 12 * S,
        heap_alloc_from: 1 << 20,
        heap_alloc_to: 1 << 21,
        heap_inuse_from: 2 << 20,
        heap_inuse_to: 3 << 20,
        stack_inuse_from: 1 << 16,
        stack_inuse_to: 1 << 17,
        sys_from: 8 << 20,
        sys_to: 8 << 20,
    };
    c.growth[0].heap = Some(heap);
    let f = c.run();
    assert_eq!(ids(&f), ["BP16"], "{f:#?}");
    assert_eq!(f[0].heap_growth, Some(heap));
    assert!(
        f[0].explanation
            .contains("5 more goroutines blocked, the heap grew by 1.0MiB"),
        "{}",
        f[0].explanation
    );
}
