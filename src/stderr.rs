//! Where the library's lines go, and the rules that make a line harmless to the
//! program whatever fd 2 is. Each rule is stated here once and tested as a matrix
//! (tests/stderr_matrix.rs: every kind of fd 2 below × the program's signal states ×
//! the moment of the line, with and without the library).
//!
//! 1. **Only the stderr the process started with.** A line goes to fd 2 only while fd 2
//!    is still the file it referred to when the library loaded: device, inode and
//!    birth time ([`sys::file_id`], statx(2) with `AT_STATX_DONT_SYNC`, which never
//!    asks a FUSE or NFS server). A daemon that reopens fd 2 as its data file, a pipe
//!    or a connection gets nothing spliced into its data, even when its data file got
//!    the old stderr's inode number.
//! 2. **Each kind of file its own way** (the kind comes from the same statx):
//!    - a *terminal*: written through a file description of the library's own, opened
//!      non-blocking from `/proc/self/fd/2`, unless this process's group is in the
//!      background of its controlling terminal while `TOSTOP` is set — the terminal's
//!      owner asked background jobs not to write, and the write would stop the program
//!      with SIGTTOU (termios(3)). A pty *master* on fd 2 is the keyboard of whatever
//!      runs on the slave: nothing;
//!    - a *pipe or FIFO*: `RWF_NOWAIT`; where the kernel has no such write for pipes
//!      (before 5.8), through a non-blocking description of its own, as a terminal;
//!    - a *socket*: only an `AF_UNIX` stream that is not also fd 0 and whose own end
//!      has no name of its own — journald's stream (a service's default stderr), one end
//!      of a socketpair. The server end of an accepted connection carries its
//!      listener's name, and a socket on fd 0 is a channel the program reads: both are
//!      the program's peer. Sent with `MSG_DONTWAIT | MSG_NOSIGNAL`. Inet sockets
//!      carry data, never lines;
//!    - a *regular file*: a plain write where its mount writes locally (disk and
//!      memory file systems, [`mounts::is_local`]) and none when it has less than a
//!      mebibyte to spare ([`ROOM`]); elsewhere — NFS, SMB, FUSE, a mount this process cannot see,
//!      anything not known — only a write that cannot wait (`RWF_NOWAIT`), so a
//!      server that never answers cannot hold the program;
//!    - anything else — another character device, an eventfd, fd 2 closed: nothing.
//! 3. **No signal reaches the program, and none is taken from it.** The write runs with
//!    the signals it could raise blocked (SIGPIPE for pipes, SIGXFSZ for files,
//!    SIGTTOU for terminals), is skipped when one of them is already pending, and
//!    takes back only the one its own error proves it raised ([`sys::without_signals`]).
//! 4. **Never waits, never a cancellation point**: raw system calls, none of which
//!    blocks as used. A line that cannot go out now is dropped.
//!
//! What stays open, because no library can close it without a lock around the
//! program's own calls or a way to ask the kernel that does not exist: another thread
//! may replace fd 2 between the identity check and a write through fd 2 (sockets,
//! files, pipes with `RWF_NOWAIT`); and a file system frozen by fsfreeze(8) holds
//! every write to it, a local file's line included, until it is thawed.

use core::ffi::c_int;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::mounts;
use crate::sys::{self, File, FileId, Signals};

const STDERR: c_int = libc::STDERR_FILENO;

const UNKNOWN: u8 = 0;
const RECORDED: u8 = 1;
/// fd 2 was closed, not a file fstat could name, or the program's peer, when first
/// looked at.
const NONE: u8 = 2;

/// fd 2's identity at load. No thread ever claims the recording: any thread that finds
/// `STATE` unknown looks at fd 2 and stores what it saw, then publishes with a Release
/// store. Racers store the same identity, so nobody waits and a fork at any instant
/// leaves a child that simply records again. (Should fd 2 change while two threads
/// race here, the stored identity may match neither file: lines are then dropped,
/// never misdirected.)
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);
static BIRTH: AtomicU64 = AtomicU64::new(0);

/// The free space a file system must keep after a line: a line that takes the last of
/// it would make the program's own next write fail with ENOSPC.
const ROOM: u64 = 1 << 20;

