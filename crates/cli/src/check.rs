//! Can preloading reach a program? Read from the file itself: its `#!` line, its ELF
//! headers, its mode bits and its extended attributes.
//!
//! LD_PRELOAD is read by the dynamic loader named in the program's `PT_INTERP`
//! (ld.so(8)), so a program without one, one that does not call the C library's
//! `socket`, one the loader runs in secure-execution mode, or one the library's
//! architecture cannot be loaded into is out of reach, whatever the environment says.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::CheckArgs;
use crate::elf::{Elf, machine_name, own_bits, own_machine};
use crate::failure::{self, Failure};
use crate::json::Object;
use crate::library::quoted;

/// The kernel follows at most this many `#!` interpreters (`BINPRM_MAX_RECURSION`
/// in fs/exec.c is 4).
const MAX_SCRIPTS: usize = 4;

/// What was found, and whether it lets the library in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A glibc loader: it reads LD_PRELOAD.
    Glibc {
        loader: String,
    },
    /// musl's loader: it takes the library's `libc.so.6` as itself and has every
    /// function the library imports (tests/command.rs builds one with musl-gcc).
    Musl {
        loader: String,
    },
    /// A loader that is neither: untested, so not claimed.
    OtherLoader {
        loader: String,
    },
    /// No `PT_INTERP`: no loader runs.
    Static,
    /// Go's net package makes socket system calls itself.
    Go,
    SetUid,
    SetGid,
    Capabilities,
    /// Another word size than the library's.
    Class {
        bits: u8,
    },
    /// Another architecture than the library's.
    Machine {
        machine: u16,
    },
}

impl Reach {
    pub fn reachable(&self) -> bool {
        matches!(self, Reach::Glibc { .. } | Reach::Musl { .. })
    }

    /// A stable one-word name, for `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Reach::Glibc { .. } => "glibc",
            Reach::Musl { .. } => "musl",
            Reach::OtherLoader { .. } => "other-loader",
            Reach::Static => "static",
            Reach::Go => "go",
            Reach::SetUid => "setuid",
            Reach::SetGid => "setgid",
            Reach::Capabilities => "capabilities",
            Reach::Class { .. } => "class",
            Reach::Machine { .. } => "machine",
        }
    }

    /// What to do instead, for a program out of reach.
    pub fn instead(&self) -> &'static str {
        match self {
            Reach::Glibc { .. } | Reach::Musl { .. } => "",
            Reach::OtherLoader { .. } => {
                "try it and watch `ss -tno`, or set the options in the program"
            }
            Reach::Static => {
                "run it with `keepalive run --kernel` (root; `check --kernel` says whether \
                 it works here), link it dynamically, or set the socket options in the program"
            }
            Reach::Go => {
                "`keepalive run --kernel` (root) reaches its connections, but Go sets its own \
                 keepalive after connecting, which wins: set it in the program (net.Dialer \
                 and net.ListenConfig have KeepAliveConfig)"
            }
            Reach::SetUid | Reach::SetGid => {
                "run it with `keepalive run --kernel` (root), run a copy without the set-ID \
                 bit, or list the library in /etc/ld.so.preload"
            }
            Reach::Capabilities => {
                "run it with `keepalive run --kernel` (root), run a copy without file \
                 capabilities (systemd can grant AmbientCapabilities=), or list the library \
                 in /etc/ld.so.preload"
            }
            Reach::Class { .. } | Reach::Machine { .. } => {
                "build the library for that architecture and name it with --library"
            }
        }
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reach::Glibc { loader } => write!(
                f,
                "dynamically linked; glibc's loader {loader} preloads the library"
            ),
            Reach::Musl { loader } => write!(
                f,
                "dynamically linked against musl; musl's loader {loader} preloads the \
                 glibc-built library (it takes libc.so.6 as itself)"
            ),
            Reach::OtherLoader { loader } => write!(
                f,
                "its loader {loader} is neither glibc's nor musl's; preloading is untested there"
            ),
            Reach::Static => f.write_str(
                "statically linked (no program interpreter): no loader runs, so nothing reads LD_PRELOAD",
            ),
            Reach::Go => f.write_str(
                "a Go program: Go's net package makes socket system calls directly, not through the C library",
            ),
            Reach::SetUid => f.write_str(
                "set-user-ID: the loader runs it in secure-execution mode and ignores LD_PRELOAD paths \
                 (except when its owner runs it)",
            ),
            Reach::SetGid => f.write_str(
                "set-group-ID: the loader runs it in secure-execution mode and ignores LD_PRELOAD paths",
            ),
            Reach::Capabilities => f.write_str(
                "has file capabilities (security.capability): the loader runs it in secure-execution \
                 mode and ignores LD_PRELOAD paths",
            ),
            Reach::Class { bits } => write!(
                f,
                "a {bits}-bit program; the library is {}-bit, and the loader skips it",
                own_bits()
            ),
            Reach::Machine { machine } => write!(
                f,
                "built for {}; the library is for {}, and the loader skips it",
                machine_name(*machine),
                machine_name(own_machine())
            ),
        }
    }
}

