//! The exported entry points. Each one resolves the real function, calls it with the
//! caller's arguments, classifies the new socket and applies the configuration, and
//! returns exactly what the real call returned, with its errno.

use core::ffi::c_int;

use libc::{sockaddr, socklen_t};

use crate::sys::{self, Next, SavedErrno};
use crate::{log, state, tcp};

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;

// SAFETY: each type is the prototype of the named function in <sys/socket.h>.
static SOCKET: Next<SocketFn> = unsafe { Next::new(c"socket") };
// SAFETY: as above.
static ACCEPT: Next<AcceptFn> = unsafe { Next::new(c"accept") };
// SAFETY: as above.
static ACCEPT4: Next<Accept4Fn> = unsafe { Next::new(c"accept4") };

/// Runs before `main`: resolves the real functions and reads the configuration, so
/// that bad values are reported at start-up and the entry points find everything ready.
pub fn preload() {
    let _ = real(&SOCKET);
    let _ = real(&ACCEPT);
    let _ = real(&ACCEPT4);
    let _ = state::config();
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
            configure(fd, "socket", |_| Some(family));
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
        configure(conn, "accept", tcp::accepted);
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
        configure(conn, "accept4", tcp::accepted);
    }
    conn
}

/// Applies the configuration to a new socket whose TCP family `family` tells, with the
/// host's errno put back afterwards. `family` runs only when there is something to set:
/// for accepted sockets it asks the kernel, two `getsockopt` calls.
fn configure(fd: c_int, call: &str, family: impl FnOnce(c_int) -> Option<tcp::Family>) {
    let _errno = SavedErrno::save();
    let config = state::config();
    if !config.is_active() {
        return;
    }
    if let Some(family) = family(fd) {
        tcp::apply(fd, family, call, &config);
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
