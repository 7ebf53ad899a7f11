//! `keepalive audit`: every established TCP connection of the host, in every network
//! namespace the command can enter (all of them, as root; its own otherwise), by the
//! unit, container or process that holds it, with keepalive on or off, how long the
//! connection has been idle, and the one line that would fix each group.
//!
//! Connections come from the kernel through sock_diag ([`diag`]), one dump per
//! namespace; a socket inode leads to its process through `/proc/PID/fd` (one pass
//! over every process), and a process to its unit or container through
//! `/proc/PID/cgroup`. Where the command may duplicate the process's descriptors
//! (root), keepalive and its timers are read with getsockopt, exactly; elsewhere a
//! keepalive timer pending on the connection (`idiag_timer` 2) says "on".

mod diag;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::os::fd::{AsFd, RawFd};
use std::process::ExitCode;

use diag::Connection;
use keepalive_config::Mode;

use crate::cli::{AuditArgs, AuditFormat};
use crate::elf;
use crate::failure::{self, Failure};
use crate::formats;
use crate::json::Object;
use crate::netns::{self, Untouched};
use crate::options::Options;
use crate::socket;
use crate::status::process::{self, Pidfd};

/// Who holds a connection, and what the audit knows of its keepalive.
struct Seen {
    connection: Connection,
    pid: Option<i32>,
    group: String,
    /// The options read back, where the descriptor could be duplicated.
    options: Option<Options>,
    /// Why the connection counts as its program's by the library's rule
    /// ([`Options::configured_elsewhere`]), when it does: `attach` leaves it alone,
    /// so no fix is offered for it.
    own: Option<String>,
}

impl Seen {
    /// Keepalive on: from the options when read, else from a pending keepalive timer.
    fn keepalive(&self) -> bool {
        self.options
            .map_or(self.connection.timer == 2, |options| options.keepalive)
    }

    fn idle_seconds(&self) -> u64 {
        self.connection.idle_ms.map_or(0, |ms| u64::from(ms) / 1000)
    }
}

pub fn run(args: &AuditArgs) -> Result<ExitCode, Failure> {
    if let Some(pid) = args.pid {
        look_into(pid)?;
    }
    let owners = process::socket_owners();
    let mut holders = Holders::default();
    let mut groups: HashMap<i32, String> = HashMap::new();
    let mut seen = Vec::new();
    let wanted = args.pid.and_then(|pid| netns::of(&pid.to_string()));
    for (namespace, pid) in namespaces() {
        let read = netns::within(pid, || Ok((diag::established()?, Untouched::read().ok())));
        // A namespace the command may not enter (another's, without root) is left
        // out, and said so; the rest of the host is still audited.
        let (connections, untouched) = match read {
            Ok(read) => read,
            Err(err) => {
                let why = match err.raw_os_error() {
                    Some(libc::EPERM) => "entering it takes root (CAP_SYS_ADMIN)".to_string(),
                    _ => err.to_string(),
                };
                // The namespace `--pid` asks about: an answer without it is no answer.
                if wanted == Some(namespace) {
                    return Err(Failure::with_code(
                        1,
                        format!(
                            "audit --pid {}: its network namespace {namespace} cannot be \
                             entered: {why}",
                            args.pid.unwrap_or(pid)
                        ),
                    ));
                }
                failure::warn(format_args!(
                    "keepalive: audit: network namespace {namespace} (process {pid}'s) left \
                     out: {why}"
                ));
                continue;
            }
        };
        for connection in connections {
            let owner = owners.get(&connection.inode).copied();
            let pid = owner.map(|(pid, _)| pid);
            let read = owner.and_then(|(pid, fd)| holders.read(pid, fd, connection.inode));
            let options = match read {
                Some(Held::Tcp(options)) => Some(options),
                _ => None,
            };
            seen.push(Seen {
                group: pid.map_or_else(
                    || "no process".to_string(),
                    |pid| groups.entry(pid).or_insert_with(|| group_of(pid)).clone(),
                ),
                own: match read {
                    Some(Held::Mptcp) => Some(MPTCP.to_string()),
                    _ => options
                        .zip(untouched)
                        .filter(|(options, _)| !options.keepalive)
                        .and_then(|(options, untouched)| {
                            options.configured_elsewhere(Mode::On, &untouched)
                        }),
                },
                options,
                connection,
                pid,
            });
        }
    }
    seen.retain(|s| {
        (args.all || !s.keepalive())
            && s.idle_seconds() >= args.min_idle
            && args.pid.is_none_or(|pid| s.pid == Some(pid))
            && args
                .unit
                .as_ref()
                .is_none_or(|unit| s.group == *unit || s.group == format!("{unit}.service"))
    });
    let text = match args.format {
        AuditFormat::Text => render_text(&seen),
        AuditFormat::Json => render_json(&seen),
        AuditFormat::Prometheus => render_prometheus(&seen),
    };
    failure::say(format_args!("{}", text.trim_end()))?;
    Ok(ExitCode::SUCCESS)
}

