//! The ABI shared by the eBPF programs (`src/main.rs`, built for bpfel-unknown-none) and the
//! userspace agent. Everything here is `#[repr(C)]` with explicit padding, no `bool` and no
//! enums in payloads (kinds travel as `u32` and are decoded with `TryFrom`), and a size check per
//! struct so that a layout change on one side cannot go unnoticed on the other.
#![no_std]

use core::mem::size_of;

/// Name of the ring buffer map that carries [`GoEvent`]s to userspace.
pub const MAP_EVENTS: &str = "EVENTS";
/// Name of the one-entry array holding the target's [`RuntimeLayout`].
pub const MAP_LAYOUT: &str = "LAYOUT";
/// Name of the per-CPU counter of events dropped because the ring buffer was full.
pub const MAP_LOST: &str = "LOST";

/// Ring buffer size. A park/ready pair is 2 × 160 bytes (+ 8-byte headers), so 16 MiB holds
/// ~50k pairs: several ms of a channel ping-pong at full speed, between two readiness wake-ups of
/// the agent.
pub const EVENTS_RING_BYTES: u32 = 16 << 20;

/// Name of the LRU hash (g address → [`SemaWait`]) that carries a sync primitive's semaphore
/// address from its semacquire entry point to the report of a long wait that follows. Keyed by
/// the g's address (R14), not its goid: no read of the target on the way in.
pub const MAP_SEMA: &str = "SEMA";

/// Most channels of a select reported in one [`GoEvent`]; `n_chans` says how many there were.
pub const MAX_WAIT_CHANS: usize = 8;

/// Offsets into Go runtime structures, as data: they are derived per target binary (DWARF, or a
/// per-Go-version table for stripped binaries) and written into [`MAP_LAYOUT`] before attach.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeLayout {
    /// `runtime.g.goid` (src/runtime/runtime2.go).
    pub g_goid: u32,
    /// `runtime.g.parentGoid`.
    pub g_parent_goid: u32,
    /// `runtime.g.gopc`: PC of the `go` statement that created the goroutine.
    pub g_gopc: u32,
    /// `runtime.g.startpc`: entry of the goroutine's function.
    pub g_startpc: u32,
    /// `runtime.g.waiting`: the sudogs a parked goroutine waits on (chan ops, select).
    pub g_waiting: u32,
    /// The word holding `runtime.sudog.c` (from Go 1.26 the `vu` half of a maybeTraceablePtr).
    pub sudog_c: u32,
    /// `runtime.sudog.waitlink`: next sudog of the same goroutine (select).
    pub sudog_waitlink: u32,
    /// `runtime.g.sched.pc` and `runtime.g.sched.bp` (a gobuf): where a parked goroutine
    /// stopped, for the frame-pointer walk of a long wait's stack at its wake-up.
    pub g_sched_pc: u32,
    pub g_sched_bp: u32,
    /// `runtime.g.m` and `runtime.m.curg`: the user goroutine an M runs, for a waker that is
    /// on its M's system stack (g0) when it calls `ready`.
    pub g_m: u32,
    pub m_curg: u32,
}
const _: () = assert!(size_of::<RuntimeLayout>() == 44);

/// What a [`GoEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum EventKind {
    /// Entry of `runtime.gopark`: the current goroutine is about to block.
    Park = 1,
    /// Entry of `runtime.ready`: a parked goroutine is made runnable by the current one.
    Ready = 2,
    /// Entry of `runtime.newproc1`: the current goroutine runs a `go` statement. The new
    /// goroutine's id is not assigned yet at entry, so `goid` is 0 and `parent_goid`, `gopc`
    /// and `startpc` describe the creation.
    Create = 3,
    /// Entry of `runtime.goexit1`: the current goroutine returns from its function.
    Exit = 4,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            1 => Ok(Self::Park),
            2 => Ok(Self::Ready),
            3 => Ok(Self::Create),
            4 => Ok(Self::Exit),
            other => Err(other),
        }
    }
}

