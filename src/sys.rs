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

/// The identity of the file an fd refers to: device and inode, from fstat(2), and
/// whether it is a socket (its type comes with the same call, for free).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: libc::dev_t,
    pub ino: libc::ino_t,
    pub socket: bool,
}

pub fn file_id(fd: c_int) -> Option<FileId> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    let buf = stat.as_mut_ptr() as usize;
    // SAFETY: fstat(2) writes one struct stat into `buf`, which has room for it.
    unsafe { raw(libc::SYS_fstat, [fd as usize, buf, 0, 0, 0, 0]) }.ok()?;
    // SAFETY: fstat succeeded, so it filled the whole struct.
    let stat = unsafe { stat.assume_init() };
    Some(FileId {
        dev: stat.st_dev,
        ino: stat.st_ino,
        socket: stat.st_mode & libc::S_IFMT == libc::S_IFSOCK,
    })
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
/// non-blocking write (terminals, most regular files).
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

/// Whether `fd` can take bytes now: ppoll(2) with a zero timeout.
pub fn writable_now(fd: c_int) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let pollfd_ptr = ptr::from_mut(&mut pollfd) as usize;
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let zero_ptr = ptr::from_ref(&zero) as usize;
    // ppoll rather than poll: the generic system call table (aarch64, riscv64) has no
    // poll. With no signal mask (NULL) it is poll with a zero timeout.
    // SAFETY: ppoll(2) reads and writes the one pollfd passed and reads the timeout,
    // live locals; the signal mask pointer is NULL.
    let ready = unsafe { raw(libc::SYS_ppoll, [pollfd_ptr, 1, zero_ptr, 0, 0, 0]) };
    ready.is_ok_and(|n| n == 1)
        && pollfd.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) == libc::POLLOUT
}

/// write(2) as a raw system call.
pub fn write(fd: c_int, bytes: &[u8]) -> Result<usize, c_int> {
    let (buf, len) = (bytes.as_ptr() as usize, bytes.len());
    // SAFETY: write(2) reads `len` bytes from `buf`, a live slice.
    unsafe { raw(libc::SYS_write, [fd as usize, buf, len, 0, 0, 0]) }
}

/// The kernel's signal set, as rt_sigprocmask(2) takes it: one bit per signal.
type KernelSigset = u64;
const SIGSET_SIZE: usize = size_of::<KernelSigset>();

fn bit(signal: c_int) -> KernelSigset {
    1 << (signal - 1)
}

/// Runs `f` with SIGPIPE blocked in this thread, and afterwards removes a SIGPIPE that
/// `f` raised, leaving the signal mask, and a SIGPIPE that was already pending, exactly
/// as they were.
///
/// A SIGPIPE raised by write(2) is sent to the writing thread (signal(7)); while blocked
/// it stays pending, and rt_sigtimedwait(2) with a zero timeout takes it. One that was
/// pending before (for the thread or the process) is not taken: standard signals do
/// not queue, so the write's merged into it.
///
/// When SIGPIPE cannot be blocked (a seccomp filter or an LSM refusing
/// rt_sigprocmask), `f` does not run at all: a write it made into a pipe with no
/// reader could kill the program.
pub fn without_sigpipe(f: impl FnOnce()) {
    let pipe = bit(libc::SIGPIPE);
    let pipe_ptr = ptr::from_ref(&pipe) as usize;
    let mut old: KernelSigset = 0;
    let old_ptr = ptr::from_mut(&mut old) as usize;
    let block = [
        libc::SIG_BLOCK as usize,
        pipe_ptr,
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
    let mut pending: KernelSigset = 0;
    let pending_ptr = ptr::from_mut(&mut pending) as usize;
    // SAFETY: rt_sigpending(2) writes one kernel sigset into a live local.
    let was_pending = unsafe {
        raw(
            libc::SYS_rt_sigpending,
            [pending_ptr, SIGSET_SIZE, 0, 0, 0, 0],
        )
    }
    .map_or(true, |_| pending & pipe != 0);
    f();
    if !was_pending {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let zero_ptr = ptr::from_ref(&zero) as usize;
        // SAFETY: rt_sigtimedwait(2) reads the set and the timeout, live locals,
        // and writes no siginfo (NULL).
        let _ = unsafe {
            raw(
                libc::SYS_rt_sigtimedwait,
                [pipe_ptr, 0, zero_ptr, SIGSET_SIZE, 0, 0],
            )
        };
    }
    let restore = [libc::SIG_SETMASK as usize, old_ptr, 0, SIGSET_SIZE, 0, 0];
    // SAFETY: rt_sigprocmask(2) reads the saved set, a live local.
    let _ = unsafe { raw(libc::SYS_rt_sigprocmask, restore) };
}
