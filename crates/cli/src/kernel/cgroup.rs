//! cgroup (v2) directories: a process's own, found through a mounted cgroup2 or a
//! mount of the command's own attached nowhere; and the cgroup of its own that `run
//! --kernel` makes for its program and removes again whatever happens ([`Scope`]).
//!
//! Everything after the first look is done through directory descriptors: where no
//! cgroup2 is mounted, the command makes a mount of the hierarchy that is attached
//! nowhere (fsmount(2), Linux 5.2), which only its descriptors reach and which goes
//! with the last of them, so that not even a `kill -9` of the command leaves a mount
//! or a mount point behind.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::failure;

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
/// else through a mount of its own attached nowhere ([`detached_hierarchy`]).
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
    let root = detached_hierarchy()?;
    let place = format!("{path} (in a cgroup2 mount attached nowhere)");
    let relative = match path.trim_start_matches('/') {
        "" => ".",
        relative => relative,
    };
    let name = CString::new(relative).map_err(|err| err.to_string())?;
    let fd = open_at(
        Some(root.as_fd()),
        &name,
        libc::O_RDONLY | libc::O_DIRECTORY,
    )
    .map_err(|err| format!("cannot open cgroup {place}: {err}"))?;
    Ok(Own {
        dir: fd,
        path: path.to_string(),
        place,
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
/// /proc/self/mountinfo (proc(5): mount ID, parent ID, major:minor, root, mount point;
/// the file system type follows the " - " separator). A mount that another hides — one
/// mounted over it at the same point, as a bind of a sub-cgroup over the hierarchy in
/// some containers — is not the one a path through that point reaches, and is passed
/// over; so is a bind of a sub-cgroup itself (its root is not `/`).
fn mounted() -> Result<Option<PathBuf>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| format!("cannot read /proc/self/mountinfo: {err}"))?;
    Ok(topmost_hierarchy(&text).map(|point| PathBuf::from(unescape(point))))
}

/// The mount point in `mountinfo` text of the first cgroup2 mount of the whole
/// hierarchy that no other mount hides.
fn topmost_hierarchy(mountinfo: &str) -> Option<&str> {
    struct Mount<'a> {
        id: &'a str,
        parent: &'a str,
        point: &'a str,
        whole_cgroup2: bool,
    }
    let mounts: Vec<Mount> = mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let fields: Vec<&str> = mount.split(' ').collect();
            Some(Mount {
                id: fields.first()?,
                parent: fields.get(1)?,
                point: fields.get(4)?,
                whole_cgroup2: fs.split(' ').next() == Some("cgroup2")
                    && fields.get(3) == Some(&"/"),
            })
        })
        .collect();
    mounts
        .iter()
        .filter(|mount| mount.whole_cgroup2)
        .find(|mount| {
            !mounts
                .iter()
                .any(|over| over.parent == mount.id && over.point == mount.point)
        })
        .map(|mount| mount.point)
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

/// The root of this process's cgroup2 hierarchy (of its cgroup namespace), as a mount
/// attached nowhere: fsopen(2), fsconfig(2) `FSCONFIG_CMD_CREATE` and fsmount(2) give
/// a descriptor of a new mount that is in no mount namespace's tree, so no one else
/// sees it and nothing has to be unmounted; it goes with the last descriptor opened
/// through it, at the latest when the command exits, however it exits.
fn detached_hierarchy() -> Result<OwnedFd, String> {
    /// linux/mount.h.
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;
    let failed = |call: &str| {
        let err = io::Error::last_os_error();
        format!("no cgroup2 mounted, and {call} of a cgroup2 file system failed: {err}")
    };
    // SAFETY: fsopen(2) with a NUL-terminated file system name that lives for the call.
    let context = unsafe { libc::syscall(libc::SYS_fsopen, c"cgroup2".as_ptr(), FSOPEN_CLOEXEC) };
    if context < 0 {
        return Err(failed("fsopen(2)"));
    }
    // SAFETY: fsopen returned a new descriptor that nothing else owns.
    let context = unsafe { OwnedFd::from_raw_fd(context as libc::c_int) };
    // SAFETY: fsconfig(2) on the context just made; CMD_CREATE takes no key or value.
    let created = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if created < 0 {
        return Err(failed("fsconfig(2)"));
    }
    let attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    // SAFETY: fsmount(2) on the configured context; it returns a new descriptor.
    let mount = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            context.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attributes,
        )
    };
    if mount < 0 {
        return Err(failed("fsmount(2)"));
    }
    // SAFETY: fsmount returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(mount as libc::c_int) })
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

