use super::graph::{Graph, NodeKind};
use super::*;

/// An AB/BA lock-order inversion as `attach` reports it on the patterns fixture: goroutine 19
/// holds A and waits for B, 20 holds B and waits for A.
fn lockorder() -> ReportView {
    ReportView::from_json(
        r#"{"schema": "blockprobe.report/3", "mode": "precise",
        "target": {"pid": 42, "exe": "/x/patterns", "go_version": "go1.27.3"},
        "at_mono_ns": 5000000000, "threshold_ns": 1000000000, "duration_ns": 3000000000,
        "blocked": [
          {"goid": 19, "wait_reason": "sync.Mutex.Lock", "blocked_ns": 2000000000,
           "object_kind": "mutex", "object": "0xb", "wait_chans": [], "stack": 0,
           "blocked_at": {"function": "main.lockOrder.func1", "location": "/s/main.go:324"},
           "created_by": {"function": "main.lockOrder", "location": "/s/main.go:328", "parent_goid": 1},
           "source": "uprobe", "tid": 7},
          {"goid": 20, "wait_reason": "sync.Mutex.Lock", "blocked_ns": 2100000000,
           "object_kind": "mutex", "object": "0xa", "wait_chans": [], "stack": 0,
           "source": "uprobe", "tid": 7}],
        "stacks": [[{"function": "runtime.gopark", "file": "/go/proc.go", "line": 475},
                    {"function": "main.lockOrder.func1", "file": "/s/main.go", "line": 324}]],
        "findings": [{"pattern": "BP11", "slug": "mutex-deadlock", "name": "Mutex deadlock",
          "severity": "error", "confidence": "inferred", "goroutines": [19, 20], "count": 2,
          "object_kind": "mutex", "object": "0xb", "blocked_ns": 2000000000,
          "chain": [
            {"goid": 19, "state": "blocked", "object_kind": "mutex", "object": "0xb", "next_by": "inferred"},
            {"goid": 20, "state": "blocked", "object_kind": "mutex", "object": "0xa", "next_by": "inferred"}],
          "explanation": "deadlock cycle: goroutine 19 waits on <mutex> 0xb", "allowed": false}],
        "in_syscall": [{"goid": 30, "tid": 99,
          "thread": {"tid": 99, "on_cpu": false, "state": "S", "state_name": "sleeping",
                     "in_state_for_ns": 1500000000, "kernel_stack": [{"function": "futex_wait"}]},
          "stack": {"frames": [{"kind": "kernel", "function": "futex_wait"},
                               {"kind": "c", "function": "pthread_mutex_lock", "module": "libc.so.6"},
                               {"kind": "go", "function": "runtime.asmcgocall", "cgo_boundary": true},
                               {"kind": "go", "function": "main.main.func3", "file": "/s/main.go", "line": 67}],
                    "native_end": "cgo"}}],
        "threads": [{"tid": 99, "comm": "patterns", "on_cpu": false, "state": "S",
                     "state_name": "sleeping", "in_state_for_ns": 1500000000}]}"#,
    )
    .unwrap()
}

#[test]
fn the_cycle_is_goroutine_object_goroutine_object() {
    let r = lockorder();
    let g = Graph::of_finding(&r, &r.findings[0]);
    let keys: Vec<String> = g.nodes.iter().map(|n| n.key()).collect();
    for k in ["g19", "g20", "o0xa", "o0xb"] {
        assert!(keys.contains(&k.to_string()), "{keys:?}");
    }
    assert_eq!(g.cycle_keys(), ["g19", "o0xb", "g20", "o0xa"]);
    // The whole cycle is the root cause.
    assert!(g.nodes.iter().all(|n| n.root && n.cycle), "{:?}", g.nodes);
    let held: Vec<(String, String)> = g
        .edges
        .iter()
        .filter(|e| e.rel == graph::Rel::HeldBy)
        .map(|e| (g.nodes[e.from].key(), g.nodes[e.to].key()))
        .collect();
    assert_eq!(
        held,
        [("o0xb".into(), "g20".into()), ("o0xa".into(), "g19".into())]
    );
}

#[test]
fn the_svg_carries_nodes_and_edges_as_data() {
    let r = lockorder();
    let svg = Graph::of_finding(&r, &r.findings[0])
        .to_svg("g0", "t")
        .unwrap();
    for needle in [
        "data-goid=\"19\"",
        "data-goid=\"20\"",
        "data-object=\"0xa\" data-kind=\"mutex\"",
        "data-from=\"o0xb\" data-to=\"g20\" data-rel=\"held by\" data-cycle=\"true\"",
        "data-from=\"g19\" data-to=\"o0xb\" data-rel=\"waits\" data-cycle=\"true\"",
    ] {
        assert!(svg.contains(needle), "{needle} not in {svg}");
    }
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
}

