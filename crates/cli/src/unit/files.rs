//! A service as its unit files describe it: the directories systemd reads, the unit's
//! real name behind an alias, a mask, and the `[Service]` settings of the unit file
//! and its drop-ins in the order systemd applies them.
//!
//! systemd.unit(5): the first unit file of a name found in the search path wins; a
//! symlink to /dev/null masks the unit; a symlink to a file of another name is an
//! alias, and the unit is known by the target's name (its `Id=`), with drop-ins read
//! under every name. Drop-ins in UNIT.d/*.conf are applied after the unit file, in
//! file name order across all directories, a name in a directory of higher priority
//! hiding the same name in one of lower priority.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::name::{Kind, ServiceName};
use super::{DROP_IN, MARKER};
use crate::check;
use crate::cli::Place;
use crate::failure::Failure;

/// How many aliases are followed to the real unit, as a bound against a loop.
const MAX_ALIASES: usize = 8;

/// A service and the directories systemd would read it from.
pub struct Unit {
    /// The unit's real name: the target of the alias the user may have typed.
    pub name: ServiceName,
    /// Other names of the same unit (aliases), whose drop-ins systemd reads as well.
    pub aliases: Vec<String>,
    /// The unit file (the template's, for an instance).
    pub file: PathBuf,
    /// The unit directories, highest priority first, as paths on this machine.
    dirs: Vec<PathBuf>,
    /// Where the drop-in goes: local configuration, or /run with `--runtime`.
    config_dir: PathBuf,
    /// The other place a drop-in of ours may be (/run without `--runtime`, /etc with).
    other_dir: PathBuf,
    pub root: Option<PathBuf>,
}

impl Unit {
    /// Finds the unit `place` names; refuses a name systemd would refuse, a unit that
    /// does not exist and a masked one (`systemctl edit` refuses those too).
    pub fn new(place: &Place) -> Result<Unit, Failure> {
        Unit::find(place, false)
    }

