//! cgroup (v2) directories: a process's own, found through a mounted cgroup2 or one
//! mounted for a moment; and the cgroup of its own that `run --kernel` makes for its
//! program and removes again whatever happens ([`Scope`]).
//!
//! Everything after the first look is done through directory descriptors: a cgroup2
//! hierarchy this command mounts itself is detached again at once (umount2(2)
//! `MNT_DETACH`), so that no mount outlives even a `kill -9` of the command, while
//! the descriptors keep the hierarchy reachable for as long as the command needs it.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::failure;

/// Where the command mounts a cgroup2 hierarchy for a moment when none is mounted: a
/// fresh directory made here, removed again right after.
const MOUNT_PARENT: &str = "/run";

/// The directory of a process's cgroup in the v2 hierarchy, open.
pub struct Own {
    dir: OwnedFd,
    /// Its path in the hierarchy, as /proc/PID/cgroup gives it.
    path: String,
    /// How it was found, for messages.
    pub place: String,
}

impl Own {
    /// Its path in the hierarchy, as /proc/PID/cgroup gives it.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Whether the cgroup at hierarchy `path` is gone, or is another than the one whose id
/// (its directory's inode, which cgroup v2 never gives a later cgroup) was `id`: a
/// service restarted gets a new cgroup at the same path. `false` when it cannot tell
/// (no cgroup2 file system mounted).
pub fn is_gone(path: &str, id: u64) -> bool {
    let Ok(Some(mount)) = mounted() else {
        return false;
    };
    match std::fs::metadata(mount.join(path.trim_start_matches('/'))) {
        Ok(meta) => std::os::unix::fs::MetadataExt::ino(&meta) != id,
        Err(err) => err.kind() == std::io::ErrorKind::NotFound,
    }
}

/// This process's cgroup in the v2 hierarchy: through a mounted cgroup2 file system
/// when there is one (systemd hosts: /sys/fs/cgroup; hybrid ones: /sys/fs/cgroup/unified),
/// else through one mounted for the moment it takes to open it.
pub fn own() -> Result<Own, String> {
    of("self")
}

/// The cgroup of process `pid` (a number, or `self`), found as [`own`] finds its own.
pub fn of(pid: &str) -> Result<Own, String> {
    at(&path_of(pid)?)
}

/// The cgroup of the systemd service this process runs for: its own, or the parent of
/// the `.control` cgroup systemd puts control processes in when the service has
/// `Delegate=` (systemd.resource-control(5)).
pub fn of_service() -> Result<Own, String> {
    let path = path_of("self")?;
    at(path.strip_suffix("/.control").unwrap_or(&path))
}

/// The cgroup at `path` in the v2 hierarchy (as /proc/PID/cgroup and systemd's
/// `ControlGroup` property give it).
pub fn at(path: &str) -> Result<Own, String> {
    // A cgroup outside this process's cgroup namespace shows as `/..` (cgroup_namespaces(7)):
    // it cannot be reached from here, and must not be taken for a path next to the mount.
    if path.split('/').any(|part| part == "..") {
        return Err(format!(
            "cgroup {path} lies outside this process's cgroup namespace"
        ));
    }
    if let Some(mount) = mounted()? {
        let dir = mount.join(path.trim_start_matches('/'));
        let fd = open_dir(&dir).map_err(|err| format!("cannot open {}: {err}", dir.display()))?;
        return Ok(Own {
            dir: fd,
            path: path.to_string(),
            place: dir.display().to_string(),
        });
    }
    let mount = TemporaryMount::new()?;
    let dir = mount.0.join(path.trim_start_matches('/'));
    let fd = open_dir(&dir).map_err(|err| format!("cannot open {}: {err}", dir.display()))?;
    Ok(Own {
        dir: fd,
        path: path.to_string(),
        place: format!(
            "{path} (cgroup2 mounted for a moment on {})",
            mount.0.display()
        ),
    })
}

impl Own {
    /// Refuses a cgroup that holds processes nobody named: the root of the hierarchy,
    /// where every process of the host is whose cgroup is not its own of v2 — on a
    /// host whose systemd keeps units in cgroup v1 only (the legacy layout), a
    /// service's and a scope's processes among them. A program attached there would
    /// configure every such process's connections until reboot.
    pub fn refuse_shared(&self) -> Result<(), String> {
        if self.path == "/" {
            return Err(format!(
                "{} is the root of the cgroup v2 hierarchy, which every process of \
                 this host without a cgroup v2 of its own shares (a systemd in the \
                 legacy cgroup layout gives its units none): the kernel route attaches \
                 only to a cgroup of the program's own",
                self.place
            ));
        }
        Ok(())
    }

