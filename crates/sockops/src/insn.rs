//! eBPF instructions, encoded as the kernel reads them (Documentation/bpf/
//! standardization/instruction-set.rst): eight bytes each, opcode, the destination
//! and source registers in one byte, a 16-bit offset and a 32-bit immediate.
//!
//! Only the instructions the two programs use are here, the way systemd builds
//! its cgroup programs (src/shared/linux/bpf_insn.h): no compiler, no object file.

/// One instruction, laid out as `struct bpf_insn` (linux/bpf.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// Destination register in the low nibble, source in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

/// A register: r0 return value, r1–r5 arguments, r6–r9 kept across calls, r10 the
/// read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const FP: Reg = Reg(10);

// Instruction classes, sizes, modes and operations (linux/bpf_common.h, linux/bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_B: u8 = 0x10;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

const fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst.0 | (src.0 << 4),
        off,
        imm,
    }
}

/// `dst = src`, 64 bits.
pub const fn mov(dst: Reg, src: Reg) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
}

/// `dst = imm`, sign-extended to 64 bits.
pub const fn mov_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, R0, 0, imm)
}

/// `dst += imm`, 64 bits.
pub const fn add_imm(dst: Reg, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, R0, 0, imm)
}

/// `BPF_PSEUDO_MAP_FD`: the 64-bit immediate of a load is a map's descriptor, which
/// the kernel replaces with the map's address when it loads the program.
const PSEUDO_MAP_FD: Reg = Reg(1);

/// `dst = map`, for the map with descriptor `fd`: the one instruction that takes two
/// slots, the second carrying the upper half of the (here zero) 64-bit immediate.
pub const fn load_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
    [
        insn(BPF_LD | BPF_DW | BPF_IMM, dst, PSEUDO_MAP_FD, 0, fd),
        insn(0, R0, R0, 0, 0),
    ]
}

/// `dst = *(u64 *)(src + off)`.
pub const fn load_u64(dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_DW, dst, src, off, 0)
}

/// `dst = *(u8 *)(src + off)`, zero-extended.
pub const fn load_u8(dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_B, dst, src, off, 0)
}

/// `*(u32 *)(dst + off) = src`: the store older verifiers allow into a program's
/// context, where a store of an immediate is refused before Linux 6.3.
pub const fn store_u32(dst: Reg, off: i16, src: Reg) -> Insn {
    insn(BPF_STX | BPF_MEM | BPF_W, dst, src, off, 0)
}

/// `*(u8 *)(dst + off) = imm`.
pub const fn store_u8_imm(dst: Reg, off: i16, imm: i32) -> Insn {
    insn(BPF_ST | BPF_MEM | BPF_B, dst, R0, off, imm)
}

/// `dst = *(u32 *)(src + off)`, zero-extended.
pub const fn load_u32(dst: Reg, src: Reg, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
}

/// `*(u32 *)(dst + off) = imm`.
pub const fn store_u32_imm(dst: Reg, off: i16, imm: i32) -> Insn {
    insn(BPF_ST | BPF_MEM | BPF_W, dst, R0, off, imm)
}

/// `goto +off`.
pub const fn jump(off: i16) -> Insn {
    insn(BPF_JMP | BPF_JA, R0, R0, off, 0)
}

/// `if dst == imm goto +off`.
pub const fn jump_eq(dst: Reg, imm: i32, off: i16) -> Insn {
    insn(BPF_JMP | BPF_JEQ | BPF_K, dst, R0, off, imm)
}

/// `if dst != imm goto +off`.
pub const fn jump_ne(dst: Reg, imm: i32, off: i16) -> Insn {
    insn(BPF_JMP | BPF_JNE | BPF_K, dst, R0, off, imm)
}

/// Calls helper number `helper` (enum bpf_func_id): arguments in r1–r5, result in r0.
pub const fn call(helper: i32) -> Insn {
    insn(BPF_JMP | BPF_CALL, R0, R0, 0, helper)
}

/// Returns r0.
pub const fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, R0, R0, 0, 0)
}

impl Insn {
    /// The same jump with its offset replaced; used once the target is known.
    pub const fn with_offset(self, off: i16) -> Insn {
        Insn { off, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel_headers() {
        // Expected bytes as `llvm-objdump -d` prints them for the same instructions.
        let bytes = |i: Insn| {
            let mut out = [0u8; 8];
            out[0] = i.code;
            out[1] = i.regs;
            out[2..4].copy_from_slice(&i.off.to_le_bytes());
            out[4..8].copy_from_slice(&i.imm.to_le_bytes());
            out
        };
        assert_eq!(bytes(mov(R6, R1)), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(mov_imm(R0, 1)), [0xb7, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            bytes(add_imm(R4, -8)),
            [0x07, 0x04, 0, 0, 0xf8, 0xff, 0xff, 0xff]
        );
        assert_eq!(bytes(load_u32(R2, R6, 0)), [0x61, 0x62, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            bytes(store_u32_imm(FP, -8, 60)),
            [0x62, 0x0a, 0xf8, 0xff, 60, 0, 0, 0]
        );
        assert_eq!(bytes(jump_eq(R2, 4, 1)), [0x15, 0x02, 1, 0, 4, 0, 0, 0]);
        assert_eq!(bytes(jump_ne(R0, 0, 3)), [0x55, 0x00, 3, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(call(49)), [0x85, 0x00, 0, 0, 49, 0, 0, 0]);
        assert_eq!(bytes(exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        let [first, second] = load_map_fd(R1, 7);
        assert_eq!(bytes(first), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes(second), [0; 8]);
        assert_eq!(
            bytes(load_u64(R2, R6, 184)),
            [0x79, 0x62, 184, 0, 0, 0, 0, 0]
        );
        assert_eq!(bytes(load_u8(R1, R7, 2)), [0x71, 0x71, 2, 0, 0, 0, 0, 0]);
        assert_eq!(
            bytes(store_u8_imm(R0, 3, 1)),
            [0x72, 0x00, 3, 0, 1, 0, 0, 0]
        );
        assert_eq!(
            bytes(store_u32(R6, 32, R2)),
            [0x63, 0x26, 32, 0, 0, 0, 0, 0]
        );
        assert_eq!(bytes(jump(5)), [0x05, 0x00, 5, 0, 0, 0, 0, 0]);
    }
}
