//! The system-call layer: every call into libc the shim makes, and the raw system
//! calls it makes through syscall(2), each behind a safe function with the reason it
//! is sound. Nothing here allocates or takes a lock once
//! the real functions are resolved.

use core::ffi::{CStr, c_int, c_long, c_void};
use core::marker::PhantomData;
use core::mem::{MaybeUninit, size_of};
use core::num::NonZeroUsize;
use core::ptr;

use once_cell::race::OnceNonZeroUsize;

/// Puts `errno` back as it was when saved, on drop.
///
/// The host must see exactly the `errno` its real call produced; the shim's own
/// `setsockopt`, `getsockopt`, raw system calls and `dlsym` may change it.
pub struct SavedErrno(c_int);

impl SavedErrno {
    pub fn save() -> Self {
        SavedErrno(errno())
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

pub fn errno() -> c_int {
    // SAFETY: __errno_location() returns the calling thread's errno slot, valid for the
    // thread's whole life.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(value: c_int) {
    // SAFETY: as in `errno()`.
    unsafe { *libc::__errno_location() = value }
}

/// The next definition of a libc function after this library, found with
/// `dlsym(RTLD_NEXT, name)` on first use and kept for the life of the process.
///
/// The address lives in a [`OnceNonZeroUsize`] from `once_cell::race`: threads that
/// arrive together may each call `dlsym`, all get the same address, and the first to
/// store it wins; nobody waits and nothing is allocated.
pub struct Next<F> {
    name: &'static CStr,
    addr: OnceNonZeroUsize,
    signature: PhantomData<F>,
}

/// The function could not be found; `first` is true for exactly one caller, the one
/// that should report it.
pub struct Unresolved {
    pub name: &'static CStr,
    pub first: bool,
}

/// Stored in place of an address when `dlsym` found nothing, so that a missing symbol
/// is looked up, and reported, once. No function lives at address 1.
const MISSING: NonZeroUsize = NonZeroUsize::MIN;

impl<F: Copy> Next<F> {
    const SIZE_MATCHES: () = assert!(size_of::<F>() == size_of::<usize>());

    /// # Safety
    /// `F` must be an `unsafe extern "C" fn` type with the C prototype of `name`.
    pub const unsafe fn new(name: &'static CStr) -> Self {
        Next {
            name,
            addr: OnceNonZeroUsize::new(),
            signature: PhantomData,
        }
    }

    pub fn get(&self) -> Result<F, Unresolved> {
        let () = Self::SIZE_MATCHES;
        let (addr, first) = match self.addr.get() {
            Some(addr) => (addr, false),
            None => self.resolve(),
        };
        if addr == MISSING {
            return Err(Unresolved {
                name: self.name,
                first,
            });
        }
        // SAFETY: `addr` is a non-null address dlsym returned for `name`, and `new`'s
        // contract makes `F` a function pointer type with that symbol's prototype.
        Ok(unsafe { core::mem::transmute_copy::<usize, F>(&addr.get()) })
    }

    /// Looks the symbol up; returns the address to use and whether this call was the
    /// one that recorded it.
    #[cold]
    fn resolve(&self) -> (NonZeroUsize, bool) {
        let _errno = SavedErrno::save();
        // SAFETY: RTLD_NEXT with a NUL-terminated name is a valid dlsym(3) call; it
        // searches the objects loaded after this one, which is what interposition needs.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        let addr = NonZeroUsize::new(found as usize).unwrap_or(MISSING);
        match self.addr.set(addr) {
            Ok(()) => (addr, true),
            Err(()) => (self.addr.get().unwrap_or(addr), false),
        }
    }
}

/// `setsockopt(fd, level, name, &value, sizeof(int))`; `Err` holds the errno.
pub fn set_int_option(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), c_int> {
    // SAFETY: the option value is a live c_int and the length passed is its size;
    // setsockopt(2) reads no more than that and touches no other memory.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            ptr::from_ref(&value).cast(),
            size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// `getsockopt(fd, level, name)` for an int-valued option; `Err` holds the errno.
pub fn int_option(fd: c_int, level: c_int, name: c_int) -> Result<c_int, c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: value and len are live locals; len tells getsockopt(2) how much it may
    // write into value.
    let rc =
        unsafe { libc::getsockopt(fd, level, name, ptr::from_mut(&mut value).cast(), &mut len) };
    if rc == 0 { Ok(value) } else { Err(errno()) }
}

unsafe extern "C" {
    /// glibc 2.17's getenv for code that may run in privileged processes; the libc
    /// crate does not declare it.
    fn secure_getenv(name: *const core::ffi::c_char) -> *mut core::ffi::c_char;
}

/// The longest value read from the environment: the kernel's limit on one argument or
/// environment string with 4 KiB pages, 32 pages (execve(2)).
pub const MAX_VALUE_LEN: usize = keepalive_config::MAX_VALUE_LEN;

/// The value of an environment variable, as bytes; `None` when it is unset, and
/// always in secure-execution mode.
///
/// secure_getenv(3) returns NULL when the process runs setuid, setgid or with file
/// capabilities (AT_SECURE, ld.so(8)): the environment was then chosen by a less
/// privileged user, and the library must use the administrator's sysctl timers.
///
/// # Safety
/// The slice points into the process environment: the caller must be done with it
/// before anything in the process can call `setenv`, `putenv` or `unsetenv` for
/// that name.
pub unsafe fn env<'a>(name: &CStr) -> Option<&'a [u8]> {
    // SAFETY: name is NUL-terminated; secure_getenv(3) returns NULL or a NUL-terminated
    // string inside the environment, which lives as the caller's contract requires.
    unsafe {
        let value = secure_getenv(name.as_ptr()).cast::<u8>();
        (!value.is_null()).then(|| c_string(value))
    }
}

/// The bytes of a NUL-terminated string, counted here rather than with strlen(3):
/// every libc function the library imports is one more symbol lookup at every exec.
///
/// The count stops at [`MAX_VALUE_LEN`]. A string with no NUL within that bound comes
/// back one byte longer than the bound, so the parser refuses it as too long instead
/// of parsing a cut prefix (zeros then `61` must never read as 61). That byte is
/// readable: the string is NUL-terminated, and its NUL comes later.
///
/// # Safety
/// `string` must point to a NUL-terminated string that outlives `'a`.
unsafe fn c_string<'a>(string: *const u8) -> &'a [u8] {
    // SAFETY: the string is NUL-terminated, so every byte up to its NUL is readable,
    // and the NUL lies beyond index MAX_VALUE_LEN when none was found up to it.
    unsafe {
        let len = (0..=MAX_VALUE_LEN)
            .find(|&i| *string.add(i) == 0)
            .unwrap_or(MAX_VALUE_LEN + 1);
        core::slice::from_raw_parts(string, len)
    }
}

/// A raw system call: one import, syscall(2), serves them all. Unlike libc's
/// wrappers, a raw call is never a cancellation point (pthreads(7)), so a pending
/// cancel cannot act inside the library. `Err` holds the errno.
///
/// # Safety
/// `args` must be what system call `number` expects, every pointer among them live
/// and valid for what the call reads or writes.
unsafe fn raw(number: c_long, args: [usize; 6]) -> Result<usize, c_int> {
    let [a, b, c, d, e, f] = args;
    // SAFETY: the caller's contract.
    let rc = unsafe { libc::syscall(number, a, b, c, d, e, f) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc as usize)
    }
}

/// The identity of the file an fd refers to, and what else the same call tells.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// The device: major in the high 32 bits, minor in the low.
    pub dev: u64,
    pub ino: u64,
    /// The file's birth time in nanoseconds, 0 where the file system keeps none. A
    /// deleted file's inode number is soon given to a new file on the same device
    /// (ext4 does it at once); the birth time tells the two apart.
    pub birth: u64,
    /// `S_IFSOCK`, `S_IFIFO`, ...
    pub kind: u32,
    /// The mount it was opened through (`/proc/self/mountinfo`'s first field), where
    /// the kernel says (statx since Linux 5.8).
    pub mount: Option<u64>,
}

