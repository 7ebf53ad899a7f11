//! What an untouched TCP socket reports: the `net.ipv4.tcp_keepalive_*` sysctls of
//! its network namespace, *as they are now*. `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and
//! `TCP_KEEPCNT` report the sysctl's current value for a socket nobody set them on
//! (tcp(7); `keepalive_time_when` and its siblings in include/net/tcp.h), so a socket
//! whose timer differs from it was configured by someone, and
//! [`tcp::configured_elsewhere`](crate::tcp::configured_elsewhere) leaves it alone.
//!
//! getsockopt cannot tell a timer set to the current default from an untouched one,
//! and the sysctls change while the program runs (an administrator tunes them). So
//! the values last read are only a shortcut to "untouched": a timer equal to them is
//! taken as untouched at once, and only a timer that differs is checked against a
//! fresh read of that one sysctl before the socket is called configured. The library's
//! own sockets never come here, nor does a connection with keepalive already on; an
//! untouched one pays a read only when its namespace's sysctl differs from the last
//! value read, which for most processes is never (the values start as the kernel's
//! built-in ones).
//!
//! The fresh read opens `/proc/sys/net/ipv4/…` close-on-exec, reads it and closes it
//! at once, inside the program's `accept()`: for that instant the program has one
//! descriptor more (docs/safety.md says what that can mean). Where it cannot be read
//! (no `/proc`, no descriptor left), nothing is proven and the socket is left alone.
//!
//! The blind spot this leaves: after a sysctl changed, a timer someone set to exactly
//! the old value looks untouched.

use core::ffi::{CStr, c_int};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::sys;
use keepalive_config::decimal;

/// One keepalive timer, with its socket option, its sysctl and the last value read.
#[derive(Clone, Copy)]
pub enum Timer {
    Idle,
    Interval,
    Count,
}

/// The last value read of each sysctl, starting with the kernel's built-in ones
/// (`TCP_KEEPALIVE_TIME`, `_INTVL`, `_PROBES`). Racing readers store the same value.
static LAST: [AtomicU32; 3] = [AtomicU32::new(7200), AtomicU32::new(75), AtomicU32::new(9)];

impl Timer {
    pub const ALL: [Timer; 3] = [Timer::Idle, Timer::Interval, Timer::Count];

    pub fn option(self) -> c_int {
        match self {
            Timer::Idle => libc::TCP_KEEPIDLE,
            Timer::Interval => libc::TCP_KEEPINTVL,
            Timer::Count => libc::TCP_KEEPCNT,
        }
    }

    fn sysctl(self) -> &'static CStr {
        match self {
            Timer::Idle => c"/proc/sys/net/ipv4/tcp_keepalive_time",
            Timer::Interval => c"/proc/sys/net/ipv4/tcp_keepalive_intvl",
            Timer::Count => c"/proc/sys/net/ipv4/tcp_keepalive_probes",
        }
    }

    fn last(self) -> &'static AtomicU32 {
        &LAST[self as usize]
    }

    /// Whether `value`, read from a socket, is what this timer is on an untouched
    /// socket now.
    pub fn is_default(self, value: c_int) -> bool {
        let value = value as u32;
        if value == self.last().load(Ordering::Relaxed) {
            return true;
        }
        match read(self.sysctl()) {
            Some(now) => {
                self.last().store(now, Ordering::Relaxed);
                value == now
            }
            None => false,
        }
    }
}

/// One sysctl's value: decimal digits and a newline.
#[cold]
fn read(path: &CStr) -> Option<u32> {
    let mut buf = [MaybeUninit::uninit(); 24];
    let text = sys::read_file(path, &mut buf)?;
    decimal(text.strip_suffix(b"\n").unwrap_or(text))
}
