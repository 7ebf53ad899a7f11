//! The system-call layer: every call into libc the shim makes, each behind a safe
//! function with the reason it is sound. Nothing here allocates or takes a lock once
//! the real functions are resolved.

use core::ffi::{CStr, c_int, c_void};
use core::marker::PhantomData;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Puts `errno` back as it was when saved, on drop.
///
/// The host must see exactly the `errno` its real call produced; the shim's own
/// `setsockopt`, `getsockopt`, `write` and `dlsym` calls may change it.
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
/// Resolution is a race, not a lock: threads that arrive together may each call
/// `dlsym`, all get the same address, and the first to store it wins.
pub struct Next<F> {
    name: &'static CStr,
    addr: AtomicPtr<c_void>,
    signature: PhantomData<F>,
}

/// The function could not be found; `first` is true for exactly one caller, the one
/// that should report it.
pub struct Unresolved {
    pub name: &'static CStr,
    pub first: bool,
}

/// Stored in place of an address when `dlsym` found nothing, so that a missing symbol
/// is looked up, and reported, once.
fn missing() -> *mut c_void {
    ptr::dangling_mut()
}

impl<F: Copy> Next<F> {
    const SIZE_MATCHES: () = assert!(size_of::<F>() == size_of::<*mut c_void>());

    /// # Safety
    /// `F` must be an `unsafe extern "C" fn` type with the C prototype of `name`.
    pub const unsafe fn new(name: &'static CStr) -> Self {
        Next {
            name,
            addr: AtomicPtr::new(ptr::null_mut()),
            signature: PhantomData,
        }
    }

    pub fn get(&self) -> Result<F, Unresolved> {
        let () = Self::SIZE_MATCHES;
        let mut addr = self.addr.load(Ordering::Relaxed);
        let mut first = false;
        if addr.is_null() {
            (addr, first) = self.resolve();
        }
        if addr == missing() {
            return Err(Unresolved {
                name: self.name,
                first,
            });
        }
        // SAFETY: `addr` is a non-null address dlsym returned for `name`, and `new`'s
        // contract makes `F` a function pointer type with that symbol's prototype.
        Ok(unsafe { core::mem::transmute_copy::<*mut c_void, F>(&addr) })
    }

    /// Looks the symbol up; returns the address to use and whether this call was the
    /// one that recorded it.
    #[cold]
    fn resolve(&self) -> (*mut c_void, bool) {
        let _errno = SavedErrno::save();
        // SAFETY: RTLD_NEXT with a NUL-terminated name is a valid dlsym(3) call; it
        // searches the objects loaded after this one, which is what interposition needs.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        let addr = if found.is_null() { missing() } else { found };
        match self.addr.compare_exchange(
            ptr::null_mut(),
            addr,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => (addr, true),
            Err(stored) => (stored, false),
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

/// The kernel's limit on one argument or environment string, 32 pages (execve(2)).
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// The bytes of a NUL-terminated string, counted here rather than with strlen(3):
/// every libc function the library imports is one more symbol lookup at every exec.
/// The count stops at MAX_ARG_STRLEN, which no string from execve(2) exceeds; a longer
/// one, which only setenv(3) can make, is read up to there.
///
/// # Safety
/// `string` must point to a NUL-terminated string that outlives `'a`.
unsafe fn c_string<'a>(string: *const u8) -> &'a [u8] {
    // SAFETY: the string is NUL-terminated, so every byte up to its NUL is readable.
    unsafe {
        let len = (0..MAX_ARG_STRLEN)
            .find(|&i| *string.add(i) == 0)
            .unwrap_or(MAX_ARG_STRLEN);
        core::slice::from_raw_parts(string, len)
    }
}

/// Writes one diagnostic line to fd 2, unless fd 2 carries the program's data.
///
/// A daemon that closed its stderr may have been handed a TCP connection on fd 2 by a
/// later `accept`; writing there would corrupt its protocol. An `AF_UNIX` stream
/// (journald's stdout/stderr socket) is fine, and is written with `MSG_NOSIGNAL` so a
/// closed reader cannot kill the program with SIGPIPE.
pub fn write_stderr(line: &[u8]) {
    const STDERR: c_int = libc::STDERR_FILENO;
    let domain = int_option(STDERR, libc::SOL_SOCKET, libc::SO_DOMAIN);
    loop {
        // SAFETY: line is a live byte slice and its length is passed with it.
        let rc = unsafe {
            match domain {
                // ENOTSOCK: a terminal, file or pipe. EBADF: closed, and write fails too.
                Err(_) => libc::write(STDERR, line.as_ptr().cast(), line.len()),
                Ok(libc::AF_UNIX) => {
                    libc::send(STDERR, line.as_ptr().cast(), line.len(), libc::MSG_NOSIGNAL)
                }
                Ok(_) => return,
            }
        };
        if rc >= 0 || errno() != libc::EINTR {
            return;
        }
    }
}