/// The extended attribute a run sets on its cgroup once it holds the cgroup's lock
/// (cgroup v2 keeps `trusted.*` attributes, as systemd's `trusted.invocation_id`).
/// A cgroup is made unlocked: between mkdir(2) and flock(2) its lock is free although
/// its run is alive. Only a cgroup that carries this attribute, and whose lock is free,
/// is known to have lost its run.
const LOCKED: &CStr = c"trusted.keepalive.locked";

/// A run that ended without cleaning up (its command killed with SIGKILL) leaves its
/// `keepalive-run.TOKEN` behind. Every run holds an exclusive flock(2) on its cgroup's
/// directory from just after making it until it removes it, and says so on the cgroup
/// ([`LOCKED`]); a lock goes with the last descriptor of a dead process. A cgroup that
/// says it was locked and whose lock can be taken belongs to no live run, whatever pid
/// namespace that run was in: what still runs in it (children of the dead run's
/// program) is moved up to `own`, as a finished run does, and the cgroup is removed
/// with what is under it. A cgroup whose run died between mkdir and flock carries no
/// attribute and stays: nothing tells it from one whose run is just starting.
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
        if lock(&dir, libc::LOCK_NB).is_ok() && was_locked(&dir) {
            // A member still exiting keeps it (EBUSY): the next run takes it.
            let _ = dismantle(&own.dir, &name, &dir);
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

/// Says on the cgroup `dir` that its run holds its lock ([`LOCKED`]).
fn say_locked(dir: &OwnedFd) -> io::Result<()> {
    // SAFETY: fsetxattr(2) on a descriptor this function borrows, with a
    // NUL-terminated name and a one-byte value that live for the call.
    let rc =
        unsafe { libc::fsetxattr(dir.as_raw_fd(), LOCKED.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the cgroup `dir` says a run held its lock ([`LOCKED`]).
fn was_locked(dir: &OwnedFd) -> bool {
    // SAFETY: fgetxattr(2) with a null buffer of size 0 asks only for the value's size.
    unsafe { libc::fgetxattr(dir.as_raw_fd(), LOCKED.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

/// The cgroup's type: "domain", "threaded", "domain threaded" or "domain invalid".
fn read_type(dir: &OwnedFd) -> io::Result<String> {
    let mut kind = String::new();
    File::from(open_at(Some(dir.as_fd()), c"cgroup.type", libc::O_RDONLY)?)
        .read_to_string(&mut kind)?;
    Ok(kind.trim().to_string())
}

/// The processes in the cgroup `dir` itself, not those under it.
fn members(dir: &OwnedFd) -> io::Result<Vec<String>> {
    let mut text = String::new();
    File::from(open_at(Some(dir.as_fd()), c"cgroup.procs", libc::O_RDONLY)?)
        .read_to_string(&mut text)?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Moves every process in `from` into the cgroup `to`.
fn move_members(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    let members = members(from)?;
    if members.is_empty() {
        return Ok(());
    }
    let mut into = File::from(open_at(Some(to.as_fd()), c"cgroup.procs", libc::O_WRONLY)?);
    for pid in &members {
        // A member that exited meanwhile fails with ESRCH: nothing to move.
        let _ = into.write_all(pid.as_bytes());
    }
    Ok(())
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
        move_members(&child, dir)?;
        // SAFETY: `name` is NUL-terminated and `dir` an open directory.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One attempt at removing the cgroup `name` (open as `dir`) under `parent`, with the
/// cgroups under it: their processes and its own — what a program left running — are
/// moved up into `parent`, out of the route's reach. Their connections keep the
/// settings they got; new ones get none. EBUSY while a member is still exiting.
fn dismantle(parent: &OwnedFd, name: &CStr, dir: &OwnedFd) -> io::Result<()> {
    // A sub-cgroup whose last process is still exiting is refused (EBUSY) like the
    // cgroup itself: rmdir below fails too, and the caller tries again.
    let _ = remove_children(dir);
    move_members(dir, parent)?;
    // SAFETY: `name` is NUL-terminated and `parent` an open directory.
    if unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Scope {
    /// Makes `keepalive-run.TOKEN` under this process's cgroup and locks it, after
    /// removing those of runs that ended without cleaning up. Refuses a cgroup that
    /// cannot take the program: the child of a cgroup in a threaded subtree is of type
    /// "domain invalid", and writing a process to it fails (cgroups v2 in the kernel's
    /// Documentation/admin-guide/cgroup-v2.rst, "Threads").
    pub fn make(own: Own) -> Result<Scope, String> {
        remove_stale(&own);
        let text = format!("keepalive-run.{}", unique_token());
        let name = CString::new(text.clone()).map_err(|err| err.to_string())?;
        // SAFETY: `name` is NUL-terminated and `own.dir` an open directory.
        if unsafe { libc::mkdirat(own.dir.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
            let err = io::Error::last_os_error();
            return Err(format!("cannot make cgroup {text} in {}: {err}", own.place));
        }
        let opened = open_at(
            Some(own.dir.as_fd()),
            &name,
            libc::O_RDONLY | libc::O_DIRECTORY,
        )
        .and_then(|dir| {
            lock(&dir, 0)?;
            say_locked(&dir)?;
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
        // From here on, dropping `scope` removes the directory again.
        let scope = Scope {
            parent: own.dir,
            name,
            dir,
            procs,
        };
        let kind = read_type(&scope.dir)
            .map_err(|err| format!("cannot read cgroup.type of {text} in {}: {err}", own.place))?;
        if kind != "domain" {
            return Err(format!(
                "a cgroup made in {} is of type \"{kind}\" and cannot take a program: {} \
                 is part of a threaded subtree (cgroup.type), where processes cannot be moved",
                own.place, own.place
            ));
        }
        Ok(scope)
    }

    /// The cgroup's directory, to attach the program to.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The raw descriptor of its `cgroup.procs`, for the child to write to after fork.
    pub fn procs_fd(&self) -> libc::c_int {
        self.procs.as_raw_fd()
    }

    /// Moves what the program left running (its children that outlived it) back to
    /// this command's own cgroup, and removes the cgroup with the ones the program made
    /// under it ([`dismantle`]).
    fn remove(&self) -> io::Result<()> {
        // A process that exited stays a member until the kernel has finished with it,
        // and one that forks while being moved adds another: retry for a while
        // (rmdir(2) fails with EBUSY while any member remains).
        let mut last = io::Error::from_raw_os_error(libc::EBUSY);
        for _ in 0..200 {
            match dismantle(&self.parent, &self.name, &self.dir) {
                Ok(()) => return Ok(()),
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => last = err,
                Err(err) => return Err(err),
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
    fn a_hierarchy_hidden_by_a_bind_of_a_sub_cgroup_is_passed_over() {
        let host = "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(topmost_hierarchy(host), Some("/sys/fs/cgroup/unified"));
        let hidden =
            format!("{host}90 41 0:38 /a/b /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        assert_eq!(topmost_hierarchy(&hidden), None);
        let again =
            format!("{hidden}91 90 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        assert_eq!(topmost_hierarchy(&again), Some("/sys/fs/cgroup/unified"));
        let elsewhere = format!("{hidden}92 20 0:38 / /mnt/cg rw - cgroup2 cgroup2 rw\n");
        assert_eq!(topmost_hierarchy(&elsewhere), Some("/mnt/cg"));
    }

    #[test]
    fn cgroups_outside_the_namespace_are_refused() {
        let refused = at("/../system.slice").err().unwrap_or_default();
        assert!(refused.contains("outside"), "{refused}");
    }
}
