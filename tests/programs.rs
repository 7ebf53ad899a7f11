//! Real programs that no one here wrote, each run with the library preloaded and
//! observed from outside with `ss -tno`, as an operator would: their connection must
//! carry a keepalive timer no longer than the configured KEEPIDLE.

mod common;

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::net::Proc;
use common::{have, preloaded, wait_for_connection};

const KEEPIDLE_S: u64 = 45;
const VARS: [(&str, &str); 3] = [("KEEPIDLE", "45"), ("KEEPINTVL", "5"), ("KEEPCNT", "3")];
/// JVM start-up is the slowest here.
const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// Asserts that the connections ss finds for `filter` carry a keepalive timer of at
/// most KEEPIDLE (and not far below it: the connection is seconds old).
fn assert_keepalive(program: &str, filter: &str) {
    let timers = wait_for_connection(filter, CONNECT_WAIT);
    assert!(
        !timers.is_empty(),
        "{program}: no established connection for {filter}"
    );
    for timer in timers {
        let timer =
            timer.unwrap_or_else(|| panic!("{program}: connection without a keepalive timer"));
        assert!(
            timer <= Duration::from_secs(KEEPIDLE_S)
                && timer >= Duration::from_secs(KEEPIDLE_S - 20),
            "{program}: keepalive timer {timer:?}, KEEPIDLE={KEEPIDLE_S}"
        );
    }
}

/// Runs `program args` as a client of a listener in this process (which holds every
/// connection and never answers), and checks the client's side of the connection.
fn client(test: &str, program: &str, args: impl FnOnce(u16) -> Vec<String>) {
    if !have(test, program) {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let _held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
    });
    let _client = Proc::spawn(preloaded(program, &VARS).args(args(port)));
    assert_keepalive(program, &format!("( dport = :{port} )"));
}

/// Runs `program args` as a server on a free port, connects to it from this process,
/// and checks the server's side of the connection.
fn server(test: &str, program: &str, args: impl FnOnce(u16) -> Vec<String>) {
    if !have(test, program) {
        return;
    }
    let port = common::free_port();
    let _server = Proc::spawn(preloaded(program, &VARS).args(args(port)));
    let deadline = std::time::Instant::now() + CONNECT_WAIT;
    let _conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(conn) => break conn,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(err) => panic!("{program} never listened on {port}: {err}"),
        }
    };
    assert_keepalive(program, &format!("( sport = :{port} )"));
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn python3_client() {
    client("python3_client", "python3", |port| {
        strings(&[
            "-c",
            &format!(
                "import socket,time; s=socket.create_connection(('127.0.0.1',{port})); time.sleep(60)"
            ),
        ])
    });
}

#[test]
fn node_client() {
    client("node_client", "node", |port| {
        strings(&[
            "-e",
            &format!("require('net').connect({port}, '127.0.0.1'); setInterval(() => {{}}, 1000)"),
        ])
    });
}

#[test]
fn java_client() {
    let source = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("KeepaliveClient.java");
    std::fs::write(
        &source,
        "public class KeepaliveClient {\n  public static void main(String[] a) throws Exception {\n    \
         try (java.net.Socket s = new java.net.Socket(a[0], Integer.parseInt(a[1]))) { Thread.sleep(60000); }\n  }\n}\n",
    )
    .unwrap();
    client("java_client", "java", |port| {
        vec![
            source.display().to_string(),
            "127.0.0.1".into(),
            port.to_string(),
        ]
    });
}

#[test]
fn perl_client() {
    client("perl_client", "perl", |port| {
        strings(&[
            "-MIO::Socket::INET",
            "-e",
            &format!(
                "my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:{port}') or die $!; sleep 60"
            ),
        ])
    });
}

#[test]
fn curl_client() {
    // The listener never answers, so curl waits on its open connection. curl turns
    // keepalive on itself (60 s) after creating the socket, overriding the library,
    // unless told not to.
    client("curl_client", "curl", |port| {
        strings(&[
            "-s",
            "--no-keepalive",
            "--max-time",
            "60",
            &format!("http://127.0.0.1:{port}/"),
        ])
    });
}

#[test]
fn socat_client() {
    client("socat_client", "socat", |port| {
        strings(&["-u", &format!("TCP:127.0.0.1:{port}"), "OPEN:/dev/null"])
    });
}

#[test]
fn python3_http_server() {
    server("python3_http_server", "python3", |port| {
        strings(&[
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
    });
}

#[test]
fn nginx_server() {
    let test = "nginx_server";
    let prefix = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nginx-{}", std::process::id()));
    std::fs::create_dir_all(&prefix).unwrap();
    server(test, "nginx", |port| {
        let conf = prefix.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log stderr;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  \
                 fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
                 server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }}\n}}\n",
                p = prefix.display()
            ),
        )
        .unwrap();
        vec![
            "-p".into(),
            prefix.display().to_string(),
            "-c".into(),
            conf.display().to_string(),
            "-e".into(),
            "stderr".into(),
        ]
    });
}

#[test]
fn redis_server() {
    // Redis turns keepalive on itself (tcp-keepalive 300); with that off, what the
    // connection carries is the library's doing.
    server("redis_server", "redis-server", |port| {
        strings(&[
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--tcp-keepalive",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
    });
}
