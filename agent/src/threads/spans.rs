//! The history of the target threads' off-CPU spans, for `--timeline`: with
//! [`SchedOptions::spans_min_ns`](super::SchedOptions) set, the switch-in program
//! (probes-ebpf/src/sched.rs, `emit_span`) sends each finished off-CPU span (switch-out to
//! switch-in, at least the minimum long) into the `SCHED_SPANS` ring buffer. [`SpanRing`] drains
//! it on the session's timer (and when the kernel says the ring is filling) into a bounded
//! [`SpanHistory`], and at the end of the session [`SpanRing::finish`] symbolizes the spans'
//! kernel stacks into [`ThreadSpans`], which the timeline puts on the OS-thread tracks
//! ([`track`] keeps each track free of overlaps).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray, RingBuf, StackTraceMap};
use probes_ebpf::{
    MAP_KSTACKS, MAP_SCHED_SPANS, MAP_SCHED_SPANS_LOST, OffCpuSpan, SPAN_F_BEFORE_ATTACH,
    task_state,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{ThreadsError, kernel_stack, map_err, state_letter, state_name};

/// Shortest off-CPU span recorded by default (`--timeline-min-offcpu`): shorter ones are the
/// scheduler's ordinary churn, and a thread can then send at most a thousand a second.
pub const DEFAULT_MIN_SPAN: Duration = Duration::from_millis(1);
/// Most spans kept (56 bytes each): the newest win, the older ones are counted.
pub const MAX_SPANS: usize = 200_000;

/// What to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanOptions {
    /// Shortest span sent by the kernel.
    pub min_span_ns: u64,
    /// Most spans kept in memory.
    pub capacity: usize,
}

impl Default for SpanOptions {
    fn default() -> Self {
        Self {
            min_span_ns: DEFAULT_MIN_SPAN.as_nanos() as u64,
            capacity: MAX_SPANS,
        }
    }
}

/// The newest `capacity` spans, in arrival order; older ones are dropped and counted.
#[derive(Debug, Clone)]
pub struct SpanHistory {
    spans: VecDeque<OffCpuSpan>,
    capacity: usize,
    received: u64,
    dropped: u64,
}

impl SpanHistory {
    pub fn new(capacity: usize) -> Self {
        Self {
            spans: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            received: 0,
            dropped: 0,
        }
    }

    pub fn push(&mut self, s: OffCpuSpan) {
        self.received += 1;
        if self.capacity == 0 {
            self.dropped += 1;
            return;
        }
        if self.spans.len() == self.capacity {
            self.spans.pop_front();
            self.dropped += 1;
        }
        self.spans.push_back(s);
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Spans received in all, kept or not.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The oldest spans dropped to stay within the capacity.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn iter(&self) -> impl Iterator<Item = &OffCpuSpan> {
        self.spans.iter()
    }
}

/// The session's off-CPU history, as the timeline uses it.
#[derive(Debug, Clone, Default)]
pub struct ThreadSpans {
    /// The spans kept, in arrival order.
    pub spans: Vec<OffCpuSpan>,
    /// Thread names (/proc/PID/task/TID/comm), read when a thread's first span arrived.
    pub comms: BTreeMap<u32, String>,
    /// Kernel stack id → its functions, innermost first, scheduler frames dropped.
    pub kernel_stacks: BTreeMap<u32, Vec<String>>,
    /// The shortest span the kernel sent.
    pub min_span_ns: u64,
    /// Most spans kept.
    pub capacity: usize,
    /// Spans received, kept or not.
    pub received: u64,
    /// The oldest spans left out to stay within `capacity`.
    pub dropped_oldest: u64,
    /// Spans the kernel could not send (ring buffer full).
    pub lost_in_kernel: u64,
}

impl ThreadSpans {
    /// The kernel stack of a span, if one was captured and symbolized.
    pub fn kernel_stack(&self, s: &OffCpuSpan) -> &[String] {
        u32::try_from(s.kstack_id)
            .ok()
            .and_then(|id| self.kernel_stacks.get(&id))
            .map_or(&[], Vec::as_slice)
    }

