//! The sock_ops program: at the two moments a TCP connection becomes established, it
//! gives the connection each setting whose option the program did not set itself.
//!
//! Which options the program set, the setsockopt program ([`crate::setsockopt`])
//! recorded in the socket's marks as the program set them; an accepted connection
//! carries its listener's. So the rule is the library's, seen by the kernel: a setting
//! the program made wins, option by option — its explicit `SO_KEEPALIVE=0` included —
//! whatever the sysctls of whichever network namespace the connection is in. The
//! settings are immediates in the instructions, baked in when the program is built.
//!
//! A subflow of an MPTCP connection is left alone. It is a TCP socket the kernel makes
//! for the MPTCP socket the program holds (socket(2) with `IPPROTO_MPTCP`), and the
//! options the program sets go to that MPTCP socket — where the marking program marks
//! them — and from there to the subflows, which carry no marks. Judged by its own
//! marks, a subflow would get the settings over the program's own, and the program
//! would still read its own values back from its socket. The library leaves MPTCP
//! sockets alone too (it configures `IPPROTO_TCP` stream sockets only).
//!
//! A plain TCP client accepted on an MPTCP listener is no subflow: the connection falls
//! back to TCP, and the accepted socket is a child of the listener's first subflow,
//! which the kernel made and the program's options reached only through its MPTCP
//! socket. So when such a subflow starts listening (`BPF_SOCK_OPS_TCP_LISTEN_CB`) it
//! is marked as holding all five of the program's own options, and every connection
//! accepted on it inherits the marks (`BPF_F_CLONE`) and is left alone too.

use keepalive_config::Config;

use crate::asm::Assembler;
use crate::insn::{self, FP, Insn, R0, R1, R2, R3, R4, R5, R6, R7};
use crate::option::SockOpt;

/// `BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB` (enum in linux/bpf.h): connect(2) completed.
const ACTIVE_ESTABLISHED: i32 = 4;
/// `BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB`: a handshake completed on a listener, before
/// accept(2) returns the connection.
const PASSIVE_ESTABLISHED: i32 = 5;
/// `BPF_SOCK_OPS_TCP_LISTEN_CB`: a socket started listening (Linux 4.17; called for
/// every listen, with no flag to set).
const TCP_LISTEN: i32 = 11;
/// Offsets in `struct bpf_sock_ops`: the callback, and the socket (Linux 5.10).
const OP: i16 = 0;
const SK: i16 = 184;
/// Helpers (enum bpf_func_id).
const SETSOCKOPT: i32 = 49;
const SK_STORAGE_GET: i32 = 107;
/// `bpf_skc_to_mptcp_sock` (Linux 5.19): the MPTCP socket a subflow belongs to, or
/// NULL for a socket of plain TCP. Open to sock_ops programs of a loader with
/// CAP_PERFMON (or CAP_SYS_ADMIN), which `run --kernel` requires.
const SKC_TO_MPTCP_SOCK: i32 = 196;
/// `BPF_SK_STORAGE_GET_F_CREATE`.
const F_CREATE: i32 = 1;
/// The stack slot the option values pass through: one `int` below the frame pointer.
const SLOT: i16 = -4;

/// The program for `config`, reading the marks in the map with descriptor `marks`;
/// with `mptcp` (a kernel built with MPTCP), one that leaves MPTCP subflows, and what
/// is accepted on an MPTCP listener, alone.
pub fn build(config: &Config, marks: i32, mptcp: bool) -> Vec<Insn> {
    let mut asm = Assembler::default();
    let exit = asm.label();
    let established = asm.label();
    // r6 = ctx (struct bpf_sock_ops *), kept across helper calls.
    asm.push(insn::mov(R6, R1));
    asm.push(insn::load_u32(R2, R6, OP));
    asm.jump(insn::jump_eq(R2, ACTIVE_ESTABLISHED, 0), established);
    if mptcp {
        asm.jump(insn::jump_eq(R2, PASSIVE_ESTABLISHED, 0), established);
        asm.jump(insn::jump_ne(R2, TCP_LISTEN, 0), exit);
        mark_mptcp_listener(&mut asm, marks, exit);
    } else {
        asm.jump(insn::jump_ne(R2, PASSIVE_ESTABLISHED, 0), exit);
    }
    asm.bind(established);
    // r7 = the socket's marks, or NULL when the program set no keepalive option on it
    // (bpf_sk_storage_get without BPF_SK_STORAGE_GET_F_CREATE). A connection without
    // a full socket cannot be judged, and is left alone.
    asm.push(insn::load_u64(R2, R6, SK));
    asm.jump(insn::jump_eq(R2, 0, 0), exit);
    if mptcp {
        // r7 keeps the socket across the call.
        asm.push(insn::mov(R7, R2));
        asm.push(insn::mov(R1, R2));
        asm.push(insn::call(SKC_TO_MPTCP_SOCK));
        asm.jump(insn::jump_ne(R0, 0, 0), exit);
        asm.push(insn::mov(R2, R7));
    }
    asm.extend(insn::load_map_fd(R1, marks));
    asm.push(insn::mov_imm(R3, 0));
    asm.push(insn::mov_imm(R4, 0));
    asm.push(insn::call(SK_STORAGE_GET));
    asm.push(insn::mov(R7, R0));
    for setting in config.settings() {
        let (option, value) = SockOpt::of(setting);
        let set = asm.label();
        let next = asm.label();
        asm.jump(insn::jump_eq(R7, 0, 0), set);
        asm.push(insn::load_u8(R1, R7, option.mark));
        asm.jump(insn::jump_ne(R1, 0, 0), next);
        asm.bind(set);
        // bpf_setsockopt(ctx, level, name, &value, sizeof(int)) (bpf-helpers(7)). A
        // failure changes nothing else: the other options are still set, as the
        // library does.
        asm.push(insn::store_u32_imm(FP, SLOT, value));
        asm.push(insn::mov(R1, R6));
        asm.push(insn::mov_imm(R2, option.level));
        asm.push(insn::mov_imm(R3, option.name));
        asm.push(insn::mov(R4, FP));
        asm.push(insn::add_imm(R4, i32::from(SLOT)));
        asm.push(insn::mov_imm(R5, 4));
        asm.push(insn::call(SETSOCKOPT));
        asm.bind(next);
    }
    // sock_ops programs return 1 for success.
    asm.bind(exit);
    asm.push(insn::mov_imm(R0, 1));
    asm.push(insn::exit());
    asm.finish()
}

