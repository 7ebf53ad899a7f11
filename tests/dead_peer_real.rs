//! Dead peers of the programs people keep connections with: a real client of a real
//! server on the two test hosts, the server's (or the client's) link cut so that no FIN
//! or RST ever arrives, each run with the library and without it.
//!
//! The cases run side by side, each on test hosts of its own: what dominates is the
//! wait that shows a run without the library still stuck at ten times the bound, and
//! those waits overlap. `DEAD_PEER_CASES=postgresql_client,ssh_client` runs only those.
//! What each case measured is held against the table rows naming it (README.md and
//! docs/compatibility.md).

mod common;
#[path = "common/readme.rs"]
mod readme;
#[path = "common/servers.rs"]
mod servers;

use std::time::{Duration, Instant};

use common::net::{CLIENT_ADDR, Link, Place, Proc, SERVER_ADDR, Side, TempDir};
use common::{Vars, maybe_preloaded};
use servers::{Postgres, Redis, Sshd, wait_until, which};

const FAST: [(&str, &str); 3] = [("KEEPIDLE", "1"), ("KEEPINTVL", "1"), ("KEEPCNT", "2")];
/// KEEPIDLE + KEEPINTVL × KEEPCNT, plus slack for a shared machine and for the
/// program to act on the error.
const BOUND: Duration = Duration::from_secs(1 + 2 + 2);
/// A run without the library must still be waiting this long after the cut.
const STUCK: Duration = Duration::from_secs(10 * 5);

