//! What `attach` changed, kept for `detach`: one file per process, named by its pid and
//! start time, each changed socket's inode with its options before and after.

use std::fmt::Write as _;
use std::io;

use crate::options::Options;

/// Where `attach` records what it changed, one file per process, named by its pid and
/// its start time (proc(5) /proc/PID/stat, field 22), so that a pid used again by
/// another process never matches: /run/keepalive/attach for root, the user's own
/// runtime directory ($XDG_RUNTIME_DIR/keepalive/attach) otherwise; either is gone at
/// the next boot with every process it names.
pub fn records() -> std::path::PathBuf {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|_| !root) {
        Some(dir) => std::path::Path::new(&dir).join("keepalive/attach"),
        None => std::path::PathBuf::from("/run/keepalive/attach"),
    }
}

/// Makes `dir` when missing, and says whether this user may write in it (access(2)).
pub fn writable(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(dir)?;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: access(2) reads a NUL-terminated path that lives for the call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The record's file for `pid`: `None` when the process is gone.
pub fn record_path(pid: i32) -> Option<std::path::PathBuf> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let started = stat.rsplit_once(") ")?.1.split_whitespace().nth(19)?;
    Some(records().join(format!("{pid}-{started}")))
}

/// A socket `attach` changed: its inode, its options before and after.
pub type Change = (u64, Options, Options);

/// Adds one line per changed socket to the process's record: its inode, the options
/// before and after, as numbers. An earlier line for the same inode keeps its
/// "before": detach goes back to what the program had. A process nothing was changed
/// in gets no record: a service's short-lived children would leave a file each.
pub fn record(pid: i32, changes: &[Change]) -> io::Result<()> {
    let path = record_path(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    let known: Vec<u64> = parse_record(&text)
        .into_iter()
        .map(|(inode, ..)| inode)
        .collect();
    for (inode, before, after) in changes.iter().filter(|(inode, ..)| !known.contains(inode)) {
        let _ = writeln!(text, "{inode} {} {}", numbers(before), numbers(after));
    }
    if text.is_empty() {
        return Ok(());
    }
    std::fs::write(path, text)
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

/// The lines of a record: (inode, before, after).
pub fn parse_record(text: &str) -> Vec<Change> {
    text.lines()
        .filter_map(|line| {
            let n: Vec<u64> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let options = |at: usize| -> Option<Options> {
                let v = n.get(at..at + 5)?;
                Some(Options {
                    keepalive: v[0] != 0,
                    idle: u32::try_from(v[1]).ok()?,
                    interval: u32::try_from(v[2]).ok()?,
                    count: u32::try_from(v[3]).ok()?,
                    user_timeout: u32::try_from(v[4]).ok()?,
                })
            };
            Some((*n.first()?, options(1)?, options(6)?))
        })
        .collect()
}
