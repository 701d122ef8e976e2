//! A real Prometheus server (Debian's `prometheus`) scrapes `blockprobe attach --metrics` on a
//! fixture that leaks a goroutine every 100 ms at one `go` statement; the test asks
//! Prometheus's HTTP query API for the blocked-goroutine count at that site, and its growth.

mod metrics_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use blockprobe_tests::{
    Proc, Scratch, blockprobe_bin, prepare, skip_or_fail, source_line, workspace_root,
};
use metrics_common::{Sample, find, free_port, get, metrics_addr, parse};

/// Prometheus's scrape interval here: short, so the test sees growth within seconds.
const SCRAPE: &str = "1s";

fn prometheus_available() -> bool {
    let ok = Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_or_fail("prometheus not found (Debian's `prometheus` package: `cargo xtask setup`)");
    }
    ok
}

/// An instant query's vector result: (labels, value) of each series.
fn query(prom: &str, q: &str) -> Vec<(serde_json::Value, f64)> {
    let url = format!("{prom}/api/v1/query?query={}", encode(q));
    let body = get(&url).unwrap_or_else(|e| panic!("query {q}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|s| {
            let value = s["value"][1].as_str().and_then(|x| x.parse().ok());
            (s["metric"].clone(), value.expect("a numeric value"))
        })
        .collect()
}