impl FileId {
    pub fn is_socket(self) -> bool {
        self.kind == libc::S_IFSOCK
    }
}

/// statx(2) with `AT_STATX_DONT_SYNC`: what the kernel has cached, never a request to
/// the file's server. An fstat(2) of a file on FUSE or NFS may ask the server for
/// fresh attributes and wait for ever when it does not answer; this cannot. Kernels
/// before 4.11 have no statx: fstat(2) there, which can.
pub fn file_id(fd: c_int) -> Option<FileId> {
    const STATX_MNT_ID: u32 = 0x1000;
    let mut stx = MaybeUninit::<libc::statx>::uninit();
    let buf = stx.as_mut_ptr() as usize;
    let flags = (libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC) as usize;
    let mask = libc::STATX_TYPE | libc::STATX_INO | libc::STATX_BTIME | STATX_MNT_ID;
    let empty = c"".as_ptr() as usize;
    let args = [fd as usize, empty, flags, mask as usize, buf, 0];
    // SAFETY: statx(2) reads the empty NUL-terminated path and writes one struct statx
    // into `buf`, which has room for it.
    match unsafe { raw(libc::SYS_statx, args) } {
        Ok(_) => {
            // SAFETY: statx succeeded, so it filled the whole struct.
            let stx = unsafe { stx.assume_init() };
            let has = |bit: u32| stx.stx_mask & bit != 0;
            let birth = if has(libc::STATX_BTIME) {
                let time = stx.stx_btime;
                (time.tv_sec as u64)
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(u64::from(time.tv_nsec))
            } else {
                0
            };
            Some(FileId {
                dev: u64::from(stx.stx_dev_major) << 32 | u64::from(stx.stx_dev_minor),
                ino: stx.stx_ino,
                birth,
                kind: u32::from(stx.stx_mode) & libc::S_IFMT,
                mount: has(STATX_MNT_ID).then_some(stx.stx_mnt_id),
            })
        }
        Err(libc::ENOSYS) => fstat_id(fd),
        Err(_) => None,
    }
}

