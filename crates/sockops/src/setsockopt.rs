//! The setsockopt program: runs on every setsockopt(2) the cgroup's processes make on
//! its sockets, before the kernel's own handling, and marks the socket when the call
//! names one of the five keepalive options ([`crate::storage`]). It changes nothing
//! about the call: the kernel goes on with the caller's own buffer, value and result.

use crate::asm::Assembler;
use crate::insn::{self, Insn, R0, R1, R2, R3, R4, R6};
use crate::option;

/// Offsets in `struct bpf_sockopt` (linux/bpf.h).
const SK: i16 = 0;
const LEVEL: i16 = 24;
const OPTNAME: i16 = 28;
const OPTLEN: i16 = 32;
const SK_STORAGE_GET: i32 = 107;
const F_CREATE: i32 = 1;

/// The program marking sockets in the map with descriptor `marks`.
pub fn build(marks: i32) -> Vec<Insn> {
    let mut asm = Assembler::default();
    let exit = asm.label();
    asm.push(insn::mov(R6, R1));
    // optlen 0 tells the kernel to use the caller's own buffer, untouched
    // (Documentation/bpf/prog_cgroup_sockopt.rst): no copy back, and a value longer
    // than a page (which the program sees only the start of) is not refused with
    // EFAULT, as kernels before 6.5 do when a program leaves optlen as it was.
    asm.push(insn::mov_imm(R2, 0));
    asm.push(insn::store_u32(R6, OPTLEN, R2));
    asm.push(insn::load_u32(R2, R6, LEVEL));
    asm.push(insn::load_u32(R3, R6, OPTNAME));
    for option in option::ALL {
        let next = asm.label();
        asm.jump(insn::jump_ne(R2, option.level, 0), next);
        asm.jump(insn::jump_ne(R3, option.name, 0), next);
        // bpf_sk_storage_get(marks, ctx->sk, NULL, BPF_SK_STORAGE_GET_F_CREATE): the
        // socket's marks, made zeroed on its first keepalive option. When memory for
        // them is short the socket goes unmarked, and is treated as the program's
        // setting nothing.
        asm.extend(insn::load_map_fd(R1, marks));
        asm.push(insn::load_u64(R2, R6, SK));
        asm.push(insn::mov_imm(R3, 0));
        asm.push(insn::mov_imm(R4, F_CREATE));
        asm.push(insn::call(SK_STORAGE_GET));
        asm.jump(insn::jump_eq(R0, 0, 0), exit);
        asm.push(insn::store_u8_imm(R0, option.mark, 1));
        asm.jump(insn::jump(0), exit);
        asm.bind(next);
    }
    // 1: the kernel goes on with the call (0 would refuse it with EPERM).
    asm.bind(exit);
    asm.push(insn::mov_imm(R0, 1));
    asm.push(insn::exit());
    asm.finish()
}
