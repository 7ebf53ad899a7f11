//! The variables, read back from the kernel in a child that loaded the library:
//! each one alone, KEEPALIVE's three words, the old KEEPALIVE_DEBUG, and every kind of bad value.

mod common;

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use common::{ALL_TIMERS, Keepalive, Run, as_child, report_keepalive, run_child, scenario};

const PROBED: [&str; 5] = ["inet", "inet6", "listener", "client", "accepted"];

/// The child side of every test here: a bare socket in each family, and a connected
/// pair on loopback.
fn probe_sockets() {
    for (label, domain) in [("inet", libc::AF_INET), ("inet6", libc::AF_INET6)] {
        // SAFETY: socket(2) takes plain integers.
        let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        report_keepalive(label, fd);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    report_keepalive("listener", listener.as_raw_fd());
    report_keepalive("client", client.as_raw_fd());
    report_keepalive("accepted", accepted.as_raw_fd());
}

fn assert_all(run: &Run, expected: Keepalive, context: &str) {
    for label in PROBED {
        assert_eq!(run.keepalive(label), expected, "{label} with {context}");
    }
}

#[test]
fn unset_variables_mean_keepalive_on_with_the_kernel_timers() {
    let Some(run) = scenario(
        "unset_variables_mean_keepalive_on_with_the_kernel_timers",
        &[],
        probe_sockets,
    ) else {
        return;
    };
    assert_all(&run, Keepalive::on_with_kernel_timers(), "no variables");
    assert_eq!(run.shim_lines(), Vec::<&str>::new());
}

#[test]
fn each_variable_sets_its_own_option_only() {
    let name = "each_variable_sets_its_own_option_only";
    let base = Keepalive::on_with_kernel_timers();
    let cases = [
        ("KEEPIDLE", "61", Keepalive { idle: 61, ..base }),
        (
            "KEEPINTVL",
            "11",
            Keepalive {
                interval: 11,
                ..base
            },
        ),
        ("KEEPCNT", "7", Keepalive { count: 7, ..base }),
        (
            "TCP_USER_TIMEOUT",
            "30001",
            Keepalive {
                user_timeout: 30001,
                ..base
            },
        ),
        ("KEEPALIVE", "on", base),
        ("KEEPALIVE", "ON", base),
    ];
    for (var, value, expected) in cases {
        let Some(run) = scenario(name, &[(var, value)], probe_sockets) else {
            return;
        };
        assert_all(&run, expected, &format!("{var}={value}"));
        assert_eq!(run.shim_lines(), Vec::<&str>::new());
    }
}

/// [`probe_sockets`] in scenario `name` with [`ALL_TIMERS`] and `extra` variables.
fn probe_with_all_timers(name: &str, extra: &[(&str, &str)]) -> Option<Run> {
    scenario(name, &[&ALL_TIMERS[..], extra].concat(), probe_sockets)
}

#[test]
fn keepalive_off_leaves_every_socket_untouched() {
    let extra = [("KEEPALIVE", "Off")];
    let Some(run) = probe_with_all_timers("keepalive_off_leaves_every_socket_untouched", &extra)
    else {
        return;
    };
    assert_all(&run, Keepalive::untouched(), "KEEPALIVE=Off");
    assert_eq!(
        run.shim_lines(),
        Vec::<&str>::new(),
        "nothing is configured, nothing reported"
    );
}

#[test]
fn keepalive_skip_applies_the_timers_but_not_so_keepalive() {
    let extra = [("KEEPALIVE", "skip")];
    let Some(run) = probe_with_all_timers(
        "keepalive_skip_applies_the_timers_but_not_so_keepalive",
        &extra,
    ) else {
        return;
    };
    let expected = Keepalive {
        keepalive: 0,
        ..Keepalive::ALL_TIMERS
    };
    assert_all(&run, expected, "KEEPALIVE=skip");
}

/// `KEEPALIVE_DEBUG` was a per-socket report on stderr, written from inside the
/// program's calls; it is gone (the library speaks only at load, docs/safety.md), and
/// a process that still has it set gets every socket configured and not one line.
#[test]
fn keepalive_debug_is_gone_and_writes_nothing() {
    let extra = [("KEEPALIVE_DEBUG", "1")];
    let Some(run) = probe_with_all_timers("keepalive_debug_is_gone_and_writes_nothing", &extra)
    else {
        return;
    };
    assert_all(&run, Keepalive::ALL_TIMERS, "KEEPALIVE_DEBUG=1");
    assert_eq!(run.shim_lines(), Vec::<&str>::new(), "{}", run.stderr);
}

/// For each variable: a bad value, what the warning must say, and what is applied in
/// its place while the other settings still apply.
#[test]
fn every_bad_value_gets_one_warning_and_the_rest_still_applies() {
    let name = "every_bad_value_gets_one_warning_and_the_rest_still_applies";
    let seconds = "expected whole seconds from 1 to 32767; using the kernel default";
    let probes = "expected a whole number of probes from 1 to 127; using the kernel default";
    let millis = "expected whole milliseconds from 0 to 2147483647; using the kernel default";
    let words = "expected on, off or skip; using on";
    let forty = "9".repeat(40);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("KEEPIDLE", "abc", seconds),
        ("KEEPIDLE", "", seconds),
        ("KEEPIDLE", " 30", seconds),
        ("KEEPIDLE", "30s", seconds),
        ("KEEPIDLE", "-5", seconds),
        ("KEEPIDLE", "0x10", seconds),
        ("KEEPIDLE", &forty, seconds),
        ("KEEPIDLE", "99999", seconds),
        ("KEEPIDLE", "0", seconds),
        ("KEEPIDLE", "32768", seconds),
        ("KEEPINTVL", "0", seconds),
        ("KEEPINTVL", "32768", seconds),
        ("KEEPINTVL", "1.5", seconds),
        ("KEEPCNT", "0", probes),
        ("KEEPCNT", "128", probes),
        ("KEEPCNT", "+3", probes),
        ("TCP_USER_TIMEOUT", "2147483648", millis),
        ("TCP_USER_TIMEOUT", "-1", millis),
        ("TCP_USER_TIMEOUT", "10ms", millis),
        ("KEEPALIVE", "maybe", words),
        ("KEEPALIVE", "", words),
        ("KEEPALIVE", "yes", words),
    ];
    for (bad_var, value, explanation) in cases {
        // Every other variable is set to a good value, which must still apply.
        let mut vars: Vec<(&str, &str)> = ALL_TIMERS
            .iter()
            .copied()
            .filter(|(var, _)| *var != bad_var)
            .collect();
        vars.push((bad_var, value));
        let Some(run) = scenario(name, &vars, probe_sockets) else {
            return;
        };
        let warning = format!("libkeepalive: {bad_var}=\"{value}\" ignored: {explanation}");
        assert_eq!(run.shim_lines(), [warning.as_str()], "{bad_var}={value:?}");

        let mut expected = Keepalive {
            keepalive: 1,
            idle: 61,
            interval: 11,
            count: 7,
            user_timeout: 30001,
        };
        let kernel = Keepalive::untouched();
        match bad_var {
            "KEEPIDLE" => expected.idle = kernel.idle,
            "KEEPINTVL" => expected.interval = kernel.interval,
            "KEEPCNT" => expected.count = kernel.count,
            "TCP_USER_TIMEOUT" => expected.user_timeout = kernel.user_timeout,
            _ => {}
        }
        assert_all(&run, expected, &format!("{bad_var}={value:?}"));
    }
}

