//! The setsockopt(2) calls on a duplicate of a program's socket, which act on the very
//! socket the program holds.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use keepalive_config::{Config, Setting};

use crate::options::Options;

pub fn apply(socket: &OwnedFd, config: &Config) -> io::Result<()> {
    for setting in config.settings() {
        let (level, option, value) = match setting {
            Setting::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
            Setting::Idle(s) => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, s.get()),
            Setting::Interval(s) => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, s.get()),
            Setting::Count(n) => (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, n.get()),
            Setting::UserTimeout(ms) => (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms.get()),
        };
        set(socket, level, option, value)?;
    }
    Ok(())
}

/// Sets back to `before` each option `attach` changed (where `after` differs), the
/// options that restart the keepalive timer last, as in [`Config::settings`]. A timer
/// put back is set to its old value explicitly, and stays there: tcp(7) offers no way
/// back to "follow the sysctl" (TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT take
/// nothing below 1), so the options attach did not change are not touched.
pub fn restore(socket: &OwnedFd, before: &Options, after: &Options) -> io::Result<()> {
    let options = [
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            before.interval,
            after.interval,
        ),
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPCNT,
            before.count,
            after.count,
        ),
        (
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            before.user_timeout,
            after.user_timeout,
        ),
        (
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            u32::from(before.keepalive),
            u32::from(after.keepalive),
        ),
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPIDLE,
            before.idle,
            after.idle,
        ),
    ];
    options
        .into_iter()
        .filter(|(_, _, before, after)| before != after)
        .try_for_each(|(level, option, value, _)| set(socket, level, option, value))
}

/// `setsockopt(2)` of an int-valued option.
pub fn set(socket: &OwnedFd, level: i32, option: i32, value: u32) -> io::Result<()> {
    let value = value as libc::c_int;
    // SAFETY: setsockopt(2) reads one c_int, a live local, of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
