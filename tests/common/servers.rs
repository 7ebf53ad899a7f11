#![allow(dead_code)] // each test binary uses its own part of this module
//! Real servers that tests start themselves — PostgreSQL, sshd, Redis — each in a
//! temporary directory of its own, on loopback or on a test host, and stopped and
//! removed on drop even when the test fails.
//!
//! Included with `#[path]` by the tests that use it, beside `mod common;`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::net::{Link, Proc, Side, TempDir};
use crate::common::{VARIABLES, preloaded, skip};

/// How long a server may take to start on a busy machine.
const START: Duration = Duration::from_secs(60);

/// `program` without the library: LD_PRELOAD and the library's variables removed,
/// whatever the test's own environment holds.
pub fn bare(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env_remove("LD_PRELOAD");
    for name in VARIABLES {
        command.env_remove(name);
    }
    command
}

/// `program` with the library and `vars`, or without it when `vars` is None.
pub fn maybe_preloaded(program: &str, vars: Option<&[(&str, &str)]>) -> Command {
    match vars {
        Some(vars) => preloaded(program, vars),
        None => bare(program),
    }
}

/// Where to run a server: a test host, or this host's loopback.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    Host(&'a Link, Side),
    Loopback,
}

impl Place<'_> {
    fn enter(self, command: &mut Command) {
        if let Place::Host(link, side) = self {
            link.enter(command, side);
        }
    }
}

/// The full path of `program` on PATH (sshd insists on being started by one).
pub fn which(test: &str, program: &str) -> Option<PathBuf> {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && !path.is_empty() {
        Some(PathBuf::from(path))
    } else {
        skip(test, &format!("{program} is not installed"));
        None
    }
}

