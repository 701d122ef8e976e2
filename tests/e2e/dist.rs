//! `cargo xtask dist`: the tarball's binary runs with an empty environment (`env -i`: no PATH,
//! so no cargo, nightly, bpf-linker or Go), and attaches with the eBPF object it embeds.
//!
//! The tarball packed here is the dev-profile one (`--debug`), made from the build CI already
//! has; the release tarball comes from the same code with another profile (building it here
//! would cost CI a release build of the whole agent).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use blockprobe_tests::{Proc, prepare, start_ready, workspace_root};

fn run_empty_env(bin: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .args(args)
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", bin.display()))
}

#[test]
fn the_packed_binary_runs_without_toolchains() {
    // Attaching needs eBPF; inspecting needs a fixture.
    let Some(fixture) = prepare("1.27", "default", "demo") else {
        return;
    };
    let out_dir = std::env::temp_dir().join(format!("blockprobe-dist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "dist",
            "--debug",
        ])
        .arg("--out-dir")
        .arg(&out_dir)
        .current_dir(workspace_root())
        .output()
        .expect("run cargo xtask dist");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo xtask dist failed:\n{log}");
    assert!(
        log.contains("dist: eBPF object embedded at offset"),
        "{log}"
    );
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("blockprobe-{version}-x86_64-unknown-linux-gnu-debug");
    let tarball = out_dir.join(format!("{name}.tar.gz"));
    assert!(tarball.is_file(), "{log}");

    // The checksum file checks.
    let check = Command::new("sha256sum")
        .args(["-c", &format!("{name}.tar.gz.sha256")])
        .current_dir(&out_dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // What is in it.
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for want in [
        "blockprobe",
        "README.md",
        "deploy/k8s/daemonset.yaml",
        "docs/deploy.md",
    ] {
        assert!(
            list.lines().any(|l| l == format!("{name}/{want}")),
            "{want} not in the tarball:\n{list}"
        );
    }
    let extract = out_dir.join("x");
    std::fs::create_dir_all(&extract).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&extract)
        .status()
        .unwrap();
    assert!(st.success());
    let bin: PathBuf = extract.join(&name).join("blockprobe");

    let v = run_empty_env(&bin, &["--version"]);
    assert!(v.status.success());
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("blockprobe {version}")
    );

    let inspect = run_empty_env(&bin, &["inspect", fixture.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    assert!(text.contains("go version:   go1.27.3"), "{text}");
    assert!(text.contains("probe runtime.gopark"), "{text}");

    // The embedded eBPF object loads and attaches: a real session on the demo fixture.
    let target = start_ready(&fixture);
    let mut agent = Proc::spawn(
        Command::new(&bin)
            .args([
                "attach",
                "--pid",
                &target.pid().to_string(),
                "--duration",
                "1s",
            ])
            .env_clear(),
    )
    .expect("start the packed blockprobe");
    let status = agent
        .wait_timeout(Duration::from_secs(30))
        .expect("attach ends");
    let attached = agent.expect_stderr(Duration::from_secs(5), |l| l.contains("attached to pid"));
    let stderr = agent.drain_stderr().join("\n");
    assert!(status.success(), "{stderr}");
    assert!(attached.is_ok(), "{stderr}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
