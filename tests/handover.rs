//! Connections handed over at start-up: inetd style on the standard descriptors, and
//! `LISTEN_FDS` from fd 3. The service never calls `accept`; the library configures
//! them when it loads. Everything else on those descriptors is left alone.

mod common;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::time::Duration;

use common::net::Proc;
use common::{Keepalive, as_child, have, report_keepalive, run_child};

const VARS: [(&str, &str); 3] = [("KEEPIDLE", "600"), ("KEEPINTVL", "60"), ("KEEPCNT", "9")];

const CONFIGURED: Keepalive = Keepalive {
    keepalive: 1,
    idle: 600,
    interval: 60,
    count: 9,
    user_timeout: 0,
};

/// Runs `service` under `systemd-socket-activate --accept` (plus `extra`), with the
/// library and the variables in the service's environment only, connects, and
/// returns the keepalive timer ss shows on the service's side (`None`: no timer).
fn activated(test: &str, extra: &[&str], service: &[&str], preload: bool) -> Option<f64> {
    let port = common::free_port();
    let mut command = common::socket_activate(port);
    command.arg("--accept").args(extra);
    if preload {
        command.arg(format!("--setenv=LD_PRELOAD={}", common::shim().display()));
        for (name, value) in VARS {
            command.arg(format!("--setenv={name}={value}"));
        }
    }
    command.args(service);
    let activator = Proc::spawn(&mut command);
    let client = common::connect_when_listening(&format!("{test}: systemd-socket-activate"), port);
    let filter = format!("( sport = :{port} )");
    // The connection exists from the handshake on; give the service time to start
    // and load the library before concluding that there is no timer.
    let mut seen = common::ss_keepalive_seconds(&filter, Duration::from_secs(3));
    if seen.iter().all(Option::is_none) {
        std::thread::sleep(Duration::from_millis(500));
        seen = common::ss_keepalive_seconds(&filter, Duration::from_millis(1));
    }
    drop(client);
    drop(activator);
    assert_eq!(seen.len(), 1, "{test}: {seen:?}");
    seen[0]
}

/// The configured 600 s, give or take the time the test took.
fn assert_configured(test: &str, timer: Option<f64>) {
    let timer = timer.unwrap_or_else(|| panic!("{test}: no keepalive timer"));
    assert!((500.0..=600.0).contains(&timer), "{test}: {timer} s");
}

/// inetd style (`--inetd`: the connection is the service's stdin and stdout), with
/// `cat` as the service; and, without the library, no timer at all.
#[test]
fn inetd_style_cat_carries_keepalive() {
    let test = "inetd_style_cat_carries_keepalive";
    if !have(test, "systemd-socket-activate") || !have(test, "ss") || !have(test, "cat") {
        return;
    }
    let timer = activated(test, &["--inetd"], &["cat"], true);
    assert_configured(test, timer);
    assert_eq!(activated(test, &["--inetd"], &["cat"], false), None);
}

/// `--accept` alone: the connection is fd 3, named by `LISTEN_FDS=1` and
/// `LISTEN_PID`; a perl and a python one-liner wait on it.
#[test]
fn listen_fds_connection_carries_keepalive() {
    let test = "listen_fds_connection_carries_keepalive";
    if !have(test, "systemd-socket-activate") || !have(test, "ss") {
        return;
    }
    let perl = [
        "perl",
        "-e",
        "open(my $s, '<&=', 3) or die $!; sysread($s, my $b, 1); sleep 60",
    ];
    let python = [
        "python3",
        "-c",
        "import socket, time; s = socket.socket(fileno=3); s.recv(1); time.sleep(60)",
    ];
    for service in [&perl, &python] {
        if !have(test, service[0]) {
            continue;
        }
        assert_configured(test, activated(test, &[], service, true));
        assert_eq!(activated(test, &[], service, false), None, "{service:?}");
    }
}

/// What may sit on fd 0 besides a connection: each is left exactly as it was.
#[derive(Clone, Copy, Debug)]
enum Stdin {
    Pipe,
    DevNull,
    Udp,
    Listener,
    /// A connection whose keepalive someone already set (systemd's `KeepAlive=`).
    Configured,
    /// A connection nobody configured: the one case the library acts on.
    Connection,
}

const STDIN_NAME: &str = "the_standard_descriptors_are_configured_only_when_connected";

/// The child reports what fd 0 is now.
fn report_stdin() {
    report_keepalive("stdin", 0);
}