/// At `TCP_LISTEN`, with r6 the context: when the listening socket is an MPTCP subflow,
/// marks all five options on it as the program's own (bpf_sk_storage_get with
/// `F_CREATE`), for its accepted connections to inherit; then goes to `exit`.
fn mark_mptcp_listener(asm: &mut Assembler, marks: i32, exit: crate::asm::Label) {
    asm.push(insn::load_u64(R2, R6, SK));
    asm.jump(insn::jump_eq(R2, 0, 0), exit);
    // r7 keeps the socket across the call.
    asm.push(insn::mov(R7, R2));
    asm.push(insn::mov(R1, R2));
    asm.push(insn::call(SKC_TO_MPTCP_SOCK));
    asm.jump(insn::jump_eq(R0, 0, 0), exit);
    asm.extend(insn::load_map_fd(R1, marks));
    asm.push(insn::mov(R2, R7));
    asm.push(insn::mov_imm(R3, 0));
    asm.push(insn::mov_imm(R4, F_CREATE));
    asm.push(insn::call(SK_STORAGE_GET));
    asm.jump(insn::jump_eq(R0, 0, 0), exit);
    for option in crate::option::ALL {
        asm.push(insn::store_u8_imm(R0, option.mark, 1));
    }
    asm.jump(insn::jump(0), exit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::{Mode, Seconds};

    fn idle_60(mode: Mode) -> Config {
        Config {
            mode,
            idle: Seconds::new(60),
            ..Config::DEFAULT
        }
    }

    #[test]
    fn each_setting_is_one_guarded_setsockopt() {
        let on = build(&idle_60(Mode::On), 3, true);
        let skip = build(&idle_60(Mode::Skip), 3, true);
        let off = build(&idle_60(Mode::Off), 3, true);
        // A setting: three instructions to read its mark, eight to set it.
        assert_eq!(on.len() - skip.len(), 11);
        assert_eq!(skip.len() - off.len(), 11);
        assert_eq!(off[off.len() - 2..], [insn::mov_imm(R0, 1), insn::exit()]);
    }

    #[test]
    fn a_marked_option_skips_its_setsockopt() {
        let insns = build(&idle_60(Mode::Skip), 3, false);
        let read = insns
            .iter()
            .position(|&i| i == insn::load_u8(R1, R7, crate::option::IDLE.mark))
            .expect("the idle mark is read");
        // The jump over the set lands just past its helper call.
        assert_eq!(insns[read + 1], insn::jump_ne(R1, 0, 8));
        assert_eq!(insns[read + 9], insn::call(SETSOCKOPT));
    }

    #[test]
    fn an_mptcp_subflow_leaves_before_any_setting() {
        let insns = build(&idle_60(Mode::On), 3, true);
        // The last test is the connection's; the first, the listener's.
        let call = insns
            .iter()
            .rposition(|&i| i == insn::call(SKC_TO_MPTCP_SOCK))
            .expect("the subflow test is made");
        // A subflow jumps to the closing `r0 = 1; exit`.
        let to_exit = (insns.len() - 2 - (call + 2)) as i16;
        assert_eq!(insns[call + 1], insn::jump_ne(R0, 0, to_exit));
        assert!(!build(&idle_60(Mode::On), 3, false).contains(&insn::call(SKC_TO_MPTCP_SOCK)));
    }
}
