//! The five socket options the kernel route sets, as both of its programs name them,
//! each with its byte in a socket's marks (see [`crate::storage`]).

use keepalive_config::Setting;

/// A socket option, and the byte of a socket's marks that says the program set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    pub mark: i16,
}

pub const KEEPALIVE: SockOpt = SockOpt {
    level: libc::SOL_SOCKET,
    name: libc::SO_KEEPALIVE,
    mark: 0,
};
pub const IDLE: SockOpt = SockOpt {
    level: libc::IPPROTO_TCP,
    name: libc::TCP_KEEPIDLE,
    mark: 1,
};
pub const INTERVAL: SockOpt = SockOpt {
    level: libc::IPPROTO_TCP,
    name: libc::TCP_KEEPINTVL,
    mark: 2,
};
pub const COUNT: SockOpt = SockOpt {
    level: libc::IPPROTO_TCP,
    name: libc::TCP_KEEPCNT,
    mark: 3,
};
pub const USER_TIMEOUT: SockOpt = SockOpt {
    level: libc::IPPROTO_TCP,
    name: libc::TCP_USER_TIMEOUT,
    mark: 4,
};

pub const ALL: [SockOpt; 5] = [KEEPALIVE, IDLE, INTERVAL, COUNT, USER_TIMEOUT];

impl SockOpt {
    /// The option a setting sets, and the value it sets it to. Every value is
    /// range-checked by keepalive-config (at most `INT_MAX`), so it fits an immediate.
    pub fn of(setting: Setting) -> (SockOpt, i32) {
        let (option, value) = match setting {
            Setting::KeepAlive => (KEEPALIVE, 1),
            Setting::Idle(seconds) => (IDLE, seconds.get()),
            Setting::Interval(seconds) => (INTERVAL, seconds.get()),
            Setting::Count(probes) => (COUNT, probes.get()),
            Setting::UserTimeout(millis) => (USER_TIMEOUT, millis.get()),
        };
        (option, i32::try_from(value).unwrap_or(i32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_option_has_its_own_mark() {
        let mut marks: Vec<i16> = ALL.iter().map(|option| option.mark).collect();
        marks.dedup();
        assert_eq!(marks, [0, 1, 2, 3, 4]);
        assert!(
            ALL.iter()
                .all(|o| (o.mark as u32) < crate::storage::MARKS_SIZE)
        );
    }
}