/// Which sync primitive a semacquire entry point waits for; the uprobe's attach cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SemaKind {
    /// `sync.runtime_SemacquireMutex` (≤1.23) / `internal/sync.runtime_SemacquireMutex` (≥1.24):
    /// `&Mutex.sema`.
    Mutex = 1,
    /// `sync.runtime_SemacquireRWMutexR`: `&RWMutex.readerSem` (RLock waiting for a writer).
    RWMutexR = 2,
    /// `sync.runtime_SemacquireRWMutex`: `&RWMutex.writerSem` (Lock waiting for readers).
    RWMutexW = 3,
    /// `sync.runtime_SemacquireWaitGroup` (≥1.24) / `sync.runtime_Semacquire` (≤1.23):
    /// `&WaitGroup.sema`.
    WaitGroup = 4,
    /// `sync.runtime_notifyListWait`: `&Cond.notify`.
    Cond = 5,
}

impl TryFrom<u32> for SemaKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            1 => Ok(Self::Mutex),
            2 => Ok(Self::RWMutexR),
            3 => Ok(Self::RWMutexW),
            4 => Ok(Self::WaitGroup),
            5 => Ok(Self::Cond),
            other => Err(other),
        }
    }
}

/// A goroutine on its way into a sync primitive's semaphore (value of [`MAP_SEMA`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemaWait {
    /// The semaphore's address (the first argument of the entry point).
    pub addr: u64,
    /// A [`SemaKind`] as u32.
    pub kind: u32,
    /// Explicit padding, always 0.
    pub _pad0: u32,
}
const _: () = assert!(size_of::<SemaWait>() == 16);

/// One event from a uprobe on the Go runtime.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, the clock of Go's trace `ClockSnapshot`.
    pub ts_ns: u64,
    /// The goroutine the event is about (Park/Exit: the current g; Ready: the g made runnable;
    /// Create: 0, see [`EventKind::Create`]).
    pub goid: u64,
    /// Park: gopark's `lock` argument (for channel waits `&hchan.lock`). Otherwise 0.
    pub obj: u64,
    /// Return address on entry, i.e. the PC in the runtime function that called the probed one
    /// (`chanrecv`, `selectgo`, `semacquire1`, ...).
    pub caller_pc: u64,
    /// Ready: goid of the goroutine doing the wake-up (the current g). Otherwise 0.
    pub peer_goid: u64,
    /// Park/Create: the goroutine's creator (`g.parentGoid`; for Create the current g).
    pub parent_goid: u64,
    /// Park/Create: PC of the creating `go` statement (`g.gopc`; for Create newproc1's callerpc).
    pub gopc: u64,
    /// Park/Create: entry PC of the goroutine's function (`g.startpc`; for Create `fn.fn`).
    pub startpc: u64,
    /// Park on a sync primitive: the semaphore address its semacquire entry point received.
    pub sema_addr: u64,
    /// Park: channels from `g.waiting` → `sudog.c` along `waitlink` (a select's cases).
    pub chans: [u64; MAX_WAIT_CHANS],
    /// OS thread id (the Go M's procid, and the M id in Go's execution traces).
    pub tid: u32,
    /// An [`EventKind`] as u32.
    pub kind: u32,
    /// Park: the raw `waitReason` number (its meaning depends on the Go version; the agent maps it
    /// through the target's `runtime.waitReasonStrings`). Otherwise 0.
    pub reason: u32,
    /// Park on a sync primitive: a [`SemaKind`] as u32; 0 when not a sync wait.
    pub sema_kind: u32,
    /// Park: how many sudogs `g.waiting` had (may exceed [`MAX_WAIT_CHANS`]; capped at 255).
    pub n_chans: u32,
    /// Always [`NO_STACK`] from the kernel: a park's stack travels in a [`ParkStack`]. The agent
    /// numbers the stacks it receives and may set it.
    pub stack_id: u32,
}
const _: () = assert!(size_of::<GoEvent>() == 160);

/// A park and its goroutine's stack (innermost first, from inside `runtime.gopark`): what the
/// probes send for a park that is streamed, at the park (`--min-wait 0`) or, for a wait that
/// turned out long, at its wake-up. Told apart from a bare [`GoEvent`] by its length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkStack {
    pub ev: GoEvent,
    /// How many of `pcs` are set.
    pub n_pcs: u32,
    /// Explicit padding, always 0.
    pub _pad0: u32,
    pub pcs: [u64; PARK_STACK_DEPTH],
}
/// Frames of a [`ParkStack`]: deep enough for a user frame under the runtime's and sync's.
pub const PARK_STACK_DEPTH: usize = 32;
const _: () = assert!(size_of::<ParkStack>() == 160 + 8 + 8 * PARK_STACK_DEPTH);

