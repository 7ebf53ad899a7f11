//! The library's lines on stderr, tested as a matrix (issue 14): every kind of fd 2 ×
//! every state of the signals a write can raise × every moment the library writes.
//!
//! The matrix is data: [`KINDS`] (with the line each kind must get), [`STATES`] and
//! [`MOMENTS`], whose product is every cell, less the cells [`NOT_APPLICABLE`] names
//! with the reason. Each cell runs the C harness (tests/support/stderr_matrix.c) twice,
//! without and with the library preloaded, and asserts both halves of the first law:
//! everything the program can observe of itself is the same in both runs (how it
//! ended: exit, signal, stop or hang; its pending, thread-pending, blocked, ignored
//! and caught signal sets at `main` and after its `socket()`; the signals its
//! handlers caught; errno at `main` and after the successful call; which fds are open
//! and the file status flags of fds 0-2), and the line arrived exactly where the rules
//! say: once where it must, never where it must not, never on stdout or in the
//! report, and never without the library. Every cell runs; the failures are reported
//! together at the end, each with its coordinates and both observations.
//!
//! A pending signal drops the line only on kinds whose write can raise one (see
//! [`Raises`]): a send with MSG_NOSIGNAL raises nothing, so sockets get their line.
//!
//! The file kinds need root: their file systems are sparse images on loop devices,
//! mounted for the run and unmounted and detached afterwards, even when it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const NAME: &str = "every_cell_of_the_stderr_matrix";

/// When the library writes its line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// In its constructor, before `main`: a warning about a bad value.
    Load,
    /// Inside the program's `socket(AF_INET, SOCK_STREAM, 0)`, with debug on.
    Socket,
}

const MOMENTS: [Moment; 2] = [Moment::Load, Moment::Socket];

impl Moment {
    fn arg(self) -> &'static str {
        match self {
            Moment::Load => "load",
            Moment::Socket => "socket",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Moment::Load => "a warning at load",
            Moment::Socket => "a debug line inside socket()",
        }
    }
}

/// What the program did with SIGPIPE, SIGXFSZ and SIGTTOU, all three alike. At load
/// the harness sets it before execve, which keeps masks, ignored signals and pending
/// signals; for `socket()` the program sets it at `main`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Default,
    /// Blocked, with one pending for the process (`kill` to itself).
    BlockedProcess,
    /// Blocked, with one pending for the thread (`tgkill` to itself).
    BlockedThread,
    Ignored,
    /// A handler that counts what it catches.
    Handled,
}

const STATES: [State; 5] = [
    State::Default,
    State::BlockedProcess,
    State::BlockedThread,
    State::Ignored,
    State::Handled,
];

impl State {
    fn arg(self) -> &'static str {
        match self {
            State::Default => "default",
            State::BlockedProcess => "blocked-process",
            State::BlockedThread => "blocked-thread",
            State::Ignored => "ignored",
            State::Handled => "handled",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            State::Default => "signals default",
            State::BlockedProcess => "signals blocked, one pending for the process",
            State::BlockedThread => "signals blocked, one pending for the thread",
            State::Ignored => "signals ignored",
            State::Handled => "signals handled",
        }
    }

    /// Whether one of the signals is pending when the library writes: then a write
    /// that could raise one is not made (rule R2).
    fn pending(self) -> bool {
        matches!(self, State::BlockedProcess | State::BlockedThread)
    }
}

/// Cells that cannot exist, and why.
const NOT_APPLICABLE: [(State, Moment, &str); 1] = [(
    State::Handled,
    Moment::Load,
    "execve resets every handled signal to its default action, so no program can have \
     a handler when the library's constructor writes",
)];

/// A file system for the file kinds, on a loop device (tmpfs needs none).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fs {
    Ext4,
    Xfs,
    Btrfs,
    Tmpfs,
}

impl Fs {
    const ALL: [Fs; 4] = [Fs::Ext4, Fs::Xfs, Fs::Btrfs, Fs::Tmpfs];

    /// mkfs and the size of its sparse image; `None` for tmpfs. XFS refuses file
    /// systems under 300 MB, and btrfs wants more than 109 MiB.
    fn mkfs(self) -> Option<(&'static str, &'static [&'static str], u64)> {
        const MIB: u64 = 1 << 20;
        match self {
            Fs::Ext4 => Some(("mkfs.ext4", &["-q", "-F"], 64 * MIB)),
            Fs::Xfs => Some(("mkfs.xfs", &["-q", "-f"], 320 * MIB)),
            Fs::Btrfs => Some(("mkfs.btrfs", &["-q", "-f"], 256 * MIB)),
            Fs::Tmpfs => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
            Fs::Btrfs => "btrfs",
            Fs::Tmpfs => "tmpfs",
        }
    }
}

/// What must reach fd 2's other end when the library writes (rule R1).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Arrives,
    Dropped,
    /// Nothing can be read back; the cell still checks that the program is unaffected.
    Unseen,
}

use Line::{Arrives, Dropped, Unseen};

