//! Talking to the running systemd through `systemctl` and `journalctl`, as an operator
//! would: the command links no D-Bus library.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long a line a service wrote may take to reach the journal.
const JOURNAL_WAIT: Duration = Duration::from_secs(5);

use crate::failure::Failure;

/// The system manager, or the user's with `--user`.
pub struct Systemctl {
    user: bool,
}

impl Systemctl {
    pub fn new(user: bool) -> Systemctl {
        Systemctl { user }
    }

    /// sd_booted(3): systemd is the init system when /run/systemd/system exists.
    pub fn booted() -> bool {
        Path::new("/run/systemd/system").is_dir()
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        if self.user {
            command.arg("--user");
        }
        command
    }

    fn output(&self, args: &[&str]) -> Result<Output, Failure> {
        self.command("systemctl")
            .args(args)
            .output()
            .map_err(|err| Failure::with_code(1, format!("cannot run systemctl: {err}")))
    }

    /// Runs `systemctl ARGS`; a failure carries what systemctl said.
    pub fn run(&self, args: &[&str]) -> Result<(), Failure> {
        let output = self.output(args)?;
        if output.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&output.stderr);
        Err(Failure::with_code(
            1,
            format!(
                "systemctl {} failed ({}): {}",
                args.join(" "),
                output.status,
                said.trim().replace('\n', "; ")
            ),
        ))
    }

    /// The value of one property of `unit` (systemctl show -p NAME --value).
    pub fn property(&self, unit: &str, name: &str) -> Result<String, Failure> {
        let output = self.output(&["show", "-p", name, "--value", "--", unit])?;
        if !output.status.success() {
            return Err(Failure::with_code(
                1,
                format!(
                    "systemctl show {unit} failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Whether `unit` is active, or on its way (`ActiveState=`, systemd.unit(5)).
    pub fn running(&self, unit: &str) -> Result<bool, Failure> {
        let state = self.property(unit, "ActiveState")?;
        Ok(matches!(
            state.as_str(),
            "active" | "activating" | "reloading"
        ))
    }

    /// The value of `name` in the manager's own environment (`systemctl
    /// show-environment`, set by `DefaultEnvironment=` or `systemctl set-environment`),
    /// which every service it starts inherits.
    pub fn manager_variable(&self, name: &str) -> Option<String> {
        let output = self.output(&["show-environment"]).ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| {
                let value = line.strip_prefix(name)?.strip_prefix('=')?;
                // Shown in $'…' when it holds blanks.
                let value = value
                    .strip_prefix("$'")
                    .and_then(|value| value.strip_suffix('\''))
                    .unwrap_or(value);
                Some(value.to_string())
            })
    }

    /// Whether systemd has a job queued or running for `unit` (`Job=`).
    pub fn has_job(&self, unit: &str) -> Result<bool, Failure> {
        let job = self.property(unit, "Job")?;
        Ok(!job.is_empty() && job != "0")
    }

    /// The unit's main process, once it has one.
    pub fn main_pid(&self, unit: &str) -> Result<Option<u32>, Failure> {
        let pid = self.property(unit, "MainPID")?;
        Ok(pid.parse().ok().filter(|&pid| pid != 0))
    }

    /// The last journal line of `unit` since `since` (seconds since the epoch) that
    /// contains `needle`. journald reads a service's stderr from a socket and may not
    /// have stored a line yet when the process that wrote it is seen; so the journal is
    /// asked again for up to [`JOURNAL_WAIT`].
    pub fn journal_line(&self, unit: &str, since: u64, needle: &str) -> Option<String> {
        let deadline = Instant::now() + JOURNAL_WAIT;
        loop {
            // A user service's lines are in the user's journal, under --user-unit.
            let select = if self.user { "--user-unit" } else { "--unit" };
            let output = Command::new("journalctl")
                .args(["--no-pager", "-q", "-o", "cat", select, unit])
                .arg(format!("--since=@{since}"))
                .output()
                .ok()?;
            let found = String::from_utf8_lossy(&output.stdout)
                .lines()
                .rev()
                .find(|line| line.contains(needle))
                .map(|line| line.trim().to_string());
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
