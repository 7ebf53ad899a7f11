//! A process's network namespace, as `attach` and `audit` see it: what is read through
//! /proc/sys/net and sock_diag belongs to the namespace of the thread that reads
//! (proc_sys(5), sock_diag(7)), so the reading is done by a thread that enters the
//! process's namespace with setns(2), which moves the calling thread alone.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// The inode that names `pid`'s network namespace (`/proc/PID/ns/net` links
/// `net:[INODE]`); `pid` may be `"self"`.
pub fn of(pid: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `read`'s result in `pid`'s network namespace: here when it is this command's own
/// (which takes no privilege; setns(2) takes CAP_SYS_ADMIN), else on a thread that
/// enters it and ends right after.
pub fn within<T: Send>(pid: i32, read: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let theirs = of(&pid.to_string()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot see the network namespace of process {pid}"),
        )
    })?;
    if of("self") == Some(theirs) {
        return read();
    }
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    entered(namespace.as_fd(), read)
}

/// The network namespace a socket belongs to, which need not be its holder's (a
/// listener made before setns(2), or passed in by systemd to a `PrivateNetwork=`
/// service): ioctl SIOCGSKNS (Linux 4.9, CAP_NET_ADMIN over that namespace). Its
/// inode, and a descriptor to enter it by.
pub fn of_socket(socket: BorrowedFd<'_>) -> io::Result<(u64, OwnedFd)> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGSKNS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    let namespace = unsafe { OwnedFd::from_raw_fd(fd) };
    let inode = std::fs::File::from(namespace.try_clone()?)
        .metadata()?
        .ino();
    Ok((inode, namespace))
}

/// `read`'s result on a thread that enters `namespace` and ends right after.
pub fn entered<T: Send>(
    namespace: BorrowedFd<'_>,
    read: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) with a namespace descriptor this thread borrows; it
                // moves this thread alone, which ends right after.
                if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                read()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace reader failed")))
    })
}

/// What an untouched TCP socket reports in the calling thread's network namespace now:
/// TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT read back as the namespace's
/// `net.ipv4.tcp_keepalive_*` sysctls until someone sets them (tcp(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Untouched {
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
}

impl Untouched {
    pub fn read() -> io::Result<Untouched> {
        let read = |name: &str| -> io::Result<u32> {
            let path = format!("/proc/sys/net/ipv4/{name}");
            std::fs::read_to_string(&path)
                .map_err(|err| io::Error::new(err.kind(), format!("cannot read {path}: {err}")))?
                .trim()
                .parse()
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {err}")))
        };
        Ok(Untouched {
            idle: read("tcp_keepalive_time")?,
            interval: read("tcp_keepalive_intvl")?,
            count: read("tcp_keepalive_probes")?,
        })
    }
}
