//! Which sockets are TCP, whether someone else configured one, and how the
//! configuration is applied.

use core::ffi::c_int;

use crate::sys;
use keepalive_config::{Config, Mode, Setting};

/// Whether `socket(domain, ty, protocol)` creates a TCP socket. IPv6 matters as much
/// as IPv4: Java and many servers use dual-stack `AF_INET6` sockets even for IPv4
/// peers.
///
/// Since Linux 2.6.27 the type argument may carry `SOCK_NONBLOCK` and `SOCK_CLOEXEC`
/// (socket(2)); protocol 0 means TCP for an inet stream socket. MPTCP (262) and SCTP
/// (132) streams are different protocols and are left alone.
pub fn requested(domain: c_int, ty: c_int, protocol: c_int) -> bool {
    let inet = domain == libc::AF_INET || domain == libc::AF_INET6;
    let ty = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    inet && ty == libc::SOCK_STREAM && (protocol == 0 || protocol == libc::IPPROTO_TCP)
}

/// Whether a socket the library did not create is TCP, asked of the kernel: an
/// accepted connection, or one handed over at start-up. On anything that is not a
/// socket the first call fails with ENOTSOCK and nothing else happens. `SO_DOMAIN` and
/// `SO_PROTOCOL` exist since Linux 2.6.32.
pub fn is_tcp(fd: c_int) -> bool {
    let domain = sys::int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN);
    matches!(domain, Ok(libc::AF_INET | libc::AF_INET6))
        && sys::int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Ok(libc::IPPROTO_TCP)
}

/// Whether someone other than the library configured keepalive on `fd`: the one rule
/// for every socket the library did not create — an accepted connection (which
/// inherited its listener's options from the kernel, `inet_csk_clone_lock`), a
/// connection handed over on fds 0–2 or in `LISTEN_FDS`. Such a socket is never
/// changed: its settings belong to the program, to whoever passed it, or to systemd's
/// `KeepAlive=`.
///
/// Configured means keepalive on or a user timeout set: what the socket itself says,
/// asked of it alone. Under `KEEPALIVE=skip` keepalive on does not count: that mode is
/// for programs that turn keepalive on themselves with the kernel's timers. An option
/// that cannot be read proves nothing, and the socket is left alone.
///
/// The keepalive timers are not asked. An untouched timer reads as its network
/// namespace's `net.ipv4.tcp_keepalive_*` sysctl *now* (tcp(7); `keepalive_time_when`
/// in include/net/tcp.h), so telling a timer someone set from a default would take a
/// file read inside the program's `accept()` and a remembered value that goes stale
/// across `setns` and sysctl changes; both did harm. What stays blind is documented in
/// docs/sockets.md: a socket with keepalive off and no user timeout looks untouched,
/// whatever its timers.
///
/// The common case costs one call: a connection accepted on a listener this library
/// configured comes with keepalive on.
pub fn configured_elsewhere(fd: c_int, mode: Mode) -> bool {
    let option = |level, option| sys::int_option(fd, level, option);
    (mode != Mode::Skip && option(libc::SOL_SOCKET, libc::SO_KEEPALIVE) != Ok(0))
        || option(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) != Ok(0)
}

/// Whether `fd` is a listening socket (`SO_ACCEPTCONN`, socket(7)).
pub fn listening(fd: c_int) -> bool {
    sys::int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).is_ok_and(|on| on != 0)
}

/// Sets every option the configuration asks for on `fd`. A failure is not the
/// program's business, and nothing reports it: `keepalive status PID` shows what each
/// socket carries.
pub fn apply(fd: c_int, config: &Config) {
    for setting in config.settings() {
        let (level, option, value) = socket_option(setting);
        // Every value was range-checked when parsed, so none exceeds INT_MAX.
        let _ = sys::set_int_option(fd, level, option, value as c_int);
    }
}

/// The `setsockopt` arguments for one setting: its level, option and value.
fn socket_option(setting: Setting) -> (c_int, c_int, u32) {
    match setting {
        Setting::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        Setting::Idle(s) => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, s.get()),
        Setting::Interval(s) => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, s.get()),
        Setting::Count(n) => (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, n.get()),
        Setting::UserTimeout(ms) => (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{
        AF_INET, AF_INET6, AF_NETLINK, AF_UNIX, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
        SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW, SOCK_SEQPACKET, SOCK_STREAM,
    };

    #[test]
    fn tcp_in_both_families_with_any_flags() {
        for domain in [AF_INET, AF_INET6] {
            for flags in [0, SOCK_NONBLOCK, SOCK_CLOEXEC, SOCK_NONBLOCK | SOCK_CLOEXEC] {
                for protocol in [0, IPPROTO_TCP] {
                    assert!(
                        requested(domain, SOCK_STREAM | flags, protocol),
                        "{domain} {flags:#x} {protocol}"
                    );
                }
            }
        }
    }

    #[test]
    fn everything_else_is_left_alone() {
        const IPPROTO_MPTCP: i32 = 262;
        for (domain, ty, protocol) in [
            (AF_INET, SOCK_DGRAM, 0),
            (AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP),
            (AF_INET, SOCK_RAW, IPPROTO_TCP),
            (AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP),
            (AF_INET, SOCK_STREAM, IPPROTO_SCTP),
            (AF_INET6, SOCK_STREAM, IPPROTO_MPTCP),
            (AF_UNIX, SOCK_STREAM, 0),
            (AF_NETLINK, SOCK_RAW, 0),
        ] {
            assert!(!requested(domain, ty, protocol), "{domain} {ty} {protocol}");
        }
    }
}