/// The signal a write to fd 2 can raise. One already pending drops the line (rule R2):
/// the write's own could not be told from it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Raises {
    /// Sockets are sent to with MSG_NOSIGNAL; /dev/null and a closed fd raise nothing.
    Nothing,
    Sigttou,
    Sigpipe,
    Sigxfsz,
}

use Raises::{Nothing, Sigpipe, Sigttou, Sigxfsz};

/// One kind of fd 2.
struct Kind {
    name: &'static str,
    /// The harness's name for it.
    arg: &'static str,
    raises: Raises,
    /// The line when none of the signals is pending: at load, and inside `socket()`.
    line: [Line; 2],
    /// For a regular file: the file system it lives on; `None` for the test's scratch
    /// directory.
    fs: Option<Fs>,
}

const fn kind(name: &'static str, arg: &'static str, raises: Raises, line: [Line; 2]) -> Kind {
    Kind {
        name,
        arg,
        raises,
        line,
        fs: None,
    }
}

const fn file(name: &'static str, fs: Fs) -> Kind {
    Kind {
        fs: Some(fs),
        ..kind(name, "file", Sigxfsz, [Arrives; 2])
    }
}

/// fd 2's kinds and the line each gets, by rule R1: one row per kind.
#[rustfmt::skip]
const KINDS: [Kind; 21] = [
    //   name                                  harness's name           raises   [load, socket()]
    kind("terminal, foreground",               "tty-foreground",        Sigttou, [Arrives; 2]),
    kind("terminal, background",               "tty-background",        Sigttou, [Arrives; 2]),
    // The terminal's owner asked background jobs not to write.
    kind("terminal, background, tostop",       "tty-background-tostop", Sigttou, [Dropped; 2]),
    kind("pipe with a reader",                 "pipe-live",             Sigpipe, [Arrives; 2]),
    // The line would have to wait for room.
    kind("full pipe",                          "pipe-full",             Sigpipe, [Dropped; 2]),
    kind("pipe without a reader",              "pipe-dead",             Sigpipe, [Unseen; 2]),
    // Any socket but an AF_UNIX stream carries the program's data.
    kind("TCP connection",                     "tcp",                   Nothing, [Dropped; 2]),
    // The program's peer: an accepted connection carries its listener's name.
    kind("accepted AF_UNIX, fd 2",             "unix-accepted-2",       Nothing, [Dropped; 2]),
    kind("accepted AF_UNIX, fds 1-2",          "unix-accepted-12",      Nothing, [Dropped; 2]),
    kind("accepted AF_UNIX, fds 0-2",          "unix-accepted-012",     Nothing, [Dropped; 2]),
    // journald's shape: a systemd service's default stderr.
    kind("AF_UNIX client of a named listener", "unix-client",           Nothing, [Arrives; 2]),
    kind("socketpair end",                     "socketpair",            Nothing, [Arrives; 2]),
    // Only a stream is a byte stream a line can join; messages are the program's own.
    kind("AF_UNIX datagram socketpair end",    "socketpair-dgram",      Nothing, [Dropped; 2]),
    kind("AF_UNIX seqpacket socketpair end",   "socketpair-seqpacket",  Nothing, [Dropped; 2]),
    file("regular file on ext4",  Fs::Ext4),
    file("regular file on XFS",   Fs::Xfs),
    file("regular file on btrfs", Fs::Btrfs),
    file("regular file on tmpfs", Fs::Tmpfs),
    // Appended to, already past RLIMIT_FSIZE: the write fails with EFBIG.
    kind("regular file past RLIMIT_FSIZE",     "file-fsize",            Sigxfsz, [Dropped; 2]),
    kind("/dev/null",                          "devnull",               Nothing, [Unseen; 2]),
    kind("closed",                             "closed",                Nothing, [Unseen; 2]),
];

/// One cell: its coordinates and the line the library must write.
struct Cell {
    kind: &'static Kind,
    state: State,
    moment: Moment,
}

impl Cell {
    fn expected(&self) -> Line {
        match self.kind.line[self.moment as usize] {
            Arrives if self.state.pending() && self.kind.raises != Nothing => Dropped,
            line => line,
        }
    }

