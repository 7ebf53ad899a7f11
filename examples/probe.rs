//! Shows what libkeepalive does to this machine's sockets: creates, connects and
//! accepts TCP sockets over IPv4 and IPv6 and prints their keepalive settings as the
//! kernel reports them with getsockopt(2).
//!
//! ```sh
//! cargo build --release --example probe
//! LD_PRELOAD=$PWD/target/release/libkeepalive.so KEEPIDLE=60 KEEPINTVL=10 KEEPCNT=6 \
//!     target/release/examples/probe
//! ```

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

fn main() {
    let loaded = std::fs::read_to_string("/proc/self/maps")
        .map(|maps| maps.lines().any(|line| line.contains("libkeepalive")))
        .unwrap_or(false);
    println!(
        "libkeepalive is {}loaded in this process",
        if loaded { "" } else { "NOT " }
    );
    for var in [
        "KEEPALIVE",
        "KEEPIDLE",
        "KEEPINTVL",
        "KEEPCNT",
        "TCP_USER_TIMEOUT",
    ] {
        let value = std::env::var(var).unwrap_or_else(|_| "(unset)".into());
        println!("  {var:<16} {value}");
    }
    println!();
    println!(
        "{:<16} {:>12} {:>13} {:>13} {:>11} {:>16}",
        "socket",
        "SO_KEEPALIVE",
        "TCP_KEEPIDLE",
        "TCP_KEEPINTVL",
        "TCP_KEEPCNT",
        "TCP_USER_TIMEOUT"
    );
    for (family, address) in [("IPv4", "127.0.0.1:0"), ("IPv6", "[::1]:0")] {
        let listener = match TcpListener::bind(address) {
            Ok(listener) => listener,
            Err(err) => {
                println!("{family:<16} unavailable: {err}");
                continue;
            }
        };
        let client = TcpStream::connect(listener.local_addr().expect("local address"))
            .expect("connect over loopback");
        let (accepted, _) = listener.accept().expect("accept over loopback");
        for (role, fd) in [
            ("listener", listener.as_raw_fd()),
            ("client", client.as_raw_fd()),
            ("accepted", accepted.as_raw_fd()),
        ] {
            let on = option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE);
            println!(
                "{:<16} {:>12} {:>13} {:>13} {:>11} {:>16}",
                format!("{family} {role}"),
                if on == 1 { "on" } else { "off" },
                option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
                option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
                option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
                option(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
            );
        }
    }
}

/// An int socket option, or -1 if the kernel refuses to report it.
fn option(fd: i32, level: i32, name: i32) -> i32 {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live locals sized for an int option.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    if rc == 0 { value } else { -1 }
}