/// Whatever bytes a value holds — newlines, escapes, invalid UTF-8, 100 kB — the
/// warning stays one bounded, printable line.
#[test]
fn hostile_values_stay_on_one_printable_line() {
    let name = "hostile_values_stay_on_one_printable_line";
    if as_child(name, probe_sockets) {
        return;
    }
    let cases: [(&[u8], &str); 3] = [
        (
            b"12\nlibkeepalive: forged",
            r#""12\x0alibkeepalive: forged""#,
        ),
        (b"\xff\xfe\"\\", r#""\xff\xfe\"\\""#),
        (&[b'7'; 100_000], "...\""),
    ];
    for (value, shown) in cases {
        let run = run_child(name, &[], |command| {
            command.env("KEEPCNT", OsStr::from_bytes(value));
        });
        let lines = run.shim_lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        let line = lines[0];
        assert!(line.starts_with("libkeepalive: KEEPCNT=\""), "{line}");
        assert!(line.contains(shown), "{line} does not show {shown}");
        assert!(line.len() < 400, "{} bytes", line.len());
        assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)), "{line:?}");
        assert_eq!(run.stderr.matches('\n').count(), 1, "{}", run.stderr);
    }
}

/// The configuration is read when the library is loaded, before main: a program that
/// never creates a socket still hears about a bad value, once, on a stderr that is a
/// service's journal stream; on a pipe, the library says nothing (src/report.rs).
#[test]
fn bad_values_are_reported_at_start_up_even_without_sockets() {
    let vars = [("KEEPIDLE", "30s")];
    let journal = common::output_with_journal_stderr(&mut common::preloaded("/bin/true", &vars));
    assert!(journal.status.success());
    assert_eq!(
        String::from_utf8_lossy(&journal.stderr),
        "libkeepalive: KEEPIDLE=\"30s\" ignored: expected whole seconds from 1 to 32767; using the kernel default\n"
    );
    let pipe = common::preloaded("/bin/true", &vars)
        .output()
        .expect("run /bin/true");
    assert!(pipe.status.success());
    assert_eq!(String::from_utf8_lossy(&pipe.stderr), "");
}
