//! `keepalive detach`: puts back what `attach` changed.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use super::record::{self, Change, Place};
use super::sockopt;
use super::targets::{self, Targets};
use crate::failure::{self, Failure};
use crate::kernel::live;
use crate::options::Options;
use crate::socket;
use crate::status::process::{self, Pidfd};
use crate::status::tcp_table::State;

/// `keepalive detach PID…`: puts back what `attach` changed, on each socket that still
/// carries exactly what `attach` set (one changed since belongs to whoever changed it),
/// then removes the record.
///
/// Every process is looked at, and its records read, before any socket changes, so a
/// PID that cannot be detached leaves the others as they were. The record places stay
/// locked throughout (see [`record`]).
pub fn detach(unit: Option<&str>, pids_named: &[i32]) -> Result<ExitCode, Failure> {
    let targets = Targets::find(unit, pids_named)?;
    let places = open_places(&targets.pids)?;
    let mut prepared = Vec::new();
    for &pid in &targets.pids {
        let named = pids_named.contains(&pid);
        match prepare(pid, &places) {
            Ok(process) => prepared.push(process),
            // As in attach: a process of the unit that ends meanwhile is no failure.
            Err(_) if !named && targets::exited_now(pid) => failure::say(format_args!(
                "PID {pid}: exited while detach ran; nothing to do"
            ))?,
            Err(failure) => return Err(failure),
        }
    }
    for process in prepared {
        let pid = process.pid;
        if process.records.is_empty() {
            // With --unit, the processes attach changed nothing in are not named.
            if pids_named.contains(&pid) {
                failure::say(format_args!(
                    "PID {pid}: nothing to put back: `keepalive attach` changed nothing in it"
                ))?;
            }
            continue;
        }
        let (lines, failed) = put_back_all(&process, &places);
        failure::say(format_args!("PID {pid}:\n{}", lines.join("\n")))?;
        if let Some(why) = failed {
            return Err(Failure::with_code(
                1,
                format!(
                    "detach {pid}: {why}; the sockets shown were put back, and the record \
                     keeps the rest for the next `keepalive detach`; the processes after \
                     it were not detached"
                ),
            ));
        }
    }
    if let Some(own) = places.values().find(|place| place.path() == record::dir()) {
        own.sweep();
    }
    drop(places);
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

/// Opens and locks every place a record of these processes may be in, in the order of
/// their paths, so that two runs never wait on each other's.
fn open_places(pids: &[i32]) -> Result<BTreeMap<PathBuf, Place>, Failure> {
    let mut paths: Vec<PathBuf> = pids
        .iter()
        .filter_map(|&pid| record::owner(pid).ok())
        .flat_map(record::places)
        .collect();
    paths.push(record::dir());
    paths.sort();
    paths.dedup();
    let mut places = BTreeMap::new();
    for path in paths {
        let place = Place::open(&path).map_err(|err| {
            Failure::with_code(
                1,
                format!(
                    "detach: cannot open the records in {} ({err}); nothing was changed",
                    path.display()
                ),
            )
        })?;
        if let Some(place) = place {
            places.insert(path, place);
        }
    }
    Ok(places)
}

/// One process, looked at: its socket descriptors, and the records that name sockets
/// it holds (place, record name, lines), its own first.
struct Prepared {
    pid: i32,
    /// Where its descriptors are duplicated from: the process, or a live thread of it.
    pidfd: Pidfd,
    fds: Vec<(i32, u64)>,
    records: Vec<(PathBuf, String, Vec<Change>)>,
}

/// Looks at one process and finds its records, changing nothing. Whether this user may
/// act on the process is asked first, so "nothing to put back" is never said of a
/// process it could not have undone; and every record found must be this user's to
/// rewrite, or nothing is done: `detach` changes nothing it could not then record as
/// undone.
fn prepare(pid: i32, places: &BTreeMap<PathBuf, Place>) -> Result<Prepared, Failure> {
    let refuse = |why: String| Failure::with_code(1, format!("detach {pid}: {why}"));
    let targets::Opened { pidfd, thread, dir } = targets::open(pid).map_err(refuse)?;
    let fds = process::socket_fds(&dir).map_err(|err| {
        refuse(format!(
            "cannot list its descriptors ({err}): detaching takes the same ptrace \
             permission as attaching; nothing was changed"
        ))
    })?;
    let held: HashSet<u64> = fds.iter().map(|&(_, inode)| inode).collect();
    let own = record::name(pid).ok_or_else(|| refuse("no such process".into()))?;
    let owner = record::owner(pid).map_err(|err| refuse(format!("/proc/{pid}: {err}")))?;
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for path in record::places(owner) {
        let Some(place) = places.get(&path) else {
            continue;
        };
        let found = place
            .find(&own, &held, &mut skipped)
            .map_err(|why| refuse(format!("{why}; nothing was changed")))?;
        if !found.is_empty() {
            place.writable().map_err(|err| {
                refuse(format!(
                    "{} records what was attached, and this user cannot remove it ({err}): \
                     run `keepalive detach` as root, or as the user who attached; nothing \
                     was changed",
                    place.path().display()
                ))
            })?;
        }
        records.extend(
            found
                .into_iter()
                .map(|(name, changes)| (path.clone(), name, changes)),
        );
    }
    for why in skipped {
        failure::warn(format_args!(
            "detach {pid}: left out {why}: a record of another process, gone, which may \
             name sockets this one inherited; remove it once you have looked"
        ));
    }
    Ok(Prepared {
        pid,
        pidfd: thread.unwrap_or(pidfd),
        fds,
        records,
    })
}

/// Puts back what `attach` changed in one process, a line per socket, and takes what
/// was put back out of its records; why it stopped part way, if it did. A socket a
/// refusal left half put back keeps its line, with what it carries now as the "after",
/// so that the next `detach` finishes it.
fn put_back_all(
    process: &Prepared,
    places: &BTreeMap<PathBuf, Place>,
) -> (Vec<String>, Option<String>) {
    let mut lines = Vec::new();
    let mut failed = None;
    let mut owners = None;
    for (path, name, changes) in &process.records {
        let Some(place) = places.get(path) else {
            continue;
        };
        let mut done = HashSet::new();
        let mut half = Vec::new();
        for change in changes {
            // A socket this process no longer holds may have been handed to another
            // (SCM_RIGHTS, a fork): its line stays for that one's detach.
            if !process.fds.iter().any(|&(_, inode)| inode == change.0) {
                let owners = owners.get_or_insert_with(process::socket_owners);
                if let Some((other, _)) = owners.get(&change.0) {
                    lines.push(format!(
                        "  socket {}: held now by PID {other}, not this one: kept for its \
                         detach",
                        change.0
                    ));
                    continue;
                }
            }
            match put_back(&process.pidfd, &process.fds, change) {
                Ok(line) => {
                    lines.push(line);
                    done.insert(change.0);
                }
                Err((now, why)) => {
                    if let Some(now) = now {
                        half.push((change.0, now));
                    }
                    failed = Some(why);
                    break;
                }
            }
        }
        let kept = place.read(name).map(|all| {
            all.unwrap_or_default()
                .into_iter()
                .filter(|(inode, ..)| !done.contains(inode))
                .map(|(inode, before, after)| {
                    let now = half.iter().find(|(i, _)| *i == inode).map(|(_, now)| *now);
                    (inode, before, now.unwrap_or(after))
                })
                .collect::<Vec<_>>()
        });
        let written = kept.and_then(|kept| {
            place
                .write(name, &kept)
                .map_err(|err| format!("cannot update the record: {err}"))
        });
        if let Err(why) = written {
            failed.get_or_insert(why);
        }
        if failed.is_some() {
            break;
        }
    }
    (lines, failed)
}

/// Puts one socket back to what it had before `attach`, when it still carries what
/// `attach` set; the line that says what happened. On a refusal, what the socket
/// carries then, when it can be read.
fn put_back(
    pidfd: &Pidfd,
    fds: &[(i32, u64)],
    &(inode, before, after): &Change,
) -> Result<String, (Option<Options>, String)> {
    let Some(&(fd, _)) = fds.iter().find(|&&(_, i)| i == inode) else {
        return Ok(format!("  socket {inode}: closed since"));
    };
    let Some(copy) = pidfd
        .get_socket(fd, inode)
        .map_err(|err| (None, format!("pidfd_getfd of fd {fd}: {err}")))?
    else {
        return Ok(format!("  socket {inode}: closed since"));
    };
    let read = || Options::read(copy.as_fd());
    let now = read().map_err(|err| (None, format!("getsockopt on fd {fd}: {err}")))?;
    if !now.carries(&before, &after) {
        return Ok(format!(
            "  fd {fd}: left as it is: it carries {now}, changed since attach set {after}"
        ));
    }
    sockopt::restore(&copy, &before, &after)
        .map_err(|err| (read().ok(), format!("setsockopt on fd {fd}: {err}")))?;
    // The connections accepted on a listener since attach inherited its settings from
    // the kernel (inet_csk_clone_lock), and no record names them. Nothing outside can
    // tell them from connections whose program set the same itself, so they are named,
    // not touched.
    let listener = matches!(
        socket::Kind::of(copy.as_fd(), inode),
        Ok(socket::Kind::Tcp(tcp)) if tcp.state == State::LISTEN
    );
    Ok(match listener {
        true => format!(
            "  fd {fd}: back to {before}; the connections accepted on it since attach \
             keep what it had then"
        ),
        false => format!("  fd {fd}: back to {before}"),
    })
}
