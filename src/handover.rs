//! Connections handed over at start-up: the program never calls `accept` for them.
//!
//! inetd, xinetd, systemd `Accept=yes` units and `systemd-socket-activate --accept`
//! accept the connection themselves and start the service with it: on the standard
//! descriptors (inetd style, `StandardInput=socket`), or from fd 3 with `LISTEN_FDS`
//! and `LISTEN_PID` (sd_listen_fds(3)). Options belong to the socket, so configuring
//! each once, when the library loads, is enough. Listening sockets there are left alone
//! (what they accept is handled by `accept`), and so is a connection someone configured,
//! by the rule accepted connections follow (`tcp::configured_elsewhere`): systemd's
//! `KeepAlive=` on the `.socket` unit, or a parent that set its own timers, keeps its
//! settings. The same rule configures a socket passed as fds 0, 1 and 2 once: after
//! fd 0, fds 1 and 2 are that socket, configured.

use core::ffi::c_int;

use crate::{sys, tcp};
use keepalive_config::{Config, decimal};

/// The most `LISTEN_FDS` descriptors looked at. systemd passes a handful; a larger
/// number is someone else's mistake, and each descriptor costs a system call.
const MAX_LISTEN_FDS: u32 = 4096;

/// Configures every TCP connection handed over: fds 0–2 (one failed `getsockopt`
/// each when they are terminals, pipes, files or closed), then the `LISTEN_FDS`
/// descriptors from fd 3 when `LISTEN_PID` is this process.
pub fn configure(config: &Config) {
    for fd in (0..3).chain(listen_fds()) {
        if tcp::is_tcp(fd) && !tcp::listening(fd) && !tcp::configured_elsewhere(fd, config.mode) {
            tcp::apply(fd, config);
        }
    }
}

/// The descriptors systemd passed this process: `LISTEN_FDS` of them from fd 3, when
/// `LISTEN_PID` names this process (a child that inherited the variables is not meant).
fn listen_fds() -> core::ops::Range<c_int> {
    const FIRST: c_int = 3;
    // systemd's descriptors always start at fd 3 (sd_listen_fds(3)). When fd 3 is not
    // a socket, one failed getsockopt answers for LISTEN_FDS: cheaper than looking
    // the variable up, which scans the whole environment, at every exec.
    if sys::int_option(FIRST, libc::SOL_SOCKET, libc::SO_DOMAIN).is_err() {
        return FIRST..FIRST;
    }
    // SAFETY: the values are parsed at once, before the constructor returns.
    let number = |name| unsafe { sys::env(name) }.and_then(decimal);
    // LISTEN_PID is read only when LISTEN_FDS is set: each lookup scans the whole
    // environment, at every exec.
    let count = number(c"LISTEN_FDS")
        .filter(|_| {
            number(c"LISTEN_PID").is_some_and(|pid| i64::from(pid) == i64::from(sys::getpid()))
        })
        .map_or(0, |n| n.min(MAX_LISTEN_FDS) as c_int);
    FIRST..FIRST + count
}
