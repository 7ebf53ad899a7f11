//! Which mechanism configured a process's connections: the library mapped into it, a
//! keepalive sock_ops program on its cgroup (the kernel route), both, or neither.

use crate::kernel;

/// One line for each mechanism found. Asking a cgroup what is attached takes
/// CAP_NET_ADMIN (BPF_PROG_QUERY); when that fails, a line says the kernel route is
/// unknown, and why, without making the rest of the report partial.
pub fn configured_by(pid: i32) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(library) = mapped_library(pid) {
        found.push(format!("the library {library} (mapped)"));
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
