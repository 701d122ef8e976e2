//! Where each blocked channel was made: the `chansites` fixture makes channels at tagged lines
//! (`// MAKE:tag`) after `blockprobe attach` is attached (directly, in an inlined helper, in a
//! `//go:noinline` helper, through `reflect.MakeChan`) and blocks a goroutine on each (an
//! unbuffered receive, a send on a full buffered channel, ...), beside one channel made before
//! the attach. In precise and in scan mode, for Go 1.22 and 1.27, default, PIE and stripped
//! builds, the report's `made_at`, `channels` and finding explanations, and the metrics'
//! `site`/`site_kind` labels, must name each exact `make` line, and nothing for the early one.
//! Scan mode's budget: a program making thousands of channels a second gets the probe detached,
//! which must stop its hits while the program goes on, keep the sites of channels already waited
//! on, and give none to a channel made after.

mod metrics_common;
#[path = "schema.rs"]
mod schema;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use blockprobe_tests::{
    Proc, Scratch, blockprobe_bin, ends_with, prepare, read_report, source_line,
};
use metrics_common::{Sample, find, get, metrics_addr, parse};
use serde_json::Value;

const FIXTURE: &str = "chansites";

/// `tests/fixtures/chansites/main.go:N` of the line tagged `tag` (`// MAKE:tag`, or a needle).
fn at(needle: &str) -> String {
    format!(
        "tests/fixtures/{FIXTURE}/main.go:{}",
        source_line(FIXTURE, needle)
    )
}

fn made(tag: &str) -> String {
    at(&format!("// MAKE:{tag}"))
}

/// The channels made after the attach: tag, the function with the `make`, and whether the
/// goroutine blocked on it sends (else receives).
const MADE: [(&str, &str, bool); 5] = [
    ("unbuffered", "main.main", false),
    ("full", "main.main", true),
    ("helper", "main.newQueue", true),
    ("noinline", "main.newPipe", false),
    ("reflect", "main.main", false),
];

struct Session {
    target: Proc,
    agent: Proc,
    pid: String,
    metrics: std::net::SocketAddr,
    report: std::path::PathBuf,
    events: std::path::PathBuf,
    _dir: Scratch,
}

impl Session {
    /// Starts the fixture, attaches, and lets the fixture make and block on its channels.
    fn start(fixture: &Path, tag: &str, fixture_args: &[&str], agent_args: &[&str]) -> Self {
        let dir = Scratch::new(&format!("chansites-{tag}"));
        let report = dir.path("report.json");
        let events = dir.path("events.ndjson");
        let mut target = Proc::spawn(Command::new(fixture).args(fixture_args)).unwrap();
        let ready = target
            .expect_stdout(Duration::from_secs(10), |l| l.starts_with("ready pid="))
            .unwrap();
        let pid = ready.trim_start_matches("ready pid=").to_string();
        let mut agent = Proc::spawn(
            Command::new(blockprobe_bin())
                .args(["attach", "--pid", &pid, "--threshold", "0s"])
                .args(["--metrics", "127.0.0.1:0", "--json"])
                .arg(&report)
                .arg("--events")
                .arg(&events)
                .args(agent_args),
        )
        .unwrap();
        let metrics = metrics_addr(&mut agent);
        agent
            .expect_stderr(Duration::from_secs(20), |l| l.contains("attached to pid"))
            .unwrap();
        target.send_line("go").unwrap();
        target
            .expect_stdout(Duration::from_secs(10), |l| l == "blocked")
            .unwrap();
        Self {
            target,
            agent,
            pid,
            metrics,
            report,
            events,
            _dir: dir,
        }
    }

    /// Scrapes until `ok` holds (at most 20 s) and returns the last scrape.
    fn scrape_until(&self, what: &str, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = parse(&get(&format!("http://{}/metrics", self.metrics)).expect("scrape"));
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: not after 20s: {s:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The channel series (senders or receivers) of this target whose `site` ends with `loc`.
    fn chan_rows<'a>(&self, s: &'a [Sample], sends: bool, loc: &str) -> Vec<&'a Sample> {
        let name = if sends {
            "blockprobe_channel_blocked_senders"
        } else {
            "blockprobe_channel_blocked_receivers"
        };
        find(s, name, &[("pid", &self.pid)])
            .into_iter()
            .filter(|x| x.labels["site"].ends_with(loc) && x.value >= 1.0)
            .collect()
    }

    /// Ends the session (SIGINT) and returns its report, checked against the schema.
    fn finish(mut self) -> (Value, Vec<Value>, Proc) {
        self.agent.signal(libc::SIGINT);
        let st = self.agent.wait_timeout(Duration::from_secs(30)).unwrap();
        assert!(st.success(), "blockprobe: {:?}", self.agent.drain_stderr());
        let report = read_report(&self.report);
        schema::validate(&report);
        let events: Vec<Value> = std::fs::read_to_string(&self.events)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (report, events, self.target)
    }
}