    /// What the session should say about spans it does not have, if anything.
    pub fn warning(&self) -> Option<String> {
        if self.dropped_oldest == 0 && self.lost_in_kernel == 0 {
            return None;
        }
        Some(format!(
            "the timeline's OS-thread tracks miss off-CPU spans: {} oldest left out (at most \
             {} kept), {} lost in the kernel (ring buffer full)",
            self.dropped_oldest, self.capacity, self.lost_in_kernel
        ))
    }
}

/// The spans ring buffer of the loaded eBPF object, drained into a [`SpanHistory`].
pub struct SpanRing {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    history: SpanHistory,
    comms: BTreeMap<u32, String>,
    tgid: u32,
    opts: SpanOptions,
}

impl SpanRing {
    /// Takes the ring and its lost counter out of `ebpf` (the object whose scheduler programs
    /// [`super::attach_sched_with`] attached with spans on). Must run inside a tokio runtime:
    /// the ring's fd is registered for the kernel's wake-ups.
    pub fn open(ebpf: &mut Ebpf, tgid: u32, opts: SpanOptions) -> Result<Self, ThreadsError> {
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(ThreadsError::Missing(name))
        };
        let ring =
            RingBuf::try_from(take(ebpf, MAP_SCHED_SPANS)?).map_err(map_err(MAP_SCHED_SPANS))?;
        let lost = PerCpuArray::try_from(take(ebpf, MAP_SCHED_SPANS_LOST)?)
            .map_err(map_err(MAP_SCHED_SPANS_LOST))?;
        // SAFETY: the ring's fd is owned by the RingBuf inside the AsyncFd, open and unchanged
        // until both are dropped together.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| ThreadsError::SpansRing(e.into()))?;
        Ok(Self {
            ring,
            lost,
            history: SpanHistory::new(opts.capacity),
            comms: BTreeMap::new(),
            tgid,
            opts,
        })
    }

    /// Moves every span waiting in the ring into the history; returns how many.
    pub fn drain(&mut self) -> usize {
        drain_ring(
            self.ring.get_mut(),
            &mut self.history,
            &mut self.comms,
            self.tgid,
        )
    }

    /// Waits until the kernel wakes the agent (the ring is 1/8 full), then drains; never
    /// returns without a ring. For a `select!` branch next to the session's timers.
    pub async fn drain_when_filling(ring: &mut Option<SpanRing>) {
        let Some(r) = ring.as_mut() else {
            return std::future::pending().await;
        };
        match r.ring.readable_mut().await {
            Ok(mut guard) => {
                drain_ring(guard.get_inner_mut(), &mut r.history, &mut r.comms, r.tgid);
                guard.clear_ready();
            }
            // Not expected for a ring buffer fd; the timer still drains it.
            Err(_) => std::future::pending().await,
        }
    }

    /// The last drain, the kernel's lost count, and the spans' kernel stacks symbolized from
    /// `ebpf`'s stack map (call before the object is dropped).
    pub fn finish(mut self, ebpf: &Ebpf) -> ThreadSpans {
        self.drain();
        let lost_in_kernel = self
            .lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0);
        let ids: BTreeSet<u32> = self
            .history
            .iter()
            .filter_map(|s| u32::try_from(s.kstack_id).ok())
            .collect();
        let stacks = ebpf
            .map(MAP_KSTACKS)
            .and_then(|m| StackTraceMap::try_from(m).ok());
        let kernel_stacks = match &stacks {
            Some(m) => ids
                .into_iter()
                .filter_map(|id| {
                    let frames = kernel_stack(m, id)?;
                    Some((id, frames.into_iter().map(|f| f.function).collect()))
                })
                .collect(),
            None => BTreeMap::new(),
        };
        ThreadSpans {
            min_span_ns: self.opts.min_span_ns,
            capacity: self.opts.capacity,
            received: self.history.received(),
            dropped_oldest: self.history.dropped(),
            lost_in_kernel,
            spans: self.history.spans.into(),
            comms: self.comms,
            kernel_stacks,
        }
    }
}

