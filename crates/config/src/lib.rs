//! The settings a process asked for, parsed once from its environment.
//!
//! The one parser of libkeepalive: the preloaded library reads its environment with
//! it, and the `keepalive` command validates its options and the variables it
//! inherits with it, so both accept exactly the same values and refuse the others in
//! the same words.
//!
//! Pure code: no `unsafe`, no system calls, no allocation. The caller supplies the
//! environment lookup and receives each rejected value, so every rule here is unit
//! tested without a process around it.
//!
//! Ranges are the kernel's, from tcp(7) and `net/ipv4/tcp.c`: a value outside them makes
//! `setsockopt` fail with `EINVAL`, so it is refused here, once, with a message naming
//! the variable, instead of failing silently on every socket.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod command;
pub use command::{Refused, Value, Why, count_option, millis_option, mode_option, seconds_option};

/// An environment variable the library reads; the names are the original C
/// libkeepalive's, plus `TCP_USER_TIMEOUT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    Keepalive,
    Idle,
    Interval,
    Count,
    UserTimeout,
}

impl Var {
    /// Every variable, in declaration order.
    pub const ALL: [Var; 5] = [
        Var::Keepalive,
        Var::Idle,
        Var::Interval,
        Var::Count,
        Var::UserTimeout,
    ];

    /// The variable's name, NUL-terminated for getenv(3).
    pub const fn c_name(self) -> &'static core::ffi::CStr {
        match self {
            Var::Keepalive => c"KEEPALIVE",
            Var::Idle => c"KEEPIDLE",
            Var::Interval => c"KEEPINTVL",
            Var::Count => c"KEEPCNT",
            Var::UserTimeout => c"TCP_USER_TIMEOUT",
        }
    }

    /// The variable's name as the user types it.
    pub fn name(self) -> &'static [u8] {
        self.c_name().to_bytes()
    }

    /// What the variable accepts, in the words a warning shows the user.
    pub const fn accepted(self) -> &'static str {
        match self {
            Var::Keepalive => "on, off or skip",
            Var::Idle | Var::Interval => "whole seconds from 1 to 32767",
            Var::Count => "a whole number of probes from 1 to 127",
            Var::UserTimeout => "whole milliseconds from 0 to 2147483647",
        }
    }

    /// What a rejected value is replaced by.
    pub const fn fallback(self) -> &'static str {
        match self {
            Var::Keepalive => "on",
            _ => "the kernel default",
        }
    }
}

/// The longest value accepted: the kernel's limit on one environment string with
/// 4 KiB pages (`MAX_ARG_STRLEN`, 32 pages, execve(2)). A longer value — made by
/// setenv(3), or passed by execve on a kernel with larger pages — is refused whole
/// rather than cut: the library reads at most this many bytes, and a prefix of zeros
/// then `61` must never be taken for 61.
pub const MAX_VALUE_LEN: usize = 32 * 4096;

/// What to do with `SO_KEEPALIVE` (variable `KEEPALIVE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Turn `SO_KEEPALIVE` on and apply the timers (the default).
    On,
    /// Leave `SO_KEEPALIVE` as the program set it; still apply the timers. The original
    /// libkeepalive's `skip`: for programs that decide keepalive themselves.
    Skip,
    /// Leave every socket untouched.
    Off,
}

/// Seconds for `TCP_KEEPIDLE` and `TCP_KEEPINTVL`: 1..=32767 (`MAX_TCP_KEEPIDLE`,
/// `MAX_TCP_KEEPINTVL` in the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(u16);

impl Seconds {
    pub const MAX: u32 = 32767;

    pub fn new(n: u32) -> Option<Self> {
        match n {
            1..=Self::MAX => Some(Seconds(n as u16)),
            _ => None,
        }
    }

    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}

/// Unanswered probes before the connection is dropped, for `TCP_KEEPCNT`: 1..=127
/// (`MAX_TCP_KEEPCNT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probes(u8);

impl Probes {
    pub const MAX: u32 = 127;

    pub fn new(n: u32) -> Option<Self> {
        match n {
            1..=Self::MAX => Some(Probes(n as u8)),
            _ => None,
        }
    }

    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}

/// Milliseconds for `TCP_USER_TIMEOUT`: 0..=`INT_MAX`, where 0 means the system's
/// retransmission limits (tcp(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Millis(u32);

impl Millis {
    pub const MAX: u32 = i32::MAX as u32;

