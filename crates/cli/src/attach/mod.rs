//! `keepalive attach PID…`: keepalive for a program that is already running, without
//! a restart. Each TCP socket the process holds, listening or established, is
//! duplicated into this command with pidfd_getfd(2) (Linux 5.6) and configured with
//! setsockopt(2) on the duplicate, which is the very socket the program holds; the
//! duplicate is closed at once.
//!
//! The rule is the library's (docs/sockets.md): a socket someone configured — keepalive
//! on, a user timeout set, or a timer that differs from what an untouched socket
//! reports in its network namespace now — is left alone, and the output says why. The
//! sysctls are read in the process's own network namespace (a thread of this command
//! enters it with setns(2)), so a container's process is judged by its container's.
//!
//! What is covered from then on: a connection accepted later on a listener configured
//! here inherits its settings from the kernel; a connection the program makes later
//! only with `--unit`, from the kernel route on the service's cgroup
//! (crate::kernel::live). The output says which.
//!
//! The processes come from [`targets`], the changes are kept for `detach` by
//! [`record`], made by [`sockopt`] and shown by [`render`].

mod detach;
mod record;
mod render;
mod sockopt;
mod targets;

pub use detach::detach;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;

use keepalive_config::{Config, Mode};
use keepalive_sockops::Pending;

use crate::cli::AttachProcessArgs;
use crate::env;
use crate::failure::{self, Failure};
use crate::kernel::live;
use crate::options::Options;
use crate::status::process::{self, Pidfd};
use crate::status::tcp_entries;
use crate::status::tcp_table::{Entry, State};
use render::{Future, Outcome};
use targets::Targets;

/// `keepalive attach [SETTINGS] [--dry-run] [--json] PID…`.
pub fn run(args: &AttachProcessArgs) -> Result<ExitCode, Failure> {
    let config = env::resolve(&args.settings, |_| None, "")?;
    if !config.is_active() {
        return Err(Failure::with_code(
            2,
            "attach: these settings set nothing (`--mode off`, or `--mode skip` without \
             a timer), so there is nothing to attach; nothing was changed",
        ));
    }
    let targets = Targets::find(args.unit.as_deref(), &args.pids)?;
    let work = |marks: Option<&Pending>| -> Result<(Reports, Vec<i32>), Failure> {
        let mut reports = Vec::new();
        let mut exited = Vec::new();
        for &pid in &targets.pids {
            match attach(pid, &config, args.dry_run, marks) {
                Ok(outcomes) => reports.push((pid, outcomes)),
                // A process of the unit that ends while attach runs (a service's
                // short-lived children) is no failure; a PID the user named is.
                Err(_) if !args.pids.contains(&pid) && targets::exited_now(pid) => exited.push(pid),
                Err(failure) => return Err(failure),
            }
        }
        Ok((reports, exited))
    };
    // With --unit, the kernel route for the connections the unit makes from now on.
    let ((reports, exited), future) = match &targets.service {
        Some(service) => {
            let (done, coverage) = live::around(
                &service.name,
                &service.cgroup,
                &config,
                args.dry_run,
                &record::records(),
                work,
            )?;
            (done, Future::Service(&service.name, coverage))
        }
        None => (work(None)?, Future::Program),
    };
    let text = if args.json {
        render::render_json(&reports, &exited, &future, args.dry_run)
    } else {
        render::render_text(&reports, &exited, &future, args.dry_run)
    };
    failure::say(format_args!("{}", text.trim_end()))?;
    Ok(ExitCode::SUCCESS)
}

/// Each process attached, with what happened to each of its sockets.
type Reports = Vec<(i32, Vec<Outcome>)>;

