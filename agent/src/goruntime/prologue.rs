//! Where to attach a uprobe to a Go function: after its stack-bound check.
//!
//! A uprobe on a function's first instruction, `CMPQ SP, 16(R14)`, makes the kernel single-step
//! that memory-reading compare out of line (about 18 µs per hit measured here, against about
//! 1 µs for the emulated `PUSHQ BP` right after the check; see TOOLCHAIN.md). The first
//! instruction after the `JBE` to morestack still sees the argument registers and g (R14)
//! untouched, so that is where [`prologue_end`] points.

use super::stripped::StrippedError;
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

fn pattern(func: &'static str, reason: String) -> StrippedError {
    StrippedError::Pattern { func, reason }
}

pub(super) fn decode_at(code: &[u8], ip: u64) -> Decoder<'_> {
    Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
}

pub(super) fn next_insn(
    dec: &mut Decoder<'_>,
    func: &'static str,
) -> Result<Instruction, StrippedError> {
    if !dec.can_decode() {
        return Err(pattern(func, "ran out of code".into()));
    }
    let ins = dec.decode();
    if ins.is_invalid() {
        return Err(pattern(
            func,
            format!("invalid instruction at {:#x}", ins.ip()),
        ));
    }
    Ok(ins)
}

/// `CMPQ reg, 16(R14)` (g.stackguard0; 24 = stackguard1 for C functions).
fn is_stackguard_cmp(ins: &Instruction, reg: Register) -> bool {
    ins.mnemonic() == Mnemonic::Cmp
        && ins.op_count() == 2
        && ins.op0_kind() == OpKind::Register
        && ins.op0_register() == reg
        && ins.op1_kind() == OpKind::Memory
        && ins.memory_base() == Register::R14
        && ins.memory_index() == Register::None
        && matches!(ins.memory_displacement64(), 0x10 | 0x18)
}

fn writes_reg(ins: &Instruction, m: Mnemonic, reg: Register) -> bool {
    ins.mnemonic() == m && ins.op0_kind() == OpKind::Register && ins.op0_register() == reg
}

/// Whether `code` starts like an ABI0 → ABIInternal wrapper: `XORPS X15, X15`, which re-zeroes
/// the register ABIInternal keeps at zero (cmd/internal/obj/x86/obj6.go, the wrapper prologue
/// for functions called from assembly). The wrapper and the function it wraps have the same
/// name in the pclntab (`.symtab` calls the wrapper `NAME.abi0`); ABIInternal code never starts
/// this way, since X15 is already zero there.
pub fn is_abi0_wrapper(code: &[u8], entry_vaddr: u64) -> bool {
    let mut d = Decoder::with_ip(64, code, entry_vaddr, DecoderOptions::NONE);
    if !d.can_decode() {
        return false;
    }
    let i = d.decode();
    i.mnemonic() == Mnemonic::Xorps
        && i.op_count() == 2
        && i.op0_kind() == OpKind::Register
        && i.op1_kind() == OpKind::Register
        && i.op0_register() == Register::XMM15
        && i.op1_register() == Register::XMM15
}

