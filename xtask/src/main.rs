//! blockprobe's developer tasks. Run `cargo xtask --help`.
//!
//! Every command runs `setup` first, which installs only what is missing.
mod bench;
mod demo;
mod dist;
mod fixtures;
mod pytools;
mod setup;
mod test;
mod util;

use std::ffi::OsString;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::setup::GoWanted;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "blockprobe's developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: nightly rust-src, LLVM 22 packages, bpf-linker, Go toolchains;
    /// mount tracefs.
    Setup {
        /// Install every supported Go version, not only the newest.
        #[arg(long)]
        all_go: bool,
    },
    /// Build the Go fixtures (tests/fixtures/<name>) into target/fixtures/go<version>/<variant>/.
    Fixtures {
        /// Build with this Go version only (repeatable). Default: every installed version.
        #[arg(long = "go", value_name = "VERSION", conflicts_with = "all_go")]
        go: Vec<String>,
        /// Install every supported Go version and build with each.
        #[arg(long)]
        all_go: bool,
    },
    /// Run everything CI runs: setup, unit tests, agent build, fixtures, integration tests.
    Test {
        /// Extra arguments for the integration tests' `cargo test` (after `--`).
        #[arg(last = true)]
        extra: Vec<OsString>,
    },
    /// Build blockprobe, start the demo fixture and attach blockprobe to it for 3 seconds.
    Demo,
    /// Measure blockprobe's overhead on Go workloads, next to no agent and runtime/trace.
    Bench(bench::Args),
    /// Build the release tarball target/dist/blockprobe-<version>-x86_64-unknown-linux-gnu.tar.gz:
    /// the binary with its eBPF object embedded (checked), README, docs, deploy/.
    Dist(dist::Args),
    /// Build blockprobe (with its eBPF object).
    Build {
        #[arg(long)]
        release: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = util::project_root();
    match cli.command {
        Cmd::Setup { all_go } => {
            let wanted = if all_go {
                GoWanted::All
            } else {
                GoWanted::Newest
            };
            setup::setup(&root, &wanted)?;
        }
        Cmd::Fixtures { go, all_go } => {
            let wanted = match (all_go, go.is_empty()) {
                (true, _) => GoWanted::All,
                (false, true) => GoWanted::Newest,
                (false, false) => GoWanted::These(go.clone()),
            };
            let setup = setup::setup(&root, &wanted)?;
            let toolchains: Vec<_> = if go.is_empty() {
                setup.go.clone()
            } else {
                let versions = go
                    .iter()
                    .map(|v| setup::supported_go(v))
                    .collect::<Result<Vec<_>>>()?;
                setup
                    .go
                    .iter()
                    .filter(|g| versions.contains(&g.version.as_str()))
                    .cloned()
                    .collect()
            };
            let built = fixtures::build(
                &setup,
                &fixtures::Selection {
                    toolchains: &toolchains,
                    variants: fixtures::VARIANTS,
                    only: &[],
                },
            )?;
            let manifest = fixtures::write_manifest(&root, &built)?;
            println!("fixtures: wrote {}", manifest.display());
        }
        Cmd::Test { extra } => test::test(&root, &extra)?,
        Cmd::Demo => demo::demo(&root)?,
        Cmd::Bench(args) => bench::bench(&root, &args)?,
        Cmd::Dist(args) => {
            dist::dist(&root, &args)?;
        }
        Cmd::Build { release } => {
            let setup = setup::setup(&root, &GoWanted::Newest)?;
            let mut cmd = util::cargo();
            cmd.args(["build", "-p", "blockprobe"]);
            setup.with_bpf_linker(&mut cmd);
            if release {
                cmd.arg("--release");
            }
            util::run(&mut cmd).map_err(|e| {
                e.context(
                    "building blockprobe failed; if the eBPF build failed, run `cargo xtask setup`",
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_passes_extra_args() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "--nocapture", "name"]).unwrap();
        match cli.command {
            Cmd::Test { extra } => assert_eq!(extra, ["--nocapture", "name"]),
            _ => panic!("wrong command"),
        }
        assert!(Cli::try_parse_from(["xtask", "fixtures", "--go", "1.22.10", "--all-go"]).is_err());
    }
}
