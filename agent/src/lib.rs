//! blockprobe: finds out why a running Go program is stuck.
//!
//! - [`goruntime`]: what a Go binary is (version, symbols, struct layouts, wait reasons).
//! - [`probes`]: the eBPF uprobes on the Go runtime, loaded and attached with aya.
//! - [`model`]: the live goroutine model built from probe events.
//! - [`session`]: one attach session, from attach to report.
//! - [`report`]: the report, as JSON and as text.
//! - [`threads`]: the OS-thread view (scheduler tracepoints), and goroutine → thread.
//! - [`kallsyms`]: kernel stack symbolization.
//! - [`chansites`]: where the channels goroutines block on were made (`runtime.makechan`'s RETs).
pub mod chansites;
pub mod daemon;
pub mod detect;
pub mod dump;
pub mod events;
pub mod fuse;
pub mod goruntime;
pub mod gotrace;
pub mod health;
pub mod html;
pub mod kallsyms;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod native;
pub mod precise;
pub mod privileges;
pub mod probes;
pub mod procfs;
pub mod report;
pub mod reportview;
pub mod scan;
pub mod scanmode;
pub mod session;
pub mod summary;
pub mod syncwait;
pub mod threads;
pub mod timeline;
pub mod top;
pub mod unwind;
