//! `cargo xtask fixtures`: builds the Go programs under `tests/fixtures/<name>/` with each Go
//! toolchain and in each variant, into `target/fixtures/go<version>/<variant>/<name>`.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, Result, bail};

use crate::setup::{GoToolchain, Setup};
use crate::util;

/// At most this many `go build`s run at once (the machines have 2 cores).
const PARALLEL_BUILDS: usize = 2;

/// How a fixture is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Plain `go build`.
    Default,
    /// `-buildmode=pie`.
    Pie,
    /// `-ldflags=-s -w`: no symbol table, no DWARF.
    Stripped,
}

pub const VARIANTS: &[Variant] = &[Variant::Default, Variant::Pie, Variant::Stripped];

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::Pie => "pie",
            Variant::Stripped => "stripped",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Variant::Default => &[],
            Variant::Pie => &["-buildmode=pie"],
            Variant::Stripped => &["-ldflags=-s -w"],
        }
    }
}

/// One fixture program: a `package main` directory, or a package with tests only (no `package
/// main`, some `_test.go` files), whose test binary is built with `go test -c` (for `blockprobe
/// run -- ./pkg.test`, the CI use).
#[derive(Clone, Debug)]
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    /// Its Go files `import "C"`: built with CGO_ENABLED=1.
    pub cgo: bool,
    /// A test binary (`go test -c`) rather than a program.
    pub test: bool,
}

/// One built (or up-to-date) fixture binary.
#[derive(Clone, Debug)]
pub struct Built {
    pub go_version: String,
    pub variant: Variant,
    pub fixture: String,
    pub path: PathBuf,
    pub cgo: bool,
}

pub fn source_dir(root: &Path) -> PathBuf {
    root.join("tests").join("fixtures")
}

pub fn output_dir(root: &Path) -> PathBuf {
    root.join("target").join("fixtures")
}

/// Where a fixture binary goes.
pub fn binary_path(root: &Path, go_version: &str, variant: Variant, fixture: &str) -> PathBuf {
    output_dir(root)
        .join(format!("go{go_version}"))
        .join(variant.name())
        .join(fixture)
}

/// What goes into a fixture build besides its own directory: go.mod, go.sum and any
/// non-main (shared) package directories under the fixtures dir.
struct Sources {
    fixtures: Vec<Fixture>,
    shared_inputs: Vec<PathBuf>,
}

