//! `keepalive status PID`, from outside: a live server process whose sockets were
//! configured by the library, by the program itself, or by nobody. What the command
//! reports is checked against getsockopt(2) inside that process and against `ss -tno`;
//! its JSON is read with Python's json module, which refuses anything malformed.
mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use common::net::{Link, Proc, SERVER_ADDR, Side};
use common::{Keepalive, Run, as_child, child_command, have, keepalive_command, skip};

const WAIT: Duration = Duration::from_secs(20);

/// The library's settings in the configured server.
const LIBRARY: [(&str, &str); 4] = [
    ("KEEPIDLE", "50"),
    ("KEEPINTVL", "11"),
    ("KEEPCNT", "5"),
    ("TCP_USER_TIMEOUT", "20000"),
];

/// What the program sets itself on its `own` connection, after the library.
const OWN: Keepalive = Keepalive {
    keepalive: 1,
    idle: 40,
    interval: 7,
    count: 3,
    user_timeout: 4321,
};

/// The server's command name (/proc/PID/comm), which the command must escape.
const NAME_OF_SERVER: &str = "k\"a\\b\tc\u{1}";

/// Extra connections the server opens, to make reading it take longer.
const EXTRA: &str = "LIBKEEPALIVE_TEST_EXTRA_CONNECTIONS";
/// When set, the server exits this many milliseconds after it is ready instead of
/// waiting for its stdin to close.
const LINGER: &str = "LIBKEEPALIVE_TEST_LINGER_MS";

/// The server's part (a scenario child, the library preloaded): IPv4 and IPv6 listeners
/// and connections to them through the library's `socket()`, one connection whose
/// options the program sets itself, and one made with a raw socket(2) system call that
/// the library never sees. It prints one `@ LABEL` line per descriptor, with what
/// getsockopt reads, then `@ ready`, and keeps them all open until stdin closes.
fn serve() {
    std::fs::write("/proc/self/comm", NAME_OF_SERVER).expect("name the server");
    let l4 = TcpListener::bind("127.0.0.1:0").expect("bind IPv4");
    let l6 = TcpListener::bind("[::1]:0").expect("bind IPv6");
    let to4 = l4.local_addr().expect("l4 address");
    let to6 = l6.local_addr().expect("l6 address");
    let c4 = TcpStream::connect(to4).expect("connect c4");
    let (a4, _) = l4.accept().expect("accept a4");
    let c6 = TcpStream::connect(to6).expect("connect c6");
    let (a6, _) = l6.accept().expect("accept a6");
    let own = TcpStream::connect(to4).expect("connect own");
    set_own_options(own.as_raw_fd());
    let (own_a, _) = l4.accept().expect("accept own");
    let raw = raw_connect(to4);
    let (raw_a, _) = l4.accept().expect("accept raw");

    describe("l4", l4.as_raw_fd(), to4, None);
    describe("l6", l6.as_raw_fd(), to6, None);
    for (label, stream) in [
        ("c4", &c4),
        ("a4", &a4),
        ("c6", &c6),
        ("a6", &a6),
        ("own", &own),
        ("own_a", &own_a),
        ("raw", &raw),
        ("raw_a", &raw_a),
    ] {
        let local = stream.local_addr().expect("local address");
        describe(label, stream.as_raw_fd(), local, stream.peer_addr().ok());
    }
    let extra: usize = std::env::var(EXTRA).map_or(0, |n| n.parse().expect("count"));
    let pairs: Vec<(TcpStream, TcpStream)> = (0..extra)
        .map(|_| {
            let client = TcpStream::connect(to4).expect("connect extra");
            (client, l4.accept().expect("accept extra").0)
        })
        .collect();
    println!("@ ready");
    match std::env::var(LINGER) {
        Ok(ms) => std::thread::sleep(Duration::from_millis(ms.parse().expect("ms"))),
        Err(_) => {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
    }
    drop(pairs);
}

fn set_own_options(fd: RawFd) {
    let set = |level, name, value| common::set_int_option(fd, level, name, value);
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, OWN.keepalive);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, OWN.idle);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, OWN.interval);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, OWN.count);
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, OWN.user_timeout);
}

