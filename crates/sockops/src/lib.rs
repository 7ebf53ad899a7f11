//! The kernel route of libkeepalive: a `BPF_PROG_TYPE_SOCK_OPS` program that gives TCP
//! connections of every process in a cgroup (v2) the keepalive settings, for programs
//! preloading cannot reach — statically linked, set-user-ID, raw system calls.
//!
//! The program is a few dozen instructions assembled here by hand, the way systemd
//! builds its own cgroup programs: nothing to compile at build time (no clang, no
//! nightly compiler, no `bpf-linker`), no object file or BTF to ship, and the settings
//! are immediates in the instructions. The kernel's verifier checks it when it loads.
//!
//! Only the `keepalive` command uses this crate; the preloaded library has no BPF.

mod insn;
mod program;
mod sys;

pub use insn::Insn;
pub use program::{Untouched, build};
pub use sys::{
    Attached, Error, Link, PROGRAM_NAME, Program, attached, attached_directly, detach, untouched,
};
