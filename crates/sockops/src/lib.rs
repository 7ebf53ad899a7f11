//! The kernel route of libkeepalive: BPF programs on a cgroup (v2) that give TCP
//! connections of every process in it the keepalive settings, for programs preloading
//! cannot reach — statically linked, set-user-ID, raw system calls.
//!
//! Two programs share one map ([`Route`]): a setsockopt program marks each socket on
//! which the program sets a keepalive option itself, and a sock_ops program gives an
//! established connection the settings for every option not marked.
//!
//! The programs are a few dozen instructions assembled here by hand, the way systemd
//! builds its own cgroup programs: nothing to compile at build time (no clang, no
//! nightly compiler, no `bpf-linker`), no object file to ship, and the settings are
//! immediates in the instructions. The kernel's verifier checks them when they load.
//!
//! Only the `keepalive` command uses this crate; the preloaded library has no BPF.

mod asm;
mod insn;
mod option;
mod route;
mod setsockopt;
mod sock_ops;
mod storage;
mod sys;

pub use insn::Insn;
pub use route::{Links, Pending, Route};
pub use sys::{
    Attached, Error, Hook, PROGRAM_NAME, Program, attached, attached_directly, detach_ours,
};

/// The programs' instructions, for tests that load them piece by piece.
pub mod build {
    pub use crate::setsockopt::build as setsockopt;
    pub use crate::sock_ops::build as sock_ops;
    pub use crate::storage::Marks;
}