fn fstat_id(fd: c_int) -> Option<FileId> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    let buf = stat.as_mut_ptr() as usize;
    // SAFETY: fstat(2) writes one struct stat into `buf`, which has room for it.
    unsafe { raw(libc::SYS_fstat, [fd as usize, buf, 0, 0, 0, 0]) }.ok()?;
    // SAFETY: fstat succeeded, so it filled the whole struct.
    let stat = unsafe { stat.assume_init() };
    Some(FileId {
        dev: u64::from(libc::major(stat.st_dev)) << 32 | u64::from(libc::minor(stat.st_dev)),
        ino: stat.st_ino,
        birth: 0,
        kind: stat.st_mode & libc::S_IFMT,
        mount: None,
    })
}

/// Free bytes on the file system of `fd` for an unprivileged writer (fstatfs(2)
/// `f_bavail` blocks). Asked only of local file systems: on FUSE and NFS, fstatfs
/// waits for the server's answer.
pub fn free_bytes(fd: c_int) -> Option<u64> {
    let mut stat = MaybeUninit::<libc::statfs>::uninit();
    let buf = stat.as_mut_ptr() as usize;
    // SAFETY: fstatfs(2) writes one struct statfs into `buf`, which has room for it.
    unsafe { raw(libc::SYS_fstatfs, [fd as usize, buf, 0, 0, 0, 0]) }.ok()?;
    // SAFETY: fstatfs succeeded, so it filled the whole struct.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Some((stat.f_bavail as u64).saturating_mul(stat.f_bsize as u64))
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid(2) takes no arguments and touches no memory.
    unsafe { raw(libc::SYS_getpid, [0; 6]) }.map_or(0, |pid| pid as libc::pid_t)
}

/// `sendto(fd, bytes, MSG_DONTWAIT | MSG_NOSIGNAL)`: never blocks, never raises SIGPIPE.
pub fn send_now(fd: c_int, bytes: &[u8]) -> Result<usize, c_int> {
    let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as usize;
    let (buf, len) = (bytes.as_ptr() as usize, bytes.len());
    // SAFETY: sendto(2) reads `len` bytes from `buf`, a live slice; no address.
    unsafe { raw(libc::SYS_sendto, [fd as usize, buf, len, flags, 0, 0]) }
}

