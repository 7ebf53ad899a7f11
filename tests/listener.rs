//! The program's listener settings win: a connection accepted on a listener that
//! someone configured (this library at `socket()`, then perhaps the program, or
//! whoever set `SO_KEEPALIVE` on an inherited one, as systemd's `KeepAlive=` does)
//! keeps exactly what it inherited from the kernel.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use common::net::Proc;
use common::set_int_option as set;
use common::{Keepalive, as_child, have, report_keepalive, run_child, scenario};

/// What the environment asks for; the program's own settings differ in every field.
const VARS: [(&str, &str); 4] = [
    ("KEEPIDLE", "600"),
    ("KEEPINTVL", "60"),
    ("KEEPCNT", "9"),
    ("TCP_USER_TIMEOUT", "120000"),
];

const FROM_ENVIRONMENT: Keepalive = Keepalive {
    keepalive: 1,
    idle: 600,
    interval: 60,
    count: 9,
    user_timeout: 120000,
};

/// What the program sets on its listener: 5/2/3 s and 9000 ms.
const PROGRAMS: Keepalive = Keepalive {
    keepalive: 1,
    idle: 5,
    interval: 2,
    count: 3,
    user_timeout: 9000,
};

/// Sets `k` on `fd`, as a program (or systemd) configures its listener.
fn configure(fd: RawFd, k: Keepalive) {
    set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, k.keepalive);
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, k.idle);
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, k.interval);
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, k.count);
    set(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        k.user_timeout,
    );
}

/// Accepts one connection on `listener` with accept(2) or accept4(2) and reports it.
fn accept_and_report(label: &str, listener: RawFd, address: std::net::SocketAddr) {
    for call in ["accept", "accept4"] {
        let _client = TcpStream::connect(address).unwrap();
        // SAFETY: a listening socket and null address pointers, as accept(2) allows.
        let conn = unsafe {
            if call == "accept" {
                libc::accept(listener, std::ptr::null_mut(), std::ptr::null_mut())
            } else {
                libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), 0)
            }
        };
        assert!(conn >= 0, "{call}: {}", std::io::Error::last_os_error());
        // SAFETY: conn is a new descriptor that nothing else owns.
        let conn = unsafe { OwnedFd::from_raw_fd(conn) };
        report_keepalive(&format!("{label}/{call}"), conn.as_raw_fd());
    }
}

/// Reports a connection accepted on `listener` as the library left it ("untouched"),
/// then one accepted after the program set `own` there ("own").
fn untouched_then_own(listener: &TcpListener, own: Keepalive) {
    let address = listener.local_addr().unwrap();
    accept_and_report("untouched", listener.as_raw_fd(), address);
    configure(listener.as_raw_fd(), own);
    accept_and_report("own", listener.as_raw_fd(), address);
}

fn assert_both(run: &common::Run, label: &str, expected: Keepalive) {
    for call in ["accept", "accept4"] {
        assert_eq!(
            run.keepalive(&format!("{label}/{call}")),
            expected,
            "{label}/{call}"
        );
    }
}

/// The program sets 5/2/3 s and 9000 ms on a listener it created (through the
/// library's `socket()`), or turns keepalive off there: every accepted connection
/// carries exactly that, not the environment's 600/60/9 and 120000 ms.
#[test]
fn the_programs_listener_settings_reach_accepted_connections() {
    let body = || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        report_keepalive("untouched/listener", listener.as_raw_fd());
        untouched_then_own(&listener, PROGRAMS);

        set(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            0,
        );
        accept_and_report("off", listener.as_raw_fd(), address);

        // The same listener under a number our socket() never returned (fcntl
        // F_DUPFD): its connections come with SO_KEEPALIVE on, so they are left alone
        // too.
        set(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            1,
        );
        // SAFETY: fcntl(2) duplicating a live descriptor to the lowest free number
        // from 500.
        let dup =
            unsafe { OwnedFd::from_raw_fd(libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD, 500)) };
        accept_and_report("dup", dup.as_raw_fd(), address);
    };
    let Some(run) = scenario(
        "the_programs_listener_settings_reach_accepted_connections",
        &VARS,
        body,
    ) else {
        return;
    };
    assert_eq!(run.keepalive("untouched/listener"), FROM_ENVIRONMENT);
    assert_both(&run, "untouched", FROM_ENVIRONMENT);
    assert_both(&run, "own", PROGRAMS);
    assert_both(&run, "off", PROGRAMS_TIMERS);
    assert_both(&run, "dup", PROGRAMS);
}