fn go_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "go") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Finds the fixtures (directories holding a `package main`) under `src`.
fn discover(src: &Path) -> Result<Sources> {
    let mut fixtures = Vec::new();
    let mut shared_inputs: Vec<PathBuf> = ["go.mod", "go.sum"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("reading the fixtures directory {}", src.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The go command ignores these, and so do we.
        if name.starts_with('.') || name.starts_with('_') || name == "testdata" {
            continue;
        }
        let files = go_files(&dir)?;
        if files.is_empty() {
            continue;
        }
        let mut is_main = false;
        let mut cgo = false;
        let mut tests = false;
        for f in &files {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            if f.to_string_lossy().ends_with("_test.go") {
                tests = true;
                continue;
            }
            is_main |= package_name(&text) == Some("main");
            cgo |= imports_c(&text);
        }
        if is_main || tests {
            fixtures.push(Fixture {
                name,
                dir,
                cgo,
                test: !is_main,
            });
        } else {
            shared_inputs.extend(all_files(&dir)?);
        }
    }
    Ok(Sources {
        fixtures,
        shared_inputs,
    })
}

/// The name in the first `package` clause.
fn package_name(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package "))
        .and_then(|rest| rest.split_whitespace().next())
}

/// Whether Go source imports the pseudo-package "C" (`import "C"`, or "C" in an import block).
pub fn imports_c(text: &str) -> bool {
    let mut in_block = false;
    for line in text.lines().map(str::trim) {
        if in_block {
            if line.starts_with(')') {
                in_block = false;
            } else if line == "\"C\"" || line.starts_with("\"C\" ") || line.starts_with("\"C\"//") {
                return true;
            }
        } else if let Some(rest) = line.strip_prefix("import") {
            let rest = rest.trim_start();
            if rest.starts_with("\"C\"") {
                return true;
            }
            if let Some(inner) = rest.strip_prefix('(') {
                in_block = !inner.contains(')');
                if inner.trim_start().starts_with("\"C\"") {
                    return true;
                }
            }
        }
    }
    false
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// The newest modification time among `files`.
fn newest_mtime(files: &[PathBuf]) -> Result<Option<SystemTime>> {
    let mut newest = None;
    for f in files {
        let t = f
            .metadata()
            .and_then(|m| m.modified())
            .with_context(|| format!("stat {}", f.display()))?;
        newest = newest.max(Some(t));
    }
    Ok(newest)
}

/// A build is up to date when its output exists and is newer than every input.
pub fn up_to_date(output: &Path, inputs: &[PathBuf]) -> Result<bool> {
    let Ok(out_time) = output.metadata().and_then(|m| m.modified()) else {
        return Ok(false);
    };
    Ok(match newest_mtime(inputs)? {
        Some(newest) => out_time > newest,
        None => true,
    })
}

struct Job<'a> {
    go: &'a GoToolchain,
    variant: Variant,
    fixture: &'a Fixture,
    out: PathBuf,
}

impl Job<'_> {
    fn label(&self) -> String {
        format!(
            "go{}/{}/{}",
            self.go.version,
            self.variant.name(),
            self.fixture.name
        )
    }

    fn command(&self, root: &Path, src: &Path) -> Command {
        let tools = util::tools_dir(root);
        let mut cmd = Command::new(&self.go.go);
        cmd.current_dir(src)
            .env_remove("GOROOT")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", root.join("target/go-cache"))
            .env("GOPATH", tools.join("gopath"))
            .env("GOPROXY", "off")
            .env("GO111MODULE", "on")
            .env("CGO_ENABLED", if self.fixture.cgo { "1" } else { "0" })
            .args(if self.fixture.test {
                &["test", "-c"][..]
            } else {
                &["build"][..]
            })
            .arg("-o")
            .arg(&self.out)
            .args(self.variant.flags())
            .arg(format!("./{}", self.fixture.name));
        cmd
    }
}

/// What to build.
pub struct Selection<'a> {
    pub toolchains: &'a [GoToolchain],
    pub variants: &'a [Variant],
    /// Only these fixtures (all when empty, except the benchmark workloads).
    pub only: &'a [&'a str],
}

/// Benchmark workloads (`tests/fixtures/bench_*`) are built by `cargo xtask bench` for the newest
/// Go only, not for every version × variant: they are not test fixtures, and bench_http alone
/// takes ~30 s a Go version to build cold.
pub const BENCH_PREFIX: &str = "bench_";

/// Fixtures built in the default variant only: what they are for does not depend on how the
/// binary was linked. `tracegen` writes Go execution traces (runtime/trace) for the trace
/// parser's oracle tests (tests/e2e/gotrace.rs) and `cargo xtask bench --only trace`; a PIE or
/// stripped build writes the same trace. `threadsleep` sleeps an OS thread in nanosleep(2) for
/// the timeline's off-CPU spans (tests/e2e/timeline.rs), which no Go symbol is needed for.
pub const DEFAULT_VARIANT_ONLY: &[&str] = &["tracegen", "threadsleep"];

/// Whether `fixture` is built in `variant`.
pub fn builds_in(fixture: &str, variant: Variant) -> bool {
    variant == Variant::Default || !DEFAULT_VARIANT_ONLY.contains(&fixture)
}

