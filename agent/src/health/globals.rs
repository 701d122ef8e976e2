//! Where the runtime's global variables behind the health figures live (link-time addresses):
//! `runtime.memstats`, `runtime.gcController`, `runtime.mheap_`, `runtime.sched`,
//! `runtime.allp`, `runtime.gomaxprocs` and `runtime.emptymspan`.
//!
//! With a symbol table they are read from `.symtab`. A stripped binary (`-ldflags=-s -w`) has
//! no data symbols, but its runtime functions (named in `.gopclntab`) still address the
//! globals RIP-relatively, as `goruntime::stripped` finds `runtime.allgs` from
//! `runtime.forEachG`. Each global has a *code reference* per Go release series: "the `nth`
//! RIP-relative memory operand of function `func` addresses the global plus `delta`"
//! (`references.json`). The table is generated from the symbol tables of unstripped builds
//! of each release (default and PIE must agree) by the ignored test
//! `health::globals::tests::generate_references_json`, and checked against them by
//! `references_find_the_symbols`. The functions are stable runtime functions that use these
//! globals: `readmemstats_m` (mstats.go: memstats, gcController, mheap_), `schedtrace`
//! (proc.go: sched, allp, gomaxprocs), `allocmcache` (mcache.go: emptymspan).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use iced_x86::{Decoder, DecoderOptions};
use object::{Object, ObjectSymbol};
use serde::{Deserialize, Serialize};

use super::HealthError;
use crate::goruntime::GoBinary;

/// Link-time addresses of the globals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Globals {
    pub memstats: u64,
    pub gc_controller: u64,
    pub mheap: u64,
    pub sched: u64,
    pub allp: u64,
    pub gomaxprocs: u64,
    pub emptymspan: u64,
}

/// (field name in [`Globals`], symbol name, functions that reference it, best first: a
/// stripped binary uses the first of them it links).
pub(crate) const GLOBALS: &[(&str, &str, &[&str])] = &[
    // readmemstats_m is linked only into programs that call runtime.ReadMemStats;
    // gcMarkTermination (mgc.go), gcinit and mallocinit (malloc.go) into every program.
    (
        "memstats",
        "runtime.memstats",
        &["runtime.readmemstats_m", "runtime.gcMarkTermination"],
    ),
    (
        "gc_controller",
        "runtime.gcController",
        &["runtime.readmemstats_m", "runtime.gcinit"],
    ),
    (
        "mheap",
        "runtime.mheap_",
        &["runtime.readmemstats_m", "runtime.mallocinit"],
    ),
    (
        "sched",
        "runtime.sched",
        &["runtime.schedtrace", "runtime.gcount"],
    ),
    (
        "allp",
        "runtime.allp",
        &["runtime.schedtrace", "runtime.gcount"],
    ),
    ("gomaxprocs", "runtime.gomaxprocs", &["runtime.schedtrace"]),
    (
        "emptymspan",
        "runtime.emptymspan",
        &["runtime.allocmcache", "runtime.(*mcache).releaseAll"],
    ),
];

/// One code reference: the `nth` RIP-relative memory operand of `func` is the global + `delta`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CodeRef {
    pub func: String,
    pub nth: usize,
    pub delta: i64,
}

/// Release series → global → its code references, in [`GLOBALS`]' order of functions.
type Refs = BTreeMap<String, BTreeMap<String, Vec<CodeRef>>>;

#[derive(Deserialize)]
struct RefTable {
    references: Refs,
}

fn ref_table() -> &'static Refs {
    static T: OnceLock<Refs> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str::<RefTable>(include_str!("references.json"))
            .map(|t| t.references)
            .unwrap_or_default()
    })
}

impl Globals {
    fn from_map(get: impl Fn(&str) -> Result<u64, HealthError>) -> Result<Self, HealthError> {
        Ok(Self {
            memstats: get("memstats")?,
            gc_controller: get("gc_controller")?,
            mheap: get("mheap")?,
            sched: get("sched")?,
            allp: get("allp")?,
            gomaxprocs: get("gomaxprocs")?,
            emptymspan: get("emptymspan")?,
        })
    }

