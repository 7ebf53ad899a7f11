//! The proof that a restarted service got the library: the processes of the service
//! that hold its TCP sockets (listening or connected: /proc/PID/fd against the
//! process's /proc/PID/net/tcp and tcp6) have the library mapped (/proc/PID/maps) and
//! run with the variables in their environment (/proc/PID/environ). A shell that
//! starts the server with `env -i` has the library, and proves nothing: the server is
//! judged. Until some process holds a socket, the main process or a descendant with
//! the library stands in, and the proof says so. The other processes of the unit's
//! cgroup are judged too: `KillMode=process` (or `mixed`) leaves those of the old run
//! alive across a restart, with their sockets and without the new environment.
//!
//! `systemctl try-restart` returns once the new main process is forked, before it
//! executes the program (Type=simple, systemd.service(5)); until then it is a copy of
//! systemd whose name is the program's in parentheses. The loader maps every preloaded
//! library before the C library (ld.so(8)), so a process that has libc mapped and not
//! the library has not loaded it, and will not.
//!
//! A path in /proc/PID/maps is not proof by itself. The loader maps a file's headers
//! read-only before its code, and leaves that mapping behind when mapping the code
//! fails (a noexec mount, `NoExecPaths=`): only an executable mapping means it loaded.
//! And the path is the one in the process's mount namespace, where a bind mount or
//! `RootDirectory=` may put another file: the mapped file must be the library named
//! here, by device and inode or, for a copy, byte for byte.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the new process may take to execute its program and run its loader.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// After the loader looks done, how long a preload may still take to show: musl's
/// loader is its C library, mapped by the kernel at exec, before it reads LD_PRELOAD.
const SETTLE: Duration = Duration::from_secs(1);

/// How long a service may take, after its loader, to hold a TCP socket: a server's
/// listener, a client's first connection.
const SOCKETS: Duration = Duration::from_secs(5);

/// What the service's processes were found to have.
pub enum Found {
    /// This process has the library mapped and every variable in its environment; and
    /// `sockets`: so has every process of the service that holds a TCP socket, this
    /// one among them (false: none holds one yet).
    Proven {
        pid: u32,
        comm: String,
        sockets: bool,
    },
    /// None of them has the library mapped.
    NotMapped { pid: u32 },
    /// This process maps the library's path, but not as code: the loader could not
    /// map its segments and went on without it.
    NotLoaded { pid: u32 },
    /// A process of the unit's cgroup outside the main process's tree (most likely
    /// left from before the restart) holds TCP sockets without the library.
    Leftover { pid: u32 },
    /// This process loaded a file at the library's path that is not the library.
    OtherFile {
        pid: u32,
        device: String,
        inode: u64,
    },
    /// Mapped, but a variable is missing or has another value in `pid`'s environment.
    Environment { pid: u32, missing: String },
}

/// Waits for `pid` to run its program, then looks at it and its descendants, and at
/// the other processes of the unit's cgroup (`members`).
pub fn service(pid: u32, library: &Path, variables: &[(String, String)], members: &[u32]) -> Found {
    wait_for_loader(pid, library);
    let library = library
        .canonicalize()
        .unwrap_or_else(|_| library.to_path_buf());
    let settle = Instant::now() + SETTLE;
    let sockets = Instant::now() + SOCKETS;
    loop {
        let found = look(pid, &library, variables, members);
        let now = Instant::now();
        let waiting_for_sockets = matches!(found, Found::Proven { sockets: false, .. });
        // The loader maps the headers before the code: wait for it before saying that
        // the code is not there.
        let settled =
            !matches!(found, Found::NotMapped { .. } | Found::NotLoaded { .. }) || now > settle;
        if settled && (!waiting_for_sockets || now > sockets) {
            return found;
        }
        std::thread::sleep(POLL);
    }
}

/// The first process of `pid`'s tree, or else of the unit's cgroup (`members`), that
/// still has a libkeepalive mapped, once `pid` has run its loader: what `disable
/// --now` must find none of. True when it is outside the tree: left from before.
pub fn library_left(pid: u32, members: &[u32]) -> Option<(u32, PathBuf, bool)> {
    wait_for_loader(pid, Path::new("/"));
    let own = tree(pid);
    let others = members
        .iter()
        .copied()
        .filter(|member| !own.contains(member));
    own.iter().copied().chain(others).find_map(|process| {
        let maps = std::fs::read_to_string(format!("/proc/{process}/maps")).ok()?;
        maps.lines().filter_map(mapped_path).find_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            name.starts_with("libkeepalive.so")
                .then(|| (process, path, !own.contains(&process)))
        })
    })
}

