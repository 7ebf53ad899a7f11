//! Which descriptors hold a TCP socket that this library's `socket()` made and
//! configured, so that `accept` on them can leave the accepted connection alone.
//!
//! An accepted connection inherits every keepalive option of its listener from the
//! kernel (`inet_csk_clone_lock`, `tcp_create_openreq_child`). A listener made through
//! the library's `socket()` was configured by the library and then, perhaps, by the
//! program, which has the last word: its connections keep what they inherit, and
//! `accept` makes no call at all.
//!
//! One bit per descriptor number, in `.bss`: no file size, no allocation, no lock, and
//! pages the kernel maps only once a bit on them is touched. The bit is set when our
//! `socket()` returns a TCP socket and cleared when our `socket()` or `accept` returns
//! that number for anything else. The library does not interpose `close`, `dup2` or
//! `recvmsg`: a number closed and then reused by one of those keeps a stale bit until
//! the next `socket()` or `accept` that returns it, and `accept` on such a listener
//! leaves its connections as they inherit them.

use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Descriptor numbers covered: Linux's default `fs.nr_open`, the highest
/// `RLIMIT_NOFILE` a process gets unless the administrator raised that sysctl. A
/// number above it is treated as never marked.
const COVERED: usize = 1 << 20;
const WORD: usize = usize::BITS as usize;

static MARKS: [AtomicUsize; COVERED / WORD] = [const { AtomicUsize::new(0) }; COVERED / WORD];

/// The word holding `fd`'s bit, and the bit.
fn slot(fd: c_int) -> Option<(&'static AtomicUsize, usize)> {
    let fd = usize::try_from(fd).ok()?;
    Some((MARKS.get(fd / WORD)?, 1 << (fd % WORD)))
}

/// Marks `fd` as a TCP socket this library created and configured.
pub fn mark(fd: c_int) {
    if let Some((word, bit)) = slot(fd) {
        word.fetch_or(bit, Ordering::Relaxed);
    }
}

/// Clears `fd`'s mark: the number now holds something our `socket()` did not make.
/// A load first, so that the common case writes nothing.
pub fn forget(fd: c_int) {
    if let Some((word, bit)) = slot(fd) {
        if word.load(Ordering::Relaxed) & bit != 0 {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// Whether `fd` was made and configured by this library's `socket()`.
pub fn made_here(fd: c_int) -> bool {
    slot(fd).is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
}
