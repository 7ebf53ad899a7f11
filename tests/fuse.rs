//! A program whose stderr is a file on a FUSE mount whose server never answers a
//! write (issue 14): the library's line must not hold it. src/report.rs says why it
//! cannot: the library only asks fd 2 socket questions (getsockopt, which a file
//! answers with ENOTSOCK without its file system) and writes only to an AF_UNIX
//! stream. tests/support/hung_fuse.c is the server: it answers what a program needs to
//! run with its stderr there, never WRITE nor STATFS, and logs every request it reads.
//!
//! Each program runs twice on the same open file, without and with the library and a
//! variable with a bad value (so the library has a line to write at load, as the
//! control shows on a journal stream). Both runs must exit 0, and the server must see
//! the same requests from both: the library asks the server nothing. A request the
//! server never answers leaves its caller waiting for ever, so each run has a bound,
//! a hang detector rather than a timing: a run still going after it is killed and the
//! test fails, naming the requests that run left pending.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "stderr_on_a_hung_fuse_mount_never_holds_the_program";

/// Far beyond what any of these programs takes; only a program that waits on the
/// server gets near it.
const BOUND: Duration = Duration::from_secs(10);

/// A value the library rejects, with a line at load.
const BAD_VALUE: (&str, &str) = ("KEEPIDLE", "30s");

/// Requests that would mean the library asked the server something a hung server
/// never answers: a write of its line, or the statfs(2) that "is it local?" must not
/// be.
const FORBIDDEN: [&str; 2] = ["WRITE", "STATFS"];

/// A program to run with its stderr on the mount, and the variables it gets.
struct Program {
    argv: &'static [&'static str],
    vars: &'static [(&'static str, &'static str)],
}

const TRUE: Program = Program {
    argv: &["/bin/true"],
    vars: &[BAD_VALUE],
};

/// A line at load, and a TCP socket configured.
const PYTHON_SOCKET: Program = Program {
    argv: &["python3", "-c", "import socket; socket.socket()"],
    vars: &[BAD_VALUE],
};

#[test]
fn stderr_on_a_hung_fuse_mount_never_holds_the_program() {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        common::skip(TEST, "mounting a FUSE file system needs root");
        return;
    }
    if !Path::new("/dev/fuse").exists() {
        common::skip(TEST, "no /dev/fuse");
        return;
    }
    let Some(server) = common::c_program("hung_fuse", TEST) else {
        return;
    };
    let mut programs = vec![TRUE];
    if common::have(TEST, "python3") {
        programs.push(PYTHON_SOCKET);
    }
    for program in &programs {
        the_library_has_a_line_to_write(program);
    }
    // Attributes cached for a day, then expired at once: in the second, any stat(2)
    // of fd 2 that may ask the server does, so only AT_STATX_DONT_SYNC keeps the
    // library's identity check from reaching it.
    for attr_valid in ["86400", "0"] {
        let mount = Mount::new(&server, attr_valid);
        for program in &programs {
            let without = mount.requests_of(|stderr| run(plain(program), stderr));
            let with = mount.requests_of(|stderr| run(preloaded(program), stderr));
            let context = format!(
                "{:?}, attributes valid {attr_valid} s: requests without the library \
                 {without:?}, with it {with:?}",
                program.argv
            );
            assert!(
                !with
                    .iter()
                    .any(|request| FORBIDDEN.contains(&request.as_str())),
                "the library sent the server a request it never answers: {context}"
            );
            let (mut without, mut with) = (without, with);
            without.sort();
            with.sort();
            assert_eq!(with, without, "the library asked the server: {context}");
        }
    }
}

/// The control: with stderr a journal stream, the same run with the library does
/// write a line, so the runs on the mount are runs where the library had one to write.
fn the_library_has_a_line_to_write(program: &Program) {
    let output = common::output_with_journal_stderr(preloaded(program).stdin(Stdio::null()));
    let written = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{:?}: {:?}",
        program.argv,
        output.status
    );
    assert!(
        written.contains("libkeepalive:"),
        "{:?} wrote no line to a journal stream: {written:?}",
        program.argv
    );
}

