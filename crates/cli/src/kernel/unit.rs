//! `enable --kernel`: a systemd service whose every start attaches the route's programs
//! to the service's own cgroup, through an `ExecStartPre=+` step (docs/kernel.md says
//! why not `BPFProgram=`). System services only: a user manager cannot run the step
//! with the privileges loading a BPF program takes.
//!
//! systemd runs `ExecStartPre=` commands in the service's cgroup, before `ExecStart=`
//! (systemd.service(5)); with the `+` prefix, with full privileges whatever `User=`
//! and the sandboxing options say. The attachment lives as long as the cgroup, which
//! systemd removes when the service stops: a restart attaches again, and after
//! `disable` and a restart nothing is attached.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, FromRawFd};
use std::path::Path;
use std::process::Command;

use keepalive_config::Config;

use super::attach::{self, ATTACH};
use super::cgroup;
use crate::check;
use crate::failure::{self, Failure};
use crate::options::Options;

/// The drop-in's `[Service]` line: this command, by the path it was run from, attaching
/// the program with `config` at every start.
pub fn exec_start_pre(config: &Config) -> Result<String, Failure> {
    let me = std::env::current_exe()
        .map_err(|err| Failure::with_code(1, format!("cannot find this command's path: {err}")))?;
    // `%` starts a specifier in unit files (systemd.unit(5)); `%%` is a literal one.
    let me = me.to_string_lossy().replace('%', "%%");
    // systemd.syntax(7): a blank or a quote would split or end the word; in double
    // quotes, `\` and `"` are escaped.
    let me = if me.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c)) {
        format!("\"{}\"", me.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        me
    };
    // `+`: with full privileges, whatever User= and the sandboxing say. `-`: a step
    // that fails (the command removed with its package, a kernel that refuses the
    // program) is written to the journal and the service starts without the settings,
    // rather than not at all (systemd.service(5), "Command lines").
    let mut line = format!("ExecStartPre=+-{me} {ATTACH}");
    for option in attach::options(config) {
        line.push(' ');
        line.push_str(&option);
    }
    line.push('\n');
    Ok(line)
}

/// How long the verifying connection may take: a loopback connect is instant unless
/// something drops it.
const VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why `enable --kernel` cannot serve `unit`, before anything is written: its
/// connections are accepted on listeners of a `.socket` unit, which PID 1 made, and an
/// accepted connection belongs to its listener's cgroup, not the service's; or systemd
/// keeps units in cgroup v1 only (the legacy layout), where the service has no cgroup
/// v2 to attach to. The library route reaches both.
pub fn refusal(unit: &str) -> Option<String> {
    if !cgroup::unified() {
        return Some(format!(
            "{unit}: systemd here keeps units in cgroup v1 only (the legacy layout), so \
             the service has no cgroup v2 for the kernel route; `keepalive enable \
             {unit}` (the library) reaches it"
        ));
    }
    let shown = Command::new("systemctl")
        .args(["show", "--value", "-p", "TriggeredBy", unit])
        .output()
        .ok()?;
    let sockets: Vec<String> = String::from_utf8_lossy(&shown.stdout)
        .split_whitespace()
        .filter(|name| name.ends_with(".socket"))
        .map(str::to_string)
        .collect();
    (!sockets.is_empty()).then(|| {
        format!(
            "{unit} is started by {}: its connections are accepted on listeners PID 1 \
             made, in PID 1's cgroup, which the kernel route does not reach; \
             `keepalive enable {unit}` (the library) reaches them",
            sockets.join(" and ")
        )
    })
}

/// Why `enable --kernel` cannot serve a service whose `ExecStart=` program is
/// `program` (in the image at `root`, or this machine's): a 32-bit program, whose own
/// options the route cannot see (as `run --kernel` refuses one, docs/kernel.md).
pub fn refuse_program(program: &str, root: Option<&Path>) -> Option<String> {
    let root = check::Root::under(root.unwrap_or(Path::new("/")));
    let bits = super::compat_bits(program.as_ref(), &root)?;
    Some(super::compat_refusal(program.as_ref(), bits, "enable"))
}

/// The unit's cgroup path as systemd gives it (`ControlGroup`); `None` when it has
/// none (not running).
pub fn control_group(unit: &str) -> Result<Option<String>, String> {
    let shown = Command::new("systemctl")
        .args(["show", "--value", "-p", "ControlGroup", "--", unit])
        .output()
        .map_err(|err| format!("cannot run systemctl: {err}"))?;
    let path = String::from_utf8_lossy(&shown.stdout).trim().to_string();
    Ok((shown.status.success() && !path.is_empty()).then_some(path))
}

