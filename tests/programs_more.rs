//! More real programs of the kind people keep long connections with — database,
//! cache and SSH clients and servers, a proxy, a JVM server, download and sync
//! tools — each run with the library and observed from outside with `ss -tno`. Each
//! test holds its row of the README's Compatibility table to what it measured.

mod common;
#[path = "common/compat.rs"]
mod compat;
#[path = "common/readme.rs"]
mod readme;
#[path = "common/servers.rs"]
mod servers;

use std::path::Path;

use common::net::{Proc, TempDir};
use compat::{VARS, client, connect, measure, server, strings};
use readme::check_compatibility;
use servers::{Place, Postgres, Sshd, version};

#[test]
fn psql_client() {
    // libpq turns SO_KEEPALIVE on itself and sets no timer unless the connection
    // string asks (keepalives_idle=…): the library's timers stay.
    let Some(result) = client(
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
    check_compatibility("programs_more::psql_client", &version, &result);
}

#[test]
fn postgres_server() {
    const TEST: &str = "postgres_server";
    let port = common::free_port();
    let Some(_server) = Postgres::start(TEST, Place::Loopback, "127.0.0.1", port, Some(&VARS))
    else {
        return;
    };
    let _conn = connect("postgres", port);
    let result = measure("postgres", &format!("( sport = :{port} )"), None);
    let bin = Postgres::bin_dir(TEST).expect("found above");
    let version = version(
        bin.join("postgres").to_str().expect("path"),
        &["--version"],
        "(PostgreSQL) ",
    );
    check_compatibility("programs_more::postgres_server", &version, &result);
}

#[test]
fn redis_cli_client() {
    // redis-cli sets its own keepalive (15 s) right after connecting.
    let Some(result) = client(
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
    check_compatibility("programs_more::redis_cli_client", &version, &result);
}

#[test]
fn ssh_client() {
    // The listener never sends a banner, so ssh waits on its open connection.
    let Some(result) = client(
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
    check_compatibility("programs_more::ssh_client", &version, &result);
}

#[test]
fn sshd_server() {
    const TEST: &str = "sshd_server";
    let port = common::free_port();
    let Some(_sshd) = Sshd::start(TEST, Place::Loopback, "127.0.0.1", port, Some(&VARS)) else {
        return;
    };
    let _conn = connect("sshd", port);
    let result = measure("sshd", &format!("( sport = :{port} )"), None);
    let sshd = servers::which(TEST, "sshd").expect("found above");
    let version = version(sshd.to_str().expect("path"), &["-V"], "OpenSSH_");
    check_compatibility("programs_more::sshd_server", &version, &result);
}

#[test]
fn wget_client() {
    let Some(result) = client(
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
    check_compatibility("programs_more::wget_client", &version, &result);
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
    let Some(result) = server(
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
    check_compatibility("programs_more::rsync_daemon", &version, &result);
}

#[test]
fn php_client() {
    let Some(result) = client(
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
    check_compatibility("programs_more::php_client", &version, &result);
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
    let Some(result) = server(
        "java_nio_server",
        "java",
        |port| vec![source.display().to_string(), port.to_string()],
        None,
    ) else {
        return;
    };
    let version = version("java", &["-version"], "version \"");
    check_compatibility("programs_more::java_nio_server", &version, &result);
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
    let _proxy = Proc::spawn(common::preloaded("haproxy", &VARS).args(["-db", "-f", &config]));
    let _conn = connect("haproxy", port);
    let accepted = measure("haproxy", &format!("( sport = :{port} )"), None);
    let outgoing = measure("haproxy", &format!("( dport = :{backend} )"), None);
    assert_eq!(accepted, outgoing, "haproxy's two sides differ");
    let version = version("haproxy", &["-v"], "HAProxy version ");
    check_compatibility("programs_more::haproxy_proxy", &version, &accepted);
}

#[test]
fn memcached_server() {
    let Some(result) = server(
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
    check_compatibility("programs_more::memcached_server", &version, &result);
}

/// Every Compatibility row names a test that exists, and there are at least twenty
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