/// `BPF_NOEXIST` (include/uapi/linux/bpf.h): a map update that only creates, never overwrites.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h): an array the agent maps into its memory.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The open parks: a direct-mapped, 2-way table of [`ParkSlot`]s indexed by the g's address
/// ([`park_set`]). An array, not a hash map: a hash update, lookup and delete on every park and
/// wake-up cost a channel ping-pong a third more than the uprobe traps themselves, an array slot
/// next to nothing (the verifier inlines the lookup). The price: two goroutines in the same full
/// set evict the younger park, whose wait then goes uncounted; the agent reads the table
/// through a shared mapping (`BPF_F_MMAPABLE`), without a syscall per slot.
pub const MAP_PARKS: &str = "PARKS";
/// log2 of the number of sets of [`MAP_PARKS`] (two slots each).
pub const PARKS_SETS_LOG2: u32 = 16;
pub const PARKS_ENTRIES: u32 = 2 << PARKS_SETS_LOG2;

/// The set of a g's slots in [`MAP_PARKS`]: slots `2 * set` and `2 * set + 1`. Fibonacci
/// hashing of the address (g structs are heap objects a few hundred bytes apart).
#[inline(always)]
pub const fn park_set(g: u64) -> u32 {
    (g.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - PARKS_SETS_LOG2)) as u32
}

/// One open park, written by the gopark probe and cleared by the ready probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParkSlot {
    /// The parked g's address; 0 when the slot is free.
    pub g: u64,
    /// When it parked (`bpf_ktime_get_ns()`).
    pub ts_ns: u64,
    /// gopark's `lock` argument (for channel waits `&hchan.lock`).
    pub obj: u64,
    /// The wait's site: one return address above the runtime function that parked (see
    /// [`HistKey`]); 0 when not read (`weight == 0`) or unreadable.
    pub site: u64,
    /// The raw `waitReason` (a uint8 in the runtime: src/runtime/runtime2.go).
    pub reason: u16,
    /// How many waits this one stands for in its site's histogram: 1 when the site was read for
    /// every park, [`PreciseConfig::site_every`] for a park sampled beyond the burst (see
    /// [`PreciseConfig::site_burst`]), 0 when the site was not read (the wait then counts only
    /// in its reason's exact histogram, [`MAP_REASON_HIST`]).
    pub weight: u16,
    /// The OS thread it parked on.
    pub tid: u32,
}
const _: () = assert!(size_of::<ParkSlot>() == 40);

/// Precise mode's settings, written by the agent before attaching.
pub const MAP_PRECISE_CONFIG: &str = "PRECISE_CONFIG";
/// (site, wait reason) → log2 histogram of finished waits: a per-CPU array of [`SiteHist`]s,
/// direct-mapped by [`hist_slot`] like [`MAP_PARKS`] (a per-CPU LRU hash cost each wake-up about
/// as much as a read of the target). A site whose four slots ([`HIST_WAYS`]) hold other sites
/// counts in the last
/// slot, whose key stays zero ("other sites").
pub const MAP_WAIT_HIST: &str = "WAIT_HIST";
/// Slots of [`MAP_WAIT_HIST`], a power of two, plus the overflow slot.
pub const WAIT_HIST_SLOTS: u32 = 512;
pub const WAIT_HIST_MAX_ENTRIES: u32 = WAIT_HIST_SLOTS + 1;
/// Buckets of a [`WaitHist`]: bucket i counts waits of [2^i, 2^(i+1)) ns; the last one takes
/// everything from 2^39 ns (about 9 minutes) up.
pub const WAIT_HIST_BUCKETS: usize = 40;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreciseConfig {
    /// Stream a park (and its ready) only once the wait has lasted this long; 0 streams every
    /// park when it happens. Shorter waits still count in the histograms.
    pub min_wait_ns: u64,
    /// Per wait reason (`waitReason & (SITE_REASONS - 1)`): where, in 8-byte words above the
    /// parking function's frame pointer, lies the frame record whose return address is the
    /// wait's site. 0 reads the parking function's own record (its caller's return address,
    /// e.g. selectgo → the user's select); for `chan receive` it skips chanrecv1's frame. The
    /// agent computes the words from the binary's frame sizes (`precise::site_words`).
    pub site_words: [u8; SITE_REASONS],
    /// Sites read exactly per CPU per [`SITE_WINDOW_NS`]: the first `site_burst` parks of a
    /// window have their site read (weight 1). Reading it is one read of the target's stack,
    /// about 160 ns of the parking goroutine's time here (kernel.bpf_stats_enabled: gopark ran
    /// 258 ns a hit with it, 107 without), so beyond the burst only a random one in
    /// `site_every` parks (a power of two) reads it, and counts with that weight: the per-site
    /// histograms are then unbiased estimates, and each reason's totals stay exact
    /// ([`MAP_REASON_HIST`]). `site_every` 1 reads every site.
    pub site_burst: u32,
    pub site_every: u32,
}
/// Wait reasons with a site offset of their own (Go 1.22-1.27 have fewer than 64).
pub const SITE_REASONS: usize = 64;
const _: () = assert!(size_of::<PreciseConfig>() == 8 + SITE_REASONS + 8);
/// The window of [`PreciseConfig::site_burst`].
pub const SITE_WINDOW_NS: u64 = 1_000_000;

