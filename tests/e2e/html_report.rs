//! The HTML report in a real browser: `blockprobe attach --html` on the AB/BA lock-order
//! deadlock of the `patterns` fixture (Go 1.27, live, so that the holders are found), opened in
//! headless Chromium (Debian's `chromium`, installed by `cargo xtask setup`) over the DevTools
//! protocol. From the DOM: the finding's wait-for graph has the two goroutines and the two
//! Mutexes the fixture printed, and the cycle g1 → B → g2 → A → g1, marked as the root cause.
//! From the protocol's events: the page makes no network request (the page itself is a local
//! file) and logs no console error. `blockprobe report REPORT.json --html` renders the same
//! page from the saved JSON; a file that is not a report gets a clear error.
//!
//! `BLOCKPROBE_SCREENSHOT=FILE` also saves the page's screenshot there (docs/img/ is made so).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blockprobe_tests::{Proc, Scratch, blockprobe_bin, kv, prepare, skip_or_fail};
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Log, Network, Page, Runtime};
use headless_chrome::{Browser, LaunchOptions};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    errors: Vec<String>,
}

/// What the page says of the first BP11 finding's graph, read in the page.
const READ_GRAPH: &str = r#"(() => {
  const f = document.querySelector('article.finding[data-pattern="BP11"]');
  if (!f) return JSON.stringify(null);
  const svg = f.querySelector('svg.waitgraph');
  const nodes = [...svg.querySelectorAll('g.node')].map(n => ({
    key: n.dataset.node, goid: n.dataset.goid || null, object: n.dataset.object || null,
    kind: n.dataset.kind || null, root: n.dataset.root, cycle: n.dataset.cycle,
    visible: n.getBoundingClientRect().width > 0 }));
  const edges = [...svg.querySelectorAll('g.edge')].map(e => ({
    from: e.dataset.from, to: e.dataset.to, rel: e.dataset.rel, cycle: e.dataset.cycle,
    visible: e.getBoundingClientRect().width > 0 || e.getBoundingClientRect().height > 0 }));
  const spans = [...document.querySelectorAll('svg.timeline g.span')].map(s => s.dataset.goid);
  return JSON.stringify({nodes, edges, spans, title: document.title});
})()"#;

fn browser(profile: &Path) -> anyhow::Result<Browser> {
    // Without the background-networking switches Chromium itself connects out (updates,
    // field trials), which a closed network refuses and which would count as requests.
    let args = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    Browser::new(LaunchOptions {
        headless: true,
        sandbox: false,
        path: Some(CHROMIUM.into()),
        user_data_dir: Some(profile.to_path_buf()),
        window_size: Some((1200, 1500)),
        args,
        idle_browser_timeout: Duration::from_secs(60),
        ..LaunchOptions::default()
    })
}

