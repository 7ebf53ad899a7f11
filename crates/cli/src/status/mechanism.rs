//! Which mechanism configured a process's connections: the library mapped into it, a
//! keepalive sock_ops program on its cgroup (the kernel route), both, or neither.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use keepalive_config::{Config, Var};

use crate::env;
use crate::kernel;
use crate::library::quoted_value;

/// One line for each mechanism found. Asking a cgroup what is attached takes
/// CAP_NET_ADMIN (BPF_PROG_QUERY); when that fails, a line says the kernel route is
/// unknown, and why, without making the rest of the report partial.
pub fn configured_by(pid: i32) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(library) = mapped_library(pid) {
        let reading = reading(pid).map(|r| format!(", {r}")).unwrap_or_default();
        found.push(format!("the library {library} (mapped){reading}"));
    }
    match kernel::attached_to(pid) {
        Ok(programs) => found.extend(programs),
        Err(why) => found.push(format!("a sock_ops program: unknown ({why})")),
    }
    found
}

/// The path of a libkeepalive mapped into the process (/proc/PID/maps, proc(5)): the
/// library is loaded, whatever put it there (LD_PRELOAD, /etc/ld.so.preload).
fn mapped_library(pid: i32) -> Option<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with("libkeepalive.so"))
        })
        .map(str::to_string)
}

/// What the library in `pid` read from the environment the process started with
/// (/proc/PID/environ, as the library's constructor saw it), parsed by the library's
/// own parser: the settings it applies and each value it refused. The library says
/// that once at load only where it cannot harm the program (docs/safety.md); here it
/// is shown wherever the process runs. `None` when the environment cannot be read
/// (another user's process, without root).
fn reading(pid: i32) -> Option<String> {
    if secure_execution(pid) {
        return Some(
            "ignoring its environment (a setuid, setgid or capability program: the kernel's timers)"
                .to_string(),
        );
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let lookup = |var: Var| {
        environ.split(|&b| b == 0).find_map(|entry| {
            entry
                .strip_prefix(var.name())
                .and_then(|rest| rest.strip_prefix(b"="))
        })
    };
    let mut refused = Vec::new();
    let config = Config::parse(lookup, |var, value| {
        refused.push(format!(
            "{}={} (expected {})",
            env::name(var),
            quoted_value(OsStr::from_bytes(value)),
            var.accepted()
        ));
    });
    let settings: Vec<String> = config
        .variables()
        .map(|(var, value)| format!("{}={value}", env::name(var)))
        .collect();
    let mut text = if settings.is_empty() {
        "with the kernel's timers".to_string()
    } else {
        format!("with {}", settings.join(" "))
    };
    if !refused.is_empty() {
        text += &format!("; refused {}", refused.join(", "));
    }
    Some(text)
}

/// Whether `pid` runs in secure-execution mode (`AT_SECURE` in its auxiliary vector,
/// getauxval(3)), where the library reads no variable at all.
fn secure_execution(pid: i32) -> bool {
    const AT_SECURE: u64 = 23;
    let Ok(auxv) = std::fs::read(format!("/proc/{pid}/auxv")) else {
        return false;
    };
    auxv.chunks_exact(16).any(|pair| {
        let word = |at: usize| u64::from_ne_bytes(pair[at..at + 8].try_into().unwrap_or([0; 8]));
        word(0) == AT_SECURE && word(8) != 0
    })
}