impl Default for PreciseConfig {
    fn default() -> Self {
        PreciseConfig {
            min_wait_ns: 0,
            site_words: [0; SITE_REASONS],
            site_burst: u32::MAX,
            site_every: 1,
        }
    }
}

/// Per CPU: the parks of the current [`SITE_WINDOW_NS`] window (gopark's site sampling).
pub const MAP_SITE_RATE: &str = "SITE_RATE";
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteRate {
    pub window_start_ns: u64,
    pub parks: u64,
}
const _: () = assert!(size_of::<SiteRate>() == 16);

/// Wait reason (`& (SITE_REASONS - 1)`) → log2 histogram of every finished wait, exact whatever
/// the site sampling: a per-CPU array of [`WaitHist`].
pub const MAP_REASON_HIST: &str = "REASON_HIST";

/// A wait site: the return address into the first frame that is not a runtime wrapper of the
/// wait (the user's code for channel waits, selects and sleeps; `lockSlow`'s caller for a
/// Mutex; a sync method for the other sync waits), and the wait reason. One return address,
/// found at a per-reason offset ([`PreciseConfig::site_words`]), not a frame walk: each read of
/// the target's stack costs the parking goroutine about 60-120 ns, and a 16-byte read at a
/// known place costs less than a wider one that finds the place itself (measured on the
/// ping-pong bench).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HistKey {
    pub site: u64,
    pub reason: u32,
    /// Explicit padding, always 0.
    pub _pad0: u32,
}
const _: () = assert!(size_of::<HistKey>() == 16);

/// Finished waits at one site.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitHist {
    pub count: u64,
    pub total_ns: u64,
    pub buckets: [u64; WAIT_HIST_BUCKETS],
}
const _: () = assert!(size_of::<WaitHist>() == 16 + 8 * WAIT_HIST_BUCKETS);

/// One slot of [`MAP_WAIT_HIST`]: a site and its histogram; `hist.count == 0` when free.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteHist {
    pub key: HistKey,
    pub hist: WaitHist,
    /// Sampled waits among those counted (each counted with a weight above 1): when non-zero,
    /// the histogram is an estimate.
    pub sampled: u64,
}
const _: () = assert!(size_of::<SiteHist>() == 16 + size_of::<WaitHist>() + 8);

/// Slots a site may take in [`MAP_WAIT_HIST`]: `i ^ 0` .. `i ^ (HIST_WAYS - 1)` from its
/// [`hist_slot`]. Four, not two: with two, a few dozen sites in a PIE (whose addresses, hence
/// slots, change each run) put three in one pair in about one run in twenty, and the third
/// lost its own histogram (seen in tests/e2e/wait_sites.rs).
pub const HIST_WAYS: u32 = 4;

/// The first of the [`HIST_WAYS`] slots of a site in [`MAP_WAIT_HIST`].
#[inline(always)]
pub const fn hist_slot(key: &HistKey) -> u32 {
    let h = (key.site ^ (key.reason as u64).rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as u32 & (WAIT_HIST_SLOTS - 1)
}

impl Default for WaitHist {
    fn default() -> Self {
        Self {
            count: 0,
            total_ns: 0,
            buckets: [0; WAIT_HIST_BUCKETS],
        }
    }
}
/// `GoEvent::stack_id` when no stack was captured.
pub const NO_STACK: u32 = u32::MAX;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are repr(C), Copy, contain only integers, and have no implicit padding
    // (checked by the size asserts above).
    unsafe impl aya::Pod for super::RuntimeLayout {}
    unsafe impl aya::Pod for super::GoEvent {}
    unsafe impl aya::Pod for super::SemaWait {}
    unsafe impl aya::Pod for super::PreciseConfig {}
    unsafe impl aya::Pod for super::HistKey {}
    unsafe impl aya::Pod for super::ParkSlot {}
    unsafe impl aya::Pod for super::ParkStack {}
    unsafe impl aya::Pod for super::WaitHist {}
    unsafe impl aya::Pod for super::SiteHist {}
    unsafe impl aya::Pod for super::SiteRate {}
}