#[test]
fn lockorder_graph_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        skip_or_fail("Debian's chromium is not installed (cargo xtask setup installs it)");
        return;
    }
    let Some(fixture) = prepare("1.27", "default", "patterns") else {
        return;
    };
    let scratch = Scratch::new("html-report");
    let mut target =
        Proc::spawn(Command::new(&fixture).args(["-case", "lockorder", "-hold", "60s"]))
            .expect("start patterns");
    let ready = target
        .expect_stdout(Duration::from_secs(20), |l| l.starts_with("ready pid="))
        .expect("ready");
    let (g1, g2) = (kv(&ready, "g1"), kv(&ready, "g2"));
    let (a, b) = (kv(&ready, "mutexa"), kv(&ready, "mutexb"));

    let (json, html) = (scratch.path("report.json"), scratch.path("report.html"));
    let out = Command::new(blockprobe_bin())
        .args(["attach", "--pid", &target.pid().to_string()])
        .args(["--duration", "800ms", "--threshold", "0s", "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("run blockprobe attach");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(target.child.try_wait().unwrap().is_none(), "target died");

    // The same page from the saved report.
    let again = scratch.path("again.html");
    let out = Command::new(blockprobe_bin())
        .arg("report")
        .arg(&json)
        .arg("--html")
        .arg(&again)
        .output()
        .expect("run blockprobe report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("html written");
    assert_eq!(page, std::fs::read_to_string(&again).unwrap());
    // Not a report: a clear error, no panic.
    let out = Command::new(blockprobe_bin())
        .arg("report")
        .arg(scratch.path("report.html"))
        .arg("--html")
        .arg(scratch.path("x.html"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not JSON") && !err.contains("panicked"),
        "{err}"
    );

    let profile = scratch.path("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let browser = browser(&profile).expect("launch chromium");
    let tab = browser.new_tab().expect("tab");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = seen.clone();
    tab.add_event_listener(Arc::new(move |e: &Event| {
        let mut s = sink.lock().unwrap();
        match e {
            Event::NetworkRequestWillBeSent(r) => s.requests.push(r.params.request.url.clone()),
            Event::RuntimeExceptionThrown(x) => s.errors.push(format!("{:?}", x.params)),
            Event::RuntimeConsoleAPICalled(c)
                if matches!(
                    c.params.Type,
                    Runtime::ConsoleAPICalledEventTypeOption::Error
                        | Runtime::ConsoleAPICalledEventTypeOption::Assert
                ) =>
            {
                s.errors.push(format!("{:?}", c.params.args))
            }
            Event::LogEntryAdded(l)
                if matches!(l.params.entry.level, Log::LogEntryLevel::Error) =>
            {
                s.errors.push(l.params.entry.text.clone())
            }
            _ => {}
        }
    }))
    .unwrap();
    tab.call_method(Network::Enable {
        max_total_buffer_size: None,
        max_resource_buffer_size: None,
        max_post_data_size: None,
        report_direct_socket_traffic: None,
        enable_durable_messages: None,
    })
    .expect("Network.enable");
    tab.enable_runtime().expect("Runtime.enable");
    tab.enable_log().expect("Log.enable");
    let url = format!("file://{}", html.display());
    tab.navigate_to(&url)
        .and_then(|t| t.wait_until_navigated())
        .expect("page loads");
    let dom = tab.evaluate(READ_GRAPH, false).expect("read the DOM");
    let dom: Value = serde_json::from_str(dom.value.as_ref().and_then(Value::as_str).unwrap())
        .expect("the page script's JSON");
    assert!(!dom.is_null(), "no BP11 finding in the page: {page}");

    // Nodes: the two goroutines and the two Mutexes, all drawn.
    let nodes = dom["nodes"].as_array().unwrap();
    let goids: BTreeSet<&str> = nodes.iter().filter_map(|n| n["goid"].as_str()).collect();
    assert_eq!(goids, BTreeSet::from([g1.as_str(), g2.as_str()]), "{dom:#}");
    let mutexes: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n["kind"] == "mutex")
        .filter_map(|n| n["object"].as_str())
        .collect();
    assert_eq!(mutexes, BTreeSet::from([a.as_str(), b.as_str()]), "{dom:#}");
    assert!(nodes.iter().all(|n| n["visible"] == true), "{dom:#}");
    // The cycle: g1 holds A and waits for B, which g2 holds; g2 waits for A.
    let cycle: BTreeSet<(String, String, String)> = dom["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cycle"] == "true" && e["visible"] == true)
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["rel"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let t = |f: &str, r: &str, to: &str| (f.to_string(), r.to_string(), to.to_string());
    assert_eq!(
        cycle,
        BTreeSet::from([
            t(&format!("g{g1}"), "waits", &format!("o{b}")),
            t(&format!("o{b}"), "held by", &format!("g{g2}")),
            t(&format!("g{g2}"), "waits", &format!("o{a}")),
            t(&format!("o{a}"), "held by", &format!("g{g1}")),
        ]),
        "{dom:#}"
    );
    // The cycle is the root cause.
    assert!(
        nodes
            .iter()
            .all(|n| n["root"] == "true" && n["cycle"] == "true"),
        "{dom:#}"
    );
    // The timeline has both goroutines.
    let spans: BTreeSet<&str> = dom["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        spans.contains(g1.as_str()) && spans.contains(g2.as_str()),
        "{dom:#}"
    );

    let png = tab
        .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    if let Some(path) = std::env::var_os("BLOCKPROBE_SCREENSHOT") {
        std::fs::write(&path, &png).expect("write the screenshot");
    }

    {
        let seen = seen.lock().unwrap();
        // The listener works: it saw the page's own load.
        assert!(seen.requests.contains(&url), "{:?}", seen.requests);
        let others: Vec<&String> = seen.requests.iter().filter(|u| **u != url).collect();
        assert!(others.is_empty(), "the page made requests: {others:?}");
        assert!(seen.errors.is_empty(), "console errors: {:?}", seen.errors);
    }
    // And it would have seen a console error.
    tab.evaluate("console.error('blockprobe-test-control')", false)
        .expect("evaluate");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().errors.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let errors = &seen.lock().unwrap().errors;
    assert!(
        errors.len() == 1 && errors[0].contains("blockprobe-test-control"),
        "{errors:?}"
    );
    drop(target);
}
