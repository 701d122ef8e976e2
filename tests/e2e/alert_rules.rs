//! The alert rules (deploy/prometheus/blockprobe-rules.yml) under `promtool test rules`, on
//! series like the leakticker fixture's; and every metric the rules and the Grafana dashboard
//! use is one blockprobe exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use blockprobe_tests::{skip_or_fail, workspace_root};

fn promtool() -> Option<&'static str> {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("promtool");
    }
    skip_or_fail("promtool not found (Debian's `prometheus` package: `cargo xtask setup`)");
    None
}

fn run(args: &[&str]) {
    let dir = workspace_root().join("deploy/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rules_are_valid() {
    if promtool().is_none() {
        return;
    }
    run(&["check", "rules", "blockprobe-rules.yml"]);
}

#[test]
fn rules_pass_their_unit_tests() {
    if promtool().is_none() {
        return;
    }
    run(&["test", "rules", "blockprobe-rules.test.yml"]);
}

/// Every `blockprobe_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("blockprobe_") {
        // A name, not part of a longer identifier or a path (`/blockprobe_…`).
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

fn used_in(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    metric_names(&text)
}

#[test]
fn rules_and_dashboard_use_only_exported_metrics() {
    // The series names, and the histograms' own names (as the docs name them).
    let exported: BTreeSet<String> = blockprobe::metrics::encode::exported_names()
        .into_iter()
        .chain(
            blockprobe::metrics::encode::METRICS
                .iter()
                .map(|m| m.0.to_string()),
        )
        // The runtime's health figures, served on the same endpoint.
        .chain(
            blockprobe::health::prom::METRICS
                .iter()
                .map(|m| m.0.to_string()),
        )
        .collect();
    let root = workspace_root();
    for file in [
        "deploy/prometheus/blockprobe-rules.yml",
        "deploy/prometheus/blockprobe-rules.test.yml",
        "deploy/prometheus/health.rules.yml",
        "deploy/prometheus/health.rules.test.yml",
        "deploy/grafana/blockprobe-dashboard.json",
        "docs/metrics.md",
    ] {
        let used = used_in(&root.join(file));
        assert!(!used.is_empty(), "{file} names no blockprobe metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics blockprobe does not export: {unknown:?}"
        );
    }
    // The dashboard is JSON Grafana can load: panels with queries.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/blockprobe-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for p in panels {
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {} has no query",
            p["title"]
        );
    }
    // docs/metrics.md describes every exported metric.
    let doc = used_in(&root.join("docs/metrics.md"));
    for (name, kind, _) in blockprobe::metrics::encode::METRICS {
        let shown = if *kind == "histogram" {
            format!("{name}_bucket")
        } else {
            name.to_string()
        };
        assert!(
            doc.contains(*name) || doc.contains(&shown),
            "docs/metrics.md does not describe {name}"
        );
    }
}

#[test]
fn finds_metric_names() {
    let n = metric_names("rate(blockprobe_a_total[5m]) /x/blockprobe_not {blockprobe_b{x=\"1\"}");
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        vec!["blockprobe_a_total".to_string(), "blockprobe_b".to_string()]
    );
}