    pub fn new(n: u32) -> Option<Self> {
        (n <= Self::MAX).then_some(Millis(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// One socket option the configuration asks to set, with a value already known to be
/// in the kernel's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    KeepAlive,
    Idle(Seconds),
    Interval(Seconds),
    Count(Probes),
    UserTimeout(Millis),
}

/// A validated configuration. `None` leaves that option at the kernel default
/// (the `net.ipv4.tcp_keepalive_*` sysctls, or the retransmission limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub idle: Option<Seconds>,
    pub interval: Option<Seconds>,
    pub count: Option<Probes>,
    pub user_timeout: Option<Millis>,
}

impl Config {
    /// What an empty environment means: keepalive on, kernel timers.
    pub const DEFAULT: Config = Config {
        mode: Mode::On,
        idle: None,
        interval: None,
        count: None,
        user_timeout: None,
    };

    /// Parses the configuration. `lookup` returns a variable's raw bytes, or `None`
    /// when it is unset; `reject` is called once for each value that is refused, and
    /// that one setting falls back to [`Var::fallback`] while the others still apply.
    pub fn parse<'a>(
        lookup: impl Fn(Var) -> Option<&'a [u8]>,
        reject: impl FnMut(Var, &'a [u8]),
    ) -> Config {
        let mut env = Reader { lookup, reject };
        Config {
            mode: env.read(Var::Keepalive, parse_mode).unwrap_or(Mode::On),
            idle: env.read(Var::Idle, |v| decimal(v).and_then(Seconds::new)),
            interval: env.read(Var::Interval, |v| decimal(v).and_then(Seconds::new)),
            count: env.read(Var::Count, |v| decimal(v).and_then(Probes::new)),
            user_timeout: env.read(Var::UserTimeout, |v| decimal(v).and_then(Millis::new)),
        }
    }

    /// The socket options to set, in the order they are applied. Empty for
    /// [`Mode::Off`], which leaves sockets untouched.
    ///
    /// The two options that (re)start the keepalive timer of a connection come last:
    /// `SO_KEEPALIVE` arms it, and `TCP_KEEPIDLE` on a connection already idle that
    /// long makes it fire at the next tick (tcp_sock_set_keepidle_locked()). When it
    /// fires before `TCP_KEEPINTVL` and `TCP_KEEPCNT` are set, its first probe
    /// schedules the next by the old interval (75 s by default), and an attached
    /// connection notices a dead peer a minute late.
    pub fn settings(&self) -> impl Iterator<Item = Setting> {
        let wanted = [
            self.interval.map(Setting::Interval),
            self.count.map(Setting::Count),
            self.user_timeout.map(Setting::UserTimeout),
            (self.mode == Mode::On).then_some(Setting::KeepAlive),
            self.idle.map(Setting::Idle),
        ];
        let applied = if self.mode == Mode::Off {
            [None; 5]
        } else {
            wanted
        };
        applied.into_iter().flatten()
    }

    /// Whether any socket option is to be set at all; when not, the entry points skip
    /// even the classification of accepted sockets.
    pub fn is_active(&self) -> bool {
        self.settings().next().is_some()
    }
}

fn parse_mode(value: &[u8]) -> Option<Mode> {
    let is = |word: &[u8]| value.eq_ignore_ascii_case(word);
    if is(b"on") {
        Some(Mode::On)
    } else if is(b"off") {
        Some(Mode::Off)
    } else if is(b"skip") {
        Some(Mode::Skip)
    } else {
        None
    }
}

/// Reads variables, reporting each value that does not parse.
struct Reader<L, R> {
    lookup: L,
    reject: R,
}

impl<'a, L, R> Reader<L, R>
where
    L: Fn(Var) -> Option<&'a [u8]>,
    R: FnMut(Var, &'a [u8]),
{
    fn read<T>(&mut self, var: Var, parse: fn(&[u8]) -> Option<T>) -> Option<T> {
        let value = (self.lookup)(var)?;
        let parsed = if value.len() > MAX_VALUE_LEN {
            None
        } else {
            parse(value)
        };
        if parsed.is_none() {
            (self.reject)(var, value);
        }
        parsed
    }
}

/// A plain decimal number: one or more ASCII digits and nothing else — no sign, no
/// blanks, no unit, no `0x`. Leading zeros are allowed. `None` when it does not fit in
/// a `u32`, which every range here is inside.
pub fn decimal(value: &[u8]) -> Option<u32> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u32, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::format;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// Parses an environment given as pairs, returning the configuration and the
    /// variables whose values were rejected.
    fn parse(env: &[(Var, &'static str)]) -> (Config, Vec<(Var, String)>) {
        let mut rejected = Vec::new();
        let config = Config::parse(
            |var| {
                env.iter()
                    .find(|(v, _)| *v == var)
                    .map(|(_, value)| value.as_bytes())
            },
            |var, value| rejected.push((var, String::from_utf8_lossy(value).into_owned())),
        );
        (config, rejected)
    }

    fn only(var: Var, value: &'static str) -> (Config, Vec<(Var, String)>) {
        parse(&[(var, value)])
    }

    #[test]
    fn empty_environment_is_keepalive_on_with_kernel_timers() {
        let (config, rejected) = parse(&[]);
        assert_eq!(config, Config::DEFAULT);
        assert!(rejected.is_empty());
        assert_eq!(config.settings().collect::<Vec<_>>(), [Setting::KeepAlive]);
    }

    #[test]
    fn mode_words_are_case_insensitive() {
        for (word, mode) in [
            ("on", Mode::On),
            ("ON", Mode::On),
            ("Off", Mode::Off),
            ("off", Mode::Off),
            ("skip", Mode::Skip),
            ("SKIP", Mode::Skip),
        ] {
            let (config, rejected) = only(Var::Keepalive, word);
            assert_eq!(config.mode, mode, "{word}");
            assert!(rejected.is_empty(), "{word}");
        }
    }

    #[test]
    fn bad_mode_is_rejected_and_falls_back_to_on() {
        for word in ["maybe", "", " on", "on ", "1", "yes", "o"] {
            let (config, rejected) = only(Var::Keepalive, word);
            assert_eq!(config.mode, Mode::On, "{word:?}");
            assert_eq!(rejected, [(Var::Keepalive, word.to_string())]);
        }
    }

    /// Checks 0, 1, max and max+1 for one numeric variable, and returns what `get`
    /// reads back for accepted values.
    fn check_bounds(var: Var, min: u32, max: u32, get: impl Fn(&Config) -> Option<u32>) {
        for (n, accepted) in [
            (0, min == 0),
            (1, true),
            (max - 1, true),
            (max, true),
            (max + 1, false),
        ] {
            let text: &'static str = Box::leak(n.to_string().into_boxed_str());
            let (config, rejected) = only(var, text);
            if accepted {
                assert_eq!(get(&config), Some(n), "{var:?}={n}");
                assert!(rejected.is_empty(), "{var:?}={n}");
            } else {
                assert_eq!(get(&config), None, "{var:?}={n}");
                assert_eq!(rejected, [(var, text.to_string())]);
            }
        }
    }

    #[test]
    fn keepidle_bounds() {
        check_bounds(Var::Idle, 1, 32767, |c| c.idle.map(Seconds::get));
    }

    #[test]
    fn keepintvl_bounds() {
        check_bounds(Var::Interval, 1, 32767, |c| c.interval.map(Seconds::get));
    }

    #[test]
    fn keepcnt_bounds() {
        check_bounds(Var::Count, 1, 127, |c| c.count.map(Probes::get));
    }

    #[test]
    fn tcp_user_timeout_bounds() {
        check_bounds(Var::UserTimeout, 0, 2147483647, |c| {
            c.user_timeout.map(Millis::get)
        });
    }

    #[test]
    fn numbers_must_be_plain_decimal() {
        let bad = [
            "",
            "abc",
            " 30",
            "30 ",
            "30s",
            "-5",
            "+5",
            "0x10",
            "1e3",
            "3.0",
            "١٢",
            "4294967296",
            "9999999999999999999999999999999999999999",
        ];
        for text in bad {
            for var in [Var::Idle, Var::Interval, Var::Count, Var::UserTimeout] {
                let (config, rejected) = only(var, text);
                assert_eq!(config, Config::DEFAULT, "{var:?}={text:?}");
                assert_eq!(rejected, [(var, text.to_string())], "{var:?}={text:?}");
            }
        }
    }

    #[test]
    fn leading_zeros_are_decimal() {
        assert_eq!(decimal(b"007"), Some(7));
        assert_eq!(only(Var::Idle, "060").0.idle, Seconds::new(60));
    }

    #[test]
    fn decimal_edges() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"4294967295"), Some(u32::MAX));
        assert_eq!(decimal(b"4294967296"), None);
        assert_eq!(decimal(b"42949672950"), None);
        assert_eq!(decimal(&[b'1', 0xff]), None);
    }

    #[test]
    fn one_bad_value_leaves_the_others_applied() {
        let (config, rejected) = parse(&[
            (Var::Idle, "99999"),
            (Var::Interval, "10"),
            (Var::Count, "0"),
            (Var::UserTimeout, "30000"),
        ]);
        assert_eq!(config.idle, None);
        assert_eq!(config.interval, Seconds::new(10));
        assert_eq!(config.count, None);
        assert_eq!(config.user_timeout, Millis::new(30000));
        assert_eq!(
            rejected,
            [(Var::Idle, "99999".into()), (Var::Count, "0".into())]
        );
    }

    #[test]
    fn settings_follow_the_mode() {
        let env = [
            (Var::Idle, "60"),
            (Var::Interval, "10"),
            (Var::Count, "6"),
            (Var::UserTimeout, "0"),
        ];
        // The options that restart the keepalive timer last.
        let all = [
            Setting::Interval(Seconds(10)),
            Setting::Count(Probes(6)),
            Setting::UserTimeout(Millis(0)),
            Setting::KeepAlive,
            Setting::Idle(Seconds(60)),
        ];
        let (on, _) = parse(&env);
        assert_eq!(on.settings().collect::<Vec<_>>(), all);
        assert!(on.is_active());

        let mut with_mode = env.to_vec();
        with_mode.push((Var::Keepalive, "skip"));
        let (skip, _) = parse(&with_mode);
        let without_keepalive: Vec<Setting> = all
            .into_iter()
            .filter(|s| *s != Setting::KeepAlive)
            .collect();
        assert_eq!(skip.settings().collect::<Vec<_>>(), without_keepalive);

        with_mode.pop();
        with_mode.push((Var::Keepalive, "off"));
        let (off, _) = parse(&with_mode);
        assert_eq!(off.settings().count(), 0);
        assert!(!off.is_active());

        let (skip_alone, _) = only(Var::Keepalive, "skip");
        assert!(!skip_alone.is_active());
    }

    #[test]
    fn every_variable_has_a_message() {
        for var in Var::ALL {
            assert!(!var.name().is_empty());
            assert!(!var.accepted().is_empty());
            assert!(!var.fallback().is_empty());
        }
    }

    /// A deliberately naive model of the accepted grammar, written apart from the
    /// parser: digits only, compared as text so that no integer can overflow.
    fn model_number(value: &[u8], min: u32, max: u32) -> Option<u32> {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let text = std::str::from_utf8(value).unwrap().trim_start_matches('0');
        let max_text = max.to_string();
        let too_big = text.len() > max_text.len()
            || (text.len() == max_text.len() && text > max_text.as_str());
        if too_big {
            return None;
        }
        let n: u32 = if text.is_empty() {
            0
        } else {
            text.parse().unwrap()
        };
        (n >= min).then_some(n)
    }

    fn model_mode(value: &[u8]) -> Option<Mode> {
        match String::from_utf8_lossy(value).to_lowercase().as_str() {
            _ if !value.is_ascii() => None,
            "on" => Some(Mode::On),
            "off" => Some(Mode::Off),
            "skip" => Some(Mode::Skip),
            _ => None,
        }
    }

    /// xorshift64*: a fixed, dependency-free source of test inputs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// An input biased towards the edges of the grammar: arbitrary bytes (invalid
        /// UTF-8 included), long digit strings, numbers next to every bound with
        /// junk around them, and the mode words in any case.
        fn value(&mut self) -> Vec<u8> {
            match self.below(4) {
                0 => (0..self.below(12)).map(|_| self.next() as u8).collect(),
                1 => (0..self.below(45))
                    .map(|_| b'0' + self.below(10) as u8)
                    .collect(),
                2 => {
                    let bounds = [
                        0u64,
                        1,
                        127,
                        128,
                        32767,
                        32768,
                        2147483647,
                        2147483648,
                        u32::MAX as u64,
                    ];
                    let n = bounds[self.below(bounds.len() as u64) as usize] + self.below(3);
                    let junk: [&[u8]; 8] = [b"", b"", b"", b" ", b"+", b"-", b"s", b"0x"];
                    let mut v = junk[self.below(8) as usize].to_vec();
                    v.extend(std::iter::repeat_n(b'0', self.below(3) as usize));
                    v.extend(n.saturating_sub(1).to_string().bytes());
                    v.extend_from_slice(junk[self.below(8) as usize]);
                    v
                }
                _ => {
                    let words: [&[u8]; 5] = [b"on", b"off", b"skip", b"0", b"1"];
                    let mut v = words[self.below(5) as usize].to_vec();
                    for b in &mut v {
                        if self.below(2) == 0 {
                            b.make_ascii_uppercase();
                        }
                    }
                    if self.below(4) == 0 {
                        v.push(self.next() as u8);
                    }
                    v
                }
            }
        }
    }