    /// Every process in this cgroup and the cgroups under it.
    pub fn processes(&self) -> io::Result<Vec<i32>> {
        fn walk(dir: &OwnedFd, into: &mut Vec<i32>) -> io::Result<()> {
            let mut text = String::new();
            File::from(open_at(Some(dir.as_fd()), c"cgroup.procs", libc::O_RDONLY)?)
                .read_to_string(&mut text)?;
            into.extend(text.lines().filter_map(|pid| pid.parse::<i32>().ok()));
            for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    let name =
                        CString::new(entry.file_name().as_bytes()).map_err(io::Error::other)?;
                    walk(
                        &open_at(Some(dir.as_fd()), &name, libc::O_RDONLY | libc::O_DIRECTORY)?,
                        into,
                    )?;
                }
            }
            Ok(())
        }
        let mut pids = Vec::new();
        walk(&self.dir, &mut pids)?;
        Ok(pids)
    }

    /// The open directory, to ask what is attached to it.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// One of its files (`cgroup.procs`), open for writing.
    pub fn open(&self, file: &str) -> io::Result<OwnedFd> {
        let name = CString::new(file).map_err(io::Error::other)?;
        open_at(Some(self.dir.as_fd()), &name, libc::O_WRONLY)
    }
}

/// The systemd service this process runs for, by its cgroup v2 path: the innermost
/// component naming a `.service` unit (its `.control`, or a sub-cgroup it delegates,
/// lies below it). A user's manager, `user@UID.service`, is no service of its own.
pub fn own_service() -> Option<String> {
    let path = path_of("self").ok()?;
    path.split('/')
        .rev()
        .find(|part| part.ends_with(".service") && !part.starts_with("user@"))
        .map(str::to_string)
}

/// Whether a cgroup2 file system is mounted at the root of its hierarchy: on a systemd
/// host, whether systemd gives units cgroups of v2 (the unified or the hybrid layout)
/// rather than v1 only (the legacy one).
pub fn unified() -> bool {
    mounted().is_ok_and(|mount| mount.is_some())
}

/// A name no other run has, in this or any pid namespace, now or after a reboot: 64
/// random bits (getrandom(2)), as hex.
pub fn unique_token() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom(2) writes at most the buffer's length into it. The system
    // call (Linux 3.17), not glibc's wrapper, which glibc 2.17 lacks.
    let filled = unsafe { libc::syscall(libc::SYS_getrandom, bytes.as_mut_ptr(), bytes.len(), 0) };
    if filled != bytes.len() as libc::c_long {
        // Without entropy (never on Linux after boot), the time and pid still differ
        // between runs; the cgroup's lock, not the name, keeps a live run safe.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (now ^ u64::from(std::process::id()).rotate_left(40)).to_ne_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The path of a process's cgroup in the v2 hierarchy, from the `0::PATH` line of
/// /proc/PID/cgroup (cgroups(7)); present even when no cgroup2 is mounted.
fn path_of(pid: &str) -> Result<String, String> {
    let file = format!("/proc/{pid}/cgroup");
    let text =
        std::fs::read_to_string(&file).map_err(|err| format!("cannot read {file}: {err}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_string)
        .ok_or_else(|| format!("no cgroup v2 line in {file}: a kernel without cgroup2"))
}

/// The mount point of a cgroup2 file system mounted at the root of the hierarchy, from
/// /proc/self/mountinfo (proc(5): the file system type follows the " - " separator).
fn mounted() -> Result<Option<PathBuf>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| format!("cannot read /proc/self/mountinfo: {err}"))?;
    Ok(text.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        let fs_type = fs.split(' ').next()?;
        let point = fields.get(4)?;
        (fs_type == "cgroup2" && fields.get(3) == Some(&"/"))
            .then(|| PathBuf::from(unescape(point)))
    }))
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> std::ffi::OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Three octal digits of at most 0o377: one byte.
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| (b'0'..=b'3').contains(&d[0]))
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    OsStr::from_bytes(&out).to_os_string()
}

/// A cgroup2 mount on a fresh directory under [`MOUNT_PARENT`], detached and the
/// directory removed when dropped: what was opened through it stays usable.
struct TemporaryMount(PathBuf);

