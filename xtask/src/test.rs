//! `cargo xtask test`: the one test command (CI runs exactly this).
//! Phases: setup (all Go versions), unit tests, agent build (with eBPF), fixtures,
//! integration tests; then one summary line `N passed, M failed[, K skipped]`.
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, anyhow};

use crate::fixtures;
use crate::setup::{self, GoWanted, Setup};
use crate::util::{self, cargo};

/// Totals over every `test result:` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    fn add(&mut self, o: Totals) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
    }

    /// `N passed, M failed` (`, K skipped` when tests were ignored).
    pub fn summary(&self) -> String {
        let mut s = format!("{} passed, {} failed", self.passed, self.failed);
        if self.ignored > 0 {
            s.push_str(&format!(", {} skipped", self.ignored));
        }
        s
    }
}

/// Sums libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...` lines.
pub fn parse_test_results(output: &str) -> Totals {
    let mut t = Totals::default();
    for line in output.lines() {
        let Some(idx) = line.find("test result:") else {
            continue;
        };
        let rest = &line[idx + "test result:".len()..];
        // Skip the `ok.` / `FAILED.` word, then read `<n> <what>` pairs split by ';'.
        let rest = rest.split_once('.').map_or(rest, |(_, r)| r);
        for part in rest.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => t.passed += n,
                "failed" => t.failed += n,
                "ignored" => t.ignored += n,
                _ => {}
            }
        }
    }
    t
}

/// A phase that failed, and what to do about it.
struct PhaseError {
    phase: &'static str,
    error: anyhow::Error,
    hint: String,
}

struct Run {
    totals: Totals,
    phase_no: usize,
}

const PHASES: usize = 5;

impl Run {
    fn phase<T>(
        &mut self,
        name: &'static str,
        hint: &str,
        f: impl FnOnce(&mut Totals) -> Result<T>,
    ) -> Result<T, PhaseError> {
        self.phase_no += 1;
        println!("\n==> [{}/{PHASES}] {name}", self.phase_no);
        let start = Instant::now();
        let r = f(&mut self.totals);
        match &r {
            Ok(_) => println!("<== {name}: ok ({})", util::secs(start)),
            Err(_) => println!("<== {name}: FAILED ({})", util::secs(start)),
        }
        r.map_err(|error| PhaseError {
            phase: name,
            error,
            hint: hint.to_string(),
        })
    }
}

/// Runs every phase; prints the summary line last; the error names the failed phase.
pub fn test(root: &Path, extra: &[OsString]) -> Result<()> {
    let start = Instant::now();
    let mut run = Run {
        totals: Totals::default(),
        phase_no: 0,
    };
    let result = phases(&mut run, root, extra);
    println!();
    match &result {
        Ok(()) => println!("xtask test: all phases passed ({})", util::secs(start)),
        Err(e) => {
            eprintln!("xtask test: phase `{}` failed: {:#}", e.phase, e.error);
            eprintln!("hint: {}", e.hint);
        }
    }
    println!("{}", run.totals.summary());
    match result {
        Ok(()) => Ok(()),
        // Everything was printed already; only the exit status is left to set.
        Err(_) => std::process::exit(1),
    }
}

fn phases(run: &mut Run, root: &Path, extra: &[OsString]) -> Result<(), PhaseError> {
    let setup = run.phase(
        "setup",
        "fix the step named above; `cargo xtask setup --all-go` repeats it",
        |_| setup::setup(root, &GoWanted::All),
    )?;

    run.phase(
        "unit tests (blockprobe, xtask)",
        "see the failing tests above; if the eBPF build failed, run `cargo xtask setup`",
        |totals| {
            let mut cmd = cargo();
            // `--tests`: lib, bins and integration tests (not doc tests, not the e2e crate).
            cmd.args(["test", "-p", "blockprobe", "-p", "xtask", "--tests"]);
            cargo_teed(&setup, &mut cmd, totals)
        },
    )?;

    run.phase(
        "build blockprobe with its eBPF object",
        "eBPF build failed? run `cargo xtask setup` (nightly rust-src, LLVM 22, bpf-linker)",
        |_| {
            let mut cmd = cargo();
            cmd.args(["build", "-p", "blockprobe"]);
            setup.with_bpf_linker(&mut cmd);
            util::run(&mut cmd)
        },
    )?;

    run.phase(
        "fixtures (all Go versions)",
        "see the failed go build above; `cargo xtask fixtures --all-go` repeats it",
        |_| {
            let built = fixtures::build(
                &setup,
                &fixtures::Selection {
                    toolchains: &setup.go,
                    variants: fixtures::VARIANTS,
                    only: &[],
                },
            )?;
            let manifest = fixtures::write_manifest(root, &built)?;
            println!("fixtures: wrote {}", manifest.display());
            Ok(())
        },
    )?;

    run.phase(
        "integration tests (blockprobe-tests)",
        "see the failing tests above; rerun with `cargo xtask test -- <test name> --nocapture`",
        |totals| {
            let mut cmd = cargo();
            cmd.args(["test", "-p", "blockprobe-tests"])
                .env("BLOCKPROBE_FIXTURES", fixtures::output_dir(root))
                .env("BLOCKPROBE_BIN", root.join("target/debug/blockprobe"))
                .env("BLOCKPROBE_GO_VERSIONS", setup.go_versions().join(","));
            if let Some(ci) = std::env::var_os("CI") {
                cmd.env("CI", ci);
            }
            if !extra.is_empty() {
                cmd.arg("--").args(extra);
            }
            cargo_teed(&setup, &mut cmd, totals)
        },
    )?;
    Ok(())
}

/// Runs a `cargo test`, streaming its output, and adds its `test result:` lines to `totals`.
fn cargo_teed(setup: &Setup, cmd: &mut Command, totals: &mut Totals) -> Result<()> {
    setup.with_bpf_linker(cmd);
    let out = util::run_teed(cmd)?;
    totals.add(parse_test_results(&out.stdout));
    if out.status.success() {
        return Ok(());
    }
    let mut msg = util::teed_failure(cmd, out.status);
    if out
        .stderr
        .contains("failed to run custom build command for `blockprobe")
    {
        msg.push_str(" (building the eBPF object failed: run `cargo xtask setup`)");
    } else if out.stderr.contains("could not compile") {
        msg.push_str(" (a crate did not compile)");
    }
    Err(anyhow!(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_result_lines() {
        let out = "\
running 3 tests
test a ... ok
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

test result: FAILED. 2 passed; 1 failed; 4 ignored; 0 measured; 0 filtered out; finished in 1.50s
   Doc-tests blockprobe
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
";
        let t = parse_test_results(out);
        assert_eq!(
            t,
            Totals {
                passed: 5,
                failed: 1,
                ignored: 4
            }
        );
        assert_eq!(t.summary(), "5 passed, 1 failed, 4 skipped");
    }

    #[test]
    fn summary_without_ignored() {
        let t = parse_test_results(
            "test result: ok. 7 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        assert_eq!(t.summary(), "7 passed, 0 failed");
    }

    #[test]
    fn ignores_other_lines() {
        let t = parse_test_results("test result is great\nnothing here\ntest result: garbage\n");
        assert_eq!(t, Totals::default());
    }
}
