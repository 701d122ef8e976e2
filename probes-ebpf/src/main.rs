//! blockprobe's eBPF programs. Built only for bpfel-unknown-none (by agent/build.rs through
//! aya-build); on the host this file compiles to an empty `main` so that workspace-wide cargo
//! commands do not trip over it.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod chansites;
#[cfg(target_arch = "bpf")]
mod programs;
#[cfg(target_arch = "bpf")]
mod sched;
#[cfg(target_arch = "bpf")]
mod taskregs;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
