//! A real systemd as PID 1: a throw-away `systemd-nspawn` container booted from the
//! host's own `/usr`, with the checkout's `target/` directory visible inside at
//! [`TARGET`]. Tests write units into it, start them, and look at their connections with
//! `ss` from inside, as an operator on that machine would.
//!
//! The host here has no systemd of its own, and the containers share one cgroup
//! (`payload`), so only one may run at a time: [`Container::boot`] takes an exclusive
//! lock that serialises containers across test binaries and the threads of one binary.
//! Everything is undone on drop, also when the test panics, and every step is bounded.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where the checkout's `target/` directory appears inside the container (read-only):
/// the library is `/opt/keepalive/release/libkeepalive.so`.
pub const TARGET: &str = "/opt/keepalive";

/// Held while a container runs; a flock(2) lock, released when its file is closed,
/// including by the kernel when a test process dies.
const LOCK: &str = "/run/lock/libkeepalive-nspawn.lock";

/// How long any one command inside the container may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A booted container. Powered off, and the host cleaned up, on drop.
pub struct Container {
    nspawn: Child,
    /// The container's PID 1 as the host numbers it; 0 until it is found.
    pid1: libc::pid_t,
    name: String,
    log: PathBuf,
    // Dropped last (fields drop in declaration order, after `Drop::drop`): the next
    // container may boot only once this one is gone.
    _lock: File,
}

impl Container {
    /// Boots a container and waits until its systemd has finished starting up, or says
    /// by name why `test` cannot run here and returns `None`.
    pub fn boot(test: &str) -> Option<Container> {
        Container::boot_with(test, &[])
    }

    /// [`Container::boot`], with `extra` arguments for systemd-nspawn (capabilities or
    /// system calls a test's units need).
    pub fn boot_with(test: &str, extra: &[&str]) -> Option<Container> {
        Container::boot_in(test, extra, &[])
    }

