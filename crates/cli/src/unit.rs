//! `keepalive enable` and `disable`: a drop-in that preloads the library into a
//! systemd service.
//!
//! systemd.unit(5): drop-ins in UNIT.d/*.conf are applied after the unit file, in file
//! name order across all unit directories, and a later `Environment=` assignment of a
//! variable replaces an earlier one. So the drop-in is named to sort last and carries
//! the whole `LD_PRELOAD` the unit had, with the library added; an `EnvironmentFile=`
//! is applied after every `Environment=` (systemd.exec(5)), so one that sets a
//! variable the drop-in needs is refused instead of being silently lost.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::check::{self, Root, Runner};
use crate::cli::{DisableArgs, EnableArgs, Place};
use crate::env;
use crate::failure::{self, Failure};
use crate::kernel;
use crate::library;

/// The drop-in's file name: after `override.conf` (systemctl edit) and numbered ones.
const DROP_IN: &str = "zz-keepalive.conf";

/// The first line of every drop-in `enable` writes; `disable` removes only such files.
const MARKER: &str = "# Written by `keepalive enable`; `keepalive disable` removes it.";

/// A service and the directories systemd would read it from.
struct Unit {
    /// `name.service`, or `name@instance.service`.
    name: String,
    /// The unit directories, highest priority first, as paths on this machine.
    dirs: Vec<PathBuf>,
    /// Where the drop-in is written: the directory of local configuration.
    config_dir: PathBuf,
    root: Option<PathBuf>,
}

impl Unit {
    fn new(place: &Place) -> Result<Unit, Failure> {
        let name = service_name(&place.unit)?;
        let prefix = |path: &str| check::under_root(place.root.as_deref(), Path::new(path));
        let (config_dir, system) = if place.user {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))
                .ok_or_else(|| Failure::usage("--user: neither XDG_CONFIG_HOME nor HOME is set"))?;
            let config = prefix(&config.join("systemd/user").to_string_lossy());
            let system: &[&str] = &[
                "/etc/systemd/user",
                "/run/systemd/user",
                "/usr/local/share/systemd/user",
                "/usr/share/systemd/user",
                "/usr/local/lib/systemd/user",
                "/usr/lib/systemd/user",
            ];
            (config, system)
        } else {
            // systemd.unit(5), "System Unit Search Path", without the directories only
            // systemctl itself writes (*.control, *.attached).
            let system: &[&str] = &[
                "/run/systemd/transient",
                "/run/systemd/generator.early",
                "/run/systemd/system",
                "/run/systemd/generator",
                "/usr/local/lib/systemd/system",
                "/lib/systemd/system",
                "/usr/lib/systemd/system",
                "/run/systemd/generator.late",
            ];
            (prefix("/etc/systemd/system"), system)
        };
        let mut dirs = vec![config_dir.clone()];
        dirs.extend(system.iter().map(|dir| prefix(dir)));
        Ok(Unit {
            name,
            dirs,
            config_dir,
            root: place.root.clone(),
        })
    }

    /// The unit file: the first of that name in the unit directories, or the template's
    /// for an instance (`foo@1.service` from `foo@.service`).
    fn file(&self) -> Result<PathBuf, Failure> {
        let mut names = vec![self.name.clone()];
        if let Some(template) = template(&self.name) {
            names.push(template);
        }
        names
            .iter()
            .flat_map(|name| self.dirs.iter().map(move |dir| dir.join(name)))
            .find(|path| path.is_file())
            .ok_or_else(|| {
                let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
                Failure::usage(format!(
                    "{}: no such unit in {}",
                    self.name,
                    dirs.join(", ")
                ))
            })
    }

    /// The drop-ins systemd applies, in the order it applies them, without ours.
    fn drop_ins(&self) -> Vec<PathBuf> {
        let mut names = vec![self.name.clone()];
        if let Some(template) = template(&self.name) {
            names.push(template);
        }
        let mut found: Vec<(OsString, PathBuf)> = Vec::new();
        for dir in &self.dirs {
            for name in &names {
                let Ok(entries) = std::fs::read_dir(dir.join(format!("{name}.d"))) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let file = entry.file_name();
                    let conf = Path::new(&file)
                        .extension()
                        .is_some_and(|ext| ext == "conf");
                    // A name already found in a directory of higher priority masks it.
                    if conf && file != DROP_IN && !found.iter().any(|(f, _)| *f == file) {
                        found.push((file, entry.path()));
                    }
                }
            }
        }
        found.sort();
        found.into_iter().map(|(_, path)| path).collect()
    }

    fn drop_in(&self) -> PathBuf {
        self.config_dir
            .join(format!("{}.d", self.name))
            .join(DROP_IN)
    }

    /// A path the unit names, on this machine.
    fn real(&self, path: &str) -> PathBuf {
        check::under_root(self.root.as_deref(), Path::new(path))
    }
}

