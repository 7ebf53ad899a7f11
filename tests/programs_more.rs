//! More real programs of the kind people keep long connections with — database,
//! cache and SSH clients and servers, a proxy, a JVM server, download and sync
//! tools — each run with the library and observed from outside with `ss -tno`. Each
//! test holds its row of the programs table in docs/compatibility.md to what it
//! measured.

mod common;
#[path = "common/compat.rs"]
mod compat;
#[path = "common/readme.rs"]
mod readme;
#[path = "common/servers.rs"]
mod servers;

use std::path::Path;

use common::net::{Proc, TempDir};
use compat::{Measured, VARS, client, connect, measure, server, strings};
use servers::{Place, Postgres, Sshd, version};

#[test]
fn psql_client() {
    // libpq turns SO_KEEPALIVE on itself and sets no timer unless the connection
    // string asks (keepalives_idle=…): the library's timers stay.
    let Some(measured) = client(
        "psql_client",
        "psql",
        |port| {
            strings(&[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-c",
                "SELECT 1",
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("psql", &["--version"], "(PostgreSQL) ");
    compat::check("programs_more::psql_client", &version, &measured);
}

#[test]
fn postgres_server() {
    const TEST: &str = "postgres_server";
    let run = |vars: Option<&[(&str, &str)]>| {
        let port = common::free_port();
        let _server = Postgres::start(TEST, Place::Loopback, "127.0.0.1", port, vars)?;
        let _conn = connect("postgres", port);
        Some(measure("postgres", &format!("( sport = :{port} )"), None))
    };
    let (Some(with), Some(without)) = (run(Some(&VARS)), run(None)) else {
        return;
    };
    let measured = Measured { with, without };
    let bin = Postgres::bin_dir(TEST).expect("found above");
    let version = version(
        bin.join("postgres").to_str().expect("path"),
        &["--version"],
        "(PostgreSQL) ",
    );
    compat::check("programs_more::postgres_server", &version, &measured);
}

#[test]
fn redis_cli_client() {
    // redis-cli sets its own keepalive (15 s) right after connecting.
    let Some(measured) = client(
        "redis_cli_client",
        "redis-cli",
        |port| {
            strings(&[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "BLPOP",
                "k",
                "0",
            ])
        },
        Some(15),
    ) else {
        return;
    };
    let version = version("redis-cli", &["--version"], "redis-cli ");
    compat::check("programs_more::redis_cli_client", &version, &measured);
}

#[test]
fn ssh_client() {
    // The listener never sends a banner, so ssh waits on its open connection.
    let Some(measured) = client(
        "ssh_client",
        "ssh",
        |port| {
            strings(&[
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-p",
                &port.to_string(),
                "root@127.0.0.1",
                "true",
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("ssh", &["-V"], "OpenSSH_");
    compat::check("programs_more::ssh_client", &version, &measured);
}

#[test]
fn sshd_server() {
    const TEST: &str = "sshd_server";
    let run = |vars: Option<&[(&str, &str)]>| {
        let port = common::free_port();
        let _sshd = Sshd::start(TEST, Place::Loopback, "127.0.0.1", port, vars)?;
        let _conn = connect("sshd", port);
        Some(measure("sshd", &format!("( sport = :{port} )"), None))
    };
    let (Some(with), Some(without)) = (run(Some(&VARS)), run(None)) else {
        return;
    };
    let measured = Measured { with, without };
    let sshd = servers::which(TEST, "sshd").expect("found above");
    let version = version(sshd.to_str().expect("path"), &["-V"], "OpenSSH_");
    compat::check("programs_more::sshd_server", &version, &measured);
}

#[test]
fn wget_client() {
    let Some(measured) = client(
        "wget_client",
        "wget",
        |port| {
            strings(&[
                "-q",
                "-O",
                "/dev/null",
                "--tries=1",
                &format!("http://127.0.0.1:{port}/"),
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("wget", &["--version"], "GNU Wget ");
    compat::check("programs_more::wget_client", &version, &measured);
}

#[test]
fn rsync_daemon() {
    let dir = TempDir::new("rsyncd");
    let config = dir.join("rsyncd.conf");
    std::fs::write(
        &config,
        format!(
            "use chroot = no\npid file = {}\n[files]\npath = {}\n",
            dir.join("rsyncd.pid"),
            dir.path().display()
        ),
    )
    .unwrap();
    let Some(measured) = server(
        "rsync_daemon",
        "rsync",
        |port| {
            strings(&[
                "--daemon",
                "--no-detach",
                "--address",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--config",
                &config,
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("rsync", &["--version"], "version ");
    compat::check("programs_more::rsync_daemon", &version, &measured);
}

#[test]
fn php_client() {
    let Some(measured) = client(
        "php_client",
        "php",
        |port| {
            strings(&[
                "-r",
                &format!("$s = fsockopen('127.0.0.1', {port}); sleep(60);"),
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("php", &["--version"], "PHP ");
    compat::check("programs_more::php_client", &version, &measured);
}

#[test]
fn java_nio_server() {
    let source = Path::new(env!("CARGO_TARGET_TMPDIR")).join("KeepaliveNioServer.java");
    std::fs::write(
        &source,
        "import java.net.InetSocketAddress;\nimport java.nio.channels.*;\nimport java.util.*;\n\
         public class KeepaliveNioServer {\n  public static void main(String[] a) throws Exception {\n    \
         ServerSocketChannel server = ServerSocketChannel.open();\n    \
         server.bind(new InetSocketAddress(\"127.0.0.1\", Integer.parseInt(a[0])));\n    \
         List<SocketChannel> held = new ArrayList<>();\n    \
         while (true) held.add(server.accept());\n  }\n}\n",
    )
    .unwrap();
    let Some(measured) = server(
        "java_nio_server",
        "java",
        |port| vec![source.display().to_string(), port.to_string()],
        None,
    ) else {
        return;
    };
    let version = version("java", &["-version"], "version \"");
    compat::check("programs_more::java_nio_server", &version, &measured);
}

#[test]
fn haproxy_proxy() {
    const TEST: &str = "haproxy_proxy";
    if !common::have(TEST, "haproxy") {
        return;
    }
    // A backend that holds what HAProxy opens to it.
    let backend = compat::holding_listener();
    let port = common::free_port();
    let dir = TempDir::new("haproxy");
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 1h\n  timeout server 1h\nfrontend front\n  bind 127.0.0.1:{port}\n  \
             default_backend back\nbackend back\n  server held 127.0.0.1:{backend}\n"
        ),
    )
    .unwrap();
    let run = |mut command: std::process::Command| {
        let _proxy = Proc::spawn(command.args(["-db", "-f", &config]));
        let _conn = connect("haproxy", port);
        let accepted = measure("haproxy", &format!("( sport = :{port} )"), None);
        let outgoing = measure("haproxy", &format!("( dport = :{backend} )"), None);
        assert_eq!(accepted, outgoing, "haproxy's two sides differ");
        accepted
    };
    let measured = Measured {
        with: run(common::preloaded("haproxy", &VARS)),
        without: run(servers::bare("haproxy")),
    };
    let version = version("haproxy", &["-v"], "HAProxy version ");
    compat::check("programs_more::haproxy_proxy", &version, &measured);
}

#[test]
fn memcached_server() {
    let Some(measured) = server(
        "memcached_server",
        "memcached",
        |port| {
            strings(&[
                "-u",
                "nobody",
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "0",
            ])
        },
        None,
    ) else {
        return;
    };
    let version = version("memcached", &["-V"], "memcached ");
    compat::check("programs_more::memcached_server", &version, &measured);
}

/// Every row of the programs table names a test that exists, and there are at least twenty
/// programs: a row cannot outlive its test.
#[test]
fn compatibility_rows_name_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows: Vec<readme::Row> = readme::rows()
        .into_iter()
        .filter(|row| row.header.iter().any(|h| h == "version"))
        .collect();
    assert!(rows.len() >= 20, "only {} rows", rows.len());
    for row in &rows {
        let test = row.cells.last().expect("cells").trim_matches('`');
        let (file, name) = test.split_once("::").unwrap_or((test, ""));
        let source = std::fs::read_to_string(root.join(format!("tests/{file}.rs")))
            .unwrap_or_else(|e| panic!("row {test}: tests/{file}.rs: {e}"));
        assert!(
            name.is_empty() || source.contains(&format!("fn {name}()")),
            "row {test}: no test {name} in tests/{file}.rs"
        );
    }
}
