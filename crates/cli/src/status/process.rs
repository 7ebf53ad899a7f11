//! The process being looked at: a pidfd that pins its identity, its descriptors and
//! its user, read from `/proc`.
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pidfd (pidfd_open(2), Linux 5.3): refers to one process for as long as it is
/// open, so a PID reused after the process exits is never mistaken for it.
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// pidfd_open(2) takes no permission: any process may name any other.
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open(2) takes a PID and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// A pidfd for one thread (PIDFD_THREAD, Linux 6.9), whose descriptors
    /// [`Pidfd::get_fd`] then reads: those of the process, which its threads share.
    pub fn open_thread(tid: i32) -> io::Result<Pidfd> {
        // SAFETY: as in `open`, with the PIDFD_THREAD flag.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, libc::PIDFD_THREAD) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// A duplicate of the process's descriptor `fd` (pidfd_getfd(2), Linux 5.6): the
    /// same open file, so the same socket, with close-on-exec set. The kernel allows it
    /// only with ptrace attach permission over the process (PTRACE_MODE_ATTACH_REALCREDS).
    pub fn get_fd(&self, fd: RawFd) -> io::Result<OwnedFd> {
        // SAFETY: pidfd_getfd(2) takes a pidfd, a descriptor number of that process and
        // flags (0), and returns a new descriptor or -1.
        let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.0.as_raw_fd(), fd, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(dup as RawFd) })
    }

    /// A duplicate of descriptor `fd` when it still refers to the socket `inode` it
    /// was listed with; `None` when the process closed it since, or the number now
    /// holds another file. A busy server closes and reuses descriptor numbers all the
    /// time, so between listing `/proc/PID/fd` and duplicating, either happens.
    pub fn get_socket(&self, fd: RawFd, inode: u64) -> io::Result<Option<OwnedFd>> {
        match self.get_fd(fd) {
            Err(err) if err.raw_os_error() == Some(libc::EBADF) => Ok(None),
            Err(err) => Err(err),
            Ok(dup) => Ok((super::inode::inode(dup.as_fd())? == inode).then_some(dup)),
        }
    }

    /// A pidfd polls readable once its process has exited (pidfd_open(2)).
    pub fn has_exited(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, live for the call; timeout 0 never blocks.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        ready != 0
    }
}

/// The socket descriptors in `DIR/fd` (DIR is `/proc/PID` or `/proc/PID/task/TID`),
/// with each socket's inode, in descriptor order. Listing them needs ptrace read access
/// (PTRACE_MODE_READ_FSCREDS, proc(5)). A descriptor closed while the directory is read
/// is left out.
pub fn socket_fds(dir: &str) -> io::Result<Vec<(RawFd, u64)>> {
    let mut sockets = Vec::new();
    for entry in fs::read_dir(format!("{dir}/fd"))? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let target = match fs::read_link(entry.path()) {
            Ok(target) => target,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok());
        if let Some(inode) = inode {
            sockets.push((fd, inode));
        }
    }
    sockets.sort_unstable();
    Ok(sockets)
}

/// Socket inode -> the first process holding it, and its descriptor there, from every
/// readable /proc/PID/fd: one pass over every process. A process whose main thread has
/// exited shows none there, and is read through a live thread ([`fd_dir`]).
pub fn socket_owners() -> HashMap<u64, (i32, RawFd)> {
    let mut owners = HashMap::new();
    for pid in pids() {
        let fds = match socket_fds(&format!("/proc/{pid}")) {
            Ok(fds) if fds.is_empty() => fd_dir(pid).and_then(|dir| socket_fds(&dir)),
            read => read,
        };
        for (fd, inode) in fds.into_iter().flatten() {
            owners.entry(inode).or_insert((pid, fd));
        }
    }
    owners
}

