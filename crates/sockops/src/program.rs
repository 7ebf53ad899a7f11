//! The sock_ops program: at the two moments a TCP connection becomes established, it
//! leaves alone a connection the program already configured and gives every other one
//! the settings, with `bpf_setsockopt`.
//!
//! The settings are immediates in the instructions, baked in when the program is
//! built: the program needs no map, and one loaded program is one configuration.

use keepalive_config::{Config, Setting};

use crate::insn::{self, FP, Insn, R0, R1, R2, R3, R4, R5, R6};

/// `BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB` (enum in linux/bpf.h): connect(2) completed.
const ACTIVE_ESTABLISHED: i32 = 4;
/// `BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB`: a handshake completed on a listener, before
/// accept(2) returns the connection.
const PASSIVE_ESTABLISHED: i32 = 5;
/// `BPF_FUNC_setsockopt` and `BPF_FUNC_getsockopt` (enum bpf_func_id).
const SETSOCKOPT: i32 = 49;
const GETSOCKOPT: i32 = 57;
/// The stack slot the option values pass through: one `int` below the frame pointer.
const SLOT: i16 = -4;

/// What `getsockopt` reports on a TCP socket nobody configured, in the network
/// namespace the program's connections live in: `SO_KEEPALIVE` off, no user timeout,
/// and the timers of the `net.ipv4.tcp_keepalive_*` sysctls, which tcp(7) sockets
/// without their own timers report. A connection reporting anything else was
/// configured by its program (or inherited it from its listener), and is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Untouched {
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
}

/// A socket option, as the program reads and writes it.
#[derive(Clone, Copy)]
struct SockOpt {
    level: i32,
    name: i32,
}

const KEEPALIVE: SockOpt = SockOpt {
    level: libc::SOL_SOCKET,
    name: libc::SO_KEEPALIVE,
};
const IDLE: SockOpt = SockOpt {
    level: libc::IPPROTO_TCP,
    name: libc::TCP_KEEPIDLE,
};
const INTERVAL: SockOpt = SockOpt {
    level: libc::IPPROTO_TCP,
    name: libc::TCP_KEEPINTVL,
};
const COUNT: SockOpt = SockOpt {
    level: libc::IPPROTO_TCP,
    name: libc::TCP_KEEPCNT,
};
const USER_TIMEOUT: SockOpt = SockOpt {
    level: libc::IPPROTO_TCP,
    name: libc::TCP_USER_TIMEOUT,
};

/// An instruction sequence with forward jumps to its one exit.
struct Assembler {
    insns: Vec<Insn>,
    to_exit: Vec<usize>,
}

impl Assembler {
    fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    /// A conditional jump to the exit, its offset filled in by [`Assembler::finish`].
    fn exit_if(&mut self, jump: Insn) {
        self.to_exit.push(self.insns.len());
        self.insns.push(jump);
    }

    /// Calls `helper(ctx, level, name, &slot, sizeof(int))`, the shape both
    /// `bpf_getsockopt` and `bpf_setsockopt` take (bpf-helpers(7)).
    fn sockopt(&mut self, helper: i32, option: SockOpt) {
        self.push(insn::mov(R1, R6));
        self.push(insn::mov_imm(R2, option.level));
        self.push(insn::mov_imm(R3, option.name));
        self.push(insn::mov(R4, FP));
        self.push(insn::add_imm(R4, i32::from(SLOT)));
        self.push(insn::mov_imm(R5, 4));
        self.push(insn::call(helper));
    }

    /// Goes to the exit unless `option` reads back as `untouched`. A failed read also
    /// goes there: a connection the program cannot judge is not changed.
    fn exit_unless(&mut self, option: SockOpt, untouched: u32) {
        self.sockopt(GETSOCKOPT, option);
        self.exit_if(insn::jump_ne(R0, 0, 0));
        self.push(insn::load_u32(R1, FP, SLOT));
        self.exit_if(insn::jump_ne(R1, as_imm(untouched), 0));
    }

