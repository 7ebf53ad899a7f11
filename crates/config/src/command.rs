//! What the `keepalive` command adds to the parser: option values with a unit, and a
//! [`Config`] written back as the variables the library reads.
//!
//! An option and the variable it sets share one range and one wording
//! ([`Var::accepted`]), so `keepalive run --idle 40000` is refused in the words the
//! library would use for `KEEPIDLE=40000`. The library itself never calls this module;
//! link-time optimisation leaves it out of `libkeepalive.so`.

use core::fmt;

use crate::{Config, Millis, Mode, Probes, Seconds, Var, decimal};

/// Why an option's value was refused. Its `Display` is the part after the option's
/// name: "expected …", ending with a hint where one helps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The variable the option sets; its [`Var::accepted`] is the wording shown.
    pub var: Var,
    pub why: Why,
}

/// What was wrong with an option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Not a number with a known unit, or outside the variable's range.
    Invalid,
    /// A bare number for `--user-timeout`: the variable counts milliseconds, the other
    /// durations count seconds, and a guess is wrong by a factor of 1000 either way.
    NeedsUnit,
    /// A duration that is not a whole number of seconds, for a variable in seconds.
    NotWholeSeconds,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accepted = self.var.accepted();
        match (self.why, self.var) {
            (Why::NeedsUnit, _) => write!(
                f,
                "a unit is needed, as in 120s or 120000ms (expected {accepted})"
            ),
            (Why::NotWholeSeconds, _) => write!(f, "expected {accepted}"),
            (Why::Invalid, Var::Idle | Var::Interval) => write!(
                f,
                "expected {accepted} (a bare number is seconds; units: ms, s, m, h)"
            ),
            (Why::Invalid, Var::UserTimeout) => {
                write!(f, "expected {accepted} (units: ms, s, m, h)")
            }
            (Why::Invalid, _) => write!(f, "expected {accepted}"),
        }
    }
}

/// The units a duration option takes, in milliseconds.
fn unit_millis(unit: &[u8]) -> Option<u64> {
    match unit {
        b"ms" => Some(1),
        b"s" => Some(1_000),
        b"m" => Some(60_000),
        b"h" => Some(3_600_000),
        _ => None,
    }
}

/// Splits `90s` into 90 milliseconds-per-unit; `None` for the unit of a bare number.
fn duration(text: &[u8]) -> Option<(u32, Option<u64>)> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, unit) = text.split_at(digits);
    let number = decimal(number)?;
    if unit.is_empty() {
        return Some((number, None));
    }
    Some((number, Some(unit_millis(unit)?)))
}

/// `--idle` and `--interval`: a duration of whole seconds, 1 to 32767; a bare number is
/// seconds, as in `KEEPIDLE` and `KEEPINTVL`.
pub fn seconds_option(var: Var, text: &[u8]) -> Result<Seconds, Refused> {
    let refused = |why| Refused { var, why };
    let (number, unit) = duration(text).ok_or(refused(Why::Invalid))?;
    let millis = u64::from(number) * unit.unwrap_or(1_000);
    if millis % 1_000 != 0 {
        return Err(refused(Why::NotWholeSeconds));
    }
    u32::try_from(millis / 1_000)
        .ok()
        .and_then(Seconds::new)
        .ok_or(refused(Why::Invalid))
}

/// `--user-timeout`: a duration with a unit, 0 to 2147483647 milliseconds.
pub fn millis_option(text: &[u8]) -> Result<Millis, Refused> {
    let refused = |why| Refused {
        var: Var::UserTimeout,
        why,
    };
    let (number, unit) = duration(text).ok_or(refused(Why::Invalid))?;
    let unit = unit.ok_or(refused(Why::NeedsUnit))?;
    u32::try_from(u64::from(number) * unit)
        .ok()
        .and_then(Millis::new)
        .ok_or(refused(Why::Invalid))
}

/// `--count`: a plain number of probes, 1 to 127, as in `KEEPCNT`.
pub fn count_option(text: &[u8]) -> Result<Probes, Refused> {
    decimal(text).and_then(Probes::new).ok_or(Refused {
        var: Var::Count,
        why: Why::Invalid,
    })
}

/// `--mode`: on, skip or off, as in `KEEPALIVE` — read by [`Config::parse`] itself.
pub fn mode_option(text: &[u8]) -> Result<Mode, Refused> {
    let mut refused = false;
    let config = Config::parse(
        |var| (var == Var::Keepalive).then_some(text),
        |_, _| refused = true,
    );
    match refused {
        false => Ok(config.mode),
        true => Err(Refused {
            var: Var::Keepalive,
            why: Why::Invalid,
        }),
    }
}

