//! What `attach` changed, kept for `detach`: one file per process, named by its pid and
//! start time, a line per changed socket: its inode, with its options before and after.
//!
//! A record outlives its process when a child forked before the exit still holds the
//! sockets, so `detach` of that child takes the lines of the sockets it holds from the
//! records of processes that are gone ([`Place::find`]); a record none of whose
//! sockets any process holds any more is swept ([`Place::sweep`]).
//!
//! Every record is reached through a [`Place`]: its directory, opened without following
//! a symbolic link anywhere on the way, and locked while one `attach` or `detach`
//! judges, changes and records, so two of them never judge the same socket at once. A
//! record is replaced whole, written beside it and renamed over it (rename(2) is
//! atomic), never cut and rewritten in place: a full file system leaves the old record
//! or the new one, never half of either.

use std::collections::HashSet;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::kernel::live;
use crate::options::Options;
use crate::status::process;

/// A socket `attach` changed: its inode, its options before and after.
pub type Change = (u64, Options, Options);

/// Where this user's `attach` records what it changed: /run/keepalive/attach for
/// root, the user's own runtime directory ($XDG_RUNTIME_DIR/keepalive/attach, or
/// /run/user/UID where pam_systemd puts it) otherwise; either is gone at the next boot
/// with every process it names.
pub fn dir() -> PathBuf {
    // SAFETY: geteuid(2) cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from(ROOT);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(runtime) => Path::new(&runtime).join("keepalive/attach"),
        None => PathBuf::from(format!("/run/user/{uid}/keepalive/attach")),
    }
}

const ROOT: &str = "/run/keepalive/attach";

/// Where `detach` looks for what was attached to a process owned by `owner`: this
/// user's place, root's, and the owner's runtime directory (`/run/user/UID`, where
/// pam_systemd puts `$XDG_RUNTIME_DIR`), since root or the owner may have attached it.
pub fn places(owner: u32) -> Vec<PathBuf> {
    let mut places = vec![
        dir(),
        PathBuf::from(ROOT),
        PathBuf::from(format!("/run/user/{owner}/keepalive/attach")),
    ];
    places.sort();
    places.dedup();
    places
}

/// The name of `pid`'s record: its pid and start time, so that a pid used again by
/// another process never matches; `None` when the process is gone, or a zombie.
pub fn name(pid: i32) -> Option<String> {
    process::start_time(pid).map(|started| format!("{pid}-{started}"))
}

/// The owner of `pid`: the user of its /proc directory, its effective user.
pub fn owner(pid: i32) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(format!("/proc/{pid}"))?.uid())
}

/// The largest record read: a line of at most 77 bytes per socket, for a million.
const MAX_RECORD: u64 = 77 << 20;

/// A directory of records, open and locked ([`Place::lock`]) until dropped.
pub struct Place {
    path: PathBuf,
    dir: OwnedFd,
    /// The lock, held until the place is dropped; `None` where this user may not write.
    lock: Option<File>,
}

/// The lock file in each place.
const LOCK: &str = ".lock";

impl Place {
    /// This user's place ([`dir`]), made when missing: where `attach` records.
    pub fn own() -> io::Result<Place> {
        let path = dir();
        std::fs::create_dir_all(&path)?;
        let place = Place::open(&path)?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        place.writable()?;
        Ok(place)
    }