/// The report's blocked goroutine whose `blocked_at` is the line with `needle`.
fn blocked_at<'a>(report: &'a Value, needle: &str) -> &'a Value {
    let loc = at(needle);
    let all = report["blocked"].as_array().unwrap();
    all.iter()
        .find(|g| ends_with(&g["blocked_at"]["location"], &loc))
        .unwrap_or_else(|| panic!("no goroutine blocked at {loc}: {all:#?}"))
}

/// The `blocked_at` needle of the goroutine blocked on the channel tagged `tag`.
fn waiter(tag: &str) -> &'static str {
    match tag {
        "unbuffered" => "go func() { <-unbuffered }()",
        "full" => "go func() { full <- 3 }()",
        "helper" => "go func() { q <- \"x\" }()",
        "noinline" => "go func() { <-p }()",
        "reflect" => "go func() { <-r }()",
        "early" => "go func() { <-early }()",
        "late" => "go func() { <-late }()",
        other => panic!("{other}"),
    }
}

/// `made_at` of the goroutine blocked on `tag`'s channel says `function` at the make line, and
/// the `channels` list says the same of its address.
fn assert_made(report: &Value, tag: &str, function: &str, v: &str) {
    let g = blocked_at(report, waiter(tag));
    let m = &g["made_at"];
    assert!(ends_with(&m["location"], &made(tag)), "{v} {tag}: {g:#}");
    assert_eq!(m["function"], function, "{v} {tag}: {g:#}");
    assert_eq!(m["source"], "uprobe", "{v} {tag}");
    let c = channel(report, &g["object"]);
    assert_eq!(&c["made_at"], m, "{v} {tag}");
}

fn channel<'a>(report: &'a Value, addr: &Value) -> &'a Value {
    report["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| &c["chan"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in channels: {:#}", report["channels"]))
}

fn run(go_minor: &str, variant: &str, mode: &str) {
    let Some(fixture) = prepare(go_minor, variant, FIXTURE) else {
        return;
    };
    let v = format!("Go {go_minor} {variant} {mode}");
    let s = Session::start(
        &fixture,
        &format!("{go_minor}-{variant}-{mode}"),
        &[],
        &["--mode", mode],
    );
    // The metrics: each channel under its make line (the early one: below, once the report
    // says its address).
    let scrape = s.scrape_until("every channel's site", |x| {
        MADE.iter()
            .all(|&(tag, _, sends)| !s.chan_rows(x, sends, &made(tag)).is_empty())
    });
    for (tag, _, sends) in MADE {
        for row in s.chan_rows(&scrape, sends, &made(tag)) {
            assert_eq!(row.labels["site_kind"], "made", "{v} {tag}: {row:?}");
        }
    }
    let pid = s.pid.clone();
    let info = &find(&scrape, "blockprobe_target_info", &[("pid", &s.pid)])[0].labels;
    assert_eq!(
        (info["mode"].as_str(), info["chan_sites"].as_str()),
        (mode, "on")
    );

    let (report, events, _target) = s.finish();
    assert_eq!(report["mode"], mode);
    assert_eq!(
        report["chan_sites"]["state"], "on",
        "{v}: {:#}",
        report["chan_sites"]
    );
    assert!(
        report["chan_sites"]["hits"].as_u64().unwrap() >= MADE.len() as u64,
        "{v}: {:#}",
        report["chan_sites"]
    );
    assert!(
        report["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["symbol"] == "runtime.makechan"),
        "{v}: {:#}",
        report["probes"]
    );
    for (tag, function, _) in MADE {
        assert_made(&report, tag, function, &v);
    }
    // Made before the attach: no site, in the goroutine and in the channel list.
    let early = blocked_at(&report, waiter("early"));
    assert!(early["made_at"].is_null(), "{v}: {early:#}");
    assert!(channel(&report, &early["object"])["made_at"].is_null());
    // ... and in the metrics, the fallback: its first waiter's line (scan mode walks every
    // blocked goroutine's stack; precise mode, for a wait older than the attach, may not have
    // yet: `unknown`).
    let rows = find(
        &scrape,
        "blockprobe_channel_blocked_receivers",
        &[("pid", &pid), ("chan", early["object"].as_str().unwrap())],
    );
    assert_eq!(rows.len(), 1, "{v}: {rows:?}");
    assert_eq!(rows[0].labels["site_kind"], "first_waiter", "{v}: {rows:?}");
    if mode == "scan" {
        assert!(
            rows[0].labels["site"].ends_with(&at(waiter("early"))),
            "{v}: {rows:?}"
        );
    }
    // The findings about these channels say where they were made.
    let unbuffered = blocked_at(&report, waiter("unbuffered"))["object"].clone();
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["object"] == unbuffered)
        .unwrap_or_else(|| panic!("{v}: no finding on {unbuffered}: {:#}", report["findings"]));
    let expl = f["explanation"].as_str().unwrap();
    assert!(
        expl.contains("(made at ") && expl.contains(&made("unbuffered")),
        "{v}: {expl}"
    );
    // The event stream says the probe was on, and that it was a uprobe's doing.
    let ev = events
        .iter()
        .find(|e| e["event"] == "chan_sites")
        .expect("a chan_sites event");
    assert_eq!(
        (&ev["state"], &ev["source"]),
        (&Value::from("on"), &Value::from("uprobe"))
    );
}

