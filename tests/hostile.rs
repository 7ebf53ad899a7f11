//! Hostile hosts: signal handlers that accept, stderr that is really a network
//! connection, programs that close every descriptor, other interposers, dlopen,
//! vfork and posix_spawn, setuid programs, and memcheck.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{Keepalive, as_child, preloaded, report, report_keepalive, run_child, scenario};

const TIMERS: [(&str, &str); 2] = [("KEEPIDLE", "61"), ("KEEPCNT", "7")];

fn configured(k: Keepalive) -> bool {
    k.keepalive == 1 && k.idle == 61 && k.count == 7
}

// ---- signal safety -------------------------------------------------------------

static LISTENER: AtomicUsize = AtomicUsize::new(0);
static ACCEPTED_OK: AtomicUsize = AtomicUsize::new(0);
static ACCEPTED_BAD: AtomicUsize = AtomicUsize::new(0);

/// Accepts one pending connection from inside a signal handler, as POSIX allows, and
/// checks it with async-signal-safe calls only.
extern "C" fn accept_in_handler(_: libc::c_int) {
    let listener = LISTENER.load(Ordering::Relaxed) as libc::c_int;
    // SAFETY: accept4(2), getsockopt(2) and close(2) are async-signal-safe; errno is
    // saved and restored around them as a handler must.
    unsafe {
        let saved = *libc::__errno_location();
        let conn = libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        );
        if conn >= 0 {
            let good = configured(Keepalive::of(conn));
            (if good { &ACCEPTED_OK } else { &ACCEPTED_BAD }).fetch_add(1, Ordering::Relaxed);
            libc::close(conn);
        }
        *libc::__errno_location() = saved;
    }
}

const SIGNALS: usize = 100;

/// Threads create sockets through the library non-stop while a signal handler on those
/// same threads accepts through it: a lock or allocation anywhere in those paths would
/// deadlock (the child kills itself with alarm(2) after 60 s instead of hanging).
#[test]
fn accept_from_a_signal_handler_while_threads_create_sockets() {
    let Some(run) = scenario(
        "accept_from_a_signal_handler_while_threads_create_sockets",
        &TIMERS,
        || {
            // SAFETY: alarm(2) and sigaction(2) with a handler that only makes
            // async-signal-safe calls.
            unsafe {
                libc::alarm(60);
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = accept_in_handler as *const () as usize;
                action.sa_flags = libc::SA_RESTART;
                assert_eq!(
                    libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
                    0
                );
            }
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            // SAFETY: listen(2) on our socket, to make room for every pending connection.
            unsafe { libc::listen(listener.as_raw_fd(), 1024) };
            LISTENER.store(listener.as_raw_fd() as usize, Ordering::Relaxed);
            let clients: Vec<TcpStream> = (0..SIGNALS)
                .map(|_| TcpStream::connect(listener.local_addr().unwrap()).unwrap())
                .collect();

            static STOP: AtomicBool = AtomicBool::new(false);
            let workers: Vec<_> = (0..3)
                .map(|_| {
                    std::thread::spawn(|| {
                        let mut ok = 0usize;
                        while !STOP.load(Ordering::Relaxed) {
                            // SAFETY: socket(2) and close(2) on our own descriptor.
                            unsafe {
                                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                                ok += usize::from(configured(Keepalive::of(fd)));
                                libc::close(fd);
                            }
                        }
                        ok
                    })
                })
                .collect();
            let threads: Vec<libc::pthread_t> = workers
                .iter()
                .map(std::os::unix::thread::JoinHandleExt::as_pthread_t)
                .collect();
            // One signal at a time, each sent once the last was handled: a second signal
            // to a thread that has one pending would merge with it.
            for i in 0..SIGNALS {
                // SAFETY: the worker threads run until STOP, so their ids are valid.
                unsafe { libc::pthread_kill(threads[i % threads.len()], libc::SIGUSR1) };
                while ACCEPTED_OK.load(Ordering::Relaxed) + ACCEPTED_BAD.load(Ordering::Relaxed)
                    <= i
                {
                    std::thread::yield_now();
                }
            }
            STOP.store(true, Ordering::Relaxed);
            let created: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
            drop(clients);
            report(
                "signals",
                &[
                    (
                        "accepted_ok",
                        ACCEPTED_OK.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "accepted_bad",
                        ACCEPTED_BAD.load(Ordering::Relaxed).to_string(),
                    ),
                    ("created_ok", created.to_string()),
                ],
            );
        },
    ) else {
        return;
    };
    let report = run.report("signals");
    assert_eq!(report["accepted_ok"], SIGNALS.to_string());
    assert_eq!(report["accepted_bad"], "0");
    assert!(report["created_ok"].parse::<usize>().unwrap() > 0);
}

