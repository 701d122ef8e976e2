//! Builds the eBPF programs of `probes-ebpf` for bpfel-unknown-none with nightly and
//! `-Z build-std=core` (through aya-build), so that `src/probes.rs` can embed the object.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // A missing linker otherwise surfaces as a wall of cargo warnings; say what to do instead.
    if std::env::var_os("AYA_BUILD_SKIP").is_none() && which_in_path("bpf-linker").is_none() {
        return Err(anyhow!(
            "bpf-linker is not on PATH; it links blockprobe's eBPF programs. \
             Run `cargo xtask setup` (it installs LLVM 22 and bpf-linker with --features llvm-22)"
        ));
    }
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let pkg = meta
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "probes-ebpf")
        .ok_or_else(|| anyhow!("probes-ebpf package not found in the workspace"))?;
    let root = pkg
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("probes-ebpf manifest has no parent directory"))?;
    aya_build::build_ebpf(
        [Package {
            name: pkg.name.as_str(),
            root_dir: root.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context(
        "building the eBPF programs failed; `cargo xtask setup` installs nightly rust-src, \
         LLVM 22 and bpf-linker",
    )
}

fn which_in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