/// A connection from a socket made with the raw system call, as Go's runtime makes
/// them: the interposed `socket()` never runs.
fn raw_connect(to: SocketAddr) -> TcpStream {
    let SocketAddr::V4(to) = to else {
        panic!("raw_connect takes IPv4")
    };
    // SAFETY: socket(2) with constant arguments returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    let stream = unsafe { TcpStream::from_raw_fd(fd as RawFd) };
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a sockaddr_in passed by address with its size.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&raw const address).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "raw connect: {}", std::io::Error::last_os_error());
    stream
}

fn describe(label: &str, fd: RawFd, local: SocketAddr, peer: Option<SocketAddr>) {
    let k = Keepalive::of(fd);
    common::report(
        label,
        &[
            ("fd", fd.to_string()),
            ("local", local.to_string()),
            (
                "peer",
                peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
            ),
            ("keepalive", k.keepalive.to_string()),
            ("idle", k.idle.to_string()),
            ("intvl", k.interval.to_string()),
            ("cnt", k.count.to_string()),
            ("user_timeout", k.user_timeout.to_string()),
        ],
    );
}

const LABELS: [&str; 10] = [
    "l4", "l6", "c4", "a4", "c6", "a6", "own", "own_a", "raw", "raw_a",
];

/// A running server child; killed and reaped when dropped, whatever happened.
struct Server {
    child: Child,
    /// What it printed up to `@ ready`.
    said: Run,
}

impl Server {
    /// In the child of test `name`, serves and gives None; in the parent, the server
    /// started with `vars`, or None (after saying so) when a program in `needs` is
    /// missing.
    fn of_test(name: &str, vars: &[(&str, &str)], needs: &[&str]) -> Option<Server> {
        if as_child(name, serve) || !needs.iter().all(|program| have(name, program)) {
            return None;
        }
        Some(Server::start(child_command(name, vars)))
    }