impl TemporaryMount {
    fn new() -> Result<TemporaryMount, String> {
        let template = format!("{MOUNT_PARENT}/keepalive-cgroup2.XXXXXX");
        let mut template = CString::new(template)
            .map_err(|err| err.to_string())?
            .into_bytes_with_nul();
        // SAFETY: `template` is a writable NUL-terminated string ending in XXXXXX, as
        // mkdtemp(3) requires; it rewrites those six bytes in place.
        let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if made.is_null() {
            let err = io::Error::last_os_error();
            return Err(format!(
                "cannot make a directory in {MOUNT_PARENT} to mount cgroup2 on: {err}"
            ));
        }
        template.pop();
        let dir = PathBuf::from(OsStr::from_bytes(&template));
        let target = CString::new(template).map_err(|err| err.to_string())?;
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        // SAFETY: every pointer is a NUL-terminated string that lives for the call;
        // cgroup2 takes no data.
        let rc = unsafe {
            libc::mount(
                c"cgroup2".as_ptr(),
                target.as_ptr(),
                c"cgroup2".as_ptr(),
                flags,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "no cgroup2 mounted, and mount -t cgroup2 on {} failed: {err}",
                dir.display()
            ));
        }
        Ok(TemporaryMount(dir))
    }
}

impl Drop for TemporaryMount {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.0.as_os_str().as_bytes()) {
            // SAFETY: a NUL-terminated path that lives for the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        if let Err(err) = std::fs::remove_dir(&self.0) {
            failure::warn(format_args!(
                "keepalive: warning: cannot remove {}: {err}",
                self.0.display()
            ));
        }
    }
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    open_at(None, &path, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// openat(2) relative to `dir`, or to the working directory; close-on-exec.
fn open_at(dir: Option<BorrowedFd>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let base = dir.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    // SAFETY: `name` is NUL-terminated and lives for the call; `base` is an open
    // directory or AT_FDCWD.
    let fd = unsafe { libc::openat(base, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A child cgroup made for one run, removed when dropped.
pub struct Scope {
    parent: OwnedFd,
    name: CString,
    dir: OwnedFd,
    /// Its `cgroup.procs`, open for writing: the started program writes "0" to it
    /// between fork and exec to move itself in.
    procs: File,
}

/// A run that ended without cleaning up (its command killed with SIGKILL) leaves its
/// `keepalive-run.TOKEN` behind. Every run holds an exclusive flock(2) on its cgroup's
/// directory from the moment it makes it until it removes it, and a lock goes with the
/// last descriptor of a dead process: a cgroup whose lock can be taken belongs to no
/// live run, whatever pid namespace that run was in, and is removed with what is
/// under it (rmdir(2) refuses one that still holds processes).
fn remove_stale(own: &Own) {
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", own.dir.as_raw_fd())) else {
        return;
    };
    for entry in entries.map_while(Result::ok) {
        let name = entry.file_name();
        if !name.as_bytes().starts_with(b"keepalive-run.") {
            continue;
        }
        let Ok(name) = CString::new(name.as_bytes()) else {
            continue;
        };
        let Ok(dir) = open_at(
            Some(own.dir.as_fd()),
            &name,
            libc::O_RDONLY | libc::O_DIRECTORY,
        ) else {
            continue;
        };
        if lock(&dir, libc::LOCK_NB).is_ok() && remove_children(&dir).is_ok() {
            // SAFETY: `name` is NUL-terminated and `own.dir` an open directory.
            unsafe { libc::unlinkat(own.dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
        }
    }
}

/// flock(2) `LOCK_EX` on an open directory, with `flags` (`LOCK_NB`: do not wait).
fn lock(dir: &OwnedFd, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: flock(2) on a descriptor this function borrows.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes every cgroup under `dir`, deepest first, after moving the processes in them
/// up into `dir` (a cgroup with processes or children cannot be removed).
fn remove_children(dir: &OwnedFd) -> io::Result<()> {
    for entry in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = CString::new(entry.file_name().as_bytes()).map_err(io::Error::other)?;
        let child = open_at(Some(dir.as_fd()), &name, libc::O_RDONLY | libc::O_DIRECTORY)?;
        remove_children(&child)?;
        let mut text = String::new();
        File::from(open_at(
            Some(child.as_fd()),
            c"cgroup.procs",
            libc::O_RDONLY,
        )?)
        .read_to_string(&mut text)?;
        let mut into = File::from(open_at(Some(dir.as_fd()), c"cgroup.procs", libc::O_WRONLY)?);
        for pid in text.lines() {
            // A member that exited meanwhile fails with ESRCH: nothing to move.
            let _ = into.write_all(pid.as_bytes());
        }
        // SAFETY: `name` is NUL-terminated and `dir` an open directory.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Scope {
    /// Makes `keepalive-run.TOKEN` under this process's cgroup and locks it, after
    /// removing those of runs that ended without cleaning up.
    pub fn make(own: Own) -> Result<Scope, String> {
        remove_stale(&own);
        let text = format!("keepalive-run.{}", unique_token());
        let name = CString::new(text.clone()).map_err(|err| err.to_string())?;
        // SAFETY: `name` is NUL-terminated and `own.dir` an open directory.
        if unsafe { libc::mkdirat(own.dir.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
            let err = io::Error::last_os_error();
            return Err(format!("cannot make cgroup {text} in {}: {err}", own.place));
        }
        // From here on, dropping `scope` removes the directory again.
        let opened = open_at(
            Some(own.dir.as_fd()),
            &name,
            libc::O_RDONLY | libc::O_DIRECTORY,
        )
        .and_then(|dir| {
            lock(&dir, 0)?;
            let procs = open_at(Some(dir.as_fd()), c"cgroup.procs", libc::O_WRONLY)?;
            Ok((dir, File::from(procs)))
        });
        let (dir, procs) = match opened {
            Ok(pair) => pair,
            Err(err) => {
                // SAFETY: as for mkdirat.
                unsafe { libc::unlinkat(own.dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
                return Err(format!("cannot open cgroup {text} in {}: {err}", own.place));
            }
        };
        Ok(Scope {
            parent: own.dir,
            name,
            dir,
            procs,
        })
    }

    /// The cgroup's directory, to attach the program to.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The raw descriptor of its `cgroup.procs`, for the child to write to after fork.
    pub fn procs_fd(&self) -> libc::c_int {
        self.procs.as_raw_fd()
    }

    /// The processes still in the cgroup.
    fn members(&self) -> io::Result<Vec<String>> {
        let mut text = String::new();
        File::from(open_at(
            Some(self.dir.as_fd()),
            c"cgroup.procs",
            libc::O_RDONLY,
        )?)
        .read_to_string(&mut text)?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// Moves what the program left running (its children that outlived it) back to
    /// this command's own cgroup, out of reach of the program, and removes the cgroup
    /// with the ones the program made under it. Their connections keep the settings
    /// they got; new ones get none.
    fn remove(&self) -> io::Result<()> {
        // A process that exited stays a member until the kernel has finished with it,
        // and one that forks while being moved adds another: retry for a while
        // (rmdir(2) fails with EBUSY while any member remains).
        let mut last = io::Error::from_raw_os_error(libc::EBUSY);
        for _ in 0..200 {
            // A sub-cgroup whose last process is still exiting is refused (EBUSY) like
            // the cgroup itself: the next round takes it.
            let _ = remove_children(&self.dir);
            let members = self.members()?;
            if !members.is_empty() {
                let mut parent = File::from(open_at(
                    Some(self.parent.as_fd()),
                    c"cgroup.procs",
                    libc::O_WRONLY,
                )?);
                for pid in &members {
                    // A member that exited meanwhile fails with ESRCH: nothing to move.
                    let _ = parent.write_all(pid.as_bytes());
                }
            }
            // SAFETY: `name` is NUL-terminated and `parent` an open directory.
            if unsafe {
                libc::unlinkat(
                    self.parent.as_raw_fd(),
                    self.name.as_ptr(),
                    libc::AT_REMOVEDIR,
                )
            } == 0
            {
                return Ok(());
            }
            last = io::Error::last_os_error();
            if last.raw_os_error() != Some(libc::EBUSY) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(last)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Err(err) = self.remove() {
            failure::warn(format_args!(
                "keepalive: warning: cannot remove cgroup {}: {err}",
                self.name.to_string_lossy()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone_and_bad_ones_kept() {
        assert_eq!(unescape(r"/a\040b"), OsStr::new("/a b"));
        assert_eq!(unescape(r"/a\134"), OsStr::new("/a\\"));
        assert_eq!(unescape(r"/a\777"), OsStr::new(r"/a\777"));
        assert_eq!(unescape(r"/a\04"), OsStr::new(r"/a\04"));
    }

    #[test]
    fn cgroups_outside_the_namespace_are_refused() {
        let refused = at("/../system.slice").err().unwrap_or_default();
        assert!(refused.contains("outside"), "{refused}");
    }
}
