//! The kernel route: `keepalive run --kernel` gives connections the settings through a
//! cgroup sock_ops program, where preloading cannot reach — a statically linked
//! program, a set-user-ID program run by another user, an accept made by io_uring —
//! side by side with `keepalive run` on the same program; a program's own settings
//! stay; and nothing is left behind: no cgroup, no mount, no loaded program.
//!
//! Every test needs root (CI runs as root with LIBKEEPALIVE_REQUIRE_ALL=1), and they
//! take turns: each looks for what another run could have left behind.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::net::{Link, Proc, SERVER_ADDR, Side, monotonic_ms};
use common::{have, keepalive_command, skip};

/// The settings every test asks for, and what a connection carries with them.
const SETTINGS: [&str; 8] = [
    "--idle",
    "61",
    "--interval",
    "7",
    "--count",
    "3",
    "--user-timeout",
    "9000ms",
];
const CONFIGURED: [(&str, &str); 5] = [
    ("keepalive", "1"),
    ("idle", "61"),
    ("interval", "7"),
    ("count", "3"),
    ("user_timeout", "9000"),
];

/// One test at a time: each counts cgroups and programs before and after.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn root(test: &str) -> bool {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(test, "the kernel route needs root");
    }
    root
}

/// tests/support/kernel_peer.c built with `flags` (`-static`, `-m32`, or none for a
/// program the loader runs). Tests take turns, so each may build it again.
fn peer(test: &str, flags: &[&str]) -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kernel_peer.c");
    let name = format!("kernel_peer{}", flags.concat());
    let output = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let made = match Command::new("cc")
        .args(flags)
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&output)
        .arg(&source)
        .output()
    {
        Ok(made) => made,
        Err(err) => {
            skip(test, &format!("no C compiler (cc: {err})"));
            return None;
        }
    };
    if !made.status.success() {
        let why = String::from_utf8_lossy(&made.stderr);
        skip(
            test,
            &format!("cc {flags:?} cannot build here: {}", why.trim()),
        );
        return None;
    }
    Some(output)
}

/// The `@ LABEL key=value...` lines a peer printed, by label.
fn reports(stdout: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("@ "))
        .filter_map(|line| {
            let (label, rest) = line.split_once(' ')?;
            let fields = rest
                .split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some((label.to_string(), fields))
        })
        .collect()
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What an untouched socket reports in this network namespace.
fn untouched() -> BTreeMap<String, String> {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/tcp_keepalive_{name}"))
            .expect("read a keepalive sysctl")
            .trim()
            .to_string()
    };
    let (idle, interval, count) = (sysctl("time"), sysctl("intvl"), sysctl("probes"));
    fields(&[
        ("keepalive", "0"),
        ("idle", &idle),
        ("interval", &interval),
        ("count", &count),
        ("user_timeout", "0"),
    ])
}

/// `keepalive run [--kernel] SETTINGS -- PROGRAM ARGS`, with what it printed.
fn run(kernel: bool, program: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut command = keepalive_command();
    command.arg("run");
    if kernel {
        command.arg("--kernel");
    }
    command.args(SETTINGS).arg("--");
    for arg in program {
        command.arg(arg);
    }
    command
        .stdin(Stdio::null())
        .output()
        .expect("run keepalive")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the kernel route could leave behind: `keepalive-run.*` cgroups anywhere in
/// the mounted cgroup2 hierarchy, cgroup2 mounts and mount points of the command, and
/// loaded programs named keepalive.
#[derive(Debug, PartialEq, Eq)]
struct Traces {
    cgroups: Vec<PathBuf>,
    mounts: Vec<String>,
    mount_points: Vec<String>,
    programs: String,
}

fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        (fs.starts_with("cgroup2 ") && fields.get(3) == Some(&"/"))
            .then(|| PathBuf::from(fields[4]))
    })
}

fn find_cgroups(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.map_while(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("keepalive-run.")
            {
                found.push(entry.path());
            }
            find_cgroups(&entry.path(), found);
        }
    }
}

fn traces(test: &str) -> Option<Traces> {
    let Some(hierarchy) = cgroup2_mount() else {
        skip(test, "no cgroup2 mounted to look for leftover cgroups in");
        return None;
    };
    if !have(test, "bpftool") {
        return None;
    }
    let mut cgroups = Vec::new();
    find_cgroups(&hierarchy, &mut cgroups);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = mountinfo
        .lines()
        .filter(|line| line.contains("keepalive-cgroup2"))
        .map(str::to_string)
        .collect();
    let mount_points = std::fs::read_dir("/run")
        .unwrap()
        .map_while(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("keepalive-cgroup2"))
        .collect();
    Some(Traces {
        cgroups,
        mounts,
        mount_points,
        programs: loaded_programs(),
    })
}

