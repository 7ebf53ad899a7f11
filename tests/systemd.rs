//! In a real systemd: services configured the ways the README shows, started by
//! systemd 252 as PID 1 of a throw-away container (tests/common/systemd.rs), their
//! connections checked with `ss -tno` inside, as an operator on that machine would.

mod common;

use std::time::Duration;

use common::net::Proc;
use common::systemd::{Container, TARGET};

/// A client inside the container: connects to 127.0.0.1:PORT, sends one line, prints
/// `echoed <what came back>` once the service has answered it (so the service's
/// program is running its own code by then, past the library's start-up), then stays
/// connected and idle.
const CLIENT: &str = "\
import socket, sys, time
conn = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=30)
conn.sendall(b'ping\\n')
answer = b''
while not answer.endswith(b'\\n'):
    chunk = conn.recv(64)
    if not chunk:
        break
    answer += chunk
print('echoed', repr(answer), flush=True)
time.sleep(300)
";

/// The library as the container sees it.
fn library() -> String {
    format!("{TARGET}/release/libkeepalive.so")
}

/// Connects a client inside `container` to `port` and waits until the service has
/// echoed its line; the client stays connected while the returned process lives.
fn connect(container: &Container, port: u16, unit: &str) -> Proc {
    let mut client =
        Proc::spawn(&mut container.enter(&["/usr/bin/python3", "-c", CLIENT, &port.to_string()]));
    let echoed = client.line("echoed ", Duration::from_secs(30));
    assert_eq!(
        echoed.as_deref(),
        Some("echoed b'ping\\n'"),
        "the service on port {port} did not echo exactly the client's line{}",
        container.diagnose(unit)
    );
    client
}

/// The keepalive timer of the one connection the service on `port` holds.
fn server_timer(container: &Container, port: u16) -> Option<Duration> {
    let seen = container.ss_keepalive(&format!("( sport = :{port} )"));
    assert_eq!(seen.len(), 1, "connections on port {port}: {seen:?}");
    seen[0]
}

/// Asserts that the service's connection has a keepalive timer of at most `idle`
/// seconds (it counts down from the configured idle time) and not far below it: each
/// service gets its own idle time, so settings that went to the wrong one fail.
fn assert_idle(what: &str, timer: Option<Duration>, idle: u64) {
    let timer = timer.unwrap_or_else(|| panic!("{what}: no keepalive timer"));
    assert!(
        timer <= Duration::from_secs(idle) && timer > Duration::from_secs(idle - 10),
        "{what}: timer {timer:?}, configured idle {idle} s"
    );
}

/// Issue 10, item 4: systemd accepts the connection itself (`Accept=yes`) and starts
/// one service instance per connection with it as stdin and stdout
/// (`StandardInput=socket`, inetd style). The service never calls accept(2); the
/// library configures the connected socket it finds on its standard descriptors.
#[test]
fn accept_yes_service_gets_keepalive_on_its_socket() {
    let test = "accept_yes_service_gets_keepalive_on_its_socket";
    let Some(container) = Container::boot(test) else {
        return;
    };
    // Two instances of the same inetd-style echo service: `cat`, a program that knows
    // nothing of sockets; one with the library preloaded, one without.
    for (name, port, environment) in [
        (
            "echo-preloaded",
            7101,
            format!(
                "Environment=LD_PRELOAD={}\nEnvironment=KEEPIDLE=45 KEEPINTVL=5 KEEPCNT=3\n",
                library()
            ),
        ),
        ("echo-bare", 7102, String::new()),
    ] {
        container.write(
            &format!("/etc/systemd/system/{name}.socket"),
            &format!("[Socket]\nListenStream=127.0.0.1:{port}\nAccept=yes\n"),
        );
        container.write(
            &format!("/etc/systemd/system/{name}@.service"),
            &format!("[Service]\nExecStart=/usr/bin/cat\nStandardInput=socket\n{environment}"),
        );
    }
    container.start(&["echo-preloaded.socket", "echo-bare.socket"]);

    let _preloaded = connect(&container, 7101, "echo-preloaded@*");
    let _bare = connect(&container, 7102, "echo-bare@*");

    assert_idle(
        "Accept=yes service with the library",
        server_timer(&container, 7101),
        45,
    );
    assert_eq!(
        server_timer(&container, 7102),
        None,
        "without the library the connection has no keepalive timer"
    );
}
