//! `enable --kernel`: a systemd service whose every start attaches the sock_ops program
//! to the service's own cgroup, through an `ExecStartPre=+` step (docs/kernel.md says
//! why not `BPFProgram=`).
//!
//! systemd runs `ExecStartPre=` commands in the service's cgroup, before `ExecStart=`
//! (systemd.service(5)); with the `+` prefix, with full privileges whatever `User=`
//! and the sandboxing options say. The attachment lives as long as the cgroup, which
//! systemd removes when the service stops: a restart attaches again, and after
//! `disable` and a restart nothing is attached.

use std::fs::File;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode};

use keepalive_config::{Config, Mode};

use super::cgroup;
use crate::cli::Settings;
use crate::env;
use crate::failure::{self, Failure};

/// The hidden subcommand the drop-in runs.
pub const ATTACH: &str = "kernel-attach";

/// The options that give `config`, as `run` and `enable` take them.
fn options(config: &Config) -> Vec<String> {
    let mut options = Vec::new();
    let mut add = |name: &str, value: String| {
        options.push(name.to_string());
        options.push(value);
    };
    match config.mode {
        Mode::On => {}
        Mode::Skip => add("--mode", "skip".into()),
        Mode::Off => add("--mode", "off".into()),
    }
    if let Some(idle) = config.idle {
        add("--idle", idle.get().to_string());
    }
    if let Some(interval) = config.interval {
        add("--interval", interval.get().to_string());
    }
    if let Some(count) = config.count {
        add("--count", count.get().to_string());
    }
    if let Some(timeout) = config.user_timeout {
        add("--user-timeout", format!("{}ms", timeout.get()));
    }
    options
}

/// The drop-in's `[Service]` line: this command, by the path it was run from, attaching
/// the program with `config` at every start.
pub fn exec_start_pre(config: &Config) -> Result<String, Failure> {
    let me = std::env::current_exe()
        .map_err(|err| Failure::with_code(1, format!("cannot find this command's path: {err}")))?;
    // `%` starts a specifier in unit files (systemd.unit(5)); `%%` is a literal one.
    let me = me.to_string_lossy().replace('%', "%%");
    let mut line = format!("ExecStartPre=+{me} {ATTACH}");
    for option in options(config) {
        line.push(' ');
        line.push_str(&option);
    }
    line.push('\n');
    Ok(line)
}

/// `keepalive kernel-attach`, run by systemd as the service's `ExecStartPre=+`:
/// attaches the program to the cgroup this process is in, the service's. A failure
/// fails the start, with the reason in the journal.
pub fn attach(settings: &Settings) -> Result<ExitCode, Failure> {
    let config = env::resolve(settings, |_| None, "")?;
    if let Some(refusal) = super::support::refusal() {
        return Err(Failure::with_code(1, format!("{ATTACH}: {refusal}")));
    }
    let bpf = super::load(&config).map_err(|failure| {
        Failure::with_code(1, format!("{ATTACH}: {}", super::reason(failure)))
    })?;
    let service =
        cgroup::of_service().map_err(|why| Failure::with_code(1, format!("{ATTACH}: {why}")))?;
    // A cgroup that outlived a stop (processes left behind) still carries the
    // program of the last start: it goes, so that one program serves the service.
    for old in keepalive_sockops::attached_directly(service.dir())
        .map_err(|err| Failure::with_code(1, format!("{ATTACH}: {err}")))?
    {
        if old.name == keepalive_sockops::PROGRAM_NAME {
            keepalive_sockops::detach(service.dir(), old.id)
                .map_err(|err| Failure::with_code(1, format!("{ATTACH}: {err}")))?;
        }
    }
    bpf.attach(service.dir())
        .map_err(|err| Failure::with_code(1, format!("{ATTACH}: {err}")))?;
    failure::say(format_args!(
        "keepalive: sock_ops program attached to {}",
        service.place
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// After `enable --kernel --now`: proves that a connection made in the service's
/// cgroup carries the settings. This command joins the cgroup (cgroup.procs takes "0"
/// for the writer, cgroups(7)), makes one loopback connection and reads its options.
/// It stays there for the moment until it exits, this being its last step: its own
/// cgroup may lie outside its cgroup namespace (a command entered into a container
/// from the host sees it as `/..`), where it could not be named to go back to.
pub fn verify(unit: &str, user: bool, config: &Config) -> Result<(), Failure> {
    let fail = |why: String| Failure::with_code(1, format!("{unit}: {why}"));
    let mut systemctl = Command::new("systemctl");
    if user {
        systemctl.arg("--user");
    }
    let shown = systemctl
        .args(["show", "--value", "-p", "ControlGroup", unit])
        .output()
        .map_err(|err| fail(format!("cannot run systemctl: {err}")))?;
    let path = String::from_utf8_lossy(&shown.stdout).trim().to_string();
    if !shown.status.success() || path.is_empty() {
        return Err(fail(
            "is not running after the restart: no cgroup to verify".into(),
        ));
    }
    let service = cgroup::at(&path).map_err(fail)?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|err| fail(format!("cannot listen on loopback to verify: {err}")))?;
    let address = listener
        .local_addr()
        .map_err(|err| fail(format!("cannot listen on loopback to verify: {err}")))?;
    let mut into = File::from(
        service
            .open("cgroup.procs")
            .map_err(|err| fail(format!("cannot open {path}/cgroup.procs: {err}")))?,
    );
    into.write_all(b"0")
        .map_err(|err| fail(format!("cannot join {path} to verify: {err}")))?;
    let stream = TcpStream::connect(address)
        .map_err(|err| fail(format!("cannot connect to verify: {err}")))?;
    let carried = super::probe::settings_of(stream.as_raw_fd()).map_err(|err| {
        fail(format!(
            "cannot read the verifying connection's options: {err}"
        ))
    })?;
    let wanted = super::probe::expected(config, &carried);
    if carried != wanted {
        return Err(fail(format!(
            "a connection in its cgroup carries {carried}, not {wanted}: is another \
             program on the cgroup setting keepalive first?"
        )));
    }
    failure::say(format_args!(
        "{unit}: a connection in its cgroup carries {carried}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Subcommand};
    use clap::Parser;
    use keepalive_config::{Millis, Probes, Seconds};

    /// The drop-in's options, parsed back by the command's own parser, give the same
    /// configuration.
    #[test]
    fn options_parse_back_to_the_configuration() {
        let config = Config {
            mode: Mode::Skip,
            idle: Seconds::new(61),
            interval: Seconds::new(7),
            count: Probes::new(3),
            user_timeout: Millis::new(9000),
            debug: false,
        };
        let argv = ["keepalive", ATTACH]
            .into_iter()
            .map(String::from)
            .chain(options(&config));
        let Subcommand::KernelAttach(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not kernel-attach");
        };
        let parsed = env::resolve(&args.settings, |_| None, "").unwrap();
        assert_eq!(parsed, config);
        assert!(options(&Config::DEFAULT).is_empty());
    }
}
