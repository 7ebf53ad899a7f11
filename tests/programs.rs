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

use compat::{client, server, strings};
use servers::version;

#[test]
fn python3_client() {
    let Some(measured) = client(
        "python3_client",
        "python3",
        |port| {
            strings(&[
                "-c",
                &format!(
                    "import socket,time; s=socket.create_connection(('127.0.0.1',{port})); time.sleep(60)"
                ),
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("python3", &["--version"], "Python ");
    compat::check("programs::python3_client", &version, &measured);
}

#[test]
fn node_client() {
    let Some(measured) = client(
        "node_client",
        "node",
        |port| {
            strings(&[
                "-e",
                &format!(
                    "require('net').connect({port}, '127.0.0.1'); setInterval(() => {{}}, 1000)"
                ),
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("node", &["--version"], "v");
    compat::check("programs::node_client", &version, &measured);
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
    let Some(measured) = client(
        "java_client",
        "java",
        |port| {
            vec![
                source.display().to_string(),
                "127.0.0.1".into(),
                port.to_string(),
            ]
        },
        None,
    ) else {
        return;
    };
    let version = version("java", &["-version"], "version \"");
    compat::check("programs::java_client", &version, &measured);
}

#[test]
fn perl_client() {
    let Some(measured) = client(
        "perl_client",
        "perl",
        |port| {
            strings(&[
                "-MIO::Socket::INET",
                "-e",
                &format!(
                    "my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:{port}') or die $!; sleep 60"
                ),
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("perl", &["-e", "print $^V"], "v");
    compat::check("programs::perl_client", &version, &measured);
}

#[test]
fn curl_client() {
    // The listener never answers, so curl waits on its open connection. curl turns
    // keepalive on itself (60 s) after creating the socket, overriding the library,
    // unless told not to.
    let run = |extra: &[&str]| {
        client(
            "curl_client",
            "curl",
            |port| {
                let mut args = strings(&["-s", "--max-time", "60"]);
                args.extend(strings(extra));
                args.push(format!("http://127.0.0.1:{port}/"));
                args
            },
            Some(60),
        )
    };
    let (Some(default), Some(told)) = (run(&[]), run(&["--no-keepalive"])) else {
        return;
    };
    let version = version("curl", &["--version"], "curl ");
    readme::check_compatibility(
        "programs::curl_client",
        &version,
        &format!(
            "{}; with `--no-keepalive`: {}",
            default.with.with(),
            told.with.with()
        ),
        &default.without.without(),
    );
}

#[test]
fn socat_client() {
    let Some(measured) = client(
        "socat_client",
        "socat",
        |port| strings(&["-u", &format!("TCP:127.0.0.1:{port}"), "OPEN:/dev/null"]),
        None,
    ) else {
        return;
    };
    let version = version("socat", &["-V"], "socat version ");
    compat::check("programs::socat_client", &version, &measured);
}

#[test]
fn python3_http_server() {
    let Some(measured) = server(
        "python3_http_server",
        "python3",
        |port| {
            strings(&[
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("python3", &["--version"], "Python ");
    compat::check("programs::python3_http_server", &version, &measured);
}

#[test]
fn nginx_server() {
    let test = "nginx_server";
    let prefix = common::net::TempDir::new("nginx");
    let Some(measured) = server(
        test,
        "nginx",
        |port| {
            let conf = prefix.join("nginx.conf");
            std::fs::write(
                &conf,
                format!(
                    "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log stderr;\n\
                     events {{ worker_connections 64; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  \
                     fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
                     server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }}\n}}\n",
                    p = prefix.path().display()
                ),
            )
            .unwrap();
            vec![
                "-p".into(),
                prefix.path().display().to_string(),
                "-c".into(),
                conf,
                "-e".into(),
                "stderr".into(),
            ]
        },
        None,
    ) else {
        return;
    };
    let version = version("nginx", &["-v"], "nginx/");
    compat::check("programs::nginx_server", &version, &measured);
}

#[test]
fn redis_server() {
    // Redis turns keepalive on itself (tcp-keepalive 300) on each client it accepts,
    // after the library did; with that off, the library's settings stay.
    let run = |keepalive: Option<&str>| {
        server(
            "redis_server",
            "redis-server",
            |port| {
                let mut args = strings(&[
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                if let Some(seconds) = keepalive {
                    args.extend(strings(&["--tcp-keepalive", seconds]));
                }
                args
            },
            Some(300),
        )
    };
    let (Some(default), Some(off)) = (run(None), run(Some("0"))) else {
        return;
    };
    let version = version("redis-server", &["--version"], "v=");
    readme::check_compatibility(
        "programs::redis_server",
        &version,
        &format!(
            "{}; with `tcp-keepalive 0`: {}",
            default.with.with(),
            off.with.with()
        ),
        &default.without.without(),
    );
}