/// What a case measured, in the words its table rows must start with.
struct Outcome {
    with: String,
    without: String,
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// Waits up to `bound` after `cut` for `proc` to exit unsuccessfully; returns the line
/// of its stderr that says why (the one containing `says`).
fn fails_within(proc: &mut Proc, cut: Instant, bound: Duration, what: &str, says: &str) -> String {
    let status = proc
        .wait_exit(bound.saturating_sub(cut.elapsed()))
        .unwrap_or_else(|| panic!("{what}: still running {bound:?} after the cut"));
    let took = cut.elapsed();
    assert!(!status.success(), "{what}: exited successfully");
    let stderr = proc.stderr_when_closed(Duration::from_secs(5));
    let line = stderr
        .lines()
        .find(|line| line.contains(says))
        .unwrap_or_else(|| panic!("{what}: no {says:?} in its stderr:\n{stderr}"))
        .trim()
        .to_string();
    eprintln!("{what}: failed after {took:?} (bound {bound:?}): {line}");
    line
}

/// Sleeps until `STUCK` after `cut`, then asserts `proc` still runs.
fn still_running_at_stuck(proc: &mut Proc, cut: Instant, what: &str) {
    std::thread::sleep(STUCK.saturating_sub(cut.elapsed()));
    assert!(
        proc.is_running(),
        "{what}: ended before {STUCK:?}:\n{}",
        proc.stderr()
    );
}

/// Asserts that `polled` turns false within `bound` of `cut`.
fn gone_within(cut: Instant, bound: Duration, what: &str, mut polled: impl FnMut() -> bool) {
    while polled() {
        assert!(
            cut.elapsed() < bound,
            "{what}: still there {bound:?} after the cut"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{what}: gone after {:?} (bound {bound:?})", cut.elapsed());
}

/// Cuts the server's link once the client's connections to `port` are quiet, then
/// holds the client run with the library to failing within [`BOUND`] and the one
/// without it to still waiting at [`STUCK`]. Returns the line of the first one's stderr
/// that says why it failed (the one containing `says`).
fn server_vanishes(
    link: &Link,
    port: u16,
    program: &str,
    runs: [&mut Proc; 2],
    says: &str,
) -> String {
    let [with, without] = runs;
    link.wait_quiet(Side::Client, &format!("( dport = :{port} )"));
    let cut = Instant::now();
    link.cut(Side::Server);
    let error = fails_within(
        with,
        cut,
        BOUND,
        &format!("{program} with the library"),
        says,
    );
    still_running_at_stuck(without, cut, &format!("{program} without the library"));
    error
}

/// Cuts the client's link once the servers' connections matching `filter` are quiet,
/// then holds the server run with the library to letting its client go within
/// [`BOUND`] and the one without it to still holding the client at [`STUCK`]; `held`
/// counts the clients a server holds.
fn client_vanishes<S>(
    link: &Link,
    filter: &str,
    what: &str,
    servers: [&S; 2],
    held: impl Fn(&S) -> usize,
) {
    let [with, without] = servers;
    link.wait_quiet(Side::Server, filter);
    let cut = Instant::now();
    link.cut(Side::Client);
    gone_within(cut, BOUND, &format!("{what} with the library"), || {
        held(with) > 0
    });
    std::thread::sleep(STUCK.saturating_sub(cut.elapsed()));
    assert_eq!(
        held(without),
        1,
        "{what} without the library let its client go before {STUCK:?}"
    );
}

/// A psql session from `place` to the PostgreSQL server on the server host's `port`,
/// named `name` in `pg_stat_activity`, with `args` after the connection's.
fn psql(place: Place, port: &str, name: &str, vars: Vars, args: &[&str]) -> Proc {
    let mut command = maybe_preloaded("psql", vars);
    command
        .args(["-h", SERVER_ADDR, "-p", port, "-U", "postgres"])
        .args(args)
        .env("PGAPPNAME", name);
    place.spawn(&mut command)
}

/// psql waiting on `SELECT pg_sleep(600)` when the server vanishes. libpq turns
/// SO_KEEPALIVE on itself but leaves the timers at the kernel's defaults.
fn postgresql_client(test: &str) -> Option<Outcome> {
    let link = Link::new(test)?;
    which(test, "psql")?;
    let [host, client] = link.places();
    let server = Postgres::start(test, host, 5432, None)?;
    let sleep = ["-c", "SELECT pg_sleep(600)"];
    let mut with = psql(client, "5432", "with", Some(&FAST), &sleep);
    let mut without = psql(client, "5432", "without", None, &sleep);
    wait_until("both queries running", || {
        server.sql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name IN ('with', 'without') AND state = 'active'",
        ) == "2"
    });
    let error = server_vanishes(&link, 5432, "psql", [&mut with, &mut without], "timed out");
    Some(Outcome {
        with: format!("fails within {} s: `{error}`", secs(BOUND)),
        without: format!("still waiting at {} s", secs(STUCK)),
    })
}

/// psql sending a query to a server that has already vanished: the query is never
/// acknowledged, so retransmission runs and keepalive never starts; only
/// TCP_USER_TIMEOUT bounds the wait.
fn postgresql_query_in_flight(test: &str) -> Option<Outcome> {
    const USER_TIMEOUT: [(&str, &str); 4] =
        [FAST[0], FAST[1], FAST[2], ("TCP_USER_TIMEOUT", "3000")];
    let link = Link::new(test)?;
    which(test, "psql")?;
    let [host, client] = link.places();
    let server = Postgres::start(test, host, 5432, None)?;
    // Each reads its queries from a pipe the test writes to.
    let mut bounded = psql(client, "5432", "bounded", Some(&USER_TIMEOUT), &[]);
    let mut keepalive_only = psql(client, "5432", "keepalive-only", Some(&FAST), &[]);
    let mut without = psql(client, "5432", "without", None, &[]);
    wait_until("three sessions open", || {
        server.sql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name IN ('bounded', 'keepalive-only', 'without')",
        ) == "3"
    });
    link.wait_quiet(Side::Client, "( dport = :5432 )");
    link.cut(Side::Server);
    let sent = Instant::now();
    for session in [&mut bounded, &mut keepalive_only, &mut without] {
        session.tell("SELECT 1;");
    }
    let error = fails_within(
        &mut bounded,
        sent,
        Duration::from_secs(3 + 2),
        "psql with TCP_USER_TIMEOUT=3000",
        "timed out",
    );
    still_running_at_stuck(
        &mut keepalive_only,
        sent,
        "psql with keepalive alone, its query unacknowledged",
    );
    assert!(without.is_running(), "psql without the library ended");
    Some(Outcome {
        with: format!("fails within 5 s of the query: `{error}`"),
        without: format!("still waiting at {} s", secs(STUCK)),
    })
}

/// The PostgreSQL server's backend for a client that vanished while idle. PostgreSQL
/// turns SO_KEEPALIVE on itself and leaves the timers alone while its
/// `tcp_keepalives_*` settings are 0, their default.
fn postgresql_server(test: &str) -> Option<Outcome> {
    let link = Link::new(test)?;
    which(test, "psql")?;
    let [host, client] = link.places();
    let with = Postgres::start(test, host, 5432, Some(&FAST))?;
    let without = Postgres::start(test, host, 5433, None)?;
    // psql reading its script from a pipe that stays open: an idle session.
    let _clients: Vec<Proc> = ["5432", "5433"]
        .map(|port| psql(client, port, "vanishing", None, &[]))
        .into();
    wait_until("both sessions open", || {
        with.backends("vanishing") == 1 && without.backends("vanishing") == 1
    });
    let filter = "( sport = :5432 or sport = :5433 )";
    client_vanishes(&link, filter, "PostgreSQL", [&with, &without], |server| {
        server.backends("vanishing")
    });
    Some(Outcome {
        with: format!(
            "the backend ends within {} s (gone from `pg_stat_activity`)",
            secs(BOUND)
        ),
        without: format!(
            "the backend is still in `pg_stat_activity` at {} s",
            secs(STUCK)
        ),
    })
}

/// redis-cli SUBSCRIBEd to a server that vanishes. redis-cli sets its own keepalive
/// (15 s idle, 5 s interval, 3 probes) right after connecting, over the library's: the
/// program has the last word, with the library and without.
fn redis_cli(test: &str) -> Option<Outcome> {
    const OWN: Duration = Duration::from_secs(15 + 5 * 3);
    let link = Link::new(test)?;
    let [host, client] = link.places();
    let server = Redis::start(test, host, 6379, &[], None)?;
    let subscriber = |vars: Vars| {
        let mut command = maybe_preloaded("redis-cli", vars);
        client.spawn(command.args(["-h", SERVER_ADDR, "-p", "6379", "SUBSCRIBE", "news"]))
    };
    let mut with = subscriber(Some(&FAST));
    let mut without = subscriber(None);
    wait_until("both subscribed", || {
        server.command(&["PUBSUB", "NUMSUB", "news"]).lines().nth(1) == Some("2")
    });
    link.wait_quiet(Side::Client, "( dport = :6379 )");
    let cut = Instant::now();
    link.cut(Side::Server);
    let bound = OWN + Duration::from_secs(5);
    let error = fails_within(
        &mut with,
        cut,
        bound,
        "redis-cli with the library",
        "Error:",
    );
    let with_took = cut.elapsed();
    fails_within(
        &mut without,
        cut,
        bound,
        "redis-cli without the library",
        "Error:",
    );
    // Not the library's 3 s: its timers were overwritten.
    assert!(
        with_took >= Duration::from_secs(15),
        "redis-cli with the library failed after {with_took:?}: the library's timers won"
    );
    let own = format!(
        "fails after 15–{} s: `{error}` (its own keepalive)",
        secs(bound)
    );
    Some(Outcome {
        with: own.clone(),
        without: own,
    })
}

/// A Redis server whose SUBSCRIBEd client vanished, with Redis's own keepalive off
/// (`tcp-keepalive 0`; its default, 300 s, would otherwise win over the library's).
fn redis_server(test: &str) -> Option<Outcome> {
    let link = Link::new(test)?;
    let [host, client] = link.places();
    let own_off = ["--tcp-keepalive", "0"];
    let with = Redis::start(test, host, 6379, &own_off, Some(&FAST))?;
    let without = Redis::start(test, host, 6380, &own_off, None)?;
    let _clients: Vec<Proc> = ["6379", "6380"]
        .into_iter()
        .map(|port| {
            let mut command = maybe_preloaded("redis-cli", None);
            let subscribe = command.args(["-h", SERVER_ADDR, "-p", port, "SUBSCRIBE", "news"]);
            client.spawn(subscribe)
        })
        .collect();
    wait_until("both subscribed", || {
        with.clients_from(CLIENT_ADDR) == 1 && without.clients_from(CLIENT_ADDR) == 1
    });
    let filter = "( sport = :6379 or sport = :6380 )";
    client_vanishes(&link, filter, "Redis", [&with, &without], |server| {
        server.clients_from(CLIENT_ADDR)
    });
    Some(Outcome {
        with: format!(
            "drops the client within {} s (gone from `CLIENT LIST`)",
            secs(BOUND)
        ),
        without: format!("still holds the client at {} s", secs(STUCK)),
    })
}

/// ssh running a long remote command when the server vanishes, ServerAliveInterval
/// off. ssh turns SO_KEEPALIVE on itself (`TCPKeepAlive yes`, the default) and leaves
/// the timers at the kernel's defaults.
fn ssh_client(test: &str) -> Option<Outcome> {
    let link = Link::new(test)?;
    which(test, "ssh")?;
    let [host, client] = link.places();
    let sshd = Sshd::start(test, host, 22, None)?;
    let session = |vars: Vars| {
        let mut command = sshd.client(SERVER_ADDR, 22, vars);
        client.spawn(command.arg("echo started; exec sleep 600"))
    };
    let mut with = session(Some(&FAST));
    let mut without = session(None);
    with.line("started", Duration::from_secs(60))
        .expect("session with the library started");
    without
        .line("started", Duration::from_secs(60))
        .expect("session without the library started");
    let error = server_vanishes(&link, 22, "ssh", [&mut with, &mut without], "client_loop");
    Some(Outcome {
        with: format!("exits within {} s: `{error}`", secs(BOUND)),
        without: format!("still waiting at {} s", secs(STUCK)),
    })
}

/// An MQTT subscriber (mosquitto_sub) whose broker vanishes, MQTT's own keepalive set
/// to its maximum (18 h) as devices on metered links do. mosquitto_sub never exits on
/// a lost connection (it reconnects), so the test watches its connection in `ss`.
fn mqtt_subscriber(test: &str) -> Option<Outcome> {
    let link = Link::new(test)?;
    let broker = which(test, "mosquitto")?;
    which(test, "mosquitto_sub")?;
    let dir = TempDir::new("mosquitto");
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener 1883 {SERVER_ADDR}\nallow_anonymous true\npersistence false\n\
             log_dest stderr\nlog_type all\n"
        ),
    )
    .expect("write mosquitto.conf");
    let mut command = maybe_preloaded(broker, None);
    let [host, client] = link.places();
    let broker = host.serve("mosquitto", command.args(["-c", &config]), 1883);
    let subscriber = |vars: Vars, id: &str| {
        let mut command = maybe_preloaded("mosquitto_sub", vars);
        command.args(["-h", SERVER_ADDR, "-p", "1883", "-t", "news", "-k", "65535"]);
        client.spawn(command.args(["-i", id]))
    };
    let mut with = subscriber(Some(&FAST), "with");
    let without = subscriber(None, "without");
    wait_until("both subscribed", || {
        let log = broker.stderr();
        log.contains("Sending SUBACK to with\n") && log.contains("Sending SUBACK to without\n")
    });
    link.wait_quiet(Side::Client, "( dport = :1883 )");
    let connections = || {
        link.ss(
            Side::Client,
            &["-tnpH", "state", "established", "( dport = :1883 )"],
        )
    };
    let connected = |proc: &Proc| {
        let pid = format!("pid={},", proc.pid());
        connections().iter().any(|line| line.contains(&pid))
    };
    let cut = Instant::now();
    link.cut(Side::Server);
    gone_within(
        cut,
        BOUND,
        "mosquitto_sub's connection with the library",
        || connected(&with),
    );
    std::thread::sleep(STUCK.saturating_sub(cut.elapsed()));
    assert!(
        connected(&without),
        "mosquitto_sub's connection without the library ended before {STUCK:?}"
    );
    Some(Outcome {
        with: format!(
            "its connection ends within {} s; mosquitto_sub {}",
            secs(BOUND),
            if with.is_running() {
                "runs on"
            } else {
                "exits"
            }
        ),
        without: format!("still waiting on the dead connection at {} s", secs(STUCK)),
    })
}

