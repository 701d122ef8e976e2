//! deploy/k8s/ validated offline, as far as that can go without a cluster (none can run here:
//! docs/deploy.md says what was and was not tried).
//!
//! - The built-in kinds (Namespace, DaemonSet, Service) by `kubernetes-validate --strict`
//!   (PyPI) against the Kubernetes schemas of the oldest and newest versions the manifests
//!   target: unknown fields are errors.
//! - ServiceMonitor and PodMonitor, which kubernetes-validate has no schema for (it only warns
//!   and passes them), against the Prometheus Operator's CRD schema as the PyPI models generated
//!   from it (tests/e2e/deploy/validate_monitors.py).
//! - Each validator is shown to reject a broken copy, so that a pass means something.
//! - What the manifests promise: hostPID, not privileged, exactly the named capabilities, the
//!   daemon's command line, one port through the DaemonSet, the Service and the monitors.
//! - The Dockerfile (which cannot be built here: no Docker daemon, no image registry), parsed
//!   by BuildKit's parser, against the toolchain `cargo xtask setup` installs.
//!
//! The tools come from the venv `cargo xtask setup` installs (xtask/src/pytools.rs); the
//! capability set itself is tried for real in deploy_caps.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use blockprobe_tests::{blockprobe_bin, skip_or_fail, workspace_root};
use serde_json::Value;

/// Kubernetes versions the manifests are validated against: an older one still in use, and
/// kubernetes-validate's newest.
const K8S_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];
const BUILT_IN: &[&str] = &["namespace.yaml", "daemonset.yaml", "service.yaml"];
const MONITORS: &[&str] = &["servicemonitor.yaml", "podmonitor.yaml"];

fn venv_bin(name: &str) -> Option<PathBuf> {
    let tools = std::env::var_os("BLOCKPROBE_TOOLS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools"));
    let bin = tools.join("python/bin").join(name);
    if bin.is_file() {
        return Some(bin);
    }
    skip_or_fail(&format!(
        "{} is missing (run `cargo xtask setup`)",
        bin.display()
    ));
    None
}

fn k8s(name: &str) -> PathBuf {
    workspace_root().join("deploy/k8s").join(name)
}

