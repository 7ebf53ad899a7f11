//! `keepalive enable` and `disable`: a drop-in that preloads the library into a
//! systemd service, and the proof that the restarted service got it.
//!
//! systemd.unit(5): drop-ins in UNIT.d/*.conf are applied after the unit file, in file
//! name order across all unit directories, and a later `Environment=` assignment of a
//! variable replaces an earlier one. So the drop-in is named to sort last and carries
//! the whole `LD_PRELOAD` the unit had, with the library added; an `EnvironmentFile=`
//! is applied after every `Environment=` (systemd.exec(5)), so one that sets a
//! variable the drop-in needs is refused instead of being silently lost.

mod earlier;
mod files;
mod name;
mod owned;
mod sandbox;
mod systemctl;
mod verify;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keepalive_config::{Mode, Value, Var};

use crate::check::{self, Root, Runner, Verdict};
use crate::cli::{CheckArgs, DisableArgs, EnableArgs, Place, Settings};
use crate::env;
use crate::failure::{self, Failure};
use crate::kernel;
use crate::library;
use earlier::Earlier;
use files::{Service, Unit};
use name::Kind;
use systemctl::Systemctl;
use verify::Found;

/// The drop-in's file name: after `override.conf` (systemctl edit) and numbered ones.
const DROP_IN: &str = "zz-keepalive.conf";

/// The first line of every drop-in `enable` writes; `disable` removes only such files.
const MARKER: &str = "# Written by `keepalive enable`; `keepalive disable` removes it.";

/// One `Environment=` line, quoted for systemd: `"` and `\` are escaped. A `%` is
/// left alone: systemd expands specifiers after unquoting, so the entries copied from
/// the unit keep their meaning, and the library's own path is escaped by the caller.
fn assignment(name: &str, value: &str) -> String {
    let value = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("Environment=\"{name}={value}\"\n")
}

/// What `enable` would write, and what it found on the way.
struct Plan {
    unit: Unit,
    service: Service,
    /// The library as the service names it.
    library: PathBuf,
    drop_in: PathBuf,
    text: String,
    /// The variables the service's processes must have, `LD_PRELOAD` first.
    expected: Vec<(String, String)>,
    /// The verdict on an ExecStart program out of reach.
    verdict: Option<Verdict>,
    /// Lines about the earlier drop-in: variables kept, a copy of the unit's
    /// `LD_PRELOAD` that has drifted.
    notes: Vec<String>,
    /// The `LD_PRELOAD` of the earlier drop-in, when the unit now gives another.
    drifted: Option<(String, String)>,
    /// Held from reading the earlier drop-in until the new one is written.
    lock: Option<std::fs::File>,
}

/// The library the `LD_PRELOAD` of the unit's earlier drop-in names, when that path is
/// still there (the library's own checks then follow it): an entry named libkeepalive*, else the last one, where `enable` puts
/// its own after the unit's ([`library::preload`]).
fn earlier_library(unit: &Unit) -> Option<PathBuf> {
    let (_, preload) = files::our_variables(&unit.drop_in())
        .into_iter()
        .rev()
        .find(|(name, _)| name == "LD_PRELOAD")?;
    let entries: Vec<PathBuf> = preload
        .replace("%%", "%")
        .split([' ', ':'])
        .filter(|entry| !entry.is_empty())
        .map(PathBuf::from)
        .collect();
    let named = entries.iter().find(|path| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("libkeepalive"))
    });
    named
        .or(entries.last())
        .filter(|path| {
            unit.real(&path.to_string_lossy())
                .symlink_metadata()
                .is_ok()
        })
        .cloned()
}

