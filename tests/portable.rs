//! The libraries that packaging/dist ships, one per glibc generation: every import at
//! most GLIBC_2.34 (the .deb's and .rpm's, which needs no libdl.so.2) or GLIBC_2.17
//! (the tarball's default, for older systems), the same hygiene as the native build,
//! the same behaviour on this machine's glibc, and real Debian 11 programs configured
//! by the 2.17 build under Debian 11's own glibc 2.31.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A shipped build of the library: where it is, the newest glibc symbol version it
/// may need, and the libraries it needs.
struct Generation {
    library: PathBuf,
    newest: [u32; 2],
    needed: &'static [&'static str],
}

/// Both shipped builds: for glibc 2.34 and later, where `dlsym` is in libc.so.6, and
/// for 2.17 (RHEL/CentOS 7, Amazon Linux 2) and later, where glibc before 2.34 keeps
/// `dlsym` in libdl.so.2.
fn generations(test: &str) -> Option<[Generation; 2]> {
    Some([
        Generation {
            library: common::portable(test)?,
            newest: [2, 34],
            needed: &["libc.so.6"],
        },
        Generation {
            library: common::portable_glibc_2_17(test)?,
            newest: [2, 17],
            needed: &["libc.so.6", "libdl.so.2"],
        },
    ])
}

/// Debian 11 (glibc 2.31): its C library and two programs that open TCP sockets.
const BULLSEYE: [&str; 8] = [
    "libc6",
    "python3.9-minimal",
    "libpython3.9-minimal",
    "zlib1g",
    "libexpat1",
    "netcat-openbsd",
    "libbsd0",
    "libmd0",
];

fn readelf(args: &[&str], file: &Path) -> String {
    let output = Command::new("readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("run readelf");
    assert!(
        output.status.success(),
        "readelf {args:?} {}",
        file.display()
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The glibc versions (`GLIBC_2.17` as [2, 17]) that `file`'s dynamic symbols name.
fn glibc_versions(file: &Path) -> Vec<(String, Vec<u32>)> {
    readelf(&["--dyn-syms", "-W"], file)
        .split_whitespace()
        .filter_map(|word| {
            let version = word.split("@GLIBC_").nth(1)?;
            let numbers = version.split('.').map(|n| n.parse().expect("number"));
            Some((word.to_string(), numbers.collect()))
        })
        .collect()
}

/// The portable command packaging/dist built beside the library.
fn portable_command(test: &str) -> Option<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    common::dist(test).map(|dir| dir.join(format!("keepalive-{version}")))
}

#[test]
fn shipped_files_need_no_glibc_above_their_generation() {
    let test = "shipped_files_need_no_glibc_above_their_generation";
    let (Some(generations), Some(command)) = (generations(test), portable_command(test)) else {
        return;
    };
    let files = generations
        .map(|g| (g.library, g.newest))
        .into_iter()
        .chain([(command, [2, 17])]);
    for (file, newest) in files {
        let versions = glibc_versions(&file);
        assert!(
            !versions.is_empty(),
            "no versioned imports seen in {}",
            file.display()
        );
        for (symbol, version) in &versions {
            assert!(
                version.as_slice() <= newest.as_slice(),
                "{}: {symbol} needs a glibc newer than {newest:?}",
                file.display()
            );
        }
    }
}

/// The facts tests/hygiene.rs pins for the native build hold for both shipped ones:
/// SONAME, full RELRO, no executable stack, three exports, the same three imports,
/// at most 16 KiB; the 2.34 build needs libc alone, the 2.17 one libdl too.
#[test]
fn shipped_libraries_keep_the_native_builds_hygiene() {
    let Some(generations) = generations("shipped_libraries_keep_the_native_builds_hygiene") else {
        return;
    };
    for generation in generations {
        assert_hygiene(&generation);
    }
}

fn assert_hygiene(generation: &Generation) {
    let library = &generation.library;
    let size = std::fs::metadata(library).unwrap().len();
    assert!(size <= 16 * 1024, "{}: {size} bytes", library.display());
    let dynamic = readelf(&["-dW"], library);
    common::assert_soname_and_bind_now(&dynamic);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| line.split('[').nth(1)?.split(']').next())
        .collect();
    assert_eq!(needed, generation.needed, "{dynamic}");
    let segments = readelf(&["-lW"], library);
    common::assert_relro_and_no_executable_stack(&segments);

    let symbols = readelf(&["--dyn-syms", "-W"], library);
    let mut exported = Vec::new();
    let mut imported = Vec::new();
    for line in symbols.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Num: Value Size Type Bind Vis Ndx Name
        if fields.len() < 8 || fields[3] != "FUNC" {
            continue;
        }
        let name = fields[7].split('@').next().unwrap_or_default();
        if fields[6] == "UND" {
            imported.push(name);
        } else {
            exported.push(name);
        }
    }
    exported.sort();
    imported.sort();
    assert_eq!(exported, ["accept", "accept4", "socket"], "{symbols}");
    assert_eq!(imported, common::IMPORTS, "{symbols}");
}