/// Polls until [`loaded`], for at most [`LOAD_TIMEOUT`].
fn wait_for_loader(pid: u32, library: &Path) {
    let deadline = Instant::now() + LOAD_TIMEOUT;
    while Instant::now() < deadline && !loaded(pid, library) {
        std::thread::sleep(POLL);
    }
}

/// `pid` and its descendants, as they are now. Those that hold TCP sockets are
/// judged when there are any: the first of them without the library or a variable
/// fails the proof. Otherwise the first process with the library mapped and every
/// variable stands in; else what is missing.
fn look(pid: u32, library: &Path, variables: &[(String, String)], members: &[u32]) -> Found {
    let processes = tree(pid);
    let others = members
        .iter()
        .copied()
        .filter(|member| !processes.contains(member));
    let holders: Vec<u32> = processes
        .iter()
        .copied()
        .chain(others)
        .filter(|&process| holds_tcp_sockets(process))
        .collect();
    if !holders.is_empty() {
        let mut proven = None;
        for holder in holders {
            match judge(holder, library, variables) {
                Found::NotMapped { pid } if !processes.contains(&pid) => {
                    return Found::Leftover { pid };
                }
                Found::Proven { pid, comm, .. } => {
                    proven.get_or_insert(Found::Proven {
                        pid,
                        comm,
                        sockets: true,
                    });
                }
                failed => return failed,
            }
        }
        if let Some(proven) = proven {
            return proven;
        }
    }
    let mut found = Found::NotMapped { pid };
    for process in processes {
        match judge(process, library, variables) {
            Found::NotMapped { .. } => {}
            proven @ Found::Proven { .. } => return proven,
            // What the library's code would do matters more than what a process
            // that does not run it lacks.
            failed @ (Found::NotLoaded { .. } | Found::OtherFile { .. }) => return failed,
            missing => found = missing,
        }
    }
    found
}

/// Whether `pid` holds a TCP socket: one of its descriptors is a socket whose inode
/// is in its network namespace's TCP tables (proc(5): /proc/PID/net/tcp, tcp6).
pub fn holds_tcp_sockets(pid: u32) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: Vec<String> = fds
        .flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            let link = link.to_string_lossy();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    ["tcp", "tcp6"].iter().any(|table| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).is_ok_and(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| line.split_whitespace().nth(9))
                .any(|inode| inodes.iter().any(|ours| ours == inode))
        })
    })
}

/// One process: the library mapped and every variable in its environment, or what it
/// lacks.
fn judge(process: u32, library: &Path, variables: &[(String, String)]) -> Found {
    match mapping(process, library) {
        Mapping::None => return Found::NotMapped { pid: process },
        Mapping::HeadersOnly => return Found::NotLoaded { pid: process },
        Mapping::Other { device, inode } => {
            return Found::OtherFile {
                pid: process,
                device,
                inode,
            };
        }
        Mapping::Library => {}
    }
    let environ = environment(process);
    let missing = variables.iter().find(|(name, value)| {
        let have = environ
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        match name.as_str() {
            "LD_PRELOAD" => !have.is_some_and(|have| {
                have.split([' ', ':'])
                    .any(|entry| crate::library::same_file(entry.as_bytes(), library))
            }),
            _ => have != Some(value.as_str()),
        }
    });
    // KEEPALIVE=off (in any case, as the library reads it) leaves the library mapped
    // and doing nothing, whatever else the process carries: an `EnvironmentFile=` or a
    // later drop-in may set it over ours.
    let off = environ
        .iter()
        .any(|(name, value)| name == "KEEPALIVE" && value.eq_ignore_ascii_case("off"));
    match missing {
        None if off => Found::Environment {
            pid: process,
            missing: "KEEPALIVE=on (it carries KEEPALIVE=off, under which the library does \
                      nothing)"
                .to_string(),
        },
        None => Found::Proven {
            pid: process,
            comm: comm(process),
            sockets: false,
        },
        Some((name, value)) => Found::Environment {
            pid: process,
            missing: format!("{name}={value}"),
        },
    }
}

/// Whether the process has executed its program and its loader is past the preloads:
/// the library or a C library is mapped, the program has no loader at all (statically
/// linked: nothing will ever preload), or the process is gone.
fn loaded(pid: u32, library: &Path) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return true;
    };
    if comm(pid).starts_with('(') {
        return false;
    }
    let library = library
        .canonicalize()
        .unwrap_or_else(|_| library.to_path_buf());
    let files: Vec<PathBuf> = maps.lines().filter_map(mapped_path).collect();
    let named = |prefixes: &[&str]| {
        files.iter().any(|path| {
            path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                prefixes.iter().any(|prefix| name.starts_with(prefix))
            })
        })
    };
    // glibc's loader is ld-linux-*.so.2, musl's ld-musl-*.so.1; their C libraries
    // libc.so.6 (libc-2.x.so before glibc 2.34) and the loader itself.
    files.contains(&library) || named(&["libc.so", "libc-"]) || !named(&["ld-"])
}