/// Reads the unit, refuses what would not work, and composes the drop-in.
fn plan(place: &Place, settings: &Settings, strict: bool) -> Result<Plan, Failure> {
    let unit = Unit::new(place)?;
    refuse_transient(place, &unit)?;
    let lock = owned::lock(&unit.drop_in())?;
    if let Some(why) = owned::refusal(&unit.drop_in()) {
        return Err(Failure::with_code(1, format!("{}: {why}", unit.name)));
    }
    let service = Service::read(&unit)?;
    // The library as the service names it: with --root, a path inside the tree.
    // `--library`, else `KEEPALIVE_LIBRARY`, else the one the earlier drop-in names
    // where it is still there (a re-enable keeps it, as it keeps the earlier settings,
    // and `check --unit` compares like with like), else the one beside the command.
    let named = settings.library.clone().or_else(|| {
        std::env::var_os("KEEPALIVE_LIBRARY")
            .is_none()
            .then(|| earlier_library(&unit))
            .flatten()
    });
    let library = match &unit.root {
        Some(root) => library::find_in(root, named.as_deref())?,
        None => library::find(named.as_deref())?,
    };
    // systemd reads unit files as UTF-8 (systemd.syntax(7)): another byte cannot be
    // written, and a replacement character would name another file.
    if library.to_str().is_none() {
        return Err(Failure::usage(format!(
            "--library {}: the path is not UTF-8, which a unit file cannot carry; use a \
             symbolic link with a UTF-8 name",
            library::quoted(library.as_os_str())
        )));
    }
    let inside_root = |dir: &Path, path: &Path| {
        unit.real(&dir.to_string_lossy())
            .join(path.strip_prefix("/").unwrap_or(path))
            .is_file()
    };
    // The loader follows the path's symbolic links in the service's namespace: the
    // file they lead to must be visible too. Under RootDirectory= they are resolved
    // in that root, which is judged by what lies there.
    let target = (service.setting("RootDirectory").is_none_or(str::is_empty))
        .then(|| unit.real(&library.to_string_lossy()).canonicalize().ok())
        .flatten()
        .map(|real| match &unit.root {
            Some(root) => Path::new("/").join(real.strip_prefix(root).unwrap_or(&real)),
            None => real,
        })
        .filter(|target| *target != library);
    let hidden = sandbox::hides(&service, &library, inside_root).or_else(|| {
        let target = target.as_ref()?;
        let why = sandbox::hides(&service, target, inside_root)?;
        Some(format!("{why} (where {} leads)", library.display()))
    });
    if let Some(why) = hidden {
        return Err(Failure::with_code(
            1,
            format!(
                "{}: {why}, so the library {} would not load; install it where the service \
                 can read it (the packages use /usr/lib) and name it with --library",
                unit.name,
                library.display()
            ),
        ));
    }

    // What an earlier enable set and this one does not set again stays.
    let drop_in = unit.drop_in();
    let afresh = hint(place, "disable", unit.name.as_str());
    let (earlier, resolved) = over_earlier(settings, &unit, &afresh)?;
    let mut notes = resolved.overridden.clone();
    if let Some(route) = files::our_route(&drop_in).filter(|route| route.contains("kernel")) {
        notes.push(format!(
            "replaces {route} of the earlier enable with the library (LD_PRELOAD)"
        ));
    }

    // What the drop-in sets, which nothing applied after it may set again.
    let ours: Vec<&str> = std::iter::once("LD_PRELOAD")
        .chain(resolved.variables().iter().map(|(var, _)| env::name(*var)))
        .collect();
    let from_files = environment_files(&unit, &service, &ours)?;
    if let Some((path, name)) = service
        .later
        .iter()
        .find(|(_, name)| name.is_empty() || ours.contains(&name.as_str()))
    {
        let what = if name.is_empty() {
            "resets Environment= (every variable)".to_string()
        } else {
            format!("sets {name}")
        };
        return Err(Failure::with_code(
            1,
            format!(
                "{}: {} {what} after {DROP_IN} would; rename it to sort before {DROP_IN}",
                unit.name,
                path.display()
            ),
        ));
    }
    // systemd.exec(5): UnsetEnvironment= applies after every assignment, the drop-in's
    // too; `NAME=VALUE` only to that very assignment.
    let unset = service.list("UnsetEnvironment");
    let unsets = |name: &str, value: &str| {
        unset.iter().find(|entry| match entry.split_once('=') {
            Some((n, v)) => n == name && v == value,
            None => *entry == name,
        })
    };
    // The unit's own values of the variables the options leave alone stay in force:
    // they are checked as `run` checks inherited ones, and an option that replaces
    // one is said.
    let from_unit = format!("in {}", unit.name);
    let against_unit = env::resolve_against(
        settings,
        |name| {
            let from_file = from_files.iter().rev().find(|(n, _)| n == name);
            from_file
                .map(|(_, value)| value.as_str())
                .or_else(|| service.get(name))
                .map(OsString::from)
        },
        &from_unit,
    )?;
    notes.extend(against_unit.overridden.iter().cloned());
    // `KEEPALIVE=on` is the library's default and so not among the configuration's
    // variables; it is written when it overrides the unit's `off`, now or in the
    // earlier drop-in.
    let earlier_on = earlier.get(env::name(Var::Keepalive)) == Some("on");
    let mut variables = resolved.variables();
    let on_over_off = against_unit.switched_on || (earlier_on && settings.mode.is_none());
    if on_over_off && !variables.iter().any(|(var, _)| *var == Var::Keepalive) {
        variables.insert(0, (Var::Keepalive, Value::Mode(Mode::On)));
    }
    // That KEEPALIVE=on must win too: an EnvironmentFile= (applied after every
    // Environment=, systemd.exec(5)) or a later drop-in setting KEEPALIVE would leave
    // the library mapped and doing nothing.
    if variables.iter().any(|(var, _)| *var == Var::Keepalive) {
        let keepalive = env::name(Var::Keepalive);
        let over = from_files
            .iter()
            .any(|(name, _)| name == keepalive)
            .then(|| "an EnvironmentFile=".to_string())
            .or_else(|| {
                service
                    .later
                    .iter()
                    .find(|(_, name)| name == keepalive)
                    .map(|(path, _)| path.display().to_string())
            });
        if let Some(over) = over {
            return Err(Failure::with_code(
                1,
                format!(
                    "{}: {over} sets {keepalive} after {DROP_IN} would, and its value would \
                     stay in force; remove it there, or rename the drop-in to sort before \
                     {DROP_IN}",
                    unit.name
                ),
            ));
        }
    }
    for (var, value) in &variables {
        if env::given(settings, *var).is_none() {
            notes.extend(earlier.kept(env::name(*var), &value.to_string(), &afresh));
        }
    }

    let verdict = check_exec_start(&unit, &service, strict)?;

    // Without one of the unit's own, the service inherits the manager's LD_PRELOAD,
    // which the drop-in's replaces: it is kept (a literal value: `%` escaped).
    let existing = service.get("LD_PRELOAD").map(OsString::from).or_else(|| {
        let booted = unit.root.is_none() && Systemctl::booted();
        let inherited = booted
            .then(|| Systemctl::new(place.user).manager_variable("LD_PRELOAD"))
            .flatten()
            .filter(|value| !value.is_empty())?;
        notes.push(format!(
            "keeps LD_PRELOAD={inherited} of the service manager's environment \
             (systemctl show-environment)"
        ));
        Some(OsString::from(inherited.replace('%', "%%")))
    });
    // `%` starts a specifier in unit files (systemd.unit(5)); `%%` is a literal one.
    let escaped = PathBuf::from(library.to_string_lossy().replace('%', "%%"));
    let preload = library::preload(existing.as_deref(), &escaped)
        .to_string_lossy()
        .into_owned();
    let drifted = earlier
        .own
        .iter()
        .rev()
        .find(|(n, _)| n == "LD_PRELOAD")
        .filter(|(_, before)| *before != preload)
        .map(|(_, before)| (before.clone(), preload.clone()));
    let mut text = owned::header(owned::made_dir(&drop_in));
    let mut written = vec![("LD_PRELOAD".to_string(), preload.clone())];
    written.extend(
        variables
            .iter()
            .map(|(var, value)| (env::name(*var).to_string(), value.to_string())),
    );
    if let Some(entry) = written.iter().find_map(|(name, value)| unsets(name, value)) {
        return Err(Failure::with_code(
            1,
            format!(
                "{}: UnsetEnvironment={entry} takes it out of the service's environment \
                 after every Environment=, the drop-in's too; remove it from the unit \
                 (systemctl cat {} shows where)",
                unit.name,
                sh_word(unit.name.as_str())
            ),
        ));
    }
    for (name, value) in &written {
        text.push_str(&assignment(name, value));
    }
    let mut expected = written;
    expected[0].1 = library.to_string_lossy().into_owned();
    Ok(Plan {
        unit,
        service,
        library,
        drop_in,
        text,
        expected,
        verdict,
        notes,
        drifted,
        lock,
    })
}

