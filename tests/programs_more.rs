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

use common::net::{Place, TempDir};
use common::{maybe_preloaded, with_and_without};
use compat::{Measured, Program, VARS, connect, measure, words};
use servers::{Postgres, Sshd};

#[test]
fn psql_client() {
    // libpq turns SO_KEEPALIVE on itself and sets no timer unless the connection
    // string asks (keepalives_idle=…): the library's timers stay.
    let psql = Program::new("psql", &["--version"], "(PostgreSQL) ");
    let mut args = words("-h 127.0.0.1 -p {port} -U postgres -c");
    args.push("SELECT 1");
    psql.client_row("programs_more::psql_client", &args, None);
}

#[test]
fn postgres_server() {
    const TEST: &str = "programs_more::postgres_server";
    let Some(bin) = Postgres::bin_dir(TEST) else {
        return;
    };
    let postgres = bin.join("postgres");
    let postgres = Program::new(
        postgres.to_str().expect("path"),
        &["--version"],
        "(PostgreSQL) ",
    );
    postgres.served_row(TEST, |port, vars| {
        Postgres::start(TEST, Place::Loopback, port, vars)
    });
}

#[test]
fn redis_cli_client() {
    // redis-cli sets its own keepalive (15 s) right after connecting.
    let redis_cli = Program::new("redis-cli", &["--version"], "redis-cli ");
    let args = words("-h 127.0.0.1 -p {port} BLPOP k 0");
    redis_cli.client_row("programs_more::redis_cli_client", &args, Some(15));
}

#[test]
fn ssh_client() {
    // The listener never sends a banner, so ssh waits on its open connection.
    let ssh = Program::new("ssh", &["-V"], "OpenSSH_");
    let args = words("-F /dev/null -o BatchMode=yes -p {port} root@127.0.0.1 true");
    ssh.client_row("programs_more::ssh_client", &args, None);
}

#[test]
fn sshd_server() {
    const TEST: &str = "programs_more::sshd_server";
    let Some(sshd) = servers::which(TEST, "sshd") else {
        return;
    };
    let sshd = Program::new(sshd.to_str().expect("path"), &["-V"], "OpenSSH_");
    sshd.served_row(TEST, |port, vars| {
        Sshd::start(TEST, Place::Loopback, port, vars)
    });
}

#[test]
fn wget_client() {
    let wget = Program::new("wget", &["--version"], "GNU Wget ");
    let args = words("-q -O /dev/null --tries=1 http://127.0.0.1:{port}/");
    wget.client_row("programs_more::wget_client", &args, None);
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
    let rsync = Program::new("rsync", &["--version"], "version ");
    let mut args = words("--daemon --no-detach --address 127.0.0.1 --port {port} --config");
    args.push(&config);
    rsync.server_row("programs_more::rsync_daemon", &args, None);
}

#[test]
fn php_client() {
    let php = Program::new("php", &["--version"], "PHP ");
    let code = "$s = fsockopen('127.0.0.1', {port}); sleep(60);";
    php.client_row("programs_more::php_client", &["-r", code], None);
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
    let java = Program::new("java", &["-version"], "version \"");
    let source = source.display().to_string();
    java.server_row("programs_more::java_nio_server", &[&source, "{port}"], None);
}

#[test]
fn haproxy_proxy() {
    const TEST: &str = "programs_more::haproxy_proxy";
    let haproxy = Program::new("haproxy", &["-v"], "HAProxy version ");
    if !haproxy.installed(TEST) {
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
    let measured: Option<Measured> = with_and_without(&VARS, |vars| {
        let mut command = maybe_preloaded("haproxy", vars);
        let _proxy = Place::Loopback.serve("haproxy", command.args(["-db", "-f", &config]), port);
        let _conn = connect("haproxy", port);
        let accepted = measure("haproxy", &format!("( sport = :{port} )"), None);
        let outgoing = measure("haproxy", &format!("( dport = :{backend} )"), None);
        assert_eq!(accepted, outgoing, "haproxy's two sides differ");
        Some(accepted)
    });
    haproxy.check(TEST, &measured.expect("both runs happen"));
}

#[test]
fn memcached_server() {
    let memcached = Program::new("memcached", &["-V"], "memcached ");
    let args = words("-u nobody -l 127.0.0.1 -p {port} -U 0");
    memcached.server_row("programs_more::memcached_server", &args, None);
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
