//! What an untouched TCP socket has in this process's network namespace: the
//! `net.ipv4.tcp_keepalive_*` sysctls, which `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and
//! `TCP_KEEPCNT` report for a socket nobody set them on (tcp(7); `keepalive_time_when`
//! and its siblings in include/net/tcp.h). A socket whose timers differ was configured
//! by someone, and [`tcp::configured_elsewhere`](crate::tcp::configured_elsewhere) leaves
//! it alone.
//!
//! Read from `/proc/sys` on first need, not at load: only a connection the library did
//! not create and that arrives with keepalive off needs them, and most processes never
//! see one. Read rather than asked of a fresh socket: creating a socket is exactly what
//! a hardened service's seccomp filter may punish with death, and reading a file is
//! not. Where `/proc` cannot be read (a chroot without it, no descriptor left), the
//! kernel's built-in defaults stand in for that one decision, and the next one reads
//! again.
//!
//! The values are this process's network namespace's, read once and kept. A socket
//! from another namespace — a listener made before setns(2), or passed in from a parent
//! in another namespace — has that namespace's defaults, which the library cannot read:
//! where they differ, its untouched connections look configured and are missed, and a
//! timer someone set on it to exactly this namespace's default looks untouched.

use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sys;
use keepalive_config::decimal;

/// The three keepalive timers of an untouched socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
}

/// The kernel's built-in values (`TCP_KEEPALIVE_TIME`, `_INTVL`, `_PROBES`).
const BUILT_IN: Timers = Timers {
    idle: 7200,
    interval: 75,
    count: 9,
};

/// 0 until read; then the three values packed, 21 bits each, and bit 63 set. Racing
/// readers store the same value.
static CACHE: AtomicU64 = AtomicU64::new(0);
const KNOWN: u64 = 1 << 63;
const MASK: u64 = (1 << 21) - 1;

pub fn timers() -> Timers {
    let cached = CACHE.load(Ordering::Relaxed);
    if cached & KNOWN != 0 {
        return Timers {
            idle: (cached & MASK) as u32,
            interval: (cached >> 21 & MASK) as u32,
            count: (cached >> 42 & MASK) as u32,
        };
    }
    let Some(timers) = read() else {
        // Not kept: /proc may be readable next time (the read may have failed only
        // because the process was out of descriptors).
        return BUILT_IN;
    };
    let packed = u64::from(timers.idle) & MASK
        | (u64::from(timers.interval) & MASK) << 21
        | (u64::from(timers.count) & MASK) << 42
        | KNOWN;
    CACHE.store(packed, Ordering::Relaxed);
    timers
}

#[cold]
fn read() -> Option<Timers> {
    Some(Timers {
        idle: sysctl(c"/proc/sys/net/ipv4/tcp_keepalive_time")?,
        interval: sysctl(c"/proc/sys/net/ipv4/tcp_keepalive_intvl")?,
        count: sysctl(c"/proc/sys/net/ipv4/tcp_keepalive_probes")?,
    })
}

/// One sysctl's value: decimal digits and a newline. Larger than any timer's range
/// (21 bits) reads as unknown.
fn sysctl(path: &CStr) -> Option<u32> {
    let mut buf = [MaybeUninit::uninit(); 24];
    let text = sys::read_file(path, &mut buf)?;
    let digits = text.strip_suffix(b"\n").unwrap_or(text);
    decimal(digits).filter(|&n| u64::from(n) <= MASK)
}
