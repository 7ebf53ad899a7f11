//! The keepalive options in force on a socket, read with getsockopt(2): the kernel's
//! own values, not a guess from variables. `status` reads them from a process's
//! sockets, `enable --kernel` from the connection that proves a unit's settings.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use keepalive_config::{Config, Mode, Setting};

use crate::netns::Untouched;

/// What getsockopt(2) reads back. Unset timers read as the namespace's sysctl defaults
/// (tcp(7)), so these are the values in force either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// SO_KEEPALIVE.
    pub keepalive: bool,
    /// TCP_KEEPIDLE, seconds.
    pub idle: u32,
    /// TCP_KEEPINTVL, seconds.
    pub interval: u32,
    /// TCP_KEEPCNT, probes.
    pub count: u32,
    /// TCP_USER_TIMEOUT, milliseconds; 0 leaves it to the retransmission limits.
    pub user_timeout: u32,
}

impl Options {
    pub fn read(socket: BorrowedFd<'_>) -> io::Result<Options> {
        Ok(Options {
            keepalive: int_option(socket, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? != 0,
            idle: int_option(socket, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?,
            interval: int_option(socket, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)?,
            count: int_option(socket, libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?,
            user_timeout: int_option(socket, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?,
        })
    }

    /// These options with every one `config` sets replaced by its value: what a
    /// connection nobody else configured carries once `config` is applied.
    pub fn configured_by(mut self, config: &Config) -> Options {
        for setting in config.settings() {
            match setting {
                Setting::KeepAlive => self.keepalive = true,
                Setting::Idle(seconds) => self.idle = seconds.get(),
                Setting::Interval(seconds) => self.interval = seconds.get(),
                Setting::Count(probes) => self.count = probes.get(),
                Setting::UserTimeout(millis) => self.user_timeout = millis.get(),
            }
        }
        self
    }

    /// Whether these options still carry what a change from `before` to `after` set:
    /// every option it changed holds its `after` value. The others are not compared:
    /// an untouched timer follows its sysctl, which an administrator may change.
    pub fn carries(&self, before: &Options, after: &Options) -> bool {
        let fields = |o: &Options| {
            [
                u32::from(o.keepalive),
                o.idle,
                o.interval,
                o.count,
                o.user_timeout,
            ]
        };
        let (now, before, after) = (fields(self), fields(before), fields(after));
        (0..5).all(|i| before[i] == after[i] || now[i] == after[i])
    }

    /// The library's rule (src/tcp.rs, docs/sockets.md), on options read back: why the
    /// socket counts as configured by someone, if it does — keepalive on (unless
    /// `mode` is skip), a user timeout, or a timer that differs from what an untouched
    /// socket of its network namespace reports now.
    pub fn configured_elsewhere(&self, mode: Mode, untouched: &Untouched) -> Option<String> {
        if mode != Mode::Skip && self.keepalive {
            return Some("keepalive is on already".into());
        }
        if self.user_timeout != 0 {
            return Some(format!(
                "TCP_USER_TIMEOUT is set ({} ms)",
                self.user_timeout
            ));
        }
        [
            ("TCP_KEEPIDLE", self.idle, untouched.idle),
            ("TCP_KEEPINTVL", self.interval, untouched.interval),
            ("TCP_KEEPCNT", self.count, untouched.count),
        ]
        .into_iter()
        .find(|(_, value, default)| value != default)
        .map(|(name, value, default)| {
            format!("{name} is {value}, not the namespace's default {default}: set by someone")
        })
    }
}

impl std::fmt::Display for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SO_KEEPALIVE={} TCP_KEEPIDLE={} TCP_KEEPINTVL={} TCP_KEEPCNT={} TCP_USER_TIMEOUT={}",
            u8::from(self.keepalive),
            self.idle,
            self.interval,
            self.count,
            self.user_timeout
        )
    }
}

/// `getsockopt` of an int-valued option (socket(7), tcp(7)), negative values as 0.
pub fn int_option(socket: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live locals sized for an int option.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.max(0) as u32)
}
