//! `keepalive status PID`: a running process's TCP sockets and the keepalive settings
//! in force on each, read from the kernel.
//!
//! Sockets and timers come from `/proc/PID/fd` (which descriptors are sockets, by inode)
//! and `/proc/PID/net/tcp{,6}` (addresses, state, timers, in the process's own network
//! namespace). Option values come from getsockopt(2) on duplicates of the descriptors
//! made with pidfd_getfd(2). A pidfd pins the process for the whole reading, so a
//! process that exits meanwhile is reported as such, never confused with a new process
//! that got its PID. Whatever cannot be read is said, with the reason, and shown as
//! unknown rather than guessed.
use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, RawFd};
use std::process::ExitCode;

use crate::failure::{self, Failure};
use crate::options::Options;

mod inode;
mod mechanism;
pub mod process;
mod render;
pub mod tcp_table;

use process::Pidfd;
use tcp_table::Entry;

/// Exit status when some of the report could not be read (it is printed all the same).
const PARTIAL: u8 = 3;

pub fn run(pid: i32, json: bool) -> Result<ExitCode, Failure> {
    let report = inspect(pid)?;
    let text = if json {
        render::json(&report)
    } else {
        render::table(&report)
    };
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|err| {
            Failure::with_code(
                1,
                format!("cannot write the status of process {pid}: {err}"),
            )
        })?;
    for problem in &report.problems {
        failure::warn(format_args!("keepalive: {problem}"));
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PARTIAL)
    })
}

/// What was read about a process.
pub struct Report {
    pub pid: i32,
    pub command: Option<String>,
    /// False when `/proc/PID/fd` could not be read: the sockets are then those of the
    /// process's user in its network namespace, without descriptor numbers.
    pub fds_known: bool,
    pub sockets: Vec<Socket>,
    /// What configured the process: the library mapped, a sock_ops program on its
    /// cgroup; empty when neither.
    pub configured_by: Vec<String>,
    /// What could not be read, and why: one sentence each.
    pub problems: Vec<String>,
}

pub struct Socket {
    pub fd: Option<RawFd>,
    pub entry: Entry,
    /// `None` when the options could not be read (see [`Report::problems`]).
    pub options: Option<Options>,
}

/// A process that went away while it was being read.
fn exited_while_read(pid: i32) -> Failure {
    Failure::with_code(1, format!("process {pid} exited while being read"))
}

fn inspect(pid: i32) -> Result<Report, Failure> {
    if pid <= 0 {
        return Err(Failure::with_code(
            2,
            format!("status: PID must be a positive process ID, not {pid}"),
        ));
    }
    let mut problems = Vec::new();
    let pidfd = open_pidfd(pid, &mut problems)?;
    // A file of /proc/PID that is missing means the process is gone, unless the pidfd
    // says it still runs and it has not begun to exit: then this /proc does not show it
    // (hidepid=, or a /proc of another PID namespace).
    let unreadable = |path: &str, err: io::Error| -> Failure {
        match &pidfd {
            Some(pidfd) if pidfd.has_exited() || process::is_exiting(pid) => exited_while_read(pid),
            None if err.kind() == io::ErrorKind::NotFound => exited_while_read(pid),
            Some(_) if err.kind() == io::ErrorKind::NotFound => Failure::with_code(
                1,
                format!(
                    "cannot read {path} although process {pid} runs ({err}); \
                     is /proc mounted with hidepid= or from another PID namespace?"
                ),
            ),
            _ => Failure::with_code(1, format!("cannot read {path}: {err}")),
        }
    };

    let command = process::command(pid);
    let uids = process::uids(pid).map_err(|err| unreadable(&format!("/proc/{pid}/status"), err))?;
    // /proc/PID/fd and /proc/PID/net show the main thread's view, which is empty once
    // the main thread has exited (pthread_exit(3)) while others run on; then read
    // through a live thread.
    let task =
        process::live_thread(pid).map_err(|err| unreadable(&format!("/proc/{pid}/task"), err))?;
    let dir = if task == pid {
        format!("/proc/{pid}")
    } else {
        format!("/proc/{pid}/task/{task}")
    };
    let fds = match process::socket_fds(&dir) {
        Ok(fds) => Some(fds),
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            problems.push(format!(
                "cannot list the descriptors of process {pid} ({dir}/fd: {err}; it takes \
                 ptrace read access to the process: its own user, or root with \
                 CAP_SYS_PTRACE); showing every TCP socket of user {} in its network \
                 namespace instead, which may include other processes' sockets, and no \
                 socket options",
                uids.first().map_or_else(|| "?".to_string(), u32::to_string)
            ));
            None
        }
        Err(err) => return Err(unreadable(&format!("{dir}/fd"), err)),
    };

    let entries = tcp_entries(&dir, &unreadable)?;
    let mut sockets = match &fds {
        Some(fds) => held_sockets(fds, &entries),
        None => owned_sockets(entries, &uids),
    };

    if let (Some(pidfd), Some(_)) = (&pidfd, &fds) {
        if task == pid {
            read_options(pid, pidfd, &mut sockets, &mut problems)?;
        } else {
            match Pidfd::open_thread(task) {
                Ok(thread) => read_options(pid, &thread, &mut sockets, &mut problems)?,
                Err(err) => problems.push(format!(
                    "cannot read the socket options of process {pid}: its main thread has \
                     exited, and reaching its descriptors through thread {task} takes \
                     pidfd_open(2) with PIDFD_THREAD, Linux 6.9 ({err})"
                )),
            }
        }
    }

    let configured_by = mechanism::configured_by(pid);
    let exited = match &pidfd {
        Some(pidfd) => pidfd.has_exited(),
        None => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
    };
    if exited {
        return Err(exited_while_read(pid));
    }
    Ok(Report {
        pid,
        command,
        fds_known: fds.is_some(),
        sockets,
        configured_by,
        problems,
    })
}

