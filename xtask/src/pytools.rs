//! The PyPI tools the tests run, in one venv (`.tools/python`): kubernetes-validate, which
//! validates deploy/k8s/ against Kubernetes' own schemas; the Prometheus Operator's CRD models,
//! for the ServiceMonitor and PodMonitor it has no schema for; and `dockerfile`, which parses the
//! Dockerfile with BuildKit's own parser (tests/e2e/deploy.rs).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::util::{self, run};

/// Exact versions, so that a fresh machine validates what this one did.
/// cloudcoil-models-prometheus-operator 0.80.x is the newest line that installs on Python
/// older than 3.14 (its models are generated from prometheus-operator v0.80.1's CRDs).
pub const PYPI_TOOLS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "cloudcoil==0.6.0",
    "cloudcoil-models-prometheus-operator==0.80.1.0",
    "dockerfile==3.4.0",
];

/// The venv.
pub fn venv(root: &Path) -> PathBuf {
    util::tools_dir(root).join("python")
}

/// Installs the tools when missing; the list installed is kept beside them, so that a changed
/// pin reinstalls.
pub fn install(root: &Path) -> Result<()> {
    let what = "PyPI tools (kubernetes-validate, prometheus-operator CRD models, dockerfile)";
    let venv = venv(root);
    let stamp = venv.join("blockprobe-requirements.txt");
    let wanted = PYPI_TOOLS.join("\n") + "\n";
    if venv.join("bin/kubernetes-validate").is_file()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
    {
        println!("setup: {what}: present ({})", venv.display());
        return Ok(());
    }
    println!("setup: {what}: installing into {}", venv.display());
    if !venv.join("bin/pip").is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).context(
            "could not create a Python venv: is python3 with venv installed? \
             (`apt-get install -y python3-venv`)",
        )?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--disable-pip-version-check", "-q"])
        .args(PYPI_TOOLS))
    .context("could not install the PyPI tools: is PyPI (pypi.org) reachable?")?;
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}
