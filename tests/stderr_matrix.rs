//! The library's one line at load, tested as a matrix: every kind of fd 2 × every
//! state of the signals a write can raise.
//!
//! The matrix is data: [`KINDS`] (with whether the line arrives) and [`STATES`], whose
//! product is every cell, less the cells [`NOT_APPLICABLE`] names with the reason.
//! Each cell runs the C harness (tests/support/stderr_matrix.c) twice, without and
//! with the library preloaded and a refused value in the environment, and asserts
//! both halves of the first law: everything the program can observe of itself is the
//! same in both runs (how it ended: exit, signal, stop or hang; its pending,
//! thread-pending, blocked, ignored and caught signal sets at `main` and after its
//! `socket()`; errno at `main` and after the
//! successful call; which fds are open and the file status flags of fds 0-2), and the
//! line arrived exactly where src/report.rs's rule says: once on an AF_UNIX stream
//! this process connected, never anywhere else, never on stdout or in the report, and
//! never without the library. Every cell runs; the failures are reported together at
//! the end, each with its coordinates and both observations.
//!
//! The line is only ever sent with MSG_NOSIGNAL to an AF_UNIX stream, which raises
//! nothing: no signal state drops it. Nothing is written after load at all: that is
//! tests/quiet.rs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const NAME: &str = "every_cell_of_the_stderr_matrix";

/// What the program did with SIGPIPE, SIGXFSZ and SIGTTOU, all three alike, set by
/// the harness before execve, which keeps masks, ignored signals and pending signals.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Default,
    /// Blocked, with one pending for the process (`kill` to itself).
    BlockedProcess,
    /// Blocked, with one pending for the thread (`tgkill` to itself).
    BlockedThread,
    Ignored,
}

const STATES: [State; 4] = [
    State::Default,
    State::BlockedProcess,
    State::BlockedThread,
    State::Ignored,
];

impl State {
    fn arg(self) -> &'static str {
        match self {
            State::Default => "default",
            State::BlockedProcess => "blocked-process",
            State::BlockedThread => "blocked-thread",
            State::Ignored => "ignored",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            State::Default => "signals default",
            State::BlockedProcess => "signals blocked, one pending for the process",
            State::BlockedThread => "signals blocked, one pending for the thread",
            State::Ignored => "signals ignored",
        }
    }
}

/// What must reach fd 2's other end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Arrives,
    Dropped,
    /// Nothing can be read back; the cell still checks that the program is unaffected.
    Unseen,
}

use Line::{Arrives, Dropped, Unseen};

/// One kind of fd 2.
struct Kind {
    name: &'static str,
    /// The harness's name for it.
    arg: &'static str,
    line: Line,
}

const fn kind(name: &'static str, arg: &'static str, line: Line) -> Kind {
    Kind { name, arg, line }
}

/// fd 2's kinds and the line each gets, by src/report.rs's rule: one row per kind.
#[rustfmt::skip]
const KINDS: [Kind; 17] = [
    //   name                                  harness's name           line
    // No write to a terminal can promise not to wait (flow control) or signal (SIGTTOU).
    kind("terminal, foreground",               "tty-foreground",        Dropped),
    kind("terminal, background",               "tty-background",        Dropped),
    kind("terminal, background, tostop",       "tty-background-tostop", Dropped),
    // Nor to a pipe (its lock, SIGPIPE).
    kind("pipe with a reader",                 "pipe-live",             Dropped),
    kind("full pipe",                          "pipe-full",             Dropped),
    kind("pipe without a reader",              "pipe-dead",             Unseen),
    // Any socket but an AF_UNIX stream carries the program's data.
    kind("TCP connection",                     "tcp",                   Dropped),
    // The program's peer: an accepted connection carries its listener's name.
    kind("accepted AF_UNIX, fd 2",             "unix-accepted-2",       Dropped),
    kind("accepted AF_UNIX, fds 1-2",          "unix-accepted-12",      Dropped),
    kind("accepted AF_UNIX, fds 0-2",          "unix-accepted-012",     Dropped),
    // journald's shape: a systemd service's default stderr.
    kind("AF_UNIX client of a named listener", "unix-client",           Arrives),
    // A socketpair has no name at either end: a parent's pipe for its child's stdio
    // (Node's child_process, libuv), so the program's data.
    kind("socketpair end",                     "socketpair",            Dropped),
    // Only a stream is a byte stream a line can join; messages are the program's own.
    kind("AF_UNIX datagram socketpair end",    "socketpair-dgram",      Dropped),
    kind("AF_UNIX seqpacket socketpair end",   "socketpair-seqpacket",  Dropped),
    // Nor to a file (its inode lock; frozen, network or FUSE file systems; quotas).
    kind("regular file",                       "file",                  Dropped),
    kind("/dev/null",                          "devnull",               Unseen),
    kind("closed",                             "closed",                Unseen),
];

