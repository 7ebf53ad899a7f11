//! The exported entry points. Each one resolves the real function, calls it with the
//! caller's arguments, classifies the new socket and applies the configuration, and
//! returns exactly what the real call returned, with its errno.
//!
//! errno has one rule: every path that runs library code — the constructor and each
//! entry point after its real call — holds a [`SavedErrno`] from its first line to its
//! last, so nothing below it (the first reading of the configuration, a warning, a
//! failed `setsockopt`) can reach the program's errno.
//!
//! Whose settings win: the program's, always. A socket our `socket()` creates is
//! configured before the program sees it, so whatever the program sets afterwards
//! stays. Any other socket — an accepted connection, however its listener reached the
//! program — is configured only when nobody configured it before
//! ([`tcp::configured_elsewhere`]).

use core::ffi::c_int;

use libc::{sockaddr, socklen_t};

use crate::sys::{self, Next, SavedErrno};
use crate::{handover, log, state, stderr, tcp};

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;

// SAFETY: each type is the prototype of the named function in <sys/socket.h>.
static SOCKET: Next<SocketFn> = unsafe { Next::new(c"socket") };
// SAFETY: as above.
static ACCEPT: Next<AcceptFn> = unsafe { Next::new(c"accept") };
// SAFETY: as above.
static ACCEPT4: Next<Accept4Fn> = unsafe { Next::new(c"accept4") };

/// Runs before `main`: notes what fd 2 is, resolves the real functions, reads the
/// configuration (so that bad values are reported at start-up and the entry points
/// find everything ready), and configures connections handed over at start-up.
pub fn preload() {
    let _errno = SavedErrno::save();
    stderr::record();
    let _ = real(&SOCKET);
    let _ = real(&ACCEPT);
    let _ = real(&ACCEPT4);
    let config = state::config();
    if config.is_active() {
        handover::configure(&config);
    }
}

/// socket(2), with keepalive on every new TCP socket.
///
/// # Safety
/// The contract of socket(2); the arguments are passed through unchanged.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let Some(real) = real(&SOCKET) else {
        return enosys();
    };
    // SAFETY: the caller's arguments, unchanged, to the function the caller meant.
    let fd = unsafe { real(domain, ty, protocol) };
    if fd >= 0 {
        if let Some(family) = tcp::requested(domain, ty, protocol) {
            created(fd, family);
        }
    }
    fd
}

/// accept(2), with keepalive on every accepted TCP connection.
///
/// # Safety
/// The contract of accept(2); the arguments are passed through unchanged.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let Some(real) = real(&ACCEPT) else {
        return enosys();
    };
    // SAFETY: the caller's arguments, unchanged, to the function the caller meant.
    let conn = unsafe { real(fd, addr, len) };
    if conn >= 0 {
        accepted(conn, "accept()");
    }
    conn
}

/// accept4(2), with keepalive on every accepted TCP connection.
///
/// # Safety
/// The contract of accept4(2); the arguments are passed through unchanged.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let Some(real) = real(&ACCEPT4) else {
        return enosys();
    };
    // SAFETY: the caller's arguments, unchanged, to the function the caller meant.
    let conn = unsafe { real(fd, addr, len, flags) };
    if conn >= 0 {
        accepted(conn, "accept4()");
    }
    conn
}

/// Configures a TCP socket our `socket()` just created: nobody else has touched it.
fn created(fd: c_int, family: tcp::Family) {
    let _errno = SavedErrno::save();
    let config = state::config();
    if config.is_active() {
        tcp::apply(fd, family, "socket()", &config);
    }
}

/// Configures an accepted connection unless someone configured it already: it
/// inherited every keepalive option of its listener from the kernel, so a listener the
/// program, systemd or this library configured — whichever way it reached the program
/// (made here, inherited, `LISTEN_FDS`, `SCM_RIGHTS`, dup2 onto any number) — shows in
/// the connection itself. The check comes before the classification because it is the
/// common case and answers in one call; on a socket that is not TCP its TCP questions
/// fail, and such a socket counts as configured.
fn accepted(conn: c_int, call: &str) {
    let _errno = SavedErrno::save();
    let config = state::config();
    if !config.is_active() || tcp::configured_elsewhere(conn, config.mode) {
        return;
    }
    if let Some(family) = tcp::of(conn) {
        tcp::apply(conn, family, call, &config);
    }
}

fn real<F: Copy>(next: &Next<F>) -> Option<F> {
    match next.get() {
        Ok(function) => Some(function),
        Err(missing) => {
            if missing.first {
                log::unresolved(missing.name);
            }
            None
        }
    }
}

fn enosys() -> c_int {
    sys::set_errno(libc::ENOSYS);
    -1
}