/// A transient unit outlives no drop-in: one under /etc would preload the next unit
/// `systemd-run` makes of that name, whatever it runs. `--runtime` (gone at the next
/// boot) is as far as `enable` goes for it.
fn refuse_transient(place: &Place, unit: &Unit) -> Result<(), Failure> {
    if !unit.transient() || place.runtime {
        return Ok(());
    }
    Err(Failure::with_code(
        1,
        format!(
            "{}: a transient unit ({}), gone when it stops, while a drop-in under /etc \
             would preload the next unit of that name; use --runtime, or give systemd-run \
             the variables (-p Environment=…)",
            unit.name,
            unit.file.display()
        ),
    ))
}

/// The options over what earlier drop-ins of ours set, by either route (their
/// settings, and the configuration they give together with the options). `afresh`
/// is the command that starts afresh.
fn over_earlier(
    settings: &Settings,
    unit: &Unit,
    afresh: &str,
) -> Result<(Earlier, env::Resolved), Failure> {
    let earlier = Earlier::read(unit, afresh)?;
    let resolved = env::resolve_against(
        settings,
        |name| earlier.get(name).map(OsString::from),
        &format!("in {}", unit.drop_in().display()),
    )?;
    Ok((earlier, resolved))
}

/// A `keepalive VERB UNIT` line to paste: with `--user` and `--root DIR` where they
/// were given, every word quoted for sh, dash and bash.
fn hint(place: &Place, verb: &str, unit: &str) -> String {
    let mut words = vec!["keepalive".to_string(), verb.to_string()];
    if place.user {
        words.push("--user".into());
    }
    if let Some(root) = &place.root {
        words.push("--root".into());
        words.push(sh_word(&root.to_string_lossy()));
    }
    words.push(unit_word(unit));
    words.join(" ")
}

/// A unit name as the last word of a command line: after `--` when it starts with a
/// dash, which systemctl and this command would take for an option.
fn unit_word(name: &str) -> String {
    if name.starts_with('-') {
        format!("-- {}", sh_word(name))
    } else {
        sh_word(name)
    }
}