    fn start(mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let mut server = Server::of(child);
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read the server's stdout");
            if line == "@ ready" {
                return server;
            }
            server.said.stdout.push_str(&line);
            server.said.stdout.push('\n');
        }
        panic!(
            "the server ended before it was ready:\n{}",
            server.said.stdout
        );
    }

    /// A child that is already running, with nothing said yet.
    fn of(child: Child) -> Server {
        Server {
            child,
            said: Run {
                status_ok: true,
                stdout: String::new(),
                stderr: String::new(),
            },
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the command's JSON with Python's json module, checks that every object has
/// exactly the documented fields with the documented types, and flattens it into
/// `@ LABEL key=value` lines: `@ doc …` for the document, `@ LOCAL>PEER …` per socket.
const FLATTEN: &str = r#"
import json, sys
doc = json.load(sys.stdin)
assert list(doc) == ["pid", "command", "complete", "descriptors_known", "problems", "configured_by", "sockets"], list(doc)
assert isinstance(doc["pid"], int) and isinstance(doc["command"], str)
assert all(isinstance(p, str) for p in doc["problems"])
SOCKET = ["fd", "inode", "family", "state", "listener", "local", "peer", "keepalive",
          "idle_seconds", "interval_seconds", "count", "user_timeout_ms", "timer"]
TIMER = ["kind", "code", "expires_ms", "probes", "retransmits"]
def addr(a):
    if a is None:
        return "-"
    assert list(a) == ["address", "port"], list(a)
    return ("[%s]:%d" if ":" in a["address"] else "%s:%d") % (a["address"], a["port"])
def text(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(int(v))
    return str(v)
print("@ name hex=%s" % doc["command"].encode().hex())
print("@ doc pid=%d complete=%d descriptors_known=%d problems=%d sockets=%d" % (
    doc["pid"], doc["complete"], doc["descriptors_known"], len(doc["problems"]), len(doc["sockets"])))
for s in doc["sockets"]:
    assert list(s) == SOCKET, list(s)
    assert s["family"] in ("ipv4", "ipv6") and isinstance(s["listener"], bool)
    for key in ("fd", "idle_seconds", "interval_seconds", "count", "user_timeout_ms"):
        assert s[key] is None or (isinstance(s[key], int) and not isinstance(s[key], bool)), key
    assert s["keepalive"] is None or isinstance(s["keepalive"], bool)
    t = s["timer"] or {}
    assert not t or list(t) == TIMER, list(t)
    fields = [("fd", s["fd"]), ("state", s["state"]), ("listener", s["listener"]),
              ("family", s["family"]), ("keepalive", s["keepalive"]),
              ("idle", s["idle_seconds"]), ("intvl", s["interval_seconds"]),
              ("cnt", s["count"]), ("user_timeout", s["user_timeout_ms"]),
              ("timer", t.get("kind")), ("timer_ms", t.get("expires_ms")),
              ("probes", t.get("probes"))]
    print("@ %s>%s %s" % (addr(s["local"]), addr(s["peer"]),
                          " ".join("%s=%s" % (k, text(v)) for k, v in fields)))
"#;

/// What `keepalive status PID --json` said, run as `command` gives it (a prefix such
/// as setpriv, or none): the exit code, the flattened document, and its stderr.
struct Status {
    code: Option<i32>,
    doc: Run,
    stderr: String,
}

fn status_json(mut command: Command, pid: i32) -> Status {
    let output = command
        .args(["status", &pid.to_string(), "--json"])
        .output()
        .expect("run keepalive status");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "keepalive status panicked:\n{stderr}"
    );
    let mut python = Command::new("python3")
        .args(["-c", FLATTEN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    std::io::Write::write_all(&mut python.stdin.take().expect("stdin"), &output.stdout)
        .expect("feed python3");
    let flat = Run::of(python.wait_with_output().expect("python3"));
    assert!(
        flat.status_ok,
        "the JSON is not as documented: {}\n{}",
        flat.stderr,
        String::from_utf8_lossy(&output.stdout)
    );
    Status {
        code: output.status.code(),
        doc: flat,
        stderr,
    }
}

/// The label the flattened document gives the socket the server reported as `label`.
fn key(server: &Run, label: &str) -> String {
    let said = server.report(label);
    format!("{}>{}", said["local"], said["peer"])
}

fn port(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address}"))
}

/// Every socket the server holds is in the report, and nothing else; each with its
/// descriptor, state and the exact options getsockopt read inside the process; each
/// established one with the keepalive timer `ss -tno` shows, or none when keepalive is
/// off.
fn check_complete_report(server: &Run, status: &Status, labels: &[&str]) {
    assert_eq!(status.code, Some(0), "stderr: {}", status.stderr);
    assert_eq!(status.stderr, "");
    let doc = status.doc.report("doc");
    assert_eq!(doc["complete"], "1");
    assert_eq!(doc["descriptors_known"], "1");
    assert_eq!(
        doc["sockets"],
        labels.len().to_string(),
        "{}",
        status.doc.stdout
    );
    for &label in labels {
        let said = server.report(label);
        let key = key(server, label);
        let shown = status.doc.report(&key);
        let listener = said["peer"] == "-";
        assert_eq!(shown["fd"], said["fd"], "{label}");
        assert_eq!(
            shown["state"],
            if listener { "LISTEN" } else { "ESTABLISHED" },
            "{label}"
        );
        assert_eq!(
            shown["listener"],
            if listener { "1" } else { "0" },
            "{label}"
        );
        let family = if said["local"].starts_with('[') {
            "ipv6"
        } else {
            "ipv4"
        };
        assert_eq!(shown["family"], family, "{label}");
        assert_eq!(
            status.doc.keepalive(&key),
            server.keepalive(label),
            "{label}: status differs from getsockopt in the process"
        );
        if listener {
            // The kernel runs no keepalive timer on a listener (tcp_set_keepalive).
            assert_eq!(shown["timer"], "null", "{label}");
            continue;
        }
        let filter = format!(
            "( sport = :{} and dport = :{} )",
            port(&said["local"]),
            port(&said["peer"])
        );
        let ss = common::ss_keepalive(&filter);
        assert_eq!(ss.len(), 1, "{label}: ss {filter}: {ss:?}");
        if server.keepalive(label).keepalive == 1 {
            assert_eq!(shown["timer"], "keepalive", "{label}");
            assert_eq!(shown["probes"], "0", "{label}");
            let left = Duration::from_millis(shown["timer_ms"].parse().expect("timer_ms"));
            let idle = Duration::from_secs(server.keepalive(label).idle as u64);
            // The connection is seconds old: its timer is below the idle time, and
            // not far below (generous bounds for a loaded machine).
            assert!(left <= idle, "{label}: {left:?} left of {idle:?}");
            assert!(left + Duration::from_secs(30) > idle, "{label}: {left:?}");
            let seen = ss[0].unwrap_or_else(|| panic!("{label}: ss shows no keepalive timer"));
            // ss truncates to whole seconds and reads a moment later.
            assert!(
                seen <= left + Duration::from_secs(1) && seen + Duration::from_secs(5) >= left,
                "{label}: status says {left:?}, ss says {seen:?}"
            );
        } else {
            assert_eq!(shown["timer"], "null", "{label}");
            assert_eq!(ss[0], None, "{label}: ss shows a keepalive timer");
        }
    }
}

#[test]
fn status_of_a_server_configured_by_the_library() {
    const NAME: &str = "status_of_a_server_configured_by_the_library";
    let Some(server) = Server::of_test(NAME, &LIBRARY, &["python3", "ss"]) else {
        return;
    };
    let said = &server.said;
    // The server is what the test means: the library configured its own sockets, the
    // program overrode one, and the raw one is untouched.
    let library = Keepalive {
        keepalive: 1,
        idle: 50,
        interval: 11,
        count: 5,
        user_timeout: 20000,
    };
    for label in ["l4", "l6", "c4", "a4", "c6", "a6", "own_a", "raw_a"] {
        assert_eq!(said.keepalive(label), library, "{label}");
    }
    assert_eq!(said.keepalive("own"), OWN);
    assert_eq!(said.keepalive("raw"), Keepalive::untouched());

    let status = status_json(keepalive_command(), server.pid());
    check_complete_report(said, &status, &LABELS);
    let hex: String = NAME_OF_SERVER.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(status.doc.report("name")["hex"], hex);

    // The table says the same for people.
    let output = keepalive_command()
        .args(["status", &server.pid().to_string()])
        .output()
        .expect("run keepalive status");
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    let row = |label: &str| -> &str {
        let fd = &said.report(label)["fd"];
        table
            .lines()
            .find(|line| line.split_whitespace().next() == Some(fd))
            .unwrap_or_else(|| panic!("no row for {label} (fd {fd}) in:\n{table}"))
    };
    let cells = |label: &str| row(label).split_whitespace().collect::<Vec<_>>();
    let c4 = cells("c4");
    assert_eq!(
        c4[1..9],
        [
            "ESTABLISHED",
            &said.report("c4")["local"],
            &said.report("c4")["peer"],
            "on",
            "50s",
            "11s",
            "5",
            "20000ms"
        ],
        "{table}"
    );
    assert!(row("c4").contains("keepalive probe in "), "{table}");
    assert!(row("c4").ends_with(", 0 probes sent"), "{table}");
    assert_eq!(
        cells("raw")[4..10],
        ["off", "7200s", "75s", "9", "default", "-"]
    );
    let l6 = cells("l6");
    assert_eq!(l6[1..4], ["LISTEN", &said.report("l6")["local"], "*"]);
    assert_eq!(
        table.lines().next(),
        Some(&*format!(
            "PID {} ({}): 10 TCP sockets",
            server.pid(),
            NAME_OF_SERVER.escape_debug()
        ))
    );
}

#[test]
fn status_of_a_server_the_library_left_alone() {
    const NAME: &str = "status_of_a_server_the_library_left_alone";
    let off = [("KEEPALIVE", "off")];
    let Some(server) = Server::of_test(NAME, &off, &["python3", "ss"]) else {
        return;
    };
    let said = &server.said;
    for label in ["l4", "l6", "c4", "a4", "c6", "a6", "own_a", "raw", "raw_a"] {
        assert_eq!(said.keepalive(label), Keepalive::untouched(), "{label}");
    }
    assert_eq!(said.keepalive("own"), OWN);
    check_complete_report(
        said,
        &status_json(keepalive_command(), server.pid()),
        &LABELS,
    );
}

/// `setpriv ARGS… -- COMMAND`, keeping COMMAND's environment.
fn as_user(setpriv: &[&str], inner: &Command) -> Command {
    let mut command = Command::new("setpriv");
    command.args(setpriv).arg("--").arg(inner.get_program());
    command.args(inner.get_args());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
}

/// A server run as `nobody`, looked at by other unprivileged users: what the kernel
/// lets them read is shown, what it refuses is said with the reason, and the exit
/// status says the report is partial.
#[test]
fn status_says_what_permission_hides() {
    const NAME: &str = "status_says_what_permission_hides";
    if as_child(NAME, serve) {
        return;
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(NAME, "switching users takes root");
        return;
    }
    if !have(NAME, "python3") || !have(NAME, "setpriv") {
        return;
    }
    let target = as_user(
        &["--reuid=nobody", "--regid=nogroup", "--clear-groups"],
        &child_command(NAME, &LIBRARY),
    );
    let server = Server::start(target);
    let said = &server.said;
    let pid = server.pid();
    // A socket of another user (root, this test) that must not be shown as the
    // process's.
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    let other = other.local_addr().expect("address");

    // Another user may not even list the descriptors (/proc/PID/fd needs ptrace read
    // access). The sockets of the process's user in its namespace are shown instead,
    // with their timers, and no options.
    let stranger = status_json(
        as_user(
            &["--reuid=daemon", "--regid=daemon", "--clear-groups"],
            &keepalive_command(),
        ),
        pid,
    );
    assert_eq!(stranger.code, Some(3), "stderr: {}", stranger.stderr);
    assert!(
        stranger.stderr.starts_with(&format!(
            "keepalive: cannot list the descriptors of process {pid} (/proc/{pid}/fd: Permission denied"
        )),
        "{}",
        stranger.stderr
    );
    let doc = stranger.doc.report("doc");
    assert_eq!((&*doc["complete"], &*doc["descriptors_known"]), ("0", "0"));
    assert!(
        !stranger.doc.stdout.contains(&format!("@ {other}>")),
        "root's listener {other} shown as nobody's:\n{}",
        stranger.doc.stdout
    );
    for label in LABELS {
        let shown = stranger.doc.report(&key(said, label));
        assert_eq!(shown["fd"], "null", "{label}");
        assert_eq!(shown["keepalive"], "null", "{label}");
        assert_eq!(shown["idle"], "null", "{label}");
    }
    let c4 = stranger.doc.report(&key(said, "c4"));
    assert_eq!(c4["timer"], "keepalive");
    assert!(c4["timer_ms"].parse::<u64>().expect("timer_ms") <= 50_000);
    assert_eq!(stranger.doc.report(&key(said, "raw"))["timer"], "null");

    // With the process's user as effective (file system) user but another real user,
    // the descriptors can be listed but not duplicated: pidfd_getfd(2) checks ptrace
    // attach permission against the real user (PTRACE_MODE_ATTACH_REALCREDS).
    let half = status_json(
        as_user(
            &[
                "--ruid=daemon",
                "--euid=nobody",
                "--rgid=daemon",
                "--egid=nogroup",
                "--clear-groups",
            ],
            &keepalive_command(),
        ),
        pid,
    );
    assert_eq!(half.code, Some(3), "stderr: {}", half.stderr);
    assert_eq!(
        half.stderr,
        format!(
            "keepalive: cannot read the socket options of process {pid} (pidfd_getfd: \
             Operation not permitted (os error 1)); it takes ptrace attach access to the \
             process: its own real user, or root with CAP_SYS_PTRACE, and no security \
             module refusing it (such as Yama's ptrace_scope)\n"
        )
    );
    let doc = half.doc.report("doc");
    assert_eq!((&*doc["complete"], &*doc["descriptors_known"]), ("0", "1"));
    assert_eq!(doc["sockets"], LABELS.len().to_string());
    for label in LABELS {
        let shown = half.doc.report(&key(said, label));
        assert_eq!(shown["fd"], said.report(label)["fd"], "{label}");
        assert_eq!(shown["keepalive"], "null", "{label}");
    }
    assert_eq!(half.doc.report(&key(said, "a6"))["timer"], "keepalive");

    // The process's own user reads everything, without privileges.
    let owner = status_json(
        as_user(
            &["--reuid=nobody", "--regid=nogroup", "--clear-groups"],
            &keepalive_command(),
        ),
        pid,
    );
    check_complete_report(said, &owner, &LABELS);
    // So does root.
    check_complete_report(said, &status_json(keepalive_command(), pid), &LABELS);
}

fn status_output(pid: &str) -> Output {
    keepalive_command()
        .args(["status", pid])
        .output()
        .expect("run keepalive status")
}

fn assert_refused(output: &Output, code: i32, message: &str) {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    assert_eq!(output.stdout, b"", "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("keepalive: {message}\n")
    );
}

#[test]
fn status_of_no_process() {
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let pid = gone.id();
    // Not yet collected by its parent: a zombie, which has no sockets left.
    let stat = format!("/proc/{pid}/stat");
    while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_refused(
        &status_output(&pid.to_string()),
        1,
        &format!("process {pid} has exited (its parent has not collected it yet)"),
    );
    gone.wait().expect("reap true");
    assert_refused(
        &status_output(&pid.to_string()),
        1,
        &format!("no process with PID {pid}"),
    );
    assert_refused(
        &status_output("0"),
        2,
        "status: PID must be a positive process ID, not 0",
    );
    // A thread is not a process: say which process it belongs to.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid(2) has no preconditions.
        tx.send(unsafe { libc::gettid() }).expect("send tid");
        let _ = stopped.recv();
    });
    let tid = rx.recv().expect("tid");
    let output = status_output(&tid.to_string());
    drop(stop);
    thread.join().expect("thread");
    assert_refused(
        &output,
        2,
        &format!(
            "{tid} is a thread of process {}; give the process ID",
            std::process::id()
        ),
    );
}

/// Processes that exit while the command reads them, many times over, at different
/// moments: every run ends with a full report or one line saying the process is gone,
/// never a panic, a signal or a partial document.
#[test]
fn status_of_a_process_exiting_while_read() {
    const NAME: &str = "status_of_a_process_exiting_while_read";
    if as_child(NAME, serve) {
        return;
    }
    let mut full = 0;
    let mut gone = 0;
    let mut during = 0;
    for round in 0..20u64 {
        let mut command = child_command(NAME, &[]);
        command
            .env(EXTRA, "50")
            .env(LINGER, (round % 10 * 30).to_string())
            .stdout(Stdio::null());
        let server = Server::of(command.spawn().expect("spawn the server"));
        let pid = server.pid();
        let mut ended = false;
        for run in 0..400 {
            let mut command = keepalive_command();
            command.args(["status", &pid.to_string()]);
            if run % 2 == 0 {
                command.arg("--json");
            }
            let output = command.output().expect("run keepalive status");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            match output.status.code() {
                Some(0) => {
                    assert_eq!(stderr, "");
                    let whole = if run % 2 == 0 {
                        stdout.starts_with(&format!("{{\"pid\":{pid},")) && stdout.ends_with("]}\n")
                    } else {
                        stdout.starts_with(&format!("PID {pid} "))
                    };
                    assert!(whole, "{stdout}");
                    full += 1;
                }
                Some(1) => {
                    assert_eq!(stdout, "");
                    let lines: Vec<&str> = stderr.lines().collect();
                    assert_eq!(lines.len(), 1, "{stderr}");
                    if lines[0] == format!("keepalive: process {pid} exited while being read") {
                        during += 1;
                    } else {
                        assert_eq!(
                            lines[0],
                            format!(
                                "keepalive: process {pid} has exited (its parent has not \
                                 collected it yet)"
                            )
                        );
                    }
                    gone += 1;
                    ended = true;
                    break;
                }
                _ => panic!("keepalive status {pid}: {:?}\n{stderr}", output.status),
            }
        }
        assert!(ended, "process {pid} never ended");
    }
    eprintln!("{full} full reports, {gone} gone, {during} of them while being read");
    // One status run reads the whole TCP table of the namespace: tens of milliseconds
    // on a busy host, so the lingers above end before, during and after a run.
    assert!(full + during > 0, "never read a live process");
}

/// The two ends of a connection between two network namespaces, for
/// [`status_counts_probes_to_a_vanished_peer`], chosen by `ROLE`.
fn hold() {
    let port: u16 = std::env::var("PORT").expect("PORT").parse().expect("port");
    let _held = match std::env::var("ROLE").expect("ROLE").as_str() {
        "server" => {
            let listener = TcpListener::bind((SERVER_ADDR, port)).expect("bind");
            println!("@ listening");
            listener.accept().expect("accept").0
        }
        _ => {
            let stream = TcpStream::connect((SERVER_ADDR, port)).expect("connect");
            println!("@ connected");
            stream
        }
    };
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The probe count climbing on a connection whose peer has gone, in a network
/// namespace other than the command's: the timers come from the process's own
/// namespace, and agree with `ss` run inside it.
#[test]
fn status_counts_probes_to_a_vanished_peer() {
    const NAME: &str = "status_counts_probes_to_a_vanished_peer";
    if as_child(NAME, hold) {
        return;
    }
    if !have(NAME, "python3") || !have(NAME, "nsenter") {
        return;
    }
    let Some(link) = Link::new(NAME) else {
        return;
    };
    let port = "7411";
    let start = |side, role, vars: &[(&str, &str)]| {
        let mut command = child_command(NAME, vars);
        command.env("ROLE", role).env("PORT", port);
        link.enter(&mut command, side);
        Proc::spawn(&mut command)
    };
    let mut server = start(Side::Server, "server", &[("KEEPALIVE", "off")]);
    assert!(
        server.line("@ listening", WAIT).is_some(),
        "server never listened"
    );
    let vars = [("KEEPIDLE", "1"), ("KEEPINTVL", "2"), ("KEEPCNT", "30")];
    let mut client = start(Side::Client, "client", &vars);
    assert!(
        client.line("@ connected", WAIT).is_some(),
        "client never connected"
    );
    link.cut(Side::Server);

    let pid = client.pid() as i32;
    let peer = format!("{SERVER_ADDR}:{port}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = status_json(keepalive_command(), pid);
        assert_eq!(status.code, Some(0), "stderr: {}", status.stderr);
        let doc = status.doc.report("doc");
        assert_eq!(doc["sockets"], "1", "{}", status.doc.stdout);
        let line = status
            .doc
            .stdout
            .lines()
            .find(|line| line.contains(&format!(">{peer} ")))
            .unwrap_or_else(|| panic!("no connection to {peer}:\n{}", status.doc.stdout))
            .to_string();
        let field = |key: &str| -> String {
            line.split_whitespace()
                .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key} in {line}"))
                .to_string()
        };
        assert_eq!(
            (
                field("keepalive"),
                field("idle"),
                field("intvl"),
                field("cnt")
            ),
            ("1".into(), "1".into(), "2".into(), "30".into())
        );
        assert_eq!(field("timer"), "keepalive", "{line}");
        let probes: u32 = field("probes").parse().expect("probes");
        let left: u64 = field("timer_ms").parse().expect("timer_ms");
        assert!(left <= 2000, "{line}");
        // ss inside the client's namespace, right after: the same count, or one more
        // if a probe went out in between.
        let ss = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["ss", "-tnoH", "state", "established", "dst", &peer])
            .output()
            .expect("run ss");
        let ss = String::from_utf8_lossy(&ss.stdout);
        let seen: u32 = ss
            .split("timer:(keepalive,")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|t| t.rsplit(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no keepalive timer in ss: {ss}"));
        assert!(
            seen == probes || seen == probes + 1,
            "status says {probes} probes, ss {seen}"
        );
        if probes >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no probes counted: {line}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The command runs in this test's namespace, which has no such connection.
    assert!(common::ss_keepalive(&format!("( dst = {peer} )")).is_empty());
    drop(server);
}

/// A Python server, the library preloaded, whose main thread ends with a bare exit(2)
/// system call while another thread holds its sockets (as pthread_exit(3) in main
/// does). It prints what getsockopt reads for each socket, as [`serve`] does.
const MAIN_THREAD_EXITS: &str = r#"
import ctypes, os, socket, sys, threading
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen()
c = socket.create_connection(l.getsockname())
a, _ = l.accept()
def address(a):
    return "%s:%d" % a[:2]
def say(label, s, peer):
    tcp = lambda name: s.getsockopt(socket.IPPROTO_TCP, name)
    print("@ %s fd=%d local=%s peer=%s keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=%d" % (
        label, s.fileno(), address(s.getsockname()), peer,
        s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), tcp(socket.TCP_KEEPIDLE),
        tcp(socket.TCP_KEEPINTVL), tcp(socket.TCP_KEEPCNT), tcp(socket.TCP_USER_TIMEOUT)))
say("l4", l, "-")
say("c4", c, address(c.getpeername()))
say("a4", a, address(a.getpeername()))
def hold():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=hold).start()
print("@ ready", flush=True)
ctypes.CDLL(None).syscall(int(sys.argv[1]), 0)
"#;

