//! Where the library's lines go, and the rules that keep them harmless: a line is
//! written only to the stderr the process started with, never waits, never raises
//! SIGPIPE, and is never a cancellation point. A line that cannot go out now is dropped.
//!
//! "The stderr the process started with" is the file fd 2 referred to when the library
//! first looked, at load (device and inode, fstat(2)). A daemon that closes stderr and
//! reopens fd 2 as its data file, a pipe, an `AF_UNIX` work channel or an accepted
//! connection gets nothing spliced into its data. Not even this closes every gap: fd 2
//! can be replaced by another thread between the check and the write, an instant no
//! library can close without taking a lock around the program's own `dup2`.

use core::ffi::c_int;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::sys::{self, FileId};

const STDERR: c_int = libc::STDERR_FILENO;

const UNKNOWN: u8 = 0;
const RECORDING: u8 = 1;
const RECORDED: u8 = 2;
/// fd 2 was closed, or not a file fstat could name, when first looked at.
const NONE: u8 = 3;

/// fd 2's identity at load. Hand-written rather than a `once_cell::race` cell: the
/// identity is two 64-bit words and `race` holds at most one without allocating.
/// Whoever claims `STATE` records it; anyone arriving meanwhile drops their line.
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);

/// Records what fd 2 is now, unless that was done already. The constructor calls it,
/// and so does the first line, should another library's constructor make the library
/// write before its own constructor has run.
pub fn record() {
    if STATE
        .compare_exchange(UNKNOWN, RECORDING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let state = match sys::file_id(STDERR) {
        Some(id) if is_the_connection(id) => NONE,
        Some(id) => {
            DEV.store(id.dev, Ordering::Relaxed);
            INO.store(id.ino, Ordering::Relaxed);
            RECORDED
        }
        None => NONE,
    };
    STATE.store(state, Ordering::Release);
}

/// Whether fd 2, whose identity is `id`, is the connection a per-connection service
/// was started with: a socket that is fd 0 too. inetd and systemd's `Accept=yes` with
/// `StandardInput=socket` put the connection on fds 0, 1 and 2 alike, and on an
/// `AF_UNIX` listener it passes the socket check that refuses inet sockets; a line
/// written there is the program's peer reading the library's words. journald's stream
/// never is fd 0 (systemd gives stdin /dev/null unless asked otherwise), and a terminal
/// that is both is no socket.
///
/// Asked only of a socket, so that the usual stderr (a terminal, pipe or file) costs
/// no system call more at load.
fn is_the_connection(id: FileId) -> bool {
    id.socket && sys::file_id(libc::STDIN_FILENO) == Some(id)
}

/// Whether fd 2 still refers to the file recorded at load.
fn unchanged() -> bool {
    record();
    STATE.load(Ordering::Acquire) == RECORDED
        && sys::file_id(STDERR).is_some_and(|now| {
            (now.dev, now.ino) == (DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed))
        })
}

/// Writes one line to fd 2 if it is still the process's stderr and can take the line
/// now; otherwise drops it. `errno` is the caller's business (see `SavedErrno`).
pub fn write(line: &[u8]) {
    if !unchanged() {
        return;
    }
    match sys::int_option(STDERR, libc::SOL_SOCKET, libc::SO_DOMAIN) {
        // journald's stream socket: MSG_DONTWAIT and MSG_NOSIGNAL do it all.
        Ok(libc::AF_UNIX) => {
            let _ = sys::send_now(STDERR, line);
        }
        // A terminal, pipe or file.
        Err(libc::ENOTSOCK) => sys::without_sigpipe(|| write_file(line)),
        // Any other socket carries data, and any other error (EPERM or EACCES from a
        // seccomp filter or an LSM) proves nothing: refuse.
        _ => {}
    }
}

/// A non-blocking write to a terminal, pipe or file, without touching the shared file
/// description's `O_NONBLOCK`, which belongs to the program and every process sharing
/// it. pwritev2(2) with `RWF_NOWAIT` does it for pipes; where the file type has no
/// such write (terminals, most file systems' regular files, old kernels), poll(2) with a zero
/// timeout asks first. A line is at most a few hundred bytes, well under `PIPE_BUF`.
/// The ask and the write are two calls: another thread that fills the pipe or the
/// terminal in between makes this write wait, a second instant, beside the one on fd
/// 2's identity, that only a lock around the program's own writes could close.
fn write_file(line: &[u8]) {
    // EINVAL and ENOSYS: kernels before 4.14 and 4.6, without RWF_NOWAIT or pwritev2.
    if let Err(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) = sys::write_now(STDERR, line) {
        if sys::writable_now(STDERR) {
            let _ = sys::write(STDERR, line);
        }
    }
}
