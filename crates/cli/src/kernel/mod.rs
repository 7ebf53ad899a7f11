//! The kernel route: cgroup BPF programs give every TCP connection of a program the
//! settings it did not make itself, for programs preloading cannot reach
//! (docs/kernel.md).
//!
//! `run --kernel` makes a cgroup for the program, attaches the route built by
//! keepalive-sockops from the same parsed settings as `run`, starts the program in the
//! cgroup, and removes everything when the program ends; on a systemd host, systemd
//! makes the cgroup, a transient scope, and removes it ([`scope`]).

pub mod attach;
pub mod cgroup;
pub mod live;
mod scope;
mod supervise;
mod support;
pub mod unit;
pub mod verdict;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use keepalive_config::Config;
use keepalive_sockops::Route;

use crate::check;
use crate::cli::RunArgs;
use crate::env;
use crate::failure::{self, Failure};
use crate::library::quoted;

/// Exit status of a refusal: the system cannot take the kernel route (keepalive(1),
/// EXIT STATUS: 1 is a failure of the system).
const REFUSED: u8 = 1;

fn refused(message: impl std::fmt::Display) -> Failure {
    Failure::with_code(REFUSED, format!("run --kernel: {message}"))
}

/// The part of a refusal after the subcommand's name, for other verdicts to quote.
fn reason(failure: Failure) -> String {
    failure
        .message
        .strip_prefix("run --kernel: ")
        .map(str::to_string)
        .unwrap_or(failure.message)
}

/// The route for `config`, loaded: its two programs and their map.
fn load(config: &Config) -> Result<Route, Failure> {
    Route::load(config).map_err(|err| {
        let lockdown = support::lockdown()
            .filter(|mode| mode != "none")
            .map(|mode| format!(" (kernel lockdown: {mode})"))
            .unwrap_or_default();
        refused(format!("cannot load the BPF programs: {err}{lockdown}"))
    })
}

/// The keepalive sock_ops programs that run for process `pid`'s connections (attached
/// to its cgroup or an ancestor), each as "sock_ops program keepalive (id N) runs for
/// cgroup PATH", for `status`.
pub fn attached_to(pid: i32) -> Result<Vec<String>, String> {
    let cgroup = cgroup::of(&pid.to_string())?;
    let programs = keepalive_sockops::attached(cgroup.dir()).map_err(|err| err.to_string())?;
    Ok(programs
        .into_iter()
        .filter(|program| program.name == keepalive_sockops::PROGRAM_NAME)
        .map(|program| {
            format!(
                "sock_ops program {} (id {}) runs for cgroup {}",
                program.name, program.id, cgroup.place
            )
        })
        .collect())
}

/// Warns about each listening TCP socket the command was started with (fds from 3):
/// the program inherits it, and a connection accepted on it belongs to the cgroup of
/// whoever made the listener, not to the program's, so the kernel route does not reach
/// it (docs/kernel.md); the library does.
fn warn_inherited_listeners() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for fd in entries
        .map_while(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| fd > 2)
    {
        // SAFETY: the descriptor is this process's own, borrowed for the calls below.
        let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let listening = crate::options::int_option(socket, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)
            .is_ok_and(|on| on != 0);
        let tcp = crate::options::int_option(socket, libc::SOL_SOCKET, libc::SO_PROTOCOL)
            .is_ok_and(|protocol| protocol == libc::IPPROTO_TCP as u32);
        if listening && tcp {
            failure::warn(format_args!(
                "keepalive: warning: fd {fd} is a listening TCP socket made before the \
                 program started: connections accepted on it belong to its maker's \
                 cgroup, which the kernel route does not reach; `keepalive run` \
                 without --kernel (the library) reaches them"
            ));
        }
    }
}

/// What rules `run --kernel PROGRAM` out before anything is loaded or made, as the
/// refusal `run --kernel` gives; `check --kernel` asks the same ([`verdict::judge`]).
fn obstacle(program: &OsStr) -> Result<(), Failure> {
    if let Some(refusal) = support::refusal() {
        return Err(refused(refusal));
    }
    // A new cgroup, whether systemd's scope or one made here, would move the program
    // out of the service it runs for: out of its sandboxing, its logs and its stop.
    if let Some(service) = cgroup::own_service() {
        return Err(refused(format!(
            "this runs inside {service}, and a cgroup of its own would take {} out of \
             it (its IP filtering, logs and stop); give the service the settings with \
             `keepalive enable --kernel {service}` instead",
            quoted(program)
        )));
    }
    if let Some(outer) = outer_route() {
        return Err(refused(format!(
            "{outer} already runs for this command's cgroup, and runs after the route \
             of this run (the kernel runs a cgroup's programs before its ancestors'): \
             its settings would override these, which its marking program never sees; \
             give the settings to the outer run, or run {} with `keepalive run` (the \
             library), whose settings the outer route keeps as the program's own",
            quoted(program)
        )));
    }
    if let Some(bits) = compat_bits(program, &check::Root::host()) {
        return Err(refused(compat_refusal(program, bits, "run")));
    }
    Ok(())
}

