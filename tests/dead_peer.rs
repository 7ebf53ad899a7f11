//! Dead peers on a real network path: two network namespaces joined by a veth pair,
//! one side's link cut silently, and the time until the other side's blocked read
//! fails, with the library and without.

mod common;
#[path = "common/readme.rs"]
mod readme;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::net::{Link, Proc, SERVER_ADDR, Side, monotonic_ms};
use common::{as_child, child_command, report};

/// Slack for scheduling and timer granularity on a shared machine, on top of the
/// configured bound.
const SLACK_MS: u64 = 1500;

/// The child roles, chosen by `ROLE`.
fn role() {
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    match std::env::var("ROLE").unwrap().as_str() {
        // Accepts and holds connections; never sends anything.
        "holding-server" => {
            let listener = TcpListener::bind((SERVER_ADDR, port)).unwrap();
            report("listening", &[]);
            let _held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
        }
        // Accepts one connection and blocks reading it.
        "reading-server" => {
            let listener = TcpListener::bind((SERVER_ADDR, port)).unwrap();
            report("listening", &[]);
            let (conn, _) = listener.accept().unwrap();
            report("accepted", &[]);
            read_until_error(conn);
        }
        // Connects and blocks reading; a writing client first writes once told to.
        role @ ("client" | "writing-client") => {
            let mut conn = TcpStream::connect((SERVER_ADDR, port)).unwrap();
            report("connected", &[]);
            if role == "writing-client" {
                let mut go = String::new();
                std::io::stdin().read_line(&mut go).unwrap();
                conn.write_all(&[b'x'; 100]).unwrap();
                report("wrote", &[("at_ms", monotonic_ms().to_string())]);
            }
            read_until_error(conn);
        }
        other => panic!("unknown role {other}"),
    }
}

/// Blocks in read(2) and reports how it ended, and when.
fn read_until_error(mut conn: TcpStream) {
    let mut buf = [0u8; 64];
    let outcome = loop {
        match conn.read(&mut buf) {
            Ok(0) => break "eof".to_string(),
            Ok(_) => continue,
            Err(err) => break err.raw_os_error().unwrap_or(-1).to_string(),
        }
    };
    report(
        "result",
        &[("errno", outcome), ("at_ms", monotonic_ms().to_string())],
    );
}

/// Starts a role in one side's namespace; `vars` are None for a run without the
/// library.
fn start(
    link: &Link,
    side: Side,
    test: &str,
    role: &str,
    port: u16,
    vars: Option<&[(&str, &str)]>,
) -> Proc {
    let mut command: Command = child_command(test, vars.unwrap_or(&[]));
    if vars.is_none() {
        command.env_remove("LD_PRELOAD");
    }
    command.env("ROLE", role).env("PORT", port.to_string());
    link.enter(&mut command, side);
    Proc::spawn(&mut command)
}

const WAIT: Duration = Duration::from_secs(20);

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .to_string()
}

/// Asserts that `proc` reported ETIMEDOUT within `bound_ms` of `since_ms`.
fn assert_timed_out(proc: &mut Proc, since_ms: u64, bound_ms: u64, what: &str) {
    let line = proc
        .line("@ result", Duration::from_millis(bound_ms + 5000))
        .unwrap_or_else(|| panic!("{what}: still blocked {} ms after the cut", bound_ms + 5000));
    assert_eq!(
        field(&line, "errno"),
        libc::ETIMEDOUT.to_string(),
        "{what}: {line}"
    );
    let took = field(&line, "at_ms").parse::<u64>().unwrap() - since_ms;
    assert!(
        took <= bound_ms,
        "{what}: noticed after {took} ms, bound {bound_ms} ms"
    );
    eprintln!("{what}: ETIMEDOUT after {took} ms (bound {bound_ms} ms)");
}

/// Asserts that a run without the library is still blocked.
fn assert_still_blocked(proc: &mut Proc, what: &str) {
    assert_eq!(
        proc.line("@ result", Duration::ZERO),
        None,
        "{what} returned"
    );
    assert!(proc.is_running(), "{what} exited");
}

/// Holds the table rows naming `test` (docs/compatibility.md) to what it showed: a
/// read that failed with ETIMEDOUT within `bound_ms` (`since` says from when), and a
/// run that stayed blocked.
fn check_readme(test: &str, bound_ms: u64, since: &str) {
    let with = format!(
        "`read` fails with ETIMEDOUT within {:.1} s{since}",
        bound_ms as f64 / 1000.0
    );
    for row in readme::rows_for(&format!("dead_peer::{test}")) {
        let cell = row.cell(&["with the library"]);
        assert!(
            cell.starts_with(&with),
            "{} is stale for {test}:\n  written:  {cell}\n  measured: {with}",
            row.file
        );
        let cell = row.cell(&["without"]);
        assert!(
            cell.starts_with("still blocked"),
            "{} is stale for {test}: {cell}",
            row.file
        );
    }
}

