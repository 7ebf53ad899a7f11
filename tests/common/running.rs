#![allow(dead_code)] // each test binary uses its own part of this module
//! A program already running, started without the library or the kernel route, for
//! the tests of `keepalive attach`, `detach` and `audit`: it reports its sockets'
//! settings as it reads them itself, with getsockopt.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::keepalive_command;
use crate::common::net::Proc;
use crate::common::{VARIABLES, have, skip};

/// A program that opens a listener, a connection to it and its accepted end, and one
/// more pair whose client end it configures itself (keepalive on, idle 333 s); prints
/// `@ ready pid=… port=…`; then on each line of stdin: `accept` connects and accepts
/// one more pair, `report` prints `@ fd=N keepalive=K idle=I` for each socket, read
/// with getsockopt in the program itself.
pub const PROGRAM: &str = r#"
import os, socket, sys
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
socks = {"listener": l}
def pair(name):
    c = socket.create_connection(l.getsockname()); a, _ = l.accept()
    socks[name + ".client"] = c; socks[name + ".accepted"] = a
    return c
pair("first")
own = socket.socket(); own.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
own.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 333)
own.connect(l.getsockname()); a, _ = l.accept()
socks["own.client"] = own; socks["own.accepted"] = a
print("@ ready pid=%d port=%d" % (os.getpid(), l.getsockname()[1]), flush=True)
for line in sys.stdin:
    if line.strip() == "accept":
        pair("later")
    for name, s in sorted(socks.items()):
        k = s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        i = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        print("@ %s keepalive=%d idle=%d" % (name, k, i), flush=True)
    print("@ done", flush=True)
"#;

pub fn root(test: &str) -> bool {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(
            test,
            "attaching to another process's sockets needs root here",
        );
    }
    root && have(test, "python3")
}

/// The program, started without any preload, and its pid.
pub fn start(command: &mut Command) -> (Proc, u32) {
    let (program, ready) = start_ready(command);
    (program, field(&ready, "pid").parse().unwrap())
}

/// The program, started without any preload, and the `@ ready` line it printed.
pub fn start_ready(command: &mut Command) -> (Proc, String) {
    command.env_remove("LD_PRELOAD");
    for name in VARIABLES {
        command.env_remove(name);
    }
    let mut program = Proc::spawn(command);
    let ready = program
        .line("@ ready", Duration::from_secs(20))
        .expect("the program started");
    (program, ready)
}

pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// What the program reads back for each socket: name -> (keepalive, idle).
pub fn report(program: &mut Proc, command: &str) -> Vec<(String, (u32, u32))> {
    program.tell(command);
    let mut seen = Vec::new();
    loop {
        let line = program
            .next_line(Duration::from_secs(20))
            .expect("a report line");
        if line.starts_with("@ done") {
            return seen;
        }
        let name = line.split_whitespace().nth(1).unwrap().to_string();
        seen.push((
            name,
            (
                field(&line, "keepalive").parse().unwrap(),
                field(&line, "idle").parse().unwrap(),
            ),
        ));
    }
}

pub fn attach(args: &[&str]) -> (i32, String, String) {
    attach_through(&[], args)
}

/// `keepalive attach ARGS`, run through `wrapper` (a command and its arguments that
/// run the rest) when one is given.
pub fn attach_through(wrapper: &[&str], args: &[&str]) -> (i32, String, String) {
    let mut command = keepalive_command();
    if let Some((program, arguments)) = wrapper.split_first() {
        let keepalive = command.get_program().to_owned();
        let mut wrapped = Command::new(program);
        wrapped.args(arguments).arg(keepalive);
        for (name, _) in command.get_envs() {
            wrapped.env_remove(name);
        }
        command = wrapped;
    }
    let output = command
        .arg("attach")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn python(script: &str) -> Command {
    let mut command = Command::new("python3");
    command.args(["-c", script]);
    command
}

/// What `python3 -c SCRIPT` prints, trimmed, given `input` on stdin: how the tests
/// parse the command's JSON with a parser that is not the command's own.
pub fn python_reads(script: &str, input: &str) -> String {
    use std::io::Write;
    let output = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(input.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
