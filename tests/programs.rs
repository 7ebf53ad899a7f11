//! Real programs that no one here wrote, each run with the library preloaded and
//! observed from outside with `ss -tno`, as an operator would. Each test holds its
//! row of the programs table in docs/compatibility.md to what it measured: the
//! version the program states and the keepalive its connection carries.

mod common;
#[path = "common/compat.rs"]
mod compat;
#[path = "common/readme.rs"]
mod readme;
#[path = "common/servers.rs"]
mod servers;

use compat::{Program, ported, words};

#[test]
fn python3_client() {
    let python3 = Program::new("python3", &["--version"], "Python ");
    let code =
        "import socket,time; s=socket.create_connection(('127.0.0.1',{port})); time.sleep(60)";
    python3.client_row("programs::python3_client", &["-c", code], None);
}

#[test]
fn node_client() {
    let node = Program::new("node", &["--version"], "v");
    let code = "require('net').connect({port}, '127.0.0.1'); setInterval(() => {}, 1000)";
    node.client_row("programs::node_client", &["-e", code], None);
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
    let java = Program::new("java", &["-version"], "version \"");
    let source = source.display().to_string();
    java.client_row(
        "programs::java_client",
        &[&source, "127.0.0.1", "{port}"],
        None,
    );
}

#[test]
fn perl_client() {
    let perl = Program::new("perl", &["-e", "print $^V"], "v");
    let code = "my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:{port}') or die $!; sleep 60";
    perl.client_row(
        "programs::perl_client",
        &["-MIO::Socket::INET", "-e", code],
        None,
    );
}

#[test]
fn curl_client() {
    // The listener never answers, so curl waits on its open connection. curl turns
    // keepalive on itself (60 s) after creating the socket, overriding the library,
    // unless told not to.
    const TEST: &str = "programs::curl_client";
    let curl = Program::new("curl", &["--version"], "curl ");
    let default = words("-s --max-time 60 http://127.0.0.1:{port}/");
    let told = words("-s --max-time 60 --no-keepalive http://127.0.0.1:{port}/");
    let default = curl.client(TEST, &ported(&default), Some(60));
    let told = curl.client(TEST, &ported(&told), Some(60));
    curl.check_told(TEST, default, told, "--no-keepalive");
}

#[test]
fn socat_client() {
    let socat = Program::new("socat", &["-V"], "socat version ");
    let args = words("-u TCP:127.0.0.1:{port} OPEN:/dev/null");
    socat.client_row("programs::socat_client", &args, None);
}

#[test]
fn python3_http_server() {
    let python3 = Program::new("python3", &["--version"], "Python ");
    let args = words("-m http.server {port} --bind 127.0.0.1");
    python3.server_row("programs::python3_http_server", &args, None);
}

#[test]
fn nginx_server() {
    const TEST: &str = "programs::nginx_server";
    let nginx = Program::new("nginx", &["-v"], "nginx/");
    let prefix = common::net::TempDir::new("nginx");
    let Some(measured) = nginx.server(
        TEST,
        &|port| {
            let conf = common::nginx_conf(
                prefix.path(),
                &format!("server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }}"),
            );
            vec![
                "-p".into(),
                prefix.path().display().to_string(),
                "-c".into(),
                conf.display().to_string(),
                "-e".into(),
                "stderr".into(),
            ]
        },
        None,
    ) else {
        return;
    };
    nginx.check(TEST, &measured);
}

#[test]
fn redis_server() {
    // Redis turns keepalive on itself (tcp-keepalive 300) on each client it accepts,
    // after the library did; with that off, the library's settings stay.
    const TEST: &str = "programs::redis_server";
    let redis = Program::new("redis-server", &["--version"], "v=");
    let mut default = words("--port {port} --bind 127.0.0.1 --appendonly no --save");
    default.push("");
    let off = [&default[..], &["--tcp-keepalive", "0"]].concat();
    let default = redis.server(TEST, &ported(&default), Some(300));
    let off = redis.server(TEST, &ported(&off), Some(300));
    redis.check_told(TEST, default, off, "tcp-keepalive 0");
}
