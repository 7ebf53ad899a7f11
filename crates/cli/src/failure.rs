//! What the command tells its user: a failure and the exit status it maps to, and
//! the two ways a line leaves the command. Every other module reports through here,
//! so that `main` is only the entry point.
//!
//! Exit statuses (keepalive(1), EXIT STATUS): 0 success, 1 a failure of the system
//! or of the program being judged, 2 bad input from the user, 3 a report printed in
//! part, 127 a program not found; `run` passes on its program's own status.

use std::io::Write;
use std::process::ExitCode;

/// A failure the user can act on: one line on stderr, and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// Bad input: a value, a name or a file the user gave (exit status 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }

    /// A failure with its own exit status.
    pub fn with_code(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code,
        }
    }

    /// Says the failure on stderr, in the command's name, and gives its exit status.
    pub fn report(self) -> ExitCode {
        warn(format_args!("keepalive: {}", self.message));
        ExitCode::from(self.code)
    }
}

/// Writes one line to stdout. `println!` would panic when the reader has gone away
/// (EPIPE: Rust's runtime ignores SIGPIPE); here that is a failure like any other.
pub fn say(line: std::fmt::Arguments) -> Result<(), Failure> {
    writeln!(std::io::stdout(), "{line}")
        .map_err(|err| Failure::with_code(1, format!("cannot write to stdout: {err}")))
}

/// Writes one line to stderr; when that fails there is nowhere left to say so.
pub fn warn(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
