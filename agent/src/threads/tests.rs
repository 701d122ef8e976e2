//! Unit tests of the pure parts of `threads` (and `thread_of_g` on our own memory).

use super::*;

#[test]
fn state_letters_round_trip() {
    for c in ['R', 'S', 'D', 'T', 't', 'X', 'Z', 'P', 'I'] {
        let bits = state_bits_from_letter(c).unwrap();
        assert_eq!(state_letter(bits), c, "{c}");
    }
    assert_eq!(state_bits_from_letter('W'), None);
    assert_eq!(state_bits_from_letter('?'), None);
    // Preempted ("R+" in the tracepoint's print format) is R.
    assert_eq!(state_letter(task_state::PREEMPTED), 'R');
    // Several bits: the lowest wins, as __print_flags lists them.
    assert_eq!(
        state_letter(task_state::UNINTERRUPTIBLE | task_state::IDLE),
        'D'
    );
    assert_eq!(state_name('S'), "sleeping");
    assert_eq!(state_name('D'), "disk sleep");
    assert_eq!(state_name('x'), "unknown");
}

#[test]
fn parses_task_stat() {
    let st = parse_task_stat("4242 (cgoblock) S 1 4242 4242 0 -1 4194560 120 0").unwrap();
    assert_eq!(
        st,
        TaskStat {
            tid: 4242,
            comm: "cgoblock".into(),
            state: 'S'
        }
    );
    // A comm with spaces and parentheses: the state follows the last ')'.
    let st = parse_task_stat("7 (a) b (c)) D 1 2 3").unwrap();
    assert_eq!((st.tid, st.comm.as_str(), st.state), (7, "a) b (c)", 'D'));
    assert_eq!(parse_task_stat(""), None);
    assert_eq!(parse_task_stat("x (y) S 1"), None);
    assert_eq!(parse_task_stat("1 (y) SS 1"), None);
    assert_eq!(parse_task_stat("1 (y)"), None);
    // Our own threads.
    let me = list_tasks(std::process::id()).unwrap();
    assert!(me.iter().any(|t| t.tid == std::process::id()));
    assert!(matches!(
        list_tasks(0x3fff_fff0),
        Err(ThreadsError::NoSuchProcess { .. })
    ));
}

const SWITCH_FORMAT: &str = "name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;

print fmt: \"prev_pid=%d\", REC->prev_pid
";

#[test]
fn parses_tracepoint_format() {
    assert_eq!(format_field(SWITCH_FORMAT, "prev_pid"), Some((24, 4)));
    assert_eq!(format_field(SWITCH_FORMAT, "prev_state"), Some((32, 8)));
    assert_eq!(format_field(SWITCH_FORMAT, "next_pid"), Some((56, 4)));
    assert_eq!(format_field(SWITCH_FORMAT, "prev_comm"), Some((8, 16)));
    assert_eq!(format_field(SWITCH_FORMAT, "pid"), None);
    assert_eq!(
        format_field("garbage\nfield:int x;offset:zz;size:4;", "x"),
        None
    );
}

#[test]
fn live_tracefs_offsets_if_mounted() {
    for d in TRACEFS_DIRS {
        if Path::new(d).join("events/sched").is_dir() {
            let cfg = read_offsets(Path::new(d)).unwrap();
            assert_eq!(
                (
                    cfg.switch_prev_pid,
                    cfg.switch_prev_state,
                    cfg.switch_next_pid,
                    cfg.waking_pid
                ),
                (24, 32, 56, 24),
                "kernel 6.x record layout"
            );
            return;
        }
    }
}

fn entry(f: impl FnOnce(&mut ThreadSched)) -> ThreadSched {
    let mut t = ThreadSched {
        kstack_id: -1,
        ..ThreadSched::default()
    };
    f(&mut t);
    t
}