    /// [`Unit::new`], or with `gone`, a unit whose file is no longer there (its
    /// package removed) known by the name typed, with no file: its drop-ins outlive
    /// it, and would preload the unit installed again, so `disable` still removes them.
    pub fn find(place: &Place, gone: bool) -> Result<Unit, Failure> {
        let typed = ServiceName::parse(&place.unit)?;
        let prefix = |path: &Path| check::under_root(place.root.as_deref(), path);
        let (config, runtime, system): (PathBuf, PathBuf, &[&str]) = if place.user {
            let home_config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))
                .ok_or_else(|| Failure::usage("--user: neither XDG_CONFIG_HOME nor HOME is set"))?;
            // systemd.unit(5): $XDG_RUNTIME_DIR/systemd/user, which pam_systemd sets
            // to /run/user/UID.
            // SAFETY: getuid(2) cannot fail.
            let uid = unsafe { libc::getuid() };
            let runtime = std::env::var_os("XDG_RUNTIME_DIR")
                .map(|dir| Path::new(&dir).join("systemd/user"))
                .unwrap_or_else(|| PathBuf::from(format!("/run/user/{uid}/systemd/user")));
            let system: &[&str] = &[
                "/etc/systemd/user",
                "/usr/local/share/systemd/user",
                "/usr/share/systemd/user",
                "/usr/local/lib/systemd/user",
                "/usr/lib/systemd/user",
            ];
            (home_config.join("systemd/user"), runtime, system)
        } else {
            // systemd.unit(5), "System Unit Search Path", without the directories only
            // systemctl itself writes (*.control, *.attached).
            let system: &[&str] = &[
                "/run/systemd/transient",
                "/run/systemd/generator.early",
                "/run/systemd/generator",
                "/usr/local/lib/systemd/system",
                "/lib/systemd/system",
                "/usr/lib/systemd/system",
                "/run/systemd/generator.late",
            ];
            (
                PathBuf::from("/etc/systemd/system"),
                PathBuf::from("/run/systemd/system"),
                system,
            )
        };
        let (config, runtime) = (prefix(&config), prefix(&runtime));
        let mut dirs = vec![config.clone(), runtime.clone()];
        dirs.extend(system.iter().map(|dir| prefix(Path::new(dir))));
        let (config_dir, other_dir) = if place.runtime {
            (runtime, config)
        } else {
            (config, runtime)
        };
        let (name, file) = match locate(&dirs, &typed, &place.unit) {
            Err(failure) if gone && failure.code == 2 => (typed.clone(), PathBuf::new()),
            found => found?,
        };
        let mut aliases = aliases_of(&dirs, &name);
        if typed != name && !aliases.contains(&typed.to_string()) {
            aliases.push(typed.to_string());
        }
        Ok(Unit {
            name,
            aliases,
            file,
            dirs,
            config_dir,
            other_dir,
            root: place.root.clone(),
        })
    }

    /// The drop-in directories systemd reads for the unit, in the order it looks for
    /// them (src/shared/dropin.c): for each of the unit's names, in every unit
    /// directory, NAME.d, its template's and its prefixes' up to each dash
    /// (`a-b-.service.d` and `a-.service.d` for `a-b-c.service`, systemd.unit(5));
    /// then the top-level `service.d` in every unit directory. Of several files of one
    /// name, the first found is the one applied.
    fn drop_in_dirs(&self) -> Vec<PathBuf> {
        let mut names = vec![self.name.to_string()];
        names.extend(self.aliases.iter().cloned());
        let mut found: Vec<PathBuf> = Vec::new();
        let mut add = |dir: PathBuf| {
            if !found.contains(&dir) {
                found.push(dir);
            }
        };
        for name in &names {
            let mut group = vec![name.clone()];
            group.extend(
                ServiceName::parse(name)
                    .ok()
                    .and_then(|name| name.template())
                    .map(|template| template.to_string()),
            );
            group.extend(dash_prefixes(name));
            for dir in &self.dirs {
                for name in &group {
                    add(dir.join(format!("{name}.d")));
                }
            }
        }
        for dir in &self.dirs {
            add(dir.join("service.d"));
        }
        found
    }

    /// The drop-ins systemd applies, in the order it applies them, with every file
    /// named like ours left out.
    pub fn drop_ins(&self) -> Vec<PathBuf> {
        let mut found: Vec<(OsString, PathBuf)> = Vec::new();
        for dir in self.drop_in_dirs() {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.file_name();
                let conf = Path::new(&file)
                    .extension()
                    .is_some_and(|ext| ext == "conf");
                if conf && file != DROP_IN && !found.iter().any(|(f, _)| *f == file) {
                    found.push((file, entry.path()));
                }
            }
        }
        found.sort();
        found.into_iter().map(|(_, path)| path).collect()
    }

    /// The other files named like ours that systemd reads for the unit: those it
    /// finds before the one `enable` writes (one of them is applied, and ours is not),
    /// and those after it (ours hides them).
    pub fn same_named(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let ours = self.drop_in();
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let mut past_ours = false;
        for dir in self.drop_in_dirs() {
            let path = dir.join(DROP_IN);
            if path == ours {
                past_ours = true;
            } else if path.symlink_metadata().is_ok() {
                if past_ours { &mut after } else { &mut before }.push(path);
            }
        }
        (before, after)
    }

    /// Where `enable` writes the drop-in: under the unit's real name, as `systemctl
    /// edit` does.
    pub fn drop_in(&self) -> PathBuf {
        self.config_dir
            .join(format!("{}.d", self.name))
            .join(DROP_IN)
    }

    /// Drop-ins of ours under the unit's other names (written by an earlier version,
    /// under the alias typed), which `disable` removes as well.
    pub fn stray_drop_ins(&self) -> Vec<PathBuf> {
        self.aliases
            .iter()
            .map(|alias| self.config_dir.join(format!("{alias}.d")).join(DROP_IN))
            .filter(|path| is_ours(path))
            .collect()
    }

    /// Our drop-in in the other place (/etc for `--runtime`, /run without), if any.
    pub fn drop_in_elsewhere(&self) -> Option<PathBuf> {
        let path = self
            .other_dir
            .join(format!("{}.d", self.name))
            .join(DROP_IN);
        is_ours(&path).then_some(path)
    }

    /// Whether the unit is transient (made by `systemd-run`, its file under
    /// /run/systemd/transient): gone when it stops, while a drop-in of its name stays.
    pub fn transient(&self) -> bool {
        self.file
            .parent()
            .is_some_and(|dir| dir.ends_with("run/systemd/transient"))
    }

    /// A path the unit names, on this machine.
    pub fn real(&self, path: &str) -> PathBuf {
        check::under_root(self.root.as_deref(), Path::new(path))
    }
}

