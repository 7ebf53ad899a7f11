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

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;

use keepalive_config::Config;
use keepalive_sockops::Pending;

use crate::cli::AttachProcessArgs;
use crate::env;
use crate::failure::{self, Failure};
use crate::kernel::live;
use crate::netns::{self, Untouched};
use crate::options::Options;
use crate::socket::{self, Tcp};
use crate::status::process::{self, Pidfd};
use crate::status::tcp_table::State;
use record::Place;
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
    raise_descriptor_limit();
    let work =
        |marks: Option<&Pending>| attach_all(&targets, &args.pids, &config, args.dry_run, marks);
    // With --unit, the kernel route for the connections the unit makes from now on.
    let (attached, future) = match &targets.service {
        Some(service) => {
            let (done, coverage) = live::around(
                &service.name,
                &service.cgroup,
                &config,
                args.dry_run,
                &record::dir(),
                work,
            )?;
            (done, Future::Service(&service.name, coverage))
        }
        None => (work(None)?, Future::Program),
    };
    let Attached {
        reports,
        exited,
        failed,
    } = attached;
    let text = if args.json {
        render::render_json(&reports, &exited, &future, args.dry_run)
    } else {
        render::render_text(&reports, &exited, &future, args.dry_run)
    };
    failure::say(format_args!("{}", text.trim_end()))?;
    match failed {
        // What was changed is printed above and recorded for `detach`.
        Some(why) => Err(Failure::with_code(
            1,
            format!(
                "{why}; the sockets shown as set were changed, and `keepalive detach` puts \
                 them back; the processes after it were not attached"
            ),
        )),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Attaches every process of `targets`: each is duplicated and judged before any
/// socket changes, so a PID that cannot be attached leaves the others as they were;
/// then each is changed. A process of the unit (not `named`) that exits meanwhile is
/// set aside, not failed. The record place is opened and locked first: a second attach
/// or a detach of the same processes waits, then judges what this one set.
fn attach_all(
    targets: &Targets,
    named: &[i32],
    config: &Config,
    dry_run: bool,
    marks: Option<&Pending>,
) -> Result<Attached, Failure> {
    // Opened before anything is judged; a failure to open it is reported after the
    // processes were looked at, so that a missing permission over them is what is said.
    let place = (!dry_run).then(Place::own);
    let mut prepared = Vec::new();
    let mut exited = Vec::new();
    for &pid in &targets.pids {
        match prepare(pid, config, marks) {
            Ok(process) => prepared.push(process),
            // A process of the unit that ends while attach runs (a service's
            // short-lived children) is no failure; a PID the user named is.
            Err(_) if !named.contains(&pid) && targets::exited_now(pid) => exited.push(pid),
            Err(failure) => return Err(failure),
        }
    }
    let place = place.transpose().map_err(|err| {
        Failure::with_code(
            1,
            format!(
                "attach: cannot record what changes in {}, for `keepalive detach` ({err}); \
                 nothing was changed",
                record::dir().display()
            ),
        )
    })?;
    let mut attached = Attached {
        reports: Vec::new(),
        exited,
        failed: None,
    };
    let mut seen = HashMap::new();
    for process in prepared {
        let pid = process.pid;
        let (outcomes, failure) = change(process, config, place.as_ref(), &mut seen);
        match failure {
            Some(_) if !named.contains(&pid) && targets::exited_now(pid) => {
                attached.exited.push(pid)
            }
            Some(why) => {
                attached.reports.push((pid, outcomes));
                attached.failed = Some(format!("attach {pid}: {why}"));
                break;
            }
            None => attached.reports.push((pid, outcomes)),
        }
    }
    if let Some(place) = &place {
        place.sweep();
    }
    Ok(attached)
}

/// What an attach did: each process attached, with what happened to each of its
/// sockets; the processes of the unit that exited meanwhile; and the failure that
/// stopped it part way, if one did.
struct Attached {
    reports: Vec<(i32, Vec<Outcome>)>,
    exited: Vec<i32>,
    failed: Option<String>,
}

/// The descriptors of one process, duplicated and judged; nothing changed yet.
struct Prepared {
    pid: i32,
    pidfd: Pidfd,
    sockets: Vec<Judged>,
}

struct Judged {
    fd: i32,
    tcp: Tcp,
    copy: OwnedFd,
    /// What it carries; `None` where that cannot be read (MPTCP), and it is left alone.
    before: Option<Options>,
    /// Why it is left alone, when it is.
    why: Option<String>,
}

/// Every attach holds a duplicate of each socket it judges until all are changed, so
/// a process with more sockets than the soft RLIMIT_NOFILE (1024 by default) would
/// fail with EMFILE; the soft limit is raised to the hard one (getrlimit(2)), which
/// needs no privilege. Failing that, the EMFILE error says why. Raised after
/// `systemctl` ran for `--unit`, so no program this command starts inherits it.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) and setrlimit(2) read and write one rlimit, a live local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// What an untouched socket reports in the other network namespaces a process's
/// sockets belong to, read once each: a listener systemd made in the host's namespace
/// for a `PrivateNetwork=` service is judged by the host's sysctls, not the service's.
#[derive(Default)]
struct Elsewhere(HashMap<u64, Option<Untouched>>);

impl Elsewhere {
    /// The defaults of `socket`'s namespace where it is not `home`; `None` where it is,
    /// or where that namespace cannot be read (then the process's own are used).
    fn untouched(
        &mut self,
        socket: std::os::fd::BorrowedFd<'_>,
        home: Option<u64>,
    ) -> Option<Untouched> {
        let (inode, namespace) = netns::of_socket(socket).ok()?;
        if Some(inode) == home {
            return None;
        }
        *self
            .0
            .entry(inode)
            .or_insert_with(|| netns::entered(namespace.as_fd(), Untouched::read).ok())
    }
}

/// The states `attach` configures: a listener passes its settings to every connection
/// accepted on it, and an established connection is what may die silently. The
/// others are on their way in or out.
fn wanted(state: State) -> bool {
    state == State::LISTEN || state == State::ESTABLISHED
}

/// Duplicates and judges every TCP socket of one process, changing nothing. With a
/// kernel route half attached (`marks`), each listener left alone is marked as its
/// program's.
fn prepare(pid: i32, config: &Config, marks: Option<&Pending>) -> Result<Prepared, Failure> {
    let refuse = |why: String| Failure::with_code(1, format!("attach {pid}: {why}"));
    let targets::Opened { pidfd, thread, dir } = targets::open(pid).map_err(refuse)?;
    let fds = process::socket_fds(&dir).map_err(|err| {
        refuse(format!(
            "cannot list its descriptors ({dir}/fd: {err}): attaching takes ptrace \
             permission over the process (root, or its own user where Yama's ptrace_scope \
             allows); nothing was changed"
        ))
    })?;
    // A live thread's namespace is the process's: the main thread's /proc/PID/ns is
    // gone once it has exited (pthread_exit(3)) while others run on.
    let task = process::live_thread(pid).unwrap_or(pid);
    let home = netns::of(&task.to_string());
    let untouched = netns::within(task, Untouched::read).map_err(|err| {
        refuse(format!(
            "cannot read the keepalive sysctls of its network namespace ({err}); nothing \
             was changed"
        ))
    })?;
    let mut sockets = Vec::new();
    let mut elsewhere = Elsewhere::default();
    for (fd, inode) in fds {
        let copy = thread
            .as_ref()
            .unwrap_or(&pidfd)
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
        let asked = |err| refuse(format!("getsockopt on fd {fd}: {err}; nothing was changed"));
        let tcp = match socket::Kind::of(copy.as_fd(), inode).map_err(asked)? {
            socket::Kind::Tcp(tcp) => tcp,
            socket::Kind::Mptcp(tcp) if wanted(tcp.state) => {
                sockets.push(Judged {
                    fd,
                    tcp,
                    copy,
                    before: None,
                    why: Some(
                        "MPTCP: its data goes over subflows the kernel holds, which no \
                         setsockopt on it reaches"
                            .into(),
                    ),
                });
                continue;
            }
            _ => continue,
        };
        if !wanted(tcp.state) {
            continue;
        }
        let before = Options::read(copy.as_fd()).map_err(asked)?;
        let defaults = elsewhere.untouched(copy.as_fd(), home).unwrap_or(untouched);
        let why = before.configured_elsewhere(config.mode, &defaults);
        if let Some(marks) = marks.filter(|_| why.is_some() && tcp.state == State::LISTEN) {
            marks.mark_all(copy.as_fd()).map_err(|err| {
                refuse(format!(
                    "cannot mark fd {fd} as configured by its program, for the kernel \
                     route: {err}; nothing was changed"
                ))
            })?;
        }
        sockets.push(Judged {
            fd,
            tcp,
            copy,
            before: Some(before),
            why,
        });
    }
    Ok(Prepared {
        pid,
        pidfd,
        sockets,
    })
}

/// Configures the sockets of one prepared process that nobody configured: what
/// happened to each socket, and why it stopped part way, if it did.
///
/// What will change is recorded for `detach` first (`place`; none with --dry-run), so a
/// record that cannot be written leaves the process as it was. Each socket is read
/// again just before it is set: one the program configured after it was judged is its
/// program's, and left alone. Where the record then differs from what was set (a
/// refusal part way, a socket left alone), it is written again with what was.
/// `seen` holds the sockets already set in this run, which processes share after a
/// fork: each is set and recorded once.
fn change(
    process: Prepared,
    config: &Config,
    place: Option<&Place>,
    seen: &mut HashMap<u64, (i32, i32)>,
) -> (Vec<Outcome>, Option<String>) {
    let pid = process.pid;
    let mut planned = Vec::new();
    let mut judged = Vec::new();
    for socket in process.sockets {
        let inode = socket.tcp.inode;
        let why = socket.why.clone().or_else(|| {
            seen.get(&inode)
                .map(|(pid, fd)| format!("the same socket as PID {pid}'s fd {fd}, set there"))
        });
        if let (None, Some(before)) = (&why, socket.before) {
            seen.insert(inode, (pid, socket.fd));
            planned.push((inode, before, before.configured_by(config)));
        }
        judged.push((socket, why));
    }
    let left_alone = |judged: Vec<(Judged, Option<String>)>| -> Vec<Outcome> {
        judged
            .into_iter()
            .map(|(socket, why)| Outcome {
                fd: socket.fd,
                tcp: socket.tcp,
                before: socket.before,
                after: None,
                why,
            })
            .collect()
    };
    // Where attach stops before setting anything, each socket it would have set says so.
    let stopped = |judged: Vec<(Judged, Option<String>)>| -> Vec<Outcome> {
        let mut outcomes = left_alone(judged);
        for outcome in outcomes.iter_mut().filter(|o| o.why.is_none()) {
            outcome.why = Some("not changed: attach stopped before it".into());
        }
        outcomes
    };
    let Some(place) = place else {
        let mut outcomes = left_alone(judged);
        for (outcome, (.., after)) in outcomes
            .iter_mut()
            .filter(|o| o.why.is_none())
            .zip(&planned)
        {
            outcome.after = Some(*after);
        }
        return (outcomes, None);
    };
    if planned.is_empty() {
        return (left_alone(judged), None);
    }
    let Some(name) = record::name(pid) else {
        return (
            stopped(judged),
            Some("the process exited while it was attached".into()),
        );
    };
    let existing = match place.read(&name) {
        Ok(existing) => existing.unwrap_or_default(),
        Err(why) => {
            return (
                stopped(judged),
                Some(format!("{why}; nothing was changed in it")),
            );
        }
    };
    if let Err(err) = place.write(&name, &record::merged(&existing, &planned)) {
        return (
            stopped(judged),
            Some(format!(
                "cannot record what would change, for `keepalive detach` ({err}); nothing \
                 was changed in it"
            )),
        );
    }
    let mut outcomes = Vec::new();
    let mut failed = None;
    for (socket, mut why) in judged {
        let mut after = None;
        if let (None, Some(before)) = (&why, socket.before) {
            match set(&socket, before, config) {
                Ok(Set::Done(now)) => after = Some(now),
                Ok(Set::TakenMeanwhile(now)) => {
                    why = Some(format!(
                        "its program set {now} after attach read it: the program's"
                    ))
                }
                Err((now, err)) => {
                    after = now.filter(|now| *now != before);
                    failed = Some(err);
                }
            }
        }
        outcomes.push(Outcome {
            fd: socket.fd,
            tcp: socket.tcp,
            before: socket.before,
            after,
            why,
        });
        if failed.is_some() {
            break;
        }
    }
    let changed: Vec<record::Change> = outcomes
        .iter()
        .filter_map(|o| Some((o.tcp.inode, o.before?, o.after?)))
        .collect();
    if changed != planned {
        if let Err(err) = place.write(&name, &record::merged(&existing, &changed)) {
            failed.get_or_insert(format!(
                "configured, but cannot correct the record for `keepalive detach`: {err}"
            ));
        }
    }
    if failed.is_none() && process.pidfd.has_exited() {
        failed = Some("the process exited while it was attached".into());
    }
    (outcomes, failed)
}

/// What setting one socket came to.
enum Set {
    /// Set; the options it carries now.
    Done(Options),
    /// Its program configured it between the judging and now: left alone.
    TakenMeanwhile(Options),
}

/// Sets `config` on one judged socket, unless its options changed since it was judged
/// (`before`).
/// A refusal part way leaves what the kernel took: the error comes with the options
/// the socket carries then, when they can be read.
fn set(
    socket: &Judged,
    before: Options,
    config: &Config,
) -> Result<Set, (Option<Options>, String)> {
    let read = || Options::read(socket.copy.as_fd());
    let fd = socket.fd;
    let now = read().map_err(|err| (None, format!("getsockopt on fd {fd}: {err}")))?;
    if now != before {
        return Ok(Set::TakenMeanwhile(now));
    }
    sockopt::apply(&socket.copy, config)
        .map_err(|err| (read().ok(), format!("setsockopt on fd {fd}: {err}")))?;
    read()
        .map(Set::Done)
        .map_err(|err| (None, format!("getsockopt on fd {fd}: {err}")))
}