/// Who runs the program. Secure execution depends on the user: a set-user-ID program
/// run by its owner, or one with file capabilities run by root, reads LD_PRELOAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// Any user, as a service may be run (`check`, `enable`).
    Anyone,
    /// This process's real user and group, who `run` execs the program as.
    Me,
}

/// The verdict on one program.
#[derive(Debug)]
pub struct Verdict {
    /// What the user named.
    pub command: OsString,
    /// The scripts followed to get to the program, outermost first.
    pub scripts: Vec<PathBuf>,
    /// The ELF program that the kernel finally runs.
    pub program: PathBuf,
    pub reach: Reach,
}

impl Verdict {
    /// "/tmp/x.sh runs /usr/bin/python3.11": where the verdict applies.
    pub fn chain(&self) -> String {
        let mut text = String::new();
        for script in &self.scripts {
            text.push_str(&format!("{} runs ", script.display()));
        }
        text.push_str(&self.program.display().to_string());
        text
    }

    pub fn line(&self) -> String {
        let verdict = if self.reach.reachable() {
            "reachable"
        } else {
            "not reachable"
        };
        match self.reach.instead() {
            "" => format!("{verdict}: {}: {}", self.chain(), self.reach),
            instead => format!("{verdict}: {}: {}; {instead}", self.chain(), self.reach),
        }
    }

    /// The warning `run` and `enable` print for a program out of reach.
    pub fn warning(&self) -> String {
        format!(
            "keepalive: warning: preloading cannot reach {}: {}; {}",
            self.chain(),
            self.reach,
            self.reach.instead()
        )
    }

    /// The line `run --strict` and `enable --strict` refuse with.
    pub fn refusal(&self) -> String {
        format!(
            "refused: preloading cannot reach {}: {}; {}",
            self.chain(),
            self.reach,
            self.reach.instead()
        )
    }

    fn json(&self) -> String {
        self.json_object().finish()
    }

    /// The fields of `--json`, for `check --kernel` to add its own to.
    pub fn json_object(&self) -> Object {
        let mut object = Object::new();
        object
            .string("command", &self.command.to_string_lossy())
            .string("program", &self.program.to_string_lossy())
            .strings(
                "scripts",
                self.scripts.iter().map(|script| script.to_string_lossy()),
            )
            .bool("reachable", self.reach.reachable())
            .string("kind", self.reach.kind())
            .string("reason", &self.reach.to_string())
            .string("instead", self.reach.instead());
        object
    }
}

