//! libkeepalive: an `LD_PRELOAD` shim that turns on TCP keepalive for programs that
//! cannot be changed.
//!
//! The crate builds one artifact, `libkeepalive.so`, a C-ABI shared object that
//! exports `socket`, `accept` and `accept4`. The tree follows the path of a call:
//!
//! - [`ffi`]: the exported entry points: resolve the real function, call it,
//!   classify the new socket, apply the configuration.
//! - [`tcp`]: which sockets are TCP, whether someone else configured one, and the
//!   `setsockopt` calls for one.
//! - [`handover`]: connections handed over at start-up (inetd, `LISTEN_FDS`).
//! - [`state`]: the process-wide configuration, read from the environment once.
//! - `keepalive_config` (crates/config): the pure parser and the validated
//!   configuration it produces, shared with the `keepalive` command.
//! - [`report`]: the one line per refused value, at load, and where it may go.
//! - [`sys`]: the thin `unsafe` layer: three libc functions, the rest direct system
//!   calls.
//!
//! It is `no_std`: it has no Rust runtime to start, no allocator and no unwinding,
//! so loading it costs what loading a small C library costs.

#![cfg_attr(not(test), no_std)]
// Unit tests cover the pure parts; the entry points, and what only they use, are
// tested from outside by tests/ with the built library preloaded into real processes.
#![cfg_attr(test, allow(dead_code))]

#[cfg(not(test))]
mod ffi;
mod handover;
mod report;
mod state;
mod sys;
mod tcp;

/// Runs [`ffi::preload`] when the loader maps the library, before `main`.
#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = {
    extern "C" fn constructor() {
        ffi::preload();
    }
    constructor
};

/// Debug builds link the precompiled `core`, whose unwind tables name this personality
/// routine even with `panic = "abort"`; optimised release builds drop those tables.
/// With `-z defs` (build.rs) the debug library would not link without a definition.
/// It is never called: nothing here unwinds.
#[cfg(all(not(test), debug_assertions))]
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// The shim must never panic inside a host process. In release builds this handler
/// calls a symbol that exists nowhere, and the link uses `-z defs` (see build.rs): if
/// any panic path survives optimisation, the release build fails to link. Debug
/// builds, which are never shipped, abort.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    #[cfg(not(debug_assertions))]
    {
        unsafe extern "C" {
            fn libkeepalive_release_build_contains_a_panic_path() -> !;
        }
        // SAFETY: never runs: the symbol is undefined, so a build that could reach it
        // does not link.
        unsafe { libkeepalive_release_build_contains_a_panic_path() }
    }
    #[cfg(debug_assertions)]
    // SAFETY: abort(3) has no preconditions.
    unsafe {
        libc::abort()
    }
}
