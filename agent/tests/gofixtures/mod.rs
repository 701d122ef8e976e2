//! Test-only helpers shared by the unit tests of `goruntime::pclntab` and `goruntime::stripped`
//! (and, through `blockprobe_tests::gofixtures`, by the end-to-end tests):
//! locate the installed Go toolchains, build a tiny fixture program with each of them (plain,
//! stripped, PIE, stripped PIE), run `go tool addr2line`, and read `.symtab`.
//!
//! Included with `#[path]` from `agent/src/goruntime/pclntab.rs` (a subdirectory of `tests/`,
//! so cargo does not build it as an integration test of its own).

#![allow(dead_code)]

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The fixture: inlinable helpers (`add`, `point.sum`), a `//go:noinline` function that inlines
/// them, a closure, a mutex, a channel and a select, so the binary has inline trees and the
/// usual runtime wait paths.
pub const FIXTURE_MAIN_GO: &str = r#"package main

import (
	"fmt"
	"os"
	"sync"
)

type point struct{ x, y int }

func (p point) sum() int { return p.x + p.y }

func add(a, b int) int { return a + b }

//go:noinline
func compute(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s = add(s, point{i, n}.sum())
	}
	return s
}

func main() {
	var mu sync.Mutex
	ch := make(chan int)
	go func() {
		mu.Lock()
		ch <- compute(len(os.Args))
		mu.Unlock()
	}()
	select {
	case v := <-ch:
		fmt.Println(v)
	}
}
"#;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Toolchain {
    /// e.g. "1.27.3" (the directory name under `.tools/go`, or "env").
    pub version: String,
    pub go: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    Plain,
    Stripped,
    Pie,
    PieStripped,
    /// PIE linked by the system linker (`-linkmode=external`, needs cgo and gcc).
    ExtPie,
    ExtPieStripped,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Plain,
        Variant::Stripped,
        Variant::Pie,
        Variant::PieStripped,
    ];
    pub const EXTERNAL: [Variant; 2] = [Variant::ExtPie, Variant::ExtPieStripped];
    fn args(self) -> &'static [&'static str] {
        match self {
            Variant::Plain => &[],
            Variant::Stripped => &["-ldflags=-s -w"],
            Variant::Pie => &["-buildmode=pie"],
            Variant::PieStripped => &["-buildmode=pie", "-ldflags=-s -w"],
            Variant::ExtPie => &["-buildmode=pie", "-ldflags=-linkmode=external"],
            Variant::ExtPieStripped => &["-buildmode=pie", "-ldflags=-linkmode=external -s -w"],
        }
    }
    pub fn stripped(self) -> bool {
        matches!(
            self,
            Variant::Stripped | Variant::PieStripped | Variant::ExtPieStripped
        )
    }
    pub fn external(self) -> bool {
        matches!(self, Variant::ExtPie | Variant::ExtPieStripped)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The toolchains to test with: `$BLOCKPROBE_TEST_GO` (a `go` binary) if set, else every
/// `.tools/go/<version>/bin/go` under the workspace root, oldest first. When none is found this
/// prints why and returns an empty list, except under `CI=true`, where it panics.
/// Whether external linking can be tested (it needs a C toolchain).
pub fn have_gcc() -> bool {
    Command::new("gcc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn toolchains() -> Vec<Toolchain> {
    if let Some(go) = std::env::var_os("BLOCKPROBE_TEST_GO") {
        return vec![Toolchain {
            version: "env".into(),
            go: PathBuf::from(go),
        }];
    }
    let dir = workspace_root().join(".tools/go");
    let mut found: Vec<Toolchain> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let go = e.path().join("bin/go");
            go.is_file().then(|| Toolchain {
                version: e.file_name().to_string_lossy().into_owned(),
                go,
            })
        })
        .collect();
    found.sort_by_key(|t| version_key(&t.version));
    if found.is_empty() {
        let msg = format!(
            "no Go toolchain: set BLOCKPROBE_TEST_GO or install one under {}",
            dir.display()
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("skipping: {msg}");
    }
    found
}

fn go_cmd(tc: &Toolchain, cache: &Path) -> Command {
    let mut cmd = Command::new(&tc.go);
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", cache)
        .env("GOWORK", "off");
    cmd
}

/// The Go build cache shared with `cargo xtask fixtures` and the layout tests (safe for
/// concurrent use; keys include the toolchain), so the standard library compiles once.
fn shared_go_cache() -> PathBuf {
    workspace_root().join("target/go-cache")
}

fn out_dir(tc: &Toolchain) -> PathBuf {
    workspace_root()
        .join("target/blockprobe-gofixtures")
        .join(&tc.version)
}

/// Builds the fixture with `tc` (once per process and variant) and returns the binary's path.
pub fn build(tc: &Toolchain, variant: Variant) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(Toolchain, Variant), PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(&(tc.clone(), variant)) {
        return p.clone();
    }
    let dir = out_dir(tc);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("create fixture dir");
    // Other test processes may build in the same directory at the same time: never truncate a
    // source another `go build` may be reading, and move the binary into place atomically.
    write_if_changed(&src.join("main.go"), FIXTURE_MAIN_GO);
    write_if_changed(&src.join("go.mod"), "module fixture\n\ngo 1.22\n");
    let bin = dir.join(format!("fixture-{variant:?}").to_lowercase());
    let tmp = bin.with_extension(format!("tmp{}", std::process::id()));
    let mut cmd = go_cmd(tc, &shared_go_cache());
    if variant.external() {
        cmd.env("CGO_ENABLED", "1");
    }
    let out = cmd
        .current_dir(&src)
        .arg("build")
        .args(variant.args())
        .arg("-o")
        .arg(&tmp)
        .arg(".")
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build ({}, {variant:?}) failed: {}",
        tc.version,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &bin).expect("move the fixture binary into place");
    built.insert((tc.clone(), variant), bin.clone());
    bin
}

fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, contents).expect("write fixture source");
    std::fs::rename(&tmp, path).expect("move fixture source into place");
}

/// A small deterministic pseudo-random generator (xorshift64) for the parsers' garbage tests:
/// the same inputs on every run.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// One `go tool addr2line` answer: the physical function's name, and the file:line of the
/// innermost (possibly inlined) position, as debug/gosym reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr2Line {
    pub func: String,
    pub file: String,
    pub line: u32,
}

pub fn addr2line(tc: &Toolchain, binary: &Path, pcs: &[u64]) -> Vec<Addr2Line> {
    let mut child = go_cmd(tc, &shared_go_cache())
        .args(["tool", "addr2line"])
        .arg(binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn go tool addr2line");
    let mut input = String::new();
    for pc in pcs {
        input.push_str(&format!("{pc:#x}\n"));
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("addr2line output");
    writer
        .join()
        .expect("writer thread")
        .expect("write addr2line stdin");
    assert!(
        out.status.success(),
        "addr2line failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), pcs.len() * 2, "addr2line output: {text}");
    lines
        .chunks(2)
        .map(|c| {
            let (file, line) = c[1].rsplit_once(':').expect("file:line");
            Addr2Line {
                func: c[0].to_string(),
                file: file.to_string(),
                line: line.parse().unwrap_or(0),
            }
        })
        .collect()
}

/// Symbols of `.symtab`: name → (address, size, is STT_FUNC in `.text`).
pub fn symtab(data: &[u8]) -> HashMap<String, (u64, u64, bool)> {
    let file = object::File::parse(data).expect("parse ELF");
    let text = file.section_by_name(".text").map(|s| s.index());
    file.symbols()
        .filter_map(|s| {
            let name = s.name().ok()?.to_string();
            let in_text = s.kind() == SymbolKind::Text && s.section_index() == text;
            Some((name, (s.address(), s.size(), in_text)))
        })
        .collect()
}

/// The bytes and address of a section, by name.
pub fn section<'a>(data: &'a [u8], name: &str) -> Option<(u64, &'a [u8])> {
    let file = object::File::parse(data).ok()?;
    let s = file.section_by_name(name)?;
    Some((s.address(), s.data().ok()?))
}

fn zz(d: i32) -> u8 {
    let v = ((d << 1) ^ (d >> 31)) as u32;
    assert!(v < 0x80);
    v as u8
}

/// A hand-built Go 1.20+ pclntab and its `go:func.*` bytes: `main.f` [0x1000,0x1010) in a.go and `main.g` [0x1010,0x1020) in
/// b.go, where g's first 8 bytes are `main.f` inlined at g+8.
pub fn synthetic_pclntab() -> (Vec<u8>, Vec<u8>) {
    let names = b"\0main.f\0main.g\0"; // main.f at 1, main.g at 8
    let filetab = b"\0a.go\0b.go\0"; // a.go at 1, b.go at 6
    let mut pctab = vec![0u8]; // offset 0 means "no table"
    let mut add = |t: &[u8]| {
        let o = pctab.len() as u32;
        pctab.extend_from_slice(t);
        o
    };
    let f_file = add(&[zz(1), 16, 0]); // file 0 over [0,16)
    let f_line = add(&[zz(11), 4, zz(1), 12, 0]); // line 10 [0,4), 11 [4,16)
    let g_file = add(&[zz(2), 16, 0]); // file 1
    let g_line = add(&[zz(21), 8, zz(10), 8, 0]); // line 20 [0,8), 30 [8,16)
    let g_inl = add(&[zz(1), 8, zz(-1), 8, 0]); // inline index 0 [0,8), -1 [8,16)
    let cutab: Vec<u8> = [1u32, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let func = |entry: u32, name: u32, file: u32, line: u32, pcdata: &[u32], fdata: &[u32]| {
        let mut v = Vec::new();
        for x in [entry, name, 0, 0, 0, file, line, pcdata.len() as u32, 0, 1] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&[0, 0, 0, fdata.len() as u8]);
        for x in pcdata.iter().chain(fdata) {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    };
    let fa = func(0, 1, f_file, f_line, &[], &[]);
    let fb = func(
        16,
        8,
        g_file,
        g_line,
        &[0, 0, g_inl],
        &[u32::MAX, u32::MAX, u32::MAX, 0],
    );
    let ftab_len = 3 * 8;
    let mut pcln = Vec::new();
    for (e, o) in [(0u32, ftab_len), (16, ftab_len + fa.len() as u32), (32, 0)] {
        pcln.extend_from_slice(&e.to_le_bytes());
        pcln.extend_from_slice(&o.to_le_bytes());
    }
    pcln.extend_from_slice(&fa);
    pcln.extend_from_slice(&fb);
    let mut d = Vec::new();
    d.extend_from_slice(&0xffff_fff1u32.to_le_bytes());
    d.extend_from_slice(&[0, 0, 1, 8]);
    let mut off = 72u64;
    let mut offs = Vec::new();
    for t in [&names[..], &cutab, filetab, &pctab, &pcln] {
        offs.push(off);
        off += t.len() as u64;
    }
    for x in [2u64, 2, 0x1000].iter().chain(&offs) {
        d.extend_from_slice(&x.to_le_bytes());
    }
    for t in [&names[..], &cutab, filetab, &pctab, &pcln] {
        d.extend_from_slice(t);
    }
    // inlinedCall{funcID 0, nameOff 1 (main.f), parentPc 8, startLine 9}
    let mut gofunc = vec![0u8; 4];
    for x in [1u32, 8, 9] {
        gofunc.extend_from_slice(&x.to_le_bytes());
    }
    (d, gofunc)
}
