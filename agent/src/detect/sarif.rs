//! SARIF 2.1.0 (OASIS), so that CI code scanning shows findings on source lines: one rule per
//! pattern, one result per finding at its blocking operation, the `go` statement as a related
//! location, and the rest of the chain in the message.

use serde_json::{Value, json};

use super::Finding;
use super::patterns;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// "file:line" → (file, line), as reports write locations.
fn split_location(loc: &str) -> Option<(&str, u64)> {
    let (file, line) = loc.rsplit_once(':')?;
    Some((file, line.parse().ok()?))
}

/// A SARIF URI for a file: relative to `root` when under it (what code scanning matches with
/// the repository), else the absolute path.
fn uri(file: &str, root: Option<&str>) -> String {
    match root.and_then(|r| file.strip_prefix(r)) {
        Some(rel) => rel.trim_start_matches('/').to_string(),
        None => file.to_string(),
    }
}

fn location(loc: &str, root: Option<&str>, message: Option<String>) -> Option<Value> {
    let (file, line) = split_location(loc)?;
    let mut v = json!({
        "physicalLocation": {
            "artifactLocation": { "uri": uri(file, root) },
            "region": { "startLine": line },
        }
    });
    if let Some(m) = message {
        v["message"] = json!({ "text": m });
    }
    Some(v)
}

/// The SARIF log of `findings` (allowed ones already left out). `root`: the source root to make
/// paths relative to (e.g. the repository checkout).
pub fn sarif(findings: &[Finding], root: Option<&str>) -> Value {
    let rules: Vec<Value> = patterns::ALL
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.slug,
                "shortDescription": { "text": p.name },
                "helpUri": format!("docs/patterns.md#{}-{}", p.id.to_lowercase(), p.slug),
                "defaultConfiguration": { "level": p.severity.word() },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut r = json!({
                "ruleId": f.pattern,
                "level": f.severity.word(),
                "message": { "text": format!(
                    "{}: {} (goroutine{} {})",
                    f.name,
                    f.explanation,
                    if f.count == 1 { "" } else { "s" },
                    f.goroutines.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                )},
                "properties": {
                    "confidence": f.confidence,
                    "blocked_ns": f.blocked_ns,
                    "goroutines": f.goroutines,
                    "object": f.object.map(|o| o.to_string()),
                },
            });
            if let Some(l) = f
                .blocked_at
                .as_ref()
                .and_then(|b| location(&b.location, root, None))
            {
                r["locations"] = json!([l]);
            }
            if let Some(l) = f.created_by.as_ref().and_then(|c| {
                location(
                    c.location.as_deref()?,
                    root,
                    Some(format!("the goroutine was created here, in {}", c.function)),
                )
            }) {
                r["relatedLocations"] = json!([l]);
            }
            r
        })
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "blockprobe",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/blockprobe/blockprobe",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{BlockingSite, CreationSite, Text};

    #[test]
    fn results_point_at_the_blocking_line_and_the_go_statement() {
        let p = patterns::CHAN_RECV_NO_SENDER;
        let f = Finding {
            object_kind: Some("chan"),
            object: Some(crate::report::Hex(0xc000012345)),
            wait_reason: Some(Text::from("chan receive")),
            blocked_ns: 2_000_000_000,
            blocked_at: Some(std::sync::Arc::new(BlockingSite {
                function: Text::from("main.worker"),
                location: Text::from("/src/app/main.go:20"),
            })),
            created_by: Some(CreationSite {
                function: Text::from("main.main"),
                location: Some(Text::from("/src/app/main.go:12")),
                parent_goid: 1,
            }),
            ..Finding::new(p, "observed", vec![7, 9], "goroutine 7 receives".into())
        };
        let log = sarif(&[f], Some("/src/app"));
        assert_eq!(log["version"], "2.1.0");
        let run = &log["runs"][0];
        assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 18);
        let r = &run["results"][0];
        assert_eq!(r["ruleId"], "BP03");
        assert_eq!(r["level"], "warning");
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "main.go");
        assert_eq!(loc["region"]["startLine"], 20);
        let rel = &r["relatedLocations"][0]["physicalLocation"];
        assert_eq!(rel["region"]["startLine"], 12);
        assert_eq!(split_location("C:/x.go:7"), Some(("C:/x.go", 7)));
        assert_eq!(split_location("nowhere"), None);
    }
}
