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
//! here inherits its settings from the kernel; a connection the program makes later is
//! not covered (nothing runs inside the program), which the output says with the way
//! to cover it at the next start.

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;

use keepalive_config::{Config, Mode, Setting};
use keepalive_sockops::Pending;

use crate::cli::AttachProcessArgs;
use crate::env;
use crate::failure::{self, Failure};
use crate::formats;
use crate::json::{self, Object};
use crate::kernel::live::{self, Coverage};
use crate::kernel::{self, cgroup};
use crate::options::Options;
use crate::status::process::{self, Pidfd};
use crate::status::tcp_entries;
use crate::status::tcp_table::{Entry, State};

/// What happened to one socket.
struct Outcome {
    fd: i32,
    entry: Entry,
    before: Options,
    /// The settings now in force, when they were (or, with --dry-run, would be)
    /// changed; `None` when the socket was left alone.
    after: Option<Options>,
    /// Why it was left alone.
    why: Option<String>,
}

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
    // With --unit, the kernel route for the connections the unit makes from now on:
    // its marking half before any socket is judged, its settings half after.
    let mut coverage = targets
        .service
        .as_ref()
        .and_then(|service| live::obstacle(&service.name, &service.cgroup));
    let route = match (&targets.service, &coverage) {
        (Some(_), None) if args.dry_run => {
            coverage = Some(Coverage::WouldAttach);
            None
        }
        (Some(_), None) => live::load(&config)
            .inspect_err(|why| coverage = Some(Coverage::Not(why.clone())))
            .ok(),
        _ => None,
    };
    let pending = match (&route, &targets.service) {
        (Some(route), Some(service)) => route
            .begin(service.cgroup.dir())
            .inspect_err(|err| coverage = Some(Coverage::Not(err.to_string())))
            .ok(),
        _ => None,
    };
    let mut reports = Vec::new();
    let mut exited = Vec::new();
    for &pid in &targets.pids {
        match attach(pid, &config, args.dry_run, pending.as_ref()) {
            Ok(outcomes) => reports.push((pid, outcomes)),
            // A process of the unit that ends while attach runs (a service's
            // short-lived children) is no failure; a PID the user named is.
            Err(_) if !args.pids.contains(&pid) && exited_now(pid) => exited.push(pid),
            Err(failure) => return Err(failure),
        }
    }
    if let (Some(pending), Some(service)) = (pending, &targets.service) {
        coverage = Some(live::finish(
            pending,
            &service.cgroup,
            &service.name,
            &records(),
        ));
    }
    let future = match (&targets.service, coverage) {
        (Some(service), Some(coverage)) => Future::Service(&service.name, coverage),
        _ => Future::Program,
    };
    let text = if args.json {
        render_json(&reports, &exited, &future, args.dry_run)
    } else {
        render_text(&reports, &exited, &future, args.dry_run)
    };
    failure::say(format_args!("{}", text.trim_end()))?;
    Ok(ExitCode::SUCCESS)
}

/// The processes named: the PIDs given, and with `--unit` every process in the
/// service's cgroup (systemctl's `ControlGroup`), its sub-cgroups included.
struct Targets {
    pids: Vec<i32>,
    service: Option<Service>,
}

/// The running service `--unit` names, and its cgroup.
struct Service {
    name: String,
    cgroup: cgroup::Own,
}

impl Targets {
    fn find(unit: Option<&str>, pids: &[i32]) -> Result<Targets, Failure> {
        let mut all = pids.to_vec();
        let service = match unit {
            Some(unit) => {
                let name = if unit.contains('.') {
                    unit.to_string()
                } else {
                    format!("{unit}.service")
                };
                let refuse = |why: String| Failure::with_code(1, format!("--unit {name}: {why}"));
                let path = kernel::unit::control_group(&name)
                    .map_err(refuse)?
                    .ok_or_else(|| refuse("not running: it has no cgroup".into()))?;
                let cgroup = cgroup::at(&path).map_err(refuse)?;
                all.extend(
                    cgroup
                        .processes()
                        .map_err(|err| refuse(format!("cannot list its processes: {err}")))?,
                );
                Some(Service { name, cgroup })
            }
            None => None,
        };
        all.sort_unstable();
        all.dedup();
        Ok(Targets { pids: all, service })
    }
}

/// Whether `pid` has exited, or begun to (a zombie, or PF_EXITING set): nothing of it
/// is left to attach or detach.
fn exited_now(pid: i32) -> bool {
    match Pidfd::open(pid) {
        Ok(pidfd) => pidfd.has_exited() || process::is_exiting(pid),
        Err(err) => err.raw_os_error() == Some(libc::ESRCH),
    }
}