    /// Sets `option` to `value`. A failure changes nothing else: the other options
    /// are still set, as the library does.
    fn set(&mut self, option: SockOpt, value: u32) {
        self.push(insn::store_u32_imm(FP, SLOT, as_imm(value)));
        self.sockopt(SETSOCKOPT, option);
    }

    /// Ends with `return 1` (sock_ops programs return 1 for success) and points every
    /// exit jump at it.
    fn finish(mut self) -> Vec<Insn> {
        let exit = self.insns.len();
        self.push(insn::mov_imm(R0, 1));
        self.push(insn::exit());
        for at in self.to_exit {
            // The program is a few dozen instructions, far within an i16 offset.
            let offset = i16::try_from(exit - at - 1).unwrap_or(i16::MAX);
            self.insns[at] = self.insns[at].with_offset(offset);
        }
        self.insns
    }
}

/// Every value the program handles is range-checked by keepalive-config (at most
/// `INT_MAX`) or read from the kernel as an `int`, so it fits an immediate.
fn as_imm(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The program for `config`, judging connections against `untouched`.
///
/// The rule is the library's: settings the program made win. Where the library sees a
/// socket at `socket()`, before the program touched it, the kernel sees it only once
/// it is established, so here every option is read first — `SO_KEEPALIVE` on, or any
/// timer or user timeout other than an untouched socket's, means the program (or its
/// listener, whose options an accepted connection inherits) configured it.
pub fn build(config: &Config, untouched: &Untouched) -> Vec<Insn> {
    let mut asm = Assembler {
        insns: Vec::new(),
        to_exit: Vec::new(),
    };
    // r6 = ctx (struct bpf_sock_ops *), kept across helper calls.
    asm.push(insn::mov(R6, R1));
    // r2 = ctx->op, at offset 0.
    asm.push(insn::load_u32(R2, R6, 0));
    asm.push(insn::jump_eq(R2, ACTIVE_ESTABLISHED, 1));
    asm.exit_if(insn::jump_ne(R2, PASSIVE_ESTABLISHED, 0));
    asm.exit_unless(KEEPALIVE, 0);
    asm.exit_unless(IDLE, untouched.idle);
    asm.exit_unless(INTERVAL, untouched.interval);
    asm.exit_unless(COUNT, untouched.count);
    asm.exit_unless(USER_TIMEOUT, 0);
    for setting in config.settings() {
        match setting {
            Setting::KeepAlive => asm.set(KEEPALIVE, 1),
            Setting::Idle(seconds) => asm.set(IDLE, seconds.get()),
            Setting::Interval(seconds) => asm.set(INTERVAL, seconds.get()),
            Setting::Count(probes) => asm.set(COUNT, probes.get()),
            Setting::UserTimeout(millis) => asm.set(USER_TIMEOUT, millis.get()),
        }
    }
    asm.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::{Mode, Seconds};

    const UNTOUCHED: Untouched = Untouched {
        idle: 7200,
        interval: 75,
        count: 9,
    };

    #[test]
    fn every_exit_jump_lands_on_the_return() {
        let config = Config {
            idle: Seconds::new(60),
            ..Config::DEFAULT
        };
        let insns = build(&config, &UNTOUCHED);
        let ret = insns.len() - 2;
        assert_eq!(insns[ret], insn::mov_imm(R0, 1));
        assert_eq!(insns[ret + 1], insn::exit());
        // Five reads of 7 + 2 + 1 instructions each, two sets of 1 + 7.
        assert_eq!(insns.len(), 4 + 5 * 10 + 2 * 8 + 2);
    }

    #[test]
    fn skip_mode_sets_only_the_timers() {
        let on = build(
            &Config {
                idle: Seconds::new(60),
                ..Config::DEFAULT
            },
            &UNTOUCHED,
        );
        let skip = build(
            &Config {
                mode: Mode::Skip,
                idle: Seconds::new(60),
                ..Config::DEFAULT
            },
            &UNTOUCHED,
        );
        assert_eq!(on.len() - skip.len(), 8);
    }
}
