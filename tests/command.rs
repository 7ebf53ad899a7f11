//! The `keepalive` command, run from outside as an operator runs it: real clients and
//! servers seen with `ss -tno`, real static, musl, 32-bit, Go, set-ID, file-capability
//! and script programs, and systemd units checked by `systemd-analyze verify`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::net::Proc;
use common::{have, keepalive, skip, wait_for_connection};

const IDLE_S: u64 = 45;
const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// The command with a clean environment: none of the library's variables, no
/// LD_PRELOAD and no KEEPALIVE_LIBRARY from the developer's shell.
fn cli() -> Command {
    let mut command = Command::new(keepalive());
    for name in common::VARIABLES {
        command.env_remove(name);
    }
    command
        .env_remove("LD_PRELOAD")
        .env_remove("KEEPALIVE_LIBRARY");
    command
}

fn output(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .stdin(Stdio::null())
        .output()
        .expect("run keepalive");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("command")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Asserts that every connection ss finds for `filter` carries a keepalive timer of
/// at most IDLE_S, and not far below it (the connections are seconds old).
fn assert_timers(what: &str, filter: &str, expected: usize) {
    let deadline = std::time::Instant::now() + CONNECT_WAIT;
    let mut timers = wait_for_connection(filter, CONNECT_WAIT);
    while timers.len() < expected && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        timers = common::ss_keepalive(filter);
    }
    assert_eq!(timers.len(), expected, "{what}: connections for {filter}");
    for timer in timers {
        let timer =
            timer.unwrap_or_else(|| panic!("{what}: a connection without a keepalive timer"));
        assert!(
            timer <= Duration::from_secs(IDLE_S) && timer >= Duration::from_secs(IDLE_S - 20),
            "{what}: keepalive timer {timer:?}, --idle {IDLE_S}s"
        );
    }
}

/// `keepalive run` on a python3 server and on python3, node and perl clients: every
/// end of every connection has the timer asked for, seen by ss.
#[test]
fn run_configures_real_clients_and_servers() {
    let test = "run_configures_real_clients_and_servers";
    if !["ss", "python3", "node", "perl"]
        .iter()
        .all(|p| have(test, p))
    {
        return;
    }
    let idle = format!("{IDLE_S}s");
    let port = common::free_port();
    let server = format!(
        "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('127.0.0.1',{port}))\ns.listen(8)\nprint('listening',flush=True)\nheld=[]\n\
         while True: held.append(s.accept())\n"
    );
    let mut server = Proc::spawn(
        cli()
            .args(["run", "--idle", &idle, "--interval", "5s", "--"])
            .args(["python3", "-c", &server]),
    );
    server
        .line("listening", CONNECT_WAIT)
        .expect("the python3 server never listened");

    let clients = [
        (
            "python3",
            vec![
                "-c".to_string(),
                format!(
                    "import socket,time\nc=socket.create_connection(('127.0.0.1',{port}))\ntime.sleep(60)"
                ),
            ],
        ),
        (
            "node",
            vec![
                "-e".to_string(),
                format!("require('net').connect({port},'127.0.0.1');setTimeout(()=>{{}},60000)"),
            ],
        ),
        (
            "perl",
            vec![
                "-MIO::Socket::INET".to_string(),
                "-e".to_string(),
                format!("$c=IO::Socket::INET->new('127.0.0.1:{port}') or die; sleep 60"),
            ],
        ),
    ];
    let _running: Vec<Proc> = clients
        .iter()
        .map(|(program, args)| {
            Proc::spawn(
                cli()
                    .args(["run", "--idle", &idle, "--"])
                    .arg(program)
                    .args(args),
            )
        })
        .collect();
    assert_timers("clients", &format!("( dport = :{port} )"), 3);
    assert_timers("python3 server", &format!("( sport = :{port} )"), 3);
}