    /// From the ELF symbol table, if it has the symbols.
    pub fn from_symtab(file: &object::File<'_>) -> Option<Self> {
        let mut found = std::collections::HashMap::new();
        for s in file.symbols() {
            if let Ok(n) = s.name()
                && let Some((field, _, _)) = GLOBALS.iter().find(|(_, sym, _)| *sym == n)
            {
                found.insert(*field, s.address());
            }
        }
        Self::from_map(|f| found.get(f).copied().ok_or(HealthError::NoSymbol)).ok()
    }

    /// From the code of the runtime functions that use them (stripped binaries).
    pub fn from_code(bin: &GoBinary) -> Result<Self, HealthError> {
        let refs = ref_table()
            .get(&format!("1.{}", bin.minor))
            .ok_or_else(|| {
                HealthError::Stripped(format!(
                    "no code references recorded for Go 1.{}",
                    bin.minor
                ))
            })?;
        Self::from_map(|field| {
            let candidates = refs.get(field).ok_or_else(|| {
                HealthError::Stripped(format!("no code reference recorded for {field}"))
            })?;
            // The first recorded function this binary links.
            let r = candidates
                .iter()
                .find(|r| bin.function(&r.func).is_some())
                .ok_or_else(|| {
                    let names: Vec<&str> = candidates.iter().map(|r| r.func.as_str()).collect();
                    HealthError::Stripped(format!(
                        "{field}: none of {} is in .gopclntab",
                        names.join(", ")
                    ))
                })?;
            let targets = rip_targets(bin, &r.func)?;
            let t = targets.get(r.nth).ok_or_else(|| {
                HealthError::Stripped(format!(
                    "{} has {} RIP-relative operands, expected at least {}",
                    r.func,
                    targets.len(),
                    r.nth + 1
                ))
            })?;
            let addr = t.wrapping_sub(r.delta as u64);
            if !in_data(bin, addr) {
                return Err(HealthError::Stripped(format!(
                    "{field}: {:#x} (from {}) is not in the binary's writable data",
                    addr, r.func
                )));
            }
            Ok(addr)
        })
    }
}

/// Whether `addr` lies in `.data`, `.bss`, `.noptrdata` or `.noptrbss`.
fn in_data(bin: &GoBinary, addr: u64) -> bool {
    use object::ObjectSection;
    let Ok(file) = object::File::parse(bin.file_data()) else {
        return false;
    };
    [".data", ".bss", ".noptrdata", ".noptrbss"]
        .iter()
        .filter_map(|n| file.section_by_name(n))
        .any(|s| addr >= s.address() && addr < s.address() + s.size())
}