// --- Scheduler (OS thread) state ---
//
// Programs on the scheduler tracepoints `sched/sched_switch` and `sched/sched_waking` keep one
// [`ThreadSched`] per OS thread of the target process in [`MAP_THREADS`], keyed by tid. Only the
// target's threads are tracked: the filter (the target's tgid, in [`MAP_SCHED_CONFIG`]) is applied
// in the kernel. Times are `bpf_ktime_get_ns()`, i.e. CLOCK_MONOTONIC.

/// Name of the one-entry array holding the [`SchedConfig`].
pub const MAP_SCHED_CONFIG: &str = "SCHED_CONFIG";
/// Name of the hash map tid (u32) → [`ThreadSched`].
pub const MAP_THREADS: &str = "THREADS";
/// Name of the stack-trace map holding kernel stacks captured when a target thread goes to sleep.
pub const MAP_KSTACKS: &str = "KSTACKS";

/// Capacity of [`MAP_THREADS`]. Go caps a program at 10000 threads by default
/// (runtime/debug.SetMaxThreads), so this is enough for one target.
pub const THREADS_MAX_ENTRIES: u32 = 16384;
/// Capacity of [`MAP_KSTACKS`] (distinct kernel stacks; rounded up to a power of two by the kernel).
pub const KSTACKS_MAX_ENTRIES: u32 = 4096;
/// Frames kept per kernel stack. Sleeping kernel stacks are 10–30 frames deep; deeper ones are
/// truncated at the outer end.
pub const KSTACK_DEPTH: u32 = 48;

/// Program names in the eBPF object.
pub const PROG_SCHED_SWITCH: &str = "sched_switch";
pub const PROG_SCHED_WAKING: &str = "sched_waking";

/// [`SchedConfig::flags`]: capture the kernel stack (`bpf_get_stackid`) when a thread sleeps.
pub const SCHED_F_KSTACKS: u32 = 1;
/// [`SchedConfig::flags`]: at each switch-in, send the off-CPU span it ends (when it lasted at
/// least [`SchedConfig::min_span_ns`]) as an [`OffCpuSpan`] into [`MAP_SCHED_SPANS`]: the
/// history of every thread's sleeps for `--timeline`. Off, it costs the switch-in one branch.
pub const SCHED_F_SPANS: u32 = 2;

/// Name of the ring buffer that carries [`OffCpuSpan`]s to userspace.
pub const MAP_SCHED_SPANS: &str = "SCHED_SPANS";
/// Name of the per-CPU counter of spans dropped because [`MAP_SCHED_SPANS`] was full.
pub const MAP_SCHED_SPANS_LOST: &str = "SCHED_SPANS_LOST";
/// [`MAP_SCHED_SPANS`]' size: a span is 56 bytes + an 8-byte header, so 1 MiB holds 16k spans,
/// which the agent drains every 100 ms (or when the ring is 1/8 full): 160k spans of at least
/// the minimum (1 ms by default) a second, i.e. 160 threads each switching a thousand times a
/// second, before one is lost.
pub const SCHED_SPANS_RING_BYTES: u32 = 1 << 20;

/// [`OffCpuSpan::flags`]: the span began before the attach (a thread seeded asleep from /proc):
/// `off_ns` is the attach time, a lower bound.
pub const SPAN_F_BEFORE_ATTACH: u32 = 1;

/// [`ThreadSched::flags`]: the entry was seeded by the agent from /proc/PID/task/TID/stat at
/// attach (the thread has not switched since), so its state began before the attach.
pub const THREAD_F_SEEDED: u32 = 1;

