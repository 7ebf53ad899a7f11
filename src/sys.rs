//! The system-call layer: every call the library makes outside its own code, each
//! behind a safe function with the reason it is sound.
//!
//! Only three functions come from libc: `dlsym` (the real `socket`, `accept` and
//! `accept4`), `secure_getenv` (the variables) and `__errno_location` (errno kept as
//! the program left it). Everything else is a system call made directly with the
//! `syscall` instruction ([`raw`]), for three reasons:
//!
//! - each imported function costs a symbol lookup in every process that loads the
//!   library, at every exec;
//! - a direct system call never touches errno, so the entry points have no errno to
//!   save and restore;
//! - it is never a cancellation point (pthreads(7)) and never reaches another
//!   library's wrapper of the same function: the library's own `setsockopt` is not
//!   the program's, and must not look like it to anyone interposing that.
//!
//! Nothing here allocates or takes a lock once the real functions are resolved.

use core::ffi::{CStr, c_int, c_long};
use core::marker::PhantomData;
use core::mem::{MaybeUninit, size_of};
use core::num::NonZeroUsize;
use core::ptr;

use once_cell::race::OnceNonZeroUsize;

/// Puts `errno` back as it was when saved, on drop: the program must see exactly the
/// `errno` its own calls produced, and `dlsym` and `secure_getenv` may change it.
pub struct SavedErrno(c_int);

impl SavedErrno {
    pub fn save() -> Self {
        // SAFETY: __errno_location() returns the calling thread's errno slot, valid for
        // the thread's whole life.
        SavedErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

pub fn set_errno(value: c_int) {
    // SAFETY: as in `SavedErrno::save`.
    unsafe { *libc::__errno_location() = value }
}

/// The next definition of a libc function after this library, found with
/// `dlsym(RTLD_NEXT, name)` and kept for the life of the process.
///
/// The constructor resolves every one before `main`; a call that arrives earlier (from
/// another library's constructor) resolves it then. Threads that arrive together may
/// each call `dlsym`, all get the same address, and the first to store it wins: nobody
/// waits, and nothing is allocated.
pub struct Next<F> {
    name: &'static CStr,
    addr: OnceNonZeroUsize,
    signature: PhantomData<F>,
}

/// Stored in place of an address when `dlsym` found nothing, so that a missing symbol
/// is looked up once. No function lives at address 1.
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

    pub fn name(&self) -> &'static CStr {
        self.name
    }

    /// The real function; `None` when there is no next definition.
    pub fn get(&self) -> Option<F> {
        let () = Self::SIZE_MATCHES;
        let addr = self.addr.get().unwrap_or_else(|| self.resolve());
        if addr == MISSING {
            return None;
        }
        // SAFETY: `addr` is a non-null address dlsym returned for `name`, and `new`'s
        // contract makes `F` a function pointer type with that symbol's prototype.
        Some(unsafe { core::mem::transmute_copy::<usize, F>(&addr.get()) })
    }

    #[cold]
    fn resolve(&self) -> NonZeroUsize {
        let _errno = SavedErrno::save();
        // SAFETY: RTLD_NEXT with a NUL-terminated name is a valid dlsym(3) call; it
        // searches the objects loaded after this one, which is what interposition needs.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        let addr = NonZeroUsize::new(found as usize).unwrap_or(MISSING);
        let _ = self.addr.set(addr);
        self.addr.get().unwrap_or(addr)
    }
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

/// The bytes of a NUL-terminated string, counted here rather than with strlen(3),
/// which would be one more import.
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

/// A system call made directly; `Err` holds the errno it returned, and the thread's
/// errno is not touched.
///
/// # Safety
/// `args` must be what system call `number` expects, every pointer among them live
/// and valid for what the call reads or writes.
#[cfg(target_arch = "x86_64")]
unsafe fn raw(number: c_long, args: [usize; 6]) -> Result<usize, c_int> {
    let [a, b, c, d, e, f] = args;
    let ret: isize;
    // SAFETY: the x86-64 system call convention (syscall(2), "Architecture calling
    // conventions"): number in rax, arguments in rdi, rsi, rdx, r10, r8, r9; the
    // kernel returns in rax and clobbers rcx and r11. The caller's contract makes the
    // arguments valid; the stack is not used.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => ret,
            in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d, in("r8") e, in("r9") f,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    result(ret)
}

/// As above, for aarch64.
#[cfg(target_arch = "aarch64")]
unsafe fn raw(number: c_long, args: [usize; 6]) -> Result<usize, c_int> {
    let [a, b, c, d, e, f] = args;
    let ret: isize;
    // SAFETY: the aarch64 system call convention (syscall(2)): number in x8,
    // arguments in x0-x5, the result in x0. The caller's contract makes the arguments
    // valid; the stack is not used.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") number,
            inlateout("x0") a as isize => ret,
            in("x1") b, in("x2") c, in("x3") d, in("x4") e, in("x5") f,
            options(nostack),
        );
    }
    result(ret)
}