/// `pwritev2(fd, bytes, offset -1, RWF_NOWAIT)`: a write at the current position that
/// fails with EAGAIN instead of waiting; EOPNOTSUPP where the file type has no
/// non-blocking write (terminals, some file systems' regular files).
pub fn write_now(fd: c_int, bytes: &[u8]) -> Result<usize, c_int> {
    let iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut c_void,
        iov_len: bytes.len(),
    };
    let iov = ptr::from_ref(&iov) as usize;
    // The offset -1, "the current file position", goes as two longs (pos_l, pos_h).
    let args = [
        fd as usize,
        iov,
        1,
        usize::MAX,
        usize::MAX,
        libc::RWF_NOWAIT as usize,
    ];
    // SAFETY: pwritev2(2) reads one iovec, which points to a live slice of its length.
    unsafe { raw(libc::SYS_pwritev2, args) }
}

const ZERO_TIMEOUT: libc::timespec = libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// write(2) as a raw system call.
pub fn write(fd: c_int, bytes: &[u8]) -> Result<usize, c_int> {
    let (buf, len) = (bytes.as_ptr() as usize, bytes.len());
    // SAFETY: write(2) reads `len` bytes from `buf`, a live slice.
    unsafe { raw(libc::SYS_write, [fd as usize, buf, len, 0, 0, 0]) }
}

/// What a terminal on `fd` means for a write from this process: `None` when `fd` is
/// not a terminal (TCGETS fails, tty_ioctl(4)).
pub struct Terminal {
    /// The master side of a pseudoterminal (TIOCGPTN answers only there, pty(7)):
    /// what is written to it is the slave side's input.
    pub master: bool,
    /// `TOSTOP` is set (termios(3)): a write from a background process group raises
    /// SIGTTOU.
    pub tostop: bool,
    /// This process's group is in the background of the terminal, which is its
    /// controlling terminal. A terminal that is not the controlling one (TIOCGPGRP
    /// fails with ENOTTY) has no background for this process.
    pub background: bool,
}

/// One `ioctl(fd, request, arg)` that reads into `*arg`; `false` when it fails.
///
/// # Safety
/// `request` must write at most `size_of::<T>()` bytes into its argument.
unsafe fn ioctl_into<T>(fd: c_int, request: libc::Ioctl, arg: &mut T) -> bool {
    let arg = ptr::from_mut(arg) as usize;
    // SAFETY: the caller's contract bounds what the request writes into `arg`, a live
    // value of type T.
    unsafe {
        raw(
            libc::SYS_ioctl,
            [fd as usize, request as usize, arg, 0, 0, 0],
        )
    }
    .is_ok()
}

pub fn terminal(fd: c_int) -> Option<Terminal> {
    // Every Linux struct termios starts with four tcflag_t (unsigned int) fields,
    // c_lflag the fourth; 64 bytes hold the largest architecture's struct.
    let mut termios = [0u32; 16];
    // SAFETY: TCGETS writes one struct termios, which fits in the 64 bytes passed.
    if !unsafe { ioctl_into(fd, libc::TCGETS, &mut termios) } {
        return None;
    }
    let lflag = termios.get(3).copied().unwrap_or(0);
    let mut number: c_int = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    let master = unsafe { ioctl_into(fd, libc::TIOCGPTN, &mut number) };
    let mut foreground: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t.
    let background =
        unsafe { ioctl_into(fd, libc::TIOCGPGRP, &mut foreground) } && foreground != getpgrp();
    Some(Terminal {
        master,
        tostop: lflag & libc::TOSTOP != 0,
        background,
    })
}

fn getpgrp() -> libc::pid_t {
    // SAFETY: getpgid(2) with 0 asks for the caller's own group and touches no memory.
    unsafe { raw(libc::SYS_getpgid, [0; 6]) }.map_or(0, |pgrp| pgrp as libc::pid_t)
}