/// Builds the selected fixtures (skipping up-to-date ones), at most 2 at a time.
pub fn build(setup: &Setup, sel: &Selection) -> Result<Vec<Built>> {
    let start = Instant::now();
    let root = &setup.root;
    let src = source_dir(root);
    if !src.join("go.mod").is_file() {
        bail!(
            "{} is missing; it is the one module file of all fixtures",
            src.join("go.mod").display()
        );
    }
    let sources = discover(&src)?;
    let fixtures: Vec<&Fixture> = sources
        .fixtures
        .iter()
        .filter(|f| {
            if sel.only.is_empty() {
                !f.name.starts_with(BENCH_PREFIX)
            } else {
                sel.only.contains(&f.name.as_str())
            }
        })
        .collect();
    for name in sel.only {
        if !fixtures.iter().any(|f| f.name == *name) {
            bail!(
                "fixture `{name}` not found: expected a `package main` in {}",
                src.join(name).display()
            );
        }
    }
    if fixtures.is_empty() {
        println!("fixtures: no fixtures under {}", src.display());
    }
    if sel.toolchains.is_empty() {
        bail!("no Go toolchain is installed: run `cargo xtask setup`");
    }

    let mut jobs = Vec::new();
    let mut fresh = 0usize;
    let mut built = Vec::new();
    for go in sel.toolchains {
        for fixture in &fixtures {
            let mut inputs = all_files(&fixture.dir)?;
            inputs.extend(sources.shared_inputs.iter().cloned());
            for &variant in sel.variants {
                if !builds_in(&fixture.name, variant) {
                    continue;
                }
                let out = binary_path(root, &go.version, variant, &fixture.name);
                built.push(Built {
                    go_version: go.version.clone(),
                    variant,
                    fixture: fixture.name.clone(),
                    path: out.clone(),
                    cgo: fixture.cgo,
                });
                if up_to_date(&out, &inputs)? {
                    fresh += 1;
                } else {
                    jobs.push(Job {
                        go,
                        variant,
                        fixture,
                        out,
                    });
                }
            }
        }
    }

    let (ok, failed) = run_jobs(root, &src, &jobs);
    println!(
        "fixtures: {} binaries: {ok} built, {fresh} up to date, {} failed, {} not started ({})",
        built.len(),
        failed.len(),
        jobs.len() - ok - failed.len(),
        util::secs(start)
    );
    if !failed.is_empty() {
        bail!(
            "{} fixture build(s) failed: {} (the go command and its errors are printed above)",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(built)
}

/// Runs the jobs on a few threads, stopping at the first failure (running builds finish).
/// Returns how many succeeded and the labels of those that failed.
fn run_jobs(root: &Path, src: &Path, jobs: &[Job]) -> (usize, Vec<String>) {
    let next = AtomicUsize::new(0);
    let ok = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failed = Mutex::new(Vec::new());
    let worker = || {
        while !stop.load(Ordering::Relaxed) {
            let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            match run_job(root, src, job) {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    eprintln!("{e:#}");
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(job.label());
                }
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_BUILDS.min(jobs.len()) {
            s.spawn(worker);
        }
    });
    (
        ok.into_inner(),
        failed.into_inner().unwrap_or_else(|p| p.into_inner()),
    )
}

fn run_job(root: &Path, src: &Path, job: &Job) -> Result<()> {
    let start = Instant::now();
    if let Some(dir) = job.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut cmd = job.command(root, src);
    let cmdline = util::display(&cmd);
    let out = util::probe(&mut cmd)
        .with_context(|| format!("fixture {} failed to start", job.label()))?;
    if !out.status.success() {
        bail!(
            "fixture build failed: {} (fixture `{}`, Go {}, variant {}, cgo {})\n$ {cmdline}\ngo build failed ({}):\n{}",
            job.label(),
            job.fixture.name,
            job.go.version,
            job.variant.name(),
            job.fixture.cgo,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
        );
    }
    println!("fixtures: built {} ({})", job.label(), util::secs(start));
    Ok(())
}

/// Writes `target/fixtures/manifest.json`: one entry per binary.
pub fn write_manifest(root: &Path, built: &[Built]) -> Result<PathBuf> {
    let entries: Vec<serde_json::Value> = built
        .iter()
        .map(|b| {
            serde_json::json!({
                "go_version": b.go_version,
                "variant": b.variant.name(),
                "fixture": b.fixture,
                "path": b.path.to_string_lossy(),
                "cgo": b.cgo,
            })
        })
        .collect();
    let dir = output_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("manifest.json");
    let tmp = dir.join("manifest.json.tmp");
    let text = serde_json::to_string_pretty(&entries)? + "\n";
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn set_mtime(p: &Path, t: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn up_to_date_compares_mtimes() {
        let d = temp_dir("mtime");
        let input = d.join("main.go");
        let out = d.join("bin");
        std::fs::write(&input, "package main").unwrap();
        assert!(
            !up_to_date(&out, std::slice::from_ref(&input)).unwrap(),
            "missing output"
        );
        std::fs::write(&out, "").unwrap();
        let now = SystemTime::now();
        set_mtime(&input, now - Duration::from_secs(10));
        set_mtime(&out, now);
        assert!(up_to_date(&out, std::slice::from_ref(&input)).unwrap());
        set_mtime(&input, now + Duration::from_secs(1));
        assert!(
            !up_to_date(&out, std::slice::from_ref(&input)).unwrap(),
            "input is newer"
        );
        set_mtime(&input, now);
        assert!(
            !up_to_date(&out, std::slice::from_ref(&input)).unwrap(),
            "same time is stale"
        );
        let missing = d.join("gone.go");
        assert!(up_to_date(&out, &[missing]).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn discovers_main_packages_and_cgo() {
        let d = temp_dir("discover");
        std::fs::write(d.join("go.mod"), "module x\n\ngo 1.22\n").unwrap();
        for (dir, file, text) in [
            ("plain", "main.go", "package main\n\nfunc main() {}\n"),
            (
                "withc",
                "main.go",
                "package main\n\n// #include <stdio.h>\nimport \"C\"\n\nfunc main() {}\n",
            ),
            ("shared", "lib.go", "package shared\n"),
            ("withtests", "x_test.go", "package withtests\n"),
            ("_ignored", "main.go", "package main\n"),
            ("empty", "README", "nothing\n"),
        ] {
            std::fs::create_dir_all(d.join(dir)).unwrap();
            std::fs::write(d.join(dir).join(file), text).unwrap();
        }
        let s = discover(&d).unwrap();
        let names: Vec<_> = s
            .fixtures
            .iter()
            .map(|f| (f.name.as_str(), f.cgo, f.test))
            .collect();
        assert_eq!(
            names,
            [
                ("plain", false, false),
                ("withc", true, false),
                ("withtests", false, true)
            ]
        );
        assert!(s.shared_inputs.contains(&d.join("go.mod")));
        assert!(s.shared_inputs.contains(&d.join("shared/lib.go")));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn tracegen_is_built_in_the_default_variant_only() {
        assert!(builds_in("tracegen", Variant::Default));
        assert!(!builds_in("tracegen", Variant::Pie));
        assert!(!builds_in("tracegen", Variant::Stripped));
        assert!(builds_in("parkers", Variant::Stripped));
        // It is a real fixture, found like the others.
        let src = source_dir(&crate::util::project_root());
        let s = discover(&src).unwrap();
        assert!(
            s.fixtures
                .iter()
                .any(|f| f.name == "tracegen" && !f.cgo && !f.test)
        );
    }

    #[test]
    fn cgo_import_forms() {
        assert!(imports_c("package main\nimport \"C\"\n"));
        assert!(imports_c("package main\nimport (\n\t\"fmt\"\n\t\"C\"\n)\n"));
        assert!(imports_c("package main\nimport (\"C\"; \"fmt\")\n"));
        assert!(!imports_c(
            "package main\nimport (\n\t\"fmt\"\n)\nvar _ = \"C\"\n"
        ));
        assert!(!imports_c("package main\nimport \"CC\"\n"));
    }

    #[test]
    fn binary_layout() {
        let p = binary_path(Path::new("/r"), "1.27.3", Variant::Pie, "demo");
        assert_eq!(p, Path::new("/r/target/fixtures/go1.27.3/pie/demo"));
        assert_eq!(Variant::Stripped.flags(), ["-ldflags=-s -w"]);
    }
}