const FAST_KEEPALIVE: [(&str, &str); 3] = [("KEEPIDLE", "1"), ("KEEPINTVL", "1"), ("KEEPCNT", "2")];
const FAST_BOUND_MS: u64 = 1000 + 1000 * 2 + SLACK_MS;

#[test]
fn idle_client_notices_a_vanished_server() {
    const NAME: &str = "idle_client_notices_a_vanished_server";
    if as_child(NAME, role) {
        return;
    }
    let Some(link) = Link::new(NAME) else {
        return;
    };
    let mut server = start(&link, Side::Server, NAME, "holding-server", 7001, None);
    server.line("@ listening", WAIT).expect("server listening");
    let mut shimmed = start(
        &link,
        Side::Client,
        NAME,
        "client",
        7001,
        Some(&FAST_KEEPALIVE),
    );
    let mut bare = start(&link, Side::Client, NAME, "client", 7001, None);
    shimmed.line("@ connected", WAIT).expect("client connected");
    bare.line("@ connected", WAIT)
        .expect("bare client connected");

    let cut = monotonic_ms();
    link.cut(Side::Server);
    assert_timed_out(
        &mut shimmed,
        cut,
        FAST_BOUND_MS,
        "client with KEEPIDLE=1 KEEPINTVL=1 KEEPCNT=2",
    );
    assert_still_blocked(&mut bare, "the same client without the library");
    check_readme(NAME, FAST_BOUND_MS, "");
}

#[test]
fn unacknowledged_data_is_bounded_by_tcp_user_timeout() {
    const NAME: &str = "unacknowledged_data_is_bounded_by_tcp_user_timeout";
    if as_child(NAME, role) {
        return;
    }
    let Some(link) = Link::new(NAME) else {
        return;
    };
    let mut server = start(&link, Side::Server, NAME, "holding-server", 7002, None);
    server.line("@ listening", WAIT).expect("server listening");
    // Long keepalive timers: only TCP_USER_TIMEOUT can end the wait in time.
    let long = [("KEEPIDLE", "600"), ("KEEPINTVL", "60")];
    let with_timeout = [long[0], long[1], ("TCP_USER_TIMEOUT", "2000")];
    let mut bounded = start(
        &link,
        Side::Client,
        NAME,
        "writing-client",
        7002,
        Some(&with_timeout),
    );
    let mut unbounded = start(
        &link,
        Side::Client,
        NAME,
        "writing-client",
        7002,
        Some(&long),
    );
    bounded.line("@ connected", WAIT).expect("client connected");
    unbounded
        .line("@ connected", WAIT)
        .expect("client connected");

    link.cut(Side::Server);
    bounded.tell("write");
    unbounded.tell("write");
    let wrote = field(&bounded.line("@ wrote", WAIT).expect("wrote"), "at_ms");
    unbounded.line("@ wrote", WAIT).expect("wrote");
    assert_timed_out(
        &mut bounded,
        wrote.parse().unwrap(),
        2000 + SLACK_MS,
        "writer with TCP_USER_TIMEOUT=2000",
    );
    assert_still_blocked(&mut unbounded, "the same writer without TCP_USER_TIMEOUT");
    check_readme(NAME, 2000 + SLACK_MS, " of the write");
}

#[test]
fn server_notices_a_vanished_client_on_an_accepted_connection() {
    const NAME: &str = "server_notices_a_vanished_client_on_an_accepted_connection";
    if as_child(NAME, role) {
        return;
    }
    let Some(link) = Link::new(NAME) else {
        return;
    };
    let mut shimmed = start(
        &link,
        Side::Server,
        NAME,
        "reading-server",
        7003,
        Some(&FAST_KEEPALIVE),
    );
    let mut bare = start(&link, Side::Server, NAME, "reading-server", 7004, None);
    shimmed.line("@ listening", WAIT).expect("server listening");
    bare.line("@ listening", WAIT)
        .expect("bare server listening");
    let _c1 = start(&link, Side::Client, NAME, "client", 7003, None);
    let _c2 = start(&link, Side::Client, NAME, "client", 7004, None);
    shimmed.line("@ accepted", WAIT).expect("accepted");
    bare.line("@ accepted", WAIT).expect("bare accepted");

    let cut = monotonic_ms();
    link.cut(Side::Client);
    assert_timed_out(
        &mut shimmed,
        cut,
        FAST_BOUND_MS,
        "server with KEEPIDLE=1 KEEPINTVL=1 KEEPCNT=2",
    );
    assert_still_blocked(&mut bare, "the same server without the library");
    check_readme(NAME, FAST_BOUND_MS, "");
}