/// A variable's value as the library reads it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Mode(Mode),
    Number(u32),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Mode(Mode::On) => f.write_str("on"),
            Value::Mode(Mode::Skip) => f.write_str("skip"),
            Value::Mode(Mode::Off) => f.write_str("off"),
            Value::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Config {
    /// The variables that give this configuration, in [`Var::ALL`] order; a setting at
    /// its default (mode on, kernel timers) is left out, so that
    /// [`Config::parse`] of exactly these variables gives back `self`.
    pub fn variables(&self) -> impl Iterator<Item = (Var, Value)> {
        [
            (self.mode != Mode::On).then_some((Var::Keepalive, Value::Mode(self.mode))),
            self.idle.map(|s| (Var::Idle, Value::Number(s.get()))),
            self.interval
                .map(|s| (Var::Interval, Value::Number(s.get()))),
            self.count.map(|p| (Var::Count, Value::Number(p.get()))),
            self.user_timeout
                .map(|m| (Var::UserTimeout, Value::Number(m.get()))),
        ]
        .into_iter()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn secs(text: &str) -> Result<u32, Why> {
        seconds_option(Var::Idle, text.as_bytes())
            .map(Seconds::get)
            .map_err(|r| r.why)
    }

    fn millis(text: &str) -> Result<u32, Why> {
        millis_option(text.as_bytes())
            .map(Millis::get)
            .map_err(|r| r.why)
    }

    #[test]
    fn seconds_take_units_and_bare_numbers() {
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("2m"), Ok(120));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("120000ms"), Ok(120));
        assert_eq!(secs("32767"), Ok(32767));
        assert_eq!(secs("9h"), Ok(32400));
    }

    #[test]
    fn seconds_refuse_what_the_variable_refuses() {
        for bad in [
            "0", "0s", "32768", "10h", "", "s", "1.5s", "-1", " 9", "9 ", "9sec", "9S",
        ] {
            assert_eq!(secs(bad), Err(Why::Invalid), "{bad:?}");
        }
        assert_eq!(secs("1500ms"), Err(Why::NotWholeSeconds));
        assert_eq!(secs("999ms"), Err(Why::NotWholeSeconds));
        assert_eq!(secs("4294967295h"), Err(Why::Invalid));
    }

    #[test]
    fn user_timeout_needs_a_unit() {
        assert_eq!(millis("120"), Err(Why::NeedsUnit));
        assert_eq!(millis("0"), Err(Why::NeedsUnit));
        assert_eq!(millis("120s"), Ok(120_000));
        assert_eq!(millis("120000ms"), Ok(120_000));
        assert_eq!(millis("0ms"), Ok(0));
        assert_eq!(millis("2m"), Ok(120_000));
        assert_eq!(millis("596h"), Ok(2_145_600_000));
        assert_eq!(millis("2147483647ms"), Ok(2_147_483_647));
        assert_eq!(millis("2147483648ms"), Err(Why::Invalid));
        assert_eq!(millis("597h"), Err(Why::Invalid));
        assert_eq!(millis("5x"), Err(Why::Invalid));
    }

    #[test]
    fn count_and_mode_accept_what_the_variables_accept() {
        assert_eq!(count_option(b"9").map(Probes::get), Ok(9));
        assert!(count_option(b"0").is_err());
        assert!(count_option(b"128").is_err());
        assert!(count_option(b"9s").is_err());
        assert_eq!(mode_option(b"SKIP"), Ok(Mode::Skip));
        assert_eq!(mode_option(b"off"), Ok(Mode::Off));
        assert_eq!(mode_option(b"on"), Ok(Mode::On));
        assert!(mode_option(b"yes").is_err());
    }

    /// The message shows the same words as the library's start-up warning.
    #[test]
    fn refusals_use_the_variables_wording() {
        for (var, refused) in [
            (Var::Idle, seconds_option(Var::Idle, b"0").unwrap_err()),
            (
                Var::Interval,
                seconds_option(Var::Interval, b"1500ms").unwrap_err(),
            ),
            (Var::UserTimeout, millis_option(b"5").unwrap_err()),
            (Var::UserTimeout, millis_option(b"5d").unwrap_err()),
            (Var::Count, count_option(b"200").unwrap_err()),
            (Var::Keepalive, mode_option(b"yes").unwrap_err()),
        ] {
            assert_eq!(refused.var, var);
            let text = refused.to_string();
            assert!(text.contains(var.accepted()), "{text}");
        }
        assert!(
            millis_option(b"5")
                .unwrap_err()
                .to_string()
                .contains("120000ms")
        );
    }

    /// Rendering and parsing agree: the variables of a configuration parse back to it.
    #[test]
    fn variables_parse_back_to_the_same_config() {
        let configs = [
            Config::DEFAULT,
            Config {
                mode: Mode::Skip,
                idle: Seconds::new(60),
                interval: Seconds::new(10),
                count: Probes::new(5),
                user_timeout: Millis::new(0),
            },
            Config {
                mode: Mode::Off,
                user_timeout: Millis::new(Millis::MAX),
                ..Config::DEFAULT
            },
        ];
        for config in configs {
            let pairs: Vec<(Var, String)> = config
                .variables()
                .map(|(var, value)| (var, value.to_string()))
                .collect();
            let parsed = Config::parse(
                |var| {
                    pairs
                        .iter()
                        .find(|(v, _)| *v == var)
                        .map(|(_, value)| value.as_bytes())
                },
                |var, value| panic!("{var:?}={value:?} refused"),
            );
            assert_eq!(parsed, config, "{pairs:?}");
        }
        assert_eq!(Config::DEFAULT.variables().count(), 0);
    }
}
