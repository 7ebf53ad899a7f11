//! Shared by the integration tests: the library under test, child processes that
//! load it, and reading keepalive settings back from the kernel.
//!
//! Every test runs real processes with `LD_PRELOAD` pointing at the release build of
//! this checkout, the artifact that ships. A *scenario* is a test that re-runs its own
//! test binary as the child: the child branch does the socket work and prints one
//! `@ label key=value...` line per observation; the parent asserts on those lines.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod net;
pub mod systemd;

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Every variable the library reads; removed from children's environments unless a
/// test sets it, so the developer's own shell cannot change a result.
pub const VARIABLES: [&str; 5] = [
    "KEEPALIVE",
    "KEEPIDLE",
    "KEEPINTVL",
    "KEEPCNT",
    "TCP_USER_TIMEOUT",
];

/// Every function the library imports, sorted: the same for the native and the
/// portable build (tests/hygiene.rs says why each is there).
pub const IMPORTS: [&str; 3] = ["__errno_location", "dlsym", "secure_getenv"];

const SCENARIO: &str = "LIBKEEPALIVE_TEST_SCENARIO";

/// The release build of the library, built once per test binary with the same cargo
/// that runs the tests. `cargo test` does not build a cdylib-only crate itself.
pub fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        build_release(&["libkeepalive"]);
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let shim = target.join("release/libkeepalive.so");
        assert!(shim.exists(), "{} was not built", shim.display());
        shim
    })
}

/// Builds `packages` of this workspace in release mode, with the same cargo that runs
/// the tests.
fn build_release(packages: &[&str]) {
    let mut command = Command::new(env!("CARGO"));
    command.args(["build", "--release", "--quiet"]);
    for package in packages {
        command.args(["-p", package]);
    }
    let status = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
}

/// A command for `program` with the shim preloaded, its variables cleared, and
/// `vars` set.
pub fn preloaded(program: impl AsRef<std::ffi::OsStr>, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(program);
    for name in VARIABLES {
        command.env_remove(name);
    }
    command.env("LD_PRELOAD", shim()).envs(vars.iter().copied());
    command
}

/// `program` without the library: LD_PRELOAD and the library's variables removed,
/// whatever the test's own environment holds.
pub fn bare(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env_remove("LD_PRELOAD");
    for name in VARIABLES {
        command.env_remove(name);
    }
    command
}

/// The variables of a run with the library, or None for a run without it.
pub type Vars<'a> = Option<&'a [(&'a str, &'a str)]>;

/// `program` with the library and `vars`, or without it when `vars` is None.
pub fn maybe_preloaded(program: impl AsRef<std::ffi::OsStr>, vars: Vars) -> Command {
    match vars {
        Some(vars) => preloaded(program, vars),
        None => bare(program),
    }
}

/// What one run gave with the library and what the same run gave without it.
#[derive(Clone, Copy, Debug)]
pub struct Both<T> {
    pub with: T,
    pub without: T,
}

/// Runs `run` with the library and `vars`, then without the library, and gives both
/// results: the one way a test compares a program with and without the library.
/// `run` receives the variables for [`maybe_preloaded`]; None from either run (which
/// said why, as [`skip`] does) gives None.
pub fn with_and_without<T>(
    vars: &[(&str, &str)],
    mut run: impl FnMut(Vars) -> Option<T>,
) -> Option<Both<T>> {
    let with = run(Some(vars))?;
    let without = run(None)?;
    Some(Both { with, without })
}

/// In the child of scenario `name`, runs `body` and returns true; in the parent,
/// returns false. A test that needs work in the parent before its child runs starts
/// with `if as_child(NAME, body) { return; }`, so that work never runs in the child.
pub fn as_child(name: &str, body: impl FnOnce()) -> bool {
    let child = std::env::var(SCENARIO).as_deref() == Ok(name);
    if child {
        body();
    }
    child
}

/// Runs a scenario named after the calling test: in the child (`LD_PRELOAD` set by the
/// parent), runs `body` and returns `None`; in the parent, runs the child with the shim
/// and `vars`, asserts it succeeded, and returns what it printed.
pub fn scenario(name: &str, vars: &[(&str, &str)], body: impl FnOnce()) -> Option<Run> {
    (!as_child(name, body)).then(|| run_child(name, vars, |_| {}))
}