/// Both TCP tables of the namespace, by socket inode.
pub fn tcp_entries(
    dir: &str,
    unreadable: &dyn Fn(&str, io::Error) -> Failure,
) -> Result<HashMap<u64, Entry>, Failure> {
    let ticks_per_second = process::ticks_per_second();
    let mut entries = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("{dir}/net/{table}");
        match tcp_table::read(path.as_ref(), ticks_per_second) {
            // Inode 0: TIME-WAIT and embryonic connections, which no descriptor holds.
            Ok(read) => entries.extend(
                read.into_iter()
                    .filter(|e| e.inode != 0)
                    .map(|e| (e.inode, e)),
            ),
            // No tcp6 table: IPv6 is not built into this kernel. (A process that exits
            // meanwhile is caught by the pidfd later.)
            Err(err) if err.kind() == io::ErrorKind::NotFound && table == "tcp6" => {}
            Err(err) => return Err(unreadable(&path, err)),
        }
    }
    Ok(entries)
}

/// The TCP sockets among the process's descriptors, in descriptor order; descriptors of
/// other kinds of sockets (UDP, Unix) find no entry.
fn held_sockets(fds: &[(RawFd, u64)], entries: &HashMap<u64, Entry>) -> Vec<Socket> {
    fds.iter()
        .filter_map(|&(fd, inode)| {
            Some(Socket {
                fd: Some(fd),
                entry: entries.get(&inode)?.clone(),
                options: None,
            })
        })
        .collect()
}

/// Without the descriptors: the sockets owned by one of the process's user IDs,
/// listeners first.
fn owned_sockets(entries: HashMap<u64, Entry>, uids: &[u32]) -> Vec<Socket> {
    let mut owned: Vec<Socket> = entries
        .into_values()
        .filter(|entry| uids.contains(&entry.uid))
        .map(|entry| Socket {
            fd: None,
            entry,
            options: None,
        })
        .collect();
    owned.sort_by_key(|s| (s.entry.state != tcp_table::State::LISTEN, s.entry.local));
    owned
}

/// pidfd_open(2); `None` (with a problem said) on a kernel without it.
fn open_pidfd(pid: i32, problems: &mut Vec<String>) -> Result<Option<Pidfd>, Failure> {
    match Pidfd::open(pid) {
        Ok(pidfd) if pidfd.has_exited() => Err(Failure::with_code(
            1,
            format!("process {pid} has exited (its parent has not collected it yet)"),
        )),
        Ok(pidfd) => Ok(Some(pidfd)),
        Err(err) => match err.raw_os_error() {
            Some(libc::ESRCH) => Err(Failure::with_code(1, format!("no process with PID {pid}"))),
            // pidfd_open(2) refuses a thread that does not lead its thread group:
            // EINVAL before Linux 6.9, ENOENT since.
            Some(libc::EINVAL | libc::ENOENT) => match process::thread_group(pid) {
                Some(leader) if leader != pid => Err(Failure::with_code(
                    2,
                    format!("{pid} is a thread of process {leader}; give the process ID"),
                )),
                _ => Err(Failure::with_code(1, format!("pidfd_open({pid}): {err}"))),
            },
            Some(libc::ENOSYS) => {
                problems.push(format!(
                    "cannot read socket options: this kernel has no pidfd_open(2) \
                     (Linux 5.3) ({err})"
                ));
                Ok(None)
            }
            _ => Err(Failure::with_code(1, format!("pidfd_open({pid}): {err}"))),
        },
    }
}

/// Fills in each socket's options from a duplicate of its descriptor. A descriptor
/// closed meanwhile, or closed and reused for another file, drops its socket: it is no
/// longer one of the process's sockets.
fn read_options(
    pid: i32,
    pidfd: &Pidfd,
    sockets: &mut Vec<Socket>,
    problems: &mut Vec<String>,
) -> Result<(), Failure> {
    let mut refused: Option<io::Error> = None;
    let mut exited = false;
    sockets.retain_mut(|socket| {
        let (Some(fd), None, false) = (socket.fd, &refused, exited) else {
            return true;
        };
        let dup = match pidfd.get_socket(fd, socket.entry.inode) {
            Ok(Some(dup)) => dup,
            Ok(None) => return false,
            // The process is exiting and has released its descriptors; its pidfd polls
            // readable only once the exit is complete.
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {
                exited = true;
                return true;
            }
            Err(err) => {
                refused = Some(err);
                return true;
            }
        };
        match Options::read(dup.as_fd()) {
            Ok(read) => socket.options = Some(read),
            Err(err) => problems.push(format!(
                "cannot read the options of descriptor {fd} of process {pid}: getsockopt: {err}"
            )),
        }
        true
    });
    if let Some(err) = refused {
        let why = match err.raw_os_error() {
            Some(libc::EPERM) => {
                "it takes ptrace attach access to the process: its own real user, or \
                 root with CAP_SYS_PTRACE, and no security module refusing it (such as \
                 Yama's ptrace_scope)"
            }
            Some(libc::ENOSYS) => "this kernel has no pidfd_getfd(2), which came in Linux 5.6",
            _ => "options are shown as unknown",
        };
        problems.push(format!(
            "cannot read the socket options of process {pid} (pidfd_getfd: {err}); {why}"
        ));
    }
    if exited {
        return Err(exited_while_read(pid));
    }
    Ok(())
}
