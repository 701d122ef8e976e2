//! Native unwinding with DWARF CFI (.eh_frame/.eh_frame_hdr/.debug_frame, through framehop) over
//! a captured stack window, as `perf --call-graph dwarf` does. Pure: modules, registers and the
//! window's bytes in, return addresses out; it never touches a process.

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Unwinder};

use super::modules::{Bytes, Placed};

/// Most native frames followed in one unwind.
pub const MAX_NATIVE_FRAMES: usize = 64;

/// Why a native unwind ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// At an address `stop` accepted (for a cgo call, the Go code it returns to); it is not in
    /// the frames.
    Boundary(u64),
    /// The stack's outermost frame.
    StackEnd,
    /// Unwind info missing, or a read outside the window, or [`MAX_NATIVE_FRAMES`].
    Truncated,
}

/// The result of an unwind: the innermost PC (exact), then return addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwound {
    pub frames: Vec<u64>,
    pub end: End,
    /// BP as recovered for the frame the unwind ended at (CFI restores the callee-saved BP that
    /// the native frames pushed). At a cgo boundary it is the frame pointer of the Go frame that
    /// called `asmcgocall`, see `native::stitch`.
    pub bp: u64,
}

/// The registers an unwind starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartRegs {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// An unwinder for one process's modules; reusable across its threads.
pub struct NativeUnwinder {
    unwinder: UnwinderX86_64<Bytes>,
    cache: CacheX86_64,
}

impl NativeUnwinder {
    pub fn new(placed: &[Placed]) -> Self {
        let mut unwinder = UnwinderX86_64::new();
        for p in placed {
            unwinder.add_module(framehop::Module::new(
                p.module.name.clone(),
                p.avma.clone(),
                // ELF: the link-time base is 0, so the base is mapped at the bias.
                p.bias,
                p.module.sections.clone(),
            ));
        }
        Self {
            unwinder,
            cache: CacheX86_64::new(),
        }
    }