/// The prefixes of a unit name up to each dash, longest first, as unit names:
/// `a-b-.service` and `a-.service` for `a-b-c.service` or `a-b-c@x.service`.
fn dash_prefixes(name: &str) -> Vec<String> {
    let stem = name.strip_suffix(".service").unwrap_or(name);
    let stem = stem.split('@').next().unwrap_or(stem);
    stem.match_indices('-')
        .rev()
        .filter(|(at, _)| *at > 0)
        .map(|(at, _)| format!("{}.service", &stem[..=at]))
        .collect()
}

/// Whether `path` is a drop-in `keepalive enable` wrote.
pub fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.starts_with(MARKER))
}

/// The unit's real name and file: follows aliases, refuses a mask.
fn locate(
    dirs: &[PathBuf],
    typed: &ServiceName,
    shown: &str,
) -> Result<(ServiceName, PathBuf), Failure> {
    let mut name = typed.clone();
    for _ in 0..MAX_ALIASES {
        let mut names = vec![name.to_string()];
        names.extend(name.template().map(|template| template.to_string()));
        let found = names
            .iter()
            .flat_map(|candidate| dirs.iter().map(move |dir| (candidate, dir.join(candidate))))
            .find(|(_, path)| path.symlink_metadata().is_ok());
        let Some((candidate, path)) = found else {
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(Failure::usage(format!(
                "'{shown}': no unit {name} in {}",
                dirs.join(", ")
            )));
        };
        let Ok(target) = std::fs::read_link(&path) else {
            return Ok((name, path));
        };
        if target == Path::new("/dev/null") {
            return Err(Failure::with_code(
                1,
                format!(
                    "'{shown}': {name} is masked ({} links to /dev/null); unmask it first \
                     (systemctl unmask {name})",
                    path.display()
                ),
            ));
        }
        let target_name = target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if target_name == *candidate {
            // A linked unit (`systemctl link`): the same name, its file elsewhere.
            return Ok((name, path));
        }
        name = name.with_unit(&target_name)?;
    }
    Err(Failure::with_code(
        1,
        format!("'{shown}': more than {MAX_ALIASES} aliases in a row"),
    ))
}

/// The names of the symlinks in the unit directories that point to `name`'s file (or
/// to its template's, for an instance): the unit's aliases.
fn aliases_of(dirs: &[PathBuf], name: &ServiceName) -> Vec<String> {
    let own = name.template().unwrap_or_else(|| name.clone()).to_string();
    let mut aliases = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let alias = entry.file_name().to_string_lossy().into_owned();
            let points_here = std::fs::read_link(entry.path()).is_ok_and(|target| {
                target.file_name().is_some_and(|target| *target == *own) && alias != own
            });
            if !points_here {
                continue;
            }
            let alias = match (name.kind(), alias.strip_suffix("@.service")) {
                (Kind::Instance, Some(prefix)) => {
                    let instance = name.as_str().split_once('@').map_or("", |(_, rest)| rest);
                    format!("{prefix}@{instance}")
                }
                _ => alias,
            };
            if !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
    }
    aliases
}