/// Records what fd 2 is now, unless that was done already. The constructor calls it,
/// and so does the first line, should another library's constructor make the library
/// write before its own constructor has run.
pub fn record() {
    if STATE.load(Ordering::Acquire) != UNKNOWN {
        return;
    }
    let state = match sys::file_id(STDERR) {
        Some(id) if !id.is_socket() || !is_fd_0(id) => {
            DEV.store(id.dev, Ordering::Relaxed);
            INO.store(id.ino, Ordering::Relaxed);
            BIRTH.store(id.birth, Ordering::Relaxed);
            RECORDED
        }
        _ => NONE,
    };
    STATE.store(state, Ordering::Release);
}

/// Whether fd 0 is the same file as `id`: inetd and systemd's `Accept=yes` with
/// `StandardInput=socket` put the connection on fds 0, 1 and 2 alike. Asked only of a
/// socket, so that the usual stderr (a terminal, pipe or file) costs no system call
/// more at load.
fn is_fd_0(id: FileId) -> bool {
    sys::file_id(libc::STDIN_FILENO) == Some(id)
}

/// Whether `id` is the file recorded at load.
fn is_recorded(id: FileId) -> bool {
    (id.dev, id.ino, id.birth)
        == (
            DEV.load(Ordering::Relaxed),
            INO.load(Ordering::Relaxed),
            BIRTH.load(Ordering::Relaxed),
        )
}

/// fd 2 now, if it is still the file recorded at load.
fn unchanged() -> Option<FileId> {
    record();
    if STATE.load(Ordering::Acquire) != RECORDED {
        return None;
    }
    sys::file_id(STDERR).filter(|&now| is_recorded(now))
}

/// Writes one line to fd 2 by the rules above, or drops it. `errno` is the caller's
/// business (see `SavedErrno`).
pub fn write(line: &[u8]) {
    let Some(id) = unchanged() else {
        return;
    };
    match id.kind {
        libc::S_IFCHR => match sys::terminal(STDERR) {
            Some(tty) if tty.master || (tty.background && tty.tostop) => {}
            Some(_) => sys::without_signals(Signals::one(libc::SIGTTOU), || own_writer(line)),
            None => {}
        },
        libc::S_IFIFO => sys::without_signals(Signals::one(libc::SIGPIPE), || {
            match sys::write_now(STDERR, line) {
                // EOPNOTSUPP: pipes without RWF_NOWAIT (before 5.8); EINVAL and
                // ENOSYS: kernels without RWF_NOWAIT or pwritev2 (4.14, 4.6).
                Err(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => own_writer(line),
                done => done,
            }
        }),
        libc::S_IFREG => sys::without_signals(Signals::one(libc::SIGXFSZ), || {
            let mount = id.mount.or_else(mounts::mount_of_stderr);
            if !mount.is_some_and(mounts::is_local) {
                sys::write_now(STDERR, line)
            } else if sys::free_bytes(STDERR).is_some_and(|free| free >= ROOM) {
                sys::write(STDERR, line)
            } else {
                Err(libc::ENOSPC)
            }
        }),
        libc::S_IFSOCK if peerless_unix_socket() => {
            let _ = sys::send_now(STDERR, line);
        }
        _ => {}
    }
}

/// Whether the socket on fd 2 may take a line (rule 2): an `AF_UNIX` stream, its own
/// end unnamed. A datagram or seqpacket socket carries messages, which a line would
/// join. That it is not fd 0 was settled when fd 2 was recorded. Any failed question
/// (EPERM or EACCES from a seccomp filter or an LSM) proves nothing: refuse.
fn peerless_unix_socket() -> bool {
    let option = |name| sys::int_option(STDERR, libc::SOL_SOCKET, name);
    option(libc::SO_DOMAIN) == Ok(libc::AF_UNIX)
        && option(libc::SO_TYPE) == Ok(libc::SOCK_STREAM)
        && sys::unix_end_named(STDERR) == Some(false)
}

/// Writes through a file description of the library's own, opened non-blocking from
/// `/proc/self/fd/2`: the shared description's `O_NONBLOCK` belongs to the program and
/// every process sharing it, and is never touched. The new description is checked to
/// be the recorded file before anything is written. Without `/proc` the line is
/// dropped.
fn own_writer(line: &[u8]) -> Result<usize, c_int> {
    let writer = File::open_nonblocking_writer(c"/proc/self/fd/2").ok_or(libc::ENOENT)?;
    if !sys::file_id(writer.fd()).is_some_and(is_recorded) {
        return Err(libc::ESTALE);
    }
    sys::write(writer.fd(), line)
}