    /// Unwinds from `regs` over `stack`, the bytes at `regs.sp` and up, until `stop` accepts an
    /// address (it is asked about every frame, the first included).
    pub fn unwind(&mut self, regs: StartRegs, stack: &[u8], stop: impl Fn(u64) -> bool) -> Unwound {
        let base = regs.sp;
        let mut read = |addr: u64| -> Result<u64, ()> {
            let off = usize::try_from(addr.checked_sub(base).ok_or(())?).map_err(|_| ())?;
            let bytes = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let mut frames = Vec::new();
        let mut state = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut address = FrameAddress::from_instruction_pointer(regs.ip);
        let end = loop {
            let addr = address.address();
            if stop(addr) {
                break End::Boundary(addr);
            }
            frames.push(addr);
            if frames.len() >= MAX_NATIVE_FRAMES {
                break End::Truncated;
            }
            match self
                .unwinder
                .unwind_frame(address, &mut state, &mut self.cache, &mut read)
            {
                Ok(Some(ret)) => match FrameAddress::from_return_address(ret) {
                    Some(next) => address = next,
                    None => break End::StackEnd,
                },
                Ok(None) => break End::StackEnd,
                Err(_) => break End::Truncated,
            }
        };
        Unwound {
            frames,
            end,
            bp: state.bp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gimli::X86_64;
    use gimli::write::{
        Address, CallFrameInstruction as I, CommonInformationEntry, EhFrame, EndianVec,
        FrameDescriptionEntry, FrameTable,
    };

    use super::*;
    use crate::native::modules::ElfModule;

    /// Three C functions with the CFI gcc gives them, at link-time addresses:
    /// - `leaf` [0x1000, 0x1040): no frame, CFA = rsp+8;
    /// - `mid` [0x1040, 0x1100): `push rbp; mov rbp, rsp` then CFA = rbp+16, rbp saved at CFA-16;
    /// - `outer` [0x1100, 0x1200): `sub rsp, 24`, CFA = rsp+32.
    fn eh_frame() -> Vec<u8> {
        let encoding = gimli::Encoding {
            format: gimli::Format::Dwarf32,
            version: 1,
            address_size: 8,
        };
        let mut table = FrameTable::default();
        let mut cie = CommonInformationEntry::new(encoding, 1, -8, X86_64::RA);
        cie.add_instruction(I::Cfa(X86_64::RSP, 8));
        cie.add_instruction(I::Offset(X86_64::RA, -8));
        let cie = table.add_cie(cie);
        table.add_fde(
            cie,
            FrameDescriptionEntry::new(Address::Constant(0x1000), 0x40),
        );
        let mut mid = FrameDescriptionEntry::new(Address::Constant(0x1040), 0xc0);
        mid.add_instruction(1, I::CfaOffset(16));
        mid.add_instruction(1, I::Offset(X86_64::RBP, -16));
        mid.add_instruction(4, I::CfaRegister(X86_64::RBP));
        table.add_fde(cie, mid);
        let mut outer = FrameDescriptionEntry::new(Address::Constant(0x1100), 0x100);
        outer.add_instruction(4, I::CfaOffset(32));
        table.add_fde(cie, outer);
        let mut eh = EhFrame(EndianVec::new(gimli::LittleEndian));
        table.write_eh_frame(&mut eh).unwrap();
        eh.0.into_vec()
    }

    /// The module loaded at `bias`; its .eh_frame "lives" at 0x3000.
    fn placed(bias: u64) -> Vec<Placed> {
        let data = eh_frame();
        let sections = framehop::ExplicitModuleSectionInfo {
            eh_frame_svma: Some(0x3000..0x3000 + data.len() as u64),
            eh_frame: Some(Arc::from(data)),
            text_svma: Some(0x1000..0x1200),
            ..Default::default()
        };
        vec![Placed {
            module: Arc::new(ElfModule::synthetic("libtest.so", sections, Vec::new())),
            avma: bias + 0x1000..bias + 0x1200,
            bias,
        }]
    }

    const SP: u64 = 0x7ff0_0000;
    /// The caller's BP that `mid` saved (a Go frame pointer, at a cgo boundary).
    const GO_BP: u64 = 0xc000_1000;

    /// The stack as the three frames leave it, with `leaf` stopped at leaf+0x10.
    fn window(bias: u64, go_ret: u64) -> (StartRegs, Vec<u8>) {
        let mut words = [0u64; 16];
        words[0] = bias + 0x1080; // leaf returns into mid
        // mid: CFA = SP+40; saved rbp at CFA-16 = SP+24, return address at CFA-8 = SP+32.
        words[3] = GO_BP;
        words[4] = bias + 0x1150; // mid returns into outer
        // outer: CFA = SP+40+32 = SP+72; return address at SP+64.
        words[8] = go_ret;
        let bytes = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let regs = StartRegs {
            ip: bias + 0x1010,
            sp: SP,
            bp: SP + 24, // mid's frame pointer, untouched by leaf
        };
        (regs, bytes)
    }

    #[test]
    fn unwinds_cfi_frames_to_the_boundary() {
        for bias in [0, 0x7f12_3400_0000] {
            let go_ret = 0x4a_0010;
            let (regs, stack) = window(bias, go_ret);
            let mut u = NativeUnwinder::new(&placed(bias));
            let got = u.unwind(regs, &stack, |pc| (0x40_0000..0x50_0000).contains(&pc));
            assert_eq!(
                got,
                Unwound {
                    frames: vec![bias + 0x1010, bias + 0x1080, bias + 0x1150],
                    end: End::Boundary(go_ret),
                    bp: GO_BP,
                },
                "bias {bias:#x}"
            );
        }
    }

    #[test]
    fn a_short_window_truncates_instead_of_guessing() {
        let (regs, stack) = window(0, 0x4a_0010);
        let mut u = NativeUnwinder::new(&placed(0));
        // Cut inside outer's frame: its return address is not captured.
        let got = u.unwind(regs, &stack[..64], |pc| {
            (0x40_0000..0x50_0000).contains(&pc)
        });
        assert_eq!(got.frames, vec![0x1010, 0x1080, 0x1150]);
        assert_eq!(got.end, End::Truncated);
    }

    #[test]
    fn go_code_at_the_registers_is_a_boundary_at_once() {
        let (mut regs, stack) = window(0, 0x4a_0010);
        regs.ip = 0x4a_0000;
        let mut u = NativeUnwinder::new(&placed(0));
        let got = u.unwind(regs, &stack, |pc| (0x40_0000..0x50_0000).contains(&pc));
        assert_eq!(got.frames, Vec::<u64>::new());
        assert_eq!(got.end, End::Boundary(0x4a_0000));
        assert_eq!(got.bp, regs.bp);
    }

    #[test]
    fn garbage_windows_never_panic() {
        use proptest::prelude::*;
        proptest!(|(words in proptest::collection::vec(any::<u64>(), 0..64), ip in 0x1000u64..0x1200, bp: u64)| {
            let stack: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let mut u = NativeUnwinder::new(&placed(0));
            let got = u.unwind(StartRegs { ip, sp: SP, bp }, &stack, |pc| pc >= 0x40_0000);
            prop_assert!(got.frames.len() <= MAX_NATIVE_FRAMES);
        });
    }
}