/// One cell: its coordinates.
struct Cell {
    kind: &'static Kind,
    state: State,
}

impl Cell {
    fn expected(&self) -> Line {
        self.kind.line
    }

    fn coordinates(&self) -> String {
        format!("fd 2 = {} × {}", self.kind.name, self.state.describe())
    }
}

/// What one run reported: the harness's key=value lines, and anything else that
/// appeared where it must not, under keys starting with `problem`.
type Observed = BTreeMap<String, String>;

/// Keys that must be the same with and without the library.
fn observable(key: &str) -> bool {
    ["main.", "after.", "probe.", "tty.", "status"]
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

#[test]
fn every_cell_of_the_stderr_matrix() {
    let Some(harness) = common::c_program("stderr_matrix", NAME) else {
        return;
    };
    let library = common::shim();
    let scratch = scratch_dir();
    let cells: Vec<Cell> = KINDS
        .iter()
        .flat_map(|kind| STATES.map(|state| Cell { kind, state }))
        .collect();
    let failures = run_cells(&cells, &harness, library, &scratch);
    eprintln!(
        "stderr matrix: {} cells ({} kinds × {} signal states), {} failed",
        cells.len(),
        KINDS.len(),
        STATES.len(),
        failures.len(),
    );
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n")
    );
}

/// Runs every cell, a few at a time (most of a cell's time is spent waiting for
/// processes), and returns the failure reports in table order.
fn run_cells(cells: &[Cell], harness: &Path, library: &Path, scratch: &Path) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(cell) = cells.get(index) else {
                        break;
                    };
                    let run = |library: Option<&Path>, half: &str| {
                        let report = scratch.join(format!("cell-{index}-{half}.report"));
                        run_once(harness, cell, library, scratch, &report)
                    };
                    let without = run(None, "without");
                    let with = run(Some(library), "with");
                    let problems = judge(cell, &without, &with);
                    if !problems.is_empty() {
                        let text = describe_failure(cell, &problems, &without, &with);
                        failures.lock().unwrap().push((index, text));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    failures.into_iter().map(|(_, text)| text).collect()
}

/// The test's own directory under the target's scratch space, empty.
fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stderr_matrix.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Longer than any cell can take: the harness gives up on a probe after 10 s and on
/// the terminal after 5 s more. Only a broken harness reaches it.
const HARNESS_LIMIT: Duration = Duration::from_secs(60);

/// Runs one half of a cell and returns what it reported.
fn run_once(
    harness: &Path,
    cell: &Cell,
    library: Option<&Path>,
    dir: &Path,
    report: &Path,
) -> Observed {
    std::fs::write(report, "").expect("create report");
    let mut command = Command::new(harness);
    command
        .arg("cell")
        .arg(report)
        .args([cell.kind.arg, cell.state.arg()])
        .arg(library.map_or_else(|| "-".into(), |l| l.as_os_str().to_owned()))
        .arg(dir)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in common::VARIABLES {
        command.env_remove(name);
    }
    let mut observed = Observed::new();
    let mut child = command.spawn().expect("run the stderr_matrix harness");
    let deadline = Instant::now() + HARNESS_LIMIT;
    while child.try_wait().expect("wait for the harness").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            observed.insert("problem.harness".into(), "did not finish".into());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().expect("harness output");
    if !output.status.success() {
        observed.insert("problem.harness".into(), format!("{}", output.status));
    }
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !printed.is_empty() {
        observed.insert(
            "problem.harness output".into(),
            printed.escape_debug().to_string(),
        );
    }
    let text = std::fs::read_to_string(report).expect("read report");
    for (n, line) in text.lines().enumerate() {
        // The harness quotes a line it read back as KEY.first; anywhere else, a line
        // is one written into the report, which the program holds as one of its fds.
        let pair = line
            .split_once('=')
            .filter(|(key, _)| key.ends_with(".first") || !line.contains("libkeepalive:"));
        match pair {
            Some((key, value)) => {
                observed.insert(key.into(), value.into());
            }
            None => {
                observed.insert(format!("problem.report line {n}"), line.into());
            }
        }
    }
    let _ = std::fs::remove_file(report);
    observed
}

