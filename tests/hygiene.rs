//! The shipped binary itself: small, libc only, exactly three exported functions,
//! a versioned SONAME, full RELRO and a non-executable stack.

mod common;

use std::process::Command;

/// Runs a binutils tool on the library, or says the test was skipped.
fn inspect(test: &str, tool: &str, args: &[&str]) -> Option<String> {
    match Command::new(tool).args(args).arg(common::shim()).output() {
        Ok(output) => {
            assert!(output.status.success(), "{tool} {args:?} failed");
            Some(String::from_utf8(output.stdout).unwrap())
        }
        Err(err) => {
            common::skip(test, &format!("{tool} is not available: {err}"));
            None
        }
    }
}

#[test]
fn stripped_library_is_at_most_16_kib() {
    let size = std::fs::metadata(common::shim()).unwrap().len();
    assert!(size <= 16 * 1024, "{size} bytes");
    let Some(sections) = inspect("stripped_library_is_at_most_16_kib", "readelf", &["-SW"]) else {
        return;
    };
    assert!(
        !sections.contains(".symtab"),
        "release build is not stripped"
    );
}

#[test]
fn depends_on_libc_only() {
    let Some(ldd) = inspect("depends_on_libc_only", "ldd", &[]) else {
        return;
    };
    let libraries: Vec<&str> = ldd
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for library in &libraries {
        assert!(
            library.starts_with("linux-vdso")
                || library.starts_with("libc.so.6")
                || library.contains("ld-linux"),
            "unexpected dependency {library}:\n{ldd}"
        );
    }
    assert!(libraries.contains(&"libc.so.6"), "{ldd}");
}

/// The library's dynamic symbols that `nm -D only` lists, as (name, type letter).
fn symbols(test: &str, only: &str) -> Option<Vec<(String, String)>> {
    let text = inspect(test, "nm", &["-D", only, "--format=posix"])?;
    let pairs = text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        Some((fields.next()?.to_string(), fields.next()?.to_string()))
    });
    Some(pairs.collect())
}

#[test]
fn exports_exactly_socket_accept_and_accept4() {
    let test = "exports_exactly_socket_accept_and_accept4";
    let Some(symbols) = symbols(test, "--defined-only") else {
        return;
    };
    let mut names: Vec<&str> = symbols.iter().map(|(name, _)| name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["accept", "accept4", "socket"], "{symbols:?}");
}

#[test]
fn soname_relro_bind_now_and_no_executable_stack() {
    let test = "soname_relro_bind_now_and_no_executable_stack";
    let Some(dynamic) = inspect(test, "readelf", &["-dW"]) else {
        return;
    };
    common::assert_soname_and_bind_now(&dynamic);
    let Some(segments) = inspect(test, "readelf", &["-lW"]) else {
        return;
    };
    common::assert_relro_and_no_executable_stack(&segments);
}

/// What the library imports from libc: three functions, and every other call is a
/// direct system call (src/sys.rs). After initialisation its paths call only
/// `__errno_location`, which is async-signal-safe, so `accept` stays callable from a
/// signal handler; dlsym and secure_getenv run only while initialising. Nothing comes
/// from once_cell: its `race` cells are atomics. Every import costs a symbol lookup at
/// every exec, and so does every weak one (none: no C start files, build.rs). A new
/// import must be added to [`common::IMPORTS`] on purpose, never slip in with a
/// refactoring.
#[test]
fn imports_only_signal_safe_functions_after_initialisation() {
    let test = "imports_only_signal_safe_functions_after_initialisation";
    let Some(symbols) = symbols(test, "--undefined-only") else {
        return;
    };
    let mut imports: Vec<&str> = symbols
        .iter()
        .map(|(name, _)| name.split('@').next().unwrap_or(name))
        .collect();
    imports.sort();
    assert_eq!(imports, common::IMPORTS, "{symbols:?}");
}