/// Whether `fd`'s own end is bound to a name chosen by someone: a path, or an abstract
/// name other than the kernel's autobind name (five hex digits after the NUL, unix(7)).
/// The server end of an accepted `AF_UNIX` connection carries its listener's name; a
/// client end — journald's stream socket on a service's stderr, one end of a
/// socketpair — has none, or an autobind name. `None` when getsockname(2) fails.
pub fn unix_end_named(fd: c_int) -> Option<bool> {
    let mut addr = MaybeUninit::<libc::sockaddr_un>::uninit();
    let addr_ptr = addr.as_mut_ptr() as usize;
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let len_ptr = ptr::from_mut(&mut len) as usize;
    // SAFETY: getsockname(2) writes at most `len` bytes of address into `addr`, a live
    // sockaddr_un of that size, and the length into `len`.
    unsafe {
        raw(
            libc::SYS_getsockname,
            [fd as usize, addr_ptr, len_ptr, 0, 0, 0],
        )
    }
    .ok()?;
    let path_len = (len as usize).saturating_sub(size_of::<libc::sa_family_t>());
    if path_len == 0 {
        return Some(false);
    }
    // SAFETY: getsockname wrote the family and `path_len` bytes of sun_path, within
    // the struct (the kernel truncates to the length passed).
    let path = unsafe {
        let start = ptr::addr_of!((*addr.as_ptr()).sun_path).cast::<u8>();
        core::slice::from_raw_parts(start, path_len.min(size_of::<libc::sockaddr_un>() - 2))
    };
    let autobind =
        matches!(path, [0, rest @ ..] if rest.len() == 5 && rest.iter().all(u8::is_ascii_hexdigit));
    Some(!autobind)
}

/// The kernel's signal set, as rt_sigprocmask(2) takes it: one bit per signal.
#[derive(Clone, Copy)]
pub struct Signals(u64);

const SIGSET_SIZE: usize = size_of::<u64>();

impl Signals {
    pub const fn one(signal: c_int) -> Signals {
        Signals(1 << (signal - 1))
    }

    fn contains(self, signal: c_int) -> bool {
        self.0 & Signals::one(signal).0 != 0
    }
}

/// The signal a failed write raised in the calling thread, by its error (write(2)):
/// EPIPE comes with SIGPIPE (a pipe or FIFO with no reader), EFBIG with SIGXFSZ (a
/// file at `RLIMIT_FSIZE`). Both are sent to the writing thread, not the process.
fn raised_by(errno: c_int) -> Option<c_int> {
    match errno {
        libc::EPIPE => Some(libc::SIGPIPE),
        libc::EFBIG => Some(libc::SIGXFSZ),
        _ => None,
    }
}

/// Runs `write` with `signals` — every signal it could raise — blocked in this thread,
/// so that none can reach the program, and leaves the program's signals as they were:
///
/// - if one of `signals` is already pending, for this thread or for the process,
///   `write` does not run: a standard signal does not queue (signal(7)), so the one
///   the write raised and the program's would be one, and taking it would take the
///   program's;
/// - afterwards a signal is taken (rt_sigtimedwait(2) with a zero timeout) only when
///   the write's own error says it raised one, and rt_sigtimedwait takes the thread's
///   own pending signals before the process's, so a process-directed one that arrived
///   meanwhile stays for the program;
/// - then the mask is put back.
///
/// When the mask cannot be changed (a seccomp filter or an LSM refusing
/// rt_sigprocmask), `write` does not run: it could kill or stop the program.
///
/// One instant stays open: a signal of the same kind that another thread sends to
/// this very thread between the write and the taking merges with the write's, and is
/// taken with it.
pub fn without_signals(signals: Signals, write: impl FnOnce() -> Result<usize, c_int>) {
    let set_ptr = ptr::from_ref(&signals.0) as usize;
    let mut old: u64 = 0;
    let old_ptr = ptr::from_mut(&mut old) as usize;
    let block = [
        libc::SIG_BLOCK as usize,
        set_ptr,
        old_ptr,
        SIGSET_SIZE,
        0,
        0,
    ];
    // SAFETY: rt_sigprocmask(2) reads one kernel sigset and writes one, both live
    // locals of the size passed.
    if unsafe { raw(libc::SYS_rt_sigprocmask, block) }.is_err() {
        return;
    }
    let mut pending: u64 = 0;
    let pending_ptr = ptr::from_mut(&mut pending) as usize;
    // SAFETY: rt_sigpending(2) writes one kernel sigset (the thread's and the
    // process's pending signals together) into a live local.
    let clear = unsafe {
        raw(
            libc::SYS_rt_sigpending,
            [pending_ptr, SIGSET_SIZE, 0, 0, 0, 0],
        )
    }
    .is_ok_and(|_| pending & signals.0 == 0);
    if clear {
        let raised = write().err().and_then(raised_by);
        if let Some(signal) = raised.filter(|&signal| signals.contains(signal)) {
            let taken = Signals::one(signal);
            let taken_ptr = ptr::from_ref(&taken.0) as usize;
            let zero = ZERO_TIMEOUT;
            let zero_ptr = ptr::from_ref(&zero) as usize;
            // SAFETY: rt_sigtimedwait(2) reads the set and the timeout, live locals,
            // and writes no siginfo (NULL).
            let _ = unsafe {
                raw(
                    libc::SYS_rt_sigtimedwait,
                    [taken_ptr, 0, zero_ptr, SIGSET_SIZE, 0, 0],
                )
            };
        }
    }
    let restore = [libc::SIG_SETMASK as usize, old_ptr, 0, SIGSET_SIZE, 0, 0];
    // SAFETY: rt_sigprocmask(2) reads the saved set, a live local.
    let _ = unsafe { raw(libc::SYS_rt_sigprocmask, restore) };
}

