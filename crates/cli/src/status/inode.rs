//! Which open file a duplicated descriptor is: a process may close and reuse the
//! number between the listing of its descriptors and the duplicate.
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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