/// Options given, variables inherited, and words the refusal must contain.
type BadCase = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// A bad option, an unknown option, a missing COMMAND or a bad inherited variable:
/// one line naming what was typed and what is accepted, in the library's words, exit
/// status 2, and the program — which would create a file — never starts.
#[test]
fn bad_input_never_starts_the_program() {
    let dir = scratch("bad_input");
    let marker = dir.join("started");
    let touch = ["--", "touch", marker.to_str().unwrap()];
    let cases: [BadCase; 8] = [
        (
            &["--idle", "40000"],
            &[],
            &["'40000'", "--idle", "whole seconds from 1 to 32767"],
        ),
        (
            &["--idle", "1500ms"],
            &[],
            &["'1500ms'", "whole seconds from 1 to 32767"],
        ),
        (
            &["--count", "0"],
            &[],
            &["'0'", "--count", "a whole number of probes from 1 to 127"],
        ),
        (
            &["--user-timeout", "120"],
            &[],
            &["'120'", "120s or 120000ms", "whole milliseconds"],
        ),
        (&["--mode", "maybe"], &[], &["'maybe'", "on, off or skip"]),
        (&["--idel", "60"], &[], &["'--idel'"]),
        (
            &[],
            &[("KEEPIDLE", "abc")],
            &["KEEPIDLE='abc'", "whole seconds from 1 to 32767"],
        ),
        (
            &[],
            &[("KEEPALIVE", "yes")],
            &["KEEPALIVE='yes'", "on, off or skip"],
        ),
    ];
    for (options, vars, expected) in cases {
        let (code, stdout, stderr) = output(
            cli()
                .arg("run")
                .args(options)
                .args(touch)
                .envs(vars.iter().copied()),
        );
        let what = format!("run {options:?} with {vars:?}");
        assert_eq!(code, 2, "{what}: {stderr}");
        assert_eq!(stdout, "", "{what}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        for word in expected {
            assert!(stderr.contains(word), "{what}: {word:?} not in {stderr:?}");
        }
        assert!(!marker.exists(), "{what}: the program ran");
    }
    // An option replaces a bad inherited value instead of tripping over it.
    let (code, _, stderr) = output(
        cli()
            .args(["run", "--idle", "60"])
            .args(touch)
            .env("KEEPIDLE", "abc"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(marker.exists());

    let (code, _, stderr) = output(cli().arg("run"));
    assert_eq!((code, stderr.lines().count()), (2, 1), "{stderr}");
    assert!(stderr.contains("COMMAND"), "{stderr}");
}

/// `run` executes COMMAND in its own place: the same process id, COMMAND's exit
/// status, the variables set and LD_PRELOAD kept with the library once.
#[test]
fn run_execs_in_place() {
    let mut command = cli();
    command
        .args([
            "run",
            "--idle",
            "2m",
            "--user-timeout",
            "90s",
            "--mode",
            "skip",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "echo pid=$$; env | grep -E '^(KEEP|TCP_USER|LD_PRELOAD)' | sort; exit 7",
        ])
        .env(
            "LD_PRELOAD",
            format!("/nonexistent/a.so:{}", common::shim().display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawn keepalive run");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let preload = format!("LD_PRELOAD=/nonexistent/a.so {}", common::shim().display());
    assert_eq!(
        lines,
        [
            format!("pid={pid}").as_str(),
            "KEEPALIVE=skip",
            "KEEPIDLE=120",
            preload.as_str(),
            "TCP_USER_TIMEOUT=90000",
        ]
    );
}

/// A program built from tests/support/sockopt.c with `compiler` and `flags`, or None
/// after saying why.
fn sockopt(test: &str, compiler: &str, flags: &[&str], name: &str) -> Option<PathBuf> {
    if !have(test, compiler) {
        return None;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sockopt.c");
    let output = scratch(name).join(name);
    let built = Command::new(compiler)
        .args(flags)
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&output)
        .arg(&source)
        .output()
        .expect("run compiler");
    if !built.status.success() {
        skip(
            test,
            &format!(
                "{compiler} {flags:?} cannot build here: {}",
                String::from_utf8_lossy(&built.stderr).trim()
            ),
        );
        return None;
    }
    Some(output)
}

/// What `check --json` says of `program`: (exit status, "kind" field, the JSON).
fn check(program: &Path) -> (i32, String, String) {
    let (code, json, stderr) = output(cli().args(["check", "--json"]).arg(program));
    // Python's json module reads it: the hand-written JSON is valid, and its fields
    // agree with the exit status and with the one-line form.
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import json,sys; d=json.load(sys.stdin); print(d['kind'], d['reachable'], d['program'])",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let parsed = python.wait_with_output().unwrap();
    assert!(parsed.status.success(), "not JSON: {json:?} {stderr:?}");
    let parsed = String::from_utf8_lossy(&parsed.stdout).into_owned();
    let mut fields = parsed.trim().splitn(3, ' ');
    let kind = fields.next().unwrap().to_string();
    let reachable = fields.next() == Some("True");
    assert_eq!(reachable, code == 0, "{json}");
    let (line_code, line, _) = output(cli().arg("check").arg(program));
    let verdict = if reachable {
        "reachable: "
    } else {
        "not reachable: "
    };
    assert_eq!(line_code, code);
    assert!(
        line.starts_with(verdict) && line.lines().count() == 1,
        "{line}"
    );
    assert!(line.contains(fields.next().unwrap()), "{line} vs {json}");
    // The way out is named where there is one: the kernel route reaches what the
    // loader does not (issue 22).
    let kernel_reaches = ["static", "go", "setuid", "setgid", "capabilities"];
    if kernel_reaches.contains(&kind.as_str()) {
        assert!(line.contains("`keepalive run --kernel`"), "{line}");
    }
    (code, kind, json)
}

/// What the program prints when `keepalive run --idle 45s` starts it: the settings
/// its socket got.
fn run_sockopt(program: &Path) -> String {
    let (code, stdout, stderr) = output(cli().args(["run", "--idle", "45s", "--"]).arg(program));
    assert_eq!(code, 0, "{}: {stderr}", program.display());
    stdout.trim().to_string()
}

const CONFIGURED: &str = "keepalive=1 idle=45";

/// glibc and musl programs: `check` says reachable, and `run` configures their socket.
#[test]
fn check_and_run_agree_on_glibc_and_musl_programs() {
    let test = "check_and_run_agree_on_glibc_and_musl_programs";
    for (compiler, kind) in [("cc", "glibc"), ("musl-gcc", "musl")] {
        let Some(program) = sockopt(test, compiler, &[], &format!("sockopt-{kind}")) else {
            continue;
        };
        let (code, found, json) = check(&program);
        assert_eq!((code, found.as_str()), (0, kind), "{json}");
        assert!(json.contains("\"reachable\":true"), "{json}");
        assert_eq!(run_sockopt(&program), CONFIGURED, "{kind}");
    }
}

/// Statically linked and 32-bit programs: `check` says why not (exit 1), `run`
/// warns and still runs them — and their socket is indeed untouched — and `run
/// --strict` does not start them.
#[test]
fn check_and_run_agree_on_static_and_32_bit_programs() {
    let test = "check_and_run_agree_on_static_and_32_bit_programs";
    for (flags, kind, name) in [
        (&["-static"][..], "static", "sockopt-static"),
        (&["-m32"][..], "class", "sockopt-m32"),
    ] {
        let Some(program) = sockopt(test, "cc", flags, name) else {
            continue;
        };
        let (code, found, json) = check(&program);
        assert_eq!((code, found.as_str()), (1, kind), "{json}");
        let (code, stdout, stderr) =
            output(cli().args(["run", "--idle", "45s", "--"]).arg(&program));
        assert_eq!(code, 0, "{kind}: {stderr}");
        assert!(stdout.starts_with("keepalive=0 "), "{kind}: {stdout}");
        let warning = stderr
            .lines()
            .find(|line| line.starts_with("keepalive: warning: preloading cannot reach"))
            .unwrap_or_else(|| panic!("{kind}: no warning in {stderr:?}"));
        assert!(
            warning.contains(&program.display().to_string()),
            "{warning}"
        );
        let (code, stdout, _) = output(cli().args(["run", "--strict", "--"]).arg(&program));
        assert_eq!(
            (code, stdout.as_str()),
            (1, ""),
            "{kind}: --strict started it"
        );
    }
}

/// tests/support/go built with Debian's golang-go for `goarch` (Go cross-compiles
/// without any other toolchain), or None after saying why.
fn go_program(test: &str, goarch: &str) -> Option<PathBuf> {
    if !have(test, "go") {
        return None;
    }
    let dir = scratch(&format!("go-{goarch}"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/go/main.go");
    let program = dir.join("gosock");
    common::stdout_of(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&program)
            .arg(&source)
            .env("GOARCH", goarch)
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("path"))
            .env("HOME", &dir)
            .env("GO111MODULE", "off"),
    );
    Some(program)
}

/// A real Go program: `check` says Go, and the socket Go's net package creates is
/// indeed not configured by `run`.
#[test]
fn check_and_run_agree_on_a_go_program() {
    let Some(program) = go_program("check_and_run_agree_on_a_go_program", "amd64") else {
        return;
    };
    let (code, found, json) = check(&program);
    assert_eq!((code, found.as_str()), (1, "go"), "{json}");
    let (code, stdout, stderr) = output(cli().args(["run", "--idle", "45s", "--"]).arg(&program));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("keepalive=0 "), "{stdout}");
}

/// A real program for another architecture, arm64: `check` names both architectures,
/// and `run --strict` does not start it.
#[test]
fn check_refuses_a_foreign_architecture() {
    let Some(program) = go_program("check_refuses_a_foreign_architecture", "arm64") else {
        return;
    };
    let (code, found, json) = check(&program);
    assert_eq!((code, found.as_str()), (1, "machine"), "{json}");
    assert!(
        json.contains("built for arm64 (aarch64); the library is for x86-64"),
        "{json}"
    );
    let (code, stdout, stderr) = output(cli().args(["run", "--strict", "--"]).arg(&program));
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(
        stderr.starts_with("keepalive: refused: preloading cannot reach"),
        "{stderr}"
    );
}

/// A directory under the system's temporary directory that any user can read,
/// removed when dropped.
struct PublicDir(PathBuf);

impl PublicDir {
    fn new(name: &str) -> PublicDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("keepalive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create a public directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        PublicDir(dir)
    }
}

impl Drop for PublicDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Set-user-ID, set-group-ID and file-capability copies of a glibc program (owned by
/// root). `check` says secure execution. Run by another user (nobody, through
/// setpriv) the library indeed does not reach them while it reaches the plain copy,
/// and `keepalive run` warns; run by root, their owner, it does, and `run` says
/// nothing. The files sit in a directory nobody can read, with a copy of the command
/// and the library beside it.
#[test]
fn check_and_run_agree_on_setuid_and_capability_programs() {
    let test = "check_and_run_agree_on_setuid_and_capability_programs";
    if !have(test, "setpriv") || !have(test, "setcap") {
        return;
    }
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "needs root to make set-user-ID and capability copies");
        return;
    }
    let Some(built) = sockopt(test, "cc", &[], "sockopt-secure") else {
        return;
    };
    let dir = PublicDir::new("secure");
    let copy = |from: &Path, name: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.0.join(name);
        std::fs::copy(from, &path).expect("copy");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let command = copy(keepalive(), "keepalive", 0o755);
    copy(common::shim(), "libkeepalive.so", 0o644);
    let plain = copy(&built, "plain", 0o755);
    let setuid = copy(&built, "setuid", 0o4755);
    let setgid = copy(&built, "setgid", 0o2755);
    let capable = copy(&built, "capable", 0o755);
    let status = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(&capable)
        .status()
        .unwrap();
    assert!(status.success(), "setcap");

    let nobody = |program: &Path, run: bool| {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        if run {
            command
                .arg(dir.0.join("keepalive"))
                .args(["run", "--idle", "45s", "--"]);
        } else {
            command
                .env("LD_PRELOAD", dir.0.join("libkeepalive.so"))
                .env("KEEPIDLE", "45");
        }
        let (_, stdout, stderr) = output(command.arg(program));
        (stdout.trim().to_string(), stderr)
    };
    assert_eq!(
        nobody(&plain, false).0,
        CONFIGURED,
        "the plain copy, as nobody"
    );
    assert_eq!(
        nobody(&plain, true).0,
        CONFIGURED,
        "the plain copy, run as nobody"
    );
    for (program, kind) in [
        (&setuid, "setuid"),
        (&setgid, "setgid"),
        (&capable, "capabilities"),
    ] {
        let (code, found, json) = check(program);
        assert_eq!((code, found.as_str()), (1, kind), "{json}");
        let (stdout, _) = nobody(program, false);
        assert!(
            stdout.starts_with("keepalive=0 "),
            "{kind} as nobody: {stdout}"
        );
        let (stdout, stderr) = nobody(program, true);
        assert!(
            stdout.starts_with("keepalive=0 "),
            "{kind} run as nobody: {stdout}"
        );
        assert!(
            stderr.starts_with("keepalive: warning: preloading cannot reach"),
            "{kind} run as nobody: {stderr}"
        );
        let (code, stdout, stderr) = output(
            Command::new(&command)
                .args(["run", "--idle", "45s", "--"])
                .arg(program),
        );
        assert_eq!((code, stdout.trim()), (0, CONFIGURED), "{kind} run by root");
        assert_eq!(stderr, "", "{kind} run by root");
    }
}

/// Scripts: `check` follows `#!` and `/usr/bin/env NAME` to the program the kernel
/// runs, and `run` on the script configures the interpreter's sockets.
#[test]
fn check_follows_scripts_to_their_interpreter() {
    let test = "check_follows_scripts_to_their_interpreter";
    if !have(test, "perl") {
        return;
    }
    let dir = scratch("scripts");
    let perl = Command::new("sh")
        .args(["-c", "command -v perl"])
        .output()
        .unwrap();
    let perl = String::from_utf8_lossy(&perl.stdout).trim().to_string();
    let perl_real = std::fs::canonicalize(&perl).unwrap();
    let body = "use Socket; socket(my $s, PF_INET, SOCK_STREAM, 0) or die;\n\
                my $on = unpack('i', getsockopt($s, SOL_SOCKET, SO_KEEPALIVE));\n\
                # IPPROTO_TCP = 6, TCP_KEEPIDLE = 4 (netinet/tcp.h)\n\
                my $idle = unpack('i', getsockopt($s, 6, 4));\n\
                print \"keepalive=$on idle=$idle\\n\";\n";
    let by_env = dir.join("by-env.pl");
    let direct = dir.join("direct.pl");
    let nested = dir.join("nested.sh");
    std::fs::write(&by_env, format!("#!/usr/bin/env perl\n{body}")).unwrap();
    std::fs::write(&direct, format!("#!{}\n{body}", perl_real.display())).unwrap();
    std::fs::write(
        &nested,
        format!("#!/bin/sh\nexec {} \"$@\"\n", by_env.display()),
    )
    .unwrap();
    let not_a_program = dir.join("data.txt");
    std::fs::write(&not_a_program, "just text\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for file in [&by_env, &direct, &nested, &not_a_program] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (code, kind, json) = check(&by_env);
    assert_eq!((code, kind.as_str()), (0, "glibc"), "{json}");
    let chain = format!(
        "\"program\":\"{perl}\",\"scripts\":[\"{}\"]",
        by_env.display()
    );
    assert!(json.contains(&chain), "{json}");
    assert_eq!(run_sockopt(&by_env), CONFIGURED);
    let (code, kind, json) = check(&direct);
    assert_eq!((code, kind.as_str()), (0, "glibc"), "{json}");
    assert!(
        json.contains(&format!("\"program\":\"{}\"", perl_real.display())),
        "{json}"
    );
    assert_eq!(run_sockopt(&nested), CONFIGURED);

    let (code, stdout, stderr) = output(cli().arg("check").arg(&not_a_program));
    assert_eq!(
        (code, stdout.as_str(), stderr.lines().count()),
        (2, "", 1),
        "{stderr}"
    );
    assert!(
        stderr.contains("not an ELF program or #! script"),
        "{stderr}"
    );
    let orphan = dir.join("orphan.sh");
    std::fs::write(&orphan, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&orphan, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, stderr) = output(cli().arg("check").arg(&orphan));
    assert_eq!((code, stderr.lines().count()), (2, 1), "{stderr}");
    let named = format!(
        "'{}': #! interpreter '/nonexistent/interpreter'",
        orphan.display()
    );
    assert!(stderr.contains(&named), "{stderr}");
    let (code, _, stderr) = output(cli().args(["check", "no-such-program-here"]));
    assert_eq!(code, 127, "{stderr}");
    assert!(
        stderr.contains("'no-such-program-here': not found in PATH"),
        "{stderr}"
    );
}

/// Where the library is inside a `--root` tree: the tarball's place, one of those
/// `enable --root` looks at.
const ROOT_LIBRARY: &str = "/usr/local/lib/libkeepalive.so.0";

/// A scratch tree with the library at [`ROOT_LIBRARY`].
fn root_with_library(name: &str) -> PathBuf {
    let root = scratch(name);
    let library = root.join(ROOT_LIBRARY.trim_start_matches('/'));
    std::fs::create_dir_all(library.parent().unwrap()).unwrap();
    std::fs::copy(common::shim(), library).unwrap();
    root
}

/// A unit tree under `--root`: app.service sets its own LD_PRELOAD and KEEPCNT, and an
/// override.conf drop-in adds a variable.
fn unit_root(name: &str) -> PathBuf {
    let root = root_with_library(name);
    let system = root.join("etc/systemd/system");
    std::fs::create_dir_all(system.join("app.service.d")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/sleep", root.join("usr/bin/sleep")).unwrap();
    std::fs::write(
        system.join("app.service"),
        "[Unit]\nDescription=an app\n\n[Service]\n\
         Environment=\"LD_PRELOAD=/usr/lib/libother.so\" KEEPCNT=4\n\
         ExecStart=/usr/bin/sleep infinity\n",
    )
    .unwrap();
    std::fs::write(
        system.join("app.service.d/override.conf"),
        "[Service]\nEnvironment=OTHER=1\n",
    )
    .unwrap();
    root
}

/// `systemd-analyze verify` on the unit with its drop-ins, read from the root's unit
/// directory and then the host's (for the targets a service depends on). It exits 0
/// even for lines it ignores, so its output must be empty too.
fn verify(root: &Path, unit: &str) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", unit])
        .env(
            "SYSTEMD_UNIT_PATH",
            format!("{}:", root.join("etc/systemd/system").display()),
        )
        .output()
        .expect("run systemd-analyze");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {unit}:\n{said}"
    );
}

/// The `Environment=` assignments of a drop-in, unquoted (each line here holds one).
fn assignments(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("Environment=\""))
        .map(|rest| rest.trim_end_matches('"').to_string())
        .collect()
}

#[test]
fn enable_and_disable_under_root() {
    let test = "enable_and_disable_under_root";
    if !have(test, "systemd-analyze") {
        return;
    }
    let root = unit_root("enable");
    let drop_in = root.join("etc/systemd/system/app.service.d/zz-keepalive.conf");
    let enable = || {
        output(
            cli()
                .arg("enable")
                .arg("app")
                .arg("--root")
                .arg(&root)
                .args(["--idle", "1m", "--user-timeout", "90s"]),
        )
    };
    let (code, stdout, stderr) = enable();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote "), "{stdout}");
    let text = std::fs::read_to_string(&drop_in).expect("drop-in written");
    assert_eq!(
        assignments(&text),
        [
            format!("LD_PRELOAD=/usr/lib/libother.so {ROOT_LIBRARY}"),
            "KEEPIDLE=60".to_string(),
            "TCP_USER_TIMEOUT=90000".to_string(),
        ]
    );
    verify(&root, "app.service");

    // Twice gives the same file.
    let (code, stdout, _) = enable();
    assert_eq!(code, 0);
    assert!(stdout.contains("up to date"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&drop_in).unwrap(), text);

    // check --unit holds the drop-in to the unit: the unit's own LD_PRELOAD edited
    // since is drift, until enable copies it again.
    let check = || output(cli().args(["check", "--unit", "app", "--root"]).arg(&root));
    let (code, stdout, _) = check();
    assert_eq!(code, 0, "{stdout}");
    let unit = root.join("etc/systemd/system/app.service");
    let original = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, original.replace("libother.so", "libnewer.so")).unwrap();
    let (code, stdout, _) = check();
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("drifted") && stdout.contains("LD_PRELOAD=/usr/lib/libother.so "),
        "{stdout}"
    );
    std::fs::write(&unit, original).unwrap();

    // disable removes that file only.
    let (code, _, stderr) = output(cli().args(["disable", "app.service", "--root"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    assert!(!drop_in.exists());
    assert!(drop_in.with_file_name("override.conf").exists());
    verify(&root, "app.service");

    // A file of the same name it did not write is left alone.
    std::fs::write(&drop_in, "[Service]\nEnvironment=MINE=1\n").unwrap();
    let (code, _, stderr) = output(cli().args(["disable", "app", "--root"]).arg(&root));
    assert_eq!(code, 1, "{stderr}");
    assert!(drop_in.exists(), "removed a file enable did not write");
}

/// What enable refuses: names with a path, units that do not exist, a bad value in
/// the unit, and an EnvironmentFile= whose LD_PRELOAD would silently replace the
/// drop-in's. Nothing is written for any of them.
#[test]
fn enable_refuses_without_writing() {
    let root = unit_root("enable_refuses");
    let system = root.join("etc/systemd/system");
    let written = || {
        system.join("app.service.d/zz-keepalive.conf").exists()
            || system.join("nope.service.d").exists()
    };
    let enable = |unit: &str| output(cli().args(["enable", unit, "--root"]).arg(&root));
    for (unit, words) in [
        ("../app.service", "not a unit name"),
        ("nope", "no unit nope.service in"),
        ("app.socket", "only a .service"),
    ] {
        let (code, _, stderr) = enable(unit);
        assert_eq!((code, stderr.lines().count()), (2, 1), "{unit}: {stderr}");
        assert!(stderr.contains(words), "{unit}: {stderr}");
        assert!(!written(), "{unit}");
    }
    std::fs::write(
        system.join("app.service.d/bad.conf"),
        "[Service]\nEnvironment=KEEPIDLE=0\n",
    )
    .unwrap();
    let (code, _, stderr) = enable("app");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("KEEPIDLE='0' in app.service: expected whole seconds from 1 to 32767"),
        "{stderr}"
    );
    assert!(!written());
    std::fs::remove_file(system.join("app.service.d/bad.conf")).unwrap();

    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    std::fs::write(
        root.join("etc/default/app"),
        "LD_PRELOAD=/usr/lib/libother.so\n",
    )
    .unwrap();
    std::fs::write(
        system.join("app.service.d/env.conf"),
        "[Service]\nEnvironmentFile=-/etc/default/app\n",
    )
    .unwrap();
    let (code, _, stderr) = enable("app");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("EnvironmentFile=/etc/default/app sets LD_PRELOAD"),
        "{stderr}"
    );
    assert!(!written());

    // An environment file's KEEPIDLE conflicts only with an --idle, and is checked.
    std::fs::write(root.join("etc/default/app"), "KEEPIDLE=30\n").unwrap();
    let (code, _, stderr) = output(
        cli()
            .args(["enable", "app", "--idle", "60", "--root"])
            .arg(&root),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("EnvironmentFile=/etc/default/app sets KEEPIDLE"),
        "{stderr}"
    );
    assert!(!written());
    std::fs::write(root.join("etc/default/app"), "KEEPIDLE=40000\n").unwrap();
    let (code, _, stderr) = enable("app");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("KEEPIDLE='40000'"), "{stderr}");
    assert!(!written());
    std::fs::remove_file(root.join("etc/default/app")).unwrap();

    // A drop-in applied after the one enable writes would replace its LD_PRELOAD.
    std::fs::write(
        system.join("app.service.d/zzz-late.conf"),
        "[Service]\nEnvironment=LD_PRELOAD=/usr/lib/libother.so\n",
    )
    .unwrap();
    let (code, _, stderr) = enable("app");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("zzz-late.conf sets LD_PRELOAD after zz-keepalive.conf"),
        "{stderr}"
    );
    assert!(!written());
}

