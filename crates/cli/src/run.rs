//! `keepalive run`: check, set the variables, exec.

use std::process::{Command, ExitCode};

use keepalive_config::Var;

use crate::check::{self, Root, Runner};
use crate::cli::RunArgs;
use crate::env;
use crate::exec;
use crate::failure::{self, Failure};
use crate::kernel;
use crate::library;

/// Replaces this process with COMMAND, the library preloaded: COMMAND keeps the process
/// id, the file descriptors and the signal dispositions, and its exit status is the
/// one the caller sees (execve(2)). Returns only when COMMAND cannot be started.
pub fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    if args.kernel {
        return kernel::run(args);
    }
    let resolved = env::resolve_against(
        &args.settings,
        |name| std::env::var_os(name),
        "in the environment",
    )?;
    let library = library::find(args.settings.library.as_deref())?;
    let (program, arguments) = args
        .command
        .split_first()
        .ok_or_else(|| Failure::usage("run: no COMMAND given"))?;
    match check::inspect(program, &Root::host(), Runner::Me) {
        Ok(verdict) if !verdict.reach.reachable() => {
            if args.strict {
                return Err(Failure::with_code(1, verdict.refusal()));
            }
            failure::warn(format_args!("{}", verdict.warning()));
        }
        Ok(_) => {}
        Err(failure) if failure.code == 127 || args.strict => return Err(failure),
        Err(failure) => {
            // A file that cannot be run at all is one error, in its own words, before
            // anything is said about checking it.
            launchable(program)?;
            failure::warn(format_args!(
                "keepalive: warning: cannot check: {}",
                failure.message
            ))
        }
    }
    // Said once nothing else can refuse, so that a refusal stays one line.
    resolved.tell();
    let mut command = Command::new(program);
    command.args(arguments);
    for var in Var::ALL {
        command.env_remove(env::name(var));
    }
    for (var, value) in resolved.variables() {
        command.env(env::name(var), value.to_string());
    }
    let preload = library::preload(std::env::var_os("LD_PRELOAD").as_deref(), &library);
    command.env("LD_PRELOAD", preload);
    Err(exec::replace_with(command, program))
}

/// Whether `program` can be executed at all, as execvp(3) would find it: exit status
/// 127 when there is no such file, 126 for a directory or a file without execute
/// permission, as shells say (the error is the file's, not the check's).
fn launchable(program: &std::ffi::OsStr) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::path::Path::new(program);
    let found = if path.as_os_str().as_encoded_bytes().contains(&b'/') {
        Some(path.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|dirs| {
            std::env::split_paths(&dirs)
                .map(|dir| dir.join(path))
                .find(|candidate| candidate.exists())
        })
    };
    let shown = crate::library::quoted(program);
    let Some(found) = found.filter(|found| found.exists()) else {
        return Err(Failure::with_code(
            127,
            format!("cannot run {shown}: no such file"),
        ));
    };
    let meta = std::fs::metadata(&found)
        .map_err(|err| Failure::with_code(126, format!("cannot run {shown}: {err}")))?;
    if meta.is_dir() {
        return Err(Failure::with_code(
            126,
            format!("cannot run {shown}: it is a directory"),
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Failure::with_code(
            126,
            format!("cannot run {shown}: not executable (no execute permission)"),
        ));
    }
    Ok(())
}