/// `word` as one word of a POSIX shell command line: as it is when it holds only
/// characters no shell treats specially, else in single quotes, a quote inside as
/// `'\''`. Escaped unit names (`tpl@a\x20b.service`) need it: unquoted, the shell
/// eats the backslash.
fn sh_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%_+=:,./-".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `keepalive enable`.
pub fn enable(args: &EnableArgs) -> Result<ExitCode, Failure> {
    if args.kernel {
        return enable_kernel(args);
    }
    let mut plan = plan(&args.place, &args.settings, args.strict)?;
    for note in &plan.notes {
        failure::warn(format_args!("keepalive: {note}"));
    }
    if let Some((before, now)) = &plan.drifted {
        failure::warn(format_args!(
            "keepalive: LD_PRELOAD was {before} in {}; the unit now gives {now}",
            plan.drop_in.display()
        ));
    }
    write_drop_in(&plan.drop_in, &plan.text)?;
    drop(plan.lock.take());
    let Some(systemctl) = reload(&args.place, &plan.unit)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let Some(started) = restart(&args.place, &plan.unit, &systemctl, "to apply it")? else {
        return Ok(ExitCode::SUCCESS);
    };
    prove(&plan, &systemctl, started)
}

/// `enable --kernel`: the same drop-in file, with an `ExecStartPre=+` line that
/// attaches the sock_ops program instead of the preload; after `--now`, a connection
/// in the unit's cgroup is shown to carry the settings.
fn enable_kernel(args: &EnableArgs) -> Result<ExitCode, Failure> {
    let unit = Unit::new(&args.place)?;
    refuse_transient(&args.place, &unit)?;
    let lock = owned::lock(&unit.drop_in())?;
    if let Some(why) = owned::refusal(&unit.drop_in()) {
        return Err(Failure::with_code(1, format!("{}: {why}", unit.name)));
    }
    let service = Service::read(&unit)?;
    let program = service.exec_start.as_deref().and_then(exec_program);
    if let Some(why) =
        program.and_then(|program| kernel::unit::refuse_program(&program, unit.root.as_deref()))
    {
        return Err(Failure::with_code(
            1,
            format!("enable --kernel: {}: {why}", unit.name),
        ));
    }
    // What an earlier enable set, by either route, and this one does not set again
    // stays, and is said, as for the library's drop-in.
    let drop_in = unit.drop_in();
    let afresh = hint(&args.place, "disable", unit.name.as_str());
    let (earlier, resolved) = over_earlier(&args.settings, &unit, &afresh)?;
    let config = resolved.config;
    for note in &resolved.overridden {
        failure::warn(format_args!("keepalive: {note}"));
    }
    if let Some(route) = files::our_route(&drop_in).filter(|route| route.contains("LD_PRELOAD")) {
        failure::warn(format_args!(
            "keepalive: replaces {route} of the earlier enable with the kernel route"
        ));
    }
    for (var, value) in config.variables() {
        if env::given(&args.settings, var).is_none() {
            if let Some(kept) = earlier.kept(env::name(var), &value.to_string(), &afresh) {
                failure::warn(format_args!("keepalive: {kept}"));
            }
        }
    }
    // A unit under --root is not running here: there is no systemd to ask.
    if args.place.root.is_none() {
        if let Some(why) = kernel::unit::refusal(unit.name.as_str()) {
            return Err(Failure::with_code(1, format!("enable --kernel: {why}")));
        }
    }
    let line = kernel::unit::exec_start_pre(&config)?;
    // The drop-in names this command by its path; under --root the image must have it
    // there, or every start of the unit would log a missing command.
    if let Some(root) = &args.place.root {
        let me = std::env::current_exe().unwrap_or_default();
        let inside = check::under_root(Some(root), &me);
        if !inside.is_file() {
            return Err(Failure::with_code(
                1,
                format!(
                    "enable --kernel --root {}: the drop-in would run {}, which is not in the \
                     image ({} does not exist); install the package into the image first",
                    root.display(),
                    me.display(),
                    inside.display()
                ),
            ));
        }
    }
    let text = format!("{}{line}", owned::header(owned::made_dir(&unit.drop_in())));
    let before = std::fs::read(unit.drop_in()).ok();
    write_drop_in(&unit.drop_in(), &text)?;
    drop(lock);
    let Some(systemctl) = reload(&args.place, &unit)? else {
        return Ok(ExitCode::SUCCESS);
    };
    if restart(&args.place, &unit, &systemctl, "to apply it")?.is_some() {
        if let Err(failure) = kernel::unit::verify(unit.name.as_str(), &config) {
            return Err(undo(&args.place, &unit, &systemctl, before, failure));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// After a failed proof: the drop-in back as it was before (or gone, when there was
/// none), systemd reloaded and the service restarted with it, so that a failed
/// `--now` leaves the unit as it found it; the failure says so.
fn undo(
    place: &Place,
    unit: &Unit,
    systemctl: &Systemctl,
    before: Option<Vec<u8>>,
    failure: Failure,
) -> Failure {
    let path = unit.drop_in();
    let restored = match &before {
        Some(old) => write_atomically(&path, old),
        None => std::fs::remove_file(&path),
    };
    let undone = restored
        .map_err(|err| err.to_string())
        .and_then(|()| reload(place, unit).map_err(|f| f.message))
        .and_then(|_| restart(place, unit, systemctl, "to undo it").map_err(|f| f.message));
    let what = if before.is_some() {
        "put back as it was"
    } else {
        "removed"
    };
    let note = match undone {
        Ok(_) => format!(
            "{} {what}, and the service restarted with it",
            path.display()
        ),
        Err(why) => format!("undoing it failed: {why}"),
    };
    Failure::with_code(failure.code, format!("{}; {note}", failure.message))
}

/// Writes the drop-in unless it already says `text`.
fn write_drop_in(path: &Path, text: &str) -> Result<(), Failure> {
    let unchanged = std::fs::read_to_string(path).is_ok_and(|old| old == text);
    if unchanged {
        failure::say(format_args!("{} is up to date", path.display()))
    } else {
        write_atomically(path, text.as_bytes()).map_err(|err| {
            Failure::with_code(1, format!("cannot write {}: {err}", path.display()))
        })?;
        failure::say(format_args!("wrote {}", path.display()))
    }
}

/// `keepalive check --unit`: whether the drop-in `enable` wrote is still what it would
/// write now. A unit edited since (its own `LD_PRELOAD`, above all) leaves a stale copy
/// in the drop-in, which systemd applies last and so silently wins.
pub fn check(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let place = Place {
        unit: args.program.to_string_lossy().into_owned(),
        user: args.user,
        root: args.root.clone(),
        now: false,
        runtime: false,
        timeout: 0,
    };
    // An instance enabled through its template: the template's drop-in is judged.
    let unit = Unit::new(&place)?;
    let enabled =
        |unit: &Unit| files::is_ours(&unit.drop_in()) || unit.drop_in_elsewhere().is_some();
    if let Some(template) = unit.name.template().filter(|_| !enabled(&unit)) {
        let of_template = Place {
            unit: template.to_string(),
            ..place.clone()
        };
        if enabled(&Unit::new(&of_template)?) {
            failure::say(format_args!(
                "{}: enabled through its template {template}",
                unit.name
            ))?;
            return check_place(of_template);
        }
    }
    check_place(place)
}

/// [`check`] of the unit `place` names.
fn check_place(mut place: Place) -> Result<ExitCode, Failure> {
    // The drop-in is under /run when `enable --runtime` wrote it.
    let unit = Unit::new(&place)?;
    place.runtime = !files::is_ours(&unit.drop_in()) && unit.drop_in_elsewhere().is_some();
    let drop_in = if place.runtime {
        unit.drop_in_elsewhere().unwrap_or_else(|| unit.drop_in())
    } else {
        unit.drop_in()
    };
    if !files::is_ours(&drop_in) {
        failure::say(format_args!(
            "{}: not enabled: no drop-in from keepalive enable ({})",
            unit.name,
            drop_in.display()
        ))?;
        return Ok(ExitCode::from(1));
    }
    let plan = plan(&place, &Settings::default(), false)?;
    let name = &plan.unit.name;
    let shown = plan.drop_in.display();
    if let Some((before, now)) = &plan.drifted {
        failure::say(format_args!(
            "{name}: drifted: {shown} copies LD_PRELOAD={before}, the unit now gives {now}; \
             `{}` refreshes it",
            hint(&place, "enable", name.as_str())
        ))?;
        return Ok(ExitCode::from(1));
    }
    if std::fs::read_to_string(&plan.drop_in).is_ok_and(|old| old != plan.text) {
        failure::say(format_args!(
            "{name}: drifted: {shown} is not what `{}` writes now (library {}); run it \
             again",
            hint(&place, "enable", name.as_str()),
            plan.library.display()
        ))?;
        return Ok(ExitCode::from(1));
    }
    failure::say(format_args!(
        "{name}: up to date: {shown} preloads {}",
        plan.library.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The variables the unit's `EnvironmentFile=`s set; refuses one that sets a variable
/// of the drop-in, which it would override.
fn environment_files(
    unit: &Unit,
    service: &Service,
    ours: &[&str],
) -> Result<Vec<(String, String)>, Failure> {
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
        let assignments = files::environment_file(&text);
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
    Ok(from_files)
}

/// Checks the unit's `ExecStart=` program as `keepalive check` does: a warning, or
/// with `--strict` a refusal before anything is written. Returns the verdict on a
/// program out of reach, the reason a restarted service would lack the library.
fn check_exec_start(
    unit: &Unit,
    service: &Service,
    strict: bool,
) -> Result<Option<Verdict>, Failure> {
    let Some(program) = service.exec_start.as_deref().and_then(exec_program) else {
        if strict {
            return Err(Failure::with_code(
                1,
                format!("refused: {} has no ExecStart= to check", unit.name),
            ));
        }
        failure::warn(format_args!(
            "keepalive: warning: {} has no ExecStart= to check",
            unit.name
        ));
        return Ok(None);
    };
    let root = Root::under(unit.root.as_deref().unwrap_or(Path::new("/")));
    match check::inspect(program.as_ref(), &root, Runner::Anyone) {
        Ok(verdict) if !verdict.reach.reachable() => {
            if strict {
                return Err(Failure::with_code(1, verdict.refusal()));
            }
            failure::warn(format_args!("{}", verdict.warning()));
            Ok(Some(verdict))
        }
        Ok(_) => Ok(None),
        Err(failure) if strict => Err(Failure::with_code(
            1,
            format!(
                "refused: cannot check {}'s ExecStart program: {}",
                unit.name, failure.message
            ),
        )),
        Err(failure) => {
            failure::warn(format_args!(
                "keepalive: warning: cannot check {}'s ExecStart program: {}",
                unit.name, failure.message
            ));
            Ok(None)
        }
    }
}

/// `keepalive disable`: removes the drop-ins `enable` wrote for the unit (under /etc
/// and /run, under any of its names), and nothing else.
pub fn disable(args: &DisableArgs) -> Result<ExitCode, Failure> {
    let unit = match Unit::new(&args.place) {
        // A unit removed (with its package) while its drop-in stays: that goes, so
        // that the unit installed again is not preloaded.
        Err(failure) if failure.code == 2 => {
            let gone = Unit::find(&args.place, true)?;
            if !files::is_ours(&gone.drop_in()) && gone.drop_in_elsewhere().is_none() {
                return Err(failure);
            }
            failure::say(format_args!(
                "{}: the unit is not installed; its drop-in goes all the same",
                gone.name
            ))?;
            gone
        }
        found => found?,
    };
    let path = unit.drop_in();
    // Ours under the unit's other names, and in the other place (/run, or /etc with
    // --runtime): left behind, it would keep preloading after `disable`.
    let mut strays = unit.stray_drop_ins();
    match unit.drop_in_elsewhere() {
        // --runtime is /run only: the one in /etc stays, and is named.
        Some(other) if args.place.runtime => failure::say(format_args!(
            "{} stays: `{}` without --runtime removes it",
            other.display(),
            hint(
                &Place {
                    runtime: false,
                    ..args.place.clone()
                },
                "disable",
                unit.name.as_str()
            )
        ))?,
        other => strays.extend(other),
    }
    match std::fs::read_to_string(&path) {
        // With --now the running service is proven all the same: a drop-in removed
        // earlier without --now left it running with the library.
        Err(err)
            if err.kind() == std::io::ErrorKind::NotFound
                && strays.is_empty()
                && !args.place.now =>
        {
            failure::say(format_args!(
                "{}: no drop-in from keepalive enable ({} does not exist)",
                unit.name,
                path.display()
            ))?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(Failure::with_code(1, format!("{}: {err}", path.display()))),
        Ok(_) => {}
    }
    // Nothing is removed unless everything can be.
    let paths: Vec<&PathBuf> = std::iter::once(&path)
        .filter(|path| path.exists())
        .chain(&strays)
        .collect();
    if let Some(why) = paths.iter().find_map(|path| owned::refusal(path)) {
        return Err(Failure::with_code(1, why));
    }
    for path in paths {
        remove(path)?;
    }
    let Some(systemctl) = reload(&args.place, &unit)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let Some(_) = restart(&args.place, &unit, &systemctl, "to stop preloading")? else {
        return Ok(ExitCode::SUCCESS);
    };
    // A cgroup that outlived the stop (KillMode=process leaves processes, and systemd
    // keeps their cgroup) keeps a program `enable --kernel` attached: it goes too.
    let detached = kernel::unit::detach(unit.name.as_str())?;
    if detached > 0 {
        failure::say(format_args!(
            "{}: detached {detached} keepalive sock_ops program(s) left on its cgroup",
            unit.name
        ))?;
    }
    let pid = systemctl.main_pid(unit.name.as_str())?.ok_or_else(|| {
        Failure::with_code(
            1,
            format!("{}: restarted, but has no main process to check", unit.name),
        )
    })?;
    let members = verify::members(&systemctl.property(unit.name.as_str(), "ControlGroup")?);
    match verify::library_left(pid, &members) {
        Some((process, library, true)) => Err(Failure::with_code(
            1,
            format!(
                "{}: restarted, and process {process} ({}) of its cgroup, outside the new \
                 main process's tree, still has {} mapped: one left from before the restart \
                 (KillMode=process or mixed leaves them running; `systemctl stop`, then \
                 start, ends them)",
                unit.name,
                verify::comm(process),
                library.display()
            ),
        )),
        Some((process, library, false)) => Err(Failure::with_code(
            1,
            format!(
                "{}: restarted, and process {process} ({}) still has {} mapped: another \
                 drop-in or the unit itself preloads it (systemctl cat {})",
                unit.name,
                verify::comm(process),
                library.display(),
                unit.name
            ),
        )),
        None => {
            failure::say(format_args!(
                "verified: {} restarted without the library (process {pid}, {})",
                unit.name,
                verify::comm(pid)
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn remove(path: &Path) -> Result<(), Failure> {
    let cannot = |err: std::io::Error| {
        Failure::with_code(1, format!("cannot remove {}: {err}", path.display()))
    };
    let text = std::fs::read_to_string(path).map_err(cannot)?;
    std::fs::remove_file(path).map_err(cannot)?;
    owned::remove_dir(path, &text);
    failure::say(format_args!("removed {}", path.display()))
}

/// The program of an `ExecStart=` line: the first word, without the prefixes
/// `@ - : + !` (systemd.service(5)).
fn exec_program(line: &str) -> Option<String> {
    let line = line.trim_start_matches(['@', '-', ':', '+', '!']);
    files::words(line).into_iter().next()
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

/// `systemctl daemon-reload` when systemd runs here (not for `--root`), as `systemctl
/// edit` does after writing a drop-in: until then systemd keeps the old settings and
/// warns that the unit changed on disk. Returns the systemctl to go on with.
fn reload(place: &Place, unit: &Unit) -> Result<Option<Systemctl>, Failure> {
    if place.root.is_some() {
        return Ok(None);
    }
    if !Systemctl::booted() {
        if place.now {
            return Err(Failure::with_code(1, "--now: systemd is not running here"));
        }
        let scope = if place.user { "--user " } else { "" };
        failure::say(format_args!(
            "when systemd runs: systemctl {scope}daemon-reload && systemctl {scope}try-restart {}",
            unit_word(unit.name.as_str())
        ))?;
        return Ok(None);
    }
    let systemctl = Systemctl::new(place.user);
    systemctl.run(&["daemon-reload"])?;
    Ok(Some(systemctl))
}

/// With `--now`, `systemctl try-restart` the unit: a stopped unit stays stopped, and a
/// template is never started. Without it, says the command that applies the change.
/// Returns when the restart began (seconds since the epoch), when there was one.
fn restart(
    place: &Place,
    unit: &Unit,
    systemctl: &Systemctl,
    what: &str,
) -> Result<Option<u64>, Failure> {
    let name = unit.name.as_str();
    let scope = if place.user { "--user " } else { "" };
    if unit.name.kind() == Kind::Template {
        failure::say(format_args!(
            "{name} is a template: its instances get the drop-in when they (re)start; \
             {what}: systemctl {scope}try-restart '{}'",
            name.replace("@.service", "@*.service")
        ))?;
        return Ok(None);
    }
    if !place.now {
        failure::say(format_args!(
            "{what}: systemctl {scope}try-restart {}",
            unit_word(name)
        ))?;
        return Ok(None);
    }
    let stopped = || {
        failure::say(format_args!(
            "{name} is not running; left stopped (the change applies when it starts)"
        ))
    };
    // A unit on its way down with a job queued (a restart someone else asked for)
    // comes back by itself: that restart is waited for and proven like ours.
    if !systemctl.running(name)? && !systemctl.has_job(name)? {
        stopped()?;
        return Ok(None);
    }
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default();
    if !restart_within(systemctl, name, Duration::from_secs(place.timeout))? {
        stopped()?;
        return Ok(None);
    }
    Ok(Some(started))
}

/// `systemctl try-restart`, without waiting on systemd's job (a service that does not
/// stop, `TimeoutStopSec=infinity`, would hold it for ever): the job is queued, and
/// the service watched until no job is left and it has started again (a new
/// `InvocationID=`, which every start gets, also one whose process has exited,
/// `RemainAfterExit=yes`), with a line every few seconds while it takes, for at most
/// `limit`. Then a clear failure, and the service as systemd has it: the job goes on.
/// False when it ended stopped instead (it was on its way down, with no restart).
fn restart_within(systemctl: &Systemctl, name: &str, limit: Duration) -> Result<bool, Failure> {
    let before = systemctl.property(name, "InvocationID")?;
    systemctl.run(&["try-restart", "--no-block", "--", name])?;
    let start = Instant::now();
    let mut said = start;
    loop {
        let state = systemctl.property(name, "ActiveState")?;
        let sub = systemctl.property(name, "SubState")?;
        let invocation = systemctl.property(name, "InvocationID")?;
        if !systemctl.has_job(name)? {
            if invocation != before {
                return Ok(true);
            }
            if matches!(state.as_str(), "inactive" | "failed") {
                return Ok(false);
            }
        }
        let waited = start.elapsed();
        if waited >= limit {
            return Err(Failure::with_code(
                1,
                format!(
                    "{name}: not restarted after {} s (ActiveState={state}, SubState={sub}); \
                     systemd goes on with the restart, and `systemctl status {}` shows where \
                     it is; --timeout SECONDS waits longer",
                    limit.as_secs(),
                    unit_word(name)
                ),
            ));
        }
        if said.elapsed() >= PROGRESS {
            said = Instant::now();
            failure::say(format_args!(
                "waiting for {name} to restart: {state} ({sub}), {} s",
                waited.as_secs()
            ))?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How often `--now` says it is still waiting.
const PROGRESS: Duration = Duration::from_secs(5);

/// After the restart: the service's processes have the library and the variables, or
/// the command fails with the most specific reason it can find.
fn prove(plan: &Plan, systemctl: &Systemctl, started: u64) -> Result<ExitCode, Failure> {
    let name = plan.unit.name.as_str();
    let library = &plan.library;
    let failed =
        |why: String| Failure::with_code(1, format!("{name}: restarted without keepalive: {why}"));
    let Some(pid) = systemctl.main_pid(name)? else {
        let state = systemctl.property(name, "ActiveState")?;
        let sub = systemctl.property(name, "SubState")?;
        return Err(Failure::with_code(
            1,
            format!(
                "{name}: restarted, but it has no main process to check (ActiveState={state}, \
                 SubState={sub}): nothing is proven; `systemctl status {}` shows it",
                unit_word(name)
            ),
        ));
    };
    let members = verify::members(&systemctl.property(name, "ControlGroup")?);
    match verify::service(pid, library, &plan.expected, &members) {
        Found::Proven { pid, comm, sockets } => {
            let settings: Vec<String> = plan
                .expected
                .iter()
                .skip(1)
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            let settings = if settings.is_empty() {
                "the kernel's timers".to_string()
            } else {
                settings.join(" ")
            };
            let whose = if sockets {
                "; so has every process of it that holds TCP sockets"
            } else {
                "; no process of it holds a TCP socket yet (`keepalive status PID` shows \
                 what a later one gets)"
            };
            failure::say(format_args!(
                "verified: {name} process {pid} ({comm}) has {} mapped, with {settings}{whose}",
                library.display()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Found::Environment { pid, missing } => Err(failed(format!(
            "process {pid} has the library mapped but not {missing} in its environment \
             (systemctl cat {name} shows what sets it)"
        ))),
        Found::Leftover { pid } => Err(failed(format!(
            "process {pid} ({}) of the service's cgroup, outside its new main process's \
             tree, holds TCP sockets without {} mapped: one left from before the restart \
             (KillMode=process or mixed leaves them running; `systemctl stop`, then start, \
             ends them), or one started with a cleared environment",
            verify::comm(pid),
            library.display()
        ))),
        Found::NotLoaded { pid } => Err(failed(
            systemctl
                .journal_line(name, started, "cannot be preloaded")
                .unwrap_or_else(|| {
                    format!(
                        "process {pid} ({}) has {} mapped only as data, not as code: the \
                         loader could not map it (a noexec mount, NoExecPaths=) and went on \
                         without it",
                        verify::comm(pid),
                        library.display()
                    )
                }),
        )),
        Found::OtherFile { pid, device, inode } => Err(failed(format!(
            "process {pid} ({}) loaded another file at {} (device {device}, inode {inode}): \
             in its mount namespace a bind mount or RootDirectory= puts that file there, \
             not the library",
            verify::comm(pid),
            library.display()
        ))),
        Found::NotMapped { pid } => {
            let anywhere = |_: &Path, _: &Path| true;
            let why = sandbox::hides(&plan.service, library, anywhere)
                .or_else(|| systemctl.journal_line(name, started, "cannot be preloaded"))
                .or_else(|| {
                    plan.verdict.as_ref().map(|verdict| {
                        format!(
                            "preloading cannot reach {}: {}",
                            verdict.chain(),
                            verdict.reach
                        )
                    })
                })
                .unwrap_or_else(|| {
                    if verify::holds_tcp_sockets(pid) {
                        format!(
                            "process {pid} ({}) holds the service's TCP sockets without {} \
                             mapped: something between systemd and it cleared its \
                             environment (env -i, a wrapper) or it cannot be preloaded",
                            verify::comm(pid),
                            library.display()
                        )
                    } else {
                        format!(
                            "process {pid} ({}) and its children do not have {} mapped",
                            verify::comm(pid),
                            library.display()
                        )
                    }
                });
            Err(failed(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_quoted_and_keep_user_and_root() {
        assert_eq!(sh_word("app.service"), "app.service");
        assert_eq!(sh_word(r"tplx@a\x20b.service"), r"'tplx@a\x20b.service'");
        assert_eq!(sh_word("it's"), r"'it'\''s'");
        assert_eq!(sh_word(""), "''");
        let place = Place {
            unit: "ue".into(),
            user: true,
            root: Some(PathBuf::from("/srv/my root")),
            now: false,
            runtime: true,
            timeout: 0,
        };
        assert_eq!(
            hint(&place, "disable", "ue.service"),
            "keepalive disable --user --root '/srv/my root' ue.service"
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