/// The program's timers, with keepalive left off for the program to turn on later.
const PROGRAMS_TIMERS: Keepalive = Keepalive {
    keepalive: 0,
    ..PROGRAMS
};

/// The reproduction, in C: a server sets 5/2/3 s and 9000 ms on its listener
/// (or turns keepalive off there) and accepts with accept4; with the library asking
/// for 600/60/9 s and 120000 ms, the connection carries the program's settings.
#[test]
fn a_c_server_keeps_its_listener_settings() {
    let test = "a_c_server_keeps_its_listener_settings";
    let Some(server) = common::c_program("listener_settings", test) else {
        return;
    };
    for (argument, keepalive) in [("on", 1), ("off", 0)] {
        let output = common::preloaded(&server, &VARS)
            .arg(argument)
            .output()
            .unwrap();
        assert!(output.status.success(), "{:?}", output.status);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("keepalive={keepalive} idle=5 intvl=2 cnt=3 user_timeout=9000\n"),
            "listener keepalive {argument}"
        );
    }
}

/// KEEPALIVE=skip: the library sets only the timers, and the program's own timers on
/// its listener still win, though its SO_KEEPALIVE is off.
#[test]
fn skip_keeps_the_programs_listener_settings_too() {
    let body = || {
        untouched_then_own(&TcpListener::bind("127.0.0.1:0").unwrap(), PROGRAMS_TIMERS);
    };
    let mut vars = VARS.to_vec();
    vars.push(("KEEPALIVE", "skip"));
    let Some(run) = scenario("skip_keeps_the_programs_listener_settings_too", &vars, body) else {
        return;
    };
    assert_both(
        &run,
        "untouched",
        Keepalive {
            keepalive: 0,
            ..FROM_ENVIRONMENT
        },
    );
    assert_both(&run, "own", PROGRAMS_TIMERS);
}

const INHERITED: RawFd = 100;

/// A listener the program inherited with keepalive already on (systemd's
/// `KeepAlive=`, or a parent that set it): its settings stay on every connection.
#[test]
fn an_inherited_listener_with_keepalive_on_keeps_its_settings() {
    const NAME: &str = "an_inherited_listener_with_keepalive_on_keeps_its_settings";
    let body = || {
        let address = std::env::var("INHERITED_ADDRESS").unwrap().parse().unwrap();
        accept_and_report("inherited", INHERITED, address);
    };
    if as_child(NAME, body) {
        return;
    }
    let run = run_child(NAME, &VARS, |command| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        configure(listener.as_raw_fd(), PROGRAMS);
        command.env(
            "INHERITED_ADDRESS",
            listener.local_addr().unwrap().to_string(),
        );
        common::pass_fd(command, listener.into(), INHERITED);
    });
    assert_both(&run, "inherited", PROGRAMS);
}

/// nginx with `listen ... so_keepalive=5s:2s:3` and the library asking for 600 s: the
/// accepted connection's timer, seen with ss, is nginx's.
#[test]
fn nginx_so_keepalive_wins() {
    let test = "nginx_so_keepalive_wins";
    if !have(test, "nginx") || !have(test, "ss") {
        return;
    }
    let prefix = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nginx-listener-{}", std::process::id()));
    std::fs::create_dir_all(&prefix).unwrap();
    let port = common::free_port();
    let conf = common::nginx_conf(
        &prefix,
        &format!(
            "keepalive_timeout 60s;\n  \
             server {{ listen 127.0.0.1:{port} so_keepalive=5s:2s:3; location / {{ return 204; }} }}"
        ),
    );
    let mut command = common::preloaded("nginx", &VARS);
    command
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr"]);
    let nginx = Proc::spawn(&mut command);
    let client = common::connect_when_listening("nginx", port);
    let filter = format!("( sport = :{port} )");
    let timer = one_timer(&filter, "nginx's");
    drop(client);
    drop(nginx);
    let _ = std::fs::remove_dir_all(&prefix);
    assert!(timer <= 5.0, "{timer} s: not nginx's 5 s");
}

