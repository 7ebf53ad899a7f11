//! `attach --unit`: the kernel route for a service that is already running, so that
//! the connections its processes make from now on get the settings too, not only those
//! open when `attach` ran (docs/attach.md). The route goes on the unit's own cgroup,
//! never a shared one, and lasts until `detach --unit` or until the unit stops, when
//! systemd removes the cgroup and the attachment with it.
//!
//! The marking program was not there to see what the program configured before, so
//! the route is attached in two halves ([`keepalive_sockops::Route::begin`]) with the
//! processes' sockets judged in between ([`around`]): a listener `attach` leaves alone is marked as its program's, and
//! so, by inheritance, is every connection accepted on it later.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use keepalive_config::Config;
use keepalive_sockops::Pending;

use super::cgroup::Own;
use super::support;
use crate::failure::Failure;

/// What covers a unit's new connections once `attach` is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// The route, attached by this `attach`.
    Attached,
    /// With --dry-run: the route would be attached.
    WouldAttach,
    /// A route of this command's was on the cgroup already: `enable --kernel`'s, or an
    /// earlier `attach`'s.
    Already,
    /// Not covered, and why.
    Not(String),
}

/// Runs `work` — attach's pass over the unit's processes — with the route half
/// attached around it when the route can go on `unit`'s `cgroup`: `work` gets the
/// [`Pending`] route to mark the listeners it leaves alone, and the settings half is
/// attached after it. When `work` fails, the marking half is detached again (dropping
/// the `Pending`). `records` is where `attach` keeps its records. What covers the
/// unit's connections to come is returned with `work`'s result.
pub fn around<T>(
    unit: &str,
    cgroup: &Own,
    config: &Config,
    dry_run: bool,
    records: &Path,
    work: impl FnOnce(Option<&Pending>) -> Result<T, Failure>,
) -> Result<(T, Coverage), Failure> {
    let settled = match obstacle(unit, cgroup) {
        Some(settled) => settled,
        None if dry_run => Coverage::WouldAttach,
        None => match super::load(config) {
            Err(failure) => Coverage::Not(super::reason(failure)),
            Ok(route) => {
                return match route.begin(cgroup.dir()) {
                    Err(err) => Ok((work(None)?, Coverage::Not(err.to_string()))),
                    Ok(pending) => {
                        let done = work(Some(&pending))?;
                        Ok((done, finish(pending, cgroup, unit, records)))
                    }
                };
            }
        },
    };
    Ok((work(None)?, settled))
}

/// Why the route cannot go on `unit`'s `cgroup` (or is there already), or `None`
/// when it can. Only a service's: a slice's cgroup holds other units, and a scope's
/// is a session's or a container's, shared by whatever runs there.
fn obstacle(unit: &str, cgroup: &Own) -> Option<Coverage> {
    if !unit.ends_with(".service") {
        return Some(Coverage::Not(format!(
            "{unit} is not a service: the kernel route goes only on a service's own cgroup"
        )));
    }
    if let Some(refusal) = support::refusal() {
        return Some(Coverage::Not(refusal.to_string()));
    }
    if let Err(why) = cgroup.refuse_shared() {
        return Some(Coverage::Not(why));
    }
    let processes = cgroup.processes().unwrap_or_default();
    if let Some(why) = processes.into_iter().find_map(compat) {
        return Some(Coverage::Not(why));
    }
    match keepalive_sockops::attached_directly(cgroup.dir()) {
        Ok(programs)
            if programs
                .iter()
                .any(|program| program.name == keepalive_sockops::PROGRAM_NAME) =>
        {
            Some(Coverage::Already)
        }
        Ok(_) => None,
        Err(err) => Some(Coverage::Not(err.to_string())),
    }
}

/// Why the route must not go on a cgroup holding process `pid`: a 32-bit program
/// (ELF class 1, elf(5) `EI_CLASS`), whose setsockopt calls reach no cgroup program
/// (net/socket.c skips the hook for compat calls), so the route could not see what it
/// sets itself and would override it, as `run --kernel` refuses one (docs/kernel.md).
fn compat(pid: i32) -> Option<String> {
    use std::io::Read;
    let mut ident = [0u8; 5];
    std::fs::File::open(format!("/proc/{pid}/exe"))
        .and_then(|mut exe| exe.read_exact(&mut ident))
        .ok()?;
    (ident[..4] == *b"\x7fELF" && ident[4] == 1).then(|| {
        format!(
            "process {pid} of the unit is a 32-bit program: the kernel runs no cgroup \
             setsockopt program for its calls, so the route could not see what it sets \
             itself"
        )
    })
}

/// Attaches the settings program, with a record for `detach --unit` made first: the
/// route's second half ([`Pending::finish`]). `records` is where `attach` keeps its
/// records.
fn finish(pending: Pending, cgroup: &Own, unit: &str, records: &Path) -> Coverage {
    let record = match record(cgroup, records) {
        Ok(record) => record,
        Err(err) => {
            return Coverage::Not(format!("cannot record it for `keepalive detach`: {err}"));
        }
    };
    if let Err(err) = std::fs::write(&record, format!("{unit}\n{}\n", cgroup.path())) {
        return Coverage::Not(format!(
            "cannot record it for `keepalive detach` in {}: {err}",
            record.display()
        ));
    }
    match pending.finish() {
        Ok(()) => Coverage::Attached,
        Err(err) => {
            let _ = std::fs::remove_file(&record);
            Coverage::Not(err.to_string())
        }
    }
}

/// `detach --unit`: detaches the route `attach` put on `cgroup`, if it did; whether it
/// did. A route `enable --kernel` attached at the unit's start has no record, and
/// stays.
pub fn end(cgroup: &Own, records: &Path) -> Result<bool, String> {
    let record = record(cgroup, records).map_err(|err| err.to_string())?;
    if !record.exists() {
        return Ok(false);
    }
    keepalive_sockops::detach_ours(cgroup.dir())
        .map_err(|err| format!("cannot detach from {}: {err}", cgroup.place))?;
    std::fs::remove_file(&record)
        .map_err(|err| format!("cannot remove {}: {err}", record.display()))?;
    Ok(true)
}

/// Where `attach` records that it put the route on a cgroup, in `records` beside its
/// records of processes: named by the cgroup's id (its directory's inode in cgroup v2, never used
/// again by a cgroup made later), so that after a restart, in a new cgroup, the record
/// matches nothing.
fn record(cgroup: &Own, records: &Path) -> io::Result<PathBuf> {
    let id = std::fs::metadata(format!("/proc/self/fd/{}", cgroup.dir().as_raw_fd()))?.ino();
    Ok(records.join(format!("cgroup-{id}")))
}

/// Removes the records of routes whose cgroup is gone: the service stopped or
/// restarted without `detach --unit`, and systemd removed the cgroup and the route
/// with it. A record is the unit's name, then its cgroup's path (docs/attach.md).
pub fn sweep(records: &Path) {
    let Ok(entries) = std::fs::read_dir(records) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|name| name.strip_prefix("cgroup-")?.parse::<u64>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(path) = text.lines().nth(1) {
            if super::cgroup::is_gone(path, id) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
