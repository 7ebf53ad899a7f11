//! The exported entry points. Each one resolves the real function, calls it with the
//! caller's arguments, classifies the new socket and applies the configuration, and
//! returns exactly what the real call returned, with its errno.
//!
//! Whose settings win: the program's, always. A socket our `socket()` creates is
//! configured before the program sees it, so whatever the program sets afterwards
//! stays. A connection accepted on a listener someone configured inherits that
//! listener's settings and is not touched (see [`accepted`]).

use core::ffi::c_int;

use libc::{sockaddr, socklen_t};

use crate::sys::{self, Next, SavedErrno};
use crate::{handover, listeners, log, state, stderr, tcp};

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
    stderr::record();
    let _ = real(&SOCKET);
    let _ = real(&ACCEPT);
    let _ = real(&ACCEPT4);
    let config = state::config();
    if config.is_active() {
        let _errno = SavedErrno::save();
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
        created(fd, tcp::requested(domain, ty, protocol));
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
        accepted(fd, conn, "accept()");
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
        accepted(fd, conn, "accept4()");
    }
    conn
}

/// Configures a socket our `socket()` just created, if it is TCP, and marks its
/// number as one whose accepted connections are left to what they inherit.
fn created(fd: c_int, family: Option<tcp::Family>) {
    let config = state::config();
    if !config.is_active() {
        return;
    }
    match family {
        Some(family) => {
            let _errno = SavedErrno::save();
            tcp::apply(fd, family, "socket()", &config);
            listeners::mark(fd);
        }
        None => listeners::forget(fd),
    }
}

/// Configures a connection accepted on `listener`, unless its listener was configured
/// already: then the connection inherited those settings from the kernel, and they
/// stay exactly as the listener's owner left them. A listener our `socket()` made was
/// configured (by us, then perhaps by the program): no call at all. Any other listener
/// (inherited, `LISTEN_FDS`, passed with `SCM_RIGHTS`) counts as configured when the
/// connection came with `SO_KEEPALIVE` on.
fn accepted(listener: c_int, conn: c_int, call: &str) {
    let config = state::config();
    if !config.is_active() {
        return;
    }
    listeners::forget(conn);
    if listeners::made_here(listener) {
        return;
    }
    let _errno = SavedErrno::save();
    if let Some(family) = tcp::of(conn) {
        if !tcp::configured_elsewhere(conn) {
            tcp::apply(conn, family, call, &config);
        }
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