/// Runs this test binary again as the child of scenario `name`, with the shim, `vars`,
/// and whatever `setup` adds to the command; asserts the child succeeded.
pub fn run_child(name: &str, vars: &[(&str, &str)], setup: impl FnOnce(&mut Command)) -> Run {
    let mut command = child_command(name, vars);
    command.stdin(Stdio::null());
    let journal = JournalStderr::attach(&mut command);
    setup(&mut command);
    let run = Run::of(journal.output(&mut command));
    assert!(
        run.status_ok,
        "scenario {name} failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// The command that runs this test binary as the child of scenario `name`, with the
/// shim preloaded and `vars` set.
pub fn child_command(name: &str, vars: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut command = preloaded(exe, vars);
    command
        .args([
            name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(SCENARIO, name);
    command
}

/// Installs a seccomp filter (seccomp(2), `SECCOMP_RET_ERRNO`) under which system
/// call `number` fails with EPERM when its argument `arg` (0-5) equals `value`; every
/// other call is allowed. It stays through exec, and is async-signal-safe (prctl(2)
/// only), so it may run in a pre_exec hook: a hardened service's filter, or an LSM's
/// refusal, as the library meets them.
pub fn refuse_syscall(number: i64, arg: u32, value: u32) -> std::io::Result<()> {
    const LD_ABS_W: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        // seccomp_data: nr at 0, args[i] at 16 + 8 i (the low half, little-endian).
        op(LD_ABS_W, 0, 0, 0),
        op(JEQ_K, 0, 3, number as u32),
        op(LD_ABS_W, 0, 0, 16 + 8 * arg),
        op(JEQ_K, 0, 1, value),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl(2) with PR_SET_NO_NEW_PRIVS, then PR_SET_SECCOMP with a filter
    // program that lives across the call.
    let installed = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
            ) == 0
    };
    if installed {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The first process named `name` (its /proc/PID/comm) at or below `pid`, through
/// /proc/PID/task/PID/children: a program a wrapper (unshare, a shell) started.
pub fn descendant_named(pid: u32, name: &str) -> u32 {
    let mut queue = vec![pid];
    while let Some(next) = queue.pop() {
        let comm = std::fs::read_to_string(format!("/proc/{next}/comm")).unwrap_or_default();
        if comm.trim() == name {
            return next;
        }
        let children = std::fs::read_to_string(format!("/proc/{next}/task/{next}/children"))
            .unwrap_or_default();
        queue.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    panic!("no {name} at or below {pid}");
}

/// Runs `command` to the end like `Command::output`, but with stderr a connected
/// AF_UNIX stream, the shape of a systemd service's stderr (journald's stream): the
/// one kind of fd 2 the library writes its load-time lines to (src/report.rs), so that
/// a test sees them. Stdout is a pipe; stdin is what the caller set.
pub fn output_with_journal_stderr(command: &mut Command) -> Output {
    JournalStderr::attach(command).output(command)
}

/// A connected `AF_UNIX` stream shaped like a service's stderr: the second end, for
/// the child, is a client of a listener with a name (an abstract one, unique to this
/// test process), as a service's is of `/run/systemd/journal/stdout`; the first is the
/// accepted end, for the test to read. Only such a stream gets the library's lines
/// (src/report.rs): a socketpair has no name at either end.
pub fn journal_stream() -> (UnixStream, UnixStream) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "libkeepalive-test-journal.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let address = SocketAddr::from_abstract_name(name).expect("abstract name");
    let listener = UnixListener::bind_addr(&address).expect("bind the journal");
    let theirs = UnixStream::connect_addr(&address).expect("connect to the journal");
    let (ours, _) = listener.accept().expect("accept the child's stderr");
    (ours, theirs)
}

/// The reading end of a journal-like stderr given to a command.
pub struct JournalStderr(UnixStream);

impl JournalStderr {
    /// Gives `command` the other end as its stderr; a later `stderr(...)` on the
    /// command replaces it, and then nothing arrives here.
    pub fn attach(command: &mut Command) -> JournalStderr {
        let (ours, theirs) = journal_stream();
        command.stderr(Stdio::from(OwnedFd::from(theirs)));
        JournalStderr(ours)
    }

    /// Runs `command` to the end, with stdout piped; its output's stderr is what
    /// arrived here.
    pub fn output(self, command: &mut Command) -> Output {
        use std::io::Read;
        command.stdout(Stdio::piped());
        let child = command.spawn().expect("spawn child");
        // The command holds the child's end until its stderr is replaced: without
        // this, reading ours would never see the end.
        command.stderr(Stdio::null());
        let mut ours = self.0;
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = ours.read_to_end(&mut bytes);
            bytes
        });
        let mut output = child.wait_with_output().expect("wait for child");
        output.stderr = reader.join().expect("stderr reader");
        output
    }
}

/// What a child printed.
pub struct Run {
    pub status_ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(output: Output) -> Run {
        Run {
            status_ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The `key=value` pairs of the `@ label ...` line the child printed.
    pub fn report(&self, label: &str) -> BTreeMap<String, String> {
        let prefix = format!("@ {label} ");
        let line = self
            .stdout
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no report {label:?} in:\n{}", self.stdout));
        line[prefix.len()..]
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The keepalive settings the child reported for `label`.
    pub fn keepalive(&self, label: &str) -> Keepalive {
        Keepalive::from_report(&self.report(label))
    }

    /// Asserts what a run with `KEEPIDLE=45` and the bad `KEEPCNT=bad` shows: one
    /// warning naming the bad value, and a client socket with keepalive on, the idle
    /// time applied and the count left at the kernel's. `what` names the run.
    pub fn assert_one_warning_for_keepcnt(&self, bad: &str, what: &str) {
        let lines = self.shim_lines();
        assert_eq!(lines.len(), 1, "{what}: {}", self.stderr);
        assert!(
            lines[0].starts_with(&format!("libkeepalive: KEEPCNT=\"{bad}\" ignored")),
            "{what}: {}",
            lines[0]
        );
        let client = self.keepalive("client");
        assert_eq!(
            (client.keepalive, client.idle),
            (1, 45),
            "{what}: {}",
            self.stdout
        );
        assert_eq!(client.count, Keepalive::untouched().count, "{what}");
    }

    /// The lines the library wrote on stderr.
    pub fn shim_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.starts_with("libkeepalive:"))
            .collect()
    }
}

/// Checks `readelf -lW` output of a build of the library: a `GNU_RELRO` segment, and
/// a `GNU_STACK` header that is read-write only, so that loading the library can never
/// make the host's stack executable. Shared by the native and the portable build's
/// hygiene tests.
pub fn assert_relro_and_no_executable_stack(segments: &str) {
    assert!(segments.contains("GNU_RELRO"), "{segments}");
    let stack = segments
        .lines()
        .find(|line| line.trim_start().starts_with("GNU_STACK"))
        .unwrap_or_else(|| panic!("no GNU_STACK header:\n{segments}"));
    assert!(
        stack.split_whitespace().any(|field| field == "RW"),
        "{stack}"
    );
}

/// Asserts what `readelf -dW` shows of a build of the library: the SONAME the
/// packages install, and every symbol bound at load time (full RELRO's other half).
/// Shared by the native and the portable build's hygiene tests.
pub fn assert_soname_and_bind_now(dynamic: &str) {
    assert!(
        dynamic.contains("Library soname: [libkeepalive.so.0]"),
        "{dynamic}"
    );
    assert!(
        dynamic.contains("BIND_NOW") || dynamic.contains("Flags: NOW"),
        "{dynamic}"
    );
}

/// Prints one report line from a scenario child.
pub fn report(label: &str, fields: &[(&str, String)]) {
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("@ {label} {}", fields.join(" "));
}

/// Reports the keepalive settings of `fd`, as the kernel holds them.
pub fn report_keepalive(label: &str, fd: RawFd) {
    let k = Keepalive::of(fd);
    report(
        label,
        &[
            ("keepalive", k.keepalive.to_string()),
            ("idle", k.idle.to_string()),
            ("intvl", k.interval.to_string()),
            ("cnt", k.count.to_string()),
            ("user_timeout", k.user_timeout.to_string()),
        ],
    );
}

/// A socket's keepalive settings, read with getsockopt(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub keepalive: i32,
    pub idle: i32,
    pub interval: i32,
    pub count: i32,
    pub user_timeout: i32,
}

/// Every timer variable, each at a value no kernel default has: what a test sets when
/// it needs the library's settings told apart from anyone else's.
pub const ALL_TIMERS: [(&str, &str); 4] = [
    ("KEEPIDLE", "61"),
    ("KEEPINTVL", "11"),
    ("KEEPCNT", "7"),
    ("TCP_USER_TIMEOUT", "30001"),
];

impl Keepalive {
    /// What [`ALL_TIMERS`] give a socket the library configured.
    pub const ALL_TIMERS: Keepalive = Keepalive {
        keepalive: 1,
        idle: 61,
        interval: 11,
        count: 7,
        user_timeout: 30001,
    };

    pub fn of(fd: RawFd) -> Keepalive {
        Keepalive {
            keepalive: int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            idle: int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
            interval: int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            count: int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            user_timeout: int_option(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        }
    }

    fn from_report(report: &BTreeMap<String, String>) -> Keepalive {
        let get = |key: &str| -> i32 {
            report
                .get(key)
                .unwrap_or_else(|| panic!("no {key} in {report:?}"))
                .parse()
                .expect("number")
        };
        Keepalive {
            keepalive: get("keepalive"),
            idle: get("idle"),
            interval: get("intvl"),
            count: get("cnt"),
            user_timeout: get("user_timeout"),
        }
    }

    /// What a socket nobody configured reads back: off, the sysctl timers, no user
    /// timeout.
    pub fn untouched() -> Keepalive {
        let sysctl = |name: &str| -> i32 {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
                .expect("read sysctl")
                .trim()
                .parse()
                .expect("sysctl number")
        };
        Keepalive {
            keepalive: 0,
            idle: sysctl("tcp_keepalive_time"),
            interval: sysctl("tcp_keepalive_intvl"),
            count: sysctl("tcp_keepalive_probes"),
            user_timeout: 0,
        }
    }

    /// [`Keepalive::untouched`] with SO_KEEPALIVE on: what the library's defaults give.
    pub fn on_with_kernel_timers() -> Keepalive {
        Keepalive {
            keepalive: 1,
            ..Keepalive::untouched()
        }
    }
}

/// getsockopt(2) of an int option; -1 when the option is not available on `fd`
/// (a UDP or AF_UNIX socket has no TCP options).
pub fn int_option(fd: RawFd, level: i32, name: i32) -> i32 {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live locals sized for an int option.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    if rc == 0 { value } else { -1 }
}

/// setsockopt(2) of an int option, as a program sets its own; panics when the
/// kernel refuses it, since a test that meant to set it would measure nothing.
pub fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32) {
    // SAFETY: an int option, passed by address with its size, on a live socket.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {name}: {}",
        std::io::Error::last_os_error()
    );
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn set_errno(value: i32) {
    // SAFETY: the calling thread's errno slot.
    unsafe { *libc::__errno_location() = value }
}

/// Gives a child process `fd` as descriptor `target`, open across exec, the way a
/// parent or systemd hands a listening socket to a service.
pub fn pass_fd(command: &mut Command, fd: OwnedFd, target: RawFd) {
    // SAFETY: dup2(2) and fcntl(2) are async-signal-safe, as a pre_exec hook requires;
    // the duplicate dup2 makes has FD_CLOEXEC clear, so it survives the exec. When `fd`
    // already is `target`, dup2 does nothing, and FD_CLOEXEC is cleared by hand. The
    // hook owns `fd`, which keeps it open for as long as the command may spawn.
    unsafe {
        command.pre_exec(move || {
            let rc = if fd.as_raw_fd() == target {
                libc::fcntl(target, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd.as_raw_fd(), target)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A shared library built from `tests/support/NAME.c` with the system C compiler, or
/// `None` (after saying so, naming the test) when there is no compiler.
pub fn c_library(name: &str, test: &str) -> Option<PathBuf> {
    compile(name, test, &["-shared", "-fPIC"], &format!("lib{name}.so"))
}

/// A program built from `tests/support/NAME.c`, as [`c_library`].
pub fn c_program(name: &str, test: &str) -> Option<PathBuf> {
    compile(name, test, &[], name)
}

/// Builds tests/support/`name`.c and runs it to the end with the library and `vars`;
/// panics unless it exits 0, since every such program reports failure by its status.
/// `None`: skipped, no C compiler.
pub fn run_c_program(name: &str, test: &str, vars: &[(&str, &str)]) -> Option<Output> {
    let program = c_program(name, test)?;
    let output = output_with_journal_stderr(preloaded(&program, vars).stdin(Stdio::null()));
    assert!(output.status.success(), "{:?}", output.status);
    Some(output)
}

fn compile(name: &str, test: &str, flags: &[&str], file: &str) -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/support/{name}.c"));
    // Tests build in parallel: each writes its own file, then renames it into place.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let output = Path::new(env!("CARGO_TARGET_TMPDIR")).join(file);
    let partial = output.with_extension(format!("{}-{n}.partial", std::process::id()));
    let built = Command::new("cc")
        .args(flags)
        .args(["-O2", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&partial)
        .arg(&source)
        .stderr(Stdio::inherit())
        .status();
    match built {
        Ok(status) if status.success() => {
            std::fs::rename(&partial, &output).expect("move built file into place");
            Some(output)
        }
        Ok(status) => panic!("cc failed for {}: {status}", source.display()),
        Err(err) => {
            skip(test, &format!("no C compiler (cc: {err})"));
            None
        }
    }
}

/// Says, by name, that a test could not run here. It shows in `cargo test` output and
/// CI fails on it (see .ci/run), so nothing is skipped silently.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    if std::env::var_os("LIBKEEPALIVE_REQUIRE_ALL").is_some() {
        panic!("{test} cannot run but LIBKEEPALIVE_REQUIRE_ALL is set: {why}");
    }
}

/// The keepalive timers `ss -tno` shows for established TCP connections matching
/// `filter` (an ss filter such as `( sport = :8080 )`): the time left to the next probe,
/// seen from outside the process as an operator sees it. `None` for a connection
/// without a keepalive timer. Panics if ss is missing: callers check [`have`] first.
pub fn ss_keepalive(filter: &str) -> Vec<Option<std::time::Duration>> {
    let mut ss = Command::new("ss");
    keepalive_timers(&stdout_of(ss.args([
        "-tnoH",
        "state",
        "established",
        filter,
    ])))
}

/// Polls `ready` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen in {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Writes `dir`/nginx.conf: nginx in the foreground, one worker, every file it writes
/// under `dir`, and `server` (plus any further http settings) inside `http { }`.
pub fn nginx_conf(dir: &Path, server: &str) -> PathBuf {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log stderr;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  \
             fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
             {server}\n}}\n",
            p = dir.display()
        ),
    )
    .unwrap();
    conf
}

/// `systemd-socket-activate` listening on loopback `port`, with neither the library
/// nor its variables in its own environment: whatever the service gets, the test
/// passes with `--setenv`.
pub fn socket_activate(port: u16) -> Command {
    let mut command = Command::new("systemd-socket-activate");
    command.env_remove("LD_PRELOAD");
    for name in VARIABLES {
        command.env_remove(name);
    }
    command.arg(format!("--listen=127.0.0.1:{port}"));
    command
}

/// Connects to loopback `port`, retrying for 20 s while `what` starts listening.
pub fn connect_when_listening(what: &str, port: u16) -> std::net::TcpStream {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(conn) => return conn,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(err) => panic!("{what} never listened on {port}: {err}"),
        }
    }
}

