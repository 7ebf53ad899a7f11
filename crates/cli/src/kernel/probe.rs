//! The keepalive settings a connection carries, read back with getsockopt(2), and what
//! a configuration should have made of them.

use std::io;
use std::os::fd::RawFd;

use keepalive_config::{Config, Setting};

/// The five options, as the kernel holds them for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carried {
    pub keepalive: bool,
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
    pub user_timeout: u32,
}

impl std::fmt::Display for Carried {
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

fn option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writing for the call, and `len` says how
    // much of `value` the kernel may write.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.unsigned_abs())
}

/// What connection `fd` carries.
pub fn settings_of(fd: RawFd) -> io::Result<Carried> {
    Ok(Carried {
        keepalive: option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? != 0,
        idle: option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?,
        interval: option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)?,
        count: option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?,
        user_timeout: option(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?,
    })
}

/// `carried` with every option `config` sets replaced by its value: what a connection
/// nobody else configured carries once the program has run.
pub fn expected(config: &Config, carried: &Carried) -> Carried {
    let mut wanted = *carried;
    for setting in config.settings() {
        match setting {
            Setting::KeepAlive => wanted.keepalive = true,
            Setting::Idle(seconds) => wanted.idle = seconds.get(),
            Setting::Interval(seconds) => wanted.interval = seconds.get(),
            Setting::Count(probes) => wanted.count = probes.get(),
            Setting::UserTimeout(millis) => wanted.user_timeout = millis.get(),
        }
    }
    wanted
}