#[test]
fn the_standard_descriptors_are_configured_only_when_connected() {
    if as_child(STDIN_NAME, report_stdin) {
        return;
    }
    let vars = [VARS[0], VARS[1], VARS[2]];
    let preset = Keepalive {
        keepalive: 1,
        idle: 77,
        interval: 7,
        count: 3,
        user_timeout: 0,
    };
    for kind in [
        Stdin::Pipe,
        Stdin::DevNull,
        Stdin::Udp,
        Stdin::Listener,
        Stdin::Configured,
        Stdin::Connection,
    ] {
        // Kept open until the child has reported.
        let mut keep: Vec<OwnedFd> = Vec::new();
        let run = run_child(STDIN_NAME, &vars, |command| {
            let stdin: Stdio = match kind {
                Stdin::Pipe => Stdio::piped(),
                Stdin::DevNull => Stdio::null(),
                Stdin::Udp => OwnedFd::from(UdpSocket::bind("127.0.0.1:0").unwrap()).into(),
                Stdin::Listener => OwnedFd::from(TcpListener::bind("127.0.0.1:0").unwrap()).into(),
                Stdin::Configured | Stdin::Connection => {
                    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                    let (conn, _) = listener.accept().unwrap();
                    if let Stdin::Configured = kind {
                        set_all(conn.as_raw_fd(), preset);
                    }
                    keep.push(client.into());
                    OwnedFd::from(conn).into()
                }
            };
            command.stdin(stdin);
        });
        drop(keep);
        let stdin = run.keepalive("stdin");
        match kind {
            Stdin::Pipe | Stdin::DevNull => {
                assert_eq!(stdin.keepalive, -1, "{kind:?}: not a socket")
            }
            Stdin::Udp => assert_eq!(stdin.idle, -1, "{kind:?}: no TCP options"),
            Stdin::Listener => assert_eq!(stdin, Keepalive::untouched(), "{kind:?}"),
            Stdin::Configured => assert_eq!(stdin, preset, "{kind:?}"),
            Stdin::Connection => assert_eq!(stdin, CONFIGURED, "{kind:?}"),
        }
        assert_eq!(run.shim_lines(), Vec::<&str>::new(), "{kind:?}");
    }
}

fn set_all(fd: RawFd, k: Keepalive) {
    for (level, name, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, k.keepalive),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, k.idle),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, k.interval),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, k.count),
    ] {
        common::set_int_option(fd, level, name, value);
    }
}

const LISTEN_NAME: &str = "listen_fds_for_another_process_are_left_alone";

/// `LISTEN_FDS` names descriptors for the process in `LISTEN_PID` only: a child that
/// inherited the variables leaves fd 3 alone.
#[test]
fn listen_fds_for_another_process_are_left_alone() {
    if as_child(LISTEN_NAME, || report_keepalive("fd3", 3)) {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let run = run_child(LISTEN_NAME, &VARS, |command| {
        command.env("LISTEN_FDS", "1").env("LISTEN_PID", "1");
        common::pass_fd(command, conn.into(), 3);
    });
    drop(client);
    assert_eq!(run.keepalive("fd3"), Keepalive::untouched());
}

/// A server that is not preloaded hands its own connection to a child run with the
/// library, as the child's stdout (the case 7). The socket is shared: what the
/// library does to it, it does to the server's. One rule decides: a connection with
/// keepalive on or a user timeout is left exactly as it was. One with keepalive off and
/// no user timeout looks untouched whatever its timers (docs/sockets.md says why), and
/// gets the configuration, like an untouched one.
#[test]
fn a_parents_configured_connection_is_left_as_it_was() {
    let untouched = Keepalive::untouched();
    let own = |change: fn(&mut Keepalive)| {
        let mut k = untouched;
        change(&mut k);
        k
    };
    let cases = [
        ("user timeout 9000", own(|k| k.user_timeout = 9000), None),
        ("keepalive on", own(|k| k.keepalive = 1), None),
        (
            "keepalive on, idle 5",
            own(|k| (k.keepalive, k.idle) = (1, 5)),
            None,
        ),
        (
            "keepalive off, idle 5",
            own(|k| k.idle = 5),
            Some(CONFIGURED),
        ),
        ("untouched", untouched, Some(CONFIGURED)),
    ];
    for (what, set, expected) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        set_all(conn.as_raw_fd(), set);
        set_user_timeout(conn.as_raw_fd(), set.user_timeout);
        let status = common::preloaded("true", &VARS)
            .stdout(OwnedFd::from(conn.try_clone().unwrap()))
            .status()
            .unwrap();
        assert!(status.success(), "{what}: {status:?}");
        assert_eq!(
            Keepalive::of(conn.as_raw_fd()),
            expected.unwrap_or(set),
            "{what}"
        );
    }
}

fn set_user_timeout(fd: RawFd, ms: i32) {
    // SAFETY: setsockopt(2) with a live int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&raw const ms).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}