/// Runs a short command to completion and returns its stdout; panics with its stderr
/// if it fails.
pub fn stdout_of(command: &mut Command) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls [`ss_keepalive`] until some connection matches `filter` or `timeout` passes;
/// returns what was seen last (empty when no connection ever matched).
pub fn wait_for_connection(
    filter: &str,
    timeout: std::time::Duration,
) -> Vec<Option<std::time::Duration>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = ss_keepalive(filter);
        if !seen.is_empty() || std::time::Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// True when `program` can be run; otherwise says by name that `test` was skipped.
pub fn have(test: &str, program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if !found {
        skip(test, &format!("{program} is not installed"));
    }
    found
}

/// A free TCP port on loopback (bound and released; good enough for tests that then
/// start a server on it at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// The probe example (examples/probe.rs), which `cargo test` builds beside the test
/// binaries: target/<profile>/examples/probe.
pub fn probe_example() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    profile_dir.join("examples/probe")
}

/// The cells of the probe's table row for `socket`, such as "IPv6 accepted".
pub fn probe_row(stdout: &str, socket: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(socket))
        .unwrap_or_else(|| panic!("no row {socket:?} in:\n{stdout}"));
    line[socket.len()..]
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The keepalive timer of each connection in the output of `ss -tnoH` (one line per
/// connection): the time to the next probe, `None` for a connection without one.
pub fn keepalive_timers(ss_output: &str) -> Vec<Option<std::time::Duration>> {
    ss_output
        .lines()
        .map(|line| {
            let timer = line.split("timer:(keepalive,").nth(1)?;
            ss_duration(timer.split(',').next()?)
        })
        .collect()
}

/// A time as ss prints it (iproute2's `print_ms_timer`): `45sec`, `1min39sec`, `10min`,
/// `4.696ms` (4 s 696 ms) or `696ms`.
fn ss_duration(text: &str) -> Option<std::time::Duration> {
    let mut rest = text;
    let mut ms: u64 = 0;
    if let Some((minutes, after)) = rest.split_once("min") {
        ms += minutes.parse::<u64>().ok()? * 60_000;
        rest = after;
    }
    if let Some((seconds, after)) = rest.split_once("sec").or_else(|| rest.split_once('.')) {
        ms += seconds.parse::<u64>().ok()? * 1000;
        rest = after;
    }
    if let Some(millis) = rest.strip_suffix("ms") {
        ms += millis.parse::<u64>().ok()?;
        rest = "";
    }
    (rest.is_empty() && !text.is_empty()).then(|| std::time::Duration::from_millis(ms))
}

/// The keepalive timers `ss -tno` shows, as [`ss_keepalive`], in seconds with their
/// fractions. Polls until some connection matches `filter` and carries a timer, or
/// `timeout` passes; returns what was seen last.
pub fn ss_keepalive_seconds(filter: &str, timeout: std::time::Duration) -> Vec<Option<f64>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen: Vec<Option<f64>> = ss_keepalive(filter)
            .into_iter()
            .map(|timer| timer.map(|time| time.as_secs_f64()))
            .collect();
        if seen.iter().any(Option::is_some) || std::time::Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The release artifacts in target/dist/, built once per test binary by running
/// `packaging/dist` (which installs its own tools); `None` after saying by name that
/// `test` was skipped when it cannot run here.
pub fn dist(test: &str) -> Option<&'static Path> {
    static DIST: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DIST.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = Command::new(root.join("packaging/dist"))
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("cannot run packaging/dist: {err}"))?;
        if output.status.success() {
            Ok(root.join("target/dist"))
        } else {
            Err(format!(
                "packaging/dist failed: {}",
                String::from_utf8_lossy(&output.stderr).trim_end()
            ))
        }
    });
    match built {
        Ok(dir) => Some(dir),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

/// The shipped library for glibc 2.34 and later (the .deb's and the .rpm's), which
/// packaging/dist built: target/dist/libkeepalive-VERSION.so.
pub fn portable(test: &str) -> Option<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    dist(test).map(|dir| dir.join(format!("libkeepalive-{version}.so")))
}