/// What covers the connections made from now on, for the output.
enum Future<'a> {
    /// Processes named by PID: nothing does.
    Program,
    /// The service of `--unit`: the kernel route, as far as it could.
    Service(&'a str, Coverage),
}

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
        writable(&records()).map_err(|err| {
            refuse(format!(
                "cannot record what changes in {}, for `keepalive detach` ({err}); \
                 nothing was changed",
                records().display()
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
                apply(&copy, config)
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
        record(pid, &outcomes).map_err(|err| {
            refuse(format!(
                "configured, but cannot record it for `keepalive detach` in {}: {err}",
                records().display()
            ))
        })?;
    }
    Ok(outcomes)
}

/// Where `attach` records what it changed, one file per process, named by its pid and
/// its start time (proc(5) /proc/PID/stat, field 22), so that a pid used again by
/// another process never matches: /run/keepalive/attach for root, the user's own
/// runtime directory ($XDG_RUNTIME_DIR/keepalive/attach) otherwise; either is gone at
/// the next boot with every process it names.
fn records() -> std::path::PathBuf {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|_| !root) {
        Some(dir) => std::path::Path::new(&dir).join("keepalive/attach"),
        None => std::path::PathBuf::from("/run/keepalive/attach"),
    }
}

/// Makes `dir` when missing, and says whether this user may write in it (access(2)).
fn writable(dir: &std::path::Path) -> io::Result<()> {
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
fn record_path(pid: i32) -> Option<std::path::PathBuf> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let started = stat.rsplit_once(") ")?.1.split_whitespace().nth(19)?;
    Some(records().join(format!("{pid}-{started}")))
}

/// Adds one line per changed socket to the process's record: its inode, the options
/// before and after, as numbers. An earlier line for the same inode keeps its
/// "before": detach goes back to what the program had. A process nothing was changed
/// in gets no record: a service's short-lived children would leave a file each.
fn record(pid: i32, outcomes: &[Outcome]) -> io::Result<()> {
    let path = record_path(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    let known: Vec<u64> = parse_record(&text)
        .into_iter()
        .map(|(inode, ..)| inode)
        .collect();
    for outcome in outcomes {
        if let Some(after) = outcome
            .after
            .filter(|_| !known.contains(&outcome.entry.inode))
        {
            let _ = writeln!(
                text,
                "{} {} {}",
                outcome.entry.inode,
                numbers(&outcome.before),
                numbers(&after)
            );
        }
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
fn parse_record(text: &str) -> Vec<(u64, Options, Options)> {
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

/// `keepalive detach PID…`: puts back what `attach` changed, on each socket that still
/// carries exactly what `attach` set (one changed since belongs to whoever changed it),
/// then removes the record.
pub fn detach(unit: Option<&str>, pids_named: &[i32]) -> Result<ExitCode, Failure> {
    let targets = Targets::find(unit, pids_named)?;
    let recorded: Vec<i32> = targets
        .pids
        .iter()
        .copied()
        .filter(|&pid| record_path(pid).is_some_and(|path| path.exists()))
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
            Err(_) if !pids_named.contains(&pid) && exited_now(pid) => failure::say(format_args!(
                "PID {pid}: exited while detach ran; nothing to do"
            ))?,
            Err(failure) => return Err(failure),
        }
    }
    if let Some(service) = &targets.service {
        let ended = live::end(&service.cgroup, &records()).map_err(|why| {
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
    let path = record_path(pid).ok_or_else(|| refuse("no such process".into()))?;
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(vec![
            "  nothing to put back: `keepalive attach` changed nothing in it".into(),
        ]);
    };
    let pidfd = Pidfd::open(pid).map_err(|err| refuse(format!("pidfd_open: {err}")))?;
    let fds = process::socket_fds(&format!("/proc/{pid}"))
        .map_err(|err| refuse(format!("cannot list its descriptors: {err}")))?;
    let mut lines = Vec::new();
    for (inode, before, after) in parse_record(&text) {
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
        restore(&copy, &before).map_err(|err| refuse(format!("setsockopt on fd {fd}: {err}")))?;
        lines.push(format!("  fd {fd}: back to {before}"));
    }
    std::fs::remove_file(&path)
        .map_err(|err| refuse(format!("cannot remove {}: {err}", path.display())))?;
    Ok(lines)
}

/// Sets every option back to `before`. A timer put back is set to its old value
/// explicitly; it reads the same as before. The options that restart the keepalive
/// timer come last, as in [`Config::settings`].
fn restore(socket: &OwnedFd, before: &Options) -> io::Result<()> {
    let options = [
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, before.interval),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, before.count),
        (
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            before.user_timeout,
        ),
        (
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            u32::from(before.keepalive),
        ),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, before.idle),
    ];
    options
        .into_iter()
        .try_for_each(|(level, option, value)| set(socket, level, option, value))
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

fn apply(socket: &OwnedFd, config: &Config) -> io::Result<()> {
    for setting in config.settings() {
        let (level, option, value) = match setting {
            Setting::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
            Setting::Idle(s) => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, s.get()),
            Setting::Interval(s) => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, s.get()),
            Setting::Count(n) => (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, n.get()),
            Setting::UserTimeout(ms) => (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms.get()),
        };
        set(socket, level, option, value)?;
    }
    Ok(())
}

/// `setsockopt(2)` of an int-valued option.
fn set(socket: &OwnedFd, level: i32, option: i32, value: u32) -> io::Result<()> {
    let value = value as libc::c_int;
    // SAFETY: setsockopt(2) reads one c_int, a live local, of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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

fn render_text(
    reports: &[(i32, Vec<Outcome>)],
    exited: &[i32],
    future: &Future,
    dry_run: bool,
) -> String {
    let mut out = String::new();
    let verb = if dry_run { "would set" } else { "set" };
    for (pid, outcomes) in reports {
        let name = process::command(*pid).unwrap_or_default();
        let changed = outcomes.iter().filter(|o| o.after.is_some()).count();
        let _ = writeln!(
            out,
            "PID {pid} ({}): {} TCP sockets, {changed} {}",
            name.escape_debug(),
            outcomes.len(),
            if dry_run {
                "to configure"
            } else {
                "configured"
            }
        );
        for outcome in outcomes {
            let place = place(&outcome.entry);
            match (&outcome.after, &outcome.why) {
                (Some(after), _) => {
                    let _ = writeln!(
                        out,
                        "  fd {} {place}: {verb} {}  (was {})",
                        outcome.fd, after, outcome.before
                    );
                }
                (None, why) => {
                    let _ = writeln!(
                        out,
                        "  fd {} {place}: left alone: {}",
                        outcome.fd,
                        why.as_deref().unwrap_or("")
                    );
                }
            }
        }
        let listeners = outcomes
            .iter()
            .filter(|o| o.after.is_some() && o.entry.state == State::LISTEN)
            .count();
        let _ = writeln!(
            out,
            "  from now on: connections accepted on the {listeners} listener(s) configured \
             here carry the settings; {}",
            future.describe()
        );
    }
    for pid in exited {
        let _ = writeln!(out, "PID {pid}: exited while attach ran; nothing to do");
    }
    out
}

impl Future<'_> {
    /// Whether the connections the program makes from now on get settings.
    fn covered(&self) -> bool {
        matches!(
            self,
            Future::Service(
                _,
                Coverage::Attached | Coverage::WouldAttach | Coverage::Already
            )
        )
    }

    /// What happens to the connections the program makes from now on, in a sentence
    /// whose commands can be pasted.
    fn describe(&self) -> String {
        let Future::Service(unit, coverage) = self else {
            return "new connections the program makes itself do not: nothing runs inside \
                    it (`keepalive attach --unit UNIT` covers a service's while it runs; \
                    `keepalive enable UNIT` or `keepalive run` gives them at the next start)"
                .into();
        };
        let word = formats::shell_word(unit);
        match coverage {
            Coverage::Attached => format!(
                "new connections of {unit}'s processes get them from the kernel route \
                 attached to its cgroup, until it stops or `keepalive detach --unit {word}`"
            ),
            Coverage::WouldAttach => format!(
                "new connections of {unit}'s processes would get them from the kernel route, \
                 attached to its cgroup"
            ),
            Coverage::Already => format!(
                "new connections of {unit}'s processes get the settings of the kernel route \
                 already on its cgroup (from `keepalive enable --kernel` or an earlier attach)"
            ),
            Coverage::Not(why) => format!(
                "new connections the program makes itself do not: the kernel route cannot \
                 cover {unit} ({why}); `keepalive enable {word}` gives them at the next start"
            ),
        }
    }
}

fn place(entry: &Entry) -> String {
    if entry.state == State::LISTEN {
        format!("LISTEN {}", entry.local)
    } else {
        format!("ESTABLISHED {} -> {}", entry.local, entry.peer)
    }
}

fn render_json(
    reports: &[(i32, Vec<Outcome>)],
    exited: &[i32],
    future: &Future,
    dry_run: bool,
) -> String {
    let mut sockets = Vec::new();
    for (pid, outcomes) in reports {
        for outcome in outcomes {
            let mut object = Object::new();
            object
                .number("pid", *pid as u64)
                .number("fd", outcome.fd as u64)
                .string("state", outcome.entry.state.name())
                .string("local", &outcome.entry.local.to_string());
            if outcome.entry.state != State::LISTEN {
                object.string("peer", &outcome.entry.peer.to_string());
            }
            object
                .bool("changed", outcome.after.is_some() && !dry_run)
                .string("before", &outcome.before.to_string());
            match (&outcome.after, &outcome.why) {
                (Some(after), _) => object.string("after", &after.to_string()),
                (None, why) => object.string("left_alone", why.as_deref().unwrap_or("")),
            };
            sockets.push(object.finish());
        }
    }
    let mut out = String::from("{\"dry_run\":");
    out.push_str(if dry_run { "true" } else { "false" });
    out.push_str(",\"new_connections_covered\":");
    out.push_str(if future.covered() { "true" } else { "false" });
    out.push_str(",\"new_connections\":");
    json::push_string(&mut out, &future.describe());
    let exited: Vec<String> = exited.iter().map(i32::to_string).collect();
    out.push_str(",\"exited\":[");
    out.push_str(&exited.join(","));
    out.push_str("],\"sockets\":[");
    out.push_str(&sockets.join(","));
    out.push_str("]}");
    out
}
