#![allow(dead_code)] // each test binary uses its own part of this module
//! The compatibility table's tests: a real program run with the library
//! (`KEEPIDLE=45 KEEPINTVL=5 KEEPCNT=3`), its connection observed from outside with
//! `ss -tno` as an operator would, and the result put in the table's words.
//!
//! Included with `#[path]` by the tests that use it, beside `mod common;`.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::net::{Place, Proc};
use crate::common::{Both, Vars, free_port, have, maybe_preloaded, with_and_without};
use crate::servers::version;

pub const KEEPIDLE_S: u64 = 45;
pub const VARS: [(&str, &str); 3] = [("KEEPIDLE", "45"), ("KEEPINTVL", "5"), ("KEEPCNT", "3")];
/// How long a program may take to hold its connection: JVM start-up is the slowest
/// here.
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
pub type Measured = Both<Seen>;

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

/// Connects to a server on loopback `port` that already listens ([`Place::serve`]).
pub fn connect(program: &str, port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|err| panic!("connect to {program} on {port}: {err}"))
}

/// A program's arguments for the port a run uses.
pub type Args<'a> = &'a dyn Fn(u16) -> Vec<String>;

/// The blank-separated words of `line`, as arguments.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Command-line arguments in which `{port}` stands for the port a run uses.
pub fn ported<'a>(args: &'a [&'a str]) -> impl Fn(u16) -> Vec<String> + 'a {
    move |port| {
        args.iter()
            .map(|arg| arg.replace("{port}", &port.to_string()))
            .collect()
    }
}

/// A program of the programs table (docs/compatibility.md), and how it states its
/// version: `name version_args` prints it right after `after`. Its tests run it with
/// the library and without, and hold its row, named by the test (`file::name`), to
/// what they measured.
pub struct Program<'a> {
    name: &'a str,
    version_args: &'a [&'a str],
    after: &'a str,
}

impl<'a> Program<'a> {
    pub fn new(name: &'a str, version_args: &'a [&'a str], after: &'a str) -> Self {
        Program {
            name,
            version_args,
            after,
        }
    }

    /// Whether it is installed; when not, says that `test` is skipped.
    pub fn installed(&self, test: &str) -> bool {
        have(test, self.name)
    }

    /// Runs it as a client of a [`holding_listener`], with the library and without,
    /// and says what its connection got; None (after saying so) when it is not
    /// installed.
    pub fn client(&self, test: &str, args: Args, own_secs: Option<u64>) -> Option<Measured> {
        self.installed(test).then_some(())?;
        with_and_without(&VARS, |vars| {
            let port = holding_listener();
            let _client = Proc::spawn(maybe_preloaded(self.name, vars).args(args(port)));
            Some(measure(
                self.name,
                &format!("( dport = :{port} )"),
                own_secs,
            ))
        })
    }

    /// Runs it as a server on a free loopback port, with the library and without,
    /// connects to it, and says what the server's side of the connection got; None
    /// (after saying so) when it is not installed.
    pub fn server(&self, test: &str, args: Args, own_secs: Option<u64>) -> Option<Measured> {
        self.installed(test).then_some(())?;
        self.served(own_secs, |port, vars| {
            let mut command = maybe_preloaded(self.name, vars);
            Some(Place::Loopback.serve(self.name, command.args(args(port)), port))
        })
    }

    /// [`Program::server`] for a server that `start(port, vars)` starts itself and
    /// returns once it listens; what it returns is held until the run is measured.
    pub fn served<S>(
        &self,
        own_secs: Option<u64>,
        start: impl Fn(u16, Vars) -> Option<S>,
    ) -> Option<Measured> {
        with_and_without(&VARS, |vars| {
            let port = free_port();
            let _server = start(port, vars)?;
            let _conn = connect(self.name, port);
            Some(measure(
                self.name,
                &format!("( sport = :{port} )"),
                own_secs,
            ))
        })
    }

    /// Holds the row of `test` to the version the program states and to the result
    /// and "without the library" cells given.
    pub fn check_cells(&self, test: &str, result: &str, without: &str) {
        let version = version(self.name, self.version_args, self.after);
        crate::readme::check_compatibility(test, &version, result, without);
    }

    /// Holds the row of `test` whose result cell says what the program does by default
    /// and when it is told otherwise: "…; with `how`: …".
    pub fn check_told(
        &self,
        test: &str,
        default: Option<Measured>,
        told: Option<Measured>,
        how: &str,
    ) {
        let (Some(default), Some(told)) = (default, told) else {
            return;
        };
        let result = format!(
            "{}; with `{how}`: {}",
            default.with.with(),
            told.with.with()
        );
        self.check_cells(test, &result, &default.without.without());
    }

    /// Holds the row of `test` to what was measured.
    pub fn check(&self, test: &str, measured: &Measured) {
        self.check_cells(test, &measured.with.with(), &measured.without.without());
    }

    /// The whole test of a client that needs nothing more: run, measure, check.
    pub fn client_row(&self, test: &str, args: &[&str], own_secs: Option<u64>) {
        if let Some(measured) = self.client(test, &ported(args), own_secs) {
            self.check(test, &measured);
        }
    }

    /// The whole test of a server that needs nothing more: run, measure, check.
    pub fn server_row(&self, test: &str, args: &[&str], own_secs: Option<u64>) {
        if let Some(measured) = self.server(test, &ported(args), own_secs) {
            self.check(test, &measured);
        }
    }

    /// The whole test of a server that `start` starts itself: run, measure, check.
    pub fn served_row<S>(&self, test: &str, start: impl Fn(u16, Vars) -> Option<S>) {
        if let Some(measured) = self.served(None, start) {
            self.check(test, &measured);
        }
    }
}