    /// A value longer than the bound is refused whole, whatever its prefix says; one of
    /// exactly the bound still parses.
    #[test]
    fn an_over_long_value_is_refused_not_cut() {
        let zeros = |n: usize, tail: &str| {
            let mut v = "0".repeat(n - tail.len());
            v.push_str(tail);
            Box::leak(v.into_boxed_str()) as &'static str
        };
        for (var, tail) in [
            (Var::Idle, "61"),
            (Var::UserTimeout, "5000"),
            (Var::Count, "junk"),
        ] {
            let (config, rejected) = only(var, zeros(MAX_VALUE_LEN + 1, tail));
            assert_eq!(config, Config::DEFAULT, "{var:?}");
            assert_eq!(rejected.len(), 1, "{var:?}");
        }
        let (config, rejected) = only(Var::Idle, zeros(MAX_VALUE_LEN, "61"));
        assert_eq!(config.idle, Seconds::new(61));
        assert!(rejected.is_empty());
    }

    /// Property test over arbitrary input: `Config::parse` never panics and agrees
    /// with the reference model on every variable. LIBKEEPALIVE_PROPERTY_CASES sets the
    /// number of environments (default 100 000, each with all six variables);
    /// docs/safety.md records a run of 10 million.
    #[test]
    fn parse_agrees_with_reference_model() {
        let cases: u64 = std::env::var("LIBKEEPALIVE_PROPERTY_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        assert!(
            Var::ALL
                .iter()
                .enumerate()
                .all(|(i, &var)| var as usize == i)
        );
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..cases {
            let values: Vec<Option<Vec<u8>>> = Var::ALL
                .iter()
                .map(|_| (rng.below(5) != 0).then(|| rng.value()))
                .collect();
            let value_of = |var: Var| values[var as usize].as_deref();
            let mut rejected = Vec::new();
            let config = Config::parse(value_of, |var, _| rejected.push(var));

            let number =
                |var: Var, min: u32, max: u32| value_of(var).map(|v| model_number(v, min, max));
            let idle = number(Var::Idle, 1, 32767);
            let interval = number(Var::Interval, 1, 32767);
            let count = number(Var::Count, 1, 127);
            let user_timeout = number(Var::UserTimeout, 0, 2147483647);
            let mode = value_of(Var::Keepalive).map(model_mode);
            let context = || format!("case {case}: {values:?}");
            assert_eq!(
                config.idle.map(Seconds::get),
                idle.flatten(),
                "{}",
                context()
            );
            assert_eq!(
                config.interval.map(Seconds::get),
                interval.flatten(),
                "{}",
                context()
            );
            assert_eq!(
                config.count.map(Probes::get),
                count.flatten(),
                "{}",
                context()
            );
            assert_eq!(
                config.user_timeout.map(Millis::get),
                user_timeout.flatten(),
                "{}",
                context()
            );
            assert_eq!(
                config.mode,
                mode.flatten().unwrap_or(Mode::On),
                "{}",
                context()
            );
            let expected_rejections: Vec<Var> = [
                (Var::Keepalive, mode.is_some_and(|m| m.is_none())),
                (Var::Idle, idle.is_some_and(|n| n.is_none())),
                (Var::Interval, interval.is_some_and(|n| n.is_none())),
                (Var::Count, count.is_some_and(|n| n.is_none())),
                (Var::UserTimeout, user_timeout.is_some_and(|n| n.is_none())),
            ]
            .into_iter()
            .filter_map(|(var, bad)| bad.then_some(var))
            .collect();
            assert_eq!(rejected, expected_rejections, "{}", context());
        }
    }
}
