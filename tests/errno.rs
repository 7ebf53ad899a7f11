//! errno is the real call's, from load on: no path of the library — the constructor,
//! the first call that reads the configuration, a warning at load, a failed send of it —
//! returns to the program with errno changed. Each case runs with and without the
//! library, and the program must see the same errno at `main`, after a successful
//! `socket()` in `main`, and after a successful `socket()` in an earlier preload's
//! constructor.

mod common;

use std::process::{Command, Stdio};

/// What stderr is: a pipe the test reads (the library writes nothing there), a
/// journal-like stream (where its warning goes), or closed (every call on fd 2 fails
/// with EBADF).
#[derive(Clone, Copy, Debug)]
enum Stderr {
    Pipe,
    Journal,
    Closed,
}

/// The variables: good values, or a bad one (a warning at load).
const ENVIRONMENTS: [&[(&str, &str)]; 2] = [&[("KEEPIDLE", "60")], &[("KEEPIDLE", "30s")]];

fn run(
    program: &std::path::Path,
    preload: Option<String>,
    vars: &[(&str, &str)],
    stderr: Stderr,
) -> String {
    let mut command = Command::new(program);
    command.env_remove("LD_PRELOAD").envs(vars.iter().copied());
    if let Some(preload) = preload {
        command.env("LD_PRELOAD", preload);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Stderr::Closed = stderr {
        close_stderr(&mut command);
    }
    let output = match stderr {
        Stderr::Journal => common::output_with_journal_stderr(&mut command),
        Stderr::Pipe | Stderr::Closed => command.output().unwrap(),
    };
    assert!(output.status.success(), "{:?}", output.status);
    String::from_utf8(output.stdout).unwrap()
}

/// Closes fd 2 in the child just before exec.
fn close_stderr(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: close(2) is async-signal-safe, as a pre_exec hook requires.
    unsafe {
        command.pre_exec(|| {
            libc::close(2);
            Ok(())
        });
    }
}

#[test]
fn errno_is_the_programs_from_load_on() {
    let test = "errno_is_the_programs_from_load_on";
    let (Some(program), Some(early)) = (
        common::c_program("errno_main", test),
        common::c_library("errno_early", test),
    ) else {
        return;
    };
    let shim = common::shim().display().to_string();
    let mut failures = Vec::new();
    for vars in ENVIRONMENTS {
        for stderr in [Stderr::Pipe, Stderr::Journal, Stderr::Closed] {
            for with_early in [false, true] {
                let (without, with) = if with_early {
                    (
                        Some(early.display().to_string()),
                        Some(format!("{shim} {}", early.display())),
                    )
                } else {
                    (None, Some(shim.clone()))
                };
                let expected = run(&program, without, vars, stderr);
                let seen = run(&program, with, vars, stderr);
                if seen != expected {
                    failures.push(format!(
                        "{vars:?} stderr {stderr:?} early preload {with_early}: \
                         {seen:?}, without the library {expected:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
