//! Byte offsets of the Go runtime structs that blockprobe reads out of a live process
//! (linux/amd64 only).
//!
//! The offsets are read from the target binary's DWARF ([`super::dwarf::layout_from_dwarf`]).
//! A stripped binary (`-ldflags=-s -w`) has no DWARF, so a table generated from real
//! DWARF of every supported Go release series is embedded here as the fallback
//! ([`GoLayout::for_version`]). Patch releases within a series share one layout; the
//! table records which release each entry was measured on.
//!
//! Every offset is from the start of the named Go struct; nested fields (`g.sched.pc`)
//! are given as absolute offsets from the start of the outer struct. The Go source for
//! the structs is `src/runtime/runtime2.go` (`g`, `m`, `p`, `gobuf`, `sudog`),
//! `src/runtime/chan.go` (`hchan`, `waitq`), `src/runtime/stack.go` (`stack`) and
//! `src/internal/abi/type.go` (`abi.Type`, which `runtime._type` aliases).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The Go release series ("1.X") with a layout in the embedded table, oldest first.
pub const SUPPORTED_MINORS: [&str; 6] = ["1.22", "1.23", "1.24", "1.25", "1.26", "1.27"];

/// The offsets blockprobe needs in one Go release series.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GoLayout {
    /// `runtime.g`: a goroutine.
    pub g: GLayout,
    /// `runtime.m`: an OS thread.
    pub m: MLayout,
    /// `runtime.hchan`: a channel.
    pub hchan: HchanLayout,
    /// `runtime.waitq`: a channel's queue of waiting sudogs.
    pub waitq: WaitqLayout,
    /// `runtime.sudog`: a g waiting on a channel, select or semaphore.
    pub sudog: SudogLayout,
    /// `runtime.p`: a processor. Not needed by the probes yet, so optional.
    #[serde(default)]
    pub p: Option<PLayout>,
    /// `internal/abi.Type` (`runtime._type`), the target of `hchan.elemtype`. Optional.
    #[serde(default)]
    pub abi_type: Option<AbiTypeLayout>,
}

/// `runtime.g` (src/runtime/runtime2.go, `type g struct`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GLayout {
    /// `unsafe.Sizeof(g{})`.
    pub size: u32,
    /// `g.stack.lo` (`stack` in src/runtime/stack.go: `lo, hi uintptr`).
    pub stack_lo: u32,
    /// `g.stack.hi`.
    pub stack_hi: u32,
    /// `g.m *m`: the M running this g, or nil.
    pub m: u32,
    /// `g.sched gobuf`: the start of the saved context.
    pub sched: u32,
    /// `g.sched.sp` (`gobuf.sp`), absolute.
    pub sched_sp: u32,
    /// `g.sched.pc` (`gobuf.pc`), absolute.
    pub sched_pc: u32,
    /// `g.sched.bp` (`gobuf.bp`), absolute. gobuf lost its `ret` field in Go 1.25, so this moves.
    pub sched_bp: u32,
    /// `g.syscallsp uintptr`.
    pub syscallsp: u32,
    /// `g.syscallpc uintptr`.
    pub syscallpc: u32,
    /// `g.syscallbp uintptr`, added in Go 1.23.
    #[serde(default)]
    pub syscallbp: Option<u32>,
    /// `g.atomicstatus atomic.Uint32` (the value is the struct's first 4 bytes).
    pub atomicstatus: u32,
    /// `g.goid uint64`.
    pub goid: u32,
    /// `g.waitsince int64`: nanotime when the wait began (set lazily by the GC; see TOOLCHAIN.md).
    pub waitsince: u32,
    /// `g.trackingSeq uint8`: bumped on every transition out of _Grunning (src/runtime/proc.go,
    /// casgstatus), so an unchanged value across two reads means the g did not run between.
    pub tracking_seq: u32,
    /// `g.waitreason waitReason` (a uint8).
    pub waitreason: u32,
    /// `g.parentGoid uint64`.
    pub parent_goid: u32,
    /// `g.gopc uintptr`: pc of the `go` statement that created this g.
    pub gopc: u32,
    /// `g.startpc uintptr`: pc of the goroutine function.
    pub startpc: u32,
    /// `g.waiting *sudog`: the sudogs this g waits on (linked by `sudog.waitlink`).
    pub waiting: u32,
}

