//! The library in musl programs, as in Alpine-based containers. musl's loader takes
//! `libc.so.6` and `libdl.so.2` as itself and ignores symbol versions, so the glibc
//! build loads there when musl has every function it imports. Tested on a program
//! built with Debian's `musl-gcc` (tests/support/musl_sockets.c), with the shipped
//! portable library and with the native build.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Keepalive;

/// tests/support/musl_sockets.c built with musl-gcc, or `None` after a skip.
fn musl_program(test: &str) -> Option<PathBuf> {
    if !common::have(test, "musl-gcc") {
        return None;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/musl_sockets.c");
    let output = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("musl_sockets-{test}"));
    let status = Command::new("musl-gcc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&output)
        .arg(&source)
        .status()
        .expect("run musl-gcc");
    assert!(status.success(), "musl-gcc failed on {}", source.display());
    let segments = Command::new("readelf")
        .arg("-lW")
        .arg(&output)
        .output()
        .expect("run readelf");
    let segments = String::from_utf8_lossy(&segments.stdout);
    assert!(
        segments.contains("/lib/ld-musl-"),
        "not a dynamically linked musl program:\n{segments}"
    );
    Some(output)
}

/// The libraries to try: the two shipped builds and the native one.
fn libraries(test: &str) -> Vec<PathBuf> {
    let mut libraries: Vec<PathBuf> = common::portable(test).into_iter().collect();
    libraries.extend(common::portable_glibc_2_17(test));
    libraries.push(common::shim().to_path_buf());
    libraries
}

fn run(program: &Path, library: &Path, vars: &[(&str, &str)]) -> common::Run {
    let run = common::Run::of(common::output_with_journal_stderr(
        common::preloaded(program, vars)
            .env("LD_PRELOAD", library)
            .stdin(std::process::Stdio::null()),
    ));
    assert!(
        run.status_ok,
        "{} with {}\n{}{}",
        program.display(),
        library.display(),
        run.stdout,
        run.stderr
    );
    run
}

/// The socket() client and the connection accept4() takes on a listener the library
/// never saw are configured; the listener the program configured after socket() keeps
/// its settings, and so does the connection accepted on it; UDP gets nothing.
#[test]
fn musl_program_sockets_are_configured_and_udp_left_alone() {
    let test = "musl_program_sockets_are_configured_and_udp_left_alone";
    let Some(program) = musl_program(test) else {
        return;
    };
    let configured = Keepalive::ALL_TIMERS;
    for library in libraries(test) {
        let run = run(&program, &library, &common::ALL_TIMERS);
        let name = library.display();
        assert_eq!(run.keepalive("client"), configured, "{name}");
        assert_eq!(run.keepalive("accepted"), configured, "{name}");
        for label in ["listener", "inherited"] {
            let own = run.keepalive(label);
            assert_eq!(
                (own.keepalive, own.idle),
                (0, 999),
                "{name}: {label}: the program's own listener settings must stand"
            );
        }
        assert_eq!(
            run.report("udp")["keepalive"],
            "0",
            "{name}: UDP socket touched"
        );
        assert_eq!(
            run.shim_lines(),
            Vec::<&str>::new(),
            "{name}: {}",
            run.stderr
        );
    }
}

#[test]
fn musl_program_gets_one_warning_for_a_bad_value() {
    let test = "musl_program_gets_one_warning_for_a_bad_value";
    let Some(program) = musl_program(test) else {
        return;
    };
    for library in libraries(test) {
        let run = run(&program, &library, &[("KEEPIDLE", "45"), ("KEEPCNT", "x")]);
        run.assert_one_warning_for_keepcnt("x", &library.display().to_string());
    }
}
