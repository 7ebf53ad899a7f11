//! The SIGPIPE disposition this process inherited, for `run` to hand on.
//!
//! Rust's runtime sets SIGPIPE to ignored before `main`, and `Command::exec` resets it
//! to the default for the new program: either way the disposition COMMAND would have
//! had is lost. It matters: systemd starts services with SIGPIPE ignored
//! (`IgnoreSIGPIPE=`, on by default), and a server that relies on that gets `EPIPE`
//! from a write to a closed connection instead of being killed. So the disposition is
//! read in an `.init_array` constructor, which the C runtime runs before `main`.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

static IGNORED: AtomicBool = AtomicBool::new(false);

extern "C" fn record() {
    // SAFETY: sigaction(2) with a null new action only reads the current one into
    // `old`, a zeroed sigaction that lives for the call.
    let ignored = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    };
    IGNORED.store(ignored, Ordering::Relaxed);
}

// SAFETY: a function pointer in .init_array is called once by the C runtime before
// main, with no arguments, as `record` expects; it touches nothing Rust has set up.
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD: extern "C" fn() = record;

/// Whether SIGPIPE was ignored when this process started.
pub fn sigpipe_was_ignored() -> bool {
    IGNORED.load(Ordering::Relaxed)
}

/// Makes `command` start with SIGPIPE ignored when this process started so.
pub fn hand_on(command: &mut Command) {
    if sigpipe_was_ignored() {
        // SAFETY: the hook runs in the new process just before execve(2), after std
        // reset SIGPIPE; signal(2) is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                Ok(())
            });
        }
    }
}
