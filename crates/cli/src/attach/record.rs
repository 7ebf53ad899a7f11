//! What `attach` changed, kept for `detach`: one file per process, named by its pid and
//! start time, a line per changed socket: its inode, with its options before and after.
//!
//! A record outlives its process when a child forked before the exit still holds the
//! sockets, so `detach` of that child takes the lines of the sockets it holds from the
//! records of processes that are gone ([`Record::find`]); a record none of whose
//! sockets any process holds any more is swept ([`sweep`]).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::kernel::live;
use crate::options::Options;
use crate::status::process;

/// A socket `attach` changed: its inode, its options before and after.
pub type Change = (u64, Options, Options);

/// Where this user's `attach` records what it changed: /run/keepalive/attach for
/// root, the user's own runtime directory ($XDG_RUNTIME_DIR/keepalive/attach)
/// otherwise; either is gone at the next boot with every process it names.
pub fn dir() -> PathBuf {
    if is_root() {
        return PathBuf::from(ROOT);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(runtime) => Path::new(&runtime).join("keepalive/attach"),
        None => PathBuf::from(ROOT),
    }
}

const ROOT: &str = "/run/keepalive/attach";

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where `detach` looks for what was attached to a process owned by `owner`: this
/// user's place, root's, and the owner's runtime directory (`/run/user/UID`, where
/// pam_systemd puts `$XDG_RUNTIME_DIR`), since root or the owner may have attached it.
fn places(owner: u32) -> Vec<PathBuf> {
    let mut places = vec![
        dir(),
        PathBuf::from(ROOT),
        PathBuf::from(format!("/run/user/{owner}/keepalive/attach")),
    ];
    places.sort();
    places.dedup();
    places
}

/// Makes `dir` when missing, and says whether this user may write in it (access(2)).
pub fn writable(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    may_write(dir)
}

fn may_write(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: access(2) reads a NUL-terminated path that lives for the call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The name of `pid`'s record: its pid and start time (proc(5) /proc/PID/stat, field
/// 22), so that a pid used again by another process never matches; `None` when the
/// process is gone, or a zombie (state Z or X), which holds no descriptor any more.
pub fn name(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X"))) {
        return None;
    }
    Some(format!("{pid}-{}", fields.get(19)?))
}

/// A record, read: where it is and what it holds.
pub struct Record {
    pub path: PathBuf,
    pub changes: Vec<Change>,
}