fn kubernetes_validate(tool: &Path, files: &[PathBuf]) -> (bool, String) {
    let mut cmd = Command::new(tool);
    cmd.arg("--strict");
    for v in K8S_VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd.args(files).output().expect("run kubernetes-validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn validate_monitors(python: &Path, files: &[PathBuf]) -> (bool, String) {
    let script = workspace_root().join("tests/e2e/deploy/validate_monitors.py");
    let out = Command::new(python)
        .arg(script)
        .args(files)
        .output()
        .expect("run validate_monitors.py");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A manifest's first document as JSON (PyYAML from the same venv parses it).
fn load(python: &Path, name: &str) -> Value {
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(next(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(k8s(name))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from PyYAML")
}

/// A copy of a manifest with one replacement, in a temporary file.
fn broken_copy(name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(k8s(name)).unwrap();
    assert!(text.contains(from), "{name} has no `{from}`");
    let path = std::env::temp_dir().join(format!("blockprobe-{}-{name}", std::process::id()));
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn built_in_kinds_validate_strictly() {
    let Some(tool) = venv_bin("kubernetes-validate") else {
        return;
    };
    let files: Vec<PathBuf> = BUILT_IN.iter().map(|f| k8s(f)).collect();
    let (ok, text) = kubernetes_validate(&tool, &files);
    assert!(ok, "{text}");
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
    for (file, kind) in [
        ("namespace.yaml", "namespace/blockprobe"),
        ("daemonset.yaml", "daemonset/blockprobe"),
        ("service.yaml", "service/blockprobe"),
    ] {
        for v in K8S_VERSIONS {
            let minor = v.rsplit_once('.').unwrap().0;
            let line = format!("{file} passed for resource {kind} against version {minor}");
            assert!(text.contains(&line), "no `{line}` in:\n{text}");
        }
    }
    // A misspelled field fails under --strict.
    let bad = broken_copy("daemonset.yaml", "hostPID: true", "hostPid: true");
    let (ok, text) = kubernetes_validate(&tool, std::slice::from_ref(&bad));
    let _ = std::fs::remove_file(bad);
    assert!(!ok && text.contains("ERROR"), "{text}");
}

#[test]
fn monitors_validate_against_the_operator_crds() {
    let Some(python) = venv_bin("python") else {
        return;
    };
    let files: Vec<PathBuf> = MONITORS.iter().map(|f| k8s(f)).collect();
    let (ok, text) = validate_monitors(&python, &files);
    assert!(ok, "{text}");
    for (file, kind) in [
        ("servicemonitor.yaml", "ServiceMonitor"),
        ("podmonitor.yaml", "PodMonitor"),
    ] {
        let line = format!("{file} {kind}/blockprobe passed");
        assert!(text.contains(&line), "no `{line}` in:\n{text}");
    }
    // An unknown field, and a value outside the schema's pattern, both fail (one run: the
    // models take seconds to import).
    let typo = broken_copy("servicemonitor.yaml", "scrapeTimeout:", "scrapeTimout:");
    let pattern = broken_copy("podmonitor.yaml", "interval: 15s", "interval: fifteen");
    let (ok, text) = validate_monitors(&python, &[typo.clone(), pattern.clone()]);
    let _ = std::fs::remove_file(typo);
    let _ = std::fs::remove_file(pattern);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "ServiceMonitor/blockprobe: not in the CRD schema: .spec.endpoints[0].scrapeTimout"
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("PodMonitor/blockprobe") && l.starts_with("ERROR"))
            && text.contains("podMetricsEndpoints.0.interval"),
        "{text}"
    );
}

#[test]
fn every_manifest_is_validated_and_applied() {
    let mut listed: Vec<String> = std::fs::read_dir(workspace_root().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    listed.sort();
    let mut validated: Vec<String> = BUILT_IN
        .iter()
        .chain(MONITORS)
        .map(|s| s.to_string())
        .collect();
    validated.sort();
    assert_eq!(listed, validated, "a manifest no test validates");
    let kustomization = std::fs::read_to_string(k8s("kustomization.yaml")).unwrap();
    for f in [
        "namespace.yaml",
        "daemonset.yaml",
        "service.yaml",
        "servicemonitor.yaml",
    ] {
        assert!(
            kustomization.contains(&format!("- {f}")),
            "{f} not in kustomization.yaml"
        );
    }
    // One monitor, not both: each agent would be scraped twice.
    assert!(!kustomization.contains("podmonitor.yaml"));
}

#[test]
fn the_daemonset_keeps_its_promises() {
    let Some(python) = venv_bin("python") else {
        return;
    };
    let ds = load(&python, "daemonset.yaml");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&ds["spec"]["selector"]["matchLabels"], labels);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut add: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    add.sort();
    assert_eq!(
        add,
        ["BPF", "DAC_READ_SEARCH", "PERFMON", "SYSLOG", "SYS_PTRACE"]
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(args, ["daemon", "--metrics", "0.0.0.0:9464"]);
    assert_eq!(c["ports"][0]["containerPort"], 9464);
    assert_eq!(c["ports"][0]["name"], "metrics");
    let mounts: Vec<(&str, bool)> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["mountPath"].as_str().unwrap(), m["readOnly"] == true))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/sys/kernel/tracing", true),
            ("/var/log/containers", true),
            ("/var/log/pods", true),
            ("/var/lib/kubelet/pods", true),
            ("/tmp", false)
        ]
    );

    // The Service and both monitors reach the pods by their labels and the port's name.
    let svc = load(&python, "service.yaml");
    assert_eq!(&svc["spec"]["selector"], labels);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9464);
    let sm = load(&python, "servicemonitor.yaml");
    assert_eq!(
        &sm["spec"]["selector"]["matchLabels"],
        &svc["metadata"]["labels"]
    );
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    let pm = load(&python, "podmonitor.yaml");
    assert_eq!(&pm["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
}

#[test]
fn the_daemonset_runs_a_command_blockprobe_has() {
    if !blockprobe_bin().exists() {
        skip_or_fail(&format!("{} is not built", blockprobe_bin().display()));
        return;
    }
    let out = Command::new(blockprobe_bin())
        .args(["daemon", "--help"])
        .output()
        .expect("run blockprobe daemon --help");
    let help = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        skip_or_fail(&format!(
            "blockprobe has no `daemon` subcommand, which deploy/k8s/daemonset.yaml runs: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    assert!(help.contains("--metrics"), "{help}");
}

/// The Dockerfile's instructions, parsed by BuildKit's own parser (the PyPI `dockerfile`
/// package wraps it): (instruction, flags, arguments).
fn dockerfile(python: &Path) -> Vec<(String, Vec<String>, Vec<String>)> {
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, dockerfile; print(json.dumps([[c.cmd, list(c.flags), list(c.value)] \
             for c in dockerfile.parse_file(sys.argv[1])]))",
        ])
        .arg(workspace_root().join("Dockerfile"))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The image cannot be built here (no Docker daemon, no image registry), so the Dockerfile is
/// checked for what it must agree with: the toolchain `cargo xtask setup` installs (and every
/// CI run uses), the workspace's Rust version, and the command the DaemonSet runs.
#[test]
fn the_dockerfile_builds_as_setup_does() {
    let Some(python) = venv_bin("python") else {
        return;
    };
    let steps = dockerfile(&python);
    let froms: Vec<&Vec<String>> = steps
        .iter()
        .filter(|(cmd, ..)| cmd == "FROM")
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(froms.len(), 2, "two stages: {froms:?}");
    let root = workspace_root();
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let rust_version = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(froms[0][0], format!("rust:{rust_version}-bookworm"));
    assert_eq!(froms[0][2], "builder");

    let builder_runs: String = steps
        .iter()
        .take_while(|(cmd, _, v)| !(cmd == "FROM" && v.get(2).is_some_and(|s| s != "builder")))
        .filter(|(cmd, ..)| cmd == "RUN")
        .map(|(_, _, v)| v.join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    // The same LLVM packages and bpf-linker as xtask/src/setup.rs.
    let setup = std::fs::read_to_string(root.join("xtask/src/setup.rs")).unwrap();
    for pkg in [
        "llvm-22-dev",
        "libpolly-22-dev",
        "libzstd-dev",
        "zlib1g-dev",
    ] {
        assert!(
            setup.contains(&format!("\"{pkg}\"")),
            "setup.rs no longer installs {pkg}"
        );
        assert!(
            builder_runs.contains(pkg),
            "the builder does not install {pkg}"
        );
    }
    let linker = setup
        .lines()
        .find_map(|l| l.strip_prefix("const BPF_LINKER_VERSION: &str = "))
        .unwrap()
        .trim_end_matches(';')
        .trim_matches('"');
    assert!(
        builder_runs.contains(&format!(
            "cargo install bpf-linker --version {linker} --no-default-features --features llvm-22"
        )),
        "{builder_runs}"
    );
    assert!(
        builder_runs.contains("--component rust-src"),
        "{builder_runs}"
    );
    assert!(builder_runs.contains("cargo build --release --locked -p blockprobe"));

    // The runtime stage: only the binary, running what the DaemonSet runs.
    let runtime: Vec<&(String, Vec<String>, Vec<String>)> = steps
        .iter()
        .skip_while(|(cmd, _, v)| {
            !(cmd == "FROM" && v.get(2).map(String::as_str) == Some("runtime"))
        })
        .collect();
    let copies: Vec<_> = runtime.iter().filter(|(cmd, ..)| cmd == "COPY").collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].1, ["--from=builder"]);
    assert!(
        !runtime.iter().any(|(cmd, ..)| cmd == "RUN"),
        "the runtime stage runs nothing"
    );
    let cmd = |name: &str| -> Vec<String> {
        runtime
            .iter()
            .find(|(c, ..)| c == name)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(cmd("ENTRYPOINT"), ["/usr/local/bin/blockprobe"]);
    let ds = load(&python, "daemonset.yaml");
    let args: Vec<String> =
        serde_json::from_value(ds["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    assert_eq!(cmd("CMD"), args);

    // The build context leaves out build outputs and local toolchains.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for dir in ["target/", ".tools/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l == dir),
            "{dir} not in .dockerignore"
        );
    }
}
