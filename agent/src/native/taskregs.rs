//! A sleeping thread's user registers, from the `task_regs` task iterator
//! (probes-ebpf/src/taskregs.rs), and a consistent snapshot of its stack; and its kernel stack,
//! from the `task_kstack` iterator.
//!
//! aya attaches iterators without link info (every task of the system); this one is attached
//! per thread with `bpf_iter_link_info.task.tid` (include/uapi/linux/bpf.h, Linux >= 6.1), so the
//! program visits that thread alone and needs no task_struct field offsets.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use aya::Ebpf;
use aya::programs::Iter;
use probes_ebpf::{KSTACK_DEPTH, PROG_TASK_KSTACK, PROG_TASK_REGS, UserRegs};

use crate::memory::ProcessMemory;

#[derive(Debug, thiserror::Error)]
pub enum TaskRegsError {
    #[error("the eBPF object has no {0} program")]
    Missing(&'static str),
    #[error("loading the task iterator: {0}")]
    Load(String),
    #[error("BTF: {0}")]
    Btf(String),
    #[error("bpf({cmd}) for thread {tid}: {err}")]
    Syscall {
        cmd: &'static str,
        tid: u32,
        err: std::io::Error,
    },
    #[error("thread {tid}: the iterator wrote {got} bytes, not one pt_regs")]
    Short { tid: u32, got: usize },
    #[error("thread {tid}: the kernel-stack iterator wrote {got} bytes, not a stack")]
    BadStack { tid: u32, got: usize },
    #[error("thread {tid} is not asleep in a system call")]
    NotAsleep { tid: u32 },
    #[error("thread {tid} ran while it was being read")]
    Moved { tid: u32 },
}

/// The loaded `task_regs` program, and `task_kstack` when the kernel took it.
pub struct TaskRegs {
    prog: OwnedFd,
    kstack: Option<OwnedFd>,
}

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
/// `enum bpf_attach_type`: BPF_TRACE_ITER.
const BPF_TRACE_ITER: u32 = 28;

/// `union bpf_iter_link_info`, its `task` member (tid, pid, pid_fd) and the union's size (its
/// `cgroup` member is 16 bytes).
#[repr(C)]
#[derive(Default)]
struct IterLinkInfo {
    tid: u32,
    pid: u32,
    pid_fd: u32,
    _pad: u32,
}

/// `union bpf_attr` as BPF_LINK_CREATE reads it for an iterator: prog_fd, target_fd,
/// attach_type, flags, then `iter_info` (u64) and `iter_info_len`. The rest stays zero, as the
/// kernel requires of the bytes it does not know.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    iter_info: u64,
    iter_info_len: u32,
    _rest: [u32; 25],
}
const _: () = assert!(size_of::<LinkCreateAttr>() == 128);