/// `prev_state` bits as the sched_switch tracepoint reports them (include/trace/events/sched.h,
/// `__trace_sched_switch_state`: `1 << (task_state_index - 1)`, the TASK_REPORT bits of
/// include/linux/sched.h): 0 = R (runnable: yielded), S = TASK_INTERRUPTIBLE, D =
/// TASK_UNINTERRUPTIBLE, T = __TASK_STOPPED, t = __TASK_TRACED, X = EXIT_DEAD, Z = EXIT_ZOMBIE,
/// P = TASK_PARKED, I = TASK_REPORT_IDLE; TASK_REPORT_MAX (0x100) = preempted ("R+").
pub mod task_state {
    pub const RUNNING: u32 = 0;
    pub const INTERRUPTIBLE: u32 = 0x01;
    pub const UNINTERRUPTIBLE: u32 = 0x02;
    pub const STOPPED: u32 = 0x04;
    pub const TRACED: u32 = 0x08;
    pub const DEAD: u32 = 0x10;
    pub const ZOMBIE: u32 = 0x20;
    pub const PARKED: u32 = 0x40;
    pub const IDLE: u32 = 0x80;
    pub const PREEMPTED: u32 = 0x100;
    /// The bits that mean "went to sleep / stopped" rather than "still runnable".
    pub const SLEEP_MASK: u32 = 0xff;
}

/// Written by the agent into [`MAP_SCHED_CONFIG`] before the programs are attached. The field
/// offsets are those of the classic tracepoint records, read by the agent from
/// `/sys/kernel/tracing/events/sched/<event>/format` (defaults: kernel 6.x layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedConfig {
    /// CLOCK_MONOTONIC ns at attach; seeded states began before it.
    pub attach_ns: u64,
    /// The target's tgid (its pid). 0 disables the programs.
    pub tgid: u32,
    /// `SCHED_F_*` bits.
    pub flags: u32,
    /// sched_switch: offset of `pid_t prev_pid` (24).
    pub switch_prev_pid: u32,
    /// sched_switch: offset of `long prev_state` (32).
    pub switch_prev_state: u32,
    /// sched_switch: offset of `pid_t next_pid` (56).
    pub switch_next_pid: u32,
    /// sched_waking: offset of `pid_t pid` (24).
    pub waking_pid: u32,
    /// With [`SCHED_F_SPANS`]: shortest off-CPU span sent to [`MAP_SCHED_SPANS`].
    pub min_span_ns: u64,
}
const _: () = assert!(size_of::<SchedConfig>() == 40);

/// The scheduler's view of one thread of the target.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadSched {
    /// Last switch-in (0: none seen).
    pub on_since_ns: u64,
    /// Last switch-out (0: none seen, e.g. a seeded entry).
    pub off_since_ns: u64,
    /// Wake-up after the last switch-out (0: not woken since; cleared at switch-in/out).
    pub woken_ns: u64,
    /// Sum of the off-CPU periods seen whole (switch-out to switch-in).
    pub off_cpu_ns: u64,
    /// Sum of the on-CPU periods seen whole (switch-in to switch-out).
    pub on_cpu_ns: u64,
    /// Switch-outs seen.
    pub switches: u64,
    /// Wake-ups seen.
    pub wakeups: u64,
    /// Kernel stack id in [`MAP_KSTACKS`] taken at the last switch-out into a sleep, or -1.
    pub kstack_id: i64,
    /// `task_state` bits at the last switch-out (or, when seeded, from /proc's state letter).
    pub prev_state: u32,
    /// 1 while on a CPU, else 0.
    pub on_cpu: u32,
    /// tid of the task that did the last wake-up (any process; 0 is the idle task, i.e. an
    /// interrupt on an idle CPU). Meaningful once `wakeups` > 0.
    pub waker_tid: u32,
    /// `THREAD_F_*` bits.
    pub flags: u32,
    /// CPU of the last switch.
    pub cpu: u32,
    /// Explicit padding, always 0.
    pub _pad0: u32,
}
const _: () = assert!(size_of::<ThreadSched>() == 88);

/// One finished off-CPU span of a target thread (switch-out to switch-in), sent at the
/// switch-in with [`SCHED_F_SPANS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffCpuSpan {
    /// Switch-out (or the attach time with [`SPAN_F_BEFORE_ATTACH`]).
    pub off_ns: u64,
    /// Switch-in.
    pub on_ns: u64,
    /// The wake-up in between (0: none seen, e.g. a preempted thread, which needs none).
    pub woken_ns: u64,
    /// Kernel stack id in [`MAP_KSTACKS`] taken at the switch-out into a sleep, or -1.
    pub kstack_id: i64,
    pub tid: u32,
    /// `task_state` bits at the switch-out (or, seeded, from /proc's state letter).
    pub prev_state: u32,
    /// tid of the waker (any process; 0 is the idle task: an interrupt on an idle CPU).
    /// Meaningful when `woken_ns` != 0.
    pub waker_tid: u32,
    /// CPU of the switch-in.
    pub cpu: u32,
    /// `SPAN_F_*` bits.
    pub flags: u32,
    /// Explicit padding, always 0.
    pub _pad0: u32,
}
const _: () = assert!(size_of::<OffCpuSpan>() == 56);

