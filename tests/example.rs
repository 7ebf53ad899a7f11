//! The probe example, as a user runs it: with and without the library preloaded.

mod common;

use std::process::Command;

#[test]
fn probe_shows_the_settings_of_every_socket() {
    let output = common::preloaded(common::probe_example(), &common::ALL_TIMERS)
        .output()
        .expect("run probe");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("libkeepalive is loaded"), "{stdout}");
    for family in ["IPv4", "IPv6"] {
        for role in ["listener", "client", "accepted"] {
            assert_eq!(
                common::probe_row(&stdout, &format!("{family} {role}")),
                ["on", "61", "11", "7", "30001"]
            );
        }
    }

    let bare = Command::new(common::probe_example())
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run probe");
    let stdout = String::from_utf8(bare.stdout).unwrap();
    assert!(stdout.starts_with("libkeepalive is NOT loaded"), "{stdout}");
    assert_eq!(common::probe_row(&stdout, "IPv4 accepted")[0], "off");
}