/// What the unit's files say that matters here.
#[derive(Default)]
pub struct Service {
    /// Every `Environment=` assignment, in order.
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=` paths, and whether a missing file is allowed (`-`).
    pub environment_files: Vec<(String, bool)>,
    pub exec_start: Option<String>,
    /// The variables set by drop-ins sorted after ours, which would override it; an
    /// empty name for an `Environment=` that resets them all.
    pub later: Vec<(PathBuf, String)>,
    /// Every other `[Service]` setting, in the order applied (the sandboxing options).
    pub settings: Vec<(String, String)>,
}

impl Service {
    pub fn read(unit: &Unit) -> Result<Service, Failure> {
        let mut service = Service::default();
        let ours = OsString::from(DROP_IN);
        let drop_ins = unit.drop_ins().into_iter().map(|file| {
            let after_ours = file.file_name() > Some(ours.as_os_str());
            (file, after_ours)
        });
        let files: Vec<(PathBuf, bool)> = std::iter::once((unit.file.clone(), false))
            .chain(drop_ins)
            .collect();
        for (file, after_ours) in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|err| Failure::usage(format!("{}: {err}", file.display())))?;
            for (key, value) in service_settings(&text) {
                match key.as_str() {
                    "Environment" if value.is_empty() => {
                        if after_ours {
                            service.later.push((file.clone(), String::new()));
                        }
                        service.environment.clear();
                    }
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
                    _ => service.settings.push((key, value)),
                }
            }
        }
        Ok(service)
    }

    /// The last value the unit gives `name` through `Environment=`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.environment
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The value of a single-valued setting: the last assignment.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }

    /// The entries of a list setting: words of every assignment, an empty one
    /// resetting the list (systemd.exec(5)).
    pub fn list(&self, key: &str) -> Vec<String> {
        let mut entries = Vec::new();
        for (k, value) in &self.settings {
            if k != key {
                continue;
            }
            if value.is_empty() {
                entries.clear();
            }
            entries.extend(words(value));
        }
        entries
    }
}

/// The variables of a drop-in `enable` wrote earlier, to keep those not given again.
pub fn our_variables(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    if !text.starts_with(MARKER) {
        return Vec::new();
    }
    let settings = service_settings(&text);
    let mut variables: Vec<(String, String)> = settings
        .iter()
        .filter(|(key, _)| key == "Environment")
        .flat_map(|(_, value)| words(value))
        .filter_map(|word| {
            let (name, value) = word.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect();
    // The kernel route's drop-in carries them as kernel-attach's options.
    for (_, line) in settings.iter().filter(|(key, _)| key == "ExecStartPre") {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "kernel-attach") else {
            continue;
        };
        for pair in words[at + 1..].chunks(2) {
            let name = match pair[0] {
                "--mode" => "KEEPALIVE",
                "--idle" => "KEEPIDLE",
                "--interval" => "KEEPINTVL",
                "--count" => "KEEPCNT",
                "--user-timeout" => "TCP_USER_TIMEOUT",
                _ => continue,
            };
            if let Some(value) = pair.get(1) {
                let value = value.strip_suffix("ms").unwrap_or(value);
                variables.push((name.to_string(), value.to_string()));
            }
        }
    }
    variables
}

/// Which route an earlier `enable` wrote the drop-in for, if it wrote one: the
/// kernel's (`ExecStartPre=` with `kernel-attach`) or the library's.
pub fn our_route(path: &Path) -> Option<&'static str> {
    let text = std::fs::read_to_string(path).ok()?;
    if !text.starts_with(MARKER) {
        return None;
    }
    Some(if text.contains(" kernel-attach") {
        "the kernel route (--kernel)"
    } else {
        "the library (LD_PRELOAD)"
    })
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
pub fn words(value: &str) -> Vec<String> {
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
pub fn environment_file(text: &str) -> Vec<(String, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn prefixes_end_at_each_dash() {
        assert_eq!(
            dash_prefixes("a-b-c@x-y.service"),
            ["a-b-.service", "a-.service"]
        );
        assert_eq!(dash_prefixes("-x.service"), Vec::<String>::new());
        assert_eq!(dash_prefixes("web-.service"), ["web-.service"]);
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
}