/// `foo` → `foo.service`; refuses path separators and units that run no program.
fn service_name(unit: &str) -> Result<String, Failure> {
    if unit.is_empty() || unit.contains('/') || unit.contains('\0') {
        return Err(Failure::usage(format!(
            "'{unit}': not a unit name (a name such as nginx.service, without a path)"
        )));
    }
    if !unit.contains('.') {
        return Ok(format!("{unit}.service"));
    }
    if unit.ends_with(".service") && unit.len() > ".service".len() {
        return Ok(unit.to_string());
    }
    Err(Failure::usage(format!(
        "'{unit}': only a .service runs a program to preload into"
    )))
}

/// `foo@bar.service` → `foo@.service`.
fn template(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_once('@')?;
    let suffix = rest.rsplit_once('.')?.1;
    (!rest.starts_with('.')).then(|| format!("{prefix}@.{suffix}"))
}

/// What the unit's files say that matters here.
#[derive(Default)]
struct Service {
    /// Every `Environment=` assignment, in order.
    environment: Vec<(String, String)>,
    /// `EnvironmentFile=` paths, and whether a missing file is allowed (`-`).
    environment_files: Vec<(String, bool)>,
    exec_start: Option<String>,
    /// The variables set by drop-ins sorted after ours, which would override it.
    later: Vec<(PathBuf, String)>,
}

impl Service {
    fn read(unit: &Unit) -> Result<Service, Failure> {
        let mut service = Service::default();
        let ours = OsString::from(DROP_IN);
        let drop_ins = unit.drop_ins().into_iter().map(|file| {
            let after_ours = file.file_name() > Some(ours.as_os_str());
            (file, after_ours)
        });
        let files: Vec<(PathBuf, bool)> = std::iter::once((unit.file()?, false))
            .chain(drop_ins)
            .collect();
        for (file, after_ours) in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|err| Failure::usage(format!("{}: {err}", file.display())))?;
            for (key, value) in service_settings(&text) {
                match key.as_str() {
                    "Environment" if value.is_empty() => service.environment.clear(),
                    "Environment" => {
                        for word in words(&value) {
                            if let Some((name, value)) = word.split_once('=') {
                                if after_ours {
                                    service.later.push((file.clone(), name.to_string()));
                                }
                                service
                                    .environment
                                    .push((name.to_string(), value.to_string()));
                            }
                        }
                    }
                    "EnvironmentFile" if value.is_empty() => service.environment_files.clear(),
                    "EnvironmentFile" => {
                        let (path, optional) = match value.strip_prefix('-') {
                            Some(path) => (path.to_string(), true),
                            None => (value.clone(), false),
                        };
                        service.environment_files.push((path, optional));
                    }
                    "ExecStart" if value.is_empty() => service.exec_start = None,
                    "ExecStart" => service.exec_start = Some(value),
                    _ => {}
                }
            }
        }
        Ok(service)
    }

    /// The last value the unit gives `name` through `Environment=`.
    fn get(&self, name: &str) -> Option<&str> {
        self.environment
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The `key=value` settings of the `[Service]` section, continuation lines joined and
/// comments left out (systemd.syntax(7)).
fn service_settings(text: &str) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        let whole = std::mem::take(&mut pending) + line;
        if whole.starts_with('[') && whole.ends_with(']') {
            section = whole[1..whole.len() - 1].to_string();
        } else if section == "Service" {
            if let Some((key, value)) = whole.split_once('=') {
                settings.push((key.trim().to_string(), value.trim().to_string()));
            }
        }
    }
    settings
}

/// Splits a value into words as systemd does for `Environment=`: blanks separate,
/// double or single quotes group, a backslash escapes the next character.
fn words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (q, None) if q == '"' || q == '\'' => {
                quote = Some(q);
                in_word = true;
            }
            (q, Some(open)) if q == open => quote = None,
            (c, None) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (c, _) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The variables an environment file sets, as systemd reads it: `NAME=VALUE` lines,
/// optionally quoted, comments left out.
fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            let value = words(value.trim()).join(" ");
            Some((name.trim().to_string(), value))
        })
        .collect()
}

/// One `Environment=` line, quoted for systemd: `"` and `\` are escaped. A `%` is
/// left alone: systemd expands specifiers after unquoting, so the entries copied from
/// the unit keep their meaning, and the library's own path is escaped by the caller.
fn assignment(name: &str, value: &str) -> String {
    let value = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("Environment=\"{name}={value}\"\n")
}