/// `--pid PID` must name a process whose connections this user can see: "no
/// connection without keepalive" of one it cannot is a false all-clear.
fn look_into(pid: i32) -> Result<(), Failure> {
    let refuse = |why: String| Failure::with_code(1, format!("audit --pid {pid}: {why}"));
    if let Some(group) = process::thread_group(pid).filter(|&group| group != pid) {
        return Err(refuse(format!(
            "a thread of process {group}; give the process"
        )));
    }
    let dir = process::fd_dir(pid).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => refuse("no such process".into()),
        _ => refuse(format!("/proc/{pid}: {err}")),
    })?;
    process::socket_fds(&dir).map(drop).map_err(|err| {
        refuse(format!(
            "cannot see which connections it holds ({dir}/fd: {err}): that takes root, or \
             the process's own user"
        ))
    })
}

/// One process of each network namespace this command can see, by the namespace's
/// inode; its own first. Processes it may not look into (other users', without root)
/// are counted and said: a namespace only they are in is not seen at all.
fn namespaces() -> Vec<(u64, i32)> {
    let mut found: BTreeMap<u64, i32> = BTreeMap::new();
    let own = netns::of("self");
    let mut hidden = 0;
    for pid in process::pids() {
        match netns::of(&pid.to_string()) {
            Some(inode) => {
                found.entry(inode).or_insert(pid);
            }
            None if std::path::Path::new(&format!("/proc/{pid}")).exists() => hidden += 1,
            None => {}
        }
    }
    if hidden > 0 {
        failure::warn(format_args!(
            "keepalive: audit: {hidden} processes could not be looked into (their \
             /proc/PID/ns/net is not readable to this user; without root, those of other \
             users): a network namespace only they are in is left out, and their \
             connections in the others show as \"no process\""
        ));
    }
    let mut list: Vec<(u64, i32)> = found.into_iter().collect();
    list.sort_by_key(|(inode, _)| Some(*inode) != own);
    list
}

/// One pidfd per process whose sockets are read, opened on first need; `None` for a
/// process that cannot be reached (gone, or no permission), asked once.
#[derive(Default)]
struct Holders(HashMap<i32, Option<Pidfd>>);

/// What the socket behind a connection is, read on a duplicate.
enum Held {
    /// A TCP socket, and its options.
    Tcp(Options),
    /// An MPTCP socket: the connection is one of its subflows, which the kernel grafts
    /// onto it (the same inode), and no setsockopt from outside reaches.
    Mptcp,
}

/// Why an MPTCP connection gets no fix: `attach` leaves it alone too.
const MPTCP: &str = "an MPTCP subflow, which no setsockopt from outside reaches";

impl Holders {
    /// What socket `inode`, which `pid` holds as `fd`, is, read on a duplicate.
    fn read(&mut self, pid: i32, fd: RawFd, inode: u64) -> Option<Held> {
        let pidfd = self
            .0
            .entry(pid)
            .or_insert_with(|| Pidfd::open(pid).ok())
            .as_ref()?;
        let copy = pidfd.get_socket(fd, inode).ok()??;
        match socket::Kind::of(copy.as_fd(), inode).ok()? {
            socket::Kind::Mptcp(_) => Some(Held::Mptcp),
            _ => Options::read(copy.as_fd()).ok().map(Held::Tcp),
        }
    }
}

/// The unit or container a process runs for, by its cgroup v2 path: the innermost
/// `.service` or `.scope` (a container's, a login session's); else the process.
fn group_of(pid: i32) -> String {
    let path = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("0::"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    path.split('/')
        .rev()
        .find(|part| part.ends_with(".service") || part.ends_with(".scope"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "process {pid} ({})",
                process::command(pid).unwrap_or_default()
            )
        })
}

