//! Symbolization of a live process's PCs against `go tool addr2line`, the toolchain's own
//! reading of the same binary's pclntab, for the Go version that built it.
//!
//! What `go tool addr2line` prints (src/cmd/addr2line/main.go, the same in Go 1.22 to 1.27): for
//! each address on stdin, `tab.PCToLine(pc)` of the table that cmd/internal/objfile
//! `Entry.PCLineTable` builds from the binary's `.gopclntab` (or `.data.rel.ro.gopclntab`, or the
//! `runtime.pclntab` symbol: src/cmd/internal/objfile/elf.go `pcln`) with `gosym.NewTable(nil,
//! ...)`. src/debug/gosym/symtab.go `Table.PCToLine` takes the function from `PCToFunc`, the
//! physical function whose [Entry, End) contains the PC, i.e. the OUTERMOST frame of an inlined
//! expansion, and the file and line from `go12PCToFile`/`go12PCToLine`
//! (src/debug/gosym/pclntab.go), the physical function's pcfile/pcln tables, which record the
//! position of the instruction itself, i.e. the INNERMOST (inlined) frame's `file:line`; gosym
//! never reads the inline tree (`FUNCDATA_InlTree`). So for a PC that our dump expands into
//! frames F1 (innermost) .. Fn (outermost), addr2line's two lines are `Fn.function` and
//! `F1.file:F1.line`; for a PC without inlining (n = 1) both are the one frame's.
//!
//! Not compared here, as addr2line does not print them: the function names of the inlined
//! frames F1..Fn-1 and the call lines of F2..Fn (those come from the inline tree). Those are
//! checked against the traceback the fixture prints of itself in tests/e2e/dump.rs.
//! (`go tool objdump` would not add them: it prints the same pcfile/pcln `file:line` per
//! instruction.)
//!
//! Stripped builds (`-s -w`) keep the pclntab, and addr2line reads it from the section, so they
//! are compared like the others, on their own addresses.

use std::collections::BTreeMap;

use blockprobe_tests::{dump_demo_formed, go_version_for, gofixtures, prepare, start_ready};
use serde_json::Value;

/// The states of the demo's blocked goroutines compared here.
const STATES: [&str; 2] = ["chan send", "sync.Mutex.Lock"];

fn run(go_minor: &str, variant: &str) {
    let Some(fixture) = prepare(go_minor, variant, "demo") else {
        return;
    };
    let version = go_version_for(go_minor).expect("prepare found it");
    let tc = gofixtures::toolchains()
        .into_iter()
        .find(|t| t.version == version)
        .unwrap_or_else(|| panic!("no Go {version} toolchain under .tools/go"));
    let target = start_ready(&fixture);
    let gs = dump_demo_formed(target.pid());

    let expansions = expansions(&gs);
    assert!(
        expansions
            .values()
            .any(|fs| fs.iter().any(|f| f["function"] == "main.transfer")),
        "no main.transfer frame: {gs:#?}"
    );
    assert!(
        expansions
            .values()
            .any(|fs| fs.iter().any(|f| f["function"] == "main.handle.func1")),
        "no main.handle.func1 frame: {gs:#?}"
    );
    // Inlined frames included: e.g. sync.(*Mutex).Lock inlined into main.transfer.
    assert!(
        expansions.values().any(|fs| fs.len() > 1),
        "no PC expands to inlined frames: {expansions:#?}"
    );

    let pcs: Vec<&String> = expansions.keys().collect();
    let addrs: Vec<u64> = pcs
        .iter()
        .map(|pc| u64::from_str_radix(pc.trim_start_matches("0x"), 16).expect("hex pc"))
        .collect();
    let oracle = gofixtures::addr2line(&tc, &fixture, &addrs);
    assert_eq!(oracle.len(), pcs.len(), "{oracle:?}");
    let mut mismatches = Vec::new();
    for (pc, a) in pcs.iter().zip(&oracle) {
        let frames = &expansions[*pc];
        let (inner, outer) = (&frames[0], &frames[frames.len() - 1]);
        let ours = (
            outer["function"].as_str().unwrap().to_string(),
            format!("{}:{}", inner["file"].as_str().unwrap(), inner["line"]),
        );
        let theirs = (a.func.clone(), format!("{}:{}", a.file, a.line));
        if ours != theirs {
            mismatches.push(format!(
                "{pc}: addr2line {} {}; ours {} {} (frames {frames:?})",
                theirs.0, theirs.1, ours.0, ours.1
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "Go {version} {variant}: {} of {} PCs differ:\n{}",
        mismatches.len(),
        pcs.len(),
        mismatches.join("\n")
    );
}

/// The frames of every distinct PC in the stacks of the goroutines in [`STATES`], innermost
/// first: the consecutive frames sharing a `pc`. The same PC must expand the same way wherever
/// it appears.
fn expansions(gs: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for g in gs
        .iter()
        .filter(|g| STATES.contains(&g["state"].as_str().unwrap_or("")))
    {
        let stack = g["stack"].as_array().unwrap();
        assert!(!stack.is_empty(), "{g}");
        let mut runs: Vec<(String, Vec<Value>)> = Vec::new();
        for f in stack {
            let pc = f["pc"]
                .as_str()
                .unwrap_or_else(|| panic!("frame without pc: {f}"));
            assert!(pc.starts_with("0x"), "{f}");
            assert!(
                !f["function"].as_str().unwrap().starts_with('?'),
                "unsymbolized frame: {g}"
            );
            match runs.last_mut() {
                Some((last, frames)) if last == pc => frames.push(f.clone()),
                _ => runs.push((pc.to_string(), vec![f.clone()])),
            }
        }
        for (pc, frames) in runs {
            if let Some(seen) = out.get(&pc) {
                assert_eq!(seen, &frames, "PC {pc} expands differently in {g}");
            } else {
                out.insert(pc, frames);
            }
        }
    }
    assert!(!out.is_empty(), "no goroutine in {STATES:?}: {gs:#?}");
    out
}

blockprobe_tests::go_matrix!(run);