/// The shipped library for glibc 2.17 to 2.33 (it needs libdl.so.2 for `dlsym`), as
/// [`portable`].
pub fn portable_glibc_2_17(test: &str) -> Option<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    dist(test).map(|dir| dir.join(format!("libkeepalive-{version}-glibc2.17.so")))
}

/// Debian `packages` of `suite`, fetched with `apt-get download` and unpacked with
/// `dpkg -x` into one tree; the .deb files stay beside it. The archive address and
/// its key come from this machine's own apt configuration (/etc/apt), with a private
/// apt state, so the host's package lists are never touched. Cached under
/// target/debian/SUITE: later runs reuse it. `None` after a skip when the download
/// cannot happen here.
pub fn debian_packages(test: &str, suite: &str, packages: &[&str]) -> Option<DebianTree> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/debian")
        .join(suite);
    let tree = DebianTree {
        root: dir.join("root"),
        debs: dir.join("debs"),
    };
    let stamp = dir.join(format!("{}.done", packages.join("+")));
    if stamp.exists() {
        return Some(tree);
    }
    match fetch_debian(&dir, &tree, suite, packages) {
        Ok(()) => {
            std::fs::write(&stamp, "").expect("write stamp");
            Some(tree)
        }
        Err(why) => {
            skip(
                test,
                &format!("cannot fetch {packages:?} from {suite}: {why}"),
            );
            None
        }
    }
}

