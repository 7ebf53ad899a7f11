//! The process-wide configuration: read from the environment once, then only loaded.
//!
//! The library's constructor reads it before `main`, and reports what it refused
//! ([`load`]). Another library's constructor may create a socket before ours has run
//! (ld.so runs constructors in dependency order, not LD_PRELOAD order), and threads may
//! race at any time, so the first caller of [`config`] reads it instead, whoever that
//! is, silently: the report is the constructor's alone, so that it is made once, at
//! load, and never from inside a call of the program.
//!
//! Nobody claims the reading and nobody waits: every caller that finds the
//! configuration unpublished parses the environment itself (pure code, the same
//! answer each time), stores the result in atomics and publishes it with a Release
//! store. A fork at any instant therefore leaves a child that simply parses again.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::report::Channel;
use crate::sys::{self, SavedErrno};
use keepalive_config::{Config, Millis, Mode, Probes, Seconds, Var};

const EMPTY: u8 = 0;
const READY: u8 = 1;

static STATE: AtomicU8 = AtomicU8::new(EMPTY);
/// The configuration, packed (see [`Packed`]): every racing writer stores the same
/// words, so a reader that saw `READY` finds a whole configuration.
static TIMERS: AtomicU64 = AtomicU64::new(0);
static USER_TIMEOUT: AtomicU32 = AtomicU32::new(0);

/// The configuration, read on first use.
pub fn config() -> Config {
    if STATE.load(Ordering::Acquire) == READY {
        return Packed {
            timers: TIMERS.load(Ordering::Relaxed),
            user_timeout: USER_TIMEOUT.load(Ordering::Relaxed),
        }
        .unpack();
    }
    publish(&mut Rejected::default())
}

/// The constructor's reading: parses, publishes, then reports each refused value, when
/// fd 2 is where a line may go ([`Channel`]).
pub fn load() -> Config {
    let mut rejected = Rejected::default();
    let config = publish(&mut rejected);
    let mut refused = rejected.0.iter().flatten().peekable();
    if refused.peek().is_some() {
        if let Some(channel) = Channel::stderr() {
            for &(var, value) in refused {
                channel.refused(var, value);
            }
        }
    }
    config
}

#[cold]
fn publish<'a>(rejected: &mut Rejected<'a>) -> Config {
    let config = {
        let _errno = SavedErrno::save();
        read_environment(rejected)
    };
    let packed = Packed::pack(&config);
    TIMERS.store(packed.timers, Ordering::Relaxed);
    USER_TIMEOUT.store(packed.user_timeout, Ordering::Relaxed);
    STATE.store(READY, Ordering::Release);
    config
}

/// A [`Config`] in two atomic words. `timers`: idle and interval in 15 bits each,
/// count in 7, 0 for "not set" (none of their ranges contains 0), and the mode in
/// 2 bits. `user_timeout`: the value in 31 bits and a presence bit, since 0
/// is a value there.
struct Packed {
    timers: u64,
    user_timeout: u32,
}

impl Packed {
    const PRESENT: u32 = 1 << 31;

    fn pack(config: &Config) -> Packed {
        let mode = match config.mode {
            Mode::On => 0,
            Mode::Skip => 1,
            Mode::Off => 2,
        };
        let timers = u64::from(config.idle.map_or(0, Seconds::get))
            | u64::from(config.interval.map_or(0, Seconds::get)) << 15
            | u64::from(config.count.map_or(0, Probes::get)) << 30
            | mode << 37;
        let user_timeout = config
            .user_timeout
            .map_or(0, |ms| ms.get() | Packed::PRESENT);
        Packed {
            timers,
            user_timeout,
        }
    }

    fn unpack(&self) -> Config {
        let field = |shift: u32, bits: u32| ((self.timers >> shift) & ((1 << bits) - 1)) as u32;
        Config {
            mode: match field(37, 2) {
                0 => Mode::On,
                1 => Mode::Skip,
                _ => Mode::Off,
            },
            idle: Seconds::new(field(0, 15)),
            interval: Seconds::new(field(15, 15)),
            count: Probes::new(field(30, 7)),
            user_timeout: (self.user_timeout & Packed::PRESENT != 0)
                .then(|| Millis::new(self.user_timeout & !Packed::PRESENT))
                .flatten(),
        }
    }
}

/// The values refused while parsing, kept until the constructor reports them.
#[derive(Default)]
struct Rejected<'a>([Option<(Var, &'a [u8])>; Var::ALL.len()]);

/// Parses the environment, noting each refused value. In secure-execution mode every
/// variable reads as unset (see `sys::env`): keepalive on with the kernel's timers, and
/// nothing refused.
fn read_environment<'a>(rejected: &mut Rejected<'a>) -> Config {
    Config::parse(
        // SAFETY: the bytes are used before the constructor returns, or not at all
        // (a reading outside the constructor reports nothing); a program that calls
        // setenv while another thread reads the environment is already racing with
        // getenv(3) itself (MT-Unsafe env).
        |var: Var| unsafe { sys::env(var.c_name()) },
        |var, value| {
            if let Some(slot) = rejected.0.get_mut(var as usize) {
                *slot = Some((var, value));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configuration_survives_packing() {
        let seconds = [
            None,
            Seconds::new(1),
            Seconds::new(600),
            Seconds::new(32767),
        ];
        let probes = [None, Probes::new(1), Probes::new(127)];
        let millis = [
            None,
            Millis::new(0),
            Millis::new(1),
            Millis::new(Millis::MAX),
        ];
        for mode in [Mode::On, Mode::Skip, Mode::Off] {
            for idle in seconds {
                for interval in seconds {
                    for count in probes {
                        for user_timeout in millis {
                            let config = Config {
                                mode,
                                idle,
                                interval,
                                count,
                                user_timeout,
                            };
                            assert_eq!(Packed::pack(&config).unpack(), config);
                        }
                    }
                }
            }
        }
    }
}