/// /proc/PID/fd and /proc/PID/net follow the main thread and are empty once it has
/// exited; the command reads through a live thread and still sees every socket with
/// its options.
#[test]
fn status_of_a_process_whose_main_thread_exited() {
    const NAME: &str = "status_of_a_process_whose_main_thread_exited";
    if !have(NAME, "python3") || !have(NAME, "ss") {
        return;
    }
    let mut command = common::preloaded("python3", &LIBRARY);
    command.args(["-c", MAIN_THREAD_EXITS, &libc::SYS_exit.to_string()]);
    let server = Server::start(command);
    let pid = server.pid();
    let stat = format!("/proc/{pid}/stat");
    common::wait_until("the main thread's exit", WAIT, || {
        std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z "))
    });
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(Iterator::count)
            .ok(),
        Some(0)
    );
    let said = &server.said;
    assert_eq!(
        said.keepalive("c4").idle,
        50,
        "the library configured the server"
    );
    check_complete_report(
        said,
        &status_json(keepalive_command(), pid),
        &["l4", "c4", "a4"],
    );
}

/// The process is killed after the command has read its last socket option and before
/// it has finished: the command must notice the exit rather than print a report of a
/// process that is gone. strace stops the command at that point (SIGSTOP injected at
/// its last getsockopt(2), five per socket) while the test kills the server.
#[test]
fn status_notices_an_exit_after_the_last_read() {
    const NAME: &str = "status_notices_an_exit_after_the_last_read";
    let Some(mut server) = Server::of_test(NAME, &[], &["strace"]) else {
        return;
    };
    let pid = server.pid();
    let command = keepalive_command();
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{NAME}-{}.strace", std::process::id()));
    let strace = Command::new("strace")
        .args(["-qq", "-e", "trace=getsockopt", "-e"])
        .arg(format!(
            "inject=getsockopt:signal=SIGSTOP:when={}",
            LABELS.len() * 5
        ))
        .arg("-o")
        .arg(&log)
        .arg(command.get_program())
        .args(["status", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strace");
    let mut strace = Server::of(strace);
    let tracer = strace.pid();
    // strace logs the stop once the command is in it.
    common::wait_until("the command's stop at its last getsockopt", WAIT, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("--- stopped by SIGSTOP ---"))
    });
    let _ = std::fs::remove_file(&log);
    let children = std::fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children"))
        .expect("strace's children");
    let stopped: i32 = children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .expect("the traced command");
    let _ = server.child.kill();
    let _ = server.child.wait();
    // SAFETY: kill(2) of the command this test started (through strace), still traced.
    assert_eq!(unsafe { libc::kill(stopped, libc::SIGCONT) }, 0);
    let stdout = read_all(strace.child.stdout.take().expect("stdout"));
    let stderr = read_all(strace.child.stderr.take().expect("stderr"));
    let status = strace.child.wait().expect("wait for strace");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!("keepalive: process {pid} exited while being read\n")
    );
    assert_eq!(status.code(), Some(1));
}

