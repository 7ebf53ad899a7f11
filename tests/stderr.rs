//! The library's lines on stderr can never harm the program: no SIGPIPE, no waiting,
//! nothing spliced into the program's data, no cancellation point, and the
//! configuration is read once even when a fork comes while a line is being written.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{as_child, preloaded, report, run_child};

/// One bad value, so the library writes a warning at start-up.
const BAD: (&str, &str) = ("KEEPIDLE", "30s");
const DEBUG: (&str, &str) = ("KEEPALIVE_DEBUG", "1");

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

/// Restores SIGPIPE's default action, which kills: the Rust runtime ignores it.
fn sigpipe_kills() {
    // SAFETY: signal(2) with SIG_DFL has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
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

/// Debug lines into a dead pipe from a program whose SIGPIPE kills: it lives, and
/// its signal mask and pending signals are as they were: a SIGPIPE the program had
/// pending stays pending, and none is left behind when none was.
#[test]
fn debug_lines_into_a_dead_pipe_leave_sigpipe_as_it_was() {
    const NAME: &str = "debug_lines_into_a_dead_pipe_leave_sigpipe_as_it_was";
    let body = || {
        sigpipe_kills();
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset/sigprocmask/sigpending
        // and raise only touch the sets passed and this thread's signal state.
        unsafe {
            let mut pipe_set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe_set);
            libc::sigaddset(&mut pipe_set, libc::SIGPIPE);
            let mask = || {
                let mut now: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut now);
                libc::sigismember(&now, libc::SIGPIPE)
            };
            let pending = || {
                let mut now: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut now);
                libc::sigismember(&now, libc::SIGPIPE)
            };
            // Unblocked: the library's own SIGPIPE would kill the process.
            create_sockets();
            report("unblocked", &[("mask", mask().to_string())]);
            // Blocked, none pending: none may be left pending.
            libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_set, std::ptr::null_mut());
            create_sockets();
            report(
                "blocked",
                &[
                    ("mask", mask().to_string()),
                    ("pending", pending().to_string()),
                ],
            );
            // Blocked, one pending: it must stay pending.
            libc::raise(libc::SIGPIPE);
            create_sockets();
            report(
                "pending",
                &[
                    ("mask", mask().to_string()),
                    ("pending", pending().to_string()),
                ],
            );
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&pipe_set, &mut info, &zero);
        }
    };
    if as_child(NAME, body) {
        return;
    }
    let (read, write) = pipe();
    drop(read);
    let run = run_child(NAME, &[DEBUG], |command| {
        command.stderr(Stdio::from(write));
    });
    assert_eq!(run.report("unblocked")["mask"], "0");
    assert_eq!(run.report("blocked")["mask"], "1");
    assert_eq!(run.report("blocked")["pending"], "0", "a SIGPIPE was left");
    assert_eq!(run.report("pending")["mask"], "1");
    assert_eq!(
        run.report("pending")["pending"],
        "1",
        "the program's was taken"
    );
}

// ---- never wait ------------------------------------------------------------------

/// A full stderr pipe holds neither the constructor nor `main`.
#[test]
fn a_full_stderr_pipe_does_not_hold_the_start() {
    succeeds_with_stderr_full(&mut preloaded("/bin/true", &[BAD]), "/bin/true");
}

/// With debug on, a program whose parent reads stderr only after it exits keeps
/// creating sockets when the pipe is full.
#[test]
fn a_full_stderr_pipe_does_not_hold_socket() {
    const NAME: &str = "a_full_stderr_pipe_does_not_hold_socket";
    if as_child(NAME, create_sockets) {
        return;
    }
    succeeds_with_stderr_full(
        common::child_command(NAME, &[DEBUG, BAD]).stdout(Stdio::null()),
        NAME,
    );
}

// ---- never into the program's data ----------------------------------------------