/// On this machine's current glibc both shipped builds configure every socket the
/// probe makes exactly as the native build does (tests/example.rs).
#[test]
fn shipped_libraries_configure_sockets_on_current_glibc() {
    let Some(generations) = generations("shipped_libraries_configure_sockets_on_current_glibc")
    else {
        return;
    };
    for Generation { library, .. } in generations {
        let output = common::preloaded(common::probe_example(), &common::ALL_TIMERS)
            .env("LD_PRELOAD", &library)
            .output()
            .expect("run probe");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "{}: {stdout}", library.display());
        for family in ["IPv4", "IPv6"] {
            for role in ["listener", "client", "accepted"] {
                assert_eq!(
                    common::probe_row(&stdout, &format!("{family} {role}")),
                    ["on", "61", "11", "7", "30001"],
                    "{}: {family} {role}",
                    library.display()
                );
            }
        }
    }
}

/// Debian 11's userland, unpacked under target/debian/bullseye.
struct Bullseye {
    root: PathBuf,
}

impl Bullseye {
    fn fetch(test: &str) -> Option<Bullseye> {
        let tree = common::debian_packages(test, "bullseye", &BULLSEYE)?;
        Some(Bullseye { root: tree.root })
    }

    /// `program` (a path inside the tree) run by glibc 2.31's own loader with the
    /// tree's libraries, the portable library preloaded and `vars` set.
    fn command(&self, library: &Path, program: &str, vars: &[(&str, &str)]) -> Command {
        let lib = self.root.join("lib/x86_64-linux-gnu");
        let usr_lib = self.root.join("usr/lib/x86_64-linux-gnu");
        let mut command = common::preloaded(lib.join("ld-2.31.so"), vars);
        command
            .env("LD_PRELOAD", library)
            .arg("--library-path")
            .arg(format!("{}:{}", lib.display(), usr_lib.display()))
            .arg(self.root.join(program));
        command
    }
}

/// A Python 3.9 program that never asks for keepalive: a listener, a client connected
/// to it, the accepted socket; it reports the C library it runs on and what the
/// kernel holds for each socket.
const PYTHON: &str = r#"
import os, socket
print("@ libc version=" + os.confstr("CS_GNU_LIBC_VERSION").replace(" ", "-"))
def report(label, s):
    tcp = lambda option: s.getsockopt(socket.IPPROTO_TCP, option)
    print(f"@ {label} keepalive={s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}"
          f" idle={tcp(socket.TCP_KEEPIDLE)} intvl={tcp(socket.TCP_KEEPINTVL)}"
          f" cnt={tcp(socket.TCP_KEEPCNT)} user_timeout={tcp(socket.TCP_USER_TIMEOUT)}")
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
client = socket.create_connection(server.getsockname())
accepted, _ = server.accept()
report("listener", server)
report("client", client)
report("accepted", accepted)
"#;

/// The shipped library for glibc 2.17 and Debian 11's userland, or None (after saying
/// why) when either is missing.
fn library_and_bullseye(test: &str) -> Option<(PathBuf, Bullseye)> {
    Some((common::portable_glibc_2_17(test)?, Bullseye::fetch(test)?))
}