/// `keepalive enable`.
pub fn enable(args: &EnableArgs) -> Result<ExitCode, Failure> {
    let unit = Unit::new(&args.place)?;
    let service = Service::read(&unit)?;
    if args.kernel {
        return enable_kernel(args, &unit);
    }
    let library = library::find(args.settings.library.as_deref())?;

    let config = env::resolve(&args.settings, |_| None, "")?;
    // What the drop-in sets, which nothing applied after it may set again.
    let ours: Vec<&str> = std::iter::once("LD_PRELOAD")
        .chain(config.variables().map(|(var, _)| env::name(var)))
        .collect();
    let mut from_files = Vec::new();
    for (path, optional) in &service.environment_files {
        let text = match std::fs::read_to_string(unit.real(path)) {
            Ok(text) => text,
            Err(_) if *optional => continue,
            Err(err) => {
                return Err(Failure::usage(format!(
                    "{}: EnvironmentFile={path}: {err}",
                    unit.name
                )));
            }
        };
        let assignments = environment_file(&text);
        if let Some((name, _)) = assignments
            .iter()
            .find(|(name, _)| ours.contains(&name.as_str()))
        {
            return Err(Failure::with_code(
                1,
                format!(
                    "{}: EnvironmentFile={path} sets {name}, which overrides the drop-in's \
                     Environment=; use ExecStart=keepalive run … -- … instead",
                    unit.name
                ),
            ));
        }
        from_files.extend(assignments);
    }
    if let Some((path, name)) = service
        .later
        .iter()
        .find(|(_, name)| ours.contains(&name.as_str()))
    {
        return Err(Failure::with_code(
            1,
            format!(
                "{}: {} sets {name} after {DROP_IN} would; rename it to sort before {DROP_IN}",
                unit.name,
                path.display()
            ),
        ));
    }
    // The unit's own values of the variables the options leave alone stay in force:
    // they are checked as `run` checks inherited ones. Environment files apply last.
    let from_unit = format!("in {}", unit.name);
    env::resolve(
        &args.settings,
        |name| {
            let from_file = from_files.iter().rev().find(|(n, _)| n == name);
            from_file
                .map(|(_, value)| value.as_str())
                .or_else(|| service.get(name))
                .map(OsString::from)
        },
        &from_unit,
    )?;

    match service.exec_start.as_deref().and_then(exec_program) {
        None => failure::warn(format_args!(
            "keepalive: warning: {} has no ExecStart= to check",
            unit.name
        )),
        Some(program) => {
            let root = match &unit.root {
                Some(dir) => Root::under(dir),
                None => Root::under(Path::new("/")),
            };
            match check::inspect(program.as_ref(), &root, Runner::Anyone) {
                Ok(verdict) if !verdict.reach.reachable() => {
                    failure::warn(format_args!("{}", verdict.warning()))
                }
                Ok(_) => {}
                Err(failure) => failure::warn(format_args!(
                    "keepalive: warning: cannot check {}'s ExecStart program: {}",
                    unit.name, failure.message
                )),
            }
        }
    }

    let existing = service.get("LD_PRELOAD").map(OsString::from);
    // `%` starts a specifier in unit files (systemd.unit(5)); `%%` is a literal one.
    let library = PathBuf::from(library.to_string_lossy().replace('%', "%%"));
    let preload = library::preload(existing.as_deref(), &library);
    let mut text = format!("{MARKER}\n[Service]\n");
    text.push_str(&assignment("LD_PRELOAD", &preload.to_string_lossy()));
    for (var, value) in config.variables() {
        text.push_str(&assignment(env::name(var), &value.to_string()));
    }
    write_drop_in(&unit, &text)?;
    apply(&args.place, &unit, true)
}

/// `enable --kernel`: the same drop-in file, with an `ExecStartPre=+` line that
/// attaches the sock_ops program instead of the preload; after `--now`, a connection
/// in the unit's cgroup is shown to carry the settings.
fn enable_kernel(args: &EnableArgs, unit: &Unit) -> Result<ExitCode, Failure> {
    let config = env::resolve(&args.settings, |_| None, "")?;
    let text = format!(
        "{MARKER}\n[Service]\n{}",
        kernel::unit::exec_start_pre(&config)?
    );
    write_drop_in(unit, &text)?;
    let code = apply(&args.place, unit, true)?;
    if args.place.now {
        kernel::unit::verify(&unit.name, &config)?;
    }
    Ok(code)
}

/// Writes the drop-in unless it already says `text`.
fn write_drop_in(unit: &Unit, text: &str) -> Result<(), Failure> {
    let path = unit.drop_in();
    let unchanged = std::fs::read_to_string(&path).is_ok_and(|old| old == text);
    if unchanged {
        failure::say(format_args!("{} is up to date", path.display()))
    } else {
        write_atomically(&path, text.as_bytes()).map_err(|err| {
            Failure::with_code(1, format!("cannot write {}: {err}", path.display()))
        })?;
        failure::say(format_args!("wrote {}", path.display()))
    }
}

