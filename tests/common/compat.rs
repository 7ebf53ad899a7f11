#![allow(dead_code)] // each test binary uses its own part of this module
//! The compatibility table's tests: a real program run with the library
//! (`KEEPIDLE=45 KEEPINTVL=5 KEEPCNT=3`), its connection observed from outside with
//! `ss -tno` as an operator would, and the result put in the table's words.
//!
//! Included with `#[path]` by the tests that use it, beside `mod common;`.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::net::Proc;
use crate::common::{have, preloaded};
use crate::servers::bare;

pub const KEEPIDLE_S: u64 = 45;
pub const VARS: [(&str, &str); 3] = [("KEEPIDLE", "45"), ("KEEPINTVL", "5"), ("KEEPCNT", "3")];
/// JVM start-up is the slowest here.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// The result cell's words when the library's settings are what the connection has.
pub const APPLIED: &str = "keepalive on, timers applied";

/// The result cell's words when the program's own idle time of `secs` won.
pub fn own(secs: u64) -> String {
    format!("its own keepalive ({secs} s) wins")
}

/// The keepalive timers `ss -tnop` shows for the established connections matching
/// `filter`, in time left to the next probe (`4min59sec`, `44sec`, `920ms`); `None` for
/// a connection without one. Empty until a process holds every one of them: a
/// connection still in a listener's accept queue has only what it inherited, and the
/// server has not yet had its say.
pub fn timers(filter: &str) -> Vec<Option<Duration>> {
    let output = Command::new("ss")
        .args(["-tnopH", "state", "established", filter])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&output.stdout);
    if !text.lines().all(|line| line.contains("users:(")) {
        return Vec::new();
    }
    text.lines()
        .map(|line| {
            let timer = line.split("timer:(keepalive,").nth(1)?.split(',').next()?;
            let mut total = Duration::ZERO;
            let mut rest = timer;
            while !rest.is_empty() {
                let digits = rest.find(|c: char| !c.is_ascii_digit())?;
                let n: u64 = rest[..digits].parse().ok()?;
                rest = &rest[digits..];
                let unit = rest
                    .find(|c: char| c.is_ascii_digit())
                    .unwrap_or(rest.len());
                total += match &rest[..unit] {
                    "ms" => Duration::from_millis(n),
                    "sec" => Duration::from_secs(n),
                    "min" => Duration::from_secs(n * 60),
                    _ => return None,
                };
                rest = &rest[unit..];
            }
            Some(total)
        })
        .collect()
}

/// What a connection's keepalive turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No keepalive timer: SO_KEEPALIVE off.
    Off,
    /// The library's KEEPIDLE.
    Library,
    /// SO_KEEPALIVE on with the kernel's `net.ipv4.tcp_keepalive_time`.
    Kernel,
    /// The program's own idle time, in seconds.
    Own(u64),
    /// Something else: the time to the next probe.
    Other(Duration),
}

impl Seen {
    /// In the words of the result column (a run with the library).
    pub fn with(self) -> String {
        match self {
            Seen::Library => APPLIED.to_string(),
            Seen::Own(secs) => own(secs),
            Seen::Off => "keepalive off".to_string(),
            Seen::Kernel => "keepalive on, the kernel's timers".to_string(),
            Seen::Other(t) => format!("keepalive timer {t:?}"),
        }
    }

    /// In the words of the "without the library" column.
    pub fn without(self) -> String {
        match self {
            Seen::Off => "off".to_string(),
            Seen::Kernel => "on, the kernel's timers".to_string(),
            Seen::Own(secs) => format!("its own ({secs} s)"),
            Seen::Library => "the library's timers".to_string(),
            Seen::Other(t) => format!("keepalive timer {t:?}"),
        }
    }
}

fn kernel_idle() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_time")
        .expect("read tcp_keepalive_time")
        .trim()
        .parse()
        .expect("tcp_keepalive_time")
}