/// A seccomp filter (or an LSM) that refuses getsockopt on fd 2 with EPERM proves
/// nothing about fd 2: with a TCP connection there, no line may go into it.
#[test]
fn a_refused_socket_check_writes_nothing_into_a_tcp_fd_2() {
    const NAME: &str = "a_refused_socket_check_writes_nothing_into_a_tcp_fd_2";
    let body = || {
        refuse_getsockopt_on_fd_2();
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
    run_child(NAME, &[DEBUG], |command| {
        command.stderr(Stdio::from(OwnedFd::from(stderr)));
    });
    let mut bytes = Vec::new();
    received.read_to_end(&mut bytes).unwrap();
    assert_eq!(String::from_utf8_lossy(&bytes), "APP-DATA\n");
}

/// Installs a seccomp filter under which getsockopt(2, ...) fails with EPERM and
/// every other call is allowed.
fn refuse_getsockopt_on_fd_2() {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JEQ_K, 0, 3, libc::SYS_getsockopt as u32),
        op(LD_W_ABS, 0, 0, 16), // low word of args[0] (little-endian)
        op(JEQ_K, 0, 1, 2),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl(2) with PR_SET_NO_NEW_PRIVS, then PR_SET_SECCOMP with a filter
    // program that lives across the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
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
}

/// What a daemon puts on fd 2 after start-up, with `dup2`, once its stderr is no
/// longer its stderr.
#[derive(Clone, Copy)]
enum Replacement {
    File,
    Pipe,
    UnixChannel,
}

/// The child: a debug line to the real stderr first (so the library is seen to
/// write), then fd 2 replaced by the daemon's own data channel, then more sockets.
/// It prints what arrived on that channel.
fn replace_fd_2(replacement: Replacement) {
    drop(TcpListener::bind("127.0.0.1:0").unwrap());
    let dir = std::env::var("DATA_DIR").unwrap();
    let (channel, mut reader): (OwnedFd, Box<dyn Read>) = match replacement {
        Replacement::File => {
            let path = format!("{dir}/data");
            let file = std::fs::File::create(&path).unwrap();
            (file.into(), Box::new(std::fs::File::open(&path).unwrap()))
        }
        Replacement::Pipe => {
            let (read, write) = pipe();
            (write, Box::new(std::fs::File::from(read)))
        }
        Replacement::UnixChannel => {
            let (ours, theirs) = UnixStream::pair().unwrap();
            (theirs.into(), Box::new(ours))
        }
    };
    // SAFETY: dup2(2) of a descriptor we own onto fd 2; the original stderr is kept
    // as fd 2's previous file only by the parent.
    assert_eq!(unsafe { libc::dup2(channel.as_raw_fd(), 2) }, 2);
    drop(channel);
    create_sockets();
    // SAFETY: closing fd 2 ends the channel's writing side in this process.
    unsafe { libc::close(2) };
    let mut data = Vec::new();
    reader.read_to_end(&mut data).unwrap();
    report(
        "channel",
        &[(
            "lines",
            String::from_utf8_lossy(&data)
                .matches("libkeepalive")
                .count()
                .to_string(),
        )],
    );
}

fn fd_2_replaced(name: &str, replacement: Replacement) {
    if as_child(name, || replace_fd_2(replacement)) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("libkeepalive-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = run_child(name, &[DEBUG], |command| {
        command.env("DATA_DIR", &dir);
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.shim_lines().iter().any(|l| l.contains("socket() fd")),
        "the library wrote to the real stderr first: {}",
        run.stderr
    );
    assert_eq!(run.report("channel")["lines"], "0", "lines in the data");
}

#[test]
fn fd_2_reopened_as_a_file_gets_no_lines() {
    fd_2_replaced("fd_2_reopened_as_a_file_gets_no_lines", Replacement::File);
}

#[test]
fn fd_2_reopened_as_a_pipe_gets_no_lines() {
    fd_2_replaced("fd_2_reopened_as_a_pipe_gets_no_lines", Replacement::Pipe);
}