// ---- fd 2 ----------------------------------------------------------------------

/// Writes its own bytes to stderr (unless `QUIET` is set) and creates sockets.
fn write_own_bytes_and_create_sockets() {
    if std::env::var_os("QUIET").is_none() {
        std::io::stderr()
            .write_all(b"the program's own bytes")
            .unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _accepted = listener.accept().unwrap();
}

/// A refused value: the library has a line to write at load.
const NOISY: [(&str, &str); 1] = [("KEEPCNT", "0")];

/// A daemon that closed its stderr may have a network connection on fd 2: the
/// library's warning must not go into it.
#[test]
fn no_diagnostics_into_a_tcp_connection_on_fd_2() {
    const NAME: &str = "no_diagnostics_into_a_tcp_connection_on_fd_2";
    if as_child(NAME, write_own_bytes_and_create_sockets) {
        return;
    }
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let stderr = TcpStream::connect(peer.local_addr().unwrap()).unwrap();
    let (mut received, _) = peer.accept().unwrap();
    run_child(NAME, &NOISY, |command| {
        command.stderr(Stdio::from(OwnedFd::from(stderr)));
    });
    let mut bytes = Vec::new();
    received.read_to_end(&mut bytes).unwrap();
    assert_eq!(String::from_utf8_lossy(&bytes), "the program's own bytes");
}

/// journald's stderr is an AF_UNIX stream: the warning goes there, and if the reader
/// has gone, sending it must not kill the program with SIGPIPE.
#[test]
fn diagnostics_into_a_unix_socket_on_fd_2_even_a_closed_one() {
    const NAME: &str = "diagnostics_into_a_unix_socket_on_fd_2_even_a_closed_one";
    if as_child(NAME, write_own_bytes_and_create_sockets) {
        return;
    }
    let (mut ours, theirs) = common::journal_stream();
    run_child(NAME, &NOISY, |command| {
        command.stderr(Stdio::from(OwnedFd::from(theirs)));
    });
    let mut text = String::new();
    ours.read_to_string(&mut text).unwrap();
    assert!(
        text.contains("libkeepalive: KEEPCNT=\"0\" ignored"),
        "{text}"
    );

    // The reader is gone: only the library writes there (QUIET), and the child must
    // still exit normally (run_child asserts it), not die of SIGPIPE.
    let (ours, theirs) = common::journal_stream();
    drop(ours);
    run_child(NAME, &NOISY, |command| {
        command
            .env("QUIET", "1")
            .stderr(Stdio::from(OwnedFd::from(theirs)));
    });
}

/// A program that closes every descriptor, then creates sockets: they take fds 0, 1
/// and 2, so fd 2 becomes an unconnected TCP socket, where a write would raise SIGPIPE.
#[test]
fn a_program_that_closes_every_descriptor() {
    const NAME: &str = "a_program_that_closes_every_descriptor";
    let close_all_then_create = || {
        let out = std::env::var("RESULT_FILE").unwrap();
        // SAFETY: restoring SIGPIPE's default action (the Rust runtime ignores it,
        // a C daemon does not), closing every descriptor, then socket(2) and
        // getsockopt(2).
        let results: Vec<bool> = unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            for fd in 0..1024 {
                libc::close(fd);
            }
            (0..3)
                .map(|expected| {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    fd == expected && configured(Keepalive::of(fd))
                })
                .collect()
        };
        std::fs::write(out, format!("{results:?}")).unwrap();
        // Give the test harness its standard streams back before it reports.
        // SAFETY: open(2) and dup2(2) on descriptors this child owns.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
    };
    if as_child(NAME, close_all_then_create) {
        return;
    }
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("closeall-{}", std::process::id()));
    run_child(NAME, &TIMERS, |command| {
        command.env("RESULT_FILE", &file);
    });
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[true, true, true]"
    );
    std::fs::remove_file(&file).unwrap();
}

// ---- other libraries and ways to start programs ---------------------------------

