//! Finding `runtime.semtable` in Go binaries without `.symtab` (built with `-ldflags=-s -w`).
//!
//! `runtime.semtable` holds the runtime's semaphore wait queues: every goroutine blocked in
//! `semacquire1` (`sync.Mutex.Lock`, `RWMutex`, `WaitGroup.Wait`, ...) sits in one of its 251
//! treaps, keyed by the semaphore's address (`src/runtime/sema.go`):
//!
//! ```go
//! var semtable semTable
//! const semTabSize = 251
//! type semTable [semTabSize]struct {
//!     root semaRoot
//!     pad  [cpu.CacheLinePadSize - unsafe.Sizeof(semaRoot{})]byte
//! }
//! func (t *semTable) rootFor(addr *uint32) *semaRoot {
//!     return &t[(uintptr(unsafe.Pointer(addr))>>3)%semTabSize].root
//! }
//! ```
//!
//! `rootFor` is inlined into `runtime.semrelease1` and `runtime.semacquire1` (`root :=
//! semtable.rootFor(addr)`, the same in Go 1.22–1.27). The compiler lowers `x % 251` to
//! `x - (x / 251) * 251` (cmd/compile/internal/ssa/_gen/generic.rules, `Mod64u` by a constant),
//! the division to a multiply by a magic number, and the index times the entry size to a shift.
//! With Go 1.22–1.27 on amd64 both functions contain (registers vary):
//!
//! ```text
//! SHRQ  $3, SI                      ; addr >> 3
//! ...   MULQ by 0x05197f7d73404147, RCRQ, SHRQ $7 → DX = SI / 251
//! IMULQ $251, DX, DX                ; (x / 251) * 251
//! SUBQ  DX, SI                      ; SI = x % 251
//! SHLQ  $6, SI                      ; SI = index * sizeof(entry)   (64 = cpu.CacheLinePadSize)
//! LEAQ  runtime.semtable(SB), DX    ; RIP-relative
//! LEAQ  0(SI)(DX*1), R8             ; &semtable[index]
//! ```
//!
//! [`find_semtable`] follows that data flow (IMUL by 251 → SUB of its product → SHL or IMUL of
//! the remainder → combined with a RIP-relative LEA in one address or ADD), so both the address
//! and the entry size come from the code. [`locate_semtable`] decodes both functions, requires
//! them to agree, and checks that the whole table lies in a zero-initialised data section
//! (`.bss`; `semaRoot` holds pointers, so never `.noptrbss`, but either is accepted).

use super::pclntab::Pclntab;
use super::prologue::{decode_at, next_insn, prologue_end};
use super::stripped::{ElfImage, StrippedError};
use iced_x86::{Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register};
use object::{Object, ObjectSection, SectionKind};

/// `semTabSize` (`src/runtime/sema.go`).
pub const SEM_TAB_SIZE: u64 = 251;
/// `unsafe.Sizeof(semaRoot{})` on amd64: `lock mutex` (8), `treap *sudog` (8),
/// `nwait atomic.Uint32` (4), padded to 8. An entry is at least this big.
const SEMA_ROOT_SIZE: u64 = 24;
/// Largest entry size we believe (amd64 pads to `cpu.CacheLinePadSize` = 64,
/// `src/internal/cpu/cpu_x86.go`).
const MAX_STRIDE: u64 = 4096;
/// How far into a function we decode: `semacquire1` reaches `rootFor` after its fast path
/// and `acquireSudog`, about 50 instructions in.
const MAX_INSNS: usize = 200;

/// The functions that inline `semtable.rootFor`, tried in this order.
const FUNCS: [&str; 2] = ["runtime.semrelease1", "runtime.semacquire1"];

fn pattern(func: &'static str, reason: impl Into<String>) -> StrippedError {
    StrippedError::Pattern {
        func,
        reason: reason.into(),
    }
}

/// Registers `ins` writes (full 64-bit names; a 32-bit write clears the upper half too).
fn written_regs(info: &mut InstructionInfoFactory, ins: &Instruction) -> Vec<Register> {
    info.info(ins)
        .used_registers()
        .iter()
        .filter(|u| {
            matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            )
        })
        .map(|u| u.register().full_register())
        .collect()
}

fn reg0(ins: &Instruction) -> Option<Register> {
    (ins.op_count() >= 1 && ins.op0_kind() == OpKind::Register)
        .then(|| ins.op0_register().full_register())
}

fn reg1(ins: &Instruction) -> Option<Register> {
    (ins.op_count() >= 2 && ins.op1_kind() == OpKind::Register)
        .then(|| ins.op1_register().full_register())
}

