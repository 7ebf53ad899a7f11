//! `run --kernel` on a systemd host: the cgroup is a transient scope that systemd
//! makes, the way systemd wants every cgroup on its host made (its single-writer rule,
//! systemd.scope(5)), and removes once the last process in it has exited.
//!
//! `systemd-run --scope` puts itself in a new scope and executes its command in place;
//! that command is `keepalive kernel-attach`, which attaches the sock_ops program to
//! the scope (for as long as the scope exists) and executes the program in place in
//! turn. The program keeps the command's process id, signals reach it directly, and
//! its exit status is the caller's, as with `run`. Children that outlive it keep the
//! scope, and the settings, until they exit.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use keepalive_config::Config;

use super::attach::{self, ATTACH};
use crate::failure::Failure;
use crate::library::quoted;
use crate::signals;

/// Whether systemd runs this host: sd_booted(3) checks for this directory.
pub fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Replaces this process with `systemd-run --scope … keepalive kernel-attach OPTIONS
/// -- PROGRAM ARGS`. Returns only when systemd-run cannot be started.
pub fn run(
    config: &Config,
    program: &OsString,
    arguments: &[OsString],
) -> Result<ExitCode, Failure> {
    let me = std::env::current_exe()
        .map_err(|err| Failure::with_code(1, format!("cannot find this command's path: {err}")))?;
    let mut command = Command::new("systemd-run");
    command
        .args(["--scope", "--quiet", "--collect"])
        // Not the pid: pids repeat across pid namespaces and over time, and a scope
        // of the same name still loaded would refuse this run.
        .arg(format!(
            "--unit=keepalive-run-{}",
            super::cgroup::unique_token()
        ))
        .arg(format!(
            "--description=keepalive run --kernel {}",
            program.to_string_lossy()
        ))
        .arg("--")
        .arg(me)
        .arg(ATTACH)
        .args(attach::options(config))
        .arg("--")
        .arg(program)
        .args(arguments);
    signals::hand_on(&mut command);
    let err = command.exec();
    Err(Failure::with_code(
        1,
        format!(
            "run --kernel: cannot run systemd-run to make a scope for {}: {err}",
            quoted(program)
        ),
    ))
}