fn plain(program: &Program) -> Command {
    let mut command = Command::new(program.argv[0]);
    command.args(&program.argv[1..]).env_remove("LD_PRELOAD");
    for name in common::VARIABLES {
        command.env_remove(name);
    }
    command.envs(program.vars.iter().copied());
    command
}

fn preloaded(program: &Program) -> Command {
    let mut command = common::preloaded(program.argv[0], program.vars);
    command.args(&program.argv[1..]);
    command
}

/// Runs `command` with `stderr` as its fd 2; `Err` says how it failed: its exit status,
/// or that it was still running after [`BOUND`] (it is killed then, and is freed from
/// the server once the mount's guard kills the server).
fn run(mut command: Command, stderr: &File) -> Result<(), String> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().expect("duplicate stderr file"))
        .spawn()
        .expect("spawn program");
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(status) = child.try_wait().expect("wait for program") {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("{what} exited with {status}"))
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err(format!(
                "{what} still running after {BOUND:?}: it waits on the server"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hung_fuse server mounted on a directory of its own, with its one file open for
/// writing (appending: opening with O_TRUNC would wait on a SETATTR it never
/// answers). Dropping it kills the server, which aborts the connection and so frees
/// anything waiting on it, detaches the mount, then closes the file — even when an
/// assertion failed.
struct Mount {
    server: Child,
    dir: PathBuf,
    log: PathBuf,
    file: File,
}

impl Mount {
    fn new(server: &Path, attr_valid: &str) -> Mount {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fuse-{}-{attr_valid}", std::process::id()));
        let mountpoint = dir.join("mnt");
        let log = dir.join("requests.log");
        std::fs::create_dir_all(&mountpoint).expect("create mount point");
        let mut child = Command::new(server)
            .arg(&mountpoint)
            .arg(&log)
            .arg(attr_valid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn hung_fuse");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("hung_fuse stdout");
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read hung_fuse stdout");
        if first.trim_end() != "mounted" {
            let status = child.wait().expect("wait for hung_fuse");
            panic!("hung_fuse did not mount ({status}); its stderr says why");
        }
        let file = match OpenOptions::new()
            .append(true)
            .open(mountpoint.join("file"))
        {
            Ok(file) => file,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                detach(&mountpoint);
                panic!("open the file on the mount: {err}");
            }
        };
        Mount {
            server: child,
            dir,
            log,
            file,
        }
    }

    /// The requests the server read while `body` ran with the open file, by opcode
    /// name, in the order read; panics with them if `body` failed. Every request a run
    /// caused is in the log by the time it exits: the server logs each one before it
    /// answers.
    fn requests_of(&self, body: impl FnOnce(&File) -> Result<(), String>) -> Vec<String> {
        let before = self.requests().len();
        let outcome = body(&self.file);
        let requests = self.requests().split_off(before);
        if let Err(why) = outcome {
            panic!("{why}; the server read {requests:?}");
        }
        requests
    }

    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .expect("read the server's log")
            .lines()
            .map(|line| line.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Only once the mount is gone: reading a directory on it waits on the server.
        if detach(&self.dir.join("mnt")) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // The file closes after this, on an aborted connection: nothing to wait for.
    }
}

/// umount -l: the mount goes even while a process still has a file open on it.
/// Whether it went; failing to is a test failure, unless one is under way.
fn detach(mountpoint: &Path) -> bool {
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())
        .expect("mount point without NUL");
    // SAFETY: umount2(2) reads one NUL-terminated path, which `path` keeps alive.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    assert!(
        rc == 0 || std::thread::panicking(),
        "umount -l {}: {}",
        mountpoint.display(),
        std::io::Error::last_os_error()
    );
    rc == 0
}