#[cfg(feature = "user")]
mod pod_sched {
    // SAFETY: repr(C), Copy, integers only, no implicit padding (size asserts above).
    unsafe impl aya::Pod for super::SchedConfig {}
    unsafe impl aya::Pod for super::ThreadSched {}
    unsafe impl aya::Pod for super::OffCpuSpan {}
}

// --- A sleeping thread's user registers (for unwinding C frames) ---
//
// A task iterator (`iter/task`, BPF_TRACE_ITER) restricted to one tid by the agent (link info
// `bpf_iter_link_info.task.tid`, Linux >= 6.1) writes that thread's user-mode registers, as the
// kernel saved them on its last entry (`bpf_task_pt_regs`: `task_pt_regs()`, the top of its kernel
// stack), into the iterator's seq_file. For a thread asleep in a system call these are exactly
// its registers at the `syscall` instruction, which nothing else exposes without ptrace
// (/proc/PID/task/TID/syscall has only sp and pc, not the bp that DWARF CFI rules can need).

/// Program name of the task iterator in the eBPF object.
pub const PROG_TASK_REGS: &str = "task_regs";
/// Program name of the task iterator that writes a sleeping task's kernel stack: up to
/// [`KSTACK_DEPTH`] u64 return addresses, innermost first.
pub const PROG_TASK_KSTACK: &str = "task_kstack";

/// x86_64 `struct pt_regs` (arch/x86/include/asm/ptrace.h), the user registers of a task that
/// entered the kernel. The field order is the kernel's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub bp: u64,
    pub bx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    /// The system call number for a task in a system call, else -1.
    pub orig_ax: u64,
    pub ip: u64,
    pub cs: u64,
    pub flags: u64,
    pub sp: u64,
    pub ss: u64,
}
const _: () = assert!(size_of::<UserRegs>() == 168);

#[cfg(feature = "user")]
mod pod_regs {
    // SAFETY: repr(C), Copy, u64s only (size asserted above).
    unsafe impl aya::Pod for super::UserRegs {}
}

// --- Channel creation sites ---
//
// A uprobe on each `RET` of `runtime.makechan` (probes-ebpf/src/chansites.rs) records, under the
// new hchan's address, the return addresses that lead back to the `make(chan …)`; the agent
// looks up the channels goroutines block on and symbolizes them.

/// Program name of the makechan `RET` probe in the eBPF object.
pub const PROG_MAKECHAN_RET: &str = "makechan_ret";
/// Name of the LRU hash hchan address (u64) → [`ChanSite`].
pub const MAP_CHAN_SITES: &str = "CHAN_SITES";
/// Name of the per-CPU u64 counting the probe's hits (its cost, which the agent budgets).
pub const MAP_CHAN_SITE_HITS: &str = "CHAN_SITE_HITS";
/// Capacity of [`MAP_CHAN_SITES`]: the newest 64k channels made (about 6 MiB of kernel memory,
/// preallocated; the agent shrinks it to one entry when the probe is off).
pub const CHAN_SITES_MAX_ENTRIES: u32 = 65536;

/// Where one channel was made: three return addresses read at a `RET` of `runtime.makechan`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChanSite {
    /// [RSP]: the return address into makechan's caller.
    pub pc0: u64,
    /// [RBP+8]: the caller's return address (past a `runtime.makechan64` wrapper).
    pub pc1: u64,
    /// [[RBP]+8]: one frame further (past `reflect.makechan` and `reflect.MakeChan`).
    pub pc2: u64,
    /// `bpf_ktime_get_ns()` when the channel was made.
    pub ts_ns: u64,
}
const _: () = assert!(size_of::<ChanSite>() == 32);

#[cfg(feature = "user")]
mod pod_chansites {
    // SAFETY: repr(C), Copy, u64s only (size asserted above).
    unsafe impl aya::Pod for super::ChanSite {}
}
