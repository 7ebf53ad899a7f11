//! The variables the library reads: from the options, over those inherited, checked
//! by the library's own parser.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use keepalive_config::{Config, Var};

use crate::cli::{EnvArgs, Settings};
use crate::failure::{self, Failure};
use crate::library::{self, quoted_value};

/// The configuration the options ask for, over the variables inherited from `source`
/// (the environment for `run`, the unit for `enable`). Variables the options do not set
/// are read by [`Config::parse`], and a bad one is refused in the library's words: the
/// program would otherwise warn on every exec and run with the kernel default.
pub fn resolve(
    settings: &Settings,
    inherited: impl Fn(&str) -> Option<OsString>,
    source: &str,
) -> Result<Config, Failure> {
    let set_by_option = |var: Var| match var {
        Var::Keepalive => settings.mode.is_some(),
        Var::Idle => settings.idle.is_some(),
        Var::Interval => settings.interval.is_some(),
        Var::Count => settings.count.is_some(),
        Var::UserTimeout => settings.user_timeout.is_some(),
        Var::Debug => settings.debug,
    };
    let values: Vec<(Var, OsString)> = Var::ALL
        .into_iter()
        .filter(|&var| !set_by_option(var))
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
    Ok(Config {
        mode: settings.mode.unwrap_or(config.mode),
        idle: settings.idle.or(config.idle),
        interval: settings.interval.or(config.interval),
        count: settings.count.or(config.count),
        user_timeout: settings.user_timeout.or(config.user_timeout),
        debug: settings.debug || config.debug,
    })
}

/// A variable's name as the environment spells it.
pub fn name(var: Var) -> &'static str {
    var.c_name().to_str().unwrap_or_default()
}

/// `keepalive env`.
pub fn print(args: &EnvArgs) -> Result<ExitCode, Failure> {
    let config = resolve(&args.settings, |_| None, "")?;
    let library = library::find(args.settings.library.as_deref())?;
    failure::say(format_args!(
        "LD_PRELOAD={}",
        shell_word(&library.as_os_str().to_string_lossy())
    ))?;
    for (var, value) in config.variables() {
        failure::say(format_args!("{}={value}", name(var)))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `text` as one shell word: as is when it is plain, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._+-:@%".contains(&b));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