macro_rules! matrix {
    ($($name:ident $minor:literal $variant:literal $mode:literal;)*) => {
        $( #[test] fn $name() { run($minor, $variant, $mode); } )*
    };
}

matrix! {
    go1_22_default_precise "1.22" "default" "precise";
    go1_22_default_scan "1.22" "default" "scan";
    go1_22_pie_precise "1.22" "pie" "precise";
    go1_22_pie_scan "1.22" "pie" "scan";
    go1_22_stripped_precise "1.22" "stripped" "precise";
    go1_22_stripped_scan "1.22" "stripped" "scan";
    go1_27_default_precise "1.27" "default" "precise";
    go1_27_default_scan "1.27" "default" "scan";
    go1_27_pie_precise "1.27" "pie" "precise";
    go1_27_pie_scan "1.27" "pie" "scan";
    go1_27_stripped_precise "1.27" "stripped" "precise";
    go1_27_stripped_scan "1.27" "stripped" "scan";
}

/// Scan mode, a program making channels far over the budget: the probe is detached; its hit
/// count stops although the program keeps making channels; the channels waited on before the
/// detach keep their sites; one made (and waited on) after it has none.
#[test]
fn scan_mode_detaches_a_busy_probe() {
    let Some(fixture) = prepare("1.27", "default", FIXTURE) else {
        return;
    };
    let mut s = Session::start(&fixture, "detach", &[], &[]);
    // Their waits are seen (by a scan) before the probe goes: their sites stay trusted.
    s.scrape_until("every channel's site", |x| {
        MADE.iter().all(|&(tag, _, sends)| {
            s.chan_rows(x, sends, &made(tag))
                .iter()
                .any(|r| r.labels["site_kind"] == "made")
        })
    });
    s.target.send_line("churn").unwrap();
    s.target
        .expect_stdout(Duration::from_secs(10), |l| l == "churning")
        .unwrap();
    let scrape = s.scrape_until("the probe detached", |x| {
        find(x, "blockprobe_target_info", &[("pid", &s.pid)])
            .first()
            .is_some_and(|t| t.labels["chan_sites"] == "detached")
    });
    drop(scrape);
    s.target.send_line("late").unwrap();
    s.target
        .expect_stdout(Duration::from_secs(10), |l| l == "late")
        .unwrap();
    // The late waiter, seen by a scan, under its own line (first_waiter); and time for the
    // program to make many more channels unprobed.
    let late_line = at(waiter("late"));
    let started = Instant::now();
    s.scrape_until("the late channel", |x| {
        s.chan_rows(x, false, &late_line)
            .iter()
            .any(|r| r.labels["site_kind"] == "first_waiter")
    });
    std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    let (report, events, mut target) = s.finish();
    // Detaching under load left the target running.
    assert!(
        target.child.try_wait().unwrap().is_none(),
        "the target died"
    );
    let cs = &report["chan_sites"];
    assert_eq!(
        (&cs["setting"], &cs["state"]),
        (&Value::from("auto"), &Value::from("detached")),
        "{cs:#}"
    );
    assert!(cs["reason"].as_str().unwrap().contains("budget"), "{cs:#}");
    assert_eq!(cs["budget_hits_per_s"], 500);
    // Over the budget (1000 per 2 s) when detached, and not one hit after.
    assert!(cs["hits_when_detached"].as_u64().unwrap() > 1000, "{cs:#}");
    assert_eq!(
        cs["hits"], cs["hits_when_detached"],
        "hits after the detach: {cs:#}"
    );
    // Waited on before the detach: still named.
    for (tag, function, _) in MADE {
        assert_made(&report, tag, function, "detached");
    }
    // Made after the detach: unknown, even if its address held a probed channel before.
    let late = blocked_at(&report, waiter("late"));
    assert!(late["made_at"].is_null(), "{late:#}");
    let states: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "chan_sites")
        .map(|e| &e["state"])
        .collect();
    assert_eq!(states, ["on", "detached"]);
}

/// `--chan-sites off`: no probe on makechan, no sites; the metrics fall back to the waiters.
#[test]
fn off_means_no_probe_and_no_sites() {
    let Some(fixture) = prepare("1.27", "default", FIXTURE) else {
        return;
    };
    let s = Session::start(&fixture, "off", &[], &["--chan-sites", "off"]);
    let scrape = s.scrape_until("the unbuffered channel", |x| {
        !s.chan_rows(x, false, &at(waiter("unbuffered"))).is_empty()
    });
    for row in s.chan_rows(&scrape, false, &at(waiter("unbuffered"))) {
        assert_eq!(row.labels["site_kind"], "first_waiter", "{row:?}");
    }
    let (report, _, _target) = s.finish();
    assert_eq!(report["chan_sites"]["state"], "off");
    assert!(report["probes"].as_array().unwrap().is_empty());
    assert!(
        report["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["made_at"].is_null())
    );
}
