//! `blockprobe daemon` on three fixture processes: one keeps running, one exits, one execs into
//! another Go program. The daemon serves metrics for each while it lives, re-attaches after the
//! exec, drops the one that exited, and leaks nothing: the BPF maps, programs and links of the
//! kernel, enumerated with the bpf() syscall, lose every object a session held once it ends.

mod metrics_common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use blockprobe_tests::{Proc, Scratch, blockprobe_bin, prepare, source_line};
use metrics_common::{Sample, find, get, metrics_addr, parse};

/// bpf(2) commands (include/uapi/linux/bpf.h, enum bpf_cmd).
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_MAP_GET_NEXT_ID: libc::c_long = 12;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;

/// `union bpf_attr` as the *_GET_NEXT_ID commands read it.
#[repr(C)]
#[derive(Default)]
struct NextIdAttr {
    start_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Every id of one kind of BPF object in the kernel, walked with BPF_*_GET_NEXT_ID.
fn bpf_ids(cmd: libc::c_long) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    let mut attr = NextIdAttr::default();
    loop {
        // SAFETY: bpf(2) reads and writes the attr we pass, of the size we pass.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &mut attr as *mut NextIdAttr,
                std::mem::size_of::<NextIdAttr>(),
            )
        };
        if r != 0 {
            // ENOENT: the last one.
            break;
        }
        ids.insert(attr.next_id);
        attr.start_id = attr.next_id;
    }
    ids
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct BpfObjects {
    maps: BTreeSet<u32>,
    progs: BTreeSet<u32>,
    links: BTreeSet<u32>,
}

impl BpfObjects {
    /// Everything in the kernel now.
    fn kernel() -> Self {
        Self {
            maps: bpf_ids(BPF_MAP_GET_NEXT_ID),
            progs: bpf_ids(BPF_PROG_GET_NEXT_ID),
            links: bpf_ids(BPF_LINK_GET_NEXT_ID),
        }
    }

    /// What `pid` holds open, from its fds' /proc fdinfo (`map_id`, `prog_id`, `link_id`).
    fn held_by(pid: u32) -> Self {
        let mut out = Self::default();
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            return out;
        };
        for e in rd.flatten() {
            let Ok(info) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let field = |k: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(k)?.trim().parse::<u32>().ok())
            };
            if let Some(id) = field("link_id:") {
                out.links.insert(id);
            } else if let Some(id) = field("map_id:") {
                out.maps.insert(id);
            } else if info.contains("prog_type:")
                && let Some(id) = field("prog_id:")
            {
                out.progs.insert(id);
            }
        }
        out
    }

    /// The same objects, read until two reads 200 ms apart agree (a snapshot may open an
    /// iterator for a moment).
    fn held_steadily(pid: u32) -> Self {
        let mut last = Self::held_by(pid);
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(200));
            let now = Self::held_by(pid);
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the daemon's BPF objects never settled: {last:?}");
    }

    /// Which of `objects` the kernel still has after up to 5 s: it frees a link (and the program
    /// and maps it holds) from a workqueue once the last fd is closed, a moment later.
    fn still_in_kernel(objects: &BTreeSet<(char, u32)>) -> Vec<(char, u32)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let kernel = Self::kernel().all();
            let left: Vec<_> = objects.intersection(&kernel).copied().collect();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn all(&self) -> BTreeSet<(char, u32)> {
        let tag = |c: char, s: &BTreeSet<u32>| s.iter().map(move |&i| (c, i)).collect::<Vec<_>>();
        tag('m', &self.maps)
            .into_iter()
            .chain(tag('p', &self.progs))
            .chain(tag('l', &self.links))
            .collect()
    }
}

fn scrape(addr: std::net::SocketAddr) -> Vec<Sample> {
    parse(&get(&format!("http://{addr}/metrics")).expect("scrape the daemon"))
}