    /// [`Container::boot_with`], with variables for systemd-nspawn itself:
    /// `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0` gives the container systemd's legacy cgroup
    /// layout (cgroup v1 only), as on an older distribution.
    pub fn boot_in(test: &str, extra: &[&str], env: &[(&str, &str)]) -> Option<Container> {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            super::skip(test, "systemd-nspawn needs root");
            return None;
        }
        if !super::have(test, "systemd-nspawn") || !super::have(test, "nsenter") {
            return None;
        }
        let target = super::shim()
            .parent()
            .and_then(Path::parent)
            .expect("the library lies in <target>/release")
            .to_path_buf();
        let lock = lock(LOCK, Duration::from_secs(600));
        clean_host();

        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "libkeepalive-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
        let console = File::create(&log).expect("create the container's console log");
        let mut command = Command::new("systemd-nspawn");
        clean_env(&mut command);
        command.envs(env.iter().copied());
        command
            // The host's own /usr under an empty tmpfs root: nothing on the host is
            // written, and /etc starts empty.
            .args(["-D", "/", "--volatile=yes", "-b"])
            // Its own loopback: ports never clash with the host's.
            .arg("--private-network")
            // There is no systemd on the host to register with.
            .args(["--register=no", "--keep-unit", "--console=pipe"])
            .args(["-M", &name])
            .arg(format!("--bind-ro={}:{TARGET}", target.display()))
            .args(extra)
            // Arguments for the container's systemd. Booting to the default target
            // would start every service installed on the host (on a first boot, with
            // /etc empty, presets enable them all), nginx, sshd and a two-minute wait
            // for a network that never comes among them; basic.target is the system
            // without them.
            .args(["--", "systemd.unit=basic.target"])
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup the console log"))
            .stderr(console);
        let nspawn = command.spawn().expect("spawn systemd-nspawn");
        let mut container = Container {
            pid1: 0,
            nspawn,
            name,
            log,
            _lock: lock,
        };
        container.pid1 = container.find_pid1(Duration::from_secs(30));
        container.wait_until_started(Duration::from_secs(90));
        Some(container)
    }

    /// The container's PID 1: the child of `systemd-nspawn` once it has become
    /// `systemd`.
    fn find_pid1(&mut self, timeout: Duration) -> libc::pid_t {
        let parent = self.nspawn.id();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pid) = child_named(parent, "systemd") {
                return pid;
            }
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited ({status}) {}", self.console());
            }
            assert!(
                Instant::now() < deadline,
                "no systemd under systemd-nspawn after {timeout:?} {}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `systemctl is-system-running` until start-up is over: `running`, or
    /// `degraded` (normal here: `systemd-firstboot.service` fails on the empty /etc).
    fn wait_until_started(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            match state.as_str() {
                "running" | "degraded" => return,
                // "offline": the manager does not answer yet.
                "offline" | "initializing" | "starting" | "" => {}
                other => panic!("the container's systemd is {other:?} {}", self.console()),
            }
            assert!(
                Instant::now() < deadline,
                "the container's systemd still {state:?} after {timeout:?}\n{}",
                self.run_text(&["systemctl", "list-jobs", "--no-pager"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `args` inside the container (all its namespaces), with a clean environment
    /// and bounded by [`COMMAND_TIMEOUT`].
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// Runs `args` inside and returns its stdout; panics, with what it said, when it
    /// fails.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?} inside the container: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What `args` printed inside, stdout and stderr, whatever its exit status: for
    /// failure messages.
    pub fn run_text(&self, args: &[&str]) -> String {
        let output = self.run(args);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// The command that runs `args` in the container's network and file system, for a
    /// caller that spawns it itself and owns its end (a client that stays connected).
    ///
    /// Unlike [`Container::run`] it stays in the host's PID namespace: nsenter then
    /// execs `args` rather than forking it, so killing the command leaves nothing
    /// behind. A process forked into the container's PID namespace whose nsenter is
    /// killed first is orphaned to the host's init; as a zombie there it still counts
    /// as alive inside, and the container's systemd-shutdown waits ten seconds for it.
    pub fn enter(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        clean_env(&mut command);
        command
            .args(["-t", &self.pid1.to_string(), "--mount", "--net", "--"])
            .args(args);
        command
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("timeout");
        clean_env(&mut command);
        command
            .args(["-k", "5", &COMMAND_TIMEOUT.as_secs().to_string()])
            .args(["nsenter", "-t", &self.pid1.to_string(), "-a", "--"])
            .args(args);
        command
    }

    /// Writes `contents` to `path` inside the container (its root is a tmpfs), making
    /// the directories on the way: a unit under /etc/systemd/system, or a drop-in.
    pub fn write(&self, path: &str, contents: &str) {
        let host = self.host_path(path);
        std::fs::create_dir_all(host.parent().expect("a file path"))
            .unwrap_or_else(|err| panic!("mkdir for {path} in the container: {err}"));
        std::fs::write(&host, contents)
            .unwrap_or_else(|err| panic!("write {path} in the container: {err}"));
    }

    /// Reads `path` inside the container.
    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.host_path(path))
            .unwrap_or_else(|err| panic!("read {path} in the container: {err}"))
    }

    /// `path` inside the container, seen from the host through its PID 1's root.
    fn host_path(&self, path: &str) -> PathBuf {
        let relative = path.strip_prefix('/').expect("an absolute path");
        PathBuf::from(format!("/proc/{}/root", self.pid1)).join(relative)
    }

    /// `systemctl daemon-reload`, then `systemctl start UNITS`; on failure, panics with
    /// each unit's status and journal.
    pub fn start(&self, units: &[&str]) {
        self.run_ok(&["systemctl", "daemon-reload"]);
        let mut args = vec!["systemctl", "start"];
        args.extend_from_slice(units);
        let output = self.run(&args);
        if !output.status.success() {
            let mut why = String::from_utf8_lossy(&output.stderr).into_owned();
            for unit in units {
                why += &self.diagnose(unit);
            }
            panic!("systemctl start {units:?} failed: {why}");
        }
    }

    /// `systemctl status` and the journal of `unit` (a glob such as `echo@*` too), for
    /// failure messages.
    pub fn diagnose(&self, unit: &str) -> String {
        format!(
            "\n--- systemctl status {unit}\n{}\n--- journalctl -u {unit}\n{}",
            self.run_text(&["systemctl", "status", "--no-pager", "--full", unit]),
            self.run_text(&["journalctl", "--no-pager", "-o", "cat", "-u", unit])
        )
    }

    /// The service's main process, as systemd knows it (`None` while it has none).
    pub fn main_pid(&self, unit: &str) -> Option<u32> {
        let pid = self.run_ok(&["systemctl", "show", "-p", "MainPID", "--value", unit]);
        pid.trim().parse().ok().filter(|&pid| pid != 0)
    }

    /// The keepalive timers of the established TCP connections inside the container
    /// matching `filter`, as [`super::ss_keepalive`] reads them on the host.
    pub fn ss_keepalive(&self, filter: &str) -> Vec<Option<Duration>> {
        let output = self.run_ok(&["ss", "-tnoH", "state", "established", filter]);
        super::keepalive_timers(&output)
    }

    /// What the container's console said so far, for failure messages.
    fn console(&self) -> String {
        format!(
            "\n--- console of {} ({})\n{}",
            self.name,
            self.log.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// Asks the container's systemd to power off and waits for `systemd-nspawn` to
    /// exit; kills the container's PID 1 (and with it every process inside) when that
    /// does not happen in time.
    fn power_off(&mut self) {
        let pid1 = self.pid1;
        // PID 1 is unknown (0) when the boot failed before it appeared: then only the
        // nspawn process is there to end. kill(2) on 0 would signal our own group.
        if pid1 == 0 {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
            return;
        }
        if let Ok(None) = self.nspawn.try_wait() {
            // Its exit status is no guide: the manager may drop the bus connection
            // while it begins to shut down ("Connection reset by peer").
            let _ = self.run(&["systemctl", "poweroff", "--no-block"]);
        }
        if wait(&mut self.nspawn, Duration::from_secs(30)) {
            return;
        }
        eprintln!("container {} did not power off; killing it", self.name);
        if parent(pid1) == Some(self.nspawn.id()) {
            // SAFETY: kill(2) on the container's PID 1, still our nspawn's child (so the
            // pid was not reused); SIGKILL to a PID namespace's init kills every
            // process in that namespace.
            unsafe { libc::kill(pid1, libc::SIGKILL) };
        }
        if !wait(&mut self.nspawn, Duration::from_secs(10)) {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.power_off();
        clean_host();
    }
}

/// Waits up to `timeout` for `child` to exit; true when it did.
fn wait(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Takes an exclusive flock(2) on `path`, polling for up to `timeout` (a container of
/// another test may be running).
fn lock(path: &str, timeout: Duration) -> File {
    if let Some(dir) = Path::new(path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|err| panic!("open {path}: {err}"));
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return file;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EWOULDBLOCK),
            "flock {path}: {err}"
        );
        assert!(
            Instant::now() < deadline,
            "{path} still locked after {timeout:?}: another container runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pid of a child of `parent` whose command name is `name`.
fn child_named(parent: u32, name: &str) -> Option<libc::pid_t> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let (comm, ppid) = stat(pid)?;
            (ppid == parent && comm == name).then_some(pid)
        })
}

/// The parent of process `pid`.
fn parent(pid: libc::pid_t) -> Option<u32> {
    stat(pid).map(|(_, ppid)| ppid)
}

/// The command name and parent pid of process `pid`, from /proc/PID/stat (proc(5)).
fn stat(pid: libc::pid_t) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let (head, tail) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1;
    let ppid = tail.split_whitespace().nth(1)?.parse().ok()?;
    Some((comm.to_string(), ppid))
}

/// Without a systemd on the host, systemd-nspawn leaves empty directories behind; each
/// `rmdir` may fail harmlessly (already gone, or a container still uses it).
fn clean_host() {
    for hierarchy in ["systemd", "unified"] {
        let cgroup = format!("/sys/fs/cgroup/{hierarchy}");
        for dir in ["payload/init.scope", "payload", "supervisor"] {
            let _ = std::fs::remove_dir(format!("{cgroup}/{dir}"));
        }
    }
    for dir in [
        "/run/systemd/nspawn/locks",
        "/run/systemd/nspawn/propagate",
        "/run/systemd/nspawn",
        "/run/systemd/nspawn-root",
    ] {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Nothing from the developer's shell reaches the container: no LD_PRELOAD, none of
/// the library's variables.
fn clean_env(command: &mut Command) {
    command.env_clear().env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
}
