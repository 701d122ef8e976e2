//! The OS-thread view (scheduler tracepoints) on a live cgo target, through the library:
//! - the thread blocked in C `read()` since before the attach is found by the seed from
//!   /proc/PID/task (state S, off CPU for at least the time since the attach, kernel frames of
//!   the blocked read from the `task_kstack` iterator, and from /proc without it); it and the
//!   thread deadlocked on a pthread mutex are the threads `thread_of_g` gives for the two
//!   goroutines in _Gsyscall;
//! - a thread that sleeps again after the attach (woken by a signal from the test) gets an exact
//!   since-time from the tracepoints, a wake-up, and a kernel stack captured in eBPF at its
//!   switch-out (kernel stacks on, as for a timeline), or read by the iterator (the default).

use std::process::Command;
use std::time::Duration;

use blockprobe::memory::ProcessMemory;
use blockprobe::native::taskregs::TaskRegs;
use blockprobe::probes::Attached;
use blockprobe::scan::{Scanner, status};
use blockprobe::session;
use blockprobe::threads::{
    SchedOptions, ThreadState, attach_sched_with, list_tasks, read_threads, read_threads_with,
    thread_of_g,
};
use blockprobe_tests::{Proc, kv, prepare};

fn names(t: &ThreadState) -> Vec<&str> {
    t.kernel_stack.iter().map(|f| f.function.as_str()).collect()
}

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "cgoblock") else {
        return;
    };
    let spawned_ns = session::monotonic_ns();
    let mut target = Proc::spawn(&mut Command::new(&fixture)).expect("start cgoblock");
    let ready = target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .expect("cgoblock ready");
    // The threads asleep in C: in read() on a pipe, and in a self-deadlocked pthread mutex.
    let read_tid: u32 = kv(&ready, "read_tid").parse().unwrap();
    let mutex_tid: u32 = kv(&ready, "mutex_tid").parse().unwrap();
    let ready_ns = session::monotonic_ns();
    // Let the blocked read age a little before the attach.
    std::thread::sleep(Duration::from_millis(200));
    let pid = target.pid();

    let (bin, exe) = session::open_target(pid).unwrap_or_else(|e| panic!("open target: {e}"));
    let mut attached =
        Attached::attach(pid, &bin, &[], 0).unwrap_or_else(|e| panic!("load the eBPF object: {e}"));
    let opts = SchedOptions {
        kernel_stacks: true,
        ..SchedOptions::default()
    };
    let info = attach_sched_with(attached.ebpf_mut(), pid, opts)
        .unwrap_or_else(|e| panic!("attach sched tracepoints: {e}"));
    let regs =
        TaskRegs::load(attached.ebpf_mut()).unwrap_or_else(|e| panic!("task iterators: {e}"));
    assert_eq!(
        info.tracepoints,
        ["sched/sched_switch", "sched/sched_waking"]
    );
    assert!(info.attach_ns > ready_ns);
    assert!(info.seeded >= 2, "{info:?}");

    // The goroutine inside C read() is in _Gsyscall; its M's procid is the blocked thread.
    let bias = session::load_bias(pid, &exe, &bin);
    let scan = Scanner::new(&bin, pid, bias).unwrap().scan().unwrap();
    let mem = ProcessMemory::new(pid);
    let mut in_syscall: Vec<u32> = scan
        .goroutines
        .iter()
        .filter(|g| g.status == status::SYSCALL)
        .map(|g| thread_of_g(&mem, &bin.layout, g.addr).expect("g.m.procid of a goroutine in C"))
        .collect();
    in_syscall.sort_unstable();
    let mut in_c = vec![read_tid, mutex_tid];
    in_c.sort_unstable();
    assert_eq!(in_syscall, in_c, "{:#?}", scan.goroutines);
    let reader_tid = read_tid;
    let tasks = list_tasks(pid).unwrap();
    assert!(
        tasks.iter().any(|t| t.tid == reader_tid && t.state == 'S'),
        "tid {reader_tid} not a sleeping thread of {pid}: {tasks:?}"
    );

    // An idle M parked on a futex (not sysmon, whose timed sleeps wake it by themselves), woken
    // by a signal the Go runtime ignores (SIGURG, its preemption signal), goes back to sleep
    // after the attach.
    let in_futex = |tid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stack"))
            .is_ok_and(|s| s.contains("futex"))
    };
    let other = tasks
        .iter()
        .find(|t| t.tid != reader_tid && t.tid != mutex_tid && t.state == 'S' && in_futex(t.tid))
        .unwrap_or_else(|| panic!("no idle M in a futex wait: {tasks:?}"))
        .tid;
    // SAFETY: gettid(2) has no preconditions.
    let my_tid = unsafe { libc::gettid() } as u32;
    let signal_ns = session::monotonic_ns();
    // SAFETY: tgkill(2) to a thread of our own child.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            pid as libc::c_long,
            other as libc::c_long,
            libc::SIGURG,
        )
    };
    assert_eq!(rc, 0, "tgkill: {}", std::io::Error::last_os_error());
    std::thread::sleep(Duration::from_millis(300));

    let now = session::monotonic_ns();
    let threads = read_threads_with(attached.ebpf(), now, Some(&regs))
        .unwrap_or_else(|e| panic!("read threads: {e}"));
    let dump = serde_json::to_string_pretty(&threads).unwrap();
    assert!(threads.len() >= tasks.len().min(2), "{dump}");

    // The reader: asleep since before the attach, seen by the seed only.
    let reader = threads
        .iter()
        .find(|t| t.tid == reader_tid)
        .unwrap_or_else(|| panic!("reader tid {reader_tid} missing: {dump}"));
    assert_eq!(
        (reader.on_cpu, reader.state, reader.state_name),
        (Some(false), 'S', "sleeping"),
        "{dump}"
    );
    assert!(reader.since_before_attach, "{dump}");
    assert_eq!(
        (reader.switches, reader.since_ns),
        (0, info.attach_ns),
        "{dump}"
    );
    let off = reader.off_cpu_for_ns.expect("off-CPU duration");
    // A lower bound: since the attach. It is blocked since before `ready`, and the attach came
    // less than a few seconds after it.
    assert_eq!(off, now - info.attach_ns);
    assert!(off >= 300_000_000, "{off} ns");
    assert!(off <= now - spawned_ns);
    assert!(
        now - ready_ns - off < 10_000_000_000,
        "attach took {} ns",
        now - ready_ns - off
    );
    let blocked_read = |t: &ThreadState| {
        let frames = names(t);
        assert!(
            frames.iter().any(|f| f.contains("pipe_read"))
                && frames.iter().any(|f| f.contains("vfs_read")),
            "kernel frames of the blocked read ({:?}): {frames:?}",
            t.kernel_stack_source
        );
    };
    // No switch-out since the attach, so no stack from one: the iterator reads it.
    assert_eq!(reader.kernel_stack_source, Some("task_iter"), "{dump}");
    blocked_read(reader);
    // Without the iterator, /proc says the same.
    let without =
        read_threads(attached.ebpf(), now).unwrap_or_else(|e| panic!("read threads: {e}"));
    let reader_procfs = without
        .iter()
        .find(|t| t.tid == reader_tid)
        .expect("reader");
    assert_eq!(reader_procfs.kernel_stack_source, Some("procfs"));
    blocked_read(reader_procfs);

    // The signalled thread: exact since-time, after the signal.
    let woken = threads
        .iter()
        .find(|t| t.tid == other)
        .unwrap_or_else(|| panic!("signalled tid {other} missing: {dump}"));
    assert!(!woken.since_before_attach, "{dump}");
    assert!(woken.switches >= 1 && woken.wakeups >= 1, "{dump}");
    // The signal's wake-up ran in this thread (tgkill → signal_wake_up → try_to_wake_up).
    assert_eq!(woken.waker_tid, Some(my_tid), "{dump}");
    assert_eq!((woken.on_cpu, woken.state), (Some(false), 'S'), "{dump}");
    assert!(
        woken.since_ns >= signal_ns && woken.since_ns <= now,
        "since {} not in [{signal_ns}, {now}]: {dump}",
        woken.since_ns
    );
    assert_eq!(woken.off_cpu_for_ns, Some(now - woken.since_ns));
    assert!(woken.on_cpu_total_ns > 0, "{dump}");
    assert_eq!(woken.kernel_stack_source, Some("ebpf"), "{dump}");
    let frames = names(woken);
    // Scheduler frames are dropped; the sleep is a syscall (futex or nanosleep for an idle M).
    assert!(
        !frames.is_empty() && !frames[0].contains("schedule"),
        "{frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.starts_with("do_syscall_64") || f.starts_with("entry_SYSCALL_64")),
        "{frames:?}"
    );

    assert!(target.child.try_wait().unwrap().is_none(), "target died");
    drop(attached);
}

blockprobe_tests::go_matrix!(run);