/// The keepalive timer, in seconds, of the one connection `filter` matches, as ss
/// shows it within 20 s; `whose` names the connection when it has none.
fn one_timer(filter: &str, whose: &str) -> f64 {
    let seen = common::ss_keepalive_seconds(filter, Duration::from_secs(20));
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen[0].unwrap_or_else(|| panic!("{whose} connection has no keepalive timer"))
}

/// Python serving on the listener systemd-socket-activate passes as fd 3, after
/// setting its own keepalive there (5 s): the connections it accepts keep 5 s. The
/// first connection starts the service, and was made before the service set
/// anything, so the one checked is the second.
#[test]
fn an_activated_listener_the_service_configured_keeps_its_settings() {
    let test = "an_activated_listener_the_service_configured_keeps_its_settings";
    if !have(test, "systemd-socket-activate") || !have(test, "python3") || !have(test, "ss") {
        return;
    }
    const SERVICE: &str = "\
import socket, sys, time
s = socket.socket(fileno=3)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
print('configured', flush=True)
first, _ = s.accept()
second, _ = s.accept()
time.sleep(60)
";
    let port = common::free_port();
    let mut command = common::socket_activate(port);
    command
        .arg(format!("--setenv=LD_PRELOAD={}", common::shim().display()))
        .arg("--setenv=KEEPIDLE=600")
        .args(["python3", "-c", SERVICE]);
    let mut activator = Proc::spawn(&mut command);
    let first = common::connect_when_listening("systemd-socket-activate", port);
    assert!(
        activator
            .line("configured", Duration::from_secs(20))
            .is_some(),
        "the service never started"
    );
    let second = common::connect_when_listening("systemd-socket-activate", port);
    let filter = format!(
        "( sport = :{port} and dport = :{} )",
        second.local_addr().unwrap().port()
    );
    let timer = one_timer(&filter, "the service's");
    drop((first, second));
    drop(activator);
    assert!(timer <= 5.0, "{timer} s: not the service's 5 s");
}