/// `runtime.m` (src/runtime/runtime2.go, `type m struct`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MLayout {
    /// `unsafe.Sizeof(m{})`.
    pub size: u32,
    /// `m.g0 *g`: the scheduling stack's g.
    pub g0: u32,
    /// `m.procid uint64`: the OS thread id.
    pub procid: u32,
    /// `m.curg *g`: the user g running on this M.
    pub curg: u32,
    /// `m.p puintptr`: the attached P (0 if none).
    #[serde(default)]
    pub p: Option<u32>,
    /// `m.id int64`.
    pub id: u32,
}

/// `runtime.hchan` (src/runtime/chan.go, `type hchan struct`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HchanLayout {
    /// `unsafe.Sizeof(hchan{})`.
    pub size: u32,
    /// `hchan.qcount uint`: elements in the buffer.
    pub qcount: u32,
    /// `hchan.dataqsiz uint`: buffer capacity.
    pub dataqsiz: u32,
    /// `hchan.buf unsafe.Pointer`.
    pub buf: u32,
    /// `hchan.elemsize uint16`.
    pub elemsize: u32,
    /// `hchan.closed uint32`.
    pub closed: u32,
    /// `hchan.timer *timer`, added in Go 1.23.
    #[serde(default)]
    pub timer: Option<u32>,
    /// `hchan.elemtype *_type`.
    pub elemtype: u32,
    /// `hchan.sendx uint`.
    pub sendx: u32,
    /// `hchan.recvx uint`.
    pub recvx: u32,
    /// `hchan.recvq waitq`.
    pub recvq: u32,
    /// `hchan.sendq waitq`.
    pub sendq: u32,
    /// `hchan.bubble *synctestBubble`, added in Go 1.25.
    #[serde(default)]
    pub bubble: Option<u32>,
    /// `hchan.lock mutex` (its `key uintptr` is at offset 0 within).
    pub lock: u32,
}

/// `runtime.waitq` (src/runtime/chan.go, `type waitq struct`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WaitqLayout {
    /// `waitq.first *sudog`.
    pub first: u32,
    /// `waitq.last *sudog`.
    pub last: u32,
}

/// `runtime.sudog` (src/runtime/runtime2.go, `type sudog struct`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SudogLayout {
    /// `unsafe.Sizeof(sudog{})`.
    pub size: u32,
    /// `sudog.g *g`.
    pub g: u32,
    /// `sudog.next *sudog`.
    pub next: u32,
    /// `sudog.prev *sudog`.
    pub prev: u32,
    /// The word holding the address of the data element. Up to Go 1.25 `sudog.elem` is an
    /// `unsafe.Pointer`; from Go 1.26 it is a `maybeTraceablePtr{vp unsafe.Pointer; vu
    /// uintptr}` (runtime2.go) whose `vu` is the source of truth (`vp` may be nil), so this
    /// is `sudog.elem.vu`.
    pub elem: u32,
    /// The word holding the channel's address: `sudog.c *hchan` up to Go 1.25, and
    /// `sudog.c.vu` from Go 1.26 (`maybeTraceableChan` embeds `maybeTraceablePtr`).
    pub c: u32,
    /// `sudog.waitlink *sudog`: the next sudog in `g.waiting`.
    pub waitlink: u32,
    /// `sudog.isSelect bool`.
    pub is_select: u32,
    /// `sudog.ticket uint32`.
    pub ticket: u32,
    /// `sudog.success bool`.
    #[serde(default)]
    pub success: Option<u32>,
    /// `sudog.parent *sudog` (semaRoot binary tree).
    #[serde(default)]
    pub parent: Option<u32>,
    /// `sudog.waittail *sudog` (semaRoot).
    #[serde(default)]
    pub waittail: Option<u32>,
    /// `sudog.acquiretime int64`.
    #[serde(default)]
    pub acquiretime: Option<u32>,
    /// `sudog.releasetime int64`.
    #[serde(default)]
    pub releasetime: Option<u32>,
}

/// `runtime.p` (src/runtime/runtime2.go, `type p struct`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PLayout {
    /// `unsafe.Sizeof(p{})`.
    pub size: u32,
    /// `p.id int32`.
    pub id: u32,
    /// `p.status uint32`.
    pub status: u32,
    /// `p.m muintptr`.
    pub m: u32,
    /// `p.runqhead uint32`.
    pub runqhead: u32,
    /// `p.runqtail uint32`.
    pub runqtail: u32,
    /// `p.runnext guintptr`.
    pub runnext: u32,
}

/// `internal/abi.Type` (src/internal/abi/type.go, `type Type struct`), which
/// `runtime._type` aliases.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AbiTypeLayout {
    /// `Type.Size_ uintptr`.
    pub size_: u32,
}

