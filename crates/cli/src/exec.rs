//! Replacing this process with COMMAND, as `run` and `kernel-attach` end: COMMAND
//! keeps the process id, the file descriptors and the signal dispositions (with
//! SIGPIPE's handed on, see [`signals`]), and its exit status is the one the caller
//! sees (execve(2)).

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::failure::Failure;
use crate::library::quoted;
use crate::signals;

/// Executes `command` in place; returns only when it cannot start, with the shells'
/// exit statuses: 127 when `program` is not found, 126 when it cannot be executed.
pub fn replace_with(mut command: Command, program: &OsStr) -> Failure {
    signals::hand_on(&mut command);
    let err = command.exec();
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    Failure::with_code(code, format!("cannot run {}: {err}", quoted(program)))
}