/// The line that fixes a group without keepalive: `attach` now — for a service,
/// `attach --unit`, which also covers the connections it makes from now on — and for a
/// service the next start too; the kernel route where preloading cannot reach the
/// program. Every command is quoted to paste.
fn fix(group: &str, pids: &[i32]) -> String {
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    let unreachable = pids.first().is_some_and(|pid| {
        std::fs::read(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|data| elf::Elf::parse(&data).ok())
            .is_some_and(|elf| elf.interpreter.is_none() || elf.go)
    });
    let unit = formats::shell_word(group);
    let service = group.ends_with(".service");
    let now = if service {
        format!("keepalive attach --unit {unit}")
    } else {
        format!("keepalive attach {}", list.join(" "))
    };
    let next = match (service, unreachable) {
        (true, true) => format!("keepalive enable --kernel {unit}"),
        (true, false) => format!("keepalive enable {unit}"),
        (false, true) => "keepalive run --kernel -- PROGRAM".to_string(),
        (false, false) => return now,
    };
    format!("{now}; next start: {next}")
}

fn render_text(seen: &[Seen]) -> String {
    let mut groups: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in seen {
        groups.entry(s.group.as_str()).or_default().push(s);
    }
    let mut out = String::new();
    if groups.is_empty() {
        out.push_str("no established TCP connection without keepalive\n");
    }
    for (group, list) in groups {
        let without: Vec<&&Seen> = list.iter().filter(|s| !s.keepalive()).collect();
        let idle = list.iter().map(|s| s.idle_seconds()).max().unwrap_or(0);
        let own: Vec<&str> = without.iter().filter_map(|s| s.own.as_deref()).collect();
        let mut pids: Vec<i32> = without
            .iter()
            .filter(|s| s.own.is_none())
            .filter_map(|s| s.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        let _ = write!(
            out,
            "{}: {} connections, {} without keepalive",
            group.escape_debug(),
            list.len(),
            without.len()
        );
        if let Some(first) = own.first() {
            let _ = write!(
                out,
                " ({} of them set up by the program itself, e.g. {first})",
                own.len()
            );
        }
        let _ = writeln!(out, ", longest idle {idle} s");
        if !pids.is_empty() {
            let _ = writeln!(out, "  fix: {}", formats::printable(&fix(group, &pids)));
        } else if !own.is_empty() {
            let _ = writeln!(
                out,
                "  no fix from outside: what a program set up itself is its own (attach \
                 leaves it alone)"
            );
        }
    }
    out
}

fn render_json(seen: &[Seen]) -> String {
    let objects: Vec<String> = seen
        .iter()
        .map(|s| {
            let mut object = Object::new();
            match s.pid {
                Some(pid) => object.number("pid", pid as u64),
                None => object.null("pid"),
            };
            object
                .string("group", &s.group)
                .string("local", &s.connection.local.to_string())
                .string("remote", &s.connection.peer.to_string())
                .number("idle_seconds", s.idle_seconds())
                .bool("keepalive", s.keepalive());
            if let Some(own) = &s.own {
                object.string("set_by_program", own);
            }
            if let Some(o) = s.options.filter(|o| o.keepalive) {
                object
                    .number("idle", u64::from(o.idle))
                    .number("interval", u64::from(o.interval))
                    .number("count", u64::from(o.count))
                    .number("user_timeout_ms", u64::from(o.user_timeout));
            }
            object.finish()
        })
        .collect();
    format!("{{\"connections\":[{}]}}", objects.join(","))
}

/// Two gauges by group: the connections without keepalive, and of those the ones their
/// program set up itself, which `attach` leaves alone, so that an alert can be on the
/// difference: what an operator can fix from outside.
fn render_prometheus(seen: &[Seen]) -> String {
    let gauges = [
        Gauge {
            name: "keepalive_connections_without_keepalive",
            help: "Established TCP connections with SO_KEEPALIVE off, by unit, container or \
                   process.",
            counted: |s| !s.keepalive(),
        },
        Gauge {
            name: "keepalive_connections_set_by_program",
            help: "Of the connections without keepalive, those their program set up itself \
                   (a user timeout, timers of its own), which keepalive attach leaves alone.",
            counted: |s| !s.keepalive() && s.own.is_some(),
        },
    ];
    let mut out = String::new();
    for Gauge {
        name,
        help,
        counted,
    } in gauges
    {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in seen.iter().filter(|s| counted(s)) {
            *counts.entry(s.group.as_str()).or_default() += 1;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (group, count) in counts {
            // The text format's label escapes (exposition_formats.md): a raw newline
            // would end the sample mid-label, and the collector drop the whole file.
            let label = group
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = writeln!(out, "{name}{{group=\"{label}\"}} {count}");
        }
    }
    out
}

/// A Prometheus gauge by group: its name, its help line, and which connections it counts.
struct Gauge {
    name: &'static str,
    help: &'static str,
    counted: fn(&Seen) -> bool,
}
