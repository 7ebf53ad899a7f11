//! Attaching the route's programs to the cgroup this process is in, for as long as
//! the cgroup exists: the step systemd runs, as a unit's `ExecStartPre=+` for `enable
//! --kernel`, or inside a transient scope for `run --kernel` on a systemd host. The
//! cgroup is systemd's, and so is removing it: with it goes the attachment.

use std::process::{Command, ExitCode};

use keepalive_config::{Config, Mode};

use super::cgroup;
use crate::cli::AttachArgs;
use crate::env;
use crate::exec;
use crate::failure::{self, Failure};

/// The hidden subcommand that attaches.
pub const ATTACH: &str = "kernel-attach";

/// The options that give `config`, as `run` and `enable` take them.
pub fn options(config: &Config) -> Vec<String> {
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

/// `keepalive kernel-attach [OPTIONS] [-- COMMAND ARGS]`: attaches the program to
/// the cgroup this process is in, then executes COMMAND in place when one is given.
/// Run by systemd as a service's `ExecStartPre=+` (the service's cgroup; a failure
/// fails the start, with the reason in the journal), and by `run --kernel` on a
/// systemd host inside the transient scope systemd-run made for it.
pub fn attach(args: &AttachArgs) -> Result<ExitCode, Failure> {
    let config = env::resolve(&args.settings, |_| None, "")?;
    if let Some(refusal) = super::support::refusal() {
        return Err(Failure::with_code(1, format!("{ATTACH}: {refusal}")));
    }
    let route = super::load(&config).map_err(|failure| {
        Failure::with_code(1, format!("{ATTACH}: {}", super::reason(failure)))
    })?;
    let service = cgroup::of_service()
        .and_then(|service| service.refuse_shared().map(|()| service))
        .and_then(|service| refuse_foreign(&service).map(|()| service))
        .map_err(|why| Failure::with_code(1, format!("{ATTACH}: {why}")))?;
    // A cgroup that outlived a stop (processes left behind) still carries the
    // programs of the last start: they go, so that one route serves the service.
    keepalive_sockops::detach_ours(service.dir())
        .map_err(|err| Failure::with_code(1, format!("{ATTACH}: {err}")))?;
    route
        .attach(service.dir())
        .map_err(|err| Failure::with_code(1, format!("{ATTACH}: {err}")))?;
    let Some((program, arguments)) = args.command.split_first() else {
        failure::say(format_args!(
            "keepalive: BPF programs attached to {}",
            service.place
        ))?;
        return Ok(ExitCode::SUCCESS);
    };
    // The attachment lasts as long as the cgroup: the program descriptor may go with
    // this process image.
    let mut command = Command::new(program);
    command.args(arguments);
    Err(exec::replace_with(command, program))
}

/// Refuses every cgroup but the two this subcommand is run in: a service's, where
/// systemd runs the `ExecStartPre=+` of `enable --kernel`, and the transient scope
/// `keepalive-run-TOKEN.scope` that systemd-run makes for `run --kernel` ([`super::scope`]).
/// A `systemd-run` that does not make the scope (a shim earlier in PATH) leaves this
/// process in its caller's cgroup — a login session's scope, say — shared with
/// processes nobody named, which a route attached there would reach until the cgroup
/// goes.
fn refuse_foreign(own: &cgroup::Own) -> Result<(), String> {
    let name = own.path().rsplit('/').next().unwrap_or_default();
    let scope = name.starts_with("keepalive-run-") && name.ends_with(".scope");
    if name.ends_with(".service") || scope {
        return Ok(());
    }
    Err(format!(
        "{} is neither a service's cgroup nor the scope `run --kernel` asks systemd-run \
         for (keepalive-run-TOKEN.scope): is the systemd-run in PATH systemd's? The \
         route attaches only to a cgroup of the program's own",
        own.place
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
        };
        let argv = ["keepalive", ATTACH]
            .into_iter()
            .map(String::from)
            .chain(options(&config));
        let Subcommand::KernelAttach(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not kernel-attach");
        };
        let parsed = env::resolve(&args.settings, |_| None, "").unwrap();
        assert!(args.command.is_empty());
        assert_eq!(parsed, config);
        assert!(options(&Config::DEFAULT).is_empty());
    }
}
