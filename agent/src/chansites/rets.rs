//! Where the makechan probe goes: every `RET` of `runtime.makechan`, found by decoding the
//! function from its entry to its end, so that each probe sits on an instruction boundary (a
//! `0xc3` byte inside another instruction's immediate or displacement is no `RET`).
//!
//! Go's amd64 code holds no data between instructions (jump tables live in .rodata), and the
//! linker pads functions with `INT3`, so a linear sweep from the entry decodes every instruction
//! the function has (cmd/internal/obj/x86/asm6.go). The pclntab names the function in stripped
//! binaries too.

use iced_x86::{Decoder, DecoderOptions, Mnemonic};

use crate::goruntime::GoBinary;

/// The function the probe goes on (src/runtime/chan.go): every `make(chan T, n)` compiles to a
/// call of it (cmd/compile/internal/walk/builtin.go, walkMakeChan; `makechan64` only when the
/// size's type is wider than `int`, and it calls makechan too).
pub const MAKECHAN: &str = "runtime.makechan";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RetError {
    #[error("{name} is not in the binary's function table")]
    NoFunction { name: &'static str },
    #[error("{name}'s code ({len} bytes at {entry:#x}) is not backed by the file")]
    NoCode {
        name: &'static str,
        entry: u64,
        len: u64,
    },
    #[error("{name}: undecodable instruction at +{offset:#x}")]
    Invalid { name: &'static str, offset: u64 },
    #[error("{name} has no RET instruction")]
    NoRet { name: &'static str },
}

/// Offsets from `entry_vaddr` (the address of `code[0]`) of every near `RET` in `code`, decoded
/// instruction by instruction from the start. An undecodable instruction is an error: the
/// boundaries after it could not be trusted.
pub fn ret_offsets(code: &[u8], entry_vaddr: u64) -> Result<Vec<u64>, u64> {
    let mut dec = Decoder::with_ip(64, code, entry_vaddr, DecoderOptions::NONE);
    let mut rets = Vec::new();
    while dec.can_decode() {
        let ins = dec.decode();
        let offset = ins.ip() - entry_vaddr;
        if ins.is_invalid() {
            return Err(offset);
        }
        if ins.mnemonic() == Mnemonic::Ret {
            rets.push(offset);
        }
    }
    Ok(rets)
}

/// `runtime.makechan` in one binary: its entry, and each `RET` as an offset in the function and
/// as the file offset the kernel's uprobe API takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakechanRets {
    pub entry: u64,
    pub offsets: Vec<u64>,
    pub file_offsets: Vec<u64>,
}

/// Finds the `RET`s of `runtime.makechan` in `bin`.
pub fn makechan_rets(bin: &GoBinary) -> Result<MakechanRets, RetError> {
    let name = MAKECHAN;
    let f = bin.function(name).ok_or(RetError::NoFunction { name })?;
    let len = f.end.saturating_sub(f.entry);
    let no_code = RetError::NoCode {
        name,
        entry: f.entry,
        len,
    };
    let code = bin.bytes_at(f.entry, len as usize).ok_or(no_code.clone())?;
    let offsets =
        ret_offsets(code, f.entry).map_err(|offset| RetError::Invalid { name, offset })?;
    if offsets.is_empty() {
        return Err(RetError::NoRet { name });
    }
    let file_offsets = offsets
        .iter()
        .map(|&o| bin.file_offset(f.entry + o))
        .collect::<Option<Vec<u64>>>()
        .ok_or(no_code)?;
    Ok(MakechanRets {
        entry: f.entry,
        offsets,
        file_offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goruntime::pclntab::gofixtures::{self as fx, Variant};

    #[test]
    fn rets_on_instruction_boundaries_only() {
        let e = 0x40_0000;
        // MOVL $0xc3c3c3c3, AX; ADDQ $0x30, SP; POPQ BP; RET; INT3 padding.
        let code = [
            0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0x48, 0x83, 0xc4, 0x30, 0x5d, 0xc3, 0xcc, 0xcc,
        ];
        assert_eq!(ret_offsets(&code, e), Ok(vec![10]));
        // Two returns (an early one), and `RET imm16`.
        let two = [0x5d, 0xc3, 0x90, 0xc2, 0x08, 0x00];
        assert_eq!(ret_offsets(&two, e), Ok(vec![1, 3]));
        // A truncated instruction at the end: its boundary is unknown.
        assert_eq!(ret_offsets(&[0xc3, 0x48, 0x83], e), Err(1));
        assert_eq!(ret_offsets(&[], e), Ok(vec![]));
    }

    /// `go tool objdump`'s RET lines of `runtime.makechan`, as offsets from its first line.
    fn objdump_rets(go: &std::path::Path, bin: &std::path::Path) -> Vec<u64> {
        let out = std::process::Command::new(go)
            .args(["tool", "objdump", "-s", "^runtime.makechan$"])
            .arg(bin)
            .output()
            .expect("go tool objdump");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        // Lines: `  chan.go:124  0x41506b  4883c430  ADDQ $0x30, SP`.
        let insns: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let _pos = w.next()?;
                let addr = u64::from_str_radix(w.next()?.strip_prefix("0x")?, 16).ok()?;
                let _bytes = w.next()?;
                Some((addr, w.next()?))
            })
            .collect();
        let entry = insns.first().expect("objdump printed makechan").0;
        insns
            .iter()
            .filter(|(_, op)| *op == "RET")
            .map(|(a, _)| a - entry)
            .collect()
    }

    /// Every supported toolchain, plain, PIE and stripped: the decoded RETs are Go's own
    /// disassembler's, each a `C3` after the epilogue's `POPQ BP` (the probe relies on RBP being
    /// the caller's frame pointer there), and a stripped binary's are its plain twin's.
    #[test]
    fn makechan_rets_of_real_binaries() {
        for tc in fx::toolchains() {
            let mut unstripped = std::collections::HashMap::new();
            for variant in Variant::ALL {
                let path = fx::build(&tc, variant);
                let bin = GoBinary::open(&path).unwrap();
                let v = format!("{} {variant:?}", tc.version);
                let rets = makechan_rets(&bin).unwrap_or_else(|e| panic!("{v}: {e}"));
                let code = bin
                    .bytes_at(rets.entry, *rets.offsets.last().unwrap() as usize + 1)
                    .unwrap();
                for &o in &rets.offsets {
                    assert_eq!(code[o as usize], 0xc3, "{v}: +{o:#x}");
                    assert_eq!(code[o as usize - 1], 0x5d, "{v}: POPQ BP before +{o:#x}");
                }
                let data = std::fs::read(&path).unwrap();
                for (&o, &fo) in rets.offsets.iter().zip(&rets.file_offsets) {
                    assert_eq!(data[fo as usize], 0xc3, "{v}: file offset of +{o:#x}");
                }
                // objdump needs the symbol table: a stripped build is checked against its
                // unstripped twin (same code).
                match variant {
                    Variant::Stripped => assert_eq!(rets.offsets, unstripped[&Variant::Plain]),
                    Variant::PieStripped => assert_eq!(rets.offsets, unstripped[&Variant::Pie]),
                    _ => {
                        assert_eq!(rets.offsets, objdump_rets(&tc.go, &path), "{v}");
                        unstripped.insert(variant, rets.offsets.clone());
                    }
                }
            }
        }
    }
}
