//! Do no harm: the host sees the return values and errno its real calls produced,
//! and the library works across threads, before its own constructor, and after fork.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use common::{
    Keepalive, as_child, errno, report, report_keepalive, run_child, scenario, set_errno,
};

/// A value no call ever sets, to see whether anything touched errno.
const SENTINEL: i32 = 4242;

/// Makes calls that succeed and calls that fail, and reports the return values and
/// errno after each, starting from [`SENTINEL`]; then what a new socket carries.
/// With `TEST_REFUSE_TCP_SETSOCKOPT` set it first installs a seccomp filter that makes
/// every `setsockopt` at level `IPPROTO_TCP` fail with EPERM, as a hardened service's
/// filter may.
fn errno_calls() {
    if std::env::var_os("TEST_REFUSE_TCP_SETSOCKOPT").is_some() {
        // setsockopt(fd, IPPROTO_TCP, ...) fails with EPERM.
        common::refuse_syscall(libc::SYS_setsockopt, 1, libc::IPPROTO_TCP as u32)
            .expect("install the seccomp filter");
    }
    let observe = |label: &str, call: &dyn Fn() -> i32| {
        set_errno(SENTINEL);
        let rc = call();
        let after = errno();
        report(
            label,
            &[("ok", (rc >= 0).to_string()), ("errno", after.to_string())],
        );
        if rc > 2 {
            // SAFETY: rc is a descriptor this closure's call just created.
            unsafe { libc::close(rc) };
        }
    };
    // SAFETY (all calls below): plain integers and null address pointers, which
    // socket(2), accept(2) and accept4(2) accept.
    observe("socket-ok", &|| unsafe {
        libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0)
    });
    observe("socket-bad-protocol", &|| unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM, 9999)
    });
    observe("socket-bad-family", &|| unsafe {
        libc::socket(12345, libc::SOCK_STREAM, 0)
    });
    observe("socket-bad-type", &|| unsafe {
        libc::socket(libc::AF_INET, 77, 0)
    });

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let _c1 = TcpStream::connect(address).unwrap();
    let _c2 = TcpStream::connect(address).unwrap();
    observe("accept-ok", &|| unsafe {
        libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut())
    });
    observe("accept4-ok", &|| unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    });
    observe("accept4-bad-flags", &|| unsafe {
        libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), 0x7fff_0000)
    });
    observe("accept-not-a-socket", &|| unsafe {
        libc::accept(0, std::ptr::null_mut(), std::ptr::null_mut())
    });
    observe("accept-bad-fd", &|| unsafe {
        libc::accept(-1, std::ptr::null_mut(), std::ptr::null_mut())
    });
    let probe = TcpStream::connect(address).unwrap();
    report_keepalive("probe", probe.as_raw_fd());
}

const ERRNO_LABELS: [&str; 9] = [
    "socket-ok",
    "socket-bad-protocol",
    "socket-bad-family",
    "socket-bad-type",
    "accept-ok",
    "accept4-ok",
    "accept4-bad-flags",
    "accept-not-a-socket",
    "accept-bad-fd",
];

/// The same calls with and without the library give the same results and errno, even
/// when every one of the library's own TCP setsockopt calls is refused by seccomp.
#[test]
fn return_values_and_errno_are_the_real_calls() {
    let name = "return_values_and_errno_are_the_real_calls";
    if as_child(name, errno_calls) {
        return;
    }
    let timers = [("KEEPIDLE", "61")];
    let bare = run_child(name, &timers, |c| {
        c.env_remove("LD_PRELOAD");
    });
    let shimmed = run_child(name, &timers, |_| {});
    let failing = run_child(name, &timers, |c| {
        c.env("TEST_REFUSE_TCP_SETSOCKOPT", "1");
    });
    for label in ERRNO_LABELS {
        let expected = bare.report(label);
        assert_eq!(shimmed.report(label), expected, "{label}");
        assert_eq!(
            failing.report(label),
            expected,
            "{label} with failing setsockopt"
        );
    }
    // The baseline itself says what the real calls do.
    assert_eq!(bare.report("socket-ok")["errno"], SENTINEL.to_string());
    assert_eq!(bare.report("accept4-ok")["errno"], SENTINEL.to_string());
    assert_eq!(bare.report("socket-bad-protocol")["ok"], "false");
    // The refusals really reached the library: its SO_KEEPALIVE went through, its
    // TCP_KEEPIDLE did not; with nothing refused, both did.
    let untouched = Keepalive::untouched();
    let failed = failing.keepalive("probe");
    assert_eq!((failed.keepalive, failed.idle), (1, untouched.idle));
    let applied = shimmed.keepalive("probe");
    assert_eq!((applied.keepalive, applied.idle), (1, 61));
    assert_eq!(bare.keepalive("probe"), untouched);
}