/// Configures the TCP sockets of one process; nothing is changed unless every socket
/// could be duplicated first. With a kernel route half attached (`marks`), each
/// listener left alone is marked as its program's.
fn attach(
    pid: i32,
    config: &Config,
    dry_run: bool,
    marks: Option<&Pending>,
) -> Result<Vec<Outcome>, Failure> {
    let refuse = |why: String| Failure::with_code(1, format!("attach {pid}: {why}"));
    let pidfd = Pidfd::open(pid).map_err(|err| match err.raw_os_error() {
        Some(libc::ESRCH) => refuse("no such process".into()),
        _ => refuse(format!("pidfd_open: {err}")),
    })?;
    let dir = format!("/proc/{pid}");
    let fds = process::socket_fds(&dir).map_err(|err| {
        refuse(format!(
            "cannot list its descriptors ({dir}/fd: {err}): attaching takes ptrace \
             permission over the process (root, or its own user where Yama's ptrace_scope \
             allows)"
        ))
    })?;
    let entries = tcp_entries(&dir, &|path, err| {
        refuse(format!("cannot read {path}: {err}"))
    })?;
    let untouched = untouched(pid).map_err(refuse)?;
    let mut held: Vec<(i32, Entry, OwnedFd)> = Vec::new();
    for (fd, inode) in fds {
        let Some(entry) = entries.get(&inode) else {
            continue;
        };
        if entry.state != State::LISTEN && entry.state != State(1) {
            continue;
        }
        let copy = pidfd
            .get_socket(fd, inode)
            .map_err(|err| match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => refuse(format!(
                    "pidfd_getfd refused ({err}): attaching takes PTRACE_MODE_ATTACH over the \
                 process: root, or its own user where Yama's ptrace_scope allows; nothing \
                 was changed"
                )),
                Some(libc::ENOSYS) => refuse(
                    "this kernel has no pidfd_getfd(2) (Linux 5.6); nothing was changed".into(),
                ),
                _ => refuse(format!(
                    "pidfd_getfd of fd {fd}: {err}; nothing was changed"
                )),
            })?;
        // Closed since it was listed: no longer the process's socket.
        let Some(copy) = copy else {
            continue;
        };
        held.push((fd, entry.clone(), copy));
    }
    // Where detach will find what changed, made before anything changes.
    if !dry_run {
        record::writable(&record::records()).map_err(|err| {
            refuse(format!(
                "cannot record what changes in {}, for `keepalive detach` ({err}); \
                 nothing was changed",
                record::records().display()
            ))
        })?;
    }
    let mut judged = Vec::new();
    for (fd, entry, copy) in held {
        let before = Options::read(copy.as_fd())
            .map_err(|err| refuse(format!("getsockopt on fd {fd}: {err}")))?;
        let why = configured_elsewhere(&before, config.mode, &untouched);
        if let Some(marks) = marks.filter(|_| why.is_some() && entry.state == State::LISTEN) {
            marks.mark_all(copy.as_fd()).map_err(|err| {
                refuse(format!(
                    "cannot mark fd {fd} as configured by its program, for the kernel \
                     route: {err}; nothing was changed in this process"
                ))
            })?;
        }
        judged.push((fd, entry, copy, before, why));
    }
    let mut outcomes = Vec::new();
    for (fd, entry, copy, before, why) in judged {
        let after = match why {
            Some(_) => None,
            None if dry_run => Some(before.configured_by(config)),
            None => {
                sockopt::apply(&copy, config)
                    .map_err(|err| refuse(format!("setsockopt on fd {fd}: {err}")))?;
                Some(
                    Options::read(copy.as_fd())
                        .map_err(|err| refuse(format!("getsockopt on fd {fd}: {err}")))?,
                )
            }
        };
        outcomes.push(Outcome {
            fd,
            entry,
            before,
            after,
            why,
        });
    }
    if pidfd.has_exited() {
        return Err(refuse("the process exited while it was attached".into()));
    }
    if !dry_run {
        let changes: Vec<record::Change> = outcomes
            .iter()
            .filter_map(|o| Some((o.entry.inode, o.before, o.after?)))
            .collect();
        record::record(pid, &changes).map_err(|err| {
            refuse(format!(
                "configured, but cannot record it for `keepalive detach` in {}: {err}",
                record::records().display()
            ))
        })?;
    }
    Ok(outcomes)
}

/// The library's rule (src/tcp.rs), on options read back: why a socket counts as
/// configured by someone, if it does.
fn configured_elsewhere(options: &Options, mode: Mode, untouched: &[u32; 3]) -> Option<String> {
    if mode != Mode::Skip && options.keepalive {
        return Some("keepalive is on already".into());
    }
    if options.user_timeout != 0 {
        return Some(format!(
            "TCP_USER_TIMEOUT is set ({} ms)",
            options.user_timeout
        ));
    }
    let timers = [
        ("TCP_KEEPIDLE", options.idle),
        ("TCP_KEEPINTVL", options.interval),
        ("TCP_KEEPCNT", options.count),
    ];
    timers
        .iter()
        .zip(untouched)
        .find(|((_, value), default)| value != *default)
        .map(|((name, value), default)| {
            format!("{name} is {value}, not the namespace's default {default}: set by someone")
        })
}

/// What an untouched socket reports in `pid`'s network namespace now: its
/// `net.ipv4.tcp_keepalive_*` sysctls, read by a thread that enters the namespace
/// (/proc/sys/net shows the reader's namespace, proc_sys(5)).
fn untouched(pid: i32) -> Result<[u32; 3], String> {
    let read_all = || -> Result<[u32; 3], String> {
        let read = |name: &str| -> Result<u32, String> {
            let path = format!("/proc/sys/net/ipv4/{name}");
            std::fs::read_to_string(&path)
                .map_err(|err| format!("cannot read {path}: {err}"))?
                .trim()
                .parse()
                .map_err(|err| format!("{path}: {err}"))
        };
        Ok([
            read("tcp_keepalive_time")?,
            read("tcp_keepalive_intvl")?,
            read("tcp_keepalive_probes")?,
        ])
    };
    // The same namespace as this command's (a user's own process): read here, which
    // needs no privilege; setns(2) needs CAP_SYS_ADMIN.
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map_err(|err| format!("cannot see its network namespace: {err}"))?;
    if std::fs::read_link("/proc/self/ns/net").is_ok_and(|ours| ours == theirs) {
        return read_all();
    }
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|err| format!("cannot open its network namespace: {err}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) with a namespace descriptor this thread borrows; it
                // moves this thread alone, which ends right after.
                if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(format!(
                        "cannot enter its network namespace to read its sysctls: {}",
                        io::Error::last_os_error()
                    ));
                }
                read_all()
            })
            .join()
            .unwrap_or_else(|_| Err("the namespace reader failed".into()))
    })
}
