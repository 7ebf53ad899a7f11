//! Test hosts on a real network path: two network namespaces joined by a veth pair,
//! and the long-running processes that live in them.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The two ends of the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

/// Two test hosts, "server" (198.18.0.1) and "client" (198.18.0.2), in their own network
/// namespaces, each cabled with a veth pair to a bridge in a third namespace: a switch
/// between two machines. 198.18.0.0/15 is reserved for network tests (RFC 2544).
/// Removed on drop, even when the test panics; names carry the test process id and a
/// counter so that tests running in parallel never collide.
pub struct Link {
    server_ns: String,
    client_ns: String,
    switch_ns: String,
    server_if: String,
    client_if: String,
}

pub const SERVER_ADDR: &str = "198.18.0.1";
pub const CLIENT_ADDR: &str = "198.18.0.2";

impl Link {
    /// Makes the hosts and the switch, or says by name why the test cannot run here and
    /// returns None.
    pub fn new(test: &str) -> Option<Link> {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            super::skip(test, "network namespaces need root");
            return None;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            super::skip(test, "ip (iproute2) is not installed");
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let link = Link {
            server_ns: format!("lka-{id}-s"),
            client_ns: format!("lka-{id}-c"),
            switch_ns: format!("lka-{id}-w"),
            server_if: format!("lk{id}s"),
            client_if: format!("lk{id}c"),
        };
        let switch = &link.switch_ns;
        for ns in [&link.server_ns, &link.client_ns, switch] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", switch, "link", "set", "br0", "up"]);
        for (ns, interface, address, port) in [
            (&link.server_ns, &link.server_if, SERVER_ADDR, "to-server"),
            (&link.client_ns, &link.client_if, CLIENT_ADDR, "to-client"),
        ] {
            ip(&[
                "-n", switch, "link", "add", port, "type", "veth", "peer", "name", interface,
                "netns", ns,
            ]);
            ip(&["-n", switch, "link", "set", port, "master", "br0", "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                interface,
            ]);
            ip(&["-n", ns, "link", "set", interface, "up"]);
        }
        Some(link)
    }

    /// Takes one host's interface down, as when it loses power: nothing reaches it or
    /// leaves it, no FIN or RST reaches the other host, and the other host's own link
    /// to the switch stays up, so its packets leave and vanish.
    pub fn cut(&self, side: Side) {
        let (ns, interface) = match side {
            Side::Server => (&self.server_ns, &self.server_if),
            Side::Client => (&self.client_ns, &self.client_if),
        };
        ip(&["-n", ns, "link", "set", interface, "down"]);
    }

    /// Waits (at most 30 s) until every established connection `ss` shows on `side`
    /// for `filter` has nothing in flight: no unacknowledged bytes and no
    /// retransmission timer. While data is in flight the kernel sends no keepalive
    /// probe, so a cut before that tests retransmission (which `TCP_USER_TIMEOUT`
    /// bounds), not keepalive: a query sent in the server's delayed-ACK window is.
    pub fn wait_quiet(&self, side: Side, filter: &str) {
        super::wait_until("connections quiet", Duration::from_secs(30), || {
            let lines = self.ss(side, &["-tnoH", "state", "established", filter]);
            !lines.is_empty()
                && lines.iter().all(|line| {
                    line.split_whitespace().nth(1) == Some("0") && !line.contains("timer:(on")
                })
        });
    }