impl Record {
    /// The record at `path`; `None` when there is none. A record that cannot be read
    /// or parsed is an error that names the file and line: taking it for "attach
    /// changed nothing" would leave the settings on for good.
    pub fn read(path: &Path) -> Result<Option<Record>, String> {
        let mut text = String::new();
        let read = no_follow(std::fs::OpenOptions::new().read(true))
            .open(path)
            .and_then(|mut file| io::Read::read_to_string(&mut file, &mut text));
        match read {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
        }
        let changes = text
            .lines()
            .enumerate()
            .map(|(n, line)| {
                parse_line(line).ok_or_else(|| {
                    format!(
                        "{}, line {}: {line:?} is not `INODE` and two sets of five options",
                        path.display(),
                        n + 1
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Record {
            path: path.to_owned(),
            changes,
        }))
    }

    /// The records that hold what was attached to `pid` (owned by `owner`), newest
    /// first: its own, and those of processes gone whose sockets it holds (`held`),
    /// cut to those sockets. Every one must be this user's to rewrite, or none is
    /// returned: `detach` changes nothing it could not then record as undone.
    pub fn find(pid: i32, owner: u32, held: &HashSet<u64>) -> Result<Vec<Record>, String> {
        let own = name(pid).ok_or("no such process")?;
        let mut found = Vec::new();
        for place in places(owner) {
            if let Some(record) = Record::read(&place.join(&own))? {
                found.push(record);
            }
            for path in orphans(&place) {
                if let Some(mut record) = Record::read(&path)? {
                    record.changes.retain(|(inode, ..)| held.contains(inode));
                    if !record.changes.is_empty() {
                        found.push(record);
                    }
                }
            }
        }
        for record in &found {
            let place = record.path.parent().unwrap_or(Path::new("/"));
            may_write(place).map_err(|err| {
                format!(
                    "{} records what was attached, and this user cannot remove it ({err}): \
                     run `keepalive detach` as root, or as the user who attached",
                    record.path.display()
                )
            })?;
        }
        found.sort_by_key(|record| {
            std::cmp::Reverse(
                std::fs::metadata(&record.path)
                    .and_then(|m| m.modified())
                    .ok(),
            )
        });
        Ok(found)
    }

    /// Takes out the lines of the sockets in `done`, and removes the file once none is
    /// left.
    pub fn remove(&self, done: &HashSet<u64>) -> io::Result<()> {
        let Some(Record { changes, .. }) = Record::read(&self.path).map_err(io::Error::other)?
        else {
            return Ok(());
        };
        let left: Vec<Change> = changes
            .into_iter()
            .filter(|(inode, ..)| !done.contains(inode))
            .collect();
        if left.is_empty() {
            return std::fs::remove_file(&self.path);
        }
        no_follow(std::fs::OpenOptions::new().write(true).truncate(true))
            .open(&self.path)
            .and_then(|mut file| io::Write::write_all(&mut file, text(&left).as_bytes()))
    }
}

/// Opens without following a symbolic link (open(2) O_NOFOLLOW): root's `detach` reads
/// and rewrites records in a user's runtime directory, where the user could have put
/// a link to any file in a record's place. Without O_CREAT, a rewrite can only reach a
/// file that already exists under a record's name.
fn no_follow(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(libc::O_NOFOLLOW)
}

/// Adds one line per changed socket to the process's record: its inode, the options
/// before and after, as numbers. An earlier line for the same inode keeps its
/// "before": detach goes back to what the program had. A process nothing was changed
/// in gets no record: a service's short-lived children would leave a file each.
pub fn add(pid: i32, changes: &[Change]) -> Result<(), String> {
    if changes.is_empty() {
        return Ok(());
    }
    let path = dir().join(name(pid).ok_or("the process exited")?);
    let mut all = Record::read(&path)?.map_or_else(Vec::new, |record| record.changes);
    for change in changes {
        if !all.iter().any(|(inode, ..)| *inode == change.0) {
            all.push(*change);
        }
    }
    std::fs::write(&path, text(&all)).map_err(|err| format!("{}: {err}", path.display()))
}

/// Removes this user's records of processes gone none of whose sockets any process
/// still holds: nothing is left to put back; and those of kernel routes whose cgroup
/// is gone ([`live::sweep`]). Housekeeping: a record it cannot read or remove stays.
pub fn sweep() {
    live::sweep(&dir());
    let orphans = orphans(&dir());
    if orphans.is_empty() {
        return;
    }
    let held: HashSet<u64> = process::socket_owners().into_keys().collect();
    for path in orphans {
        if let Ok(Some(record)) = Record::read(&path) {
            if !record
                .changes
                .iter()
                .any(|(inode, ..)| held.contains(inode))
            {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The process records in `place` whose process is gone: named `PID-START`, and no
/// live process has that pid and start time.
fn orphans(place: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(place) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let file = entry.file_name();
            let Some((pid, started)) = file.to_str().and_then(|f| f.split_once('-')) else {
                return false;
            };
            let (Ok(pid), true) = (pid.parse::<i32>(), started.parse::<u64>().is_ok()) else {
                return false;
            };
            name(pid).is_none_or(|live| live != file.to_string_lossy())
        })
        .map(|entry| entry.path())
        .collect()
}

/// The owner of `pid`: the user of its /proc directory, its effective user.
pub fn owner(pid: i32) -> io::Result<u32> {
    Ok(std::fs::metadata(format!("/proc/{pid}"))?.uid())
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
