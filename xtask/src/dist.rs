//! `cargo xtask dist`: a release tarball that runs on a host without nightly Rust, bpf-linker or
//! Go. The eBPF object is compiled into the binary (agent/src/probes.rs, `include_bytes_aligned!`
//! of the object agent/build.rs builds), and this checks that it is there before packing:
//! `target/dist/blockprobe-<version>-x86_64-unknown-linux-gnu.tar.gz` holds the binary, the
//! README, the docs, deploy/ and a LICENSE file if there is one, under one top directory.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use object::read::elf::{FileHeader as _, SectionHeader as _};
use object::{Object as _, ObjectSection as _, elf};

use crate::setup::{self, GoWanted};
use crate::util::{self, cargo, run};

/// blockprobe reads amd64 Go runtimes and loads x86-64 uprobes: one target.
pub const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Program sections the embedded object must have (probes-ebpf/src/programs.rs): the uprobes,
/// and the scheduler tracepoints of the thread view.
const REQUIRED_SECTIONS: &[&str] = &[
    "uprobe",
    "tracepoint/sched/sched_switch",
    "tracepoint/sched/sched_waking",
];

#[derive(clap::Args)]
pub struct Args {
    /// Pack the dev-profile build instead of the release one (the tests do, to reuse the build
    /// CI already made; what users download is the release build).
    #[arg(long)]
    pub debug: bool,
    /// Where the tarball goes.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn dist(root: &Path, args: &Args) -> Result<PathBuf> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        bail!("blockprobe is built for {TRIPLE} only");
    }
    let setup = setup::setup(root, &GoWanted::Newest)?;
    let mut build = cargo();
    build.args(["build", "-p", "blockprobe"]);
    if !args.debug {
        build.arg("--release");
    }
    run(setup.with_bpf_linker(&mut build))
        .context("building blockprobe failed; if the eBPF build failed, run `cargo xtask setup`")?;
    let profile_dir = if args.debug { "debug" } else { "release" };
    let bin = root.join("target").join(profile_dir).join("blockprobe");
    let data = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    let embedded = embedded_probes(&data)
        .with_context(|| format!("{} has no usable eBPF object", bin.display()))?;
    println!(
        "dist: eBPF object embedded at offset {:#x}, {} bytes, programs: {}",
        embedded.offset,
        embedded.size,
        embedded.programs.join(", ")
    );
    let version = env!("CARGO_PKG_VERSION");
    let out = Command::new(&bin)
        .arg("--version")
        .env_clear()
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && said.trim() == format!("blockprobe {version}"),
        "{} --version said {said:?}",
        bin.display()
    );

    let name = format!(
        "blockprobe-{version}-{TRIPLE}{}",
        if args.debug { "-debug" } else { "" }
    );
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| root.join("target/dist"));
    let stage = out_dir.join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("removing the old {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    std::fs::copy(&bin, stage.join("blockprobe")).context("copying the binary")?;
    for file in ["README.md", "LICENSE", "LICENSE-MIT", "LICENSE-APACHE"] {
        let from = root.join(file);
        if from.is_file() {
            std::fs::copy(&from, stage.join(file)).with_context(|| format!("copying {file}"))?;
        }
    }
    for dir in ["deploy", "docs"] {
        copy_tree(&root.join(dir), &stage.join(dir))?;
    }
    let tarball = out_dir.join(format!("{name}.tar.gz"));
    // Reproducible: sorted names, one fixed time and owner. The dev build (100+ MB, for the
    // tests) is compressed fast rather than small.
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--use-compress-program",
            if args.debug {
                "gzip -1 -n"
            } else {
                "gzip -9 -n"
            },
            "-cf",
        ])
        .arg(&tarball)
        .arg("-C")
        .arg(&out_dir)
        .arg(&name))
    .context("packing the tarball (GNU tar)")?;
    std::fs::remove_dir_all(&stage).ok();
    let sum = util::probe(
        Command::new("sha256sum")
            .arg(&tarball)
            .current_dir(&out_dir),
    )?;
    if sum.status.success() {
        let line = String::from_utf8_lossy(&sum.stdout);
        // `sha256sum -c` from the directory of the tarball.
        let line = line.replace(&tarball.display().to_string(), &format!("{name}.tar.gz"));
        std::fs::write(out_dir.join(format!("{name}.tar.gz.sha256")), line)?;
    }
    let size = std::fs::metadata(&tarball)?.len();
    println!(
        "dist: wrote {} ({:.1} MiB)",
        tarball.display(),
        size as f64 / (1 << 20) as f64
    );
    Ok(tarball)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// The eBPF object found inside a binary.
