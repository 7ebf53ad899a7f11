//! `keepalive detach`: puts back what `attach` changed.

use std::os::fd::AsFd;
use std::process::ExitCode;

use super::record;
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
    let recorded: Vec<i32> = targets
        .pids
        .iter()
        .copied()
        .filter(|&pid| record::record_path(pid).is_some_and(|path| path.exists()))
        .collect();
    // With --unit, the processes attach changed nothing in are not named.
    let pids = if unit.is_some() {
        recorded
    } else {
        targets.pids
    };
    for pid in pids {
        match detach_one(pid) {
            Ok(lines) => failure::say(format_args!("PID {pid}:\n{}", lines.join("\n")))?,
            // As in attach: a process of the unit that ends meanwhile is no failure.
            Err(_) if !pids_named.contains(&pid) && targets::exited_now(pid) => failure::say(
                format_args!("PID {pid}: exited while detach ran; nothing to do"),
            )?,
            Err(failure) => return Err(failure),
        }
    }
    if let Some(service) = &targets.service {
        let ended = live::end(&service.cgroup, &record::records()).map_err(|why| {
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

/// Puts back what `attach` changed in one process, and removes its record; a line per
/// socket. Nothing to put back is no failure: undoing twice, or undoing an attach
/// that left every socket alone, leaves the process as it is.
fn detach_one(pid: i32) -> Result<Vec<String>, Failure> {
    let refuse = |why: String| Failure::with_code(1, format!("detach {pid}: {why}"));
    let path = record::record_path(pid).ok_or_else(|| refuse("no such process".into()))?;
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(vec![
            "  nothing to put back: `keepalive attach` changed nothing in it".into(),
        ]);
    };
    let pidfd = Pidfd::open(pid).map_err(|err| refuse(format!("pidfd_open: {err}")))?;
    let fds = process::socket_fds(&format!("/proc/{pid}"))
        .map_err(|err| refuse(format!("cannot list its descriptors: {err}")))?;
    let mut lines = Vec::new();
    for (inode, before, after) in record::parse_record(&text) {
        let Some(&(fd, _)) = fds.iter().find(|(_, i)| *i == inode) else {
            lines.push(format!("  socket {inode}: closed since"));
            continue;
        };
        let Some(copy) = pidfd
            .get_socket(fd, inode)
            .map_err(|err| refuse(format!("pidfd_getfd of fd {fd}: {err}")))?
        else {
            lines.push(format!("  socket {inode}: closed since"));
            continue;
        };
        let now = Options::read(copy.as_fd())
            .map_err(|err| refuse(format!("getsockopt on fd {fd}: {err}")))?;
        if now != after {
            lines.push(format!(
                "  fd {fd}: left as it is: it carries {now}, changed since attach set {after}"
            ));
            continue;
        }
        sockopt::restore(&copy, &before)
            .map_err(|err| refuse(format!("setsockopt on fd {fd}: {err}")))?;
        lines.push(format!("  fd {fd}: back to {before}"));
    }
    std::fs::remove_file(&path)
        .map_err(|err| refuse(format!("cannot remove {}: {err}", path.display())))?;
    Ok(lines)
}