#[test]
fn describes_each_kind_of_entry() {
    let (attach, now) = (1_000, 10_000);
    // Seeded sleeper: since the attach, a lower bound.
    let s = describe(1, &seed_entry('S').unwrap(), attach, now);
    assert_eq!(
        (s.on_cpu, s.state, s.state_name),
        (Some(false), 'S', "sleeping")
    );
    assert!(s.since_before_attach);
    assert_eq!(
        (s.since_ns, s.in_state_for_ns, s.off_cpu_for_ns),
        (attach, 9_000, Some(9_000))
    );
    assert_eq!(s.cpu, None);
    // Seeded, then woken (not yet on a CPU): runnable since the wake-up, off since before.
    let mut sw = seed_entry('S').unwrap();
    sw.woken_ns = 9_000;
    let sw = describe(8, &sw, attach, now);
    assert_eq!(
        (sw.state, sw.state_name, sw.since_ns),
        ('R', "runnable (woken)", 9_000)
    );
    assert_eq!(
        (sw.since_before_attach, sw.off_cpu_for_ns),
        (false, Some(9_000))
    );
    // Seeded R: on or off CPU is unknown.
    let r = describe(2, &seed_entry('R').unwrap(), attach, now);
    assert_eq!((r.on_cpu, r.state, r.off_cpu_for_ns), (None, 'R', None));
    // Went to sleep after the attach: exact.
    let d = describe(
        3,
        &entry(|t| {
            t.off_since_ns = 4_000;
            t.prev_state = task_state::UNINTERRUPTIBLE;
            t.switches = 2;
            t.cpu = 1;
        }),
        attach,
        now,
    );
    assert_eq!(
        (d.state, d.state_name, d.since_before_attach),
        ('D', "disk sleep", false)
    );
    assert_eq!(
        (d.since_ns, d.off_cpu_for_ns, d.cpu),
        (4_000, Some(6_000), Some(1))
    );
    // Woken, waiting for a CPU.
    let w = describe(
        4,
        &entry(|t| {
            t.off_since_ns = 4_000;
            t.woken_ns = 9_000;
            t.prev_state = task_state::INTERRUPTIBLE;
            t.waker_tid = 77;
            t.wakeups = 1;
        }),
        attach,
        now,
    );
    assert_eq!(
        (w.state, w.state_name, w.since_ns),
        ('R', "runnable (woken)", 9_000)
    );
    assert_eq!((w.off_cpu_for_ns, w.waker_tid), (Some(6_000), Some(77)));
    // Preempted.
    let p = describe(
        5,
        &entry(|t| {
            t.off_since_ns = 8_000;
            t.prev_state = task_state::PREEMPTED;
        }),
        attach,
        now,
    );
    assert_eq!((p.state, p.state_name), ('R', "runnable (preempted)"));
    // Running.
    let on = describe(
        6,
        &entry(|t| {
            t.on_cpu = 1;
            t.on_since_ns = 9_500;
        }),
        attach,
        now,
    );
    assert_eq!(
        (on.on_cpu, on.state, on.in_state_for_ns, on.off_cpu_for_ns),
        (Some(true), 'R', 500, None)
    );
    // A clock that went "backwards" (now before since) saturates, never panics.
    let back = describe(7, &entry(|t| t.off_since_ns = 20_000), attach, now);
    assert_eq!(back.in_state_for_ns, 0);
    assert_eq!(seed_entry('?'), None);
}

#[test]
fn thread_of_g_validates() {
    use crate::goruntime::layout::GoLayout;
    let Some(layout) = GoLayout::for_version("go1.27.3") else {
        panic!("no 1.27 layout");
    };
    let mem = ProcessMemory::new(std::process::id());
    // Build a fake g and m in our own memory.
    let mut m = vec![0u64; (layout.m.size as usize).div_ceil(8) + 1];
    let mut g = vec![0u64; (layout.g.size as usize).div_ceil(8) + 1];
    let g_addr = g.as_ptr() as u64;
    let m_addr = m.as_ptr() as u64;
    g[layout.g.m as usize / 8] = m_addr;
    m[layout.m.curg as usize / 8] = g_addr;
    m[layout.m.procid as usize / 8] = 4242;
    assert_eq!(thread_of_g(&mem, &layout, g.as_ptr() as u64), Some(4242));
    // The M runs another g: not ours.
    m[layout.m.curg as usize / 8] = g_addr + 8;
    assert_eq!(thread_of_g(&mem, &layout, g.as_ptr() as u64), None);
    m[layout.m.curg as usize / 8] = g_addr;
    // Out-of-range procid.
    m[layout.m.procid as usize / 8] = u64::MAX;
    assert_eq!(thread_of_g(&mem, &layout, g.as_ptr() as u64), None);
    // No M.
    g[layout.g.m as usize / 8] = 0;
    assert_eq!(thread_of_g(&mem, &layout, g.as_ptr() as u64), None);
    // Unmapped g, unaligned g.
    assert_eq!(thread_of_g(&mem, &layout, 0x1000), None);
    assert_eq!(thread_of_g(&mem, &layout, 0), None);
    assert_eq!(thread_of_g(&mem, &layout, g_addr + 1), None);
    drop((m, g));
}