/// Scrapes until `ok` holds, or panics with the last scrape after `within`.
fn until(
    addr: std::net::SocketAddr,
    within: Duration,
    what: &str,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + within;
    loop {
        let s = scrape(addr);
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not after {within:?}; last scrape: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pids `blockprobe_target_info` lists, with their comm.
fn targets(s: &[Sample]) -> BTreeSet<(String, String)> {
    find(s, "blockprobe_target_info", &[])
        .iter()
        .map(|t| (t.labels["pid"].clone(), t.labels["comm"].clone()))
        .collect()
}

fn leaked(s: &[Sample], pid: &str, comm: &str, line: usize) -> f64 {
    let site_end = format!("/leakticker/main.go:{line}");
    find(
        s,
        "blockprobe_blocked_goroutines_by_site",
        &[("pid", pid), ("comm", comm)],
    )
    .iter()
    .filter(|x| x.labels["site"].ends_with(&site_end))
    .map(|x| x.value)
    .sum()
}

#[test]
fn daemon_follows_processes_and_leaks_nothing() {
    let Some(fixture) = prepare("1.27", "default", "leakticker") else {
        return;
    };
    let dir = Scratch::new("daemon");
    // Copies under the scratch dir, so `--match path` picks these and nothing else on the host
    // (other tests' Go processes included); the exec target is a Go program of its own.
    let lt = dir.path("lt");
    let next = dir.path("lt-next");
    std::fs::copy(&fixture, &lt).unwrap();
    std::fs::copy(&fixture, &next).unwrap();
    let leak_line = source_line("leakticker", "// GO:leak");

    let start = |args: &[&str]| {
        let mut p = Proc::spawn(Command::new(&lt).args(["-every", "100ms"]).args(args)).unwrap();
        p.expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
            .unwrap();
        p
    };
    let stays = start(&[]);
    // Told when to exit or exec, once the daemon watches all three.
    let mut exits = start(&["-control"]);
    let mut execs = start(&["-control", "-exec", next.to_str().unwrap()]);
    let (a, b, c) = (
        stays.pid().to_string(),
        exits.pid().to_string(),
        execs.pid().to_string(),
    );

    let before = BpfObjects::kernel();
    let match_dir = format!("^{}/", regex_escape(dir.0.to_str().unwrap()));
    let mut daemon = Proc::spawn(
        Command::new(blockprobe_bin())
            .args(["daemon", "--metrics", "127.0.0.1:0", "--poll", "200ms"])
            .args(["--scan-interval", "100ms", "--match", "path", &match_dir]),
    )
    .unwrap();
    let addr = metrics_addr(&mut daemon);

    // All three, each with its leak.
    let lt_comm = "lt".to_string();
    let s = until(
        addr,
        Duration::from_secs(20),
        "three targets leaking",
        |s| {
            let t = targets(s);
            [&a, &b, &c].iter().all(|p| {
                t.contains(&((*p).clone(), lt_comm.clone())) && leaked(s, p, "lt", leak_line) >= 3.0
            })
        },
    );
    assert_eq!(
        targets(&s).len(),
        3,
        "only the matching processes: {:?}",
        targets(&s)
    );
    assert_eq!(find(&s, "blockprobe_agent_targets", &[])[0].value, 3.0);
    let held3 = BpfObjects::held_steadily(daemon.pid());
    let per_session = held3.all().len() / 3;
    eprintln!(
        "3 sessions hold {} maps, {} programs, {} links",
        held3.maps.len(),
        held3.progs.len(),
        held3.links.len()
    );
    assert!(per_session > 0, "the daemon holds no BPF object: {held3:?}");
    assert_eq!(held3.all().len(), 3 * per_session, "{held3:?}");

    // One exits, one execs: the first goes, the second comes back as the new program.
    exits.send_line("exit").unwrap();
    execs.send_line("exec").unwrap();
    exits.wait_timeout(Duration::from_secs(20)).unwrap();
    execs
        .expect_stdout(Duration::from_secs(20), |l| l == "exec")
        .unwrap();
    let s = until(
        addr,
        Duration::from_secs(20),
        "exit and exec followed",
        |s| {
            let t = targets(s);
            t.len() == 2
            && t.contains(&(a.clone(), "lt".into()))
            && t.contains(&(c.clone(), "lt-next".into()))
            && leaked(s, &c, "lt-next", leak_line) >= 3.0
            // The daemon's own counts follow at its next poll.
            && find(s, "blockprobe_daemon_sessions_ended_total", &[])
                .first()
                .is_some_and(|x| x.value >= 2.0)
        },
    );
    let binary = &find(&s, "blockprobe_target_info", &[("pid", &c)])[0].labels["binary"];
    assert!(binary.ends_with("/lt-next"), "{binary}");
    assert!(find(&s, "blockprobe_daemon_attaches_total", &[])[0].value >= 4.0);
    assert!(find(&s, "blockprobe_daemon_sessions_ended_total", &[])[0].value >= 2.0);

    // Two sessions now: the two that ended let go of theirs, and the kernel freed them.
    let held2 = BpfObjects::held_steadily(daemon.pid());
    assert_eq!(held2.all().len(), 2 * per_session, "{held2:?} vs {held3:?}");
    let released: BTreeSet<_> = held3.all().difference(&held2.all()).copied().collect();
    assert_eq!(released.len(), 2 * per_session);
    let still = BpfObjects::still_in_kernel(&released);
    assert!(
        still.is_empty(),
        "ended sessions' BPF objects still in the kernel: {still:?}"
    );

    // Stopped: every object any session held is gone, and nothing of ours is new.
    daemon.signal(libc::SIGINT);
    let st = daemon.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(st.success(), "{:?}", daemon.drain_stderr());
    let ours: BTreeSet<_> = held3.all().union(&held2.all()).copied().collect();
    let left = BpfObjects::still_in_kernel(&ours);
    let after = BpfObjects::kernel();
    assert!(
        left.is_empty(),
        "BPF objects left after the daemon stopped: {left:?}"
    );
    let new: BTreeSet<_> = after.all().difference(&before.all()).copied().collect();
    assert!(new.is_disjoint(&ours));
    drop(stays);
}

/// A session run in this process, publishing into a hub, ended by its stop signal (what the
/// daemon does to each session when it stops), not by a Unix signal: the target leaves the hub,
/// the session reports, and this process holds no BPF object any more.
#[test]
fn a_session_publishes_and_stops_on_its_signal() {
    use blockprobe::metrics::{Hub, SessionMetrics};
    use blockprobe::session::{Mode, SessionOptions, TargetSpec};

    let Some(fixture) = prepare("1.27", "default", "leakticker") else {
        return;
    };
    let leak_line = source_line("leakticker", "// GO:leak");
    let mut target = Proc::spawn(Command::new(&fixture).args(["-every", "50ms"])).unwrap();
    target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .unwrap();
    let me = std::process::id();
    let held_before = BpfObjects::held_by(me);
    let hub = Hub::new();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let opts = SessionOptions {
        target: TargetSpec::Pid(target.pid()),
        mode: Mode::Scan,
        scan_interval: Duration::from_millis(100),
        min_wait: Duration::ZERO,
        duration: None,
        threshold: Duration::ZERO,
        events: None,
        on_attached: None,
        policy: blockprobe::detect::allow::Policy::new(&[], &[], None, true).unwrap(),
        metrics: Some(SessionMetrics {
            stop: Some(rx),
            every: Duration::from_millis(200),
            extra_labels: vec![("team".into(), "payments".into())],
            ..SessionMetrics::new(hub.clone())
        }),
        thread_spans: None,
        exact_sites: false,
        chan_sites: blockprobe::chansites::Setting::Auto,
    };
    let session = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(blockprobe::session::run(opts))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let snap = loop {
        let snaps = hub.snapshots();
        let leaking = snaps.first().and_then(|s| {
            let site = format!("/leakticker/main.go:{leak_line}");
            let n = s
                .blocked_by_site
                .iter()
                .find(|c| {
                    c.labels
                        .iter()
                        .any(|(k, v)| *k == "site" && v.ends_with(&site))
                })?
                .value;
            (n >= 5.0).then_some(s.clone())
        });
        if let Some(s) = leaking {
            break s;
        }
        assert!(Instant::now() < deadline, "no leak in the hub: {snaps:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(snap.labels.pid, target.pid());
    assert_eq!(snap.labels.comm, "leakticker");
    assert_eq!(
        snap.labels.extra,
        vec![("team".to_string(), "payments".to_string())]
    );
    let text = hub.render();
    assert!(text.contains("team=\"payments\""), "{text}");
    let held = BpfObjects::held_by(me);
    assert!(held.all().len() > held_before.all().len(), "{held:?}");

    stop.send(true).unwrap();
    let outcome = session.join().unwrap().expect("the session ends cleanly");
    assert_eq!(
        serde_json::to_value(outcome.report.end_reason).unwrap(),
        "signal"
    );
    assert!(!outcome.report.blocked.is_empty());
    assert!(hub.snapshots().is_empty(), "the ended session left the hub");
    assert_eq!(
        BpfObjects::held_by(me),
        held_before,
        "BPF objects left open"
    );
    let ours: BTreeSet<_> = held.all().difference(&held_before.all()).copied().collect();
    let left = BpfObjects::still_in_kernel(&ours);
    assert!(left.is_empty(), "still in the kernel: {left:?}");
    drop(target);
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}