/// Polls `ready` every 100 ms until it holds; panics naming `what` after [`START`].
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + START;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {START:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a short command to completion and returns its stdout; panics with its stderr
/// if it fails.
pub fn output(command: &mut Command) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first run of digits and dots (and an OpenSSH-style `p1`) after `after` in what
/// `program args` prints on stdout or stderr: the version as the program itself states it.
pub fn version(program: &str, args: &[&str], after: &str) -> String {
    let out = bare(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in {program}'s version output: {text}"))
        + after.len();
    let version: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'p')
        .collect();
    let version = version.trim_end_matches(['.', 'p']).to_string();
    assert!(
        version.starts_with(|c: char| c.is_ascii_digit()),
        "no version after {after:?} in: {text}"
    );
    version
}

/// A PostgreSQL server run as the `postgres` user from a cluster made by `initdb` in a
/// temporary directory; its Unix socket in that directory is the healthy way in.
pub struct Postgres {
    proc: Proc,
    pub port: u16,
    dir: TempDir,
}

impl Postgres {
    /// The directory of the newest installed PostgreSQL's programs.
    pub fn bin_dir(test: &str) -> Option<PathBuf> {
        let newest = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .map(|major| PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
        match newest {
            Some(dir) if dir.join("postgres").exists() => Some(dir),
            _ => {
                skip(
                    test,
                    "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres)",
                );
                None
            }
        }
    }

    /// Makes a cluster and starts a server on it at `place`, listening on `address`:`port`,
    /// with the library and `vars`, or without it when `vars` is None.
    pub fn start(
        test: &str,
        place: Place,
        address: &str,
        port: u16,
        vars: Option<&[(&str, &str)]>,
    ) -> Option<Postgres> {
        let bin = Postgres::bin_dir(test)?;
        let dir = TempDir::new("postgres");
        output(Command::new("chown").arg("postgres:").arg(dir.path()));
        let data = dir.join("data");
        output(
            bare("setpriv")
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(bin.join("initdb"))
                .args(["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"])
                .stdout(Stdio::null()),
        );
        // Clients on the test hosts' network come in without a password, like the
        // Unix socket's.
        let hba = format!("{data}/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        rules.push_str("host all all 198.18.0.0/24 trust\n");
        std::fs::write(&hba, rules).expect("write pg_hba.conf");
        let mut command = maybe_preloaded("setpriv", vars);
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(bin.join("postgres"))
            .args(["-D", &data, "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", &format!("listen_addresses={address}")])
            .args(["-c", "fsync=off", "-c", "max_connections=20"]);
        place.enter(&mut command);
        let postgres = Postgres {
            proc: Proc::spawn(&mut command),
            port,
            dir,
        };
        wait_until("PostgreSQL accepting connections", || {
            postgres.try_sql("SELECT 1").as_deref() == Some("1")
        });
        Some(postgres)
    }

    fn psql(&self, query: &str) -> Command {
        let mut command = bare("psql");
        command.arg("-h").arg(self.dir.path()).args([
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-Atc",
            query,
        ]);
        command
    }

    fn try_sql(&self, query: &str) -> Option<String> {
        let out = self.psql(query).stdin(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs `query` over the Unix socket, a connection no cut link can touch.
    pub fn sql(&self, query: &str) -> String {
        output(&mut self.psql(query)).trim().to_string()
    }

    /// How many backends serve connections with `application_name` `name`.
    pub fn backends(&self, name: &str) -> usize {
        self.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"
        ))
        .parse()
        .expect("count")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the postmaster ends its backends and removes its
        // shared memory before it exits. Proc's drop then kills what is left.
        if let Ok(pid) = i32::try_from(self.proc.pid()) {
            // SAFETY: kill(2) of the child this guard started.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
        self.proc.wait_exit(Duration::from_secs(10));
    }
}

/// An OpenSSH server with a throw-away host key, letting in `root` with a throw-away
/// client key only.
pub struct Sshd {
    _proc: Proc,
    dir: TempDir,
}

impl Sshd {
    pub fn start(
        test: &str,
        place: Place,
        address: &str,
        port: u16,
        vars: Option<&[(&str, &str)]>,
    ) -> Option<Sshd> {
        let sshd = which(test, "sshd")?;
        which(test, "ssh-keygen")?;
        let dir = TempDir::new("sshd");
        for key in ["host_key", "client_key"] {
            output(bare("ssh-keygen").args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &dir.join(key),
            ]));
        }
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("authorized_keys");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {address}\nHostKey {host_key}\nPidFile {pid}\n\
                 AuthorizedKeysFile {keys}\nStrictModes no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n",
                host_key = dir.join("host_key"),
                pid = dir.join("sshd.pid"),
                keys = dir.join("authorized_keys"),
            ),
        )
        .expect("write sshd_config");
        // The privilege-separation directory sshd requires; Debian's unit makes it.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let mut command = maybe_preloaded(sshd.to_str().expect("path"), vars);
        command.args(["-D", "-e", "-f", &config]);
        place.enter(&mut command);
        let proc = Proc::spawn(&mut command);
        let filter = format!("( sport = :{port} )");
        let listening = || match place {
            Place::Host(link, side) => !link.ss(side, &["-tlnH", &filter]).is_empty(),
            Place::Loopback => std::net::TcpStream::connect((address, port)).is_ok(),
        };
        wait_until("sshd listening", listening);
        Some(Sshd { _proc: proc, dir })
    }

    /// An `ssh` command for `root@address` with the client key, no host-key questions,
    /// no configuration files and `ServerAliveInterval` off: only TCP can notice a
    /// vanished server.
    pub fn client(&self, address: &str, port: u16, vars: Option<&[(&str, &str)]>) -> Command {
        let mut command = maybe_preloaded("ssh", vars);
        command
            .args(["-F", "/dev/null", "-i", &self.dir.join("client_key")])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", "-o", "ServerAliveInterval=0"])
            .args(["-o", "LogLevel=ERROR", "-p", &port.to_string()])
            .arg(format!("root@{address}"));
        command
    }
}

/// A Redis server with nothing saved to disk, listening on `address`:`port` and on a
/// Unix socket in its temporary directory (the healthy way in).
pub struct Redis {
    _proc: Proc,
    dir: TempDir,
}

impl Redis {
    pub fn start(
        test: &str,
        place: Place,
        address: &str,
        port: u16,
        extra: &[&str],
        vars: Option<&[(&str, &str)]>,
    ) -> Option<Redis> {
        which(test, "redis-server")?;
        which(test, "redis-cli")?;
        let dir = TempDir::new("redis");
        let mut command = maybe_preloaded("redis-server", vars);
        command
            .args(["--port", &port.to_string(), "--bind", address])
            .args(["--unixsocket", &dir.join("redis.sock")])
            .args(["--dir", &dir.join(""), "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .args(extra);
        place.enter(&mut command);
        let redis = Redis {
            _proc: Proc::spawn(&mut command),
            dir,
        };
        wait_until("Redis answering", || {
            redis
                .try_command(&["PING"])
                .is_some_and(|reply| reply.trim() == "PONG")
        });
        Some(redis)
    }

    fn try_command(&self, args: &[&str]) -> Option<String> {
        let out = bare("redis-cli")
            .args(["-s", &self.dir.join("redis.sock")])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a command over the Unix socket and returns its reply.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// How many clients from `address` the server still holds.
    pub fn clients_from(&self, address: &str) -> usize {
        let needle = format!("addr={address}:");
        self.command(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| line.contains(&needle))
            .count()
    }
}
