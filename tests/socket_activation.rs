//! systemd socket activation: the listener is created by systemd (here
//! `systemd-socket-activate`, which runs without the library) and handed to the
//! service as fd 3; only the service's environment carries LD_PRELOAD. The
//! connections the service accepts must carry the configured keepalive.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::net::Proc;
use common::{have, ss_keepalive, wait_for_connection};

/// Python's own http.server, serving on the socket systemd passed as fd 3
/// (sd_listen_fds(3)) instead of one it binds itself.
const SERVER: &str = "\
import http.server, socket
class Activated(http.server.HTTPServer):
    def server_bind(self): pass
    def server_activate(self): pass
server = Activated(('', 0), http.server.SimpleHTTPRequestHandler, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
server.serve_forever()
";

/// Starts the activated server on a free port, with `service_env` passed to the
/// service only, connects an idle client, and returns what ss shows for the server's
/// side of that connection.
fn activated_connection(service_env: &[String]) -> Vec<Option<Duration>> {
    let port = common::free_port();
    let mut command = Command::new("systemd-socket-activate");
    command.env_remove("LD_PRELOAD");
    for name in common::VARIABLES {
        command.env_remove(name);
    }
    command.arg(format!("--listen=127.0.0.1:{port}"));
    for pair in service_env {
        command.arg(format!("--setenv={pair}"));
    }
    command.args(["python3", "-c", SERVER]);
    let _activator = Proc::spawn(&mut command);
    let deadline = Instant::now() + Duration::from_secs(20);
    let _client = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => panic!("systemd-socket-activate never listened on {port}: {err}"),
        }
    };
    let filter = format!("( sport = :{port} )");
    // The service starts on the first connection; wait until it has accepted it and
    // stayed a moment, so that a missing timer is not just a slow start.
    let seen = wait_for_connection(&filter, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    if seen.iter().all(Option::is_none) {
        ss_keepalive(&filter)
    } else {
        seen
    }
}

#[test]
fn socket_activated_service_accepts_with_keepalive() {
    let test = "socket_activated_service_accepts_with_keepalive";
    if !have(test, "systemd-socket-activate") || !have(test, "python3") {
        return;
    }
    let shimmed = activated_connection(&[
        format!("LD_PRELOAD={}", common::shim().display()),
        "KEEPIDLE=45".into(),
        "KEEPINTVL=5".into(),
    ]);
    assert_eq!(shimmed.len(), 1, "{shimmed:?}");
    let timer = shimmed[0].expect("accepted connection without a keepalive timer");
    assert!(
        timer <= Duration::from_secs(45) && timer >= Duration::from_secs(30),
        "{timer:?}"
    );

    // The same service without the library: the kernel's default is no keepalive.
    let bare = activated_connection(&[]);
    assert_eq!(
        bare,
        [None],
        "without the library there is no keepalive timer"
    );
}