/// Unpacked Debian packages: `root` holds their files, `debs` the package files.
pub struct DebianTree {
    pub root: PathBuf,
    pub debs: PathBuf,
}

impl DebianTree {
    /// The downloaded .deb of `package`.
    pub fn deb(&self, package: &str) -> PathBuf {
        std::fs::read_dir(&self.debs)
            .expect("read debs")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")))
            })
            .unwrap_or_else(|| panic!("no {package} in {}", self.debs.display()))
    }
}

fn fetch_debian(
    dir: &Path,
    tree: &DebianTree,
    suite: &str,
    packages: &[&str],
) -> Result<(), String> {
    let (uri, signed_by) = debian_archive()?;
    for sub in ["lists/partial", "cache/archives/partial", "sources", "debs"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        dir.join("sources/debian.sources"),
        format!(
            "Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\nSigned-By: {signed_by}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let apt = |args: &[&str], cwd: &Path| -> Result<(), String> {
        let d = dir.display();
        let output = Command::new("apt-get")
            .args(["-q", "-o", &format!("Dir::State={d}")])
            .args(["-o", &format!("Dir::State::lists={d}/lists")])
            .args(["-o", "Dir::State::status=/dev/null"])
            .args(["-o", &format!("Dir::Cache={d}/cache")])
            .args(["-o", "Dir::Etc::sourcelist=/dev/null"])
            .args(["-o", &format!("Dir::Etc::sourceparts={d}/sources")])
            .args(["-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1"])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("apt-get: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "apt-get {args:?}: {}",
                String::from_utf8_lossy(&output.stderr).trim_end()
            ))
        }
    };
    apt(&["update"], dir)?;
    apt(&[&["download"], packages].concat(), &tree.debs)?;
    for package in packages {
        let status = Command::new("dpkg")
            .arg("-x")
            .arg(tree.deb(package))
            .arg(&tree.root)
            .status()
            .map_err(|err| format!("dpkg -x: {err}"))?;
        if !status.success() {
            return Err(format!("dpkg -x {package} failed"));
        }
    }
    Ok(())
}

