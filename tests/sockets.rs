//! Which sockets the library configures: every TCP socket a program creates or
//! accepts, in both families, whatever flags it passes — and nothing else.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use common::{ALL_TIMERS, Keepalive, as_child, report, report_keepalive, run_child, scenario};
use libc::{AF_INET, AF_INET6, AF_UNIX, IPPROTO_TCP, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM};

/// socket(2) straight from libc, so the exact arguments reach the shim.
fn raw_socket(domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(domain, ty, protocol) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const FAMILIES: [(&str, i32); 2] = [("inet", AF_INET), ("inet6", AF_INET6)];
const FLAGS: [(&str, i32); 4] = [
    ("plain", 0),
    ("nonblock", SOCK_NONBLOCK),
    ("cloexec", SOCK_CLOEXEC),
    ("nonblock+cloexec", SOCK_NONBLOCK | SOCK_CLOEXEC),
];
const PROTOCOLS: [(&str, i32); 2] = [("0", 0), ("tcp", IPPROTO_TCP)];

#[test]
fn tcp_sockets_in_both_families_with_every_flag_and_protocol() {
    let Some(run) = scenario(
        "tcp_sockets_in_both_families_with_every_flag_and_protocol",
        &ALL_TIMERS,
        || {
            for (family, domain) in FAMILIES {
                for (flag, flags) in FLAGS {
                    for (proto, protocol) in PROTOCOLS {
                        let fd = raw_socket(domain, SOCK_STREAM | flags, protocol).expect("socket");
                        report_keepalive(&format!("{family}/{flag}/{proto}"), fd.as_raw_fd());
                    }
                }
            }
        },
    ) else {
        return;
    };
    for (family, _) in FAMILIES {
        for (flag, _) in FLAGS {
            for (proto, _) in PROTOCOLS {
                let label = format!("{family}/{flag}/{proto}");
                assert_eq!(run.keepalive(&label), Keepalive::ALL_TIMERS, "{label}");
            }
        }
    }
}

#[test]
fn connected_client_and_accepted_server_sockets_in_both_families() {
    let Some(run) = scenario(
        "connected_client_and_accepted_server_sockets_in_both_families",
        &ALL_TIMERS,
        || {
            for (family, address) in [("inet", "127.0.0.1:0"), ("inet6", "[::1]:0")] {
                let listener = TcpListener::bind(address).expect("bind");
                let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
                let (server, _) = listener.accept().expect("accept");
                report_keepalive(&format!("{family}/listener"), listener.as_raw_fd());
                report_keepalive(&format!("{family}/client"), client.as_raw_fd());
                report_keepalive(&format!("{family}/accepted"), server.as_raw_fd());
            }
        },
    ) else {
        return;
    };
    for family in ["inet", "inet6"] {
        for role in ["listener", "client", "accepted"] {
            let label = format!("{family}/{role}");
            assert_eq!(run.keepalive(&label), Keepalive::ALL_TIMERS, "{label}");
        }
    }
}

/// UDP and AF_UNIX sockets accept SO_KEEPALIVE too, so a stray call would show in
/// getsockopt; protocols that are not TCP (SCTP, MPTCP) must not be touched either.
#[test]
fn other_sockets_are_left_alone() {
    const IPPROTO_MPTCP: i32 = 262;
    let Some(run) = scenario("other_sockets_are_left_alone", &ALL_TIMERS, || {
        for (label, domain, ty, protocol) in [
            ("udp4", AF_INET, libc::SOCK_DGRAM, 0),
            (
                "udp6",
                AF_INET6,
                libc::SOCK_DGRAM | SOCK_CLOEXEC,
                libc::IPPROTO_UDP,
            ),
            ("unix-stream", AF_UNIX, SOCK_STREAM, 0),
            ("unix-dgram", AF_UNIX, libc::SOCK_DGRAM, 0),
            ("sctp", AF_INET, SOCK_STREAM, libc::IPPROTO_SCTP),
            ("mptcp", AF_INET, SOCK_STREAM, IPPROTO_MPTCP),
        ] {
            match raw_socket(domain, ty, protocol) {
                Ok(fd) => report(
                    label,
                    &[(
                        "keepalive",
                        common::int_option(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE)
                            .to_string(),
                    )],
                ),
                // Not every kernel has SCTP or MPTCP; the shim is then not involved.
                Err(err) => report(label, &[("unavailable", err.to_string().replace(' ', "_"))]),
            }
        }
        let dir = std::env::temp_dir().join(format!("libkeepalive-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("socket");
        let listener = UnixListener::bind(&path).expect("bind unix");
        let _client = UnixStream::connect(&path).expect("connect unix");
        let (accepted, _) = listener.accept().expect("accept unix");
        let keepalive =
            common::int_option(accepted.as_raw_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE);
        report("unix-accepted", &[("keepalive", keepalive.to_string())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }) else {
        return;
    };
    for label in ["udp4", "udp6", "unix-stream", "unix-dgram", "unix-accepted"] {
        assert_eq!(run.report(label)["keepalive"], "0", "{label}");
    }
    for label in ["sctp", "mptcp"] {
        let report = run.report(label);
        if let Some(keepalive) = report.get("keepalive") {
            assert_eq!(keepalive, "0", "{label}");
        } else {
            eprintln!("{label} sockets unavailable on this kernel: {report:?}");
        }
    }
}

/// The descriptor numbers the inherited listeners get in the child.
const INHERITED_V4: RawFd = 100;
const INHERITED_V6: RawFd = 101;

/// A listener made by a process without the shim (the test itself) and handed to the
/// child, as a parent process or systemd does: it never went through the shim's
/// `socket`, so only the shim's `accept`/`accept4` can configure what it accepts.
#[test]
fn accept_and_accept4_on_an_inherited_listener() {
    const NAME: &str = "accept_and_accept4_on_an_inherited_listener";
    if as_child(NAME, accept_on_inherited_listeners) {
        return;
    }
    let run = run_child(NAME, &ALL_TIMERS, |command| {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = TcpListener::bind("[::1]:0").unwrap();
        let addresses = format!("{} {}", v4.local_addr().unwrap(), v6.local_addr().unwrap());
        command.env("INHERITED_ADDRESSES", addresses);
        common::pass_fd(command, v4.into(), INHERITED_V4);
        common::pass_fd(command, v6.into(), INHERITED_V6);
    });
    for family in ["inet", "inet6"] {
        // The listener itself never passed through the shim.
        assert_eq!(
            run.keepalive(&format!("{family}/inherited-listener")),
            Keepalive::untouched()
        );
        for call in ["accept", "accept4"] {
            assert_eq!(
                run.keepalive(&format!("{family}/{call}")),
                Keepalive::ALL_TIMERS,
                "{family}/{call}"
            );
        }
    }
}

/// The child: accepts with both calls on both inherited listeners.
fn accept_on_inherited_listeners() {
    let addresses = std::env::var("INHERITED_ADDRESSES").unwrap();
    let (a4, a6) = addresses.split_once(' ').unwrap();
    for (family, fd, address) in [("inet", INHERITED_V4, a4), ("inet6", INHERITED_V6, a6)] {
        report_keepalive(&format!("{family}/inherited-listener"), fd);
        for call in ["accept", "accept4"] {
            let mut client = TcpStream::connect(address).expect("connect");
            client.write_all(b"x").unwrap();
            // SAFETY: fd is the listening socket the parent passed; null
            // address pointers are allowed by accept(2).
            let conn = unsafe {
                if call == "accept" {
                    libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut())
                } else {
                    libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), SOCK_CLOEXEC)
                }
            };
            assert!(conn >= 0, "{call}: {}", std::io::Error::last_os_error());
            report_keepalive(&format!("{family}/{call}"), conn);
            // SAFETY: conn is ours to close.
            unsafe { libc::close(conn) };
        }
    }
}
