//! The process-wide configuration: read from the environment once, then only loaded.
//!
//! The library's constructor reads it before `main`. Another library's constructor may
//! create a socket before ours has run (ld.so runs constructors in dependency order, not
//! LD_PRELOAD order), and threads may race at any time, so the first caller of
//! [`config`] reads it instead, whoever that is. No caller ever waits: the one that
//! claims the slot parses, publishes, and only then reports bad values; any caller that
//! arrives while that is in progress parses the same environment for itself, silently,
//! and gets the same value.
//!
//! Hand-written rather than a `once_cell::race` cell: a `Config` takes 72 bits
//! (two 15-bit timers, a 7-bit count, a 31-bit timeout with its presence bit, the mode
//! and the debug flag), more than `OnceNonZeroUsize` holds, and `OnceRef`/`OnceBox`
//! need storage per racing initialiser, which means allocating.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicI32, Ordering};

use crate::{log, sys};
use keepalive_config::{Config, Var};

/// `STATE` values besides these two are the pid of the process whose thread is
/// writing the slot.
const EMPTY: i32 = 0;
const READY: i32 = -1;

/// Written once by the thread that claims `STATE`, and read only after `STATE` is
/// `READY`.
struct Slot(UnsafeCell<MaybeUninit<Config>>);

// SAFETY: the cell is written only by a thread that holds the claim, before the
// Release store of READY, and read only after an Acquire load of READY (see `config`).
// A claim passes to another thread only across fork(2), in a child where the first
// claimant does not exist.
unsafe impl Sync for Slot {}

static STATE: AtomicI32 = AtomicI32::new(EMPTY);
static SLOT: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));

/// The configuration, read on first use.
pub fn config() -> Config {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: READY is stored (Release) only after the slot was written, and the
        // slot is never written again.
        return unsafe { (*SLOT.0.get()).assume_init() };
    }
    publish()
}

/// Claims the slot, or takes over a claim held by another process: a `fork()` taken
/// while a thread of the parent was publishing leaves the child with that thread's
/// claim and without the thread. The child takes the claim over and publishes itself,
/// so that it, too, reads the environment once.
#[cold]
fn publish() -> Config {
    let me = sys::getpid();
    let mut seen = STATE.load(Ordering::Acquire);
    let claimed = loop {
        if seen == READY || seen == me || me <= 0 {
            break false;
        }
        match STATE.compare_exchange(seen, me, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break true,
            Err(now) => seen = now,
        }
    };
    if seen == READY {
        return config();
    }
    let mut rejected = Rejected::default();
    let config = read_environment(&mut rejected);
    if claimed {
        // SAFETY: this thread holds the claim, so it is the only writer, and no reader
        // looks at the slot before READY is stored below.
        unsafe { (*SLOT.0.get()).write(config) };
        STATE.store(READY, Ordering::Release);
        for &(var, value) in rejected.0.iter().flatten() {
            log::rejected(var, value);
        }
    }
    config
}

/// The values refused while parsing, kept until the configuration is published.
#[derive(Default)]
struct Rejected<'a>([Option<(Var, &'a [u8])>; Var::ALL.len()]);

/// Parses the environment, noting each refused value. In secure-execution mode every
/// variable reads as unset (see `sys::env`): keepalive on with the kernel's timers, and
/// no warnings.
fn read_environment<'a>(rejected: &mut Rejected<'a>) -> Config {
    let _errno = sys::SavedErrno::save();
    Config::parse(
        // SAFETY: the bytes are used before `publish` returns; a program that calls
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
