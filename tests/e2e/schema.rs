//! The reports validate against the documented schema (docs/report.schema.json); shared by the
//! e2e tests that check reports (`#[path = "schema.rs"] mod schema;`).

use std::path::Path;

use serde_json::Value;

/// Panics with every schema violation of `report`.
pub fn validate(report: &Value) {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).expect("schema")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON schema");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match the schema: {errors:#?}"
    );
}