#[test]
fn a_lone_wait_marks_its_object_and_a_big_leak_is_abridged() {
    let mut r = lockorder();
    let f = &mut r.findings[0];
    f.chain.clear();
    f.count = 500;
    let f = f.clone();
    let g = Graph::of_finding(&r, &f);
    let roots: Vec<String> = g.nodes.iter().filter(|n| n.root).map(|n| n.key()).collect();
    assert_eq!(roots, ["o0xb", "o0xa"]);
    assert!(g.cycle_keys().is_empty());
    assert!(
        g.nodes.iter().any(|n| n.kind == NodeKind::More(498)),
        "{:?}",
        g.nodes
    );
}

#[test]
fn the_page_is_self_contained_and_escaped() {
    let html = render(&lockorder());
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Nothing to fetch: no script, stylesheet link, image, frame or remote url().
    for bad in [
        "<script", "<link", "<img", "<iframe", "@import", "url(http", "src=",
    ] {
        assert!(!html.contains(bad), "{bad}");
    }
    // Every url() is a fragment (the SVG arrowheads).
    assert_eq!(html.matches("url(").count(), html.matches("url(#").count());
    assert!(html.contains("&lt;mutex&gt;"), "explanations are escaped");
    assert!(!html.contains("<mutex>"));
    // Go, C and kernel frames.
    assert!(html.contains("[kernel]</span><code>futex_wait"));
    assert!(html.contains("[C libc.so.6]</span><code>pthread_mutex_lock"));
    assert!(html.contains("[cgo boundary]"));
    assert!(html.contains("/s/main.go:324"));
    // The timeline: both blocked goroutines and the sleeping syscall.
    for g in ["19", "20", "30"] {
        assert!(
            html.contains(&format!("class=\"span blocked\" data-goid=\"{g}\""))
                || html.contains(&format!("class=\"span syscall\" data-goid=\"{g}\"")),
            "{g}"
        );
    }
}

#[test]
fn renders_an_empty_report() {
    let r = ReportView::from_json(r#"{"schema": "blockprobe.report/3"}"#).unwrap();
    let html = render(&r);
    assert!(html.contains("0 finding(s)"));
    assert!(html.contains("No goroutine was blocked."));
}

/// Reports of any shape (chains through repeated, missing or unknown goroutines, objects
/// shared or absent) lay out without a panic.
mod shapes {
    use super::*;
    use proptest::prelude::*;

    fn report(
        blocked: &[(u64, u8, bool)],
        chain: &[(u64, u8, bool)],
        goroutines: &[u64],
        count: usize,
    ) -> ReportView {
        let kinds = ["chan", "mutex", "select", "none", "waitgroup"];
        let blocked: Vec<serde_json::Value> = blocked
            .iter()
            .map(|&(g, o, many)| {
                let kind = kinds[o as usize % kinds.len()];
                serde_json::json!({"goid": g, "wait_reason": "chan send", "object_kind": kind,
                    "object": format!("{:#x}", o % 5),
                    "wait_chans": if many { vec!["0x10", "0x11", "0x12", "0x13", "0x14", "0x15"] }
                                  else { vec![] }})
            })
            .collect();
        let chain: Vec<serde_json::Value> = chain
            .iter()
            .map(|&(g, o, next)| {
                serde_json::json!({"goid": g, "state": "blocked",
                    "object_kind": kinds[o as usize % kinds.len()],
                    "object": if o % 3 == 0 { None } else { Some(format!("{:#x}", o % 4)) },
                    "next_by": next.then_some("inferred")})
            })
            .collect();
        ReportView::from_value(serde_json::json!({
            "schema": "blockprobe.report/3", "blocked": blocked,
            "findings": [{"pattern": "BP10", "goroutines": goroutines, "count": count,
                          "chain": chain}],
        }))
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_graph_lays_out(
            blocked in proptest::collection::vec((0u64..20, any::<u8>(), any::<bool>()), 0..20),
            chain in proptest::collection::vec((0u64..20, any::<u8>(), any::<bool>()), 0..8),
            goroutines in proptest::collection::vec(0u64..30, 0..30),
            count in 0usize..100_000,
        ) {
            let r = report(&blocked, &chain, &goroutines, count);
            let g = Graph::of_finding(&r, &r.findings[0]);
            prop_assert!(g.nodes.len() <= graph::MAX_GOROUTINES.max(chain.len()) * 7 + 1);
            if let Some(svg) = g.to_svg("g0", "t") {
                prop_assert!(svg.ends_with("</svg>"));
            }
            let _ = render(&r);
        }
    }
}