#[test]
fn fd_2_reopened_as_a_unix_channel_gets_no_lines() {
    fd_2_replaced(
        "fd_2_reopened_as_a_unix_channel_gets_no_lines",
        Replacement::UnixChannel,
    );
}

/// A per-connection service on an `AF_UNIX` listener (inetd, systemd `Accept=yes` with
/// `StandardInput=socket`) starts with the connection on fds 0, 1 and 2. A bad value's
/// warning must not reach the peer, while the program still runs; the control run,
/// with the same kind of socket on fd 2 alone (as journald's stream is), gets the line.
#[test]
fn a_connection_on_fds_0_to_2_gets_no_lines() {
    let run = |stdin_too: bool| {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let fd = |s: &UnixStream| Stdio::from(OwnedFd::from(s.try_clone().unwrap()));
        let stdin = if stdin_too {
            fd(&theirs)
        } else {
            Stdio::null()
        };
        let status = preloaded("/bin/true", &[BAD])
            .stdin(stdin)
            .stdout(fd(&theirs))
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

// ---- never a cancellation point --------------------------------------------------

/// A thread with a cancel pending calls socket() with debug on: it gets its
/// descriptor back, and is cancelled at its own cancellation point afterwards.
#[test]
fn a_pending_cancel_does_not_act_inside_socket() {
    const NAME: &str = "a_pending_cancel_does_not_act_inside_socket";
    let Some(output) = common::run_c_program("pending_cancel", NAME, &[DEBUG]) else {
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "cancelled=1 fd_returned=1\n"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("libkeepalive: socket() fd"),
        "the debug line was written"
    );
}

// ---- read once -------------------------------------------------------------------

/// A fork taken while the start-up warning is being written: the child reads the
/// configuration the parent published, not its own environment changed later.
/// strace holds the warning's write in the kernel for two seconds after its bytes
/// went out (delay injection at syscall exit); a thread started by an earlier
/// constructor reads those bytes from the pipe on fd 2 and forks at once.
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

/// A signal of the program's that arrives while the library writes a line stays the
/// program's (the case 2): strace injects SIGPIPE into the write to a live
/// pipe, and SIGXFSZ into the write to a file, as though sent at that instant. The
/// writes succeed, so nothing proves the library raised a signal, and the program must
/// find its own still pending.
#[test]
fn a_signal_sent_during_the_line_is_not_taken() {
    let test = "a_signal_sent_during_the_line_is_not_taken";
    if !common::have(test, "strace") {
        return;
    }
    let Some(program) = common::c_program("signal_during_line", test) else {
        return;
    };
    let file = std::env::temp_dir().join(format!("libkeepalive-signal-{}", std::process::id()));
    for (signal, name, syscall, stderr) in [
        (libc::SIGPIPE, "SIGPIPE", "pwritev2", None),
        (libc::SIGXFSZ, "SIGXFSZ", "write", Some(&file)),
    ] {
        let mut command = Command::new("strace");
        command
            .args(["-o", "/dev/null", "-f", "-e"])
            .arg(format!("trace={syscall}"))
            .arg("-e")
            .arg(format!("inject={syscall}:signal={name}"))
            .arg("env")
            .arg(format!("LD_PRELOAD={}", common::shim().display()))
            .arg("KEEPALIVE_DEBUG=1")
            .arg(&program)
            .arg(signal.to_string())
            .env_remove("LD_PRELOAD");
        let output = match stderr {
            Some(path) => command
                .stderr(std::fs::File::create(path).unwrap())
                .output()
                .unwrap(),
            None => command.output().unwrap(),
        };
        let written = match stderr {
            Some(path) => std::fs::read_to_string(path).unwrap(),
            None => String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(output.status.success(), "{name}: {:?}", output.status);
        assert!(
            written.contains("libkeepalive: socket() fd"),
            "{name}: the line was not written: {written:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "ok=1 pending=1\n",
            "{name} sent during the line was taken from the program"
        );
    }
    let _ = std::fs::remove_file(&file);
}

/// A daemon deletes its log (fd 2) and opens its data file, which becomes fd 2 with the
/// deleted file's device and inode number (ext4 hands the number out again at once):
/// the data file is not the stderr the process started with, and gets no debug line.
/// The file's birth time tells the two apart. On an ext4 of its own (a sparse image on
/// a loop device), where nothing else takes the freed inode first.
#[test]
fn a_data_file_with_the_old_stderrs_inode_number_gets_no_lines() {
    let test = "a_data_file_with_the_old_stderrs_inode_number_gets_no_lines";
    let Some(program) = common::c_program("inode_reuse", test) else {
        return;
    };
    let Some(ext4) = Ext4::mount(test) else {
        return;
    };
    let (log, data) = (ext4.dir.join("err.log"), ext4.dir.join("data.db"));
    let mut command = preloaded(&program, &[DEBUG]);
    command
        .args([&log, &data])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = command.spawn().unwrap();
    // The command holds this process's copy of the log open: dropped, the child's is
    // the last, and the inode is freed when the child closes it.
    drop(command);
    let output = child.wait_with_output().unwrap();
    let written = std::fs::read_to_string(&data).unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "fd=2 reused=1\n",
        "ext4 did not hand the inode number out again"
    );
    assert_eq!(
        written, "DATA1\nDATA2\n",
        "the data file got the library's line"
    );
}

/// A fresh ext4 on a sparse image, mounted with `-o loop` (the loop device goes with
/// the unmount); unmounted and removed on drop, also when the test fails.
struct Ext4 {
    dir: std::path::PathBuf,
    image: std::path::PathBuf,
}

impl Ext4 {
    fn mount(test: &str) -> Option<Ext4> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            common::skip(test, "mounting a file system needs root");
            return None;
        }
        if !common::have(test, "mkfs.ext4") {
            return None;
        }
        let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{test}.{}", std::process::id()));
        let ext4 = Ext4 {
            dir: base.join("mnt"),
            image: base.join("ext4.img"),
        };
        std::fs::create_dir_all(&ext4.dir).unwrap();
        std::fs::File::create(&ext4.image)
            .and_then(|file| file.set_len(32 << 20))
            .unwrap();
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&ext4.image)
            .status()
            .unwrap();
        assert!(made.success(), "mkfs.ext4: {made:?}");
        let mounted = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&ext4.image)
            .arg(&ext4.dir)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount -o loop: {mounted:?}");
        Some(ext4)
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        if !Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success())
        {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        if let Some(base) = self.image.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// On a file system with almost no room left, a warning must not take the last of it:
/// the program's own line to stderr, written after the library's, must still fit. A
/// 1 MiB tmpfs filled to within 110 bytes, fewer than the warning and the program's
/// line together, with stderr a file on it.
#[test]
fn a_warning_never_takes_the_last_room_on_the_disk() {
    let test = "a_warning_never_takes_the_last_room_on_the_disk";
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skip(test, "mounting a tmpfs needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("libkeepalive-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs: {mounted:?}");
    let log = dir.join("err.log");
    let mut filler = vec![b'.'; 1024 * 1024 - 110];
    filler.push(b'\n');
    let run = || -> (std::process::ExitStatus, String) {
        std::fs::write(&log, &filler[..filler.len() - 1]).unwrap();
        let status = preloaded("sh", &[BAD])
            .args(["-c", "printf 'the program speaks\\n' >&2"])
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .status()
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        (status, text.trim_start_matches('.').to_string())
    };
    let (status, tail) = run();
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir(&dir);
    assert!(status.success(), "{status:?}");
    assert_eq!(
        tail, "the program speaks\n",
        "the library's line took the room"
    );
}