    /// Makes `command` start inside one side's namespace.
    pub fn enter(&self, command: &mut Command, side: Side) {
        let ns = match side {
            Side::Server => &self.server_ns,
            Side::Client => &self.client_ns,
        };
        let handle: OwnedFd = std::fs::File::open(format!("/run/netns/{ns}"))
            .expect("open namespace")
            .into();
        // SAFETY: setns(2) is a plain system call, safe between fork and exec; the hook
        // owns the namespace handle.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Link {
    /// The server host and the client host, as places to run processes.
    pub fn places(&self) -> [Place<'_>; 2] {
        [
            Place::Host(self, Side::Server),
            Place::Host(self, Side::Client),
        ]
    }

    /// What `ss args` shows inside one side's namespace, one line per socket (pass
    /// `-H`): `-tnoH state established ( dport = :5432 )` lists one host's connections.
    pub fn ss(&self, side: Side, args: &[&str]) -> Vec<String> {
        let mut command = Command::new("ss");
        command.args(args);
        self.enter(&mut command, side);
        let output = command.output().expect("run ss");
        assert!(
            output.status.success(),
            "ss {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns, &self.switch_ns] {
            // Whatever still runs inside, even processes that left the test's process
            // groups (sshd's sessions call setsid), dies with its host.
            if let Ok(output) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill(2) of a process found in the test's own namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            // Deleting a namespace destroys the veth end inside it, and so the pair.
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where a test runs a process: on a test host, or on this host's loopback.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    Host(&'a Link, Side),
    Loopback,
}

impl Place<'_> {
    /// The address of this place's host: a test host's, or 127.0.0.1.
    pub fn address(self) -> &'static str {
        match self {
            Place::Host(_, Side::Server) => SERVER_ADDR,
            Place::Host(_, Side::Client) => CLIENT_ADDR,
            Place::Loopback => "127.0.0.1",
        }
    }

    /// Makes `command` start here.
    pub fn enter(self, command: &mut Command) {
        if let Place::Host(link, side) = self {
            link.enter(command, side);
        }
    }

    /// Starts `command` here.
    pub fn spawn(self, command: &mut Command) -> Proc {
        self.enter(command);
        Proc::spawn(command)
    }

    /// What `ss args` shows here, one line per socket (pass `-H`).
    pub fn ss(self, args: &[&str]) -> Vec<String> {
        match self {
            Place::Host(link, side) => link.ss(side, args),
            Place::Loopback => {
                let output = Command::new("ss").args(args).output().expect("run ss");
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            }
        }
    }

    /// Starts server `command` here and returns once the process itself listens on
    /// TCP `port`: the one way the tests start a server. Connecting blindly instead
    /// could reach another process that took the free port meanwhile, or the test's
    /// own socket (a connect to a port in the ephemeral range with nobody listening
    /// can pick that same port as its source and connect to itself). Panics with the
    /// server's stderr when it exits first or takes longer than [`SERVER_START`].
    pub fn serve(self, what: &str, command: &mut Command, port: u16) -> Proc {
        let mut server = self.spawn(command);
        let deadline = Instant::now() + SERVER_START;
        let owner = format!("pid={},", server.pid());
        let filter = format!("( sport = :{port} )");
        while !self
            .ss(&["-tlnpH", &filter])
            .iter()
            .any(|line| line.contains(&owner))
        {
            assert!(
                server.is_running() && Instant::now() < deadline,
                "{what} never listened on {port}; stderr:\n{}",
                server.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

/// How long a server may take to start listening on a busy machine (a JVM, or
/// PostgreSQL's initdb'd cluster, is the slowest here).
pub const SERVER_START: Duration = Duration::from_secs(60);

/// A child process whose stdout lines arrive on a channel. It leads its own process
/// group, and the whole group is killed and the child reaped on drop, so that workers
/// it forked (nginx's) cannot outlive the test holding its ports and pipes. Its stderr
/// is passed on to the test's and kept, so that a test can read a program's error.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: std::thread::JoinHandle<()>,
}

impl Proc {
    pub fn spawn(command: &mut Command) -> Proc {
        let mut child = command
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let kept = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr");
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            stderr_reader,
        }
    }

    /// What the child wrote on stderr, complete once every writer has closed it (the
    /// child exited, and nothing it started holds it), or after `timeout`.
    pub fn stderr_when_closed(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !self.stderr_reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stderr()
    }

    /// What the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits up to `timeout` for the child to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for a stdout line starting with `prefix`.
    pub fn line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.starts_with(prefix);
                    self.seen.push(line.clone());
                    if found {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits up to `timeout` for the next stdout line not returned or seen before: for
    /// a child that answers each request with lines of the same shape.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Writes one line to the child's stdin.
    pub fn tell(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to child");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group, which
            // this child leads (process_group(0) above).
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CLOCK_MONOTONIC in milliseconds: one clock for every process on the machine, so a
/// child's report and the parent's cut can be compared.
pub fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: now is a live timespec for clock_gettime(2) to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

/// A directory under /tmp, readable by every user (servers that drop to their own user
/// must reach it), removed with everything in it on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "libkeepalive-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("create temporary directory");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// `name` inside the directory, as a string for command lines and config files.
    pub fn join(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