/// The file of one line of /proc/PID/maps (the sixth field), if it maps one.
fn mapped_path(line: &str) -> Option<PathBuf> {
    let path = line.splitn(6, ' ').nth(5)?.trim_start();
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// What a process maps at the library's path.
enum Mapping {
    None,
    /// Read-only mappings only: the loader read the headers and could not map the code.
    HeadersOnly,
    /// Code of another file (device `major:minor` as /proc/PID/maps shows it).
    Other {
        device: String,
        inode: u64,
    },
    /// Code of the library itself.
    Library,
}

/// One line of /proc/PID/maps (proc(5)): `START-END PERMS OFFSET MAJOR:MINOR INODE PATH`.
struct MapLine<'a> {
    range: &'a str,
    executable: bool,
    device: &'a str,
    inode: u64,
}

fn map_line(line: &str) -> Option<MapLine<'_>> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let executable = fields.next()?.contains('x');
    let device = fields.nth(1)?;
    let inode = fields.next()?.parse().ok()?;
    Some(MapLine {
        range,
        executable,
        device,
        inode,
    })
}

fn mapping(pid: u32, library: &Path) -> Mapping {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Mapping::None;
    };
    let lines: Vec<MapLine> = maps
        .lines()
        .filter(|line| mapped_path(line).is_some_and(|path| path == library))
        .filter_map(map_line)
        .collect();
    if lines.is_empty() {
        return Mapping::None;
    }
    let Some(code) = lines.iter().find(|line| line.executable) else {
        return Mapping::HeadersOnly;
    };
    if is_library(pid, code, library) {
        Mapping::Library
    } else {
        Mapping::Other {
            device: code.device.to_string(),
            inode: code.inode,
        }
    }
}

/// Whether the mapped file is `library` as this command sees it: the same device and
/// inode, or else the same bytes (a copy bound into the service's namespace), read
/// through /proc/PID/map_files (the mapped file itself) or /proc/PID/root.
fn is_library(pid: u32, code: &MapLine, library: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(library) else {
        return false;
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    if code.device == format!("{major:02x}:{minor:02x}") && code.inode == meta.ino() {
        return true;
    }
    let Ok(ours) = std::fs::read(library) else {
        return false;
    };
    let inside =
        Path::new(&format!("/proc/{pid}/root")).join(library.strip_prefix("/").unwrap_or(library));
    [
        Path::new(&format!("/proc/{pid}/map_files/{}", code.range)).to_path_buf(),
        inside,
    ]
    .iter()
    .find_map(|path| std::fs::read(path).ok())
    .is_some_and(|theirs| theirs == ours)
}

/// The processes of a unit's cgroup (its `ControlGroup=`) and of the cgroups below,
/// under the unified hierarchy or systemd's own (cgroup v1).
pub fn members(cgroup: &str) -> Vec<u32> {
    let relative = cgroup.trim_start_matches('/');
    if relative.is_empty() {
        return Vec::new();
    }
    let mut pids = Vec::new();
    let found = [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/systemd",
    ]
    .iter()
    .map(|base| Path::new(base).join(relative))
    .find(|dir| dir.join("cgroup.procs").is_file());
    if let Some(dir) = found {
        walk(&dir, &mut pids);
    }
    pids
}

fn walk(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(
            procs
                .lines()
                .filter_map(|line| line.trim().parse::<u32>().ok()),
        );
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            walk(&entry.path(), pids);
        }
    }
}

/// The process's command name (proc(5), /proc/PID/comm).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim_end().to_string())
        .unwrap_or_default()
}

fn environment(pid: u32) -> Vec<(String, String)> {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return Vec::new();
    };
    environ
        .split(|&b| b == 0)
        .filter_map(|pair| {
            let pair = String::from_utf8_lossy(pair);
            let (name, value) = pair.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// `pid` and its descendants, parents first, from each process's parent in
/// /proc/PID/stat.
fn tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let child: u32 = entry.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                    let ppid = stat
                        .rsplit_once(") ")?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()?;
                    Some((child, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut tree = vec![pid];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        tree.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(child, _)| *child),
        );
        next += 1;
    }
    tree
}