/// A running process that this /proc does not show (mounted with hidepid=2, as on
/// hardened hosts, and read by another user) is not reported as gone: the pidfd says it
/// runs, and the command says why it cannot read it.
#[test]
fn status_of_a_process_hidden_by_proc() {
    const NAME: &str = "status_of_a_process_hidden_by_proc";
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(NAME, "mounting /proc takes root");
        return;
    }
    if !have(NAME, "unshare") || !have(NAME, "setpriv") {
        return;
    }
    let hidden = Server::of(
        Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = hidden.pid();
    // A private mount namespace (unshare's default propagation is private), so the
    // host's /proc is untouched.
    let script = format!(
        "mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid=daemon \
         --regid=daemon --clear-groups '{}' status {pid}",
        keepalive_command().get_program().to_string_lossy()
    );
    let output = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    assert_refused(
        &output,
        1,
        &format!(
            "cannot read /proc/{pid}/status although process {pid} runs (No such file or \
             directory (os error 2)); is /proc mounted with hidepid= or from another PID \
             namespace?"
        ),
    );
}

/// Everything left to read from `pipe`; what could not be read is left out.
fn read_all(mut pipe: impl Read) -> String {
    let mut text = String::new();
    let _ = pipe.read_to_string(&mut text);
    text
}

/// The library speaks at load only where it cannot harm the program (a journal
/// stream), so on a terminal a refused value goes unsaid; `status` says it for any
/// process: what that process's library read from its environment, and refused.
#[test]
fn status_shows_what_the_library_read_and_refused() {
    let mut sleeper = common::preloaded("sleep", &[("KEEPIDLE", "30s"), ("KEEPCNT", "6")])
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("start sleep");
    let pid = sleeper.id().to_string();
    common::wait_until("the library is mapped", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|maps| maps.contains("libkeepalive"))
    });
    let output = keepalive_command()
        .args(["status", &pid])
        .output()
        .expect("run keepalive status");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let table = String::from_utf8_lossy(&output.stdout);
    let by = table
        .lines()
        .find(|line| line.starts_with("configured by: "))
        .unwrap_or_else(|| panic!("no configured-by line in:\n{table}"));
    assert!(
        by.ends_with(
            "(mapped), with KEEPCNT=6; refused KEEPIDLE='30s' (expected whole seconds from 1 to 32767)"
        ),
        "{by}"
    );
}
