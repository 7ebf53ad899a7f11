//! `keepalive detach`: puts back what `attach` changed.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::process::ExitCode;

use super::record::{self, Record};
use super::sockopt;
use super::targets::{self, Targets};
use crate::failure::{self, Failure};
use crate::kernel::live;
use crate::options::Options;
use crate::status::process::{self, Pidfd};

/// `keepalive detach PID…`: puts back what `attach` changed, on each socket that still
/// carries exactly what `attach` set (one changed since belongs to whoever changed it),
/// then removes the record.
pub fn detach(unit: Option<&str>, pids_named: &[i32]) -> Result<ExitCode, Failure> {
    let targets = Targets::find(unit, pids_named)?;
    for &pid in &targets.pids {
        let named = pids_named.contains(&pid);
        match detach_one(pid) {
            Ok(Some(lines)) => failure::say(format_args!("PID {pid}:\n{}", lines.join("\n")))?,
            Ok(None) if named => failure::say(format_args!(
                "PID {pid}: nothing to put back: `keepalive attach` changed nothing in it"
            ))?,
            // With --unit, the processes attach changed nothing in are not named.
            Ok(None) => {}
            // As in attach: a process of the unit that ends meanwhile is no failure.
            Err(_) if !named && targets::exited_now(pid) => failure::say(format_args!(
                "PID {pid}: exited while detach ran; nothing to do"
            ))?,
            Err(failure) => return Err(failure),
        }
    }
    record::sweep();
    if let Some(service) = &targets.service {
        let ended = live::end(&service.cgroup, &record::dir()).map_err(|why| {
            Failure::with_code(1, format!("detach --unit {}: {why}", service.name))
        })?;
        if ended {
            failure::say(format_args!(
                "{}: the kernel route attach put on {} is detached: new connections get \
                 nothing from it",
                service.name, service.cgroup.place
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts back what `attach` changed in one process, a line per socket, and takes those
/// sockets out of the records; `None` when no record names a socket of it (undoing
/// twice, or undoing an attach that left every socket alone, leaves it as it is).
/// Whether this user may act on the process is asked first, so "nothing to put back"
/// is never said of a process it could not have undone.
fn detach_one(pid: i32) -> Result<Option<Vec<String>>, Failure> {
    let refuse = |why: String| Failure::with_code(1, format!("detach {pid}: {why}"));
    let pidfd = Pidfd::open(pid).map_err(|err| match err.raw_os_error() {
        Some(libc::ESRCH) => refuse("no such process".into()),
        _ => refuse(format!("pidfd_open: {err}")),
    })?;
    let fds = process::socket_fds(&format!("/proc/{pid}")).map_err(|err| {
        refuse(format!(
            "cannot list its descriptors ({err}): detaching takes the same ptrace \
             permission as attaching"
        ))
    })?;
    let held: HashSet<u64> = fds.iter().map(|&(_, inode)| inode).collect();
    let owner = record::owner(pid).map_err(|err| refuse(format!("/proc/{pid}: {err}")))?;
    let records = Record::find(pid, owner, &held)
        .map_err(|why| refuse(format!("{why}; nothing was changed")))?;
    if records.is_empty() {
        return Ok(None);
    }
    let mut lines = Vec::new();
    for record in records {
        let mut done = HashSet::new();
        let result = record.changes.iter().try_for_each(|change| {
            lines.push(put_back(&pidfd, &fds, change).map_err(&refuse)?);
            done.insert(change.0);
            Ok(())
        });
        // What was put back leaves the record even when a later socket failed.
        record
            .remove(&done)
            .map_err(|err| refuse(format!("cannot update {}: {err}", record.path.display())))?;
        result?;
    }
    Ok(Some(lines))
}

/// Puts one socket back to what it had before `attach`, when it still carries what
/// `attach` set; the line that says what happened.
fn put_back(
    pidfd: &Pidfd,
    fds: &[(i32, u64)],
    &(inode, before, after): &record::Change,
) -> Result<String, String> {
    let Some(&(fd, _)) = fds.iter().find(|&&(_, i)| i == inode) else {
        return Ok(format!("  socket {inode}: closed since"));
    };
    let Some(copy) = pidfd
        .get_socket(fd, inode)
        .map_err(|err| format!("pidfd_getfd of fd {fd}: {err}"))?
    else {
        return Ok(format!("  socket {inode}: closed since"));
    };
    let now = Options::read(copy.as_fd()).map_err(|err| format!("getsockopt on fd {fd}: {err}"))?;
    if !now.carries(&before, &after) {
        return Ok(format!(
            "  fd {fd}: left as it is: it carries {now}, changed since attach set {after}"
        ));
    }
    sockopt::restore(&copy, &before, &after)
        .map_err(|err| format!("setsockopt on fd {fd}: {err}"))?;
    Ok(format!("  fd {fd}: back to {before}"))
}
