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
fn stripped_library_is_at_most_32_kib() {
    let size = std::fs::metadata(common::shim()).unwrap().len();
    assert!(size <= 32 * 1024, "{size} bytes");
    let Some(sections) = inspect("stripped_library_is_at_most_32_kib", "readelf", &["-SW"]) else {
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

#[test]
fn exports_exactly_socket_accept_and_accept4() {
    let Some(symbols) = inspect(
        "exports_exactly_socket_accept_and_accept4",
        "nm",
        &["-D", "--defined-only", "--format=posix"],
    ) else {
        return;
    };
    let mut names: Vec<&str> = symbols
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    names.sort();
    assert_eq!(names, ["accept", "accept4", "socket"], "{symbols}");
}

#[test]
fn soname_relro_bind_now_and_no_executable_stack() {
    let test = "soname_relro_bind_now_and_no_executable_stack";
    let Some(dynamic) = inspect(test, "readelf", &["-dW"]) else {
        return;
    };
    assert!(
        dynamic.contains("Library soname: [libkeepalive.so.0]"),
        "{dynamic}"
    );
    assert!(
        dynamic.contains("BIND_NOW") || dynamic.contains("Flags: NOW"),
        "{dynamic}"
    );
    let Some(segments) = inspect(test, "readelf", &["-lW"]) else {
        return;
    };
    common::assert_relro_and_no_executable_stack(&segments);
}

/// What the library imports from libc. After initialisation its paths call only
/// functions that are async-signal-safe (socket functions, errno, and syscall(2), a
/// bare trap into the kernel that serves every raw call: write, fstat, poll, the
/// signal mask), so `accept` stays callable from a signal handler; dlsym and
/// secure_getenv run only while initialising. Nothing comes from once_cell: its `race`
/// cells are atomics. Every import also costs a symbol lookup at every exec. A new
/// import must be added to [`common::IMPORTS`] on purpose, never slip in with a
/// refactoring.
#[test]
fn imports_only_signal_safe_functions_after_initialisation() {
    let Some(symbols) = inspect(
        "imports_only_signal_safe_functions_after_initialisation",
        "nm",
        &["-D", "--undefined-only", "--format=posix"],
    ) else {
        return;
    };
    let mut strong: Vec<&str> = symbols
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            (fields.next()? == "U").then(|| name.split('@').next().unwrap_or(name))
        })
        .collect();
    strong.sort();
    assert_eq!(strong, common::IMPORTS, "{symbols}");
}