/// Waits for a connection matching `filter` and says what its keepalive is: the
/// library's timers, the program's own idle time `own_secs`, the kernel's, or none.
/// Every matching connection must agree.
pub fn measure(program: &str, filter: &str, own_secs: Option<u64>) -> Seen {
    let deadline = Instant::now() + CONNECT_WAIT;
    let seen = loop {
        let seen = timers(filter);
        if !seen.is_empty() || Instant::now() >= deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !seen.is_empty(),
        "{program}: no established connection for {filter}"
    );
    // A program sets its own options a moment after connect or accept returns (ssh
    // turns SO_KEEPALIVE on once connected): give it that moment, then look again.
    std::thread::sleep(Duration::from_secs(1));
    let seen = timers(filter);
    assert!(!seen.is_empty(), "{program}: connection for {filter} gone");
    // The connection is seconds old: the time to the first probe is a little under
    // the idle time that was set. ss shows whole minutes from two hours up (`119min`).
    let near = |timer: Duration, idle: u64| {
        let slack = if idle >= 7200 { 70 } else { 10 };
        timer <= Duration::from_secs(idle) && timer >= Duration::from_secs(idle - slack)
    };
    let results: Vec<Seen> = seen
        .iter()
        .map(|timer| match (*timer, own_secs) {
            (None, _) => Seen::Off,
            (Some(t), _) if near(t, KEEPIDLE_S) => Seen::Library,
            (Some(t), Some(secs)) if near(t, secs) => Seen::Own(secs),
            (Some(t), _) if near(t, kernel_idle()) => Seen::Kernel,
            (Some(t), _) => Seen::Other(t),
        })
        .collect();
    assert!(
        results.iter().all(|r| r == &results[0]),
        "{program}: connections differ: {results:?}"
    );
    eprintln!("{program}: {:?} ({seen:?})", results[0]);
    results[0]
}

/// What a program's connection got with the library and without it.
pub struct Measured {
    pub with: Seen,
    pub without: Seen,
}

/// A listener on loopback that accepts and holds every connection and never answers,
/// so that a client waits on its open connection.
pub fn holding_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let _held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
    });
    port
}

/// Runs `program args` as a client of a [`holding_listener`], with the library and
/// without, and says what its connection got; None (after saying so) when it is not
/// installed.
pub fn client(
    test: &str,
    program: &str,
    args: impl Fn(u16) -> Vec<String>,
    own_secs: Option<u64>,
) -> Option<Measured> {
    if !have(test, program) {
        return None;
    }
    let run = |mut command: Command| {
        let port = holding_listener();
        let _client = Proc::spawn(command.args(args(port)));
        measure(program, &format!("( dport = :{port} )"), own_secs)
    };
    Some(Measured {
        with: run(preloaded(program, &VARS)),
        without: run(bare(program)),
    })
}

/// Waits until `server` itself listens on loopback `port`. Connecting blindly could
/// reach another process that took the free port meanwhile, or the test's own socket
/// (a connect to a port in the ephemeral range with nobody listening can pick that
/// same port as its source and connect to itself).
fn listening(program: &str, server: &mut Proc, port: u16) {
    let deadline = Instant::now() + CONNECT_WAIT;
    let owner = format!("pid={},", server.pid());
    loop {
        let output = Command::new("ss")
            .args(["-tlnpH", &format!("( sport = :{port} )")])
            .output()
            .expect("run ss");
        if String::from_utf8_lossy(&output.stdout).contains(&owner) {
            return;
        }
        assert!(
            server.is_running() && Instant::now() < deadline,
            "{program} never listened on {port}; stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects to a server on loopback `port`, retrying while it starts.
pub fn connect(program: &str, port: u16) -> TcpStream {
    let deadline = Instant::now() + CONNECT_WAIT;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(conn) => return conn,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => panic!("{program} never listened on {port}: {err}"),
        }
    }
}

/// Runs `program args` as a server on a free loopback port, with the library and
/// without, connects to it, and says what the server's side of the connection got;
/// None (after saying so) when it is not installed.
pub fn server(
    test: &str,
    program: &str,
    args: impl Fn(u16) -> Vec<String>,
    own_secs: Option<u64>,
) -> Option<Measured> {
    if !have(test, program) {
        return None;
    }
    let run = |mut command: Command| {
        let port = crate::common::free_port();
        let mut server = Proc::spawn(command.args(args(port)));
        listening(program, &mut server, port);
        let _conn = connect(program, port);
        measure(program, &format!("( sport = :{port} )"), own_secs)
    };
    Some(Measured {
        with: run(preloaded(program, &VARS)),
        without: run(bare(program)),
    })
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Holds `test`'s row in docs/compatibility.md to what it measured.
pub fn check(test: &str, version: &str, measured: &Measured) {
    crate::readme::check_compatibility(
        test,
        version,
        &measured.with.with(),
        &measured.without.without(),
    );
}