/// The directory whose `fd` lists the process's descriptors: `/proc/PID`, or, once its
/// main thread has exited (pthread_exit(3)) while others run on, which leaves
/// `/proc/PID/fd` empty, `/proc/PID/task/TID` of a live thread.
pub fn fd_dir(pid: i32) -> io::Result<String> {
    let task = live_thread(pid)?;
    Ok(if task == pid {
        format!("/proc/{pid}")
    } else {
        format!("/proc/{pid}/task/{task}")
    })
}

/// A pidfd through which the process's descriptors can be duplicated: `pidfd` itself,
/// or, when its main thread has exited, one for a live thread (PIDFD_THREAD, Linux
/// 6.9), since pidfd_getfd(2) reads the files of the task the pidfd names.
pub fn reach(pid: i32) -> io::Result<Option<Pidfd>> {
    let task = live_thread(pid)?;
    if task == pid {
        Ok(None)
    } else {
        Pidfd::open_thread(task).map(Some)
    }
}

/// Every process ID in /proc.
pub fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The process's real, effective, saved and file system user IDs (`Uid:` in
/// `/proc/PID/status`), readable by anyone. A socket's owner is the file system user of
/// the process that created it.
pub fn uids(pid: i32) -> io::Result<Vec<u32>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uids = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .map(|ids| {
            ids.split_whitespace()
                .filter_map(|id| id.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Ok(uids)
}

/// A thread of the process that has not exited: the process ID itself unless its main
/// thread is a zombie (it called pthread_exit(3)) while other threads run on.
pub fn live_thread(pid: i32) -> io::Result<i32> {
    if !is_zombie(&format!("/proc/{pid}/stat"))? {
        return Ok(pid);
    }
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let Some(tid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if tid != pid && !is_zombie(&format!("/proc/{pid}/task/{tid}/stat")).unwrap_or(true) {
            return Ok(tid);
        }
    }
    Ok(pid)
}

/// The fields of a `stat` file (proc(5)) after the command name, from the state on.
fn stat_fields(stat: &str) -> io::Result<Vec<String>> {
    // The command name inside may be any bytes a program chose (prctl(2) PR_SET_NAME).
    let stat = String::from_utf8_lossy(&fs::read(stat)?).into_owned();
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// The state letter of a `stat` file (proc(5)) is Z or X: the task has exited.
fn is_zombie(stat: &str) -> io::Result<bool> {
    let fields = stat_fields(stat)?;
    Ok(matches!(
        fields.first().map(String::as_str),
        Some("Z" | "X")
    ))
}

/// When the process started, in clock ticks after boot (proc(5) /proc/PID/stat, field
/// 22): with the PID, a name no later process gets. `None` when it is gone, or a zombie
/// with no live thread left, which holds no descriptor any more.
pub fn start_time(pid: i32) -> Option<u64> {
    let fields = stat_fields(&format!("/proc/{pid}/stat")).ok()?;
    let zombie = matches!(fields.first().map(String::as_str), Some("Z" | "X"));
    if zombie && live_thread(pid).ok()? == pid {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The process has begun to exit: PF_EXITING (0x4) in the flags of
/// `/proc/PID/stat`. From then until its pidfd polls readable, the kernel has already
/// released its namespaces (do_exit() calls exit_task_namespaces() before
/// exit_notify()), so `/proc/PID/net` is missing although the process is not yet gone.
pub fn is_exiting(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    stat_fields(&format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|fields| fields.get(6)?.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_EXITING != 0)
}

/// The thread group (process) a thread ID belongs to (`Tgid:` in `/proc/PID/status`).
pub fn thread_group(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|id| id.trim().parse().ok())
}

/// The process's command name (`/proc/PID/comm`), readable by anyone.
pub fn command(pid: i32) -> Option<String> {
    let comm = fs::read(format!("/proc/{pid}/comm")).ok()?;
    Some(
        String::from_utf8_lossy(&comm)
            .trim_end_matches('\n')
            .to_string(),
    )
}

/// `USER_HZ`, the unit of clock ticks in `/proc` files.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}