/// The child side of the chain tests: a socket made directly, and one made by code
/// loaded with dlopen(3) after start-up (`DLOPEN` names the library).
fn direct_and_dlopened_sockets() {
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    report_keepalive("direct", fd);
    if let Ok(path) = std::env::var("DLOPEN") {
        let path = std::ffi::CString::new(path).unwrap();
        // SAFETY: dlopen/dlsym of the test's own library, whose dlopened_socket takes
        // no arguments and returns a descriptor.
        unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(!handle.is_null(), "dlopen");
            let function = libc::dlsym(handle, c"dlopened_socket".as_ptr());
            assert!(!function.is_null(), "dlsym");
            let dlopened_socket: extern "C" fn() -> libc::c_int = std::mem::transmute(function);
            report_keepalive("dlopened", dlopened_socket());
        }
    }
}

fn assert_configured(run: &common::Run, label: &str, context: &str) {
    let k = run.keepalive(label);
    assert!(configured(k), "{label} with {context}: {k:?}");
}

#[test]
fn listed_twice_with_another_interposer_and_with_dlopen() {
    const NAME: &str = "listed_twice_with_another_interposer_and_with_dlopen";
    if as_child(NAME, direct_and_dlopened_sockets) {
        return;
    }
    let (Some(interposer), Some(dlopened)) = (
        common::c_library("interposer", NAME),
        common::c_library("dlopened", NAME),
    ) else {
        return;
    };
    let shim = common::shim().display().to_string();
    let other = interposer.display().to_string();
    for preload in [
        format!("{shim} {shim}"),
        format!("{shim} {other}"),
        format!("{other} {shim}"),
        format!("{other}:{shim}:{shim}"),
    ] {
        let mut vars = TIMERS.to_vec();
        vars.push(("KEEPINTVL", "abc"));
        let run = run_child(NAME, &vars, |command| {
            command.env("LD_PRELOAD", &preload).env("DLOPEN", &dlopened);
        });
        assert_configured(&run, "direct", &preload);
        assert_configured(&run, "dlopened", &preload);
        assert_eq!(
            run.shim_lines().len(),
            1,
            "one warning with {preload}: {:#?}",
            run.shim_lines()
        );
    }
}

#[test]
fn children_started_with_vfork_and_posix_spawn() {
    const NAME: &str = "children_started_with_vfork_and_posix_spawn";
    if as_child(NAME, direct_and_dlopened_sockets) {
        return;
    }
    let Some(spawner) = common::c_program("spawner", NAME) else {
        return;
    };
    for how in ["vfork", "posix_spawn"] {
        // The spawner runs with the library; the test binary it starts is the child
        // that reports, and inherits LD_PRELOAD and the variables through the exec.
        let exe = std::env::current_exe().unwrap();
        let mut command = preloaded(&spawner, &TIMERS);
        command
            .arg(how)
            .arg(&exe)
            .args([
                NAME,
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "--quiet",
            ])
            .env("LIBKEEPALIVE_TEST_SCENARIO", NAME);
        let run = common::Run::of(command.output().unwrap());
        assert!(run.status_ok, "{how}: {}", run.stderr);
        assert_configured(&run, "direct", how);
    }
}

// ---- secure execution ----------------------------------------------------------

/// Installed where ld.so(8) accepts a preload for setuid programs: a standard library
/// directory, with the set-user-ID bit; removed on drop.
struct SystemCopy(std::path::PathBuf);

