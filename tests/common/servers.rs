#![allow(dead_code)] // each test binary uses its own part of this module
//! Real servers that tests start themselves — PostgreSQL, sshd, Redis — each in a
//! temporary directory of its own, on loopback or on a test host, and stopped and
//! removed on drop even when the test fails.
//!
//! Included with `#[path]` by the tests that use it, beside `mod common;`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::net::{Place, Proc, TempDir};
use crate::common::{Vars, bare, maybe_preloaded, skip, stdout_of};

/// How long a server may take to be ready on a busy machine.
const START: Duration = Duration::from_secs(60);

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

/// Polls `ready` until it holds; panics naming `what` after [`START`].
pub fn wait_until(what: &str, ready: impl FnMut() -> bool) {
    crate::common::wait_until(what, START, ready);
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

    /// Makes a cluster and starts a server on it at `place`, listening on `port` of its
    /// address, with the library and `vars`, or without it when `vars` is None.
    pub fn start(test: &str, place: Place, port: u16, vars: Vars) -> Option<Postgres> {
        let address = place.address();
        let bin = Postgres::bin_dir(test)?;
        let dir = TempDir::new("postgres");
        stdout_of(Command::new("chown").arg("postgres:").arg(dir.path()));
        let data = dir.join("data");
        stdout_of(
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
        let postgres = Postgres {
            proc: place.serve("PostgreSQL", &mut command, port),
            port,
            dir,
        };
        // It listens before it has finished starting up, and refuses sessions until
        // then.
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
        stdout_of(&mut self.psql(query)).trim().to_string()
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
    /// Starts sshd at `place`, listening on `port` of its address.
    pub fn start(test: &str, place: Place, port: u16, vars: Vars) -> Option<Sshd> {
        let address = place.address();
        let sshd = which(test, "sshd")?;
        which(test, "ssh-keygen")?;
        let dir = TempDir::new("sshd");
        for key in ["host_key", "client_key"] {
            stdout_of(bare("ssh-keygen").args([
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
        let proc = place.serve("sshd", &mut command, port);
        Some(Sshd { _proc: proc, dir })
    }

    /// An `ssh` command for `root@address` with the client key, no host-key questions,
    /// no configuration files and `ServerAliveInterval` off: only TCP can notice a
    /// vanished server.
    pub fn client(&self, address: &str, port: u16, vars: Vars) -> Command {
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

/// A Redis server with nothing saved to disk, listening on `port` of its place's
/// address and on a Unix socket in its temporary directory (the healthy way in).
pub struct Redis {
    _proc: Proc,
    dir: TempDir,
}

impl Redis {
    /// Starts Redis at `place` with the configuration directives `extra`.
    pub fn start(test: &str, place: Place, port: u16, extra: &[&str], vars: Vars) -> Option<Redis> {
        let address = place.address();
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
        let proc = place.serve("Redis", &mut command, port);
        Some(Redis { _proc: proc, dir })
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
