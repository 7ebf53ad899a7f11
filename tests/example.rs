//! The probe example, as a user runs it: with and without the library preloaded.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// target/<profile>/examples/probe, which `cargo test` builds beside the test binaries.
fn probe() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    profile_dir.join("examples/probe")
}

/// The cells of the probe's row for `socket`, such as "IPv6 accepted".
fn row(stdout: &str, socket: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(socket))
        .unwrap_or_else(|| panic!("no row {socket:?} in:\n{stdout}"));
    line[socket.len()..]
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn probe_shows_the_settings_of_every_socket() {
    let vars = [
        ("KEEPIDLE", "61"),
        ("KEEPINTVL", "11"),
        ("KEEPCNT", "7"),
        ("TCP_USER_TIMEOUT", "30001"),
    ];
    let output = common::preloaded(probe(), &vars)
        .output()
        .expect("run probe");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("libkeepalive is loaded"), "{stdout}");
    for family in ["IPv4", "IPv6"] {
        for role in ["listener", "client", "accepted"] {
            assert_eq!(
                row(&stdout, &format!("{family} {role}")),
                ["on", "61", "11", "7", "30001"]
            );
        }
    }

    let bare = Command::new(probe())
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run probe");
    let stdout = String::from_utf8(bare.stdout).unwrap();
    assert!(stdout.starts_with("libkeepalive is NOT loaded"), "{stdout}");
    assert_eq!(row(&stdout, "IPv4 accepted")[0], "off");
}