/// The embedded table's file format.
#[derive(Serialize, Deserialize, Debug)]
pub struct LayoutTable {
    /// How the table was made.
    pub comment: String,
    /// The Go release each series' entry was measured on, e.g. `"1.27": "go1.27.3"`.
    pub measured_on: BTreeMap<String, String>,
    /// Series ("1.X") to layout.
    pub layouts: BTreeMap<String, GoLayout>,
}

const TABLE_JSON: &str = include_str!("layouts.json");

/// The embedded table, parsed once. `None` if it does not parse (a test guards against that).
pub fn layout_table() -> Option<&'static LayoutTable> {
    static TABLE: OnceLock<Option<LayoutTable>> = OnceLock::new();
    TABLE
        .get_or_init(|| serde_json::from_str(TABLE_JSON).ok())
        .as_ref()
}

impl GoLayout {
    /// The tabled layout for a Go version: "go1.27.3", "1.27.3", "1.27", "go1.26rc1"...
    /// `None` for a series that is not in the table, or for a devel build.
    pub fn for_version(go_version: &str) -> Option<GoLayout> {
        let (major, minor) = go_minor(go_version)?;
        let key = format!("{major}.{minor}");
        layout_table()?.layouts.get(&key).cloned()
    }
}

/// The (major, minor) of a Go version string as found in build info or `go version`:
/// "go1.27.3" → (1, 27); "go1.22.10", "1.22", "go1.26rc1", "go1.25.0 X:nodwarf5" too.
/// `None` for "devel ..." builds and anything else that is not a release version.
pub fn go_minor(version: &str) -> Option<(u32, u32)> {
    let v = version.split_whitespace().next()?;
    let v = v.strip_prefix("go").unwrap_or(v);
    let (major, rest) = v.split_once('.')?;
    let major: u32 = parse_digits(major)?;
    // The minor ends at the next '.', or at a pre-release suffix ("rc1", "beta2").
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let minor = parse_digits(&rest[..end])?;
    let tail = &rest[end..];
    let tail_ok = tail.is_empty()
        || tail
            .strip_prefix('.')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        || ["rc", "beta"].iter().any(|s| {
            tail.strip_prefix(s)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    tail_ok.then_some((major, minor))
}

fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    //! Also the Go fixture helpers shared with `dwarf::tests`, and the table's generator.
    //! Toolchains are found at `.tools/go/<version>/bin/go` (`BLOCKPROBE_TOOLS_DIR`
    //! overrides `.tools`, as in xtask); `BLOCKPROBE_GO_VERSIONS=1.27.3,1.22` limits them.
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::goruntime::dwarf::layout_from_elf_bytes;

    const PROGRAM: &str = r#"package main

import (
	"fmt"
	"sync"
)

func main() {
	ch := make(chan int, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ch <- 1 }()
	wg.Wait()
	fmt.Println(<-ch)
}
"#;

    pub(crate) fn workspace_root() -> PathBuf {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest.parent().unwrap_or(manifest).to_path_buf()
    }

    /// (version like "1.27.3", path of its `go`), oldest first.
    pub(crate) fn go_toolchains() -> Vec<(String, PathBuf)> {
        let tools = match std::env::var_os("BLOCKPROBE_TOOLS_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => workspace_root().join(".tools"),
        };
        let only: Option<Vec<String>> = std::env::var("BLOCKPROBE_GO_VERSIONS")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.split(',')
                    .map(|v| v.trim().trim_start_matches("go").to_owned())
                    .collect()
            });
        let Ok(dir) = std::fs::read_dir(tools.join("go")) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PathBuf)> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().into_owned();
                let go = e.path().join("bin").join("go");
                (go_minor(&v).is_some() && go.is_file()).then_some((v, go))
            })
            .filter(|(v, _)| {
                only.as_ref().is_none_or(|o| {
                    o.iter().any(|w| {
                        v == w
                            || v.strip_prefix(w.as_str())
                                .is_some_and(|r| r.starts_with('.'))
                    })
                })
            })
            .collect();
        out.sort_by_key(|(v, _)| {
            v.split('.')
                .map(|p| p.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        });
        out
    }

    /// The toolchains, or `None` after saying why not (a failure when CI=true).
    pub(crate) fn toolchains_or_skip(test: &str) -> Option<Vec<(String, PathBuf)>> {
        let found = go_toolchains();
        if found.is_empty() {
            let msg = format!(
                "{test}: no Go toolchain under .tools/go/<version>/bin/go (run the project's setup)"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("skipping {msg}");
            return None;
        }
        Some(found)
    }

    pub(crate) fn minor_key(version: &str) -> String {
        let (a, b) = go_minor(version).expect("toolchain dirs are release versions");
        format!("{a}.{b}")
    }

    /// `<target>/goruntime-layout-tests`: scratch builds, and a Go build cache kept
    /// between runs.
    fn test_root() -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("goruntime-layout-tests")
    }

    /// A fresh directory for one test's builds (the caller removes it).
    pub(crate) fn scratch_dir(tag: &str) -> PathBuf {
        let d = test_root().join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create scratch dir");
        d
    }

    /// Builds PROGRAM with `go` into `dir/name`, with extra `go build` flags.
    pub(crate) fn go_build(go: &Path, dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
        let src = dir.join("src");
        std::fs::create_dir_all(&src).expect("mkdir src");
        std::fs::write(src.join("go.mod"), "module layoutprobe\n\ngo 1.22\n").expect("go.mod");
        std::fs::write(src.join("main.go"), PROGRAM).expect("main.go");
        let out = dir.join(name);
        // The Go build cache shared with `cargo xtask fixtures` and the pclntab tests (safe for
        // concurrent use; keys include the toolchain), so the standard library compiles once.
        let cache = workspace_root().join("target/go-cache");
        let res = Command::new(go)
            .current_dir(&src)
            .args(["build", "-o"])
            .arg(&out)
            .args(flags)
            .arg(".")
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", &cache)
            .env("GOPATH", dir.join("gopath"))
            .output()
            .expect("run go build");
        assert!(
            res.status.success(),
            "{} build {flags:?} failed:\n{}",
            go.display(),
            String::from_utf8_lossy(&res.stderr)
        );
        out
    }

    /// Regenerates the table from the installed toolchains:
    /// `BLOCKPROBE_WRITE_LAYOUTS=agent/src/goruntime/layouts.json cargo test -p blockprobe
    /// --lib generate_layouts_json -- --ignored --nocapture` (prints it when unset).
    #[test]
    #[ignore = "generator: writes layouts.json"]
    fn generate_layouts_json() {
        let Some(chains) = toolchains_or_skip("generate_layouts_json") else {
            return;
        };
        let dir = scratch_dir("gen");
        let mut table = LayoutTable {
            comment: "Go runtime struct offsets (linux/amd64), generated from the DWARF of a \
                      program built by each Go release in measured_on, by the ignored test \
                      goruntime::dwarf::tests::generate_layouts_json. Do not edit by hand."
                .into(),
            measured_on: Default::default(),
            layouts: Default::default(),
        };
        // The newest patch release of each series wins.
        for (v, go) in &chains {
            let bin = go_build(go, &dir.join(v), "default", &[]);
            let data = std::fs::read(&bin).expect("read binary");
            let l = layout_from_elf_bytes(&data).unwrap_or_else(|e| panic!("go{v}: {e}"));
            table.measured_on.insert(minor_key(v), format!("go{v}"));
            table.layouts.insert(minor_key(v), l);
        }
        let json = serde_json::to_string_pretty(&table).expect("serialize") + "\n";
        match std::env::var_os("BLOCKPROBE_WRITE_LAYOUTS") {
            Some(p) => std::fs::write(&p, json).expect("write layouts.json"),
            None => println!("{json}"),
        }
        let missing: Vec<_> = SUPPORTED_MINORS
            .iter()
            .filter(|m| !table.layouts.contains_key(**m))
            .collect();
        assert!(missing.is_empty(), "no toolchain installed for {missing:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn go_minor_parses_release_versions() {
        assert_eq!(go_minor("go1.27.3"), Some((1, 27)));
        assert_eq!(go_minor("go1.22.10"), Some((1, 22)));
        assert_eq!(go_minor("1.25"), Some((1, 25)));
        assert_eq!(go_minor("go1.26"), Some((1, 26)));
        assert_eq!(go_minor("go1.26rc1"), Some((1, 26)));
        assert_eq!(go_minor("go1.24beta2"), Some((1, 24)));
        assert_eq!(go_minor("go1.25.0 X:nodwarf5"), Some((1, 25)));
        assert_eq!(go_minor("  go1.23.9\n"), Some((1, 23)));
    }

    #[test]
    fn go_minor_rejects_other_strings() {
        for s in [
            "",
            "devel go1.28-abcdef Tue Nov 1 2026",
            "devel +abc",
            "go",
            "go1",
            "go1.",
            "go.27",
            "go1.x",
            "go1.27.",
            "go1.27.3.4",
            "go1.27rc",
            "go1.27-pre",
            "go99999999999.1",
            "gö1.2",
        ] {
            assert_eq!(go_minor(s), None, "{s:?}");
        }
    }

    #[test]
    fn table_parses_and_covers_every_supported_series() {
        let table = layout_table().expect("layouts.json parses");
        let keys: Vec<&str> = table.layouts.keys().map(String::as_str).collect();
        assert_eq!(keys, SUPPORTED_MINORS.to_vec(), "table keys");
        for minor in SUPPORTED_MINORS {
            let measured = &table.measured_on[minor];
            assert_eq!(
                go_minor(measured)
                    .map(|(a, b)| format!("{a}.{b}"))
                    .as_deref(),
                Some(minor),
                "measured_on[{minor}] = {measured}"
            );
            let l = GoLayout::for_version(minor).expect("tabled");
            assert_eq!(GoLayout::for_version(measured).as_ref(), Some(&l));
            assert_plausible(&l);
        }
    }

    #[test]
    fn for_version_rejects_unknown_series() {
        assert_eq!(GoLayout::for_version("go1.21.13"), None);
        assert_eq!(GoLayout::for_version("go1.99.0"), None);
        assert_eq!(GoLayout::for_version("devel go1.28-abc"), None);
        assert_eq!(GoLayout::for_version("2.27"), None);
    }

    /// Offsets measured independently (TOOLCHAIN.md, Go's debug/dwarf on go1.27.3; and
    /// `g.goid` 160 in 1.23 and 1.24). Checked against both the table and live DWARF.
    pub(crate) fn assert_known_values(minor: &str, l: &GoLayout) {
        match minor {
            "1.27" => {
                assert_eq!(l.g.goid, 152, "1.27 g.goid");
                assert_eq!(l.g.waitreason, 176, "1.27 g.waitreason");
                assert_eq!(l.g.atomicstatus, 144, "1.27 g.atomicstatus");
                assert_eq!(l.g.m, 48, "1.27 g.m");
                assert_eq!(l.g.parent_goid, 280, "1.27 g.parentGoid");
                assert_eq!(l.g.gopc, 288, "1.27 g.gopc");
                assert_eq!(l.g.startpc, 304, "1.27 g.startpc");
                assert_eq!(l.hchan.qcount, 0, "1.27 hchan.qcount");
                assert_eq!(l.hchan.dataqsiz, 8, "1.27 hchan.dataqsiz");
                assert_eq!(l.hchan.closed, 28, "1.27 hchan.closed");
                assert_eq!(l.hchan.elemtype, 40, "1.27 hchan.elemtype");
                assert_eq!(l.hchan.lock, 104, "1.27 hchan.lock");
            }
            "1.23" | "1.24" => assert_eq!(l.g.goid, 160, "{minor} g.goid"),
            _ => {}
        }
    }

    /// Structural sanity that must hold in every version.
    pub(crate) fn assert_plausible(l: &GoLayout) {
        let g = &l.g;
        assert_eq!((g.stack_lo, g.stack_hi), (0, 8));
        assert_eq!(g.sched_sp, g.sched, "gobuf.sp is gobuf's first field");
        assert_eq!(g.sched_pc, g.sched + 8);
        for off in [
            g.goid,
            g.waitreason,
            g.gopc,
            g.startpc,
            g.waiting,
            g.parent_goid,
        ] {
            assert!(off < g.size, "g field {off} beyond g size {}", g.size);
        }
        assert_eq!((l.waitq.first, l.waitq.last), (0, 8));
        assert!(l.hchan.recvq + 16 <= l.hchan.sendq);
        assert!(l.hchan.lock < l.hchan.size);
        assert!(l.sudog.elem < l.sudog.size && l.sudog.c < l.sudog.size);
        assert_eq!(l.m.g0, 0);
        assert!(l.m.curg < l.m.size && l.m.id < l.m.size);
    }

    #[test]
    fn known_values_in_table() {
        for minor in SUPPORTED_MINORS {
            let l = GoLayout::for_version(minor).expect("tabled");
            assert_known_values(minor, &l);
        }
    }

    #[test]
    fn json_round_trip() {
        let l = GoLayout::for_version("1.27").expect("tabled");
        let s = serde_json::to_string(&l).expect("serializes");
        let back: GoLayout = serde_json::from_str(&s).expect("deserializes");
        assert_eq!(back, l);
    }
}