type Case = fn(&str) -> Option<Outcome>;

const CASES: [(&str, Case); 7] = [
    ("postgresql_client", postgresql_client),
    ("postgresql_query_in_flight", postgresql_query_in_flight),
    ("postgresql_server", postgresql_server),
    ("redis_cli", redis_cli),
    ("redis_server", redis_server),
    ("ssh_client", ssh_client),
    ("mqtt_subscriber", mqtt_subscriber),
];

#[test]
fn real_programs_and_vanished_peers() {
    let only = std::env::var("DEAD_PEER_CASES").ok();
    let chosen: Vec<(&str, Case)> = CASES
        .into_iter()
        .filter(|(name, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n == *name))
        })
        .collect();
    let results: Vec<(&str, std::thread::Result<Option<Outcome>>)> = std::thread::scope(|scope| {
        let running: Vec<_> = chosen
            .iter()
            .map(|&(name, case)| {
                let test = format!("dead_peer_real::{name}");
                (name, scope.spawn(move || case(&test)))
            })
            .collect();
        running
            .into_iter()
            .map(|(name, handle)| (name, handle.join()))
            .collect()
    });
    let mut failed = Vec::new();
    for (name, result) in results {
        match result {
            Ok(Some(outcome)) => {
                eprintln!(
                    "{name}: with: {}; without: {}",
                    outcome.with, outcome.without
                );
                let rows = readme::rows_naming(&format!("dead_peer_real::{name}"));
                if rows.is_empty() {
                    failed.push(format!(
                        "{name}: no table row in README.md or docs/*.md names it"
                    ));
                }
                for row in rows {
                    for (columns, measured) in [
                        (
                            &["with the library", "with libkeepalive"][..],
                            &outcome.with,
                        ),
                        (&["without", "today"][..], &outcome.without),
                    ] {
                        let cell = row.cell(columns);
                        if !cell.starts_with(measured.as_str()) {
                            failed.push(format!(
                                "{name}: {} is stale:\n  written:  {cell}\n  measured: {measured}",
                                row.file
                            ));
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(_) => failed.push(format!("{name}: failed (its panic is above)")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