/// Decodes a Go function's stack-bound check and returns the offset (from `entry_vaddr`, the
/// address of `code[0]`) of the first instruction after its `JBE` to morestack: where a uprobe
/// does not have to single-step a memory-reading `CMP`. 0 if the function has no check
/// (NOSPLIT). The shapes are those of `cmd/internal/obj/x86/obj6.go` `stacksplit`:
/// - small frames: `CMPQ SP, 16(R14); JBE`
/// - frames up to StackBig: `LEAQ -N(SP), R12; CMPQ R12, 16(R14); JBE`
/// - larger: `MOVQ SP, R12; SUBQ $N, R12; JCS; CMPQ R12, 16(R14); JBE`
///
/// each possibly preceded by a load of g into R14 from TLS (`loadG`, for ABI0 functions).
pub fn prologue_end(code: &[u8], entry_vaddr: u64) -> Result<u64, StrippedError> {
    const F: &str = "stack check prologue";
    let mut dec = decode_at(code, entry_vaddr);
    let mut ins = next_insn(&mut dec, F)?;
    // loadG: `MOVQ FS:-8, R14`, or `MOVQ $-8, R14; MOVQ FS:(R14), R14`.
    for _ in 0..2 {
        if writes_reg(&ins, Mnemonic::Mov, Register::R14) {
            ins = next_insn(&mut dec, F)?;
        }
    }
    if writes_reg(&ins, Mnemonic::Lea, Register::R12)
        && ins.memory_base() == Register::RSP
        && ins.memory_index() == Register::None
    {
        ins = next_insn(&mut dec, F)?;
        if !is_stackguard_cmp(&ins, Register::R12) {
            return Err(pattern(
                F,
                "LEAQ -N(SP), R12 not followed by CMPQ R12, 16(R14)".into(),
            ));
        }
    } else if writes_reg(&ins, Mnemonic::Mov, Register::R12)
        && ins.op1_kind() == OpKind::Register
        && ins.op1_register() == Register::RSP
    {
        ins = next_insn(&mut dec, F)?;
        if !writes_reg(&ins, Mnemonic::Sub, Register::R12) {
            return Err(pattern(
                F,
                "MOVQ SP, R12 not followed by SUBQ $N, R12".into(),
            ));
        }
        ins = next_insn(&mut dec, F)?;
        if ins.mnemonic() != Mnemonic::Jb {
            return Err(pattern(F, "SUBQ $N, R12 not followed by JCS".into()));
        }
        ins = next_insn(&mut dec, F)?;
        if !is_stackguard_cmp(&ins, Register::R12) {
            return Err(pattern(F, "JCS not followed by CMPQ R12, 16(R14)".into()));
        }
    } else if !is_stackguard_cmp(&ins, Register::RSP) {
        return Ok(0);
    }
    let jbe = next_insn(&mut dec, F)?;
    if jbe.mnemonic() != Mnemonic::Jbe {
        return Err(pattern(
            F,
            format!("stack compare not followed by JBE at {:#x}", jbe.ip()),
        ));
    }
    Ok(jbe.next_ip().wrapping_sub(entry_vaddr))
}

#[cfg(test)]
mod tests {
    use super::super::pclntab::Pclntab;
    use super::super::pclntab::gofixtures::{self as fx, Variant};
    use super::super::stripped::{ElfImage, load_pclntab};
    use super::*;
    use iced_x86::{InstructionInfoFactory, OpAccess};