fn drain_ring(
    ring: &mut RingBuf<MapData>,
    history: &mut SpanHistory,
    comms: &mut BTreeMap<u32, String>,
    tgid: u32,
) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        if item.len() < size_of::<OffCpuSpan>() {
            continue;
        }
        // SAFETY: OffCpuSpan is Pod (repr(C), integers only); read_unaligned copes with any
        // alignment of the ring buffer slot.
        let s = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<OffCpuSpan>()) };
        // The name now, while the thread most likely still exists (a track outlives it).
        comms.entry(s.tid).or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{tgid}/task/{}/comm", s.tid))
                .map(|c| c.trim_end().to_string())
                .unwrap_or_default()
        });
        history.push(s);
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Spans → timeline slices

/// One slice of a thread's track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice<'a> {
    pub start: u64,
    pub end: u64,
    pub span: &'a OffCpuSpan,
}

/// One thread's recorded spans as slices in time order, none overlapping another: a span is cut
/// to begin no earlier than the previous one ended (a seeded sleep's start is only the attach
/// time), and to end no later than `open_from`, where the report's own open span of the thread
/// (its current off-CPU state) begins; a span cut to nothing is left out. `spans` may be in any
/// order and hold other threads' spans (only `tid`'s are taken).
pub fn track<'a>(
    spans: impl IntoIterator<Item = &'a OffCpuSpan>,
    tid: u32,
    open_from: Option<u64>,
) -> Vec<Slice<'a>> {
    let mut mine: Vec<&OffCpuSpan> = spans.into_iter().filter(|s| s.tid == tid).collect();
    mine.sort_by_key(|s| (s.off_ns, s.on_ns));
    let limit = open_from.unwrap_or(u64::MAX);
    let mut out: Vec<Slice<'a>> = Vec::with_capacity(mine.len());
    let mut after = 0u64;
    for s in mine {
        let start = s.off_ns.max(after);
        let end = s.on_ns.min(limit);
        if end <= start {
            continue;
        }
        after = end;
        out.push(Slice {
            start,
            end,
            span: s,
        });
    }
    out
}

/// The state a span's thread went off CPU in, as a short label: the /proc letter, `R+` for a
/// preempted thread (still runnable), `R` for one that yielded.
pub fn state_label(prev_state: u32) -> &'static str {
    match state_letter(prev_state) {
        'R' if prev_state & task_state::PREEMPTED != 0 => "R+",
        'R' => "R",
        'S' => "S",
        'D' => "D",
        'T' => "T",
        't' => "t",
        'X' => "X",
        'Z' => "Z",
        'P' => "P",
        'I' => "I",
        _ => "?",
    }
}

/// The long name of a span's state: the /proc name of the sleep, or why a runnable thread was
/// off CPU.
pub fn state_description(prev_state: u32) -> &'static str {
    match state_label(prev_state) {
        "R+" => "preempted",
        "R" => "yielded",
        _ => state_name(state_letter(prev_state)),
    }
}

/// A slice's name: `off CPU (S: do_nanosleep)`, the innermost kernel function of the sleep
/// (scheduler frames dropped), or the state's long name without a stack.
pub fn slice_name(prev_state: u32, kernel_stack: &[String]) -> String {
    let what = kernel_stack
        .first()
        .map_or(state_description(prev_state), String::as_str);
    format!("off CPU ({}: {what})", state_label(prev_state))
}

/// Whether a span began before the attach (its start is the attach time, a lower bound).
pub fn before_attach(s: &OffCpuSpan) -> bool {
    s.flags & SPAN_F_BEFORE_ATTACH != 0
}

#[cfg(test)]
mod tests;