/// `keepalive disable`: removes the drop-in `enable` wrote, and nothing else.
pub fn disable(args: &DisableArgs) -> Result<ExitCode, Failure> {
    let unit = Unit::new(&args.place)?;
    let path = unit.drop_in();
    match std::fs::read_to_string(&path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            failure::say(format_args!(
                "{}: no drop-in from keepalive enable ({} does not exist)",
                unit.name,
                path.display()
            ))?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(err) => return Err(Failure::with_code(1, format!("{}: {err}", path.display()))),
        Ok(text) if !text.starts_with(MARKER) => {
            return Err(Failure::with_code(
                1,
                format!(
                    "{}: not written by keepalive enable; left alone",
                    path.display()
                ),
            ));
        }
        Ok(_) => {}
    }
    std::fs::remove_file(&path)
        .map_err(|err| Failure::with_code(1, format!("cannot remove {}: {err}", path.display())))?;
    // The directory goes too when nothing else is in it; a non-empty one stays.
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    failure::say(format_args!("removed {}", path.display()))?;
    apply(&args.place, &unit, false)
}

/// The program of an `ExecStart=` line: the first word, without the prefixes
/// `@ - : + !` (systemd.service(5)).
fn exec_program(line: &str) -> Option<String> {
    let line = line.trim_start_matches(['@', '-', ':', '+', '!']);
    words(line).into_iter().next()
}

/// Writes `path` whole or not at all: a temporary file in the same directory, flushed
/// to disk, then renamed over it (rename(2) is atomic within a file system).
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // systemd reads only *.conf, so a temporary file left by a crash is ignored.
    let partial = dir.join(format!(".{DROP_IN}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Tells the user the systemctl commands that apply the change, or runs them with
/// `--now` when systemd is running.
fn apply(place: &Place, unit: &Unit, enabling: bool) -> Result<ExitCode, Failure> {
    let scope: &[&str] = if place.user { &["--user"] } else { &[] };
    let commands: [Vec<&str>; 2] = [
        [scope, &["daemon-reload"]].concat(),
        [scope, &["restart", &unit.name]].concat(),
    ];
    if !place.now {
        if place.root.is_none() {
            let shown: Vec<String> = commands
                .iter()
                .map(|c| format!("systemctl {}", c.join(" ")))
                .collect();
            let what = if enabling {
                "to apply it"
            } else {
                "to stop preloading"
            };
            failure::say(format_args!("{what}: {}", shown.join(" && ")))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // sd_booted(3): systemd is running as the init system when this directory exists.
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(Failure::with_code(1, "--now: systemd is not running here"));
    }
    for args in &commands {
        let status = Command::new("systemctl")
            .args(args)
            .status()
            .map_err(|err| Failure::with_code(1, format!("cannot run systemctl: {err}")))?;
        if !status.success() {
            return Err(Failure::with_code(
                1,
                format!("systemctl {} failed: {status}", args.join(" ")),
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        assert_eq!(service_name("nginx").unwrap(), "nginx.service");
        assert_eq!(service_name("a@b.service").unwrap(), "a@b.service");
        assert!(service_name("../etc/passwd").is_err());
        assert!(service_name("a/b.service").is_err());
        assert!(service_name("sshd.socket").is_err());
        assert!(service_name("").is_err());
        assert_eq!(
            template("getty@tty1.service").as_deref(),
            Some("getty@.service")
        );
        assert_eq!(template("getty@.service"), None);
    }

    #[test]
    fn environment_words_follow_systemd_quoting() {
        assert_eq!(
            words(r#"A=1 "B=two words" 'C=x"y' D=a\ b"#),
            ["A=1", "B=two words", "C=x\"y", "D=a b"]
        );
        assert_eq!(
            words(r#""LD_PRELOAD=/a.so /b.so""#),
            ["LD_PRELOAD=/a.so /b.so"]
        );
    }

    #[test]
    fn service_section_only_with_continuations() {
        let text = "[Unit]\nEnvironment=X=1\n[Service]\n# c\nEnvironment=A=1 \\\n  B=2\nExecStart=/bin/true\n";
        assert_eq!(
            service_settings(text),
            [
                ("Environment".to_string(), "A=1  B=2".to_string()),
                ("ExecStart".to_string(), "/bin/true".to_string())
            ]
        );
    }

    #[test]
    fn exec_prefixes_are_not_the_program() {
        assert_eq!(
            exec_program("-@/usr/bin/app --x").as_deref(),
            Some("/usr/bin/app")
        );
        assert_eq!(exec_program("!!app").as_deref(), Some("app"));
    }

    #[test]
    fn assignments_escape_for_systemd() {
        assert_eq!(
            assignment("A", r#"x"%i\"#),
            "Environment=\"A=x\\\"%i\\\\\"\n"
        );
    }
}
