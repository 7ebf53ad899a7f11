//! Which sockets are TCP, and how the configuration is applied to one.

use core::ffi::c_int;

use crate::log::Line;
use crate::{defaults, sys};
use keepalive_config::{Config, Mode, Setting};

/// The address family of a TCP socket. IPv6 sockets matter as much as IPv4: Java and
/// many servers use dual-stack `AF_INET6` sockets even for IPv4 peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    fn from_domain(domain: c_int) -> Option<Family> {
        match domain {
            libc::AF_INET => Some(Family::Inet),
            libc::AF_INET6 => Some(Family::Inet6),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Inet => "AF_INET",
            Family::Inet6 => "AF_INET6",
        }
    }
}

/// The family of the socket `socket(domain, ty, protocol)` creates, if it is TCP.
///
/// Since Linux 2.6.27 the type argument may carry `SOCK_NONBLOCK` and `SOCK_CLOEXEC`
/// (socket(2)); protocol 0 means TCP for an inet stream socket. MPTCP (262) and SCTP
/// (132) streams are different protocols and are left alone.
pub fn requested(domain: c_int, ty: c_int, protocol: c_int) -> Option<Family> {
    let family = Family::from_domain(domain)?;
    let ty = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let tcp = ty == libc::SOCK_STREAM && (protocol == 0 || protocol == libc::IPPROTO_TCP);
    tcp.then_some(family)
}

/// The family of a socket the library did not create, if it is TCP, asked of the
/// kernel: an accepted connection whose listener was inherited or handed over by
/// systemd (`LISTEN_FDS`), or a connection handed over at start-up. On anything that
/// is not a socket, the first call fails with ENOTSOCK and nothing else happens. `SO_DOMAIN` and `SO_PROTOCOL` exist since Linux 2.6.32.
pub fn of(fd: c_int) -> Option<Family> {
    let domain = sys::int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok()?;
    let family = Family::from_domain(domain)?;
    let protocol = sys::int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).ok()?;
    (protocol == libc::IPPROTO_TCP).then_some(family)
}

/// Whether someone other than the library configured keepalive on `fd`: the one rule
/// for every socket the library did not create — an accepted connection (which
/// inherited its listener's options from the kernel, `inet_csk_clone_lock`), a
/// connection handed over on fds 0–2 or in `LISTEN_FDS`. Such a socket is never
/// changed: its settings belong to the program, to whoever passed it, or to systemd's
/// `KeepAlive=`.
///
/// Configured means keepalive on, or a user timeout set, or a keepalive timer that
/// differs from what an untouched socket has in this network namespace
/// ([`defaults`]). Under `KEEPALIVE=skip` keepalive on does not count: that mode is
/// for programs that turn keepalive on themselves with the kernel's timers, and
/// leaves `SO_KEEPALIVE` alone while it sets the timers. An option that cannot be read
/// proves nothing either way, and the socket is left alone. Two things cannot be seen:
/// keepalive turned off explicitly (off is the default) and a timer set to exactly its
/// default; both look untouched.
///
/// The common case costs one call: a connection accepted on a listener this library
/// configured comes with keepalive on.
pub fn configured_elsewhere(fd: c_int, mode: Mode) -> bool {
    let tcp = |option| sys::int_option(fd, libc::IPPROTO_TCP, option).ok();
    let keepalive_on = || sys::int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE) != Ok(0);
    if (mode != Mode::Skip && keepalive_on()) || tcp(libc::TCP_USER_TIMEOUT) != Some(0) {
        return true;
    }
    let untouched = defaults::timers();
    tcp(libc::TCP_KEEPIDLE) != Some(untouched.idle as c_int)
        || tcp(libc::TCP_KEEPINTVL) != Some(untouched.interval as c_int)
        || tcp(libc::TCP_KEEPCNT) != Some(untouched.count as c_int)
}

/// Whether `fd` is a listening socket (`SO_ACCEPTCONN`, socket(7)).
pub fn listening(fd: c_int) -> bool {
    sys::int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).is_ok_and(|on| on != 0)
}

/// Sets every option the configuration asks for on `fd`. A failure is not the host's
/// business: it never reaches its errno, and is reported only with `KEEPALIVE_DEBUG=1`.
///
/// `source` names where the socket came from in that report: `socket()`, `accept4()`,
/// or `inherited` for one handed over at start-up.
pub fn apply(fd: c_int, family: Family, source: &str, config: &Config) {
    if !config.debug {
        for setting in config.settings() {
            let _ = set(fd, setting);
        }
        return;
    }
    Line::emit(|line| {
        line.text(source)
            .text(" fd ")
            .number(fd.unsigned_abs())
            .text(" ")
            .text(family.name())
            .text(":");
        for setting in config.settings() {
            let (name, value, result) = set(fd, setting);
            line.text(" ").text(name).text("=").number(value);
            if let Err(errno) = result {
                line.text(" (failed: ").errno(errno).text(")");
            }
        }
    });
}

/// Sets one option; returns its name, value and outcome for the debug report.
fn set(fd: c_int, setting: Setting) -> (&'static str, u32, Result<(), c_int>) {
    let (name, level, option, value) = socket_option(setting);
    // Every value was range-checked when parsed, so none exceeds INT_MAX.
    (
        name,
        value,
        sys::set_int_option(fd, level, option, value as c_int),
    )
}

/// The `setsockopt` arguments for one setting: its name, level, option and value.
fn socket_option(setting: Setting) -> (&'static str, c_int, c_int, u32) {
    match setting {
        Setting::KeepAlive => ("SO_KEEPALIVE", libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        Setting::Idle(s) => (
            "TCP_KEEPIDLE",
            libc::IPPROTO_TCP,
            libc::TCP_KEEPIDLE,
            s.get(),
        ),
        Setting::Interval(s) => (
            "TCP_KEEPINTVL",
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            s.get(),
        ),
        Setting::Count(n) => ("TCP_KEEPCNT", libc::IPPROTO_TCP, libc::TCP_KEEPCNT, n.get()),
        Setting::UserTimeout(ms) => (
            "TCP_USER_TIMEOUT",
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            ms.get(),
        ),
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
        for (domain, family) in [(AF_INET, Family::Inet), (AF_INET6, Family::Inet6)] {
            for flags in [0, SOCK_NONBLOCK, SOCK_CLOEXEC, SOCK_NONBLOCK | SOCK_CLOEXEC] {
                for protocol in [0, IPPROTO_TCP] {
                    assert_eq!(
                        requested(domain, SOCK_STREAM | flags, protocol),
                        Some(family),
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
            assert_eq!(
                requested(domain, ty, protocol),
                None,
                "{domain} {ty} {protocol}"
            );
        }
    }
}
