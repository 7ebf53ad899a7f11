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
use common::{Vars, as_child, child_command, report};

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

/// The test hosts of one test, and the child roles it runs on them.
struct Hosts {
    link: Link,
    test: &'static str,
}

impl Hosts {
    /// In the child of `test`, plays its role and gives None; in the parent, the test
    /// hosts, or None (after saying why) when they cannot be made here.
    fn new(test: &'static str) -> Option<Hosts> {
        if as_child(test, role) {
            return None;
        }
        Some(Hosts {
            link: Link::new(test)?,
            test,
        })
    }

    /// Starts `role` on `side`, with the library and `vars`, or without it when
    /// `vars` is None.
    fn start(&self, side: Side, role: &str, port: u16, vars: Vars) -> Proc {
        let mut command: Command = child_command(self.test, vars.unwrap_or(&[]));
        if vars.is_none() {
            command.env_remove("LD_PRELOAD");
        }
        command.env("ROLE", role).env("PORT", port.to_string());
        self.link.enter(&mut command, side);
        Proc::spawn(&mut command)
    }

    /// Starts server `role` on the server host and returns once it listens.
    fn serve(&self, role: &str, port: u16, vars: Vars) -> Proc {
        let mut server = self.start(Side::Server, role, port, vars);
        server.line("@ listening", WAIT).expect("server listening");
        server
    }

    /// Starts client `role` on the client host and returns once it is connected.
    fn connect(&self, role: &str, port: u16, vars: Vars) -> Proc {
        let mut client = self.start(Side::Client, role, port, vars);
        client.line("@ connected", WAIT).expect("client connected");
        client
    }

    /// Cuts `vanishing`'s link, then holds the run of `who` with [`FAST_KEEPALIVE`] to
    /// a read failing with ETIMEDOUT within [`FAST_BOUND_MS`], the same run without the
    /// library to a read still blocked, and this test's table rows to both.
    fn cut_with_fast_keepalive(&self, vanishing: Side, who: &str, runs: [&mut Proc; 2]) {
        let [shimmed, bare] = runs;
        let cut = monotonic_ms();
        self.link.cut(vanishing);
        let what = format!("{who} with KEEPIDLE=1 KEEPINTVL=1 KEEPCNT=2");
        assert_timed_out(shimmed, cut, FAST_BOUND_MS, &what);
        assert_still_blocked(bare, &format!("the same {who} without the library"));
        self.check_readme(FAST_BOUND_MS, "");
    }

    /// Holds the table rows naming this test (docs/compatibility.md) to what it
    /// showed: a read that failed with ETIMEDOUT within `bound_ms` (`since` says from
    /// when), and a run that stayed blocked.
    fn check_readme(&self, bound_ms: u64, since: &str) {
        let test = self.test;
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

const FAST_KEEPALIVE: [(&str, &str); 3] = [("KEEPIDLE", "1"), ("KEEPINTVL", "1"), ("KEEPCNT", "2")];
const FAST_BOUND_MS: u64 = 1000 + 1000 * 2 + SLACK_MS;

#[test]
fn idle_client_notices_a_vanished_server() {
    let Some(hosts) = Hosts::new("idle_client_notices_a_vanished_server") else {
        return;
    };
    let _server = hosts.serve("holding-server", 7001, None);
    let mut shimmed = hosts.connect("client", 7001, Some(&FAST_KEEPALIVE));
    let mut bare = hosts.connect("client", 7001, None);
    hosts.cut_with_fast_keepalive(Side::Server, "client", [&mut shimmed, &mut bare]);
}

#[test]
fn unacknowledged_data_is_bounded_by_tcp_user_timeout() {
    let Some(hosts) = Hosts::new("unacknowledged_data_is_bounded_by_tcp_user_timeout") else {
        return;
    };
    let _server = hosts.serve("holding-server", 7002, None);
    // Long keepalive timers: only TCP_USER_TIMEOUT can end the wait in time.
    let long = [("KEEPIDLE", "600"), ("KEEPINTVL", "60")];
    let with_timeout = [long[0], long[1], ("TCP_USER_TIMEOUT", "2000")];
    let mut bounded = hosts.connect("writing-client", 7002, Some(&with_timeout));
    let mut unbounded = hosts.connect("writing-client", 7002, Some(&long));

    hosts.link.cut(Side::Server);
    bounded.tell("write");
    unbounded.tell("write");
    let wrote = field(&bounded.line("@ wrote", WAIT).expect("wrote"), "at_ms");
    unbounded.line("@ wrote", WAIT).expect("wrote");
    let what = "writer with TCP_USER_TIMEOUT=2000";
    assert_timed_out(&mut bounded, wrote.parse().unwrap(), 2000 + SLACK_MS, what);
    assert_still_blocked(&mut unbounded, "the same writer without TCP_USER_TIMEOUT");
    hosts.check_readme(2000 + SLACK_MS, " of the write");
}

#[test]
fn server_notices_a_vanished_client_on_an_accepted_connection() {
    let Some(hosts) = Hosts::new("server_notices_a_vanished_client_on_an_accepted_connection")
    else {
        return;
    };
    let mut shimmed = hosts.serve("reading-server", 7003, Some(&FAST_KEEPALIVE));
    let mut bare = hosts.serve("reading-server", 7004, None);
    let _c1 = hosts.connect("client", 7003, None);
    let _c2 = hosts.connect("client", 7004, None);
    shimmed.line("@ accepted", WAIT).expect("accepted");
    bare.line("@ accepted", WAIT).expect("bare accepted");
    hosts.cut_with_fast_keepalive(Side::Client, "server", [&mut shimmed, &mut bare]);
}