/// The targets of the RIP-relative memory operands of a function, in code order.
pub(crate) fn rip_targets(bin: &GoBinary, func: &str) -> Result<Vec<u64>, HealthError> {
    let f = bin
        .function(func)
        .ok_or_else(|| HealthError::Stripped(format!("function {func} not found in .gopclntab")))?;
    let len = usize::try_from(f.end.saturating_sub(f.entry)).unwrap_or(0);
    let code = bin
        .bytes_at(f.entry, len)
        .ok_or_else(|| HealthError::Stripped(format!("cannot read the code of {func}")))?;
    let mut dec = Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE);
    let mut out = Vec::new();
    while dec.can_decode() {
        let ins = dec.decode();
        if ins.is_invalid() {
            continue;
        }
        if ins.is_ip_rel_memory_operand() {
            out.push(ins.ip_rel_memory_address());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builds(variant: &str) -> Vec<(u32, std::path::PathBuf)> {
        super::super::layout::tests::fixture_builds()
            .into_iter()
            .map(|(m, p)| {
                (
                    m,
                    p.parent()
                        .unwrap()
                        .parent()
                        .unwrap()
                        .join(variant)
                        .join("health"),
                )
            })
            .filter(|(_, p)| p.exists())
            .collect()
    }

    fn symbols(path: &std::path::Path) -> BTreeMap<String, (u64, u64)> {
        let data = std::fs::read(path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let mut out = BTreeMap::new();
        for s in file.symbols() {
            if let Ok(n) = s.name()
                && let Some((field, _, _)) = GLOBALS.iter().find(|(_, sym, _)| *sym == n)
            {
                out.insert((*field).to_string(), (s.address(), s.size().max(1)));
            }
        }
        out
    }

    /// The recorded code references give the symbol-table addresses, default and PIE builds,
    /// and the same addresses on the stripped build of the same program.
    #[test]
    fn references_find_the_symbols() {
        for variant in ["default", "pie"] {
            for (minor, path) in builds(variant) {
                let bin = GoBinary::open(&path).unwrap();
                let from_code = Globals::from_code(&bin).unwrap();
                let data = std::fs::read(&path).unwrap();
                let file = object::File::parse(&*data).unwrap();
                let from_sym = Globals::from_symtab(&file).unwrap();
                assert_eq!(from_code, from_sym, "Go 1.{minor} {variant}");
                // Every recorded reference, not only the first a binary links: the fallbacks
                // of a program without runtime.ReadMemStats find the same globals.
                let syms = symbols(&path);
                for (field, refs) in &ref_table()[&format!("1.{minor}")] {
                    for r in refs {
                        let t = rip_targets(&bin, &r.func).unwrap()[r.nth];
                        assert_eq!(
                            t.wrapping_sub(r.delta as u64),
                            syms[field].0,
                            "Go 1.{minor} {variant}: {field} from {}",
                            r.func
                        );
                    }
                }
                // The stripped build's data moves by a few bytes (no .symtab), so its addresses
                // are checked against the target's own figures in tests/e2e/stat.rs instead;
                // here: they are found, inside the writable data (from_code checks that).
                if variant == "default" {
                    let stripped = path
                        .parent()
                        .unwrap()
                        .parent()
                        .unwrap()
                        .join("stripped/health");
                    let sbin = GoBinary::open(&stripped).unwrap();
                    Globals::from_code(&sbin).unwrap();
                }
            }
        }
    }

    /// Regenerates references.json: `cargo test -p blockprobe --lib generate_references_json
    /// -- --ignored` (needs the default and PIE `health` fixtures of every toolchain).
    #[test]
    #[ignore]
    fn generate_references_json() {
        let mut all = serde_json::Map::new();
        for (minor, path) in builds("default") {
            let pie = path.parent().unwrap().parent().unwrap().join("pie/health");
            let (bin, pbin) = (
                GoBinary::open(&path).unwrap(),
                GoBinary::open(&pie).unwrap(),
            );
            let (syms, psyms) = (symbols(&path), symbols(&pie));
            let mut refs = serde_json::Map::new();
            for (field, _, funcs) in GLOBALS {
                let (addr, size) = syms[*field];
                let paddr = psyms[*field].0;
                // One reference per listed function this build links and that has one.
                let found: Vec<CodeRef> = funcs
                    .iter()
                    .filter_map(|func| {
                        let t = rip_targets(&bin, func).ok()?;
                        let pt = rip_targets(&pbin, func).ok()?;
                        t.iter().enumerate().find_map(|(nth, &a)| {
                            let delta = a.wrapping_sub(addr) as i64;
                            let ok = a >= addr
                                && a < addr + size
                                && pt.get(nth).map(|p| p.wrapping_sub(delta as u64)) == Some(paddr);
                            ok.then(|| CodeRef {
                                func: func.to_string(),
                                nth,
                                delta,
                            })
                        })
                    })
                    .collect();
                assert!(
                    !found.is_empty(),
                    "Go 1.{minor}: no code reference to {field}"
                );
                refs.insert(field.to_string(), serde_json::to_value(found).unwrap());
            }
            all.insert(format!("1.{minor}"), refs.into());
        }
        let doc = serde_json::json!({
            "comment": "For stripped binaries: the nth RIP-relative memory operand of func addresses the global + delta. Generated from unstripped default and PIE builds by the ignored test health::globals::tests::generate_references_json. Do not edit by hand.",
            "references": all,
        });
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/health/references.json");
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
}
