//! The process-wide configuration: read from the environment once, then only loaded.
//!
//! The library's constructor reads it before `main`. Another library's constructor may
//! create a socket before ours has run (ld.so runs constructors in dependency order, not
//! LD_PRELOAD order), and threads may race at any time, so the first caller of
//! [`config`] reads it instead, whoever that is. No caller ever waits: the one that
//! claims the slot parses, reports bad values and publishes; any caller that arrives
//! while that is in progress parses the same environment for itself, silently, and
//! gets the same value.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::{log, sys};
use keepalive_config::{Config, Var};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// Written once by the thread that moves `STATE` from `EMPTY` to `WRITING`, and read
/// only after `STATE` is `READY`.
struct Slot(UnsafeCell<MaybeUninit<Config>>);

// SAFETY: the cell is written by exactly one thread, before the Release store of
// READY, and read only after an Acquire load of READY (see `config`).
unsafe impl Sync for Slot {}

static STATE: AtomicU8 = AtomicU8::new(EMPTY);
static SLOT: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));

/// The configuration, read on first use.
///
/// After a `fork()` taken while another thread was publishing, the child sees
/// `WRITING` forever and parses on each call: slower, never wrong.
pub fn config() -> Config {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: READY is stored (Release) only after the slot was written, and the
        // slot is never written again.
        return unsafe { (*SLOT.0.get()).assume_init() };
    }
    publish()
}

#[cold]
fn publish() -> Config {
    let claimed = STATE
        .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Acquire)
        .is_ok();
    let config = read_environment(claimed);
    if claimed {
        // SAFETY: this thread won EMPTY -> WRITING, so it is the only writer, and no
        // reader looks at the slot before READY is stored below.
        unsafe { (*SLOT.0.get()).write(config) };
        STATE.store(READY, Ordering::Release);
    }
    config
}

/// Parses the environment; `report` says whether to warn about rejected values, so
/// that each appears once per process. In secure-execution mode every variable reads
/// as unset (see `sys::env`): keepalive on with the kernel's timers, and no warnings.
fn read_environment(report: bool) -> Config {
    let _errno = sys::SavedErrno::save();
    Config::parse(
        // SAFETY: the bytes are parsed before this function returns; a program that
        // calls setenv while another thread reads the environment is already racing
        // with getenv(3) itself (MT-Unsafe env).
        |var: Var| unsafe { sys::env(var.c_name()) },
        |var, value| {
            if report {
                log::rejected(var, value);
            }
        },
    )
}
