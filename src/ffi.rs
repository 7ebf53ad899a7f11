//! The exported entry points. Each one resolves the real function, calls it with the
//! caller's arguments, classifies the new socket and applies the configuration, and
//! returns exactly what the real call returned, with its errno.
//!
//! errno: after the real call the entry points make only direct system calls
//! (`sys`), which never touch it; the constructor, which also calls `dlsym` and
//! `secure_getenv`, keeps it from its first line to its last ([`SavedErrno`]).
//!
//! Whose settings win: the program's, always. A socket our `socket()` creates is
//! configured before the program sees it, so whatever the program sets afterwards
//! stays. Any other socket — an accepted connection, however its listener reached the
//! program — is configured only when nobody configured it before
//! ([`tcp::configured_elsewhere`]).

use core::ffi::c_int;

use libc::{sockaddr, socklen_t};

use crate::report::Channel;
use crate::sys::{self, Next, SavedErrno};
use crate::{handover, state, tcp};

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;

// SAFETY: each type is the prototype of the named function in <sys/socket.h>.
static SOCKET: Next<SocketFn> = unsafe { Next::new(c"socket") };
// SAFETY: as above.
static ACCEPT: Next<AcceptFn> = unsafe { Next::new(c"accept") };
// SAFETY: as above.
static ACCEPT4: Next<Accept4Fn> = unsafe { Next::new(c"accept4") };

/// Runs before `main`: resolves the real functions, reads the configuration and
/// reports what it refused (the only moment the library ever speaks), and configures
/// connections handed over at start-up.
pub fn preload() {
    let _errno = SavedErrno::save();
    let missing = [
        SOCKET.get().is_none().then(|| SOCKET.name()),
        ACCEPT.get().is_none().then(|| ACCEPT.name()),
        ACCEPT4.get().is_none().then(|| ACCEPT4.name()),
    ];
    let config = state::load();
    if missing.iter().any(Option::is_some) {
        if let Some(channel) = Channel::stderr() {
            missing
                .into_iter()
                .flatten()
                .for_each(|name| channel.unresolved(name));
        }
    }
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
    let Some(real) = SOCKET.get() else {
        return enosys();
    };
    // SAFETY: the caller's arguments, unchanged, to the function the caller meant.
    let fd = unsafe { real(domain, ty, protocol) };
    if fd >= 0 && tcp::requested(domain, ty, protocol) {
        tcp::apply(fd, &state::config());
    }
    fd
}

/// accept(2), with keepalive on every accepted TCP connection.
///
/// # Safety
/// The contract of accept(2); the arguments are passed through unchanged.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let Some(real) = ACCEPT.get() else {
        return enosys();
    };
    // SAFETY: the caller's arguments, unchanged, to the function the caller meant.
    let conn = unsafe { real(fd, addr, len) };
    if conn >= 0 {
        accepted(conn);
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
    let Some(real) = ACCEPT4.get() else {
        return enosys();
    };
    // SAFETY: the caller's arguments, unchanged, to the function the caller meant.
    let conn = unsafe { real(fd, addr, len, flags) };
    if conn >= 0 {
        accepted(conn);
    }
    conn
}

/// Configures an accepted connection unless someone configured it already: it
/// inherited every keepalive option of its listener from the kernel, so a listener the
/// program, systemd or this library configured — whichever way it reached the program
/// (made here, inherited, `LISTEN_FDS`, `SCM_RIGHTS`, dup2 onto any number) — shows in
/// the connection itself. The check comes before the classification because it is the
/// common case and answers in one call; on a socket that is not TCP its TCP questions
/// fail, and such a socket counts as configured.
fn accepted(conn: c_int) {
    let config = state::config();
    if config.is_active() && !tcp::configured_elsewhere(conn, config.mode) && tcp::is_tcp(conn) {
        tcp::apply(conn, &config);
    }
}

fn enosys() -> c_int {
    sys::set_errno(libc::ENOSYS);
    -1
}