/// The value of an immediate operand, if `op` is one.
fn imm(ins: &Instruction, op: u32) -> Option<u64> {
    match ins.op_kind(op) {
        OpKind::Immediate8 => Some(u64::from(ins.immediate8())),
        OpKind::Immediate8to32 => Some(ins.immediate8to32() as u64),
        OpKind::Immediate8to64 => Some(ins.immediate8to64() as u64),
        OpKind::Immediate32 => Some(u64::from(ins.immediate32())),
        OpKind::Immediate32to64 => Some(ins.immediate32to64() as u64),
        _ => None,
    }
}

/// `(base, index)` of `ins`'s memory operand when it is `disp(a)(b*1)` with `0 <= disp <
/// stride` (the field of the entry being addressed; `root` is at 0).
fn base_index(ins: &Instruction, stride: u64) -> Option<(Register, Register)> {
    let has_mem = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
    (has_mem
        && ins.memory_index_scale() == 1
        && ins.memory_base() != Register::None
        && ins.memory_index() != Register::None
        && ins.memory_displacement64() < stride)
        .then(|| {
            (
                ins.memory_base().full_register(),
                ins.memory_index().full_register(),
            )
        })
}

/// Decodes `runtime.semrelease1` or `runtime.semacquire1` (`func`, whose code starts at
/// `func_entry`) and returns (address of `runtime.semtable`, size of one entry), following the
/// inlined `semTable.rootFor` described in the module documentation.
pub fn find_semtable(
    code: &[u8],
    func_entry: u64,
    func: &'static str,
) -> Result<(u64, u64), StrippedError> {
    let start = prologue_end(code, func_entry)?;
    let mut dec = decode_at(
        code.get(start as usize..).unwrap_or(&[]),
        func_entry.wrapping_add(start),
    );
    let mut info = InstructionInfoFactory::new();
    // Register → address of the RIP-relative LEA it holds.
    let mut leas: Vec<(Register, u64)> = Vec::new();
    // The register holding (x / 251) * 251, then the one holding x % 251, then the one holding
    // (x % 251) * stride. Each is forgotten when something else overwrites it.
    let mut product: Option<Register> = None;
    let mut remainder: Option<Register> = None;
    let mut scaled: Option<(Register, u64)> = None;
    let mut saw_mod = false;
    for _ in 0..MAX_INSNS {
        if !dec.can_decode() {
            break;
        }
        let ins = next_insn(&mut dec, func)?;
        let m = ins.mnemonic();
        // 1. Does this instruction combine the table's address with the scaled index?
        if let Some((reg, stride)) = scaled {
            let add = || match m {
                Mnemonic::Add => reg0(&ins).zip(reg1(&ins)),
                _ => None,
            };
            let pair = base_index(&ins, stride).or_else(add);
            if let Some((a, b)) = pair {
                let other = match (a == reg, b == reg) {
                    (true, false) => Some(b),
                    (false, true) => Some(a),
                    _ => None,
                };
                if let Some(&(_, addr)) = other.and_then(|o| leas.iter().find(|l| l.0 == o)) {
                    return Ok((addr, stride));
                }
            }
        }
        // 2. What this instruction starts, judged on the state before it.
        let new_lea = (m == Mnemonic::Lea && ins.is_ip_rel_memory_operand())
            .then(|| reg0(&ins).map(|r| (r, ins.ip_rel_memory_address())))
            .flatten();
        let new_product = (m == Mnemonic::Imul && ins.op_count() == 3 && imm(&ins, 2) == Some(251))
            .then(|| reg0(&ins))
            .flatten();
        let new_remainder = (m == Mnemonic::Sub && product.is_some() && reg1(&ins) == product)
            .then(|| reg0(&ins))
            .flatten();
        let new_scaled = match (m, remainder) {
            (Mnemonic::Shl, Some(r)) if reg0(&ins) == Some(r) => {
                imm(&ins, 1).filter(|&k| k < 64).map(|k| (r, 1u64 << k))
            }
            (Mnemonic::Imul, Some(r)) if ins.op_count() == 3 && reg1(&ins) == Some(r) => {
                reg0(&ins).zip(imm(&ins, 2))
            }
            _ => None,
        }
        .filter(|&(_, s)| (SEMA_ROOT_SIZE..=MAX_STRIDE).contains(&s));
        // 3. Forget what it overwrites, then record what it starts.
        let written = written_regs(&mut info, &ins);
        leas.retain(|(r, _)| !written.contains(r));
        let clobbered = |slot: Option<Register>| slot.filter(|r| !written.contains(r));
        product = clobbered(product);
        remainder = clobbered(remainder);
        scaled = scaled.filter(|(r, _)| !written.contains(r));
        if let Some(l) = new_lea {
            leas.push(l);
        }
        if new_product.is_some() {
            product = new_product;
            saw_mod = true;
        }
        if new_remainder.is_some() {
            remainder = new_remainder;
        }
        if new_scaled.is_some() {
            scaled = new_scaled;
            remainder = None;
        }
    }
    Err(pattern(
        func,
        if saw_mod {
            "no RIP-relative table indexed by the scaled remainder of % 251"
        } else {
            "no IMULQ $251 (the % semTabSize of semTable.rootFor)"
        },
    ))
}