impl Drop for SystemCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A setuid-root probe run by `nobody`, with every variable set to something that
/// would show: the library is loaded, ignores them all, turns keepalive on with the
/// kernel's timers, and prints nothing. The same probe without the setuid bit shows
/// the variables taking effect, so the difference is secure-execution mode.
#[test]
fn setuid_programs_ignore_the_environment() {
    const NAME: &str = "setuid_programs_ignore_the_environment";
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        common::skip(NAME, "installing a setuid copy needs root");
        return;
    }
    if !common::have(NAME, "setpriv") {
        return;
    }
    let probe = common::probe_example();
    let libdir = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
        .into_iter()
        .find(|dir| std::path::Path::new(dir).is_dir())
        .unwrap();
    let name = format!("libkeepalive-secure-test-{}.so", std::process::id());
    let installed = SystemCopy(std::path::Path::new(libdir).join(&name));
    std::fs::copy(common::shim(), &installed.0).unwrap();
    chmod(&installed.0, 0o4755);
    let dir = tempdir("secure");
    let setuid_probe = dir.join("probe-setuid");
    let plain_probe = dir.join("probe-plain");
    std::fs::copy(&probe, &setuid_probe).unwrap();
    std::fs::copy(&probe, &plain_probe).unwrap();
    chmod(&setuid_probe, 0o4755);
    chmod(&plain_probe, 0o755);
    chmod(&dir, 0o755);

    // setpriv runs without the library; env, once it has the new ids, sets the
    // variables for the probe alone.
    let run_as_nobody = |program: &std::path::Path| {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "env",
            ])
            .arg(format!("LD_PRELOAD={name}"))
            .args(["KEEPALIVE=off", "KEEPIDLE=61", "KEEPCNT=0"])
            .arg(program)
            .env_remove("LD_PRELOAD");
        let output = common::output_with_journal_stderr(&mut command);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let kernel = Keepalive::untouched();

    let (stdout, stderr) = run_as_nobody(&setuid_probe);
    assert!(stdout.starts_with("libkeepalive is loaded"), "{stdout}");
    let row = common::probe_row(&stdout, "IPv4 client");
    assert_eq!(
        row,
        [
            "on".to_string(),
            kernel.idle.to_string(),
            kernel.interval.to_string(),
            kernel.count.to_string(),
            "0".into()
        ]
    );
    assert_eq!(stderr, "", "secure-execution mode prints nothing");

    let (stdout, stderr) = run_as_nobody(&plain_probe);
    assert!(stdout.starts_with("libkeepalive is loaded"), "{stdout}");
    assert_eq!(
        common::probe_row(&stdout, "IPv4 client")[0],
        "off",
        "KEEPALIVE=off applies without setuid"
    );
    assert!(
        stderr.contains("libkeepalive: KEEPCNT=\"0\" ignored"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn tempdir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("libkeepalive-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- memcheck --------------------------------------------------------------------

/// The probe under valgrind memcheck with the library preloaded, its warning included:
/// no error at all.
#[test]
fn memcheck_finds_no_errors() {
    const NAME: &str = "memcheck_finds_no_errors";
    if !common::have(NAME, "valgrind") {
        return;
    }
    let probe = common::probe_example();
    let mut vars = TIMERS.to_vec();
    vars.extend([("KEEPINTVL", "0x10"), ("TCP_USER_TIMEOUT", "30000")]);
    let output = common::output_with_journal_stderr(
        preloaded("valgrind", &vars)
            .args([
                "--tool=memcheck",
                "--error-exitcode=99",
                "--track-origins=yes",
            ])
            .arg(&probe),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "memcheck: {stderr}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(
        stderr.contains("libkeepalive: KEEPINTVL=\"0x10\" ignored"),
        "the library ran: {stderr}"
    );
}

// ---- cancellation and missing functions ------------------------------------------

/// pthread_cancel unwinds a thread blocked in accept through the library's frame;
/// a frame without unwind information would abort the process instead.
#[test]
fn pthread_cancel_of_a_thread_blocked_in_accept() {
    const NAME: &str = "pthread_cancel_of_a_thread_blocked_in_accept";
    let Some(output) = common::run_c_program("cancel", NAME, &TIMERS) else {
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "cancelled cleanup=1\n"
    );
}

/// When the next definition of a function cannot be found, calls to it fail with
/// ENOSYS and one line on stderr says why; the other functions still work.
#[test]
fn a_missing_real_function_fails_with_enosys() {
    const NAME: &str = "a_missing_real_function_fails_with_enosys";
    let body = || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        report_keepalive("listener", listener.as_raw_fd());
        for _ in 0..2 {
            common::set_errno(0);
            // SAFETY: accept4(2) on our listener, non-blocking so it cannot wait.
            let rc = unsafe {
                libc::fcntl(listener.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
                libc::accept4(
                    listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                )
            };
            report(
                "accept4",
                &[
                    ("rc", rc.to_string()),
                    ("errno", common::errno().to_string()),
                ],
            );
        }
    };
    if as_child(NAME, body) {
        return;
    }
    let Some(hide) = common::c_library("hide", NAME) else {
        return;
    };
    let preload = format!("{} {}", common::shim().display(), hide.display());
    let run = run_child(NAME, &TIMERS, |command| {
        command
            .env("LD_PRELOAD", &preload)
            .env("TEST_HIDE_SYMBOL", "accept4");
    });
    assert!(configured(run.keepalive("listener")));
    assert_eq!(run.report("accept4")["rc"], "-1");
    assert_eq!(run.report("accept4")["errno"], libc::ENOSYS.to_string());
    assert_eq!(
        run.shim_lines(),
        [
            "libkeepalive: cannot find the next definition of accept4() with dlsym(RTLD_NEXT); calls to it fail with ENOSYS"
        ]
    );
}
