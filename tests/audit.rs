//! `keepalive audit` (issue 23): a host's established TCP connections without
//! keepalive, read from the kernel with sock_diag in every network namespace, grouped
//! by unit or process; JSON and Prometheus output parsed here; before and after
//! `keepalive attach` the same connections show without, then with keepalive.

mod common;
#[path = "common/running.rs"]
mod running;

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

/// A process name is the process's own choice (prctl(2) PR_SET_NAME takes any bytes):
/// in the text output its control characters come escaped, so it cannot retitle or
/// clear a terminal or split a line; in the Prometheus output every sample keeps the
/// text format's grammar (a label value escapes `\`, `"` and newline), which a
/// textfile collector needs for the whole file.
#[test]
fn a_hostile_process_name_cannot_break_audits_output() {
    let test = "a_hostile_process_name_cannot_break_audits_output";
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "reading another process's sockets needs root");
        return;
    }
    if !have(test, "python3") {
        return;
    }
    let named = format!(
        "import ctypes\n\
         ctypes.CDLL(None).prctl(15, b'\\x1b]0;x\\x07\\n\"q\\\\\\x1b[2J', 0, 0, 0)\n{PROGRAM}"
    );
    let program = start(Command::new("python3").args(["-c", &named]));
    let pid = program.pid().to_string();
    let text = audit(&["--pid", &pid]);
    assert!(text.contains("connections"), "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the terminal: {text:?}"
    );
    assert!(
        text.lines()
            .all(|line| line.starts_with("process ") || line.starts_with("  ")),
        "{text:?}"
    );
    let metrics = audit(&["--format", "prometheus", "--pid", &pid]);
    let samples: Vec<&str> = metrics.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(samples.len(), 1, "{metrics:?}");
    for sample in samples {
        assert!(is_sample(sample), "not a text-format sample: {sample:?}");
    }
}

/// `keepalive_connections_without_keepalive{group="VALUE"} N`, VALUE with no raw `"`
/// or newline, and `\` only before `\`, `"` or `n` (Prometheus exposition format).
fn is_sample(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("keepalive_connections_without_keepalive{group=\"") else {
        return false;
    };
    let mut chars = rest.chars();
    loop {
        match chars.next() {
            Some('\\') if matches!(chars.next(), Some('\\' | '"' | 'n')) => {}
            Some('\\' | '\n') | None => return false,
            Some('"') => break,
            Some(_) => {}
        }
    }
    let tail: String = chars.collect();
    tail.strip_prefix("} ")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Not root: a network namespace the command cannot enter is left out and said so on
/// stderr; the user's connections in its own namespace are still audited.
#[test]
fn audit_as_a_user_leaves_out_the_namespaces_it_cannot_enter() {
    let test = "audit_as_a_user_leaves_out_the_namespaces_it_cannot_enter";
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip(
            test,
            "starting a user's program in a namespace of its own needs root",
        );
        return;
    }
    if !have(test, "setpriv") || !have(test, "unshare") {
        return;
    }
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    let here =
        start(
            Command::new("setpriv")
                .args(nobody)
                .args(["/usr/bin/python3", "-c", PROGRAM]),
        );
    let mut elsewhere = Command::new("unshare");
    elsewhere.args(["--net", "sh", "-c"]).arg(format!(
        "ip link set lo up && exec setpriv {} /usr/bin/python3 -c \"{PROGRAM}\"",
        nobody.join(" ")
    ));
    let (_elsewhere, elsewhere_pid) = running::start(&mut elsewhere);
    let output = Command::new("setpriv")
        .args(nobody)
        .arg(common::keepalive())
        .args(["audit", "--format", "json"])
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("left out"), "{stderr}");
    assert_eq!(
        stdout.matches(&format!("\"pid\":{}", here.pid())).count(),
        2,
        "{stdout}"
    );
    // Re-review of issue 23, finding 11: every object has its `pid`, null where no
    // process could be named.
    let keyed = running::python_reads(
        "import json, sys; print(all('pid' in c for c in json.load(sys.stdin)['connections']))",
        &stdout,
    );
    assert_eq!(keyed, "True", "{stdout}");

    // Finding 4: root's program in a namespace of its own is out of a user's sight;
    // audit says so rather than nothing, and `--pid` of it, or of no process, is no
    // all-clear.
    let mut roots = Command::new("unshare");
    roots.args(["--net", "sh", "-c"]).arg(format!(
        "ip link set lo up && exec /usr/bin/python3 -c \"{PROGRAM}\""
    ));
    let (_roots, roots_pid) = running::start(&mut roots);
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(nobody)
            .arg(common::keepalive())
            .arg("audit")
            .args(args)
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let output = as_nobody(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not be looked into"), "{stderr}");
    // The user's own process in a namespace the user cannot enter is no all-clear
    // either (this session's review, low-15).
    for pid in [
        roots_pid.to_string().as_str(),
        elsewhere_pid.to_string().as_str(),
        "999999999",
    ] {
        let output = as_nobody(&["--pid", pid]);
        assert_eq!(output.status.code(), Some(1), "--pid {pid}: {output:?}");
    }
}

/// What a program set up itself (here a user timeout on its client end) is its own:
/// `attach` leaves it alone, so audit names it, counts it in a gauge of its own, and
/// offers no attach for it.
#[test]
fn audit_offers_no_attach_for_what_a_program_set_up_itself() {
    let test = "audit_offers_no_attach_for_what_a_program_set_up_itself";
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "reading another process's sockets needs root");
        return;
    }
    if !have(test, "python3") {
        return;
    }
    let own = PROGRAM.replace(
        "c = socket.create_connection(l.getsockname())",
        "c = socket.socket(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000)\n\
         c.connect(l.getsockname())",
    );
    let program = start(Command::new("python3").args(["-c", &own]));
    let pid = program.pid().to_string();
    let json = audit(&["--format", "json", "--pid", &pid]);
    assert_eq!(
        json.matches("\"set_by_program\":\"TCP_USER_TIMEOUT")
            .count(),
        1,
        "{json}"
    );
    let metrics = audit(&["--format", "prometheus", "--pid", &pid]);
    let group = format!("{{group=\"process {pid} (python3)\"}}");
    for sample in [
        format!("keepalive_connections_without_keepalive{group} 2"),
        format!("keepalive_connections_set_by_program{group} 1"),
    ] {
        assert!(
            metrics.lines().any(|line| line == sample),
            "{sample}: {metrics}"
        );
    }
    let text = audit(&["--pid", &pid]);
    assert!(
        text.contains(&format!("fix: keepalive attach {pid}")),
        "{text}"
    );
    let attached = keepalive_command()
        .args(["attach", "--idle", "61", &pid])
        .output()
        .unwrap();
    assert!(attached.status.success(), "{attached:?}");
    let text = audit(&["--pid", &pid]);
    assert!(
        text.contains("1 without keepalive (1 of them set up by the program itself")
            && text.contains("no fix from outside")
            && !text.contains("fix: keepalive attach"),
        "{text}"
    );
}