/// Every way a listener reaches a program onto a number a socket made through the
/// library used before (the "stale marks"), and the program's own listener
/// moved elsewhere: the rule looks at the connection, not at the number. An untouched
/// listener's connections get the environment's settings; a listener the program set
/// to keepalive off, idle 5 s and a 5000 ms user timeout keeps exactly that.
#[test]
fn a_listener_is_judged_by_itself_however_it_arrived() {
    let test = "a_listener_is_judged_by_itself_however_it_arrived";
    let Some(program) = common::c_program("listener_ways", test) else {
        return;
    };
    let own = "keepalive=0 idle=5 intvl=75 cnt=9 user_timeout=5000";
    // The program's own listener was configured by the library first.
    let moved_own = "keepalive=0 idle=5 intvl=60 cnt=9 user_timeout=5000";
    let environment = "keepalive=1 idle=600 intvl=60 cnt=9 user_timeout=120000";
    let cases = [
        ("dup2", "", environment),
        ("dup", "", environment),
        ("fdupfd", "", environment),
        ("raw", "", environment),
        ("scm_rights", "", environment),
        ("dup2", "own", own),
        ("raw", "own", own),
        ("scm_rights", "own", own),
        ("moved", "own", moved_own),
        ("moved", "", environment),
    ];
    let mut failures = Vec::new();
    for (way, own, expected) in cases {
        let output = common::preloaded(&program, &VARS)
            .args([way, own])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let seen = stdout.split_once(' ').map(|(_, rest)| rest).unwrap_or("");
        let (_, rest) = seen.split_once(' ').unwrap_or(("", seen));
        if !output.status.success() || !seen.starts_with("reused=1") || rest.trim() != expected {
            failures.push(format!(
                "{way} {own}: {:?} {stdout:?}, expected reused=1 {expected}",
                output.status
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

const SKIP_NAME: &str = "skip_gives_timers_to_an_inherited_listener_with_keepalive_on";

/// `KEEPALIVE=skip` is for programs that turn keepalive on themselves with the kernel's
/// timers: an inherited listener with keepalive on and nothing else (systemd's
/// `KeepAlive=yes` alone) gets the environment's timers on its connections, and its
/// `SO_KEEPALIVE` stays as it was.
#[test]
fn skip_gives_timers_to_an_inherited_listener_with_keepalive_on() {
    let body = || {
        let address = std::env::var("INHERITED_ADDRESS").unwrap().parse().unwrap();
        accept_and_report("inherited", INHERITED, address);
    };
    if as_child(SKIP_NAME, body) {
        return;
    }
    let mut vars = VARS.to_vec();
    vars.push(("KEEPALIVE", "skip"));
    let run = run_child(SKIP_NAME, &vars, |command| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            1,
        );
        command.env(
            "INHERITED_ADDRESS",
            listener.local_addr().unwrap().to_string(),
        );
        common::pass_fd(command, listener.into(), INHERITED);
    });
    assert_both(&run, "inherited", FROM_ENVIRONMENT);
}

/// Case 11A of issue 20: an administrator changes `net.ipv4.tcp_keepalive_time` while
/// a program runs, on a listener the library did not make (socket-activated,
/// inherited: here one made with a direct system call, which no preload sees). A
/// connection accepted before the change and one accepted after it are both untouched,
/// so both are configured: the library judges a connection by what it carries, and
/// remembers nothing of the sysctls. It runs in a network namespace of its own, whose
/// sysctls are its own, so the host's are never changed.
#[test]
fn a_sysctl_changed_while_the_program_runs_is_seen() {
    const NAME: &str = "a_sysctl_changed_while_the_program_runs_is_seen";
    let body = || {
        // SAFETY: socket(2) as a direct system call, so that no interposed socket()
        // runs: this listener is one the library did not make.
        let raw = unsafe { libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: the descriptor was just created and nothing else owns it.
        let listener = TcpListener::from(unsafe { OwnedFd::from_raw_fd(raw as RawFd) });
        let address = bind_and_listen(&listener);
        accept_and_report("before", listener.as_raw_fd(), address);
        std::fs::write("/proc/sys/net/ipv4/tcp_keepalive_time", "600\n").unwrap();
        accept_and_report("after", listener.as_raw_fd(), address);
    };
    if as_child(NAME, body) {
        return;
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skip(NAME, "a network namespace of its own needs root");
        return;
    }
    let vars = [("KEEPIDLE", "61")];
    let run = run_child(NAME, &vars, |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: unshare(2), socket(2), ioctl(2) and close(2) are async-signal-safe,
        // as a pre_exec hook requires; the ifreq is a live local.
        unsafe { command.pre_exec(own_network_namespace) };
    });
    for label in [
        "before/accept",
        "before/accept4",
        "after/accept",
        "after/accept4",
    ] {
        let accepted = run.keepalive(label);
        assert_eq!(
            (accepted.keepalive, accepted.idle),
            (1, 61),
            "{label}: an untouched connection is configured, whatever the sysctl is now"
        );
    }
}

/// Binds `listener` to a free port of 127.0.0.1 and listens, returning its address.
fn bind_and_listen(listener: &TcpListener) -> std::net::SocketAddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let fd = listener.as_raw_fd();
    // SAFETY: bind(2) reads a sockaddr_in of the size given; listen(2) takes integers.
    let bound = unsafe {
        libc::bind(
            fd,
            std::ptr::from_ref(&sin).cast(),
            std::mem::size_of_val(&sin) as libc::socklen_t,
        ) == 0
            && libc::listen(fd, 8) == 0
    };
    assert!(bound, "bind/listen: {}", std::io::Error::last_os_error());
    listener.local_addr().unwrap()
}

/// Moves the calling process into a new network namespace, with its loopback up.
fn own_network_namespace() -> std::io::Result<()> {
    // SAFETY: as the caller's: unshare(2), then SIOCSIFFLAGS on a socket of the new
    // namespace with an ifreq naming "lo".
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let up = libc::ioctl(fd, libc::SIOCSIFFLAGS, &request);
        libc::close(fd);
        if up != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