/// `keepalive check`.
pub fn command(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let verdict = inspect(&args.program, &Root::host(), Runner::Anyone)?;
    if args.json {
        failure::say(format_args!("{}", verdict.json()))?;
    } else {
        failure::say(format_args!("{}", verdict.line()))?;
    }
    Ok(if verdict.reach.reachable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The file system programs are looked up in: `/`, or `enable --root DIR`.
pub struct Root {
    dir: Option<PathBuf>,
    path: OsString,
}

impl Root {
    /// This machine, with this process's PATH, as exec would search it.
    pub fn host() -> Root {
        Root {
            dir: None,
            path: std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        }
    }

    /// Another root, searched with systemd's default PATH for services.
    pub fn under(dir: &Path) -> Root {
        Root {
            dir: Some(dir.to_path_buf()),
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".into(),
        }
    }

    /// Where `path`, as the program sees it, is on this machine.
    fn real(&self, path: &Path) -> PathBuf {
        under_root(self.dir.as_deref(), path)
    }

    /// The path exec would run for `name`: as given when it holds a slash, else the
    /// first executable file of that name in PATH.
    fn resolve(&self, name: &OsStr) -> Result<PathBuf, Failure> {
        if name.as_bytes().contains(&b'/') {
            let path = Path::new(name);
            return Ok(match self.dir {
                Some(_) => path.to_path_buf(),
                None => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            });
        }
        std::env::split_paths(&self.path)
            .map(|dir| dir.join(name))
            .find(|path| executable(&self.real(path)))
            .ok_or_else(|| Failure::with_code(127, format!("{}: not found in PATH", quoted(name))))
    }
}

fn executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Follows `command` through PATH and `#!` lines to the ELF program and judges it.
pub fn inspect(command: &OsStr, root: &Root, runner: Runner) -> Result<Verdict, Failure> {
    let mut scripts: Vec<PathBuf> = Vec::new();
    let mut path = root.resolve(command)?;
    loop {
        let real = root.real(&path);
        // An interpreter is named with the script that names it.
        let shown = match scripts.last() {
            Some(script) => format!(
                "{}: #! interpreter {}",
                quoted(script.as_os_str()),
                quoted(path.as_os_str())
            ),
            None => quoted(path.as_os_str()),
        };
        let meta = real
            .metadata()
            .map_err(|err| Failure::usage(format!("{shown}: {err}")))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(Failure::usage(format!("{shown}: not an executable file")));
        }
        let data = std::fs::read(&real).map_err(|err| Failure::usage(format!("{shown}: {err}")))?;
        if let Some(line) = data.strip_prefix(b"#!") {
            if scripts.len() == MAX_SCRIPTS {
                return Err(Failure::usage(format!(
                    "{shown}: more than {MAX_SCRIPTS} nested #! interpreters"
                )));
            }
            let interpreter = interpreter(line, root)
                .map_err(|why| Failure::usage(format!("{shown}: #! line: {why}")))?;
            scripts.push(path);
            path = interpreter;
            continue;
        }
        let reach = judge(&data, &meta, &real, runner).map_err(|why| {
            Failure::usage(format!("{shown}: not an ELF program or #! script ({why})"))
        })?;
        return Ok(Verdict {
            command: command.to_os_string(),
            scripts,
            program: path,
            reach,
        });
    }
}

/// The program a `#!` line runs, following `/usr/bin/env NAME` (and `env -S NAME …`)
/// through PATH as env(1) would.
fn interpreter(line: &[u8], root: &Root) -> Result<PathBuf, String> {
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|word| !word.is_empty());
    let first = words.next().ok_or("no interpreter")?;
    let first = PathBuf::from(OsStr::from_bytes(first));
    if first.file_name() != Some(OsStr::new("env")) {
        return Ok(first);
    }
    let name = words
        .find(|word| !word.starts_with(b"-") && !word.contains(&b'='))
        .ok_or("env without a program name")?;
    root.resolve(OsStr::from_bytes(name))
        .map_err(|failure| failure.message)
}

/// The verdict on one ELF file.
fn judge(data: &[u8], meta: &Metadata, path: &Path, runner: Runner) -> Result<Reach, String> {
    let mode = meta.mode();
    let elf = Elf::parse(data)?;
    if elf.bits != own_bits() {
        return Ok(Reach::Class { bits: elf.bits });
    }
    if elf.machine != own_machine() {
        return Ok(Reach::Machine {
            machine: elf.machine,
        });
    }
    if elf.go {
        return Ok(Reach::Go);
    }
    let Some(loader) = elf.interpreter else {
        return Ok(Reach::Static);
    };
    // execve(2) runs the loader in secure-execution mode (AT_SECURE) when the
    // effective IDs after exec differ from the real ones, or capabilities are gained.
    let me = match runner {
        Runner::Anyone => None,
        // SAFETY: getuid(2) and getgid(2) cannot fail.
        Runner::Me => Some(unsafe { (libc::getuid(), libc::getgid()) }),
    };
    if mode & libc::S_ISUID != 0 && me.is_none_or(|(uid, _)| uid != meta.uid()) {
        return Ok(Reach::SetUid);
    }
    // Without group execute, the set-group-ID bit means mandatory locking (stat(2)).
    let setgid = mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP;
    if setgid && me.is_none_or(|(_, gid)| gid != meta.gid()) {
        return Ok(Reach::SetGid);
    }
    // Root already holds every capability a file can grant (capabilities(7)).
    if has_capabilities(path) && me.is_none_or(|(uid, _)| uid != 0) {
        return Ok(Reach::Capabilities);
    }
    let name = Path::new(&loader)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(if name.starts_with("ld-musl") {
        Reach::Musl { loader }
    } else if name.starts_with("ld-linux") || name.starts_with("ld64.so") || name == "ld.so.1" {
        Reach::Glibc { loader }
    } else {
        Reach::OtherLoader { loader }
    })
}

/// Whether the file carries `security.capability`: exec then grants capabilities and
/// the loader runs in secure-execution mode (capabilities(7)).
fn has_capabilities(path: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated and live for the call; a null buffer of
    // size 0 asks getxattr(2) only for the value's size.
    let size = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    size > 0
}

/// Where `path`, as a program in the file system tree at `root` sees it, is on this
/// machine: under `root` (`--root`), or as it is.
pub fn under_root(root: Option<&Path>, path: &Path) -> PathBuf {
    match root {
        Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_path_buf(),
    }
}
