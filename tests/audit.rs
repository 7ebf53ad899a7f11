//! `keepalive audit` (issue 23): a host's established TCP connections without
//! keepalive, read from the kernel with sock_diag in every network namespace, grouped
//! by unit or process; JSON and Prometheus output parsed here; before and after
//! `keepalive attach` the same connections show without, then with keepalive.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::net::Proc;
use common::{have, keepalive_command, skip};

/// A program with one loopback connection (both ends), made without the library, in
/// whatever network namespace it is started; prints `@ ready pid=N`.
const PROGRAM: &str = "import os, socket, time\n\
    l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
    c = socket.create_connection(l.getsockname()); a, _ = l.accept()\n\
    print('@ ready pid=%d' % os.getpid(), flush=True)\ntime.sleep(600)\n";

fn audit(args: &[&str]) -> String {
    let output = keepalive_command()
        .arg("audit")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn start(command: &mut Command) -> Proc {
    command.env_remove("LD_PRELOAD");
    let mut program = Proc::spawn(command);
    program
        .line("@ ready", Duration::from_secs(20))
        .expect("the program started");
    program
}

#[test]
fn audit_finds_connections_without_keepalive_everywhere_and_sees_attach() {
    let test = "audit_finds_connections_without_keepalive_everywhere_and_sees_attach";
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "auditing every network namespace needs root");
        return;
    }
    if !have(test, "python3") || !have(test, "unshare") {
        return;
    }
    let _here = start(Command::new("python3").args(["-c", PROGRAM]));
    let mut elsewhere = Command::new("unshare");
    elsewhere.args(["--net", "sh", "-c"]).arg(format!(
        "ip link set lo up && exec python3 -c \"{PROGRAM}\""
    ));
    let elsewhere = start(&mut elsewhere);
    let pids = [
        _here.pid(),
        common::descendant_named(elsewhere.pid(), "python3"),
    ];

    let count = "import json, sys\n\
        d = json.load(sys.stdin)\n\
        pids = [int(p) for p in sys.argv[1:]]\n\
        print(' '.join('%d:%d' % (sum(1 for c in d['connections'] if c.get('pid') == p), \
        sum(1 for c in d['connections'] if c.get('pid') == p and not c['keepalive'])) \
        for p in pids))";
    let parsed = |json: &str| {
        let mut child = Command::new("python3")
            .args(["-c", count])
            .args(pids.map(|p| p.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(json.as_bytes())
            .unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout)
            .trim()
            .to_string()
    };
    // Both ends of each program's connection, in its own namespace, without keepalive.
    assert_eq!(parsed(&audit(&["--format", "json"])), "2:2 2:2");

    let metrics = audit(&["--format", "prometheus"]);
    let line = metrics
        .lines()
        .find(|line| line.contains(&format!("process {} (python3)", pids[0])))
        .unwrap_or_else(|| panic!("no sample for {} in:\n{metrics}", pids[0]));
    assert!(
        line.starts_with("keepalive_connections_without_keepalive{group=") && line.ends_with("} 2"),
        "{line}"
    );
    assert!(metrics.contains("# TYPE keepalive_connections_without_keepalive gauge"));

    let text = audit(&["--pid", &pids[0].to_string()]);
    assert!(
        text.contains(&format!("fix: keepalive attach {}", pids[0])),
        "{text}"
    );

    for pid in pids {
        let attached = keepalive_command()
            .args(["attach", "--idle", "61", &pid.to_string()])
            .output()
            .unwrap();
        assert!(attached.status.success(), "{attached:?}");
    }
    assert_eq!(parsed(&audit(&["--format", "json"])), "0:0 0:0");
    assert_eq!(parsed(&audit(&["--all", "--format", "json"])), "2:0 2:0");
}
