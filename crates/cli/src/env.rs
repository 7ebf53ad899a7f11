//! The variables the library reads: from the options, over those inherited, checked
//! by the library's own parser.
//!
//! An option given on the command line wins over an inherited variable it contradicts,
//! and the command says so on stderr: the user typed the option for this run, while
//! the variable may come from a shell profile or a unit nobody remembers. Refusing
//! instead would make every wrapper that sets defaults in the environment unusable
//! with an explicit option.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use keepalive_config::{Config, Mode, Value, Var};

use crate::cli::{EnvArgs, Settings};
use crate::failure::{self, Failure};
use crate::formats;
use crate::library::{self, quoted_value};

/// A configuration and what the options overrode to get it.
pub struct Resolved {
    pub config: Config,
    /// One line for each inherited variable an option replaced with another value.
    pub overridden: Vec<String>,
    /// Keepalive is on because timers were given over an inherited `KEEPALIVE=off`:
    /// whoever writes the variables must write `KEEPALIVE=on` to undo that one.
    pub switched_on: bool,
}

impl Resolved {
    /// Says each override on stderr, as `keepalive: …` lines.
    pub fn tell(&self) {
        for line in &self.overridden {
            failure::warn(format_args!("keepalive: {line}"));
        }
    }

    /// The variables to set: those of the configuration, and `KEEPALIVE=on` when it
    /// replaces an inherited `off`.
    pub fn variables(&self) -> Vec<(Var, Value)> {
        let mut variables: Vec<(Var, Value)> = self.config.variables().collect();
        if self.switched_on {
            variables.insert(0, (Var::Keepalive, Value::Mode(Mode::On)));
        }
        variables
    }
}

/// The option that sets `var`.
fn option(var: Var) -> &'static str {
    match var {
        Var::Keepalive => "--mode",
        Var::Idle => "--idle",
        Var::Interval => "--interval",
        Var::Count => "--count",
        Var::UserTimeout => "--user-timeout",
    }
}

/// The value an option gives `var`, as the variable would spell it; `None` when the
/// option was not given.
pub fn given(settings: &Settings, var: Var) -> Option<Value> {
    match var {
        Var::Keepalive => settings.mode.map(Value::Mode),
        Var::Idle => settings.idle.map(|s| Value::Number(s.get())),
        Var::Interval => settings.interval.map(|s| Value::Number(s.get())),
        Var::Count => settings.count.map(|p| Value::Number(p.get())),
        Var::UserTimeout => settings.user_timeout.map(|m| Value::Number(m.get())),
    }
}

/// The configuration the options ask for, over the variables inherited from `source`
/// (the environment for `run`, the unit for `enable`), for a caller that does not
/// say what the options overrode.
pub fn resolve(
    settings: &Settings,
    inherited: impl Fn(&str) -> Option<OsString>,
    source: &str,
) -> Result<Config, Failure> {
    resolve_against(settings, inherited, source).map(|resolved| resolved.config)
}

/// [`resolve`], with what the options overrode. Variables the options do not set are
/// read by [`Config::parse`], and a bad one is refused in the library's words: the
/// program would otherwise warn on every exec and run with the kernel default.
pub fn resolve_against(
    settings: &Settings,
    inherited: impl Fn(&str) -> Option<OsString>,
    source: &str,
) -> Result<Resolved, Failure> {
    let mut overridden = Vec::new();
    for var in Var::ALL {
        if let (Some(value), Some(old)) = (given(settings, var), inherited(name(var))) {
            let value = value.to_string();
            if old.as_bytes() != value.as_bytes() {
                overridden.push(format!(
                    "{} {value} replaces {}={} {source}",
                    option(var),
                    name(var),
                    quoted_value(&old)
                ));
            }
        }
    }
    let values: Vec<(Var, OsString)> = Var::ALL
        .into_iter()
        .filter(|&var| given(settings, var).is_none())
        .filter_map(|var| Some((var, inherited(name(var))?)))
        .collect();
    let mut bad = None;
    let config = Config::parse(
        |var| {
            values
                .iter()
                .find(|(v, _)| *v == var)
                .map(|(_, value)| value.as_bytes())
        },
        |var, value| {
            bad.get_or_insert((var, quoted_value(OsStr::from_bytes(value))));
        },
    );
    if let Some((var, value)) = bad {
        return Err(Failure::usage(format!(
            "{}={value} {source}: expected {}",
            name(var),
            var.accepted()
        )));
    }
    // Timers given over an inherited KEEPALIVE=off ("touch nothing") ask for keepalive:
    // the option wins, as every other option does.
    let timers = [Var::Idle, Var::Interval, Var::Count, Var::UserTimeout];
    let timer_given = timers
        .into_iter()
        .find(|&var| given(settings, var).is_some());
    let switched_on = settings.mode.is_none() && config.mode == Mode::Off && timer_given.is_some();
    let mode = match (settings.mode, timer_given) {
        (Some(mode), _) => mode,
        (None, Some(var)) if switched_on => {
            overridden.push(format!(
                "{} turns keepalive on over KEEPALIVE=off {source} (give --mode off to keep it off)",
                option(var)
            ));
            Mode::On
        }
        _ => config.mode,
    };
    Ok(Resolved {
        config: Config {
            mode,
            idle: settings.idle.or(config.idle),
            interval: settings.interval.or(config.interval),
            count: settings.count.or(config.count),
            user_timeout: settings.user_timeout.or(config.user_timeout),
        },
        overridden,
        switched_on,
    })
}

/// A variable's name as the environment spells it.
pub fn name(var: Var) -> &'static str {
    var.c_name().to_str().unwrap_or_default()
}

/// `keepalive env`: the variables `run` would set, with `LD_PRELOAD` as `run` builds
/// it from the one inherited, in the format asked for.
pub fn print(args: &EnvArgs) -> Result<ExitCode, Failure> {
    let config = resolve(&args.settings, |_| None, "")?;
    let library = library::find(args.settings.library.as_deref())?;
    let preload = library::preload(std::env::var_os("LD_PRELOAD").as_deref(), &library);
    let mut variables = vec![(
        "LD_PRELOAD".to_string(),
        preload.to_string_lossy().into_owned(),
    )];
    variables.extend(
        config
            .variables()
            .map(|(var, value)| (name(var).to_string(), value.to_string())),
    );
    for line in formats::render(args.format, &variables) {
        failure::say(format_args!("{line}"))?;
    }
    Ok(ExitCode::SUCCESS)
}
