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

/// Ring buffer size. A park/ready pair is 112 bytes, so 8 MiB holds ~75k pairs: enough for a
/// burst of a channel ping-pong between two readiness wake-ups of the agent.
pub const EVENTS_RING_BYTES: u32 = 8 << 20;

/// Offsets into Go runtime structures, as data: they are derived per target binary (DWARF, or a
/// per-Go-version table for stripped binaries) and written into [`MAP_LAYOUT`] before attach.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeLayout {
    /// `runtime.g.goid` (src/runtime/runtime2.go).
    pub g_goid: u32,
    /// Explicit padding, always 0.
    pub _pad0: u32,
}
const _: () = assert!(size_of::<RuntimeLayout>() == 8);

/// What a [`GoEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum EventKind {
    /// Entry of `runtime.gopark`: the current goroutine is about to block.
    Park = 1,
    /// Entry of `runtime.ready`: a parked goroutine is made runnable by the current one.
    Ready = 2,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            1 => Ok(Self::Park),
            2 => Ok(Self::Ready),
            other => Err(other),
        }
    }
}

/// One event from a uprobe on the Go runtime.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, the clock of Go's trace `ClockSnapshot`.
    pub ts_ns: u64,
    /// The goroutine the event is about (Park: the current g; Ready: the g made runnable).
    pub goid: u64,
    /// Park: gopark's `lock` argument (for channel waits `&hchan.lock`). Ready: 0.
    pub obj: u64,
    /// Return address on entry, i.e. the PC in the runtime function that called the probed one
    /// (`chanrecv`, `selectgo`, `semacquire1`, ...).
    pub caller_pc: u64,
    /// Ready: goid of the goroutine doing the wake-up (the current g). Park: 0.
    pub peer_goid: u64,
    /// OS thread id (the Go M's procid, and the M id in Go's execution traces).
    pub tid: u32,
    /// An [`EventKind`] as u32.
    pub kind: u32,
    /// Park: the raw `waitReason` number (its meaning depends on the Go version; the agent maps it
    /// through the target's `runtime.waitReasonStrings`). Ready: 0.
    pub reason: u32,
    /// Explicit padding, always 0.
    pub _pad0: u32,
}
const _: () = assert!(size_of::<GoEvent>() == 56);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are repr(C), Copy, contain only integers, and have no implicit padding
    // (checked by the size asserts above).
    unsafe impl aya::Pod for super::RuntimeLayout {}
    unsafe impl aya::Pod for super::GoEvent {}
}
