//! The library's one line at load can never harm the program: no SIGPIPE, no waiting,
//! nothing spliced into the program's data, no cancellation point, and the
//! configuration is read once even when a fork comes while the line is being sent.
//! That nothing is written after load at all is tests/quiet.rs's matrix.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{as_child, preloaded, run_child};

/// One bad value, so the library writes a warning at start-up.
const BAD: (&str, &str) = ("KEEPIDLE", "30s");

/// A pipe: (read end, write end), both blocking.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2(2) writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are new descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A pipe whose buffer is full: any blocking write to it would wait for ever.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (read, write) = pipe();
    let fd = write.as_raw_fd();
    // SAFETY: fcntl(2) on a descriptor we own; O_NONBLOCK only while filling, then
    // cleared, so the child gets a blocking pipe.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let chunk = [b'x'; 4096];
        while libc::write(fd, chunk.as_ptr().cast(), chunk.len()) > 0 {}
        libc::fcntl(fd, libc::F_SETFL, flags);
    }
    (read, write)
}

/// Runs `command` with its stderr into a pipe that is already full: it must not
/// block on it, but exit, successfully, within 30 s.
fn succeeds_with_stderr_full(command: &mut Command, what: &str) {
    let (_read, write) = full_pipe();
    let child = command.stderr(Stdio::from(write)).spawn().unwrap();
    let status = finishes_within(child, Duration::from_secs(30), what);
    assert!(status.success(), "{status:?}");
}

/// Waits for `child` at most `limit`; kills it and fails the test if it is still
/// running then.
fn finishes_within(mut child: Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}: the library waited on stderr");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Creates TCP sockets, with debug on: each one writes a line.
fn create_sockets() {
    for _ in 0..50 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    }
}

// ---- SIGPIPE ---------------------------------------------------------------------

/// A start-up warning into a pipe whose reader has gone must not kill the program
/// before `main` (/bin/true, whose SIGPIPE is the default: it kills).
#[test]
fn a_warning_into_a_dead_pipe_does_not_kill_before_main() {
    let (read, write) = pipe();
    drop(read);
    let status = preloaded("/bin/true", &[BAD])
        .stderr(Stdio::from(write))
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

// ---- never wait ------------------------------------------------------------------

/// A full stderr pipe holds neither the constructor nor `main`.
#[test]
fn a_full_stderr_pipe_does_not_hold_the_start() {
    succeeds_with_stderr_full(&mut preloaded("/bin/true", &[BAD]), "/bin/true");
}

// ---- never into the program's data ----------------------------------------------

/// A seccomp filter (or an LSM) that refuses getsockopt on fd 2 with EPERM proves
/// nothing about fd 2: with a TCP connection there and a refused value to report at
/// load, no line may go into it. The filter is installed before exec, so it is in
/// place when the library's constructor runs.
#[test]
fn a_refused_socket_check_writes_nothing_into_a_tcp_fd_2() {
    const NAME: &str = "a_refused_socket_check_writes_nothing_into_a_tcp_fd_2";
    let body = || {
        let mut value = 0;
        let mut len = 4;
        // SAFETY: getsockopt(2) into live locals.
        let rc = unsafe {
            libc::getsockopt(
                2,
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&raw mut value).cast(),
                &mut len,
            )
        };
        assert_eq!((rc, common::errno()), (-1, libc::EPERM), "filter in place");
        // SAFETY: write(2) of a live buffer to fd 2.
        unsafe { libc::write(2, b"APP-DATA\n".as_ptr().cast(), 9) };
        create_sockets();
    };
    if as_child(NAME, body) {
        return;
    }
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let stderr = TcpStream::connect(peer.local_addr().unwrap()).unwrap();
    let (mut received, _) = peer.accept().unwrap();
    run_child(NAME, &[BAD], |command| {
        command.stderr(Stdio::from(OwnedFd::from(stderr)));
        use std::os::unix::process::CommandExt;
        // SAFETY: the filter is installed with prctl(2) alone, which is
        // async-signal-safe, as a pre_exec hook requires: getsockopt(2, ...) fails.
        unsafe { command.pre_exec(|| common::refuse_syscall(libc::SYS_getsockopt, 0, 2)) };
    });
    let mut bytes = Vec::new();
    received.read_to_end(&mut bytes).unwrap();
    assert_eq!(String::from_utf8_lossy(&bytes), "APP-DATA\n");
}