fn bpf(cmd: libc::c_long, attr: *const u8, size: usize) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` points to `size` readable bytes laid out as union bpf_attr for `cmd`.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl TaskRegs {
    /// Loads the iterator from `ebpf` (the session's object). Needs kernel BTF.
    /// Both iterators are loaded with one parse of the kernel's BTF; a kernel that refuses
    /// `task_kstack` (no `bpf_get_task_stack` for iterators) leaves kernel stacks to /proc.
    pub fn load(ebpf: &mut Ebpf) -> Result<Self, TaskRegsError> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| TaskRegsError::Btf(e.to_string()))?;
        Self::load_with(ebpf, &btf)
    }

    /// [`TaskRegs::load`] with the kernel's BTF already parsed.
    pub fn load_with(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<Self, TaskRegsError> {
        let prog = load_iter(ebpf, btf, PROG_TASK_REGS)?;
        let kstack = load_iter(ebpf, btf, PROG_TASK_KSTACK)
            .inspect_err(|e| tracing::debug!("no kernel stacks from the task iterator: {e}"))
            .ok();
        Ok(Self { prog, kstack })
    }

    /// Another handle on the same loaded program (loading it again would parse the kernel's BTF
    /// again: tens of megabytes for a moment).
    pub fn try_clone(&self) -> Result<Self, TaskRegsError> {
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| TaskRegsError::Load(e.to_string()))
        };
        Ok(Self {
            prog: dup(&self.prog)?,
            kstack: self.kstack.as_ref().map(dup).transpose()?,
        })
    }

    /// The kernel stack of thread `tid` (return addresses, innermost first), as
    /// `bpf_get_task_stack` reads it now: meaningful while the thread is off CPU. None when
    /// the kernel has no `task_kstack` iterator.
    pub fn kernel_stack(&self, tid: u32) -> Option<Result<Vec<u64>, TaskRegsError>> {
        let prog = self.kstack.as_ref()?;
        Some(
            run_iter(prog, tid, 8 * KSTACK_DEPTH as usize).and_then(|out| {
                if out.is_empty() || out.len() % 8 != 0 {
                    return Err(TaskRegsError::BadStack {
                        tid,
                        got: out.len(),
                    });
                }
                Ok(out
                    .chunks_exact(8)
                    .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
                    .take_while(|&ip| ip != 0)
                    .collect())
            }),
        )
    }

    /// The user registers the kernel saved when thread `tid` last entered it. They are the
    /// thread's current registers only while it stays in the kernel: see [`snapshot`].
    pub fn read(&self, tid: u32) -> Result<UserRegs, TaskRegsError> {
        let out = run_iter(&self.prog, tid, size_of::<UserRegs>())?;
        if out.len() != size_of::<UserRegs>() {
            return Err(TaskRegsError::Short {
                tid,
                got: out.len(),
            });
        }
        // SAFETY: UserRegs is repr(C) u64s; the length was checked.
        Ok(unsafe { std::ptr::read_unaligned(out.as_ptr() as *const UserRegs) })
    }
}

fn load_iter(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    name: &'static str,
) -> Result<OwnedFd, TaskRegsError> {
    let prog: &mut Iter = ebpf
        .program_mut(name)
        .ok_or(TaskRegsError::Missing(name))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| TaskRegsError::Load(e.to_string()))?;
    if prog.fd().is_err() {
        prog.load("task", btf)
            .map_err(|e| TaskRegsError::Load(format!("{name}: {e:#}")))?;
    }
    prog.fd()
        .map_err(|e| TaskRegsError::Load(e.to_string()))?
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| TaskRegsError::Load(e.to_string()))
}

/// Runs the task iterator `prog` over thread `tid` alone and returns what it wrote.
fn run_iter(prog: &OwnedFd, tid: u32, expect: usize) -> Result<Vec<u8>, TaskRegsError> {
    let info = IterLinkInfo {
        tid,
        ..IterLinkInfo::default()
    };
    let attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: 0,
        attach_type: BPF_TRACE_ITER,
        flags: 0,
        iter_info: &info as *const IterLinkInfo as u64,
        iter_info_len: size_of::<IterLinkInfo>() as u32,
        _rest: [0; 25],
    };
    let sys = |cmd, err| TaskRegsError::Syscall { cmd, tid, err };
    let link = bpf(
        BPF_LINK_CREATE,
        &attr as *const LinkCreateAttr as *const u8,
        size_of::<LinkCreateAttr>(),
    )
    .map_err(|e| sys("BPF_LINK_CREATE", e))?;
    // union bpf_attr for BPF_ITER_CREATE: link_fd, flags.
    let mut iter_attr = [0u32; 32];
    iter_attr[0] = link.as_raw_fd() as u32;
    let iter = bpf(BPF_ITER_CREATE, iter_attr.as_ptr() as *const u8, 128)
        .map_err(|e| sys("BPF_ITER_CREATE", e))?;
    let mut out = Vec::with_capacity(expect);
    File::from(iter)
        .read_to_end(&mut out)
        .map_err(|e| sys("read", e))?;
    Ok(out)
}

/// A thread asleep in a system call: its registers and the top `window` bytes of its stack.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub regs: UserRegs,
    /// The stack from `regs.sp` up (fewer bytes where the mapping ends).
    pub stack: Vec<u8>,
}

/// What /proc/PID/task/TID/syscall says of a thread blocked in a system call: its number, sp and
/// pc (fs/proc/base.c `proc_pid_syscall`; "running" for a thread not in one).
pub fn parse_proc_syscall(text: &str) -> Option<(u64, u64, u64)> {
    let f: Vec<&str> = text.split_ascii_whitespace().collect();
    if f.len() < 9 {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Some((f[0].parse().ok()?, hex(f[7])?, hex(f[8])?))
}

/// The thread's context-switch counts (voluntary, involuntary) from its status file.
fn switches(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
    ))
}

/// The registers and stack window of thread `tid` of `pid`, taken while it sleeps in a system
/// call, and checked to be of one and the same sleep: the thread's context-switch counts are the
/// same before and after, and the registers agree with what /proc says of the system call (its
/// number, sp and pc). A thread that is running, or that ran meanwhile, gives an error, never
/// mixed registers and stack.
pub fn snapshot(
    regs: &TaskRegs,
    mem: &ProcessMemory,
    pid: u32,
    tid: u32,
    window: usize,
) -> Result<Snapshot, TaskRegsError> {
    let dir = format!("/proc/{pid}/task/{tid}");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
    let before = read("status").as_deref().and_then(switches);
    let sys = read("syscall")
        .as_deref()
        .and_then(parse_proc_syscall)
        .ok_or(TaskRegsError::NotAsleep { tid })?;
    let r = regs.read(tid)?;
    if (r.orig_ax, r.sp, r.ip) != sys {
        return Err(TaskRegsError::Moved { tid });
    }
    let mut stack = vec![0u8; window];
    // A window running past the end of the stack mapping is cut at the mapping's end.
    let mut len = window;
    while len >= 64 && mem.read(r.sp, &mut stack[..len]).is_err() {
        len = (len / 2) & !7;
    }
    if len < 64 {
        return Err(TaskRegsError::Moved { tid });
    }
    stack.truncate(len);
    let after = read("status").as_deref().and_then(switches);
    if before.is_none() || before != after {
        return Err(TaskRegsError::Moved { tid });
    }
    Ok(Snapshot { regs: r, stack })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_syscall_lines() {
        // A thread of tests/fixtures/cgoblock blocked in read(2), and one in futex(2).
        let read =
            "0 0x5 0x7f1df205ce17 0x1 0x7f1e39cdeb60 0x0 0x0 0x7f1df205cde0 0x7f1e39dc72ec\n";
        assert_eq!(
            parse_proc_syscall(read),
            Some((0, 0x7f1df205cde0, 0x7f1e39dc72ec))
        );
        let futex = "202 0x57e798 0x80 0x0 0x0 0x0 0x0 0x7ffceb92a160 0x481f43";
        assert_eq!(
            parse_proc_syscall(futex),
            Some((202, 0x7ffceb92a160, 0x481f43))
        );
        assert_eq!(parse_proc_syscall("running\n"), None);
        assert_eq!(parse_proc_syscall("-1 0x7ffc 0x4000\n"), None);
    }

    #[test]
    fn switch_counts() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(switches(status), Some((12, 3)));
        assert_eq!(switches("Name:\tx\n"), None);
    }
}