fn run_python(bullseye: &Bullseye, library: &Path, vars: &[(&str, &str)]) -> common::Run {
    let run = common::Run::of(common::output_with_journal_stderr(
        bullseye
            .command(library, "usr/bin/python3.9", vars)
            .args(["-c", PYTHON])
            .env("PYTHONHOME", bullseye.root.join("usr"))
            .stdin(Stdio::null()),
    ));
    assert!(
        run.status_ok,
        "python3.9 failed\n{}\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(
        run.report("libc")["version"],
        "glibc-2.31",
        "{}",
        run.stdout
    );
    run
}

#[test]
fn debian_11_python_gets_keepalive_under_glibc_2_31() {
    let test = "debian_11_python_gets_keepalive_under_glibc_2_31";
    let Some((library, bullseye)) = library_and_bullseye(test) else {
        return;
    };
    let run = run_python(&bullseye, &library, &common::ALL_TIMERS);
    let expected = common::Keepalive::ALL_TIMERS;
    for label in ["listener", "client", "accepted"] {
        assert_eq!(run.keepalive(label), expected, "{label}\n{}", run.stdout);
    }
    assert_eq!(run.shim_lines(), Vec::<&str>::new(), "{}", run.stderr);
}

#[test]
fn debian_11_python_gets_one_warning_for_a_bad_value() {
    let test = "debian_11_python_gets_one_warning_for_a_bad_value";
    let Some((library, bullseye)) = library_and_bullseye(test) else {
        return;
    };
    let run = run_python(
        &bullseye,
        &library,
        &[("KEEPIDLE", "45"), ("KEEPCNT", "3x")],
    );
    run.assert_one_warning_for_keepcnt("3x", "Debian 11's python3.9");
}

/// Kills the child on drop, so a failing assertion leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The connection `child` makes to `listener`; panics if none comes within `timeout`
/// or the child exits first (a library that does not load stops the program).
fn accept_within(
    listener: &std::net::TcpListener,
    timeout: Duration,
    child: &mut Child,
) -> std::net::TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("accept: {err}"),
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the program exited before connecting: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Debian 11's netcat connects to a listener of this test; `ss -tno` shows from
/// outside that its socket has the keepalive timer the variables asked for.
#[test]
fn debian_11_netcat_connection_shows_keepalive_timer() {
    let test = "debian_11_netcat_connection_shows_keepalive_timer";
    if !common::have(test, "ss") {
        return;
    }
    let Some((library, bullseye)) = library_and_bullseye(test) else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port().to_string();
    let vars = [("KEEPIDLE", "45"), ("KEEPINTVL", "5"), ("KEEPCNT", "3")];
    let mut netcat = Killed(
        bullseye
            .command(&library, "bin/nc.openbsd", &vars)
            .args(["127.0.0.1", &port])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start Debian 11's nc"),
    );
    let _accepted = accept_within(&listener, Duration::from_secs(10), &mut netcat.0);
    let timers =
        common::wait_for_connection(&format!("( dport = :{port} )"), Duration::from_secs(10));
    assert_eq!(timers.len(), 1, "nc's connection not seen: {timers:?}");
    let timer = timers[0].expect("no keepalive timer on nc's socket");
    assert!(timer <= Duration::from_secs(45), "{timer:?}");
}

/// The portable command runs on Debian 11's glibc 2.31 and prints the configuration
/// for a service there, naming the library it was given.
#[test]
fn debian_11_runs_the_portable_command() {
    let test = "debian_11_runs_the_portable_command";
    let (Some(library), Some(command)) = (common::portable(test), portable_command(test)) else {
        return;
    };
    let Some(bullseye) = Bullseye::fetch(test) else {
        return;
    };
    let lib = bullseye.root.join("lib/x86_64-linux-gnu");
    let output = Command::new(lib.join("ld-2.31.so"))
        .arg("--library-path")
        .arg(&lib)
        .arg(&command)
        .args(["env", "--idle", "45", "--library"])
        .arg(&library)
        .output()
        .expect("run the portable command");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "export LD_PRELOAD={}\nexport KEEPIDLE=45\n",
            library.display()
        )
    );
}
