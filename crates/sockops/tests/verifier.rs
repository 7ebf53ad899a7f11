//! The kernel's verifier judges the programs this crate builds: both programs load
//! for every configuration, and a refused program's error carries the verifier's reason. Needs root
//! (CAP_BPF and CAP_NET_ADMIN); CI runs as root with LIBKEEPALIVE_REQUIRE_ALL=1.

use keepalive_config::{Config, Millis, Mode, Probes, Seconds};
use std::os::fd::{AsFd, AsRawFd};

use keepalive_sockops::{Hook, Program, Route, build};

/// Says by name that `test` cannot run here; fails instead under
/// LIBKEEPALIVE_REQUIRE_ALL, as the workspace's other tests do.
fn can_load(test: &str) -> bool {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED {test}: loading BPF programs needs root");
        assert!(
            std::env::var_os("LIBKEEPALIVE_REQUIRE_ALL").is_none(),
            "{test} cannot run but LIBKEEPALIVE_REQUIRE_ALL is set"
        );
    }
    root
}

#[test]
fn every_configuration_passes_the_verifier() {
    if !can_load("every_configuration_passes_the_verifier") {
        return;
    }
    let full = Config {
        mode: Mode::On,
        idle: Seconds::new(Seconds::MAX),
        interval: Seconds::new(1),
        count: Probes::new(Probes::MAX),
        user_timeout: Millis::new(Millis::MAX),
    };
    for config in [
        Config::DEFAULT,
        full,
        Config {
            mode: Mode::Skip,
            ..full
        },
        Config {
            mode: Mode::Off,
            ..full
        },
    ] {
        if let Err(err) = Route::load(&config) {
            panic!("{config:?}: {err}");
        }
    }
}

#[test]
fn a_refused_program_carries_the_verifiers_reason() {
    if !can_load("a_refused_program_carries_the_verifiers_reason") {
        return;
    }
    // The program's last two instructions set r0 and return; without the first, the
    // program returns a register it never wrote.
    let marks = build::Marks::create().expect("create the map of marks");
    let insns = build::sock_ops(&Config::DEFAULT, marks.as_fd().as_raw_fd(), true);
    let refused =
        Program::load(Hook::SockOps, &insns[insns.len() - 1..]).expect_err("the verifier refuses");
    let log = refused.verifier_log.as_deref().unwrap_or_default();
    assert!(log.contains("R0 !read_ok"), "{refused}");
    assert!(
        refused.to_string().contains("the verifier said: "),
        "{refused}"
    );
}