/// Waits, at most 20 s, until `done` says so: for what systemd or the kernel finishes
/// asynchronously. The caller asserts afterwards.
fn eventually(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `test` can look for what runs leave behind here (it says so by name when
/// not), and nothing is there yet: what an earlier test or run left would be blamed on
/// this one.
fn starts_clean(test: &str) -> bool {
    let Some(before) = traces(test) else {
        return false;
    };
    assert_clean(&before, "earlier runs");
    true
}

/// Asserts that `traces` found nothing.
fn assert_clean(traces: &Traces, after: &str) {
    assert_eq!(
        traces,
        &Traces {
            cgroups: Vec::new(),
            mounts: Vec::new(),
            mount_points: Vec::new(),
            programs: String::new(),
        },
        "left behind after {after}"
    );
}

/// A static client and server in one program: `keepalive run` cannot reach it (no
/// loader) and says so; `run --kernel` gives both the connected and the accepted
/// connection every setting, over IPv4 and IPv6.
#[test]
fn a_static_program_is_reached_only_by_the_kernel() {
    let test = "a_static_program_is_reached_only_by_the_kernel";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    if !starts_clean(test) {
        return;
    }

    let preloaded = run(false, &[&peer, &"pair"]);
    assert!(preloaded.status.success(), "{}", text(&preloaded.stderr));
    assert!(
        text(&preloaded.stderr).contains("preloading cannot reach"),
        "{}",
        text(&preloaded.stderr)
    );
    let seen = reports(&text(&preloaded.stdout));
    assert_eq!(seen["client"], untouched(), "run, client");
    assert_eq!(seen["accepted"], untouched(), "run, accepted");

    let kernel = run(true, &[&peer, &"pair"]);
    assert!(kernel.status.success(), "{}", text(&kernel.stderr));
    assert_eq!(text(&kernel.stderr), "", "run --kernel warns of nothing");
    let seen = reports(&text(&kernel.stdout));
    assert_eq!(seen["client"], fields(&CONFIGURED), "run --kernel, client");
    assert_eq!(
        seen["accepted"],
        fields(&CONFIGURED),
        "run --kernel, accepted"
    );
    assert_clean(&traces(test).unwrap(), "run --kernel");
}

/// An accept made by io_uring (IORING_OP_ACCEPT) never passes through accept(2) in
/// libc; the kernel route sees the connection all the same.
#[test]
fn an_io_uring_accept_is_reached_by_the_kernel() {
    let test = "an_io_uring_accept_is_reached_by_the_kernel";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    let preloaded = run(false, &[&peer, &"uring"]);
    assert!(preloaded.status.success(), "{}", text(&preloaded.stderr));
    assert_eq!(reports(&text(&preloaded.stdout))["accepted"], untouched());
    let kernel = run(true, &[&peer, &"uring"]);
    assert!(kernel.status.success(), "{}", text(&kernel.stderr));
    let seen = reports(&text(&kernel.stdout));
    assert_eq!(seen["accepted"], fields(&CONFIGURED), "io_uring accept");
    assert_eq!(seen["client"], fields(&CONFIGURED), "raw socket(2) client");
}

/// The rule both routes keep, option by option: what a program sets on a socket
/// itself stays, and every option it left alone gets the setting — for a client set up
/// before `connect` and for a connection accepted on a listener set up before
/// `listen`, for each way of setting things up, an explicit `SO_KEEPALIVE=0` and a
/// lone `TCP_USER_TIMEOUT` included. The library runs the dynamically linked peer, the
/// kernel the static one; both must give exactly the expected table.
#[test]
fn both_routes_keep_what_the_program_set_option_by_option() {
    let test = "both_routes_keep_what_the_program_set_option_by_option";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let (Some(dynamic), Some(fixed)) = (peer(test, &[]), peer(test, &["-static"])) else {
        return;
    };
    let configured = fields(&CONFIGURED);
    let with = |changes: &[(&str, &str)]| {
        let mut expected = configured.clone();
        for (key, value) in changes {
            expected.insert(key.to_string(), value.to_string());
        }
        expected
    };
    let ways: [(&str, BTreeMap<String, String>); 5] = [
        ("none", configured.clone()),
        ("off", with(&[("keepalive", "0")])),
        ("idle", with(&[("idle", "333")])),
        ("user_timeout", with(&[("user_timeout", "5000")])),
        ("on_idle", with(&[("idle", "333")])),
    ];
    for (route, kernel, peer) in [
        ("the library", false, &dynamic),
        ("the kernel", true, &fixed),
    ] {
        let output = run(kernel, &[peer, &"rule"]);
        assert!(output.status.success(), "{route}: {}", text(&output.stderr));
        let seen = reports(&text(&output.stdout));
        for (way, expected) in &ways {
            for side in ["client", "accepted"] {
                let label = format!("{side}-{way}");
                assert_eq!(seen.get(&label), Some(expected), "{route}, {label}");
            }
        }
    }
}

/// Runs in different pid namespaces, where each command may be pid 1, at the same time
/// as runs on the host: every one starts its program. Names derived from a pid made
/// two pid-1 commands collide, and a sweep could remove a starting run's cgroup.
#[test]
fn runs_in_other_pid_namespaces_never_collide() {
    let test = "runs_in_other_pid_namespaces_never_collide";
    let _turn = turn();
    if !root(test) || !have(test, "unshare") {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let isolated: Vec<_> = (0..2)
        .map(|_| {
            let mut command = Command::new("unshare");
            command
                .args(["--pid", "--fork", "--"])
                .arg(common::keepalive())
                .args(["run", "--kernel", "--idle", "61", "--", "sh", "-c"])
                .arg("grep '^0::' /proc/self/cgroup; sleep 2")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command.spawn().expect("spawn unshare")
        })
        .collect();
    for round in 0..20 {
        let output = run(true, &[&"true"]);
        assert!(
            output.status.success(),
            "host run {round}: {}",
            text(&output.stderr)
        );
    }
    let mut cgroups = Vec::new();
    for child in isolated {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        cgroups.push(text(&output.stdout));
    }
    assert!(
        cgroups.iter().all(|c| c.contains("/keepalive-run.")),
        "{cgroups:?}"
    );
    assert_ne!(cgroups[0], cgroups[1], "two runs shared a cgroup");
    assert_clean(&traces(test).unwrap(), "runs in other pid namespaces");
}

/// The marking program sees every setsockopt(2) of the cgroup and must change none:
/// a matrix of calls (the five options and others, on TCP over IPv4 and IPv6, UDP and
/// AF_UNIX, lengths from 0 to 70 000 bytes, past a page) returns the same value and
/// errno, and reads back the same, under `run --kernel` as without it.
#[test]
fn the_marking_program_changes_no_setsockopt_result() {
    let test = "the_marking_program_changes_no_setsockopt_result";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    let plain = Command::new(&peer).arg("setsockopts").output().unwrap();
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let kernel = run(true, &[&peer, &"setsockopts"]);
    assert!(kernel.status.success(), "{}", text(&kernel.stderr));
    let (plain, kernel) = (text(&plain.stdout), text(&kernel.stdout));
    let calls = plain
        .lines()
        .filter(|line| line.starts_with("@ opt "))
        .count();
    assert_eq!(calls, 4 * 10 * 7, "{plain}");
    // Both outcomes occur, so the comparison covers successes and refusals alike.
    assert!(
        plain.contains(" rc=0 ") && plain.contains(" rc=-1 "),
        "{plain}"
    );
    for (without, with) in plain.lines().zip(kernel.lines()) {
        assert_eq!(with, without, "under run --kernel");
    }
    assert_eq!(kernel.lines().count(), plain.lines().count());
}

/// A program that enters a network namespace of its own, whose keepalive sysctls
/// differ from those where the command runs, gets the settings all the same: the
/// kernel route judges a socket by what the program set on it, not by comparing its
/// timers with any namespace's sysctls.
#[test]
fn a_program_in_a_network_namespace_of_its_own_is_reached() {
    let test = "a_program_in_a_network_namespace_of_its_own_is_reached";
    let _turn = turn();
    if !root(test) || !have(test, "unshare") || !have(test, "ip") {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    let here = untouched();
    assert_ne!(
        here["idle"], "600",
        "this namespace must differ from the program's"
    );
    let script = format!(
        "ip link set lo up && echo 600 > /proc/sys/net/ipv4/tcp_keepalive_time && exec {} pair",
        peer.display()
    );
    let output = run(true, &[&"unshare", &"-n", &"sh", &"-c", &script]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let seen = reports(&text(&output.stdout));
    assert_eq!(seen["client"], fields(&CONFIGURED), "client");
    assert_eq!(seen["accepted"], fields(&CONFIGURED), "accepted");
}

/// A set-user-ID copy of the (dynamically linked) peer, run by nobody through
/// setpriv: the loader ignores LD_PRELOAD in secure execution, so `keepalive run`
/// does not reach it, and `run --kernel` does.
#[test]
fn a_setuid_program_run_by_another_user_is_reached_by_the_kernel() {
    let test = "a_setuid_program_run_by_another_user_is_reached_by_the_kernel";
    let _turn = turn();
    if !root(test) || !have(test, "setpriv") {
        return;
    }
    let Some(built) = peer(test, &[]) else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = common::net::TempDir::new("kernel-setuid");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let setuid = dir.path().join("peer");
    std::fs::copy(&built, &setuid).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let nobody: [&dyn AsRef<std::ffi::OsStr>; 6] = [
        &"setpriv",
        &"--reuid=65534",
        &"--regid=65534",
        &"--clear-groups",
        &setuid,
        &"pair",
    ];
    let preloaded = run(false, &nobody);
    assert!(preloaded.status.success(), "{}", text(&preloaded.stderr));
    let seen = reports(&text(&preloaded.stdout));
    assert_eq!(seen["client"], untouched(), "run, setuid client");
    let kernel = run(true, &nobody);
    assert!(kernel.status.success(), "{}", text(&kernel.stderr));
    let seen = reports(&text(&kernel.stdout));
    assert_eq!(seen["client"], fields(&CONFIGURED), "run --kernel, client");
    assert_eq!(
        seen["accepted"],
        fields(&CONFIGURED),
        "run --kernel, accepted"
    );
}

/// The program's exit status and the signal that killed it are the command's; a
/// signal sent to the command reaches the program; a child that outlives the program
/// is moved out and the cgroup still goes.
#[test]
fn status_and_signals_pass_through_and_nothing_stays() {
    let test = "status_and_signals_pass_through_and_nothing_stays";
    let _turn = turn();
    if !root(test) {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let exited = run(true, &[&"sh", &"-c", &"exit 7"]);
    assert_eq!(exited.status.code(), Some(7), "{}", text(&exited.stderr));
    let killed = run(true, &[&"sh", &"-c", &"kill -USR1 $$"]);
    assert_eq!(killed.status.signal(), Some(libc::SIGUSR1), "{killed:?}");

    let survivor = run(true, &[&"sh", &"-c", &"sleep 30 >/dev/null 2>&1 & echo $!"]);
    assert!(survivor.status.success(), "{}", text(&survivor.stderr));
    let pid = text(&survivor.stdout).trim().to_string();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        !cgroup.contains("keepalive-run."),
        "the survivor stays in the program's cgroup: {cgroup}"
    );
    let _ = Command::new("kill").arg(&pid).status();

    let mut waiting = keepalive_command();
    waiting
        .args(["run", "--kernel", "--idle", "61", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut waiting = Proc::spawn(&mut waiting);
    // The command has started the program once its cgroup holds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while traces(test).unwrap().cgroups.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the command's own pid.
    unsafe { libc::kill(waiting.pid() as i32, libc::SIGTERM) };
    let status = waiting
        .wait_exit(Duration::from_secs(20))
        .expect("SIGTERM ends the program and the command");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{}", waiting.stderr());
    assert_clean(&traces(test).unwrap(), "signals and survivors");
}

/// Refusals are one line, with the exit status keepalive(1) gives, and leave nothing:
/// a program that is not there (127), a bad value (2), no privileges (1).
#[test]
fn refusals_leave_nothing_behind() {
    let test = "refusals_leave_nothing_behind";
    let _turn = turn();
    if !root(test) || !have(test, "setpriv") {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let missing = run(true, &[&"/nonexistent/program"]);
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    let bad = keepalive_command()
        .args(["run", "--kernel", "--idle", "0", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let unprivileged = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::keepalive())
        .args(["run", "--kernel", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(unprivileged.status.code(), Some(1), "{unprivileged:?}");
    let line = text(&unprivileged.stderr);
    assert!(
        line.starts_with("keepalive: run --kernel: needs root") && line.lines().count() == 1,
        "{line}"
    );
    assert_clean(&traces(test).unwrap(), "refusals");

    // kill -9 of the command leaves its empty cgroup (and nothing attached); the next
    // run removes it.
    let mut killed = keepalive_command();
    killed
        .args(["run", "--kernel", "--", "sleep", "30"])
        .stdout(Stdio::null());
    let killed = Proc::spawn(&mut killed);
    eventually(|| !traces(test).unwrap().cgroups.is_empty());
    drop(killed);
    // The kernel frees a BPF link from a work queue once its last descriptor closed.
    eventually(|| traces(test).unwrap().programs.is_empty());
    let after_kill = traces(test).unwrap();
    assert_eq!(after_kill.cgroups.len(), 1, "{after_kill:?}");
    assert_eq!(after_kill.programs, "", "detached with the command");
    let next = run(true, &[&"true"]);
    assert!(next.status.success(), "{next:?}");
    assert_clean(&traces(test).unwrap(), "the run after a kill -9");
}

/// With no cgroup2 mounted (this machine's cgroup v1 layout, in a mount namespace of
/// its own with the unified mount taken away), the command makes a mount of its own
/// attached nowhere (fsmount): the program is reached, and no mount or mount point
/// appears.
#[test]
fn without_a_cgroup2_mount_one_is_made_attached_nowhere() {
    let test = "without_a_cgroup2_mount_one_is_made_attached_nowhere";
    let _turn = turn();
    if !root(test) || !have(test, "unshare") {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    if !starts_clean(test) {
        return;
    }
    let script = format!(
        "grep ' - cgroup2 ' /proc/self/mountinfo | cut -d' ' -f5 | xargs -r -n1 umount; \
         {} run --kernel {} -- {} pair && grep -c cgroup2 /proc/self/mountinfo",
        common::keepalive().display(),
        SETTINGS.join(" "),
        peer.display()
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(
        stdout.lines().last(),
        Some("0"),
        "a cgroup2 mount stays: {output:?}"
    );
    let seen = reports(&stdout);
    assert_eq!(seen["client"], fields(&CONFIGURED), "{output:?}");
    assert_clean(&traces(test).unwrap(), "a run that mounted cgroup2");
}

/// The dead-peer test of tests/dead_peer.rs with a static client under `run
/// --kernel`: once the server's link is cut, its blocked read fails with ETIMEDOUT
/// within idle + interval × count + 1.5 s, while the same client under `keepalive
/// run` (which cannot reach it) stays blocked.
#[test]
fn a_static_client_notices_a_vanished_server() {
    let test = "a_static_client_notices_a_vanished_server";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    let Some(link) = Link::new(test) else {
        return;
    };
    const WAIT: Duration = Duration::from_secs(20);
    const BOUND_MS: u64 = 1000 + 1000 * 2 + 1500;
    let mut server = Command::new(&peer);
    server.args(["hold", "7101"]);
    link.enter(&mut server, Side::Server);
    let mut server = Proc::spawn(&mut server);
    server.line("@ listening", WAIT).expect("server listening");
    let client = |kernel: bool| {
        let mut command = keepalive_command();
        command.arg("run");
        if kernel {
            command.arg("--kernel");
        }
        command
            .args(["--idle", "1", "--interval", "1", "--count", "2", "--"])
            .arg(&peer)
            .args(["client", SERVER_ADDR, "7101"]);
        link.enter(&mut command, Side::Client);
        Proc::spawn(&mut command)
    };
    let mut kernel = client(true);
    let mut preloaded = client(false);
    let connected = kernel.line("@ connected", WAIT).expect("client connected");
    assert!(
        connected.contains("keepalive=1 idle=1 interval=1 count=2"),
        "{connected}"
    );
    preloaded
        .line("@ connected", WAIT)
        .expect("client connected");

    let cut = monotonic_ms();
    link.cut(Side::Server);
    let line = kernel
        .line("@ result", Duration::from_millis(BOUND_MS + 5000))
        .expect("the client under run --kernel noticed the cut");
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .to_string()
    };
    assert_eq!(field("errno"), libc::ETIMEDOUT.to_string(), "{line}");
    let took = field("at_ms").parse::<u64>().unwrap() - cut;
    assert!(
        took <= BOUND_MS,
        "noticed after {took} ms, bound {BOUND_MS} ms"
    );
    eprintln!("run --kernel: ETIMEDOUT after {took} ms (bound {BOUND_MS} ms)");
    assert_eq!(kernel.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert_eq!(
        preloaded.line("@ result", Duration::ZERO),
        None,
        "run returned"
    );
    assert!(preloaded.is_running(), "the client under run exited");
}

/// `check --kernel` says of a program preloading cannot reach that the kernel route
/// can, here, and exits 0; without privileges it says why not and exits 1. `status`
/// names the mechanism: the sock_ops program on the cgroup of a program under `run
/// --kernel`, the library mapped into one under `run`.
#[test]
fn check_and_status_know_the_kernel_route() {
    let test = "check_and_status_know_the_kernel_route";
    let _turn = turn();
    if !root(test) || !have(test, "setpriv") {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    let check = keepalive_command()
        .args(["check", "--kernel"])
        .arg(&peer)
        .output()
        .unwrap();
    let lines = text(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert!(lines.starts_with("not reachable: "), "{lines}");
    assert!(lines.contains("\nkernel route: reachable: "), "{lines}");
    let unprivileged = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::keepalive())
        .args(["check", "--kernel"])
        .arg(&peer)
        .output()
        .unwrap();
    assert_eq!(unprivileged.status.code(), Some(1), "{unprivileged:?}");
    assert!(
        text(&unprivileged.stdout).contains("\nkernel route: not available here: needs root"),
        "{unprivileged:?}"
    );

    for (kernel, expected) in [
        (true, "sock_ops program keepalive (id "),
        (false, "libkeepalive.so"),
    ] {
        let mut command = keepalive_command();
        command.arg("run");
        if kernel {
            command.arg("--kernel");
        }
        command
            .args([
                "--idle",
                "61",
                "--",
                "sh",
                "-c",
                "echo ready; exec sleep 30",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut running = Proc::spawn(&mut command);
        running
            .line("ready", Duration::from_secs(20))
            .expect("sh started");
        // The shell is the command itself under `run` (it execs in place), and the
        // command's only child under `run --kernel`.
        let pid = if kernel {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", running.pid()))
                    .unwrap();
            children.split_whitespace().next().unwrap().to_string()
        } else {
            running.pid().to_string()
        };
        let status = keepalive_command().args(["status", &pid]).output().unwrap();
        // SAFETY: kill(2) on the command's own pid: SIGTERM ends it and its program
        // as the user's would, where dropping `running` would SIGKILL them.
        unsafe { libc::kill(running.pid() as i32, libc::SIGTERM) };
        running
            .wait_exit(Duration::from_secs(20))
            .expect("SIGTERM ends the run");
        let table = text(&status.stdout);
        let by = table.lines().nth(1).unwrap_or_default();
        assert!(
            by.starts_with("configured by: ") && by.contains(expected),
            "{table}"
        );
        assert_eq!(by.contains("sock_ops"), kernel, "{table}");
    }
}

/// `enable --kernel` in a real systemd (nspawn): a unit whose ExecStart is a static
/// server gets the settings on the connections it accepts — checked by the command's
/// own verification after `--now` and with `ss` from outside — again after a restart,
/// and not any more after `disable --now`.
#[test]
fn enable_kernel_reaches_a_static_service_across_restart_and_disable() {
    let test = "enable_kernel_reaches_a_static_service_across_restart_and_disable";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some((container, peer, keepalive)) = systemd_with_bpf(test) else {
        return;
    };
    container.write(
        "/etc/systemd/system/static.service",
        &format!("[Service]\nExecStart={peer} hold 7301\n"),
    );
    container.start(&["static.service"]);
    // One connection to the service, held by a client outside its cgroup; the
    // service's side of it, as ss shows it inside the container. A started service
    // (Type=simple) may not listen yet.
    let service_side = || {
        let listening = || {
            !container
                .run_ok(&["ss", "-Hltn", "( sport = :7301 )"])
                .is_empty()
        };
        eventually(listening);
        let mut client = Proc::spawn(&mut container.enter(&[&peer, "client", "127.0.0.1", "7301"]));
        client
            .line("@ connected", Duration::from_secs(20))
            .expect("client connected");
        let timers = container.ss_keepalive("( sport = :7301 )");
        drop(client);
        timers
    };
    assert_eq!(service_side(), [None], "before enable --kernel");

    let enabled = container.run(&[
        &keepalive,
        "enable",
        "--kernel",
        "--idle",
        "61",
        "--interval",
        "7",
        "--count",
        "3",
        "--now",
        "static",
    ]);
    let said = format!("{}{}", text(&enabled.stdout), text(&enabled.stderr));
    assert!(
        enabled.status.success(),
        "{said}{}",
        container.diagnose("static.service")
    );
    assert!(
        said.contains("a connection in its cgroup carries SO_KEEPALIVE=1 TCP_KEEPIDLE=61 TCP_KEEPINTVL=7 TCP_KEEPCNT=3"),
        "{said}"
    );
    let drop_in = container.read("/etc/systemd/system/static.service.d/zz-keepalive.conf");
    assert!(
        drop_in.contains(&format!(
            "ExecStartPre=+-{keepalive} kernel-attach --idle 61 --interval 7 --count 3\n"
        )),
        "{drop_in}"
    );
    assert!(!drop_in.contains("LD_PRELOAD"), "{drop_in}");
    let configured = |what: &str| {
        let timers = service_side();
        assert!(
            matches!(timers.as_slice(), [Some(left)] if *left <= Duration::from_secs(61)),
            "{what}: {timers:?}"
        );
    };
    configured("after enable --kernel --now");
    container.run_ok(&["systemctl", "restart", "static.service"]);
    configured("after a restart");

    let disabled = container.run(&[&keepalive, "disable", "--now", "static"]);
    assert!(disabled.status.success(), "{disabled:?}");
    assert_eq!(service_side(), [None], "after disable --now");
    let pid = container
        .main_pid("static.service")
        .expect("static.service runs");
    let status = container.run_ok(&[&keepalive, "status", &pid.to_string()]);
    assert_eq!(
        status.lines().nth(1),
        Some("configured by: neither the library nor a keepalive sock_ops program"),
        "{status}"
    );
}

/// A service for `attach --unit`: a listener it configured itself (TCP_KEEPIDLE 333,
/// keepalive off) on 7571 and an untouched one on 7572, each connection it accepts
/// held; on SIGUSR1 it connects to 7572, on SIGUSR2 to 7571 with SO_KEEPALIVE=0 set
/// first: the client connections it makes after `attach`, from 127.0.0.2 so that `ss`
/// tells them from the test's clients.
const DIALER: &str = "\
import select, signal, socket
own = socket.create_server(('127.0.0.1', 7571))
own.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 333)
plain = socket.create_server(('127.0.0.1', 7572))
held = []
def dial(port, off):
    s = socket.socket()
    s.bind(('127.0.0.2', 0))
    if off:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
    s.connect(('127.0.0.1', port))
    held.append(s)
signal.signal(signal.SIGUSR1, lambda *_: dial(7572, False))
signal.signal(signal.SIGUSR2, lambda *_: dial(7571, True))
while True:
    for listener in select.select([own, plain], [], [])[0]:
        held.append(listener.accept()[0])
";

/// `attach --unit` in a real systemd (nspawn): besides the connections open now, the
/// connections the running service makes from now on get the settings, from the kernel
/// route on its cgroup — except where the program configured the socket itself: a
/// listener it set up before `attach` (whose accepted connections the route must leave
/// as they inherit them) and a client it sets `SO_KEEPALIVE=0` on. `detach --unit`
/// takes the route away with what `attach` set (issue 23).
#[test]
fn attach_unit_covers_the_connections_a_service_makes_from_now_on() {
    let test = "attach_unit_covers_the_connections_a_service_makes_from_now_on";
    let _turn = turn();
    if !root(test) || !have(test, "bpftool") || !starts_clean(test) {
        return;
    }
    let Some((container, peer, keepalive)) = systemd_with_bpf(test) else {
        return;
    };
    container.write("/srv/dialer.py", DIALER);
    container.write(
        "/etc/systemd/system/dialer.service",
        "[Service]\nExecStart=/usr/bin/python3 /srv/dialer.py\n",
    );
    container.start(&["dialer.service"]);
    eventually(|| {
        !container
            .run_ok(&["ss", "-Hltn", "( sport = :7572 )"])
            .is_empty()
    });
    // A client outside the unit, held while the test runs.
    let mut clients = Vec::new();
    let mut connect = |port: &str| {
        let mut client = Proc::spawn(&mut container.enter(&[&peer, "client", "127.0.0.1", port]));
        client
            .line("@ connected", Duration::from_secs(20))
            .expect("client connected");
        clients.push(client);
    };
    let timers = |filter: &str| {
        let mut timers = container.ss_keepalive(filter);
        timers.sort();
        timers
    };
    let dial = |signal: &str, filter: &str, count: usize| {
        container.run_ok(&["systemctl", "kill", "-s", signal, "dialer.service"]);
        eventually(|| container.ss_keepalive(filter).len() == count);
    };
    let configured = |timer: &Option<Duration>| matches!(timer, Some(left) if *left <= Duration::from_secs(61) && *left > Duration::from_secs(50));
    connect("7571");
    // Dry runs: the route would go on the service's cgroup, never on a slice's.
    let dry = |unit: &str| {
        text(
            &container
                .run(&[&keepalive, "attach", "--dry-run", "--unit", unit])
                .stdout,
        )
    };
    let said = dry("dialer");
    assert!(
        said.contains("would get them from the kernel route"),
        "{said}"
    );
    let said = dry("system.slice");
    assert!(said.contains("system.slice is not a service"), "{said}");
    assert_eq!(loaded_programs(), "", "programs loaded by a dry run");
    // A 32-bit service's setsockopt calls reach no cgroup program, so the route would
    // override what it sets itself: not put on it (review of issue 21, F1, which
    // `run --kernel` and `enable --kernel` refuse).
    if let Some(peer32) = self::peer(test, &["-m32", "-static"]) {
        container.write(
            "/etc/systemd/system/app32.service",
            &format!("[Service]\nExecStart={} hold 7580\n", inside(&peer32)),
        );
        container.start(&["app32.service"]);
        let said = dry("app32");
        assert!(said.contains("is a 32-bit program"), "{said}");
        container.run_ok(&["systemctl", "stop", "app32.service"]);
    }

    let attached = container.run(&[&keepalive, "attach", "--unit", "dialer", "--idle", "61"]);
    let said = text(&attached.stdout);
    assert!(
        attached.status.success(),
        "{said}{}",
        text(&attached.stderr)
    );
    assert!(
        said.contains("new connections of dialer.service's processes get them from the kernel route attached to its cgroup"),
        "{said}"
    );
    assert!(said.contains("left alone: TCP_KEEPIDLE is 333"), "{said}");
    connect("7571");
    connect("7572");
    dial("SIGUSR1", "( src 127.0.0.2 and dport = :7572 )", 1);
    dial("SIGUSR2", "( src 127.0.0.2 and dport = :7571 )", 1);
    let own = timers("( sport = :7571 )");
    assert_eq!(
        own,
        [None, None, None],
        "accepted on the program's own listener"
    );
    assert_eq!(
        timers("( src 127.0.0.2 and dport = :7571 )"),
        [None],
        "the program's SO_KEEPALIVE=0"
    );
    let plain = timers("( sport = :7572 )");
    assert!(
        plain.len() == 2 && plain.iter().all(configured),
        "accepted on 7572: {plain:?}"
    );
    let made = timers("( src 127.0.0.2 and dport = :7572 )");
    assert!(
        made.len() == 1 && configured(&made[0]),
        "made after attach: {made:?}"
    );

    let detached = container.run(&[&keepalive, "detach", "--unit", "dialer"]);
    let said = text(&detached.stdout);
    assert!(
        detached.status.success(),
        "{said}{}",
        text(&detached.stderr)
    );
    assert!(said.contains("the kernel route attach put on"), "{said}");
    assert_eq!(loaded_programs(), "", "programs left after detach --unit");
    dial("SIGUSR1", "( src 127.0.0.2 and dport = :7572 )", 2);
    let made = timers("( src 127.0.0.2 and dport = :7572 )");
    assert!(
        made[0].is_none() && configured(&made[1]),
        "made after detach, and before: {made:?}"
    );

    // Attached again, then restarted without detach: systemd removes the cgroup and
    // the route with it, and the next attach or detach sweeps the route's record.
    let attached = container.run(&[&keepalive, "attach", "--unit", "dialer", "--idle", "61"]);
    assert!(attached.status.success(), "{}", text(&attached.stderr));
    let records = || text(&container.run(&["ls", "/run/keepalive/attach"]).stdout);
    assert!(records().contains("cgroup-"), "{}", records());
    let restarted = container.run(&["systemctl", "restart", "dialer"]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    let detached = container.run(&[&keepalive, "detach", "--unit", "dialer"]);
    assert!(detached.status.success(), "{}", text(&detached.stderr));
    assert!(!records().contains("cgroup-"), "{}", records());
}

/// On a systemd host (systemd 252 in nspawn), `run --kernel` has systemd make the
/// cgroup, a transient scope: the static program's connections get the settings, the
/// exit status is the program's, and afterwards no scope, cgroup or program is left.
#[test]
fn run_kernel_on_a_systemd_host_uses_a_transient_scope() {
    let test = "run_kernel_on_a_systemd_host_uses_a_transient_scope";
    let _turn = turn();
    if !root(test) || !have(test, "bpftool") {
        return;
    }
    let Some((container, peer, keepalive)) = systemd_with_bpf(test) else {
        return;
    };
    let mut run = vec![keepalive.as_str(), "run", "--kernel"];
    run.extend(SETTINGS);
    run.push("--");
    let mut pair = run.clone();
    pair.extend([peer.as_str(), "pair"]);
    let output = container.run(&pair);
    assert!(output.status.success(), "{output:?}");
    let seen = reports(&text(&output.stdout));
    assert_eq!(seen["client"], fields(&CONFIGURED), "{output:?}");
    assert_eq!(seen["accepted"], fields(&CONFIGURED), "{output:?}");
    let mut exit = run.clone();
    exit.extend(["sh", "-c", "exit 7"]);
    assert_eq!(container.run(&exit).status.code(), Some(7));

    // systemd learns that a scope emptied from a cgroup notification and then
    // removes it: wait for that, bounded.
    let scopes = || {
        container.run_ok(&[
            "systemctl",
            "list-units",
            "--all",
            "--no-legend",
            "--type=scope",
            "keepalive-run-*",
        ])
    };
    eventually(|| scopes().trim().is_empty());
    assert_eq!(scopes().trim(), "", "scopes left");
    let cgroups = container.run_ok(&["find", "/sys/fs/cgroup/unified", "-name", "keepalive-run-*"]);
    assert_eq!(cgroups.trim(), "", "cgroups left");
    // The kernel is the host's: its bpftool sees every loaded program. The kernel
    // releases a removed cgroup's programs from a work queue.
    eventually(|| loaded_programs().is_empty());
    assert_eq!(loaded_programs(), "", "programs left");
}

/// A Go program: Go turns keepalive on (15 s) right after connect returns, after the
/// kernel's callback, and so overrides the idle time and interval the kernel set; the
/// options Go leaves alone keep the kernel's (TCP_USER_TIMEOUT always), and a
/// connection Go leaves alone keeps all of them. `check --kernel` says "in part".
#[test]
fn go_sets_its_own_keepalive_over_the_kernels() {
    let test = "go_sets_its_own_keepalive_over_the_kernels";
    let _turn = turn();
    if !root(test) || !have(test, "go") {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-kernel");
    let program = dir.join("gokernel");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&program)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/go_kernel/main.go"))
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("path"))
        .env("HOME", &dir)
        .env("GO111MODULE", "off")
        .output()
        .expect("run go build");
    assert!(built.status.success(), "go build: {}", text(&built.stderr));

    let kernel = run(true, &[&program]);
    assert!(kernel.status.success(), "{kernel:?}");
    let seen = reports(&text(&kernel.stdout));
    let go = &seen["go-default"];
    assert_eq!(
        (
            &go["keepalive"],
            &go["idle"],
            &go["interval"],
            &go["user_timeout"]
        ),
        (
            &"1".to_string(),
            &"15".to_string(),
            &"15".to_string(),
            &"9000".to_string()
        ),
        "Go's own 15 s over the kernel's, the user timeout the kernel's"
    );
    assert_eq!(
        seen["go-off"],
        fields(&CONFIGURED),
        "a connection Go left alone"
    );

    let check = keepalive_command()
        .args(["check", "--kernel"])
        .arg(&program)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert!(
        text(&check.stdout).contains("\nkernel route: in part: Go sets"),
        "{check:?}"
    );
}

// ---- issue 21: where the route attaches, and every way a run ends -----------------

/// A cgroup made for a test under the mounted cgroup2 hierarchy, with the test's
/// `sh` moved in by the command itself; removed on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn make(hierarchy: &Path, name: &str) -> TestCgroup {
        let dir = hierarchy.join(name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("make a test cgroup");
        TestCgroup(dir)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let procs = std::fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        eventually(|| std::fs::remove_dir(&self.0).is_ok() || !self.0.exists());
    }
}

/// `run --kernel` inside a service (its cgroup named `….service`, as systemd names
/// one) would move the program out of the service's cgroup, out of its IP filtering,
/// logs and stop: it refuses, names `enable --kernel` for the service, and the program
/// never runs.
#[test]
fn run_kernel_inside_a_service_refuses_and_moves_nothing() {
    let test = "run_kernel_inside_a_service_refuses_and_moves_nothing";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(hierarchy) = cgroup2_mount() else {
        skip(test, "no cgroup2 mounted to make a service's cgroup in");
        return;
    };
    let service = TestCgroup::make(&hierarchy, "wrapped.service");
    let marker = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}.ran"));
    let _ = std::fs::remove_file(&marker);
    let script = format!(
        "echo $$ > '{}/cgroup.procs' && exec \"$0\" run --kernel --idle 61 -- touch '{}'",
        service.0.display(),
        marker.display()
    );
    let output = Command::new("sh")
        .args(["-c", &script])
        .arg(common::keepalive())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("inside wrapped.service")
            && stderr.contains("`keepalive enable --kernel wrapped.service`"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the program ran");
}

/// What `bpftool prog show name keepalive` lists: the kernel is the host's, so its
/// bpftool sees the programs of every container too.
fn loaded_programs() -> String {
    let shown = Command::new("bpftool")
        .args(["prog", "show", "name", "keepalive"])
        .output()
        .expect("run bpftool");
    text(&shown.stdout)
}

/// A real systemd (systemd 252 in nspawn) whose services may load BPF programs, with
/// the static test peer and the command, by their paths inside. nspawn's seccomp
/// filter refuses bpf(2) (EPERM) unless asked to allow it; the container's systemd
/// runs the hybrid layout, whose cgroup2 hierarchy at /sys/fs/cgroup/unified holds the
/// units' cgroups, which is all the route needs.
fn systemd_with_bpf(test: &str) -> Option<(common::systemd::Container, String, String)> {
    let peer = peer(test, &["-static"])?;
    let container = common::systemd::Container::boot_with(test, &["--system-call-filter=bpf"])?;
    Some((container, inside(&peer), inside(common::keepalive())))
}

/// The path inside a container of a file under the checkout's target directory.
fn inside(path: &Path) -> String {
    let target_dir = common::shim().parent().unwrap().parent().unwrap();
    format!(
        "{}/{}",
        common::systemd::TARGET,
        path.strip_prefix(target_dir).unwrap().display()
    )
}

/// A unit whose `ExecStart=` wraps its program in `keepalive run --kernel`, in a real
/// systemd: the command refuses, names `enable --kernel` for the unit, and the program
/// never runs, so it is never moved out of its service (its `IPAddressDeny=`, logs and
/// stop) into a scope of its own.
#[test]
fn a_wrapped_exec_start_refuses_and_names_enable_kernel() {
    let test = "a_wrapped_exec_start_refuses_and_names_enable_kernel";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(container) =
        common::systemd::Container::boot_with(test, &["--system-call-filter=bpf"])
    else {
        return;
    };
    container.write(
        "/etc/systemd/system/wrapped.service",
        &format!(
            "[Service]\nType=oneshot\nExecStart={} run --kernel --idle 61 -- /bin/touch /run/wrapped.ran\n",
            inside(common::keepalive())
        ),
    );
    container.run_ok(&["systemctl", "daemon-reload"]);
    let started = container.run(&["systemctl", "start", "wrapped.service"]);
    let journal = container.diagnose("wrapped.service");
    assert!(!started.status.success(), "{journal}");
    assert!(
        journal.contains("inside wrapped.service")
            && journal.contains("`keepalive enable --kernel wrapped.service`"),
        "{journal}"
    );
    let ran = container.run(&["test", "-e", "/run/wrapped.ran"]);
    assert!(!ran.status.success(), "the program ran");
    let scopes = container.run_ok(&[
        "systemctl",
        "list-units",
        "--all",
        "--no-legend",
        "--type=scope",
        "keepalive-run-*",
    ]);
    assert_eq!(scopes.trim(), "", "a scope was made");
}

/// systemd in its legacy cgroup layout (cgroup v1 only, as an older distribution boots),
/// where every unit's cgroup v2 is the root of the hierarchy, shared by every process:
/// `run --kernel` in a service makes a cgroup of its own for the program and reaches
/// its connections; `kernel-attach` refuses the root and attaches nothing; `enable
/// --kernel` refuses and names the library route; nothing stays loaded.
#[test]
fn the_legacy_layout_gets_a_cgroup_of_its_own_never_the_root() {
    let test = "the_legacy_layout_gets_a_cgroup_of_its_own_never_the_root";
    let _turn = turn();
    if !root(test) || !have(test, "bpftool") {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    let Some(container) = common::systemd::Container::boot_in(
        test,
        &["--system-call-filter=bpf"],
        &[("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "0")],
    ) else {
        return;
    };
    let mounts = container.run_ok(&["cat", "/proc/self/mounts"]);
    assert!(
        !mounts.contains("cgroup2"),
        "not the legacy layout:\n{mounts}"
    );
    let (peer, keepalive) = (inside(&peer), inside(common::keepalive()));

    let script = format!("grep '^0::' /proc/self/cgroup; exec {peer} pair");
    let mut run = vec![
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        &keepalive,
        "run",
        "--kernel",
    ];
    run.extend(SETTINGS);
    run.extend(["--", "sh", "-c", &script]);
    let output = container.run(&run);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("0::/keepalive-run.")),
        "the program's own cgroup: {stdout}"
    );
    let seen = reports(&stdout);
    assert_eq!(seen["client"], fields(&CONFIGURED), "{stdout}");
    assert_eq!(seen["accepted"], fields(&CONFIGURED), "{stdout}");

    let attach = container.run(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        &keepalive,
        "kernel-attach",
        "--idle",
        "61",
        "--",
        "touch",
        "/run/attached.ran",
    ]);
    assert!(
        text(&attach.stderr).contains("root of the cgroup v2 hierarchy"),
        "{attach:?}"
    );
    assert!(
        !container
            .run(&["test", "-e", "/run/attached.ran"])
            .status
            .success()
    );

    container.write(
        "/etc/systemd/system/legacy-demo.service",
        "[Service]\nExecStart=/bin/sleep 1000\n",
    );
    container.run_ok(&["systemctl", "daemon-reload"]);
    let enable = container.run(&[
        &keepalive,
        "enable",
        "--kernel",
        "legacy-demo",
        "--idle",
        "61",
    ]);
    assert_eq!(enable.status.code(), Some(1), "{enable:?}");
    assert!(text(&enable.stderr).contains("legacy layout"), "{enable:?}");
    let drop_in = container.run(&["test", "-e", "/etc/systemd/system/legacy-demo.service.d"]);
    assert!(!drop_in.status.success(), "enable wrote a drop-in");

    eventually(|| loaded_programs().is_empty());
    assert_eq!(loaded_programs(), "", "programs left");
}

/// `kernel-attach` (a unit's `ExecStartPre=` step, and `run --kernel` inside a systemd
/// scope) attaches to the cgroup it runs in; run in the root of the cgroup v2
/// hierarchy, where every process of this host is (as every unit's process is under a
/// systemd in the legacy layout), it refuses and attaches nothing.
#[test]
fn kernel_attach_never_attaches_to_the_root_cgroup() {
    let test = "kernel_attach_never_attaches_to_the_root_cgroup";
    let _turn = turn();
    if !root(test) || !have(test, "bpftool") {
        return;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    if !own.lines().any(|line| line == "0::/") {
        skip(
            test,
            "this test process is not in the root of the cgroup v2 hierarchy",
        );
        return;
    }
    let Some(hierarchy) = cgroup2_mount() else {
        skip(
            test,
            "no cgroup2 mounted to ask what is attached to its root",
        );
        return;
    };
    let output = keepalive_command()
        .args(["kernel-attach", "--idle", "61", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("root of the cgroup v2 hierarchy"),
        "{stderr}"
    );
    let attached = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&hierarchy)
        .output()
        .unwrap();
    assert!(
        !text(&attached.stdout).contains("keepalive"),
        "{}",
        text(&attached.stdout)
    );
}

/// `kill -9` of the command: the program goes with it (it could keep no settings, the
/// program's link going with the command), as under `run`, where the command is the
/// program. Its cgroup, which the command could not remove, is removed by the next
/// run; a cgroup a live run holds locked is never removed, whatever its name.
#[test]
fn a_killed_command_takes_its_program_and_the_next_run_sweeps_up() {
    let test = "a_killed_command_takes_its_program_and_the_next_run_sweeps_up";
    let _turn = turn();
    if !root(test) {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let hierarchy = cgroup2_mount().unwrap();
    let mut command = keepalive_command();
    command
        .args(["run", "--kernel", "--idle", "61", "--", "sh", "-c"])
        .arg("echo $$; exec sleep 60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let program = line.trim().to_string();
    child.kill().unwrap();
    child.wait().unwrap();
    eventually(|| !Path::new("/proc").join(&program).exists());
    assert!(
        !Path::new("/proc").join(&program).exists(),
        "the program outlived the killed command"
    );
    assert_eq!(
        traces(test).unwrap().cgroups.len(),
        1,
        "the killed command's cgroup stays until the next run"
    );

    // A live run's cgroup: locked, and empty for a moment (made, the program not yet
    // in it).
    let live = hierarchy.join("keepalive-run.0123456789abcdef");
    std::fs::create_dir(&live).unwrap();
    let held = std::fs::File::open(&live).unwrap();
    // SAFETY: flock(2) on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) },
        0
    );
    say_locked(&live);
    let next = run(true, &[&"true"]);
    assert!(next.status.success(), "{}", text(&next.stderr));
    assert!(live.exists(), "a live run's cgroup was removed");
    assert_eq!(
        traces(test).unwrap().cgroups,
        std::slice::from_ref(&live),
        "the dead run's cgroup was not swept"
    );
    drop(held);
    let last = run(true, &[&"true"]);
    assert!(last.status.success(), "{}", text(&last.stderr));
    assert_clean(&traces(test).unwrap(), "a kill -9 and two runs");
}

/// A program that dies of a signal with core dumps on leaves its core, and the command,
/// which dies of the same signal to pass it on, dumps none of its own over it.
#[test]
fn a_crashing_program_leaves_one_core_its_own() {
    let test = "a_crashing_program_leaves_one_core_its_own";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let mut command = keepalive_command();
    command
        .args([
            "run",
            "--kernel",
            "--idle",
            "61",
            "--",
            "sh",
            "-c",
            "kill -SEGV $$",
        ])
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setrlimit(2) is async-signal-safe, as a pre_exec hook requires.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
            Ok(())
        });
    }
    let status = command.status().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    assert!(
        !status.core_dumped(),
        "the command dumped a core of its own"
    );
}

/// A program that makes cgroups under its own: they go with the run's, at once, and
/// the command says nothing about them.
#[test]
fn a_programs_sub_cgroups_go_with_the_run() {
    let test = "a_programs_sub_cgroups_go_with_the_run";
    let _turn = turn();
    if !root(test) {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let hierarchy = cgroup2_mount().unwrap();
    let script = format!(
        "own='{}'$(sed -n 's/^0:://p' /proc/self/cgroup) && mkdir \"$own/a\" \"$own/a/b\"",
        hierarchy.display()
    );
    let output = run(true, &[&"sh", &"-c", &script]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    assert_clean(&traces(test).unwrap(), "a program's sub-cgroups");
}

/// A program started with a listener it did not make: what is accepted on it belongs
/// to the listener's maker's cgroup, out of the kernel route's reach, and the command
/// says so, naming the fd and the library route.
#[test]
fn run_kernel_warns_of_an_inherited_listener() {
    let test = "run_kernel_warns_of_an_inherited_listener";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = keepalive_command();
    command
        .args(["run", "--kernel", "--idle", "61", "--", "true"])
        .stdin(Stdio::null());
    common::pass_fd(&mut command, listener.into(), 3);
    let output = command.output().unwrap();
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("fd 3 is a listening TCP socket")
            && stderr.contains("`keepalive run` without --kernel"),
        "{stderr}"
    );
}

/// `enable --kernel` in a real systemd, where it must say no or undo: a
/// socket-activated service (its connections are accepted on PID 1's listeners, out of
/// the route's reach) is refused before anything is written, naming the `.socket` unit
/// and the library route; and a service whose `IPAddressDeny=any` drops the proof's
/// loopback connection fails within seconds, not minutes, with the drop-in gone again.
#[test]
fn enable_kernel_refuses_activated_services_and_undoes_a_failed_proof() {
    let test = "enable_kernel_refuses_activated_services_and_undoes_a_failed_proof";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(container) =
        common::systemd::Container::boot_with(test, &["--system-call-filter=bpf"])
    else {
        return;
    };
    let keepalive = inside(common::keepalive());
    container.write(
        "/etc/systemd/system/activated.socket",
        "[Socket]\nListenStream=127.0.0.1:7302\n",
    );
    container.write(
        "/etc/systemd/system/activated.service",
        "[Service]\nExecStart=/usr/bin/sleep infinity\n",
    );
    container.write(
        "/etc/systemd/system/fenced.service",
        "[Service]\nExecStart=/usr/bin/sleep infinity\nIPAddressDeny=any\n",
    );
    // Listeners handed over by Sockets= of a socket unit that triggers another service.
    container.write(
        "/etc/systemd/system/extra.socket",
        "[Socket]\nListenStream=127.0.0.1:7303\nService=other.service\n",
    );
    container.write(
        "/etc/systemd/system/other.service",
        "[Service]\nExecStart=/usr/bin/sleep infinity\n",
    );
    container.write(
        "/etc/systemd/system/holder.service",
        "[Service]\nSockets=extra.socket\nExecStart=/usr/bin/sleep infinity\n",
    );
    container.start(&["activated.socket", "extra.socket", "fenced.service"]);
    let holder = container.run(&[&keepalive, "enable", "--kernel", "--idle", "61", "holder"]);
    let said = text(&holder.stderr);
    assert_eq!(holder.status.code(), Some(1), "{said}");
    assert!(
        said.contains("holder.service is started by extra.socket"),
        "{said}"
    );

    let activated = container.run(&[
        &keepalive,
        "enable",
        "--kernel",
        "--idle",
        "61",
        "activated",
    ]);
    let said = text(&activated.stderr);
    assert_eq!(activated.status.code(), Some(1), "{said}");
    assert!(
        said.contains("activated.service is started by activated.socket")
            && said.contains("`keepalive enable activated.service`"),
        "{said}"
    );
    assert!(
        container
            .run(&[
                "test",
                "-e",
                "/etc/systemd/system/activated.service.d/zz-keepalive.conf"
            ])
            .status
            .code()
            == Some(1),
        "a drop-in was written"
    );

    let started = std::time::Instant::now();
    let fenced = container.run(&[
        &keepalive, "enable", "--kernel", "--idle", "61", "--now", "fenced",
    ]);
    let took = started.elapsed();
    let said = format!("{}{}", text(&fenced.stdout), text(&fenced.stderr));
    assert_eq!(fenced.status.code(), Some(1), "{said}");
    assert!(said.contains("IPAddressDeny="), "{said}");
    assert!(
        said.contains("removed, and the service restarted with it"),
        "{said}"
    );
    assert!(
        took < Duration::from_secs(60),
        "the failed proof took {took:?}: {said}"
    );
    assert_eq!(
        container
            .run(&[
                "test",
                "-e",
                "/etc/systemd/system/fenced.service.d/zz-keepalive.conf"
            ])
            .status
            .code(),
        Some(1),
        "the drop-in stayed: {said}"
    );
}

/// `enable --kernel` as `enable` (issue 21): run again, it keeps the options not given
/// again and says so; over the library's drop-in it says what it replaced; and
/// `disable --now` of a unit whose cgroup outlives its stop (`KillMode=process`, a
/// child left running) detaches the program left on it, so new connections carry
/// nothing.
#[test]
fn enable_kernel_keeps_options_and_disable_detaches_leftovers() {
    let test = "enable_kernel_keeps_options_and_disable_detaches_leftovers";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some((container, peer, keepalive)) = systemd_with_bpf(test) else {
        return;
    };
    container.write(
        "/etc/systemd/system/lingering.service",
        &format!(
            "[Service]\nExecStart=/bin/sh -c '/usr/bin/sleep 3000 & exec {peer} hold 7304'\n\
             KillMode=process\n"
        ),
    );
    container.start(&["lingering.service"]);
    let enable = |args: &[&str]| {
        let mut all = vec![keepalive.as_str(), "enable"];
        all.extend_from_slice(args);
        all.push("lingering");
        let output = container.run(&all);
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "{args:?}: {said}");
        said
    };
    let said = enable(&["--idle", "61"]);
    assert!(!said.contains("replaces"), "{said}");
    let said = enable(&["--kernel", "--count", "3"]);
    assert!(
        said.contains(
            "replaces the library (LD_PRELOAD) of the earlier enable with the kernel route"
        ) && said.contains("keeps KEEPIDLE=61 from the earlier enable"),
        "{said}"
    );
    let drop_in = container.read("/etc/systemd/system/lingering.service.d/zz-keepalive.conf");
    assert!(
        drop_in.contains("kernel-attach --idle 61 --count 3"),
        "{drop_in}"
    );
    enable(&["--kernel", "--now"]);

    let output = container.run(&[&keepalive, "disable", "--now", "lingering"]);
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("detached 1 keepalive sock_ops program"),
        "{said}"
    );
    eventually(|| {
        !container
            .run_ok(&["ss", "-Hltn", "( sport = :7304 )"])
            .is_empty()
    });
    let mut client = Proc::spawn(&mut container.enter(&[&peer, "client", "127.0.0.1", "7304"]));
    client
        .line("@ connected", Duration::from_secs(20))
        .expect("client connected");
    assert_eq!(
        container.ss_keepalive("( sport = :7304 )"),
        [None],
        "a new connection after disable --now still carries keepalive"
    );
}

/// What a run sets on its cgroup once it holds the cgroup's lock: the sweep removes
/// only a cgroup that says so and whose lock is free.
fn say_locked(cgroup: &Path) {
    let path = std::ffi::CString::new(cgroup.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: setxattr(2) with NUL-terminated strings and a one-byte value that live
    // for the call.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"trusted.keepalive.locked".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// A cgroup of the test's own under the hierarchy, removed with everything under it
/// (after moving what runs there to the root) when dropped.
struct Subtree(PathBuf);

impl Subtree {
    fn new(hierarchy: &Path, name: &str) -> Subtree {
        let dir = hierarchy.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Subtree(dir)
    }

    fn remove(dir: &Path, root: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.map_while(Result::ok) {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    Subtree::remove(&entry.path(), root);
                }
            }
        }
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(root.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        let root = cgroup2_mount().unwrap();
        Subtree::remove(&self.0, &root);
    }
}

/// A 32-bit program's setsockopt(2) calls are compat system calls, for which the
/// kernel runs no cgroup setsockopt program: the route could not see what the program
/// sets itself and would override it (its explicit `SO_KEEPALIVE=0` turned on).
/// `run --kernel` refuses such a program, naming why, and `check --kernel` says the
/// route is not available for it; nothing is made.
#[test]
fn a_32_bit_program_is_refused_not_overridden() {
    let test = "a_32_bit_program_is_refused_not_overridden";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(peer) = peer(test, &["-m32", "-static"]) else {
        return;
    };
    if !starts_clean(test) {
        return;
    }
    let output = run(true, &[&peer, &"rule"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("keepalive: run --kernel: ") && stderr.contains("is a 32-bit program"),
        "{stderr}"
    );
    assert_eq!(text(&output.stdout), "", "the program ran");
    let check = keepalive_command()
        .args(["check", "--kernel"])
        .arg(&peer)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert!(
        text(&check.stdout).contains("\nkernel route: not available here: ")
            && text(&check.stdout).contains("32-bit program"),
        "{check:?}"
    );
    assert_clean(&traces(test).unwrap(), "a refused 32-bit program");
}

/// An MPTCP connection's subflows are TCP sockets the kernel makes for the program's
/// MPTCP socket; the program's options (here an explicit `SO_KEEPALIVE=0` on both
/// ends) reach them from that socket, which the marks are on. The route leaves
/// subflows alone, as the library leaves MPTCP sockets alone, and so a plain TCP
/// connection accepted on the MPTCP listener (it falls back to TCP, a child of the
/// listener's subflow): no keepalive timer appears on any of them.
#[test]
fn mptcp_subflows_keep_what_the_program_set() {
    let test = "mptcp_subflows_keep_what_the_program_set";
    let _turn = turn();
    if !root(test) || !have(test, "ss") {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    let output = run(true, &[&peer, &"mptcp"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = text(&output.stdout);
    if stdout.contains("@ mptcp-unavailable") {
        skip(test, &format!("no MPTCP sockets here: {stdout}"));
        return;
    }
    assert_eq!(
        stdout.matches("tcp-ulp-mptcp").count(),
        2,
        "two subflows, each an MPTCP subflow: {stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.contains("127.0.0.1:"))
            .count(),
        4,
        "the subflows and the plain connection's two ends: {stdout}"
    );
    assert!(
        !stdout.contains("timer:(keepalive"),
        "the route turned keepalive on against the program's SO_KEEPALIVE=0: {stdout}"
    );
}

/// A run makes its cgroup and only then takes its lock: for that moment the cgroup is
/// empty and its lock free. Another run's sweep must not take it for a dead run's
/// (concurrent runs failed "cannot open cgroup ...: No such file or directory").
#[test]
fn a_starting_runs_cgroup_is_never_swept() {
    let test = "a_starting_runs_cgroup_is_never_swept";
    let _turn = turn();
    if !root(test) {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let hierarchy = cgroup2_mount().unwrap();
    let starting = Subtree::new(&hierarchy, "keepalive-run.5ta7t1ng5ta7t1ng");
    let next = run(true, &[&"true"]);
    assert!(next.status.success(), "{}", text(&next.stderr));
    assert!(starting.0.exists(), "a starting run's cgroup was removed");
    drop(starting);
    assert_clean(&traces(test).unwrap(), "a sweep beside a starting run");
}

/// A killed command's program may leave children running in its cgroup (they outlive
/// the program, which dies with the command). The next run's sweep moves them up to
/// its own cgroup, as a finished run does, and removes the cgroup at once.
#[test]
fn a_dead_runs_survivors_are_moved_out_and_its_cgroup_swept() {
    let test = "a_dead_runs_survivors_are_moved_out_and_its_cgroup_swept";
    let _turn = turn();
    if !root(test) || !have(test, "setsid") {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let mut command = keepalive_command();
    command
        .args(["run", "--kernel", "--idle", "61", "--", "sh", "-c"])
        .arg("setsid sleep 60 & echo $!; exec sleep 60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let survivor: i32 = line.trim().parse().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        traces(test).unwrap().cgroups.len(),
        1,
        "the dead run's cgroup"
    );
    let next = run(true, &[&"true"]);
    let own = std::fs::read_to_string(format!("/proc/{survivor}/cgroup")).unwrap();
    // SAFETY: kill(2) of the test's own grandchild, reparented to init.
    unsafe { libc::kill(survivor, libc::SIGKILL) };
    assert!(next.status.success(), "{}", text(&next.stderr));
    assert!(
        own.lines().any(|line| line == "0::/"),
        "the survivor stayed in the dead run's cgroup: {own}"
    );
    assert_clean(
        &traces(test).unwrap(),
        "the sweep of a dead run with a survivor",
    );
}

/// Killed at the moment it mounts a cgroup2 hierarchy of its own (where none is
/// mounted), the command leaves no mount and no mount point: the mount it makes is
/// attached nowhere. strace(1) delivers SIGKILL as the command enters each of the
/// mount system calls, old (mount, umount2) and new (fsmount).
#[test]
fn a_command_killed_while_mounting_leaves_no_mount() {
    let test = "a_command_killed_while_mounting_leaves_no_mount";
    let _turn = turn();
    if !root(test) || !have(test, "unshare") || !have(test, "strace") {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    for call in ["mount", "umount2", "fsconfig", "fsmount", "openat"] {
        let script = format!(
            "grep ' - cgroup2 ' /proc/self/mountinfo | cut -d' ' -f5 | xargs -r -n1 umount; \
             strace -f -o /dev/null -e trace={call} -e inject={call}:signal=KILL \
             {} run --kernel -- true; grep -c ' - cgroup2 ' /proc/self/mountinfo",
            common::keepalive().display(),
        );
        let output = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            text(&output.stdout).lines().last(),
            Some("0"),
            "killed entering {call}: a cgroup2 mount stays: {output:?}"
        );
        assert_clean(&traces(test).unwrap(), &format!("a kill entering {call}"));
    }
}

/// `check --kernel` judges with what `run --kernel` does, so it says "reachable" only
/// where the run works: not where the cgroup2 mount is read-only, nor in a user
/// namespace, where the capabilities are not the host's ("needs root on the host"),
/// nor without CAP_DAC_OVERRIDE, nor where cgroup.max.descendants allows no cgroup.
#[test]
fn check_kernel_agrees_with_run_kernel() {
    let test = "check_kernel_agrees_with_run_kernel";
    let _turn = turn();
    if !root(test) || !have(test, "unshare") || !have(test, "setpriv") {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    if !starts_clean(test) {
        return;
    }
    let hierarchy = cgroup2_mount().unwrap();
    let keepalive = common::keepalive().display().to_string();
    let script = format!(
        "mount -o remount,bind,ro '{}' && \
         {{ {keepalive} check --kernel {peer}; echo check=$?; \
            {keepalive} run --kernel -- {peer} pair; echo run=$?; }}",
        hierarchy.display(),
        peer = peer.display(),
    );
    let read_only = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = text(&read_only.stdout);
    assert!(
        stdout.contains("check=1") && stdout.contains("run=1"),
        "{read_only:?}"
    );
    assert!(
        stdout.contains("kernel route: not available here: cannot make cgroup"),
        "{read_only:?}"
    );

    let script = format!(
        "{keepalive} check --kernel {peer}; echo check=$?; \
         {keepalive} run --kernel -- {peer} pair; echo run=$?",
        peer = peer.display(),
    );
    let namespaced = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = text(&namespaced.stdout);
    assert!(
        stdout.contains("check=1") && stdout.contains("run=1"),
        "{namespaced:?}"
    );
    assert!(
        stdout.contains("kernel route: not available here: needs root on the host")
            && text(&namespaced.stderr)
                .starts_with("keepalive: run --kernel: needs root on the host"),
        "{namespaced:?}"
    );

    // Without CAP_DAC_OVERRIDE (root's cgroup directories refuse the mkdir), and where
    // cgroup.max.descendants allows no new cgroup.
    let limited = Subtree::new(&hierarchy, "kt-no-descendants");
    std::fs::write(limited.0.join("cgroup.max.descendants"), "0").unwrap();
    for (what, prefix) in [
        (
            "without CAP_DAC_OVERRIDE",
            "exec setpriv --bounding-set=-dac_override --inh-caps=-dac_override".to_string(),
        ),
        (
            "at cgroup.max.descendants",
            format!("echo $$ > '{}/cgroup.procs' && exec", limited.0.display()),
        ),
    ] {
        let script = format!(
            "{prefix} sh -c '{keepalive} check --kernel {peer}; echo check=$?; \
             {keepalive} run --kernel -- {peer} pair; echo run=$?'",
            peer = peer.display(),
        );
        let output = Command::new("sh").args(["-c", &script]).output().unwrap();
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains("check=1")
                && stdout.contains("run=1")
                && stdout.contains("kernel route: not available here: cannot make cgroup"),
            "{what}: {output:?}"
        );
    }
    drop(limited);
    assert_clean(&traces(test).unwrap(), "refused runs and checks");
}

/// A cgroup2 mount that is a bind of a sub-cgroup over the hierarchy (some container
/// set-ups without a cgroup namespace) does not show the hierarchy's paths: the
/// command passes it over and finds its own cgroup in a hierarchy of its own, and the
/// program lands in a child of the command's cgroup, not of an unrelated one named
/// like its path.
#[test]
fn a_bind_of_a_sub_cgroup_is_not_taken_for_the_hierarchy() {
    let test = "a_bind_of_a_sub_cgroup_is_not_taken_for_the_hierarchy";
    let _turn = turn();
    if !root(test) || !have(test, "unshare") {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let hierarchy = cgroup2_mount().unwrap();
    let bound = Subtree::new(&hierarchy, "kt-bound");
    // Named like the command's cgroup, inside the bound sub-cgroup: a naive join of the
    // mount point and the command's path lands here.
    std::fs::create_dir_all(bound.0.join("kt-bound/inner")).unwrap();
    std::fs::create_dir_all(bound.0.join("inner")).unwrap();
    let script = format!(
        "echo $$ > '{bound}/inner/cgroup.procs' && \
         exec unshare --mount --propagation private sh -c \
         \"mount --bind '{bound}' '{hierarchy}' && \
           {keepalive} run --kernel -- sh -c 'grep ^0:: /proc/self/cgroup'\"",
        bound = bound.0.display(),
        hierarchy = hierarchy.display(),
        keepalive = common::keepalive().display(),
    );
    let output = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("0::/kt-bound/inner/keepalive-run."),
        "{output:?}"
    );
    drop(bound);
    assert_clean(&traces(test).unwrap(), "a run under a bound sub-cgroup");
}

/// In a threaded subtree a new cgroup cannot take processes: `run --kernel` says so,
/// as a refusal of the system (status 1), not as the program's failure to start (126),
/// and `check --kernel` agrees.
#[test]
fn a_threaded_subtree_is_refused_as_such() {
    let test = "a_threaded_subtree_is_refused_as_such";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let Some(peer) = peer(test, &["-static"]) else {
        return;
    };
    if !starts_clean(test) {
        return;
    }
    let hierarchy = cgroup2_mount().unwrap();
    let domain = Subtree::new(&hierarchy, "kt-threaded");
    std::fs::create_dir(domain.0.join("thread")).unwrap();
    std::fs::write(domain.0.join("thread/cgroup.type"), "threaded").unwrap();
    let script = format!(
        "echo $$ > '{domain}/cgroup.procs' && \
         {{ {keepalive} check --kernel {peer}; echo check=$?; \
            {keepalive} run --kernel -- true; echo run=$?; }}",
        domain = domain.0.display(),
        keepalive = common::keepalive().display(),
        peer = peer.display(),
    );
    let output = Command::new("sh").args(["-c", &script]).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("check=1") && stdout.contains("run=1"),
        "{output:?}"
    );
    assert!(
        text(&output.stderr).contains("threaded subtree"),
        "{output:?}"
    );
    drop(domain);
    assert_clean(&traces(test).unwrap(), "a refusal in a threaded subtree");
}

/// As process 1 of a pid namespace (a container's entrypoint) the command is the
/// parent of every orphan there, and reaps them: none stays a zombie while the program
/// runs, as none would if the program itself were process 1.
#[test]
fn as_init_of_a_pid_namespace_orphans_are_reaped() {
    let test = "as_init_of_a_pid_namespace_orphans_are_reaped";
    let _turn = turn();
    if !root(test) || !have(test, "unshare") || !have(test, "ps") {
        return;
    }
    // Twenty orphans that exit at once; then the zombies are counted until none is
    // left, for at most 20 s, and the count printed.
    let script = "for i in $(seq 20); do (true &); done; n=0; \
                  while [ $(ps -e -o stat= | grep -c Z) -gt 0 ] && [ $n -lt 200 ]; do \
                  sleep 0.1; n=$((n+1)); done; ps -e -o stat= | grep -c Z; exit 7";
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(common::keepalive())
        .args(["run", "--kernel", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert_eq!(text(&output.stdout).trim(), "0", "zombies: {output:?}");
}

/// `kernel-attach` runs in a service's cgroup or in the scope systemd-run made for
/// `run --kernel`; anywhere else (a systemd-run that did not make the scope leaves it in
/// its caller's cgroup, a login session's say) it refuses and attaches nothing.
#[test]
fn kernel_attach_refuses_a_cgroup_not_made_for_it() {
    let test = "kernel_attach_refuses_a_cgroup_not_made_for_it";
    let _turn = turn();
    if !root(test) || !have(test, "bpftool") {
        return;
    }
    let Some(hierarchy) = cgroup2_mount() else {
        skip(test, "no cgroup2 mounted to make a session's cgroup in");
        return;
    };
    let session = Subtree::new(&hierarchy, "kt-session-1.scope");
    let script = format!(
        "echo $$ > '{}/cgroup.procs' && exec {} kernel-attach --idle 61 -- true",
        session.0.display(),
        common::keepalive().display()
    );
    let output = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("neither a service's cgroup nor the scope"),
        "{output:?}"
    );
    let attached = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&session.0)
        .output()
        .unwrap();
    assert!(
        !text(&attached.stdout).contains("keepalive"),
        "{}",
        text(&attached.stdout)
    );
}

/// A `run --kernel` inside another's cgroup: the outer route's program runs after the
/// inner one's and would set its settings over the inner's (`--idle 70` gave 50, `--mode
/// off` still got keepalive on). The inner run refuses, naming the outer program, and
/// nothing of it stays; the outer run ends with its status.
#[test]
fn a_nested_run_kernel_refuses_rather_than_be_overridden() {
    let test = "a_nested_run_kernel_refuses_rather_than_be_overridden";
    let _turn = turn();
    if !root(test) {
        return;
    }
    if !starts_clean(test) {
        return;
    }
    let keepalive = common::keepalive();
    let output = keepalive_command()
        .args(["run", "--kernel", "--idle", "50", "--"])
        .arg(keepalive)
        .args(["run", "--kernel", "--idle", "70", "--", "echo", "ran"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(text(&output.stdout), "", "the inner program ran");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("keepalive: run --kernel: sock_ops program keepalive (id ")
            && stderr.contains("already runs for this command's cgroup"),
        "{stderr}"
    );
    assert_clean(&traces(test).unwrap(), "a nested run --kernel");
}

/// `run --kernel` under an outer `keepalive run` inherits the library in LD_PRELOAD,
/// whose settings at socket() count as the program's own and win over the kernel
/// route's: the command says so, naming the library.
#[test]
fn run_kernel_warns_of_an_inherited_library() {
    let test = "run_kernel_warns_of_an_inherited_library";
    let _turn = turn();
    if !root(test) {
        return;
    }
    let output = keepalive_command()
        .args(["run", "--idle", "50", "--"])
        .arg(common::keepalive())
        .args(["run", "--kernel", "--idle", "70", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("keepalive: warning: LD_PRELOAD holds ")
            && stderr.contains("libkeepalive.so"),
        "{stderr}"
    );
}

/// `enable --kernel` refuses a service whose `ExecStart=` program is 32-bit, as `run
/// --kernel` refuses one, before writing anything: the route would override the options
/// it sets itself. Under `--root`, with the command present in the image, so that
/// nothing else stands in the way.
#[test]
fn enable_kernel_refuses_a_32_bit_service() {
    let test = "enable_kernel_refuses_a_32_bit_service";
    let _turn = turn();
    let Some(peer) = peer(test, &["-m32", "-static"]) else {
        return;
    };
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-with-a-32-bit-service");
    let _ = std::fs::remove_dir_all(&root);
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy(&peer, root.join("usr/bin/app32")).unwrap();
    let keepalive = common::keepalive();
    let inside = root.join(keepalive.strip_prefix("/").unwrap());
    std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
    std::fs::copy(keepalive, &inside).unwrap();
    std::fs::write(
        units.join("app32.service"),
        "[Service]\nExecStart=/usr/bin/app32 pair\n",
    )
    .unwrap();
    let output = keepalive_command()
        .args(["enable", "--kernel", "--root"])
        .arg(&root)
        .arg("app32")
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is a 32-bit program"), "{stderr}");
    assert!(!units.join("app32.service.d/zz-keepalive.conf").exists());
    let _ = std::fs::remove_dir_all(&root);
}
