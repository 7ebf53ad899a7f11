//! The keepalive options in force on a socket, read with getsockopt(2) on a duplicate
//! of the process's descriptor: the kernel's own values, not a guess from variables.
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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
}

/// The inode of the open file behind `fd`: the `N` of its `socket:[N]` link.
pub fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat(2) fills the stat buffer, which lives for the call.
    if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0, so it wrote the whole struct.
    Ok(unsafe { stat.assume_init() }.st_ino)
}

fn int_option(socket: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<u32> {
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