/// Percent-encoding for a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `q` until `ok` holds for its result, or panics with the last result after `within`.
fn wait_for(
    prom: &str,
    q: &str,
    within: Duration,
    ok: impl Fn(&[(serde_json::Value, f64)]) -> bool,
) -> Vec<(serde_json::Value, f64)> {
    let deadline = Instant::now() + within;
    loop {
        let r = query(prom, q);
        if ok(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{q}: still {r:?} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The agent's own endpoint, scraped directly: the blocked channels with their sides and
/// buffers, the goroutines by state, the agent's own figures.
fn check_scrape(addr: std::net::SocketAddr, pid: &str) {
    let send_line = source_line("leakticker", "// BLOCK:fullsend");
    let pool_block = source_line("leakticker", "for range jobs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = |s: &[Sample]| {
        let full = find(s, "blockprobe_channel_blocked_senders", &[("pid", pid)])
            .into_iter()
            .find(|c| c.value == 2.0)?;
        let chan = full.labels["chan"].as_str();
        let value = |name: &str| find(s, name, &[("chan", chan)]).first().map(|x| x.value);
        Some((
            full.labels["site"].clone(),
            value("blockprobe_channel_len")?,
            value("blockprobe_channel_cap")?,
        ))
    };
    let s = loop {
        let s = parse(&get(&format!("http://{addr}/metrics")).expect("scrape the agent"));
        if ok(&s).is_some() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The full buffered channel: two senders, len = cap = 2, blocked at the send.
    let (site, len, cap) = ok(&s).unwrap_or_else(|| panic!("no channel with 2 senders: {s:#?}"));
    assert!(
        site.ends_with(&format!("/leakticker/main.go:{send_line}")),
        "{site}"
    );
    assert_eq!((len, cap), (2.0, 2.0));
    // The pool's jobs channel: three receivers, unbuffered.
    let pool = find(&s, "blockprobe_channel_blocked_receivers", &[("pid", pid)])
        .into_iter()
        .find(|c| c.value == 3.0)
        .expect("the pool's channel");
    assert!(
        pool.labels["site"].ends_with(&format!("main.go:{pool_block}")),
        "{:?}",
        pool.labels
    );
    let chan = pool.labels["chan"].as_str();
    assert_eq!(
        find(&s, "blockprobe_channel_cap", &[("chan", chan)])[0].value,
        0.0
    );
    // Goroutines by state: the leaked ones wait in `chan receive`, main sleeps.
    let recv = find(
        &s,
        "blockprobe_goroutines",
        &[
            ("pid", pid),
            ("state", "waiting"),
            ("wait_reason", "chan receive"),
        ],
    );
    assert!(recv[0].value >= 3.0, "{recv:?}");
    assert_eq!(
        find(
            &s,
            "blockprobe_goroutines",
            &[("state", "waiting"), ("wait_reason", "sleep")]
        )[0]
        .value,
        1.0
    );
    // The runtime's health figures (`blockprobe stat`'s, on the same endpoint): one
    // GOMAXPROCS-sized set of Ps, a live heap, the sleeping main's timer.
    let one = |name: &str| {
        let v = find(&s, name, &[("pid", pid)]);
        assert_eq!(v.len(), 1, "{name}: {v:?}");
        v[0].value
    };
    let gomaxprocs = one("blockprobe_go_sched_gomaxprocs");
    assert!(gomaxprocs >= 1.0);
    assert_eq!(
        find(&s, "blockprobe_go_sched_local_runqueue", &[("pid", pid)]).len() as f64,
        gomaxprocs
    );
    assert!(one("blockprobe_go_memstats_heap_inuse_bytes") > 0.0);
    assert!(
        one("blockprobe_go_memstats_sys_bytes") >= one("blockprobe_go_memstats_heap_inuse_bytes")
    );
    assert!(one("blockprobe_go_timers_pending") >= 1.0);
    // The agent about itself.
    assert!(find(&s, "blockprobe_agent_resident_memory_bytes", &[])[0].value > 1e6);
    assert!(find(&s, "blockprobe_scans_total", &[("pid", pid)])[0].value >= 1.0);
    assert_eq!(
        find(&s, "blockprobe_events_lost_total", &[("pid", pid)])[0].value,
        0.0
    );
}

/// Every query of the Grafana dashboard runs on this Prometheus (its variables as "all"), and
/// the main panels show data; the alert rules, loaded by this Prometheus, evaluate cleanly.
fn check_dashboard_and_rules(prom: &str) {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("deploy/grafana/blockprobe-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    let mut empty = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?");
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$comm", ".*")
                .replace("$pid", ".*");
            // `query` asserts the status is success: the expression is valid PromQL.
            if query(prom, &expr).is_empty() {
                empty.push(title.to_string());
            }
        }
    }
    for must in [
        "Blocked goroutines by creation site",
        "Goroutines by state",
        "Blocked goroutines by pattern",
        "Open findings",
        "Blocked channels",
        "Agent memory (RSS)",
        "Scan duration p99",
    ] {
        assert!(
            !empty.iter().any(|t| t == must),
            "panel {must:?} shows no data"
        );
    }
    let rules: serde_json::Value =
        serde_json::from_str(&get(&format!("{prom}/api/v1/rules")).unwrap()).unwrap();
    let groups = rules["data"]["groups"].as_array().expect("rule groups");
    let all: Vec<&serde_json::Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(all.len(), 4, "{rules}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rules: serde_json::Value =
            serde_json::from_str(&get(&format!("{prom}/api/v1/rules")).unwrap()).unwrap();
        let health: Vec<String> = rules["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{}={}", r["name"], r["health"]))
            .collect();
        if health.iter().all(|h| h.ends_with("=\"ok\"")) {
            break;
        }
        assert!(Instant::now() < deadline, "rules not healthy: {health:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn start_prometheus(dir: &Path, target: std::net::SocketAddr) -> (Proc, String) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {SCRAPE}\n  evaluation_interval: {SCRAPE}\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: blockprobe\n    static_configs:\n      \
             - targets: ['{target}']\n",
            rules = workspace_root()
                .join("deploy/prometheus/blockprobe-rules.yml")
                .display()
        ),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let prom = Proc::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn"),
    )
    .expect("start prometheus");
    let url = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("{url}/-/ready")).is_err() {
        assert!(Instant::now() < deadline, "prometheus not ready in 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    (prom, url)
}

#[test]
fn prometheus_sees_the_leak_grow() {
    let Some(fixture) = prepare("1.27", "default", "leakticker") else {
        return;
    };
    if !prometheus_available() {
        return;
    }
    let dir = Scratch::new("prometheus");
    let leak_line = source_line("leakticker", "// GO:leak");
    let pool_line = source_line("leakticker", "// GO:worker");

    let mut target = Proc::spawn(Command::new(&fixture).args(["-every", "100ms"])).unwrap();
    target
        .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
        .unwrap();
    let pid = target.pid().to_string();
    let mut agent = Proc::spawn(
        Command::new(blockprobe_bin())
            .args(["attach", "--pid", &pid, "--metrics", "127.0.0.1:0"])
            .arg("--json")
            .arg(dir.0.join("report.json")),
    )
    .unwrap();
    let addr = metrics_addr(&mut agent);
    assert!(addr.ip().is_loopback());
    let t0 = Instant::now();
    check_scrape(addr, &pid);
    eprintln!("scrape checked at {:?}", t0.elapsed());
    let (_prom, prom) = start_prometheus(&dir.0, addr);
    eprintln!("prometheus ready at {:?}", t0.elapsed());

    // Prometheus scrapes the agent and finds it up.
    wait_for(
        &prom,
        "up{job=\"blockprobe\"}",
        Duration::from_secs(20),
        |r| r.len() == 1 && r[0].1 == 1.0,
    );
    let at = |line: usize| {
        format!(
            "blockprobe_blocked_goroutines_by_site{{job=\"blockprobe\",pid=\"{pid}\",\
             comm=\"leakticker\",site=~\".*/leakticker/main.go:{line}\"}}"
        )
    };
    // The leak site is there with its function and the target's labels.
    let first = wait_for(&prom, &at(leak_line), Duration::from_secs(20), |r| {
        r.len() == 1 && r[0].1 >= 10.0
    });
    let labels = &first[0].0;
    assert_eq!(labels["function"], "main.main", "{labels}");
    assert!(
        labels["go_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("go1.27"))
    );
    assert!(
        labels["binary"]
            .as_str()
            .is_some_and(|b| b.ends_with("leakticker"))
    );
    // The worker pool's three goroutines: blocked, steady, and at their own site.
    let pool = wait_for(&prom, &at(pool_line), Duration::from_secs(10), |r| {
        r.len() == 1
    });
    assert_eq!(pool[0].1, 3.0, "{pool:?}");

    // Growth: the fixture leaks 10 goroutines a second (fewer when the machine is loaded). In
    // Prometheus's data over the last 30 s, the count at the leak site grew by 30 or more,
    // never went down between scrapes (every leaked goroutine stays blocked), and grew at a
    // rate the fixture can make (not more than twice its 10 a second).
    eprintln!("leak site seen at {:?}", t0.elapsed());
    let window = format!("{}[30s]", at(leak_line));
    let grew = wait_for(
        &prom,
        &format!("max_over_time({window}) - min_over_time({window})"),
        Duration::from_secs(45),
        |r| r.len() == 1 && r[0].1 >= 30.0,
    );
    assert!(grew[0].1 <= 600.0, "grew by {} in 30 s", grew[0].1);
    let deriv = query(&prom, &format!("deriv({window})"));
    assert!(
        deriv[0].1 > 0.5 && deriv[0].1 <= 20.0,
        "growth rate {} per second (the fixture leaks 10)",
        deriv[0].1
    );
    let drops = query(&prom, &format!("resets({window})"));
    assert_eq!(drops[0].1, 0.0, "the count went down: {drops:?}");
    // The pool stayed at 3 meanwhile.
    let pool = query(
        &prom,
        &format!(
            "min_over_time({}) == max_over_time({})",
            at(pool_line) + "[30s]",
            at(pool_line) + "[30s]"
        ),
    );
    assert_eq!(pool.len(), 1, "the pool's count changed: {pool:?}");
    assert_eq!(pool[0].1, 3.0);
    // The detector names the leak too, live.
    wait_for(
        &prom,
        &format!("blockprobe_findings{{pid=\"{pid}\",pattern=\"leak-growth\"}}"),
        Duration::from_secs(15),
        |r| r.len() == 1 && r[0].1 >= 1.0,
    );

    eprintln!("findings seen at {:?}", t0.elapsed());
    check_dashboard_and_rules(&prom);
    eprintln!("dashboard and rules checked at {:?}", t0.elapsed());

    agent.signal(libc::SIGINT);
    let st = agent.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(st.success(), "{:?}", agent.drain_stderr());
}

/// `run --mode precise --metrics`: the spawned program's metrics, the kernel's histograms of
/// finished waits among them, while it runs; the program's own exit code at its end.
#[test]
fn run_serves_metrics_in_precise_mode() {
    let Some(fixture) = prepare("1.27", "default", "leakticker") else {
        return;
    };
    let dir = Scratch::new("run-metrics");
    let leak_line = source_line("leakticker", "// GO:leak");
    let mut agent = Proc::spawn(
        Command::new(blockprobe_bin())
            .args(["run", "--mode", "precise", "--metrics", "127.0.0.1:0"])
            .arg("--json")
            .arg(dir.0.join("report.json"))
            .arg("--")
            .arg(&fixture)
            .args(["-every", "50ms", "-control"]),
    )
    .unwrap();
    let addr = metrics_addr(&mut agent);
    let pid = agent
        .expect_stdout(Duration::from_secs(20), |l| l.starts_with("ready pid="))
        .unwrap()
        .trim_start_matches("ready pid=")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = parse(&get(&format!("http://{addr}/metrics")).expect("scrape"));
        let leaked: f64 = find(
            &s,
            "blockprobe_blocked_goroutines_by_site",
            &[("pid", &pid)],
        )
        .iter()
        .filter(|x| x.labels["site"].ends_with(&format!("main.go:{leak_line}")))
        .map(|x| x.value)
        .sum();
        // main sleeps 50 ms at a time: each sleep is a finished wait the kernel counts.
        let slept = find(
            &s,
            "blockprobe_block_duration_seconds_count",
            &[("pid", &pid), ("wait_reason", "sleep")],
        )
        .first()
        .map_or(0.0, |x| x.value);
        if leaked >= 5.0 && slept >= 5.0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "leaked {leaked}, slept {slept}: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let info = &find(&s, "blockprobe_target_info", &[("pid", &pid)])[0].labels;
    assert_eq!(
        (info["mode"].as_str(), info["comm"].as_str()),
        ("precise", "leakticker")
    );
    // The sleeps are 50 ms: in the buckets up to 134 ms, none in those up to 16.8 ms.
    let bucket = |le: &str| {
        find(
            &s,
            "blockprobe_block_duration_seconds_bucket",
            &[("pid", &pid), ("wait_reason", "sleep"), ("le", le)],
        )[0]
        .value
    };
    assert_eq!(bucket("0.016777216"), 0.0);
    assert!(bucket("0.134217728") >= 5.0);
    // Precise mode streams events.
    assert!(find(&s, "blockprobe_events_total", &[("pid", &pid)])[0].value > 0.0);

    agent.send_line("exit").unwrap();
    let st = agent.wait_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(st.code(), Some(0), "{:?}", agent.drain_stderr());
}