/// Why the route cannot serve `program`, a `bits`-bit program, for `command` (`run`,
/// `enable`): the options it sets itself go unseen.
fn compat_refusal(program: &OsStr, bits: u8, command: &str) -> String {
    format!(
        "{} is a {bits}-bit program: the kernel runs no cgroup setsockopt program for \
         the system calls of {bits}-bit programs (net/socket.c skips the hook for compat \
         calls), so the route cannot see the options it sets itself and would override \
         them, its explicit SO_KEEPALIVE=0 included; build the library for {bits} bits \
         and name it with `keepalive {command} --library`, or set the options in the \
         program",
        quoted(program)
    )
}

/// The keepalive sock_ops program already running for this process's cgroup, attached
/// to it or an ancestor by an outer `run --kernel` (or `enable --kernel`, `attach
/// --unit`), as "sock_ops program keepalive (id N)"; `None` when there is none or the
/// cgroup cannot be asked (the steps after this one then say why).
fn outer_route() -> Option<String> {
    let own = cgroup::own().ok()?;
    let programs = keepalive_sockops::attached(own.dir()).ok()?;
    programs
        .into_iter()
        .find(|program| program.name == keepalive_sockops::PROGRAM_NAME)
        .map(|program| format!("sock_ops program {} (id {})", program.name, program.id))
}

/// Warns when the command's `LD_PRELOAD` holds this library (an outer `keepalive run`):
/// the program inherits it, and the library sets its settings at socket(), where the
/// marking program counts them as the program's own, so they win over the kernel
/// route's.
fn warn_inherited_library() {
    let Some(preload) = std::env::var_os("LD_PRELOAD") else {
        return;
    };
    let library = preload
        .as_bytes()
        .split(|&b| b == b' ' || b == b':')
        .map(|entry| std::path::Path::new(OsStr::from_bytes(entry)))
        .find(|entry| {
            entry
                .file_name()
                .is_some_and(|name| name.as_bytes().starts_with(b"libkeepalive"))
        });
    if let Some(library) = library {
        failure::warn(format_args!(
            "keepalive: warning: LD_PRELOAD holds {} (an outer `keepalive run`?): the \
             program inherits it, and the settings it makes at socket() count as the \
             program's own, so they win over those of --kernel; remove it from \
             LD_PRELOAD for the kernel route's to apply",
            library.display()
        ));
    }
}

/// The word size of the ELF program `program` runs in `root` (through PATH and `#!`
/// lines, as `check` follows them) when it is not this command's: on a 64-bit kernel,
/// a 32-bit program makes compat system calls. `None` when it is native, or cannot be
/// judged (then running it reports why).
fn compat_bits(program: &OsStr, root: &check::Root) -> Option<u8> {
    let verdict = check::inspect(program, root, check::Runner::Me).ok()?;
    match verdict.reach {
        check::Reach::Class { bits } if bits < crate::elf::own_bits() => Some(bits),
        _ => None,
    }
}

/// Whether systemd makes the cgroup ([`scope`]): it does where it keeps its units in
/// cgroup v2; in its legacy layout it has none of v2 to make, and one is made here.
fn systemd_makes_the_cgroup() -> bool {
    scope::systemd_runs() && cgroup::unified()
}

/// The route loaded and the program's cgroup made, as `run --kernel` makes them
/// before it starts the program; `check --kernel` makes them and drops them again.
fn prepare(config: &Config) -> Result<(Route, cgroup::Scope), Failure> {
    let route = load(config)?;
    let own = cgroup::own().map_err(refused)?;
    let scope = cgroup::Scope::make(own).map_err(refused)?;
    Ok((route, scope))
}

/// `keepalive run --kernel`.
pub fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let config = env::resolve(
        &args.settings,
        |name| std::env::var_os(name),
        "in the environment",
    )?;
    let (program, arguments) = args
        .command
        .split_first()
        .ok_or_else(|| Failure::usage("run: no COMMAND given"))?;
    obstacle(program)?;
    warn_inherited_listeners();
    warn_inherited_library();
    if systemd_makes_the_cgroup() {
        return scope::run(&config, program, arguments);
    }
    // From here on every step undoes itself when dropped, in reverse order: the link
    // before the cgroup it is attached to.
    let (route, scope) = prepare(&config)?;
    let links = route
        .link(scope.dir())
        .map_err(|err| refused(format!("cannot attach the BPF programs: {err}")))?;
    let supervisor = supervise::Supervisor::new()
        .map_err(|err| refused(format!("cannot block signals to pass them on: {err}")))?;
    let mut child = supervisor
        .spawn(program, arguments, scope.procs_fd())
        .map_err(|err| {
            let code = match err.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            Failure::with_code(code, format!("cannot run {}: {err}", quoted(program)))
        })?;
    let end = supervisor.wait(&mut child).map_err(|err| {
        Failure::with_code(1, format!("cannot wait for {}: {err}", quoted(program)))
    })?;
    drop(links);
    drop(scope);
    match end {
        supervise::End::Exited(code) => Ok(ExitCode::from(code)),
        supervise::End::Killed(signal) => {
            supervise::die_like(signal);
            Ok(ExitCode::from(128 + signal as u8))
        }
    }
}