/// A file the library opened itself, closed on drop; raw system calls throughout.
pub struct File(usize);

impl File {
    /// openat(2) read-only, close-on-exec.
    pub fn open(path: &CStr) -> Option<File> {
        File::open_with(path, libc::O_RDONLY | libc::O_CLOEXEC)
    }

    /// openat(2) write-only, non-blocking, close-on-exec, and never as the controlling
    /// terminal: a file description of the library's own, whose `O_NONBLOCK` nobody
    /// else shares. Opened through `/proc/self/fd/N`, a terminal or pipe gives a new
    /// description of the same terminal or pipe (proc(5)); a pipe without a reader
    /// refuses with ENXIO (fifo(7)), raising nothing.
    pub fn open_nonblocking_writer(path: &CStr) -> Option<File> {
        File::open_with(
            path,
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    }

    fn open_with(path: &CStr, flags: c_int) -> Option<File> {
        let args = [
            libc::AT_FDCWD as usize,
            path.as_ptr() as usize,
            flags as usize,
            0,
            0,
            0,
        ];
        // SAFETY: openat(2) reads the NUL-terminated path, a live CStr.
        unsafe { raw(libc::SYS_openat, args) }.ok().map(File)
    }

    pub fn fd(&self) -> c_int {
        self.0 as c_int
    }

    /// pread64(2) at `offset` into `buf`; the bytes read. The buffer may be
    /// uninitialised: zeroing it would make the compiler call memset(3), one more
    /// import to look up at every exec.
    pub fn read_at<'b>(&self, buf: &'b mut [MaybeUninit<u8>], offset: u64) -> Option<&'b [u8]> {
        let (ptr, len) = (buf.as_mut_ptr() as usize, buf.len());
        // SAFETY: pread64(2) writes at most `len` bytes into `buf`, live memory of
        // that size.
        let read = unsafe { raw(libc::SYS_pread64, [self.0, ptr, len, offset as usize, 0, 0]) };
        let read = read.ok().filter(|&n| n <= len)?;
        // SAFETY: pread64 initialised the first `read` bytes.
        Some(unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), read) })
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: close(2) of a descriptor this value opened and nothing else knows.
        let _ = unsafe { raw(libc::SYS_close, [self.0, 0, 0, 0, 0, 0]) };
    }
}

/// Reads a small file whole into `buf`. `None` when it cannot be opened or read, or
/// fills `buf`.
pub fn read_file<'b>(path: &CStr, buf: &'b mut [MaybeUninit<u8>]) -> Option<&'b [u8]> {
    let len = buf.len();
    let read = File::open(path)?.read_at(buf, 0)?;
    (read.len() < len).then_some(read)
}