/// Finds `runtime.semtable` from the code of `runtime.semrelease1` and `runtime.semacquire1`
/// (both must agree when both decode) and returns (link-time address, total size =
/// 251 × entry size), as `.symtab` gives them. The table must lie inside an `SHT_NOBITS`
/// writable section (`.bss`).
pub fn locate_semtable(
    image: &ElfImage<'_>,
    tab: &Pclntab<'_>,
) -> Result<(u64, u64), StrippedError> {
    let mut found: Option<(u64, u64, &'static str)> = None;
    let mut first_err = None;
    for name in FUNCS {
        let res = tab
            .lookup_function(name)
            .ok_or(StrippedError::MissingFunction(name))
            .and_then(|f| Ok((f.entry, image.code(f.entry, f.end)?)))
            .and_then(|(entry, code)| find_semtable(code, entry, name));
        match (res, found) {
            (Ok((addr, stride)), None) => found = Some((addr, stride, name)),
            (Ok((addr, stride)), Some((a, s, other))) if (addr, stride) != (a, s) => {
                return Err(pattern(
                    name,
                    format!(
                        "gives semtable {addr:#x} (entry {stride}) but {other} gives {a:#x} \
                         (entry {s})"
                    ),
                ));
            }
            (Ok(_), Some(_)) => {}
            (Err(e), _) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let Some((addr, stride, name)) = found else {
        return Err(first_err.unwrap_or(StrippedError::MissingFunction(FUNCS[0])));
    };
    let size = stride * SEM_TAB_SIZE;
    let end = addr
        .checked_add(size)
        .ok_or_else(|| pattern(name, "semtable address overflows"))?;
    let file = object::File::parse(image.file_data())?;
    let in_bss = file.sections().any(|s| {
        s.kind() == SectionKind::UninitializedData
            && s.address() <= addr
            && s.address().checked_add(s.size()).is_some_and(|e| end <= e)
    });
    if !in_bss {
        return Err(pattern(
            name,
            format!("semtable candidate {addr:#x}+{size:#x} is not inside .bss"),
        ));
    }
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::super::pclntab::gofixtures::{self as fx, Variant};
    use super::super::stripped::load_pclntab;
    use super::*;
    use std::path::{Path, PathBuf};

    /// Checks one binary: on a build with `.symtab`, the decode equals the symbol exactly; on
    /// a stripped one, it succeeds, lies in `.bss` and has 251 entries of 64 bytes (amd64).
    fn check(path: &Path) -> (u64, u64) {
        let bin = std::fs::read(path).unwrap();
        let image = ElfImage::parse(&bin).unwrap();
        let (tab, _) = load_pclntab(&image).unwrap();
        let p = path.display();
        let (addr, size) = locate_semtable(&image, &tab).unwrap_or_else(|e| panic!("{p}: {e}"));
        for name in FUNCS {
            let f = tab.lookup_function(name).unwrap();
            let code = image.code(f.entry, f.end).unwrap();
            let got = find_semtable(code, f.entry, name).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(got, (addr, size / SEM_TAB_SIZE), "{p}: {name}");
        }
        assert_eq!(size, SEM_TAB_SIZE * 64, "{p}");
        let has_symtab = object::File::parse(&*bin)
            .unwrap()
            .section_by_name(".symtab")
            .is_some();
        if has_symtab {
            let syms = fx::symtab(&bin);
            let (want, want_size, _) = syms["runtime.semtable"];
            assert_eq!((addr, size), (want, want_size), "{p}");
        } else {
            let bss = image.section(".bss").unwrap().0;
            assert!(addr >= bss, "{p}: {addr:#x} below .bss {bss:#x}");
        }
        (addr, size)
    }

    /// The fixtures of `cargo xtask fixtures` (every Go version, default / pie / stripped).
    #[test]
    fn target_fixtures() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|ver| {
                std::fs::read_dir(ver.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .flat_map(|var| {
                std::fs::read_dir(var.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        if paths.is_empty() {
            eprintln!("skipping: no fixtures under {}", root.display());
            return;
        }
        for p in &paths {
            let (addr, size) = check(p);
            // What the scanner gets, through `GoBinary` (stripped or not).
            let bin = super::super::GoBinary::open(p).unwrap();
            assert_eq!(bin.semtable(), Some((addr, size)), "{}", p.display());
            eprintln!("{}: semtable {addr:#x} size {size}", p.display());
        }
    }

    /// The unit-test fixture of every installed toolchain, including stripped PIE and (with
    /// gcc) externally linked PIE.
    #[test]
    fn real_binaries() {
        let variants = if fx::have_gcc() {
            [&Variant::ALL[..], &Variant::EXTERNAL[..]].concat()
        } else {
            Variant::ALL.to_vec()
        };
        for tc in fx::toolchains() {
            for &variant in &variants {
                let (addr, size) = check(&fx::build(&tc, variant));
                eprintln!("{} {variant:?}: semtable {addr:#x} size {size}", tc.version);
            }
        }
    }

    #[test]
    fn synthetic_code() {
        // semrelease1 of Go 1.27 (prologue, rootFor), with the LEA target at 0x58d880.
        let code: &[u8] = &[
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x00, 0x02, 0x00, 0x00, 0x55, 0x48, 0x89, 0xe5,
            0x48, 0x83, 0xec, 0x48, 0x48, 0x89, 0xc2, 0x48, 0xc1, 0xe8, 0x03, 0x48, 0x89, 0xc6,
            0x48, 0xb8, 0x47, 0x41, 0x40, 0x73, 0x7d, 0x7f, 0x19, 0x05, 0x48, 0x89, 0xd7, 0x48,
            0xf7, 0xe6, 0x48, 0x01, 0xf2, 0x48, 0xd1, 0xda, 0x48, 0xc1, 0xea, 0x07, 0x48, 0x69,
            0xd2, 0xfb, 0x00, 0x00, 0x00, 0x48, 0x29, 0xd6, 0x48, 0xc1, 0xe6, 0x06, 0x48, 0x8d,
            0x15, 0x35, 0x2e, 0x13, 0x00, 0x4c, 0x8d, 0x04, 0x16,
        ];
        let f = "runtime.semrelease1";
        assert_eq!(find_semtable(code, 0x45aa00, f).unwrap(), (0x58d880, 64));
        // Clobbering the LEA's register before its use breaks the chain.
        let mut c = code.to_vec();
        c.splice(75..75, [0x31, 0xd2]); // XORL DX, DX
        assert!(find_semtable(&c, 0x45aa00, f).is_err());
        // So does a modulus other than 251.
        let mut c = code.to_vec();
        c[57] = 0xfa;
        assert!(find_semtable(&c, 0x45aa00, f).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut rnd = fx::xorshift(0x2545_f491_4f6c_dd1du64);
        for _ in 0..3000 {
            let code: Vec<u8> = (0..rnd() % 256).map(|_| rnd() as u8).collect();
            let _ = find_semtable(&code, 0x1000, "f");
            let _ = find_semtable(&code, u64::MAX - rnd() % 256, "f");
        }
        let Some(tc) = fx::toolchains().pop() else {
            return;
        };
        let bin = std::fs::read(fx::build(&tc, Variant::PieStripped)).unwrap();
        let semrelease = {
            let image = ElfImage::parse(&bin).unwrap();
            let (tab, _) = load_pclntab(&image).unwrap();
            let f = tab.lookup_function("runtime.semrelease1").unwrap();
            image.code(f.entry, f.end).unwrap().to_vec()
        };
        for _ in 0..500 {
            let mut c = semrelease.clone();
            for _ in 0..1 + rnd() % 8 {
                let i = rnd() as usize % c.len();
                c[i] = rnd() as u8;
            }
            let _ = find_semtable(&c, 0x1000, "f");
            let _ = find_semtable(&c[..rnd() as usize % c.len()], 0x1000, "f");
        }
        for len in (0..bin.len()).step_by(bin.len() / 97) {
            if let Ok(img) = ElfImage::parse(&bin[..len])
                && let Ok((tab, _)) = load_pclntab(&img)
            {
                let _ = locate_semtable(&img, &tab);
            }
        }
        for _ in 0..60 {
            let mut b = bin.clone();
            for _ in 0..1 + rnd() % 64 {
                let i = rnd() as usize % b.len();
                b[i] = rnd() as u8;
            }
            if let Ok(img) = ElfImage::parse(&b)
                && let Ok((tab, _)) = load_pclntab(&img)
            {
                let _ = locate_semtable(&img, &tab);
            }
        }
    }
}