const THREADS: usize = 8;
const SOCKETS_PER_THREAD: usize = 1000;

#[test]
fn eight_threads_creating_a_thousand_sockets_each() {
    let Some(run) = scenario(
        "eight_threads_creating_a_thousand_sockets_each",
        &[("KEEPIDLE", "61"), ("KEEPCNT", "7")],
        || {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    std::thread::spawn(|| {
                        let mut ok = 0;
                        for _ in 0..SOCKETS_PER_THREAD {
                            // SAFETY: socket(2) takes plain integers.
                            let fd = unsafe {
                                libc::socket(
                                    libc::AF_INET,
                                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                                    0,
                                )
                            };
                            let k = Keepalive::of(fd);
                            ok += usize::from(
                                fd >= 0 && k.keepalive == 1 && k.idle == 61 && k.count == 7,
                            );
                            // SAFETY: fd is ours.
                            unsafe { libc::close(fd) };
                        }
                        ok
                    })
                })
                .collect();
            let ok: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
            report("threads", &[("ok", ok.to_string())]);
        },
    ) else {
        return;
    };
    assert_eq!(
        run.report("threads")["ok"],
        (THREADS * SOCKETS_PER_THREAD).to_string()
    );
}

/// Another library's constructor creates sockets from eight threads before
/// libkeepalive's constructor has run (ld.so initialises the later LD_PRELOAD entry
/// first): every socket is still configured, and a bad value is reported once.
#[test]
fn sockets_from_threads_started_before_the_library_initialised() {
    let name = "sockets_from_threads_started_before_the_library_initialised";
    // The work happens in the other library's constructor, before the child's main.
    if as_child(name, || {}) {
        return;
    }
    let Some(interposer) = common::c_library("interposer", name) else {
        return;
    };
    let preload = format!("{} {}", common::shim().display(), interposer.display());
    let run = run_child(name, &[("KEEPIDLE", "61"), ("KEEPCNT", "0")], |c| {
        c.env("LD_PRELOAD", &preload).env("TEST_RACE_THREADS", "8");
    });
    assert_eq!(run.report("race")["ok"], "8000");
    assert_eq!(run.report("race")["bad"], "0");
    assert_eq!(
        run.shim_lines(),
        [
            "libkeepalive: KEEPCNT=\"0\" ignored: expected a whole number of probes from 1 to 127; using the kernel default"
        ]
    );
}

#[test]
fn a_forked_child_keeps_working() {
    let Some(run) = scenario(
        "a_forked_child_keeps_working",
        &[("KEEPIDLE", "61")],
        || {
            // A thread alive across the fork, as in most servers.
            let _busy =
                std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
            // SAFETY: the child only makes async-signal-safe calls (socket, getsockopt,
            // close, _exit) before exiting.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: as above.
                unsafe {
                    let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
                    let k = Keepalive::of(fd);
                    libc::_exit(if k.keepalive == 1 && k.idle == 61 {
                        0
                    } else {
                        1
                    });
                }
            }
            let mut status = 0;
            // SAFETY: pid is our child; status is a live local.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            report(
                "fork",
                &[
                    ("exited", libc::WIFEXITED(status).to_string()),
                    ("code", libc::WEXITSTATUS(status).to_string()),
                ],
            );
            let listener = TcpListener::bind("[::1]:0").unwrap();
            report_keepalive("parent-after-fork", listener.as_raw_fd());
        },
    ) else {
        return;
    };
    assert_eq!(run.report("fork")["exited"], "true");
    assert_eq!(run.report("fork")["code"], "0");
    assert_eq!(run.keepalive("parent-after-fork").idle, 61);
}