    #[test]
    fn prologue_shapes() {
        let e = 0x40_0000;
        // CMPQ SP, 16(R14); JBE rel8
        assert_eq!(
            prologue_end(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x05, 0x55], e).unwrap(),
            6
        );
        // CMPQ SP, 16(R14); JBE rel32
        let big = [0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xdc, 0, 0, 0, 0x55];
        assert_eq!(prologue_end(&big, e).unwrap(), 10);
        // LEAQ -0x28(SP), R12; CMPQ R12, 16(R14); JBE rel32
        let lea = [
            0x4c, 0x8d, 0x64, 0x24, 0xd8, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xeb, 3, 0, 0,
        ];
        assert_eq!(prologue_end(&lea, e).unwrap(), 15);
        // MOVQ SP, R12; SUBQ $0x1fa8, R12; JCS; CMPQ R12, 16(R14); JBE rel32
        let huge = [
            0x49, 0x89, 0xe4, 0x49, 0x81, 0xec, 0xa8, 0x1f, 0, 0, 0x0f, 0x82, 0xb7, 0, 0, 0, 0x4d,
            0x3b, 0x66, 0x10, 0x0f, 0x86, 0x10, 0, 0, 0,
        ];
        assert_eq!(prologue_end(&huge, e).unwrap(), 26);
        // ABI0: MOVQ $-8, R14; MOVQ FS:(R14), R14; CMPQ SP, 16(R14); JBE rel8
        let abi0 = [
            0x49, 0xc7, 0xc6, 0xf8, 0xff, 0xff, 0xff, 0x64, 0x4d, 0x8b, 0x36, 0x49, 0x3b, 0x66,
            0x10, 0x76, 0x05,
        ];
        assert_eq!(prologue_end(&abi0, e).unwrap(), 17);
        // NOSPLIT: CMPB AL, $0x2f
        assert_eq!(prologue_end(&[0x3c, 0x2f, 0x72, 0x0d], e).unwrap(), 0);
        // A compare without its JBE, truncated code, nothing at all.
        assert!(prologue_end(&[0x49, 0x3b, 0x66, 0x10, 0x90], e).is_err());
        assert!(prologue_end(&big[..7], e).is_err());
        assert!(prologue_end(&[], e).is_err());
    }

    /// Checks that the instruction at `entry + off` does not read memory (the kernel emulates
    /// such instructions instead of single-stepping them out of line).
    fn assert_probe_friendly(code: &[u8], entry: u64, off: u64, name: &str) {
        let mut dec = decode_at(&code[off as usize..], entry + off);
        let ins = dec.decode();
        assert!(!ins.is_invalid(), "{name}+{off}");
        let mut info = InstructionInfoFactory::new();
        let reads = info.info(&ins).used_memory().iter().any(|m| {
            matches!(
                m.access(),
                OpAccess::Read | OpAccess::ReadWrite | OpAccess::CondRead
            )
        });
        assert!(
            !(ins.mnemonic() == Mnemonic::Cmp && reads),
            "{name}+{off}: {ins}"
        );
        assert!(!reads, "{name}+{off} reads memory: {ins}");
    }

    #[test]
    fn real_binaries() {
        let mut variants = Variant::ALL.to_vec();
        if fx::have_gcc() {
            variants.extend(Variant::EXTERNAL);
        }
        for tc in fx::toolchains() {
            for &variant in &variants {
                let bin = std::fs::read(fx::build(&tc, variant)).unwrap();
                let image = ElfImage::parse(&bin).unwrap();
                let (tab, _) = load_pclntab(&image).unwrap();
                check_prologues(&image, &tab, &format!("{} {variant:?}", tc.version));
            }
        }
    }

    fn check_prologues(image: &ElfImage<'_>, tab: &Pclntab<'_>, v: &str) {
        for name in [
            "runtime.gopark",
            "runtime.ready",
            "runtime.newproc1",
            "runtime.goexit1",
        ] {
            let f = tab.lookup_function(name).unwrap();
            let code = image.code(f.entry, f.end).unwrap();
            let off = prologue_end(code, f.entry).unwrap();
            // CMPQ SP, 16(R14) is `49 3b 66 10`; then JBE rel8 (`76 xx`) or rel32 (`0f 86 ...`).
            assert_eq!(code[..4], [0x49, 0x3b, 0x66, 0x10], "{v}: {name}");
            let want = if code[4] == 0x76 { 6 } else { 10 };
            assert_eq!(off, want, "{v}: {name}");
            if name == "runtime.gopark" {
                assert_eq!(off, 10, "{v}: gopark has a large frame");
            }
            assert_probe_friendly(code, f.entry, off, name);
        }
        let f = tab.lookup_function("runtime.forEachG").unwrap();
        let code = image.code(f.entry, f.end).unwrap();
        assert_eq!(
            prologue_end(code, f.entry).unwrap(),
            6,
            "{v}: forEachG has a 2-byte JBE"
        );
        let f = tab.lookup_function("runtime.waitReason.String").unwrap();
        assert_eq!(
            prologue_end(image.code(f.entry, f.end).unwrap(), f.entry).unwrap(),
            0
        );
        // Every function of the binary: decodes, and the probe point reads no memory.
        let mut by_len = std::collections::BTreeMap::new();
        for f in tab.functions() {
            let code = image.code(f.entry, f.end).unwrap();
            let off =
                prologue_end(code, f.entry).unwrap_or_else(|e| panic!("{v}: {}: {e}", f.name));
            *by_len.entry(off).or_insert(0) += 1;
            if off > 0 {
                assert_probe_friendly(code, f.entry, off, f.name);
            }
        }
        // NOSPLIT, small (6/10), LEAQ (15) and SUBQ (26) shapes all occur.
        for len in [0, 6, 10, 15, 26] {
            assert!(
                by_len.contains_key(&len),
                "{v}: no prologue of {len} bytes: {by_len:?}"
            );
        }
    }
}