#[derive(Debug, PartialEq, Eq)]
pub struct Embedded {
    pub offset: usize,
    pub size: usize,
    /// Its program sections.
    pub programs: Vec<String>,
}

/// Finds the one eBPF ELF object (64-bit, little-endian, `EM_BPF`) inside `data` and checks
/// that it has the program sections blockprobe attaches.
pub fn embedded_probes(data: &[u8]) -> Result<Embedded> {
    // include_bytes! puts it in .rodata: search only there (a dev build is 100+ MB).
    let (from, to) = object::File::parse(data)
        .ok()
        .and_then(|f| f.section_by_name(".rodata")?.file_range())
        .map_or((1, data.len()), |(off, len)| {
            (off as usize, (off + len) as usize)
        });
    let mut found = Vec::new();
    let mut at = from.max(1); // the binary's own header is at 0
    while let Some(i) = find(&data[at..to], &elf::ELFMAG).map(|i| i + at) {
        at = i + 1;
        let Some(size) = bpf_object_size(&data[i..]) else {
            continue;
        };
        let obj = object::File::parse(&data[i..i + size])
            .with_context(|| format!("the eBPF object at {i:#x} does not parse"))?;
        let programs: Vec<String> = obj
            .sections()
            .filter_map(|s| s.name().ok().map(str::to_string))
            .filter(|n| {
                n.starts_with("uprobe") || n.starts_with("tracepoint") || n.starts_with("iter")
            })
            .collect();
        found.push(Embedded {
            offset: i,
            size,
            programs,
        });
    }
    ensure!(!found.is_empty(), "no eBPF ELF object (EM_BPF) inside");
    ensure!(
        found.len() == 1,
        "{} eBPF objects inside, expected one",
        found.len()
    );
    let e = found.remove(0);
    for want in REQUIRED_SECTIONS {
        ensure!(
            e.programs.iter().any(|p| p == want),
            "the embedded eBPF object has no `{want}` section (it has: {})",
            e.programs.join(", ")
        );
    }
    Ok(e)
}

/// The size of the eBPF ELF object that starts `data` (its section headers end it, as
/// `ld`-style objects put them last), or None when `data` does not start one.
fn bpf_object_size(data: &[u8]) -> Option<usize> {
    let header = elf::FileHeader64::<object::LittleEndian>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    if header.e_machine(endian) != elf::EM_BPF {
        return None;
    }
    let shoff = header.e_shoff(endian) as usize;
    let shend =
        shoff.checked_add(header.e_shnum(endian) as usize * header.e_shentsize(endian) as usize)?;
    // The section data may follow the headers in some layouts: take the furthest end.
    let sections = header.sections(endian, data).ok()?;
    let data_end = sections
        .iter()
        .filter(|s| s.sh_type(endian) != elf::SHT_NOBITS)
        .map(|s| s.sh_offset(endian) as usize + s.sh_size(endian) as usize)
        .max()
        .unwrap_or(0);
    let size = shend.max(data_end);
    (size <= data.len()).then_some(size)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The real binary is checked by tests/e2e/dist.rs, through `cargo xtask dist`.
    #[test]
    fn a_binary_without_an_ebpf_object_is_refused() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = embedded_probes(&me).unwrap_err().to_string();
        assert!(err.contains("no eBPF ELF object"), "{err}");
    }
}