/// Detaches the kernel route (both its programs) from the running unit's
/// cgroup; how many routes. Nothing when the unit has no cgroup (not running).
pub fn detach(unit: &str) -> Result<usize, Failure> {
    let fail = |why: String| Failure::with_code(1, format!("{unit}: {why}"));
    let Some(path) = control_group(unit).map_err(fail)? else {
        return Ok(0);
    };
    if !cgroup::unified() {
        return Ok(0);
    }
    let service = cgroup::at(&path).map_err(fail)?;
    keepalive_sockops::detach_ours(service.dir())
        .map_err(|err| fail(format!("cannot detach from {path}: {err}")))
}

/// After `enable --kernel --now`: proves that a connection made in the service's
/// cgroup carries the settings. A child of this command joins the cgroup (cgroup.procs
/// takes "0" for the writer, cgroups(7)), makes one loopback connection, reads its
/// options, says what it found through a pipe and exits; the command itself never
/// becomes one of the service's processes, which a restart (the undoing of a failed
/// proof) would kill with it.
pub fn verify(unit: &str, config: &Config) -> Result<(), Failure> {
    let fail = |why: String| Failure::with_code(1, format!("{unit}: {why}"));
    let Some(path) = control_group(unit).map_err(fail)? else {
        return Err(fail(
            "is not running after the restart: no cgroup to verify".into(),
        ));
    };
    let service = cgroup::at(&path).map_err(fail)?;
    let carried = in_child(|| probe(&service, &path)).map_err(fail)?;
    let wanted = carried.configured_by(config);
    if carried != wanted {
        return Err(fail(format!(
            "a connection in its cgroup carries {carried}, not {wanted}: is another \
             program on the cgroup setting keepalive first?"
        )));
    }
    failure::say(format_args!(
        "{unit}: a connection in its cgroup carries {carried}"
    ))
}

/// In the cgroup at `path`: a loopback connection, and what it carries.
fn probe(service: &cgroup::Own, path: &str) -> Result<Options, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|err| format!("cannot listen on loopback to verify: {err}"))?;
    let address = listener
        .local_addr()
        .map_err(|err| format!("cannot listen on loopback to verify: {err}"))?;
    let mut into = File::from(
        service
            .open("cgroup.procs")
            .map_err(|err| format!("cannot open {path}/cgroup.procs: {err}"))?,
    );
    into.write_all(b"0")
        .map_err(|err| format!("cannot join {path} to verify: {err}"))?;
    // Bounded: the unit's own IP filtering (IPAddressDeny=) drops loopback SYNs of
    // processes in its cgroup, and connect(2) would retry for two minutes.
    let stream = TcpStream::connect_timeout(&address, VERIFY_TIMEOUT).map_err(|err| {
        format!(
            "cannot connect on loopback from its cgroup within {} s to verify ({err}): \
             does the unit filter IP traffic (IPAddressDeny=)?",
            VERIFY_TIMEOUT.as_secs()
        )
    })?;
    Options::read(stream.as_fd())
        .map_err(|err| format!("cannot read the verifying connection's options: {err}"))
}

/// Runs `work` in a child process and returns its outcome, passed back through a pipe
/// as one line: `ok` and the five values, or `err` and the reason.
fn in_child(work: impl FnOnce() -> Result<Options, String>) -> Result<Options, String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot make a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the descriptors were just made and are owned here alone.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: fork(2); the command has no other thread, so the child may run ordinary
    // code, and it leaves with _exit(2), running no destructor of the parent's state.
    match unsafe { libc::fork() } {
        -1 => Err(format!("cannot fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(read);
            let line = match work() {
                Ok(o) => format!(
                    "ok {} {} {} {} {}",
                    u8::from(o.keepalive),
                    o.idle,
                    o.interval,
                    o.count,
                    o.user_timeout
                ),
                Err(why) => format!("err {why}"),
            };
            let mut write = write;
            let _ = write.write_all(line.as_bytes());
            // SAFETY: _exit(2) ends the child at once.
            unsafe { libc::_exit(0) }
        }
        child => {
            drop(write);
            let mut line = String::new();
            let _ = (&read).read_to_string(&mut line);
            let mut status = 0;
            // SAFETY: waitpid(2) on the child just forked.
            unsafe { libc::waitpid(child, &mut status, 0) };
            parse_outcome(&line)
        }
    }
}

fn parse_outcome(line: &str) -> Result<Options, String> {
    if let Some(why) = line.strip_prefix("err ") {
        return Err(why.to_string());
    }
    let values: Vec<u32> = line
        .strip_prefix("ok ")
        .unwrap_or_default()
        .split(' ')
        .filter_map(|v| v.parse().ok())
        .collect();
    match values[..] {
        [keepalive, idle, interval, count, user_timeout] => Ok(Options {
            keepalive: keepalive != 0,
            idle,
            interval,
            count,
            user_timeout,
        }),
        _ => Err(format!(
            "the verifying process ended without an answer: {line:?}"
        )),
    }
}