/// A per-connection service on an `AF_UNIX` listener (inetd, systemd `Accept=yes` with
/// `StandardInput=socket`) starts with the connection on fds 0, 1 and 2. A bad value's
/// warning must not reach the peer, while the program still runs; the control run,
/// with the same kind of socket on fd 2 alone (as journald's stream is), gets the line.
#[test]
fn a_connection_on_fds_0_to_2_gets_no_lines() {
    let run = |stdin_too: bool| {
        let (ours, theirs) = common::journal_stream();
        let fd = |s: &UnixStream| Stdio::from(OwnedFd::from(s.try_clone().unwrap()));
        let stdin = if stdin_too {
            fd(&theirs)
        } else {
            Stdio::null()
        };
        let stdout = if stdin_too {
            fd(&theirs)
        } else {
            Stdio::null()
        };
        let status = preloaded("/bin/true", &[BAD])
            .stdin(stdin)
            .stdout(stdout)
            .stderr(fd(&theirs))
            .status()
            .unwrap();
        assert!(status.success(), "{status:?}");
        drop(theirs);
        let mut received = String::new();
        (&ours).read_to_string(&mut received).unwrap();
        received
    };
    assert_eq!(run(true), "", "the peer read the library's line");
    assert!(
        run(false).starts_with("libkeepalive: KEEPIDLE=\"30s\" ignored"),
        "an AF_UNIX stderr that is not the connection gets the warning"
    );
}

/// Node's `child_process` gives each child AF_UNIX socketpairs as its stdio, not pipes,
/// and a parent that runs `sh -c '... 2>&1'` parses what comes back as data. A bad
/// value must not put the library's line into that data: a socketpair's peer has no
/// name, so it is never taken for a journal (third review of issue 20, finding 2).
#[test]
fn a_node_childs_output_gets_no_line() {
    const NAME: &str = "a_node_childs_output_gets_no_line";
    if !common::have(NAME, "node") {
        return;
    }
    const PARENT: &str = "process.stdout.write(require('child_process')\
        .execSync(\"sh -c 'echo data' 2>&1\").toString())";
    let output = preloaded("node", &[BAD])
        .args(["-e", PARENT])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "data\n");
}

// ---- never a cancellation point --------------------------------------------------

/// A thread with a cancel pending calls socket(), which the library configures: it gets
/// its descriptor back, and is cancelled at its own cancellation point afterwards.
#[test]
fn a_pending_cancel_does_not_act_inside_socket() {
    const NAME: &str = "a_pending_cancel_does_not_act_inside_socket";
    let Some(output) = common::run_c_program("pending_cancel", NAME, &[("KEEPIDLE", "61")]) else {
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "cancelled=1 fd_returned=1\n"
    );
}

// ---- read once -------------------------------------------------------------------

/// A fork taken while the start-up warning is being written: the child reads the
/// configuration the parent published, not its own environment changed later.
/// strace holds the warning's send in the kernel for two seconds after its bytes
/// went out (delay injection at syscall exit); a thread started by an earlier
/// constructor reads those bytes from the stream on fd 2 and forks at once.
#[test]
fn a_fork_during_the_warning_reads_once() {
    const NAME: &str = "a_fork_during_the_warning_reads_once";
    if !common::have(NAME, "strace") {
        return;
    }
    let Some(early) = common::c_library("early", NAME) else {
        return;
    };
    let preload = format!("{} {}", common::shim().display(), early.display());
    let mut command = Command::new("strace");
    command
        .args(["-f", "-o", "/dev/null", "-e", "trace=write,pwritev2,sendto"])
        .args(["-e", "inject=write,pwritev2,sendto:delay_exit=2000000"])
        .arg("-E")
        .arg(format!("LD_PRELOAD={preload}"))
        .args(["-E", "EARLY_FORK_ON_LINE=1", "/bin/true"]);
    for name in common::VARIABLES {
        command.env_remove(name);
    }
    command.env("KEEPIDLE", "61").env("KEEPCNT", "0");
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("KEEPCNT=\"0\" ignored"), "{stderr}");
    assert_eq!(stdout.trim(), "@ forked idle=61", "{stderr}");
}

/// A value longer than the bound, made with setenv by a library whose constructor
/// runs first, is refused with the usual warning, never cut and parsed.
#[test]
fn an_over_long_value_is_refused_with_a_warning() {
    const NAME: &str = "an_over_long_value_is_refused_with_a_warning";
    let body = || {
        let fd = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        common::report_keepalive("socket", fd.as_raw_fd());
    };
    if as_child(NAME, body) {
        return;
    }
    let Some(early) = common::c_library("early", NAME) else {
        return;
    };
    let preload = format!("{} {}", common::shim().display(), early.display());
    for (var, tail) in [
        ("KEEPIDLE", "61"),
        ("TCP_USER_TIMEOUT", "5000"),
        ("KEEPCNT", "junk"),
    ] {
        let run = run_child(NAME, &[], |command| {
            command
                .env("LD_PRELOAD", &preload)
                .env("EARLY_LONG", format!("{var}={tail}"));
        });
        assert_eq!(
            run.keepalive("socket"),
            common::Keepalive::on_with_kernel_timers(),
            "{var}"
        );
        let lines = run.shim_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("libkeepalive: {var}=\"0000")),
            "{lines:?}"
        );
        assert!(lines[0].contains("...\" ignored"), "{lines:?}");
    }
}