/// Elsewhere, through libc's syscall(2), keeping errno as it was.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw(number: c_long, args: [usize; 6]) -> Result<usize, c_int> {
    let _errno = SavedErrno::save();
    let [a, b, c, d, e, f] = args;
    // SAFETY: the caller's contract.
    let rc = unsafe { libc::syscall(number, a, b, c, d, e, f) };
    if rc < 0 {
        // SAFETY: as in `SavedErrno::save`.
        Err(unsafe { *libc::__errno_location() })
    } else {
        Ok(rc as usize)
    }
}

/// The kernel returns -4095..-1 for an error (the errno, negated), anything else
/// for success.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn result(ret: isize) -> Result<usize, c_int> {
    if (-4095..0).contains(&ret) {
        Err(-ret as c_int)
    } else {
        Ok(ret as usize)
    }
}

/// `setsockopt(fd, level, name, &value, sizeof(int))`; `Err` holds the errno.
pub fn set_int_option(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), c_int> {
    let value = ptr::from_ref(&value) as usize;
    let args = [
        fd as usize,
        level as usize,
        name as usize,
        value,
        size_of::<c_int>(),
        0,
    ];
    // SAFETY: setsockopt(2) reads `sizeof(int)` bytes from `value`, a live c_int.
    unsafe { raw(libc::SYS_setsockopt, args) }.map(|_| ())
}

/// `getsockopt(fd, level, name)` into a `T` (an int, or a u64 for `SO_COOKIE`).
///
/// # Safety
/// `T` must be the type the option's value has, with every bit pattern valid.
unsafe fn option<T: Copy>(fd: c_int, level: c_int, name: c_int) -> Result<T, c_int> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    let (value_ptr, len_ptr) = (
        value.as_mut_ptr() as usize,
        ptr::from_mut(&mut len) as usize,
    );
    let args = [
        fd as usize,
        level as usize,
        name as usize,
        value_ptr,
        len_ptr,
        0,
    ];
    // SAFETY: getsockopt(2) writes at most `len` bytes into `value`, a live T of that
    // size, and the length back into `len`.
    unsafe { raw(libc::SYS_getsockopt, args) }?;
    // SAFETY: `value` was zeroed, and the caller's contract makes any bytes the kernel
    // wrote a valid T.
    Ok(unsafe { value.assume_init() })
}

/// `getsockopt(fd, level, name)` for an int-valued option; `Err` holds the errno.
pub fn int_option(fd: c_int, level: c_int, name: c_int) -> Result<c_int, c_int> {
    // SAFETY: int-valued options (socket(7), tcp(7)) write a C int.
    unsafe { option::<c_int>(fd, level, name) }
}

/// The socket's cookie (`SO_COOKIE`, Linux 4.13): a number the kernel gives each
/// socket for its whole life, the same through every descriptor that refers to it.
pub fn cookie(fd: c_int) -> Result<u64, c_int> {
    // SAFETY: SO_COOKIE writes a u64 (socket(7)).
    unsafe { option::<u64>(fd, libc::SOL_SOCKET, libc::SO_COOKIE) }
}

/// One end of a connected socket, for [`named`].
#[derive(Clone, Copy)]
pub enum End {
    Own,
    Peer,
}

/// Whether an `AF_UNIX` socket's end has a name (unix(7)): a bound end has one, and so
/// does a connection accepted from a bound listener; a connected end that was never
/// bound, and both ends of a socketpair(2), are "unnamed", and getsockname(2) or
/// getpeername(2) returns only the address family for them. `None` when the kernel
/// does not answer (not connected, or refused).
pub fn named(fd: c_int, end: End) -> Option<bool> {
    let call = match end {
        End::Own => libc::SYS_getsockname,
        End::Peer => libc::SYS_getpeername,
    };
    let mut addr = MaybeUninit::<libc::sockaddr_un>::uninit();
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let (addr_ptr, len_ptr) = (addr.as_mut_ptr() as usize, ptr::from_mut(&mut len) as usize);
    // SAFETY: getsockname(2) and getpeername(2) write at most `len` bytes into `addr`,
    // which has room for them, and the address's length into `len`.
    let answered = unsafe { raw(call, [fd as usize, addr_ptr, len_ptr, 0, 0, 0]) };
    answered
        .ok()
        .map(|_| len as usize > size_of::<libc::sa_family_t>())
}

/// `sendto(fd, bytes, MSG_DONTWAIT | MSG_NOSIGNAL)`: never waits for room, never
/// raises SIGPIPE (send(2)).
pub fn send_now(fd: c_int, bytes: &[u8]) -> Result<usize, c_int> {
    let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as usize;
    let (buf, len) = (bytes.as_ptr() as usize, bytes.len());
    // SAFETY: sendto(2) reads `len` bytes from `buf`, a live slice; no address.
    unsafe { raw(libc::SYS_sendto, [fd as usize, buf, len, flags, 0, 0]) }
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid(2) takes no arguments and touches no memory.
    unsafe { raw(libc::SYS_getpid, [0; 6]) }.map_or(0, |pid| pid as libc::pid_t)
}