/// The address of the main Debian archive in this machine's apt configuration and
/// the keyring that signs it: the first deb822 stanza (sources.list.d/*.sources) or
/// one-line entry (sources.list) whose suite is a release itself, not its -security
/// or -updates companion.
fn debian_archive() -> Result<(String, String), String> {
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg".to_string();
    let mut sources: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    sources.sort();
    for path in sources
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
    {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|line| {
                    line.strip_prefix(name)?
                        .strip_prefix(':')
                        .map(|v| v.trim().to_string())
                })
            };
            let main_suite =
                field("Suites").is_some_and(|s| s.split_whitespace().any(|s| !s.contains('-')));
            if let (Some(uris), true) = (field("URIs"), main_suite) {
                let uri = uris
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Ok((uri, field("Signed-By").unwrap_or(keyring)));
            }
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for line in list.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        let mut signed_by = keyring.clone();
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for option in words.by_ref() {
                if let Some(key) = option.trim_matches(['[', ']']).strip_prefix("signed-by=") {
                    signed_by = key.to_string();
                }
                if option.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            if !suite.contains('-') {
                return Ok((uri.to_string(), signed_by));
            }
        }
    }
    Err("no Debian archive in /etc/apt".into())
}

/// The release build of the `keepalive` command (crates/cli), built once per test
/// binary together with the library it finds beside itself in target/release.
pub fn keepalive() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        build_release(&["libkeepalive", "keepalive-cli"]);
        let cli = shim().with_file_name("keepalive");
        assert!(cli.exists(), "{} was not built", cli.display());
        cli
    })
}

/// The `keepalive` command of this checkout, with the library's variables cleared as
/// for [`preloaded`].
pub fn keepalive_command() -> Command {
    let mut command = Command::new(keepalive());
    for name in VARIABLES {
        command.env_remove(name);
    }
    command
}