    /// The place at `path`, locked; `None` when there is none. Opened with openat2(2)
    /// `RESOLVE_NO_SYMLINKS` (Linux 5.6, like pidfd_getfd): root's `detach` reads a
    /// user's runtime directory, where the user could put a link in place of any
    /// component of `keepalive/attach` to send root's reads and removals elsewhere.
    /// Everything below goes through this descriptor (openat, renameat, unlinkat).
    pub fn open(path: &Path) -> io::Result<Option<Place>> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: open_how is three integers, for which all zeroes is a valid value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_NO_SYMLINKS;
        // SAFETY: openat2(2) reads the NUL-terminated path and `how`, of the size given,
        // both live for the call, and returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                c_path.as_ptr(),
                &raw const how,
                size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::NotFound => Ok(None),
                _ => Err(io::Error::new(
                    err.kind(),
                    format!("{}: {err}", path.display()),
                )),
            };
        }
        // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
        let dir = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let mut place = Place {
            path: path.to_owned(),
            dir,
            lock: None,
        };
        place.lock = place.lock()?;
        Ok(Some(place))
    }

    /// Takes the place's lock: flock(2) on its `.lock` file, mode 0600, never on the
    /// directory, which anyone who may read it could open and lock to make root's
    /// `attach` wait for ever. A user who may not write here (root's place, for a
    /// user's `detach`, which only reads it) takes none. A holder that never lets go
    /// (a user holding the lock of the user's own place) is waited for ten seconds,
    /// then named.
    fn lock(&self) -> io::Result<Option<File>> {
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_NONBLOCK;
        let file = match self.open_at(LOCK, flags, 0o600) {
            Ok(file) => file,
            Err(err) if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EROFS)) => {
                return Ok(None);
            }
            Err(err) => return Err(io::Error::new(err.kind(), self.locked(&err))),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // SAFETY: flock(2) on a descriptor `file` owns; the lock goes with it.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Some(file));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock || std::time::Instant::now() > deadline {
                return Err(io::Error::new(err.kind(), self.locked(&err)));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn locked(&self, err: &io::Error) -> String {
        format!(
            "{}: {err} (another `keepalive attach` or `detach` holds it, or someone who \
             may write there)",
            self.path.join(LOCK).display()
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this user may add and remove records here (faccessat(2), as access(2)).
    pub fn writable(&self) -> io::Result<()> {
        // SAFETY: faccessat(2) reads the NUL-terminated path "." relative to a live
        // directory descriptor.
        if unsafe { libc::faccessat(self.dir.as_raw_fd(), c".".as_ptr(), libc::W_OK, 0) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The record `name`; `None` when there is none. A record that cannot be read or
    /// parsed is an error that names the file and line: taking it for "attach changed
    /// nothing" would leave the settings on for good. In a user's runtime directory the
    /// user decides what sits under a record's name, so root's `detach` reads only a
    /// regular file of a record's size: opened with O_NOFOLLOW (a link is refused) and
    /// O_NONBLOCK (a FIFO cannot make it wait).
    pub fn read(&self, name: &str) -> Result<Option<Vec<Change>>, String> {
        let shown = self.path.join(name);
        let mut text = String::new();
        let read = self
            .open_at(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)
            .and_then(|file| {
                let metadata = file.metadata()?;
                if !metadata.is_file() || metadata.len() > MAX_RECORD {
                    return Err(io::Error::other(format!(
                        "not a record: a regular file of at most {MAX_RECORD} bytes"
                    )));
                }
                file.take(MAX_RECORD).read_to_string(&mut text)
            });
        match read {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("cannot read {}: {err}", shown.display())),
        }
        text.lines()
            .enumerate()
            .map(|(n, line)| {
                parse_line(line).ok_or_else(|| {
                    format!(
                        "{}, line {}: {line:?} is not `INODE` and two sets of five options",
                        shown.display(),
                        n + 1
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Replaces the record `name` with `changes`, whole, or removes it when there are
    /// none: written to a new file beside it, then renamed over it.
    pub fn write(&self, name: &str, changes: &[Change]) -> io::Result<()> {
        let shown = |err: io::Error| {
            io::Error::new(
                err.kind(),
                format!("{}: {err}", self.path.join(name).display()),
            )
        };
        if changes.is_empty() {
            return match self.unlink(name) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(shown(err)),
                _ => Ok(()),
            };
        }
        let temporary = format!(".{name}.{}", std::process::id());
        let written = self
            .open_at(
                &temporary,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o644,
            )
            .and_then(|mut file| {
                file.write_all(text(changes).as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| self.rename(&temporary, name));
        if written.is_err() {
            let _ = self.unlink(&temporary);
        }
        written.map_err(shown)
    }

    /// The records that hold what was attached to a process: its own (`own`), and those
    /// of other processes, gone or not, that name sockets it holds (`held`): a socket
    /// outlives the process `attach` named in a child forked before it exited, or is
    /// handed to another with SCM_RIGHTS. They are cut to those sockets. A damaged
    /// record of its own is an error; a damaged one of another process, which may or
    /// may not concern it, is named in `skipped` and left for a person to look at.
    pub fn find(
        &self,
        own: &str,
        held: &HashSet<u64>,
        skipped: &mut Vec<String>,
    ) -> Result<Vec<(String, Vec<Change>)>, String> {
        let mut found = Vec::new();
        if let Some(changes) = self.read(own)? {
            found.push((own.to_string(), changes));
        }
        for name in self.names().into_iter().filter(|name| name != own) {
            match self.read(&name) {
                Ok(Some(mut changes)) => {
                    changes.retain(|(inode, ..)| held.contains(inode));
                    if !changes.is_empty() {
                        found.push((name, changes));
                    }
                }
                Ok(None) => {}
                Err(why) => skipped.push(why),
            }
        }
        Ok(found)
    }

    /// Removes the records here of processes gone none of whose sockets any process
    /// still holds: nothing is left to put back; and those of kernel routes whose cgroup
    /// is gone ([`live::sweep`]). Housekeeping: a record it cannot read stays.
    pub fn sweep(&self) {
        live::sweep(&self.path);
        let orphans = self.orphans();
        if orphans.is_empty() {
            return;
        }
        let held: HashSet<u64> = process::socket_owners().into_keys().collect();
        for name in orphans {
            if let Ok(Some(changes)) = self.read(&name) {
                if !changes.iter().any(|(inode, ..)| held.contains(inode)) {
                    let _ = self.unlink(&name);
                }
            }
        }
    }

    /// The process records here: the files named `PID-START`.
    fn names(&self) -> Vec<String> {
        let listing = format!("/proc/self/fd/{}", self.dir.as_raw_fd());
        let Ok(entries) = std::fs::read_dir(listing) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|file| {
                file.split_once('-').is_some_and(|(pid, started)| {
                    pid.parse::<i32>().is_ok() && started.parse::<u64>().is_ok()
                })
            })
            .collect()
    }

    /// The process records here whose process is gone: no live process has that pid
    /// and start time.
    fn orphans(&self) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|file| {
                let pid = file.split_once('-').and_then(|(pid, _)| pid.parse().ok());
                pid.and_then(name).is_none_or(|live| live != *file)
            })
            .collect()
    }

    fn open_at(&self, name: &str, flags: i32, mode: libc::mode_t) -> io::Result<File> {
        let c_name = CString::new(name).map_err(io::Error::other)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: openat(2) reads a NUL-terminated name relative to a live directory
        // descriptor, and returns a new descriptor or -1.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), c_name.as_ptr(), flags, mode) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (
            CString::new(from).map_err(io::Error::other)?,
            CString::new(to).map_err(io::Error::other)?,
        );
        let dir = self.dir.as_raw_fd();
        // SAFETY: renameat(2) reads two NUL-terminated names relative to a live
        // directory descriptor.
        if unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn unlink(&self, name: &str) -> io::Result<()> {
        let name = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: unlinkat(2) reads a NUL-terminated name relative to a live directory
        // descriptor; it removes the entry, never what a link there points to.
        if unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// `existing` with `changes` added: an earlier line for the same inode keeps its
/// "before", so that `detach` goes back to what the program had.
pub fn merged(existing: &[Change], changes: &[Change]) -> Vec<Change> {
    let mut all = existing.to_vec();
    for change in changes {
        if !all.iter().any(|(inode, ..)| *inode == change.0) {
            all.push(*change);
        }
    }
    all
}

fn text(changes: &[Change]) -> String {
    let mut text = String::new();
    for (inode, before, after) in changes {
        let _ = writeln!(text, "{inode} {} {}", numbers(before), numbers(after));
    }
    text
}

fn numbers(o: &Options) -> String {
    format!(
        "{} {} {} {} {}",
        u8::from(o.keepalive),
        o.idle,
        o.interval,
        o.count,
        o.user_timeout
    )
}

/// `INODE` and two sets of `KEEPALIVE IDLE INTERVAL COUNT USER_TIMEOUT`, as `text`
/// writes them; `None` for anything else.
fn parse_line(line: &str) -> Option<Change> {
    let n: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if n.len() != 11 {
        return None;
    }
    let options = |v: &[u64]| -> Option<Options> {
        Some(Options {
            keepalive: match v[0] {
                0 => false,
                1 => true,
                _ => return None,
            },
            idle: u32::try_from(v[1]).ok()?,
            interval: u32::try_from(v[2]).ok()?,
            count: u32::try_from(v[3]).ok()?,
            user_timeout: u32::try_from(v[4]).ok()?,
        })
    };
    Some((n[0], options(&n[1..6])?, options(&n[6..11])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_back_as_written() {
        let before = Options {
            keepalive: false,
            idle: 7200,
            interval: 75,
            count: 9,
            user_timeout: 0,
        };
        let after = Options {
            keepalive: true,
            idle: 60,
            ..before
        };
        let line = text(&[(42, before, after)]);
        assert_eq!(parse_line(line.trim_end()), Some((42, before, after)));
    }

    #[test]
    fn anything_else_is_no_line() {
        for line in [
            "garbage",
            "",
            "1 0 7200 75 9 0 1 60 75 9",
            "1 0 7200 75 9 0 1 60 75 9 0 7",
            "1 2 7200 75 9 0 1 60 75 9 0",
            "1 0 7200 75 9 0 1 60 75 9 4294967296",
            "1 0 7200 75 9 0 1 60 75 9 -5",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }
}