/// A unit whose own name sorts after the drop-in's is still read as the unit, not as
/// a drop-in applied after it.
#[test]
fn enable_a_unit_named_after_the_drop_in() {
    let root = unit_root("enable_zzz");
    let system = root.join("etc/systemd/system");
    std::fs::rename(system.join("app.service"), system.join("zzz.service")).unwrap();
    let (code, _, stderr) = output(cli().args(["enable", "zzz", "--root"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(system.join("zzz.service.d/zz-keepalive.conf")).unwrap();
    assert_eq!(
        assignments(&text),
        [format!("LD_PRELOAD=/usr/lib/libother.so {ROOT_LIBRARY}")]
    );
}

/// `enable` checks the unit's ExecStart program under the root and warns as `run`
/// does, and still writes the drop-in.
#[test]
fn enable_warns_about_a_static_exec_start() {
    let test = "enable_warns_about_a_static_exec_start";
    let Some(program) = sockopt(test, "cc", &["-static"], "sockopt-static-unit") else {
        return;
    };
    let root = unit_root("enable_static");
    std::fs::copy(&program, root.join("usr/bin/static-app")).unwrap();
    let unit = root.join("etc/systemd/system/app.service");
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/bin/sleep infinity", "/usr/bin/static-app");
    std::fs::write(&unit, text).unwrap();
    let (code, _, stderr) = output(cli().args(["enable", "app", "--root"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "keepalive: warning: preloading cannot reach /usr/bin/static-app: statically linked"
        ),
        "{stderr}"
    );
}

/// `env` prints what `run` would set; the man page comes from the same definition as
/// --help and is valid roff.
#[test]
fn env_help_and_man_page() {
    let test = "env_help_and_man_page";
    let (code, stdout, _) =
        output(cli().args(["env", "--idle", "90s", "--interval", "10", "--count", "5"]));
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        format!(
            "export LD_PRELOAD={}\nexport KEEPIDLE=90\nexport KEEPINTVL=10\n\
             export KEEPCNT=5\n",
            common::shim().display()
        )
    );
    let (code, stdout, _) =
        output(cli().args(["env", "--library", "/nonexistent/libkeepalive.so"]));
    assert_eq!((code, stdout.as_str()), (2, ""));

    let (_, help, _) = output(cli().args(["run", "--help"]));
    // What stays running: the exec in place is not the whole story with --kernel.
    let said = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains("executes COMMAND in place: no extra process")
            && said.contains("`keepalive` stays as COMMAND's parent")
            && said.contains("`keepalive enable --kernel UNIT`"),
        "{help}"
    );
    let (code, man, _) = output(cli().args(["generate", "man"]));
    assert_eq!(code, 0);
    for option in [
        "--idle",
        "--interval",
        "--count",
        "--user-timeout",
        "--mode",
        "--library",
        "--strict",
    ] {
        assert!(help.contains(option), "run --help lacks {option}");
        assert!(
            man.contains(&option.replace('-', "\\-")),
            "keepalive(1) lacks {option}"
        );
    }
    assert!(
        man.contains("[\\fB\\-\\-idle\\fR \\fIDURATION\\fR]"),
        "the SYNOPSIS names --idle's value"
    );
    for sub in [
        "run", "check", "enable", "disable", "env", "attach", "detach", "audit",
    ] {
        assert!(
            man.contains(&format!(".SH \"KEEPALIVE {}\"", sub.to_uppercase())),
            "no section for {sub}"
        );
    }
    for section in ["ENVIRONMENT", "EXIT STATUS", "FILES", "EXAMPLES"] {
        assert!(
            man.contains(&format!(".SH \"{section}\"")),
            "keepalive(1) has no {section}"
        );
    }
    if have(test, "mandoc") {
        let mut lint = Command::new("mandoc")
            .args(["-Tlint", "-Werror"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        lint.stdin
            .take()
            .unwrap()
            .write_all(man.as_bytes())
            .unwrap();
        let out = lint.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "mandoc: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let (code, bash, _) = output(cli().args(["generate", "completions", "bash"]));
    assert_eq!(code, 0);
    assert!(bash.contains("--user-timeout"));
}

/// The library is found beside the command in each install layout, and a clear line
/// names the places looked at when it is nowhere.
#[test]
fn library_is_found_beside_the_command() {
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    for (layout, library) in [
        ("bin", "bin/libkeepalive.so".to_string()),
        ("bin", format!("lib/{triplet}/libkeepalive.so.0")),
        ("bin", "lib64/libkeepalive.so.0".to_string()),
        ("bin", "lib/libkeepalive.so.0".to_string()),
    ] {
        let prefix = scratch("layout");
        std::fs::create_dir_all(prefix.join(layout)).unwrap();
        let command = prefix.join(layout).join("keepalive");
        std::fs::copy(keepalive(), &command).unwrap();
        let (code, _, stderr) = output(Command::new(&command).arg("env"));
        assert_eq!(code, 2, "{library}: {stderr}");
        for place in [
            "bin/libkeepalive.so",
            "lib64/libkeepalive.so.0",
            "lib/libkeepalive.so.0",
        ] {
            assert!(
                stderr.contains(&prefix.join(place).display().to_string()),
                "{stderr}"
            );
        }
        let path = prefix.join(&library);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(common::shim(), &path).unwrap();
        let (code, stdout, stderr) = output(Command::new(&command).arg("env"));
        assert_eq!(code, 0, "{library}: {stderr}");
        assert_eq!(
            stdout,
            format!("export LD_PRELOAD={}\n", path.display()),
            "{library}"
        );
    }
    // KEEPALIVE_LIBRARY overrides the search, made absolute, and --library overrides
    // it; a named file that does not exist is an error, not a fallback.
    let shim = common::shim();
    let (dir, file) = (shim.parent().unwrap(), shim.file_name().unwrap());
    let (code, stdout, stderr) = output(
        Command::new(keepalive())
            .arg("env")
            .env("KEEPALIVE_LIBRARY", file)
            .current_dir(dir),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("export LD_PRELOAD={}\n", shim.display()));
    let (code, _, stderr) = output(
        Command::new(keepalive())
            .args(["env", "--library", "/nonexistent/libkeepalive.so"])
            .env("KEEPALIVE_LIBRARY", shim),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--library '/nonexistent/libkeepalive.so': no such library file"),
        "{stderr}"
    );
}

/// `--user` writes beside the user's own units ($XDG_CONFIG_HOME/systemd/user), found
/// under --root as well.
#[test]
fn enable_and_disable_a_user_unit() {
    let root = root_with_library("enable_user");
    let config = Path::new("/home/someone/.config");
    let units = root.join("home/someone/.config/systemd/user");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("agent.service"),
        "[Service]\nExecStart=/usr/bin/sleep infinity\n",
    )
    .unwrap();
    let run = |verb: &str| {
        output(
            cli()
                .args([verb, "agent", "--user", "--root"])
                .arg(&root)
                .env("XDG_CONFIG_HOME", config),
        )
    };
    let (code, _, stderr) = run("enable");
    assert_eq!(code, 0, "{stderr}");
    let drop_in = units.join("agent.service.d/zz-keepalive.conf");
    let text = std::fs::read_to_string(&drop_in).expect("user drop-in written");
    assert_eq!(assignments(&text), [format!("LD_PRELOAD={ROOT_LIBRARY}")]);
    assert!(
        !root.join("etc/systemd/system/agent.service.d").exists(),
        "wrote a system drop-in for --user"
    );
    let (code, _, stderr) = run("disable");
    assert_eq!(code, 0, "{stderr}");
    assert!(!drop_in.exists() && !drop_in.parent().unwrap().exists());
}

/// A specifier in the unit's LD_PRELOAD (`%N`, the unit's name) is copied as it is,
/// for systemd to expand, and the drop-in still passes `systemd-analyze verify`.
#[test]
fn enable_keeps_specifiers_in_the_units_preload() {
    let test = "enable_keeps_specifiers_in_the_units_preload";
    if !have(test, "systemd-analyze") {
        return;
    }
    let root = unit_root("enable_specifier");
    let unit = root.join("etc/systemd/system/app.service");
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/lib/libother.so", "/opt/%N/libother.so");
    std::fs::write(&unit, text).unwrap();
    let (code, _, stderr) = output(cli().args(["enable", "app", "--root"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    let drop_in = root.join("etc/systemd/system/app.service.d/zz-keepalive.conf");
    assert_eq!(
        assignments(&std::fs::read_to_string(drop_in).unwrap()),
        [format!("LD_PRELOAD=/opt/%N/libother.so {ROOT_LIBRARY}")]
    );
    verify(&root, "app.service");
}

/// The signal state COMMAND starts with is the one `run` was started with, as if run
/// had not been there: an ignored SIGPIPE (systemd's IgnoreSIGPIPE=, on by default),
/// an ignored SIGHUP (nohup) and a blocked SIGUSR1 stay, although Rust's runtime
/// ignores SIGPIPE in the command itself; and a default SIGPIPE stays default.
#[test]
fn run_hands_on_the_signal_state() {
    use std::os::unix::process::CommandExt;
    let signal_lines = |command: &mut Command, inherit_ignored: bool| {
        command.args(["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]);
        if inherit_ignored {
            // SAFETY: signal(2), sigemptyset(3), sigaddset(3) and sigprocmask(2) are
            // async-signal-safe, as a pre_exec hook requires.
            unsafe {
                command.pre_exec(|| {
                    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                    libc::signal(libc::SIGHUP, libc::SIG_IGN);
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGUSR1);
                    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                    Ok(())
                });
            }
        }
        let (code, stdout, stderr) = output(command);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    for inherit_ignored in [true, false] {
        let direct = signal_lines(&mut Command::new("env"), inherit_ignored);
        let through_run = signal_lines(cli().args(["run", "--"]), inherit_ignored);
        assert_eq!(
            through_run, direct,
            "ignored and blocked: {inherit_ignored}"
        );
    }
}

/// A reader that has gone away is one line and exit status 1, not a panic (the
/// command's own SIGPIPE is ignored by Rust's runtime, so a write fails with EPIPE).
#[test]
fn output_to_a_closed_pipe_is_not_a_panic() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two-element array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The reader is gone before the command starts: its first write must fail.
    drop(read);
    let out = cli()
        .args(["check", "sh"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run keepalive check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "keepalive: cannot write to stdout: Broken pipe (os error 32)"
    );

    // status, with stdout and stderr both the pipe nobody reads: an exit status, not
    // an abort from a failed eprintln.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: as above.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let status = cli()
        .args(["status", &std::process::id().to_string()])
        .stdout(Stdio::from(write.try_clone().unwrap()))
        .stderr(Stdio::from(write))
        .status()
        .expect("run keepalive status");
    assert_eq!(status.code(), Some(1), "{status:?}");
}

/// Runs `script` in `shell` (`bash` or `dash`) with a clean environment; its stdout.
fn shell(shell: &str, script: &str) -> String {
    common::stdout_of(
        Command::new(shell)
            .args(["-c", script])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("KEEPALIVE_LIBRARY", common::shim()),
    )
}

/// `eval "$(keepalive env …)"` in bash and dash exports the variables to the programs
/// the shell then starts, with an LD_PRELOAD the shell already had kept in front, as
/// `run` keeps it.
#[test]
fn env_output_is_exported_by_eval_in_bash_and_dash() {
    let test = "env_output_is_exported_by_eval_in_bash_and_dash";
    let command = keepalive().display().to_string();
    for sh in ["bash", "dash"] {
        if !have(test, sh) {
            continue;
        }
        let script = format!(
            "export LD_PRELOAD=libm.so.6; eval \"$({command} env --idle 60 --count 4)\" && \
             env | grep -E '^(KEEP[A-Z]*|LD_PRELOAD)=' | sort"
        );
        assert_eq!(
            shell(sh, &script),
            format!(
                "KEEPCNT=4\nKEEPIDLE=60\nLD_PRELOAD=libm.so.6 {}\n",
                common::shim().display()
            ),
            "{sh}"
        );
    }
}

/// The other formats, each read by what reads it: systemd's own parser for
/// `Environment=` (systemd-analyze verify on a unit holding the lines), the documented
/// `--env-file` rules (NAME=value, taken verbatim, so no quote or blank), and YAML for
/// a Kubernetes container's `env:` list.
#[test]
fn env_formats_for_systemd_env_files_and_kubernetes() {
    let test = "env_formats_for_systemd_env_files_and_kubernetes";
    let env = |format: &str| {
        let (code, stdout, stderr) =
            output(cli().args(["env", "--idle", "90s", "--mode", "skip", "--format", format]));
        assert_eq!(code, 0, "{format}: {stderr}");
        stdout
    };
    let library = common::shim().display().to_string();

    let env_file = env("env-file");
    assert_eq!(
        env_file,
        format!("LD_PRELOAD={library}\nKEEPALIVE=skip\nKEEPIDLE=90\n")
    );
    for line in env_file.lines() {
        let (name, value) = line.split_once('=').expect("NAME=value");
        assert!(
            name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "{line}"
        );
        assert!(!value.contains(['"', '\'', ' ', '\t']), "{line}");
    }

    let systemd = env("systemd");
    if have(test, "systemd-analyze") {
        let root = root_with_library("env_systemd");
        let units = root.join("etc/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::write(
            units.join("pasted.service"),
            format!("[Service]\nExecStart=/usr/bin/sleep infinity\n{systemd}"),
        )
        .unwrap();
        verify(&root, "pasted.service");
    }
    assert_eq!(
        systemd,
        format!(
            "Environment=\"LD_PRELOAD={library}\"\nEnvironment=\"KEEPALIVE=skip\"\n\
             Environment=\"KEEPIDLE=90\"\n"
        )
    );

    let kubernetes = env("kubernetes");
    if have(test, "/usr/bin/python3") {
        let parsed = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.argv[1])))",
            ])
            .arg(&kubernetes)
            .output()
            .expect("run python3");
        if parsed.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&parsed.stdout).trim(),
                format!(
                    "[{{\"name\": \"LD_PRELOAD\", \"value\": \"{library}\"}}, \
                     {{\"name\": \"KEEPALIVE\", \"value\": \"skip\"}}, \
                     {{\"name\": \"KEEPIDLE\", \"value\": \"90\"}}]"
                )
            );
        } else {
            skip(test, "Python's yaml module (python3-yaml) is not installed");
        }
    }
}

/// A library path with a blank or a colon is one ld.so(8) would split into two
/// entries and load neither: `run`, `env` and `enable` refuse it with exit 2.
#[test]
fn library_paths_ld_so_would_split_are_refused() {
    let dir = scratch("split_paths");
    let marker = dir.join("started");
    for name in ["lib dir", "lib:dir"] {
        let library = dir.join(name).join("libkeepalive.so");
        std::fs::create_dir_all(library.parent().unwrap()).unwrap();
        std::fs::copy(common::shim(), &library).unwrap();
        let (code, _, stderr) = output(
            cli()
                .args(["run", "--library"])
                .arg(&library)
                .args(["--", "touch"])
                .arg(&marker),
        );
        assert_eq!(
            (code, stderr.lines().count()),
            (2, 1),
            "run {name}: {stderr}"
        );
        assert!(stderr.contains("separates LD_PRELOAD entries"), "{stderr}");
        assert!(!marker.exists(), "run {name}: the program ran");
        let (code, stdout, stderr) = output(cli().args(["env", "--library"]).arg(&library));
        assert_eq!((code, stdout.as_str()), (2, ""), "env {name}: {stderr}");
    }
    let root = unit_root("split_paths_unit");
    let library = root.join("opt/lib dir/libkeepalive.so");
    std::fs::create_dir_all(library.parent().unwrap()).unwrap();
    std::fs::copy(common::shim(), &library).unwrap();
    let (code, _, stderr) = output(
        cli()
            .args([
                "enable",
                "app",
                "--library",
                "/opt/lib dir/libkeepalive.so",
                "--root",
            ])
            .arg(&root),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        !root
            .join("etc/systemd/system/app.service.d/zz-keepalive.conf")
            .exists()
    );
}

/// With `--root`, the library is the one inside the tree: a path that exists only on
/// this machine, or a link that leads out of the tree, is refused before anything is
/// written; a link is followed as the booted tree follows it.
#[test]
fn enable_under_root_takes_the_library_inside_it() {
    let root = unit_root("root_library");
    let drop_in = root.join("etc/systemd/system/app.service.d/zz-keepalive.conf");
    let host_only = common::shim().display().to_string();
    let (code, _, stderr) = output(
        cli()
            .args(["enable", "app", "--library", &host_only, "--root"])
            .arg(&root),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no such library file inside"), "{stderr}");
    std::os::unix::fs::symlink(common::shim(), root.join("usr/local/lib/escape.so")).unwrap();
    let (code, _, stderr) = output(
        cli()
            .args([
                "enable",
                "app",
                "--library",
                "/usr/local/lib/escape.so",
                "--root",
            ])
            .arg(&root),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(!drop_in.exists());

    // An absolute link that leads to the library inside the tree is how images point
    // at a versioned file; it resolves there as in the booted system (review of issue
    // 22, F8: refused as "not a file in that tree").
    let library = root.join("usr/local/lib/libkeepalive.so.0");
    if !library.exists() {
        std::fs::copy(common::shim(), &library).unwrap();
    }
    std::os::unix::fs::symlink(
        "/usr/local/lib/libkeepalive.so.0",
        root.join("usr/local/lib/abs.so"),
    )
    .unwrap();
    let (code, _, stderr) = output(
        cli()
            .args([
                "enable",
                "app",
                "--library",
                "/usr/local/lib/abs.so",
                "--root",
            ])
            .arg(&root),
    );
    assert_eq!(code, 0, "{stderr}");
    let written = std::fs::read_to_string(&drop_in).unwrap();
    assert!(written.contains(" /usr/local/lib/abs.so\""), "{written}");
    // The library the drop-in names is the one `check --unit` and a re-enable without
    // --library take (re-review of issue 22, N4: "drifted", and a re-enable swapped in
    // the library beside the command).
    let (code, stdout, stderr) =
        output(cli().args(["check", "--unit", "app", "--root"]).arg(&root));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("up to date"), "{stdout}");
    let (code, _, stderr) = output(cli().args(["enable", "app", "--root"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    let written = std::fs::read_to_string(&drop_in).unwrap();
    assert!(
        written.contains(" /usr/local/lib/abs.so\""),
        "re-enable: {written}"
    );
}

/// A `KEEPALIVE=off` the drop-in cannot override — from an `EnvironmentFile=`, which
/// systemd applies after every `Environment=`, or from a drop-in sorting after ours —
/// is refused before anything is written (re-review of issue 22, N8: enable said
/// "--idle turns keepalive on", exited 0, and the library did nothing).
#[test]
fn enable_refuses_a_keepalive_off_it_cannot_override() {
    for (case, extra, file) in [
        (
            "environment_file",
            "EnvironmentFile=/etc/app.env\n",
            Some(("etc/app.env", "KEEPALIVE=off\n")),
        ),
        (
            "later_drop_in",
            "",
            Some((
                "etc/systemd/system/app.service.d/zzz-off.conf",
                "[Service]\nEnvironment=KEEPALIVE=off\n",
            )),
        ),
    ] {
        let root = unit_root(&format!("keepalive_off_{case}"));
        let unit = root.join("etc/systemd/system/app.service");
        let text = std::fs::read_to_string(&unit)
            .unwrap()
            .replace("[Service]\n", &format!("[Service]\n{extra}"));
        std::fs::write(&unit, text).unwrap();
        if let Some((path, contents)) = file {
            std::fs::write(root.join(path), contents).unwrap();
        }
        let (code, _, stderr) = output(
            cli()
                .args(["enable", "app", "--idle", "44", "--root"])
                .arg(&root),
        );
        assert_eq!(code, 1, "{case}: {stderr}");
        assert!(stderr.contains("KEEPALIVE"), "{case}: {stderr}");
        assert!(
            !root
                .join("etc/systemd/system/app.service.d/zz-keepalive.conf")
                .exists(),
            "{case}"
        );
    }
}

/// `enable --strict` writes nothing for a unit whose ExecStart program preloading
/// cannot reach, and `run --strict` refuses in a line that is a refusal, not a warning.
#[test]
fn strict_refuses_in_its_own_words() {
    let test = "strict_refuses_in_its_own_words";
    let Some(program) = sockopt(test, "cc", &["-static"], "sockopt-static-strict") else {
        return;
    };
    let root = unit_root("strict");
    std::fs::copy(&program, root.join("usr/bin/static-app")).unwrap();
    let unit = root.join("etc/systemd/system/app.service");
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/bin/sleep infinity", "/usr/bin/static-app");
    std::fs::write(&unit, text).unwrap();
    let (code, _, stderr) = output(
        cli()
            .args(["enable", "app", "--strict", "--root"])
            .arg(&root),
    );
    assert_eq!((code, stderr.lines().count()), (1, 1), "{stderr}");
    assert!(
        stderr.starts_with("keepalive: refused: preloading cannot reach /usr/bin/static-app")
            && !stderr.contains("warning"),
        "{stderr}"
    );
    assert!(
        !root
            .join("etc/systemd/system/app.service.d/zz-keepalive.conf")
            .exists()
    );

    let (code, _, stderr) = output(cli().args(["run", "--strict", "--"]).arg(&program));
    assert_eq!((code, stderr.lines().count()), (1, 1), "{stderr}");
    assert!(
        stderr.starts_with("keepalive: refused: ") && !stderr.contains("warning"),
        "{stderr}"
    );
}

/// An option given on the command line wins over an inherited variable it
/// contradicts, and a line on stderr says so: timers over `KEEPALIVE=off` turn
/// keepalive on, `--idle` replaces an inherited `KEEPIDLE`.
#[test]
fn explicit_options_beat_inherited_variables() {
    let (code, stdout, stderr) = output(
        cli()
            .args(["run", "--idle", "60", "--", "sh", "-c"])
            .arg("env | grep -E '^KEEP' | sort")
            .env("KEEPALIVE", "off")
            .env("KEEPIDLE", "30"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "KEEPALIVE=on\nKEEPIDLE=60\n");
    assert!(
        stderr.contains("--idle 60 replaces KEEPIDLE='30' in the environment")
            && stderr.contains("--idle turns keepalive on over KEEPALIVE=off in the environment"),
        "{stderr}"
    );
    // --mode off given with the timers is obeyed, silently.
    let (code, stdout, stderr) = output(
        cli()
            .args(["run", "--mode", "off", "--idle", "60", "--", "sh", "-c"])
            .arg("env | grep -E '^KEEPALIVE=' | sort")
            .env("KEEPALIVE", "off"),
    );
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "KEEPALIVE=off\n", "")
    );
}

/// Values the command refuses are refused in words: a negative duration reaches the
/// library's parser (not clap's "unexpected argument"), a PID beyond pid_t is "not a
/// process ID" (no Rust integer range).
#[test]
fn odd_numbers_are_refused_in_words() {
    let (code, _, stderr) = output(cli().args(["run", "--idle", "-5", "--", "true"]));
    assert_eq!((code, stderr.lines().count()), (2, 1), "{stderr}");
    assert!(
        stderr.contains("'-5'") && stderr.contains("whole seconds from 1 to 32767"),
        "{stderr}"
    );
    let (code, _, stderr) = output(cli().args(["status", "2147483648"]));
    assert_eq!((code, stderr.lines().count()), (2, 1), "{stderr}");
    assert!(
        stderr.contains("'2147483648': not a process ID") && !stderr.contains("too large"),
        "{stderr}"
    );
}

/// The bash completion, sourced into a real bash and asked as readline would ask it:
/// `--mode` completes to its three values (not to file names), and the subcommands
/// offered are the documented ones, without the packaging-only `generate`.
#[test]
fn bash_completion_offers_modes_and_no_hidden_subcommand() {
    let test = "bash_completion_offers_modes_and_no_hidden_subcommand";
    if !have(test, "bash") {
        return;
    }
    let (code, script, _) = output(cli().args(["generate", "completions", "bash"]));
    assert_eq!(code, 0);
    let path = scratch("completion").join("keepalive.bash");
    std::fs::write(&path, script).unwrap();
    let ask = |words: &str| {
        shell(
            "bash",
            &format!(
                "source {}; COMP_WORDS=({words} ''); COMP_CWORD=${{#COMP_WORDS[@]}}; \
                 COMP_CWORD=$((COMP_CWORD - 1)); COMP_LINE=\"{words} \"; COMP_POINT=${{#COMP_LINE}}; \
                 _keepalive keepalive '' \"${{COMP_WORDS[COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[*]}}\"",
                path.display()
            ),
        )
    };
    assert_eq!(ask("keepalive run --mode").trim(), "on skip off");
    let subcommands = ask("keepalive");
    for sub in ["run", "check", "enable", "disable", "status", "env"] {
        assert!(
            subcommands.split_whitespace().any(|w| w == sub),
            "{subcommands}"
        );
    }
    assert!(!subcommands.contains("generate"), "{subcommands}");
}

/// `--runtime` writes under /run; a drop-in of enable's under /etc takes precedence
/// over it, so `--runtime` is refused then; `disable` removes both, since either left
/// behind would keep preloading.
#[test]
fn runtime_drop_ins_and_disable_removing_both() {
    let root = unit_root("runtime");
    let runtime = root.join("run/systemd/system/app.service.d/zz-keepalive.conf");
    let local = root.join("etc/systemd/system/app.service.d/zz-keepalive.conf");
    let run = |args: &[&str]| output(cli().args(args).arg("--root").arg(&root));
    let (code, stdout, stderr) = run(&["enable", "app", "--runtime"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&runtime.display().to_string()), "{stdout}");
    assert!(runtime.exists() && !local.exists());
    let (code, _, stderr) = run(&["enable", "app", "--idle", "30"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(local.exists());
    let (code, _, stderr) = run(&["enable", "app", "--runtime", "--idle", "20"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("takes precedence"), "{stderr}");
    let (code, stdout, stderr) = run(&["disable", "app"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!runtime.exists() && !local.exists(), "{stdout}");
}

/// In a unit as in the environment, timers given over the unit's `KEEPALIVE=off`
/// turn keepalive on, and say so; the drop-in then writes `KEEPALIVE=on`, which a
/// later enable without options keeps with the rest.
#[test]
fn enable_turns_keepalive_on_over_a_units_off_and_keeps_it() {
    let root = unit_root("enable_off");
    let unit = root.join("etc/systemd/system/app.service");
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("KEEPCNT=4", "KEEPCNT=4 KEEPALIVE=off");
    std::fs::write(&unit, text).unwrap();
    let drop_in = root.join("etc/systemd/system/app.service.d/zz-keepalive.conf");
    let (code, _, stderr) = output(
        cli()
            .args(["enable", "app", "--idle", "60", "--root"])
            .arg(&root),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--idle turns keepalive on over KEEPALIVE=off in app.service"),
        "{stderr}"
    );
    let expected = [
        format!("LD_PRELOAD=/usr/lib/libother.so {ROOT_LIBRARY}"),
        "KEEPALIVE=on".to_string(),
        "KEEPIDLE=60".to_string(),
    ];
    assert_eq!(
        assignments(&std::fs::read_to_string(&drop_in).unwrap()),
        expected
    );
    let (code, stdout, stderr) = output(cli().args(["enable", "app", "--root"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("up to date"), "{stdout}");
    assert!(
        stderr.contains("keeps KEEPALIVE=on") && stderr.contains("keeps KEEPIDLE=60"),
        "{stderr}"
    );
    assert_eq!(
        assignments(&std::fs::read_to_string(&drop_in).unwrap()),
        expected
    );
}

/// A library to preload must be one: an ELF shared object of this architecture that
/// defines `socket` (issue 22). A text file, a shared library that is no keepalive
/// library, and a path with a newline are refused with exit status 2 and nothing
/// printed on stdout; the library itself is taken.
#[test]
fn env_refuses_a_library_that_cannot_be_preloaded() {
    let libz = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("library\nwith-newline");
    std::fs::create_dir_all(&dir).unwrap();
    let newline = dir.join("libkeepalive.so");
    std::fs::copy(common::shim(), &newline).unwrap();
    let mut cases: Vec<(String, &str)> = vec![
        ("/etc/passwd".into(), "cannot be preloaded: not an ELF file"),
        (newline.display().to_string(), "holds a newline"),
    ];
    if let Some(libz) = libz {
        cases.push((libz.into(), "does not define socket()"));
    }
    for (library, why) in cases {
        let (code, stdout, stderr) = output(cli().args(["env", "--library", &library]));
        assert_eq!((code, stdout.as_str()), (2, ""), "{library:?}: {stderr}");
        assert!(stderr.contains(why), "{library:?}: {stderr}");
    }
    let shim = common::shim().display().to_string();
    let (code, stdout, _) = output(cli().args(["env", "--library", &shim]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(&format!("export LD_PRELOAD={shim}\n")),
        "{stdout}"
    );
}

/// `enable --kernel --root DIR` writes a drop-in that runs this command by its path;
/// an image without the command there is refused, with nothing written (issue 21).
#[test]
fn enable_kernel_under_root_refuses_an_image_without_the_command() {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-without-keepalive");
    let _ = std::fs::remove_dir_all(&root);
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("app.service"),
        "[Service]\nExecStart=/usr/bin/true\n",
    )
    .unwrap();
    let (code, _, stderr) = output(
        cli()
            .args(["enable", "--kernel", "--root"])
            .arg(&root)
            .arg("app"),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("which is not in the image"), "{stderr}");
    assert!(!units.join("app.service.d/zz-keepalive.conf").exists());
}

/// `run` of something that cannot be run says so in one line, in the file's own
/// words, with the shell's exit status (issue 22): 127 for no such file, 126 for a
/// directory or a file without execute permission.
#[test]
fn run_of_what_cannot_run_is_one_line() {
    for (program, code, says) in [
        ("/nonexistent/program", 127, "no such file"),
        ("/tmp", 126, "it is a directory"),
        ("/etc/passwd", 126, "not executable"),
    ] {
        let (got, stdout, stderr) = output(cli().args(["run", "--", program]));
        assert_eq!((got, stdout.as_str()), (code, ""), "{program}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{program}: {stderr}");
        assert!(stderr.contains(says), "{program}: {stderr}");
    }
}