    fn coordinates(&self) -> String {
        format!(
            "fd 2 = {} × {} × {}",
            self.kind.name,
            self.state.describe(),
            self.moment.describe()
        )
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
    let mut cells = Vec::new();
    let mut not_applicable = 0;
    for kind in &KINDS {
        for state in STATES {
            for moment in MOMENTS {
                if NOT_APPLICABLE
                    .iter()
                    .any(|&(s, m, _)| (s, m) == (state, moment))
                {
                    not_applicable += 1;
                } else {
                    cells.push(Cell {
                        kind,
                        state,
                        moment,
                    });
                }
            }
        }
    }
    for (state, moment, why) in NOT_APPLICABLE {
        eprintln!(
            "not applicable: {} × {}: {why}",
            state.describe(),
            moment.describe()
        );
    }

    let (failures, unavailable) = {
        let mounts = Mounts::new(&scratch.join("mounts"));
        let failures = run_cells(&cells, &harness, library, &scratch, &mounts);
        (failures, mounts.unavailable.clone())
    };

    let skipped: Vec<&Cell> = cells
        .iter()
        .filter(|cell| {
            cell.kind
                .fs
                .is_some_and(|fs| unavailable.iter().any(|(f, _)| *f == fs))
        })
        .collect();
    eprintln!(
        "stderr matrix: {} cells ({} kinds × {} signal states × {} moments, {} not applicable), \
         {} run, {} failed, {} skipped",
        cells.len(),
        KINDS.len(),
        STATES.len(),
        MOMENTS.len(),
        not_applicable,
        cells.len() - skipped.len(),
        failures.len(),
        skipped.len()
    );
    let _ = std::fs::remove_dir_all(&scratch);
    for (fs, why) in &unavailable {
        common::skip(NAME, &format!("the cells on {}: {why}", fs.name()));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n")
    );
}

/// Runs every cell whose file system is available, a few at a time (most of a cell's
/// time is spent waiting for processes), and returns the failure reports in table
/// order.
fn run_cells(
    cells: &[Cell],
    harness: &Path,
    library: &Path,
    scratch: &Path,
    mounts: &Mounts,
) -> Vec<String> {
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
                    let dir = match cell.kind.fs {
                        Some(fs) => match mounts.dir(fs) {
                            Some(dir) => dir,
                            None => continue,
                        },
                        None => scratch,
                    };
                    let run = |library: Option<&Path>, half: &str| {
                        let report = scratch.join(format!("cell-{index}-{half}.report"));
                        run_once(harness, cell, library, dir, &report)
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
        .args([cell.kind.arg, cell.state.arg(), cell.moment.arg()])
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

/// The file systems of the file kinds, mounted under `root` for the test's life:
/// sparse images on loop devices (tmpfs needs none). Dropping it unmounts them and
/// detaches the loop devices, also when the test fails.
struct Mounts {
    root: PathBuf,
    mounted: Vec<(Fs, PathBuf, Option<String>)>,
    /// The file systems that could not be mounted here, and why.
    unavailable: Vec<(Fs, String)>,
}

impl Mounts {
    fn new(root: &Path) -> Mounts {
        clean_up_after_dead_runs();
        let mut mounts = Mounts {
            root: root.to_path_buf(),
            mounted: Vec::new(),
            unavailable: Vec::new(),
        };
        for fs in Fs::ALL {
            if let Err(why) = mounts.mount(fs) {
                mounts.unavailable.push((fs, why));
            }
        }
        mounts
    }

    fn dir(&self, fs: Fs) -> Option<&Path> {
        self.mounted
            .iter()
            .find(|(f, _, _)| *f == fs)
            .map(|(_, dir, _)| dir.as_path())
    }

    fn mount(&mut self, fs: Fs) -> Result<(), String> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("mounting a file system needs root".into());
        }
        let dir = self.root.join(fs.name());
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let Some((mkfs, flags, size)) = fs.mkfs() else {
            run(Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=16m", "stderr-matrix"])
                .arg(&dir))?;
            self.mounted.push((fs, dir, None));
            return Ok(());
        };
        let image = self.root.join(format!("{}.img", fs.name()));
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(size))
            .map_err(|e| format!("{}: {e}", image.display()))?;
        run(Command::new(mkfs).args(flags).arg(&image))?;
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image))?;
        let device = device.trim().to_string();
        if let Err(why) = run(Command::new("mount").arg(&device).arg(&dir)) {
            let _ = run(Command::new("losetup").args(["-d", &device]));
            return Err(why);
        }
        self.mounted.push((fs, dir, Some(device)));
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for (_, dir, device) in self.mounted.drain(..).rev() {
            if run(Command::new("umount").arg(&dir)).is_err() {
                let _ = run(Command::new("umount").arg("-l").arg(&dir));
            }
            if let Some(device) = device {
                let _ = run(Command::new("losetup").args(["-d", &device]));
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Unmounts and detaches what a run that was killed (and so never dropped its
/// [`Mounts`]) left behind, and removes its scratch directory.
fn clean_up_after_dead_runs() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("stderr_matrix.")
            .filter(|pid| pid.parse::<u32>().is_ok())
        else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let dir = entry.path();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for mount_point in mounts.lines().filter_map(|line| line.split(' ').nth(1)) {
            if Path::new(mount_point).starts_with(&dir) {
                let _ = run(Command::new("umount").arg("-l").arg(mount_point));
            }
        }
        for fs in Fs::ALL {
            let image = dir.join("mounts").join(format!("{}.img", fs.name()));
            let attached = run(Command::new("losetup").arg("-j").arg(&image)).unwrap_or_default();
            for device in attached.lines().filter_map(|line| line.split(':').next()) {
                let _ = run(Command::new("losetup").args(["-d", device]));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Runs a setup command; its standard output, or what went wrong.
fn run(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{shown}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    }
}