/// Everything wrong with one cell; empty when it passes.
fn judge(cell: &Cell, without: &Observed, with: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    for (half, observed) in [("without", without), ("with", with)] {
        for (key, value) in observed {
            if key.starts_with("problem") || key.starts_with("error") {
                problems.push(format!("{half} the library: {key}: {value}"));
            }
        }
    }
    // Without the library the program always runs to its end: anything else is the
    // harness's fault, and makes the comparison meaningless.
    let get = |observed: &Observed, key: &str| observed.get(key).cloned().unwrap_or_default();
    if get(without, "status") != "exit 0" || get(without, "probe.done") != "1" {
        problems.push("the program did not run to its end without the library".into());
    }
    if cell.kind.arg.starts_with("tty-") {
        let foreground = u8::from(cell.kind.arg == "tty-foreground").to_string();
        if get(without, "tty.foreground") != foreground {
            problems.push(format!(
                "the harness put the job in the wrong process group: tty.foreground should be \
                 {foreground}"
            ));
        }
    }
    // A program that ended early (killed, stopped, hung) reports nothing after that:
    // one problem names what is missing, rather than one per key.
    let mut missing = Vec::new();
    let keys: BTreeSet<&String> = without.keys().chain(with.keys()).collect();
    for key in keys.into_iter().filter(|key| observable(key)) {
        match (without.get(key), with.get(key)) {
            (Some(_), None) => missing.push(key.as_str()),
            (a, b) if a != b => problems.push(format!(
                "{key} differs: without {} / with {}",
                a.map_or("(none)", String::as_str),
                b.map_or("(none)", String::as_str)
            )),
            _ => {}
        }
    }
    if !missing.is_empty() {
        problems.push(format!(
            "never observed with the library: {}",
            missing.join(", ")
        ));
    }
    let count = |observed: &Observed, key: &str| {
        get(observed, &format!("{key}.count"))
            .parse::<u32>()
            .unwrap_or(0)
    };
    if count(without, "line") != 0 {
        problems.push("a line arrived without the library".into());
    }
    for (half, observed) in [("without", without), ("with", with)] {
        if count(observed, "stdout") != 0 {
            problems.push(format!(
                "a line arrived on stdout (fd 1) {half} the library"
            ));
        }
    }
    match (cell.expected(), count(with, "line")) {
        (Arrives, 0) => problems.push("the line did not arrive".into()),
        (Arrives, n) if n > 1 => {
            problems.push(format!("the line arrived {n} times, not once"));
        }
        (Dropped, n) if n > 0 => problems.push(format!(
            "{n} line(s) arrived where the rules drop them: {}",
            get(with, "line.first")
        )),
        _ => {}
    }
    problems
}

fn describe_failure(
    cell: &Cell,
    problems: &[String],
    without: &Observed,
    with: &Observed,
) -> String {
    let mut text = format!("FAIL {}\n", cell.coordinates());
    for problem in problems {
        text += &format!("  - {problem}\n");
    }
    text += "  observed (without the library | with it):\n";
    let keys: BTreeSet<&String> = without.keys().chain(with.keys()).collect();
    for key in keys {
        let (a, b) = (without.get(key), with.get(key));
        let mark = if a == b { " " } else { "*" };
        text += &format!(
            "   {mark} {key}: {} | {}\n",
            a.map_or("(none)", String::as_str),
            b.map_or("(none)", String::as_str)
        );
    }
    text
}
