//! In a real systemd: services configured the ways the README shows, started by
//! systemd 252 as PID 1 of a throw-away container (tests/common/systemd.rs), their
//! connections checked with `ss -tno` inside, as an operator on that machine would.

mod common;

use std::time::Duration;

use common::net::Proc;
use common::systemd::{Container, TARGET};

/// A client inside the container: connects to 127.0.0.1:PORT (retrying while the
/// service is not listening yet), sends one line, prints `echoed <what came back>` once
/// the service has answered it (so the service's program is running its own code by
/// then, past the library's start-up), then stays connected and idle.
const CLIENT: &str = "\
import socket, sys, time
deadline = time.monotonic() + 30
while True:
    try:
        conn = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=30)
        break
    except ConnectionRefusedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
conn.sendall(b'ping\\n')
answer = b''
while not answer.endswith(b'\\n'):
    chunk = conn.recv(64)
    if not chunk:
        break
    answer += chunk
print('echoed', repr(answer), flush=True)
time.sleep(300)
";

/// A server that knows nothing of keepalive: listens on 127.0.0.1:PORT, or on the
/// listener systemd passed as fd 3 when PORT is `fd3` (socket activation), and echoes
/// every connection it accepts, each in its own thread.
const SERVER: &str = "\
import socket, sys, threading
if sys.argv[1] == 'fd3':
    listener = socket.socket(fileno=3)
else:
    listener = socket.create_server(('127.0.0.1', int(sys.argv[1])))
def echo(conn):
    with conn:
        while data := conn.recv(64):
            conn.sendall(data)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
";

/// The library as the container sees it.
fn library() -> String {
    format!("{TARGET}/release/libkeepalive.so")
}

/// The `keepalive` command as the container sees it, built first.
fn keepalive_command() -> String {
    common::keepalive();
    format!("{TARGET}/release/keepalive")
}

/// Connects a client inside `container` to `port` and waits until the service has
/// echoed its line; the client stays connected while the returned process lives.
fn connect(container: &Container, port: u16, unit: &str) -> Proc {
    let mut client =
        Proc::spawn(&mut container.enter(&["/usr/bin/python3", "-c", CLIENT, &port.to_string()]));
    let echoed = client.line("echoed ", Duration::from_secs(30));
    assert_eq!(
        echoed.as_deref(),
        Some("echoed b'ping\\n'"),
        "the service on port {port} did not echo exactly the client's line{}",
        container.diagnose(unit)
    );
    client
}

/// A library a unit preloads for its own reasons before keepalive is added; harmless.
const OWN_PRELOAD: &str = "libm.so.6";

/// The value of `name` in the environment of `unit`'s main process ("" when unset).
fn environment(container: &Container, unit: &str, name: &str) -> String {
    let pid = container
        .main_pid(unit)
        .unwrap_or_else(|| panic!("{unit} has no main process"));
    let environ = container.read(&format!("/proc/{pid}/environ"));
    let prefix = format!("{name}=");
    environ
        .split('\0')
        .find_map(|pair| pair.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_string()
}

/// The keepalive timer of the one connection the service on `port` holds.
fn server_timer(container: &Container, port: u16) -> Option<Duration> {
    let seen = container.ss_keepalive(&format!("( sport = :{port} )"));
    assert_eq!(seen.len(), 1, "connections on port {port}: {seen:?}");
    seen[0]
}

/// Asserts that the service's connection has a keepalive timer of at most `idle`
/// seconds (it counts down from the configured idle time) and not far below it: each
/// service gets its own idle time, so settings that went to the wrong one fail.
fn assert_idle(what: &str, timer: Option<Duration>, idle: u64) {
    let timer = timer.unwrap_or_else(|| panic!("{what}: no keepalive timer"));
    assert!(
        timer <= Duration::from_secs(idle) && timer > Duration::from_secs(idle - 10),
        "{what}: timer {timer:?}, configured idle {idle} s"
    );
}

/// A per-connection service in the `sd_listen_fds(3)` style: the connection systemd
/// accepted is fd 3 (`LISTEN_FDS=1`); echoes on it.
const FD3_ECHO: &str = "\
import socket
conn = socket.socket(fileno=3)
while data := conn.recv(64):
    conn.sendall(data)
";

/// systemd accepts the connection itself (`Accept=yes`) and starts
/// one service instance per connection, with the connection already connected: as
/// stdin and stdout (`StandardInput=socket`, inetd style) or as fd 3 with
/// `LISTEN_FDS=1`. The service never calls accept(2); the library configures the
/// connected socket it finds at start-up. Each service has its own idle time, and the
/// same inetd-style service without the library is the control.
#[test]
fn accept_yes_service_gets_keepalive_on_its_socket() {
    let test = "accept_yes_service_gets_keepalive_on_its_socket";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/fd3-echo.py", FD3_ECHO);
    let preload = |idle: u32| {
        format!(
            "Environment=LD_PRELOAD={}\nEnvironment=KEEPIDLE={idle} KEEPINTVL=5 KEEPCNT=3\n",
            library()
        )
    };
    // `cat` knows nothing of sockets: it reads stdin and writes stdout.
    let inetd = "ExecStart=/usr/bin/cat\nStandardInput=socket\n";
    let fd3 = "ExecStart=/usr/bin/python3 /srv/fd3-echo.py\n";
    for (name, port, service) in [
        ("inetd-preloaded", 7101, format!("{inetd}{}", preload(45))),
        ("fd3-preloaded", 7102, format!("{fd3}{}", preload(30))),
        ("inetd-bare", 7103, inetd.to_string()),
    ] {
        container.write(
            &format!("/etc/systemd/system/{name}.socket"),
            &format!("[Socket]\nListenStream=127.0.0.1:{port}\nAccept=yes\n"),
        );
        container.write(
            &format!("/etc/systemd/system/{name}@.service"),
            &format!("[Service]\n{service}"),
        );
    }
    container.start(&[
        "inetd-preloaded.socket",
        "fd3-preloaded.socket",
        "inetd-bare.socket",
    ]);

    let _inetd = connect(&container, 7101, "inetd-preloaded@*");
    let _fd3 = connect(&container, 7102, "fd3-preloaded@*");
    let _bare = connect(&container, 7103, "inetd-bare@*");

    assert_idle(
        "Accept=yes, StandardInput=socket, with the library",
        server_timer(&container, 7101),
        45,
    );
    assert_idle(
        "Accept=yes, connection as fd 3, with the library",
        server_timer(&container, 7102),
        30,
    );
    assert_eq!(
        server_timer(&container, 7103),
        None,
        "without the library the connection has no keepalive timer"
    );
}

/// The three ways the README offers to configure a service, each in its own
/// service in a real systemd, each with its own idle time so that settings that reach
/// the wrong service fail: the raw drop-in recipe (`Environment=LD_PRELOAD=…`),
/// `keepalive enable UNIT --now` run on that machine, and
/// `ExecStart=keepalive run … --`.
/// A fourth service with none of them is the control: no keepalive timer.
#[test]
fn keepalive_command_and_drop_in_configure_services() {
    let test = "keepalive_command_and_drop_in_configure_services";
    let keepalive = keepalive_command();
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    let server = |port: u16| format!("/usr/bin/python3 /srv/echo-server.py {port}");
    let service = |exec_start: &str| format!("[Service]\nExecStart={exec_start}\n");

    // The README's recipe, as `systemctl edit` would save it.
    container.write(
        "/etc/systemd/system/recipe.service",
        &service(&server(7201)),
    );
    container.write(
        "/etc/systemd/system/recipe.service.d/override.conf",
        &format!(
            "[Service]\nEnvironment=LD_PRELOAD={}\n\
             Environment=KEEPIDLE=20 KEEPINTVL=10 KEEPCNT=6 TCP_USER_TIMEOUT=120000\n",
            library()
        ),
    );
    // `keepalive run` in ExecStart.
    container.write(
        "/etc/systemd/system/wrapped.service",
        &service(&format!(
            "{keepalive} run --idle 50 --library {} -- {}",
            library(),
            server(7203)
        )),
    );
    container.write("/etc/systemd/system/plain.service", &service(&server(7204)));
    // The unit already preloads a library of its own (found by name in the loader's
    // path, ld.so(8)), which must stay.
    container.write(
        "/etc/systemd/system/enabled.service",
        &format!(
            "{}Environment=LD_PRELOAD={OWN_PRELOAD}\n",
            service(&server(7202))
        ),
    );
    container.start(&[
        "recipe.service",
        "wrapped.service",
        "plain.service",
        "enabled.service",
    ]);
    // `keepalive enable --now` on the running system: it reloads systemd and restarts
    // the running service itself.
    container.run_ok(&[
        &keepalive,
        "enable",
        "enabled.service",
        "--idle",
        "35s",
        "--library",
        &library(),
        "--now",
    ]);

    let units = [
        "recipe.service",
        "enabled.service",
        "wrapped.service",
        "plain.service",
    ];
    let _clients: Vec<Proc> = (7201..=7204)
        .zip(units)
        .map(|(port, unit)| connect(&container, port, unit))
        .collect();
    assert_idle("the README's drop-in", server_timer(&container, 7201), 20);
    assert_idle("keepalive enable", server_timer(&container, 7202), 35);
    assert_idle("keepalive run", server_timer(&container, 7203), 50);
    assert_eq!(
        server_timer(&container, 7204),
        None,
        "a service configured by none of them has no keepalive timer"
    );
    let preload = environment(&container, "enabled.service", "LD_PRELOAD");
    let preload: Vec<&str> = preload.split([' ', ':']).collect();
    assert!(
        preload.contains(&OWN_PRELOAD) && preload.contains(&library().as_str()),
        "keepalive enable: the service runs with LD_PRELOAD={preload:?}"
    );
    // `run` execs the program: systemd's main process is the server itself.
    let main = container
        .main_pid("wrapped.service")
        .expect("wrapped.service has a main process");
    assert_eq!(
        container.read(&format!("/proc/{main}/comm")).trim(),
        "python3",
        "keepalive run left a process between systemd and the program"
    );
}

/// Keepalive settings systemd puts on the sockets of a `.socket` unit (`KeepAlive=`,
/// `KeepAliveTimeSec=`) stay what the operator wrote, though the service preloads the
/// library with other values: on the listener of a socket-activated server that
/// accepts itself, and on the connection an `Accept=yes` unit hands over.
#[test]
fn socket_unit_keepalive_settings_win() {
    let test = "socket_unit_keepalive_settings_win";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    let preloaded = format!(
        "Environment=LD_PRELOAD={}\nEnvironment=KEEPIDLE=45 KEEPINTVL=5 KEEPCNT=3\n",
        library()
    );
    let socket = |port: u16, accept: &str, idle: u32| {
        format!(
            "[Socket]\nListenStream=127.0.0.1:{port}\nAccept={accept}\n\
             KeepAlive=yes\nKeepAliveTimeSec={idle}\n"
        )
    };
    container.write(
        "/etc/systemd/system/activated.socket",
        &socket(7301, "no", 15),
    );
    container.write(
        "/etc/systemd/system/activated.service",
        &format!("[Service]\nExecStart=/usr/bin/python3 /srv/echo-server.py fd3\n{preloaded}"),
    );
    container.write(
        "/etc/systemd/system/handed.socket",
        &socket(7302, "yes", 25),
    );
    container.write(
        "/etc/systemd/system/handed@.service",
        &format!("[Service]\nExecStart=/usr/bin/cat\nStandardInput=socket\n{preloaded}"),
    );
    container.start(&["activated.socket", "handed.socket"]);

    let _activated = connect(&container, 7301, "activated.service");
    let _handed = connect(&container, 7302, "handed@*");
    assert_idle(
        "socket-activated server, KeepAliveTimeSec=15 on the .socket unit",
        server_timer(&container, 7301),
        15,
    );
    assert_idle(
        "Accept=yes, KeepAliveTimeSec=25 on the .socket unit",
        server_timer(&container, 7302),
        25,
    );
}

/// `keepalive ARGS` run inside `container` as an operator there would: exit status,
/// stdout and stderr.
fn keepalive(container: &Container, args: &[&str]) -> (i32, String, String) {
    let command = keepalive_command();
    let mut all = vec![command.as_str()];
    all.extend_from_slice(args);
    let output = container.run(&all);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A unit running the echo server on `port`, with `extra` lines in `[Service]`.
fn echo_unit(container: &Container, name: &str, port: u16, extra: &str) {
    container.write(
        &format!("/etc/systemd/system/{name}"),
        &format!("[Service]\nExecStart=/usr/bin/python3 /srv/echo-server.py {port}\n{extra}"),
    );
}

/// Whether `path` exists inside the container.
fn exists(container: &Container, path: &str) -> bool {
    container.run(&["test", "-e", path]).status.success()
}

/// `systemctl is-active UNIT` inside the container.
fn active_state(container: &Container, unit: &str) -> String {
    container
        .run_text(&["systemctl", "is-active", unit])
        .trim()
        .to_string()
}

/// A library the service cannot see is refused before anything is written, naming the
/// sandboxing option (ProtectHome= hides /root, PrivateTmp= gives the service its own
/// /tmp); and a library the loader cannot load fails the proof after the restart, with
/// the loader's own line from the journal. Each exits 1, and no service is left
/// believing it has keepalive.
#[test]
fn enable_refuses_hidden_libraries_and_proves_the_restart() {
    let test = "enable_refuses_hidden_libraries_and_proves_the_restart";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    for dir in ["/root/ka", "/tmp/ka"] {
        container.run_ok(&["mkdir", "-p", dir]);
        container.run_ok(&["cp", &library(), &format!("{dir}/libkeepalive.so")]);
    }
    container.write("/srv/not-a-library.so", "this is not an ELF file\n");
    echo_unit(&container, "home.service", 7501, "ProtectHome=yes\n");
    echo_unit(&container, "tmp.service", 7502, "PrivateTmp=yes\n");
    echo_unit(&container, "broken.service", 7503, "");
    container.start(&["home.service", "tmp.service", "broken.service"]);

    for (unit, library, option) in [
        ("home", "/root/ka/libkeepalive.so", "ProtectHome=yes"),
        ("tmp", "/tmp/ka/libkeepalive.so", "PrivateTmp=yes"),
    ] {
        let before = container.main_pid(&format!("{unit}.service"));
        let (code, stdout, stderr) = keepalive(
            &container,
            &[
                "enable",
                unit,
                "--library",
                library,
                "--idle",
                "40",
                "--now",
            ],
        );
        assert_eq!(code, 1, "{unit}: {stdout}{stderr}");
        assert!(stderr.contains(option), "{unit}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{unit}: {stderr}");
        assert!(
            !exists(&container, &format!("/etc/systemd/system/{unit}.service.d")),
            "{unit}: a drop-in was written"
        );
        assert_eq!(
            container.main_pid(&format!("{unit}.service")),
            before,
            "{unit}: restarted"
        );
    }

    let (code, stdout, stderr) = keepalive(
        &container,
        &[
            "enable",
            "broken",
            "--library",
            "/srv/not-a-library.so",
            "--now",
        ],
    );
    // Not a shared object at all: refused before anything is written or restarted.
    let before = container.main_pid("broken.service");
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(!stdout.contains("verified"), "{stdout}");
    assert!(
        stderr.contains("cannot be preloaded: not an ELF file"),
        "{stderr}"
    );
    assert!(!exists(&container, "/etc/systemd/system/broken.service.d"));
    assert_eq!(container.main_pid("broken.service"), before);
}

/// The sandbox check follows systemd's mounts (issue 22): a library in /root hidden by
/// `ProtectHome=tmpfs` is refused, and brought back by `BindReadOnlyPaths=` of its
/// directory it is accepted, loaded and proven, as a hand-written drop-in would be.
#[test]
fn a_bind_that_brings_the_library_back_is_not_refused() {
    let test = "a_bind_that_brings_the_library_back_is_not_refused";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    container.run_ok(&["mkdir", "-p", "/root/ka"]);
    container.run_ok(&["cp", &library(), "/root/ka/libkeepalive.so"]);
    echo_unit(&container, "hidden.service", 7571, "ProtectHome=tmpfs\n");
    echo_unit(
        &container,
        "bound.service",
        7572,
        "ProtectHome=tmpfs\nBindReadOnlyPaths=/root/ka\n",
    );
    container.start(&["hidden.service", "bound.service"]);
    let enable = |unit: &str| {
        keepalive(
            &container,
            &[
                "enable",
                unit,
                "--library",
                "/root/ka/libkeepalive.so",
                "--idle",
                "42",
                "--now",
            ],
        )
    };
    let (code, stdout, stderr) = enable("hidden");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("ProtectHome=tmpfs"), "{stderr}");
    let (code, stdout, stderr) = enable("bound");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("verified: bound.service"), "{stdout}");
    let _client = connect(&container, 7572, "bound.service");
    assert_idle("a bound library", server_timer(&container, 7572), 42);
}

/// `--now` is `systemctl try-restart`: a running service is restarted and proven to
/// have the library and the settings (its connection then has them), a stopped one
/// stays stopped; `disable --now` restarts a running service without the library and
/// leaves a stopped one alone. The running one is enabled with `--runtime`, a drop-in
/// under /run.
#[test]
fn now_restarts_only_a_running_service() {
    let test = "now_restarts_only_a_running_service";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    echo_unit(&container, "running.service", 7511, "");
    echo_unit(&container, "stopped.service", 7512, "");
    container.start(&["running.service"]);
    let before = container.main_pid("running.service");

    let (code, stdout, stderr) = keepalive(
        &container,
        &["enable", "running", "--idle", "33", "--runtime", "--now"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("wrote /run/systemd/system/running.service.d/zz-keepalive.conf"),
        "{stdout}"
    );
    assert!(
        stdout.contains("verified: running.service process") && stdout.contains("KEEPIDLE=33"),
        "{stdout}"
    );
    assert_ne!(
        container.main_pid("running.service"),
        before,
        "not restarted"
    );
    {
        let _client = connect(&container, 7511, "running.service");
        assert_idle("enable --now", server_timer(&container, 7511), 33);
    }

    let (code, stdout, stderr) = keepalive(&container, &["enable", "stopped", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("not running; left stopped"), "{stdout}");
    assert_eq!(active_state(&container, "stopped.service"), "inactive");

    let (code, stdout, stderr) = keepalive(&container, &["disable", "stopped", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(active_state(&container, "stopped.service"), "inactive");

    let (code, stdout, stderr) =
        keepalive(&container, &["disable", "running", "--runtime", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("verified: running.service restarted without the library"),
        "{stdout}"
    );
    assert_eq!(environment(&container, "running.service", "LD_PRELOAD"), "");
}

/// An alias (`Alias=` in [Install], linked by `systemctl enable`) is followed to the
/// unit's real name: the drop-in goes where `systemctl edit` puts it, the service gets
/// the settings, and `disable` through the alias removes it, with a drop-in an earlier
/// version wrote under the alias's name.
#[test]
fn enable_and_disable_through_an_alias() {
    let test = "enable_and_disable_through_an_alias";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    echo_unit(
        &container,
        "real.service",
        7521,
        "[Install]\nAlias=nick.service\n",
    );
    container.run_ok(&["systemctl", "daemon-reload"]);
    container.run_ok(&["systemctl", "enable", "real.service"]);
    container.start(&["real.service"]);

    let (code, stdout, stderr) =
        keepalive(&container, &["enable", "nick", "--idle", "27", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("wrote /etc/systemd/system/real.service.d/zz-keepalive.conf"),
        "{stdout}"
    );
    assert!(stdout.contains("verified: real.service"), "{stdout}");
    assert!(!exists(&container, "/etc/systemd/system/nick.service.d"));
    {
        let _client = connect(&container, 7521, "real.service");
        assert_idle(
            "enable through an alias",
            server_timer(&container, 7521),
            27,
        );
    }

    // What an earlier version wrote under the alias's own name.
    let stray = "/etc/systemd/system/nick.service.d/zz-keepalive.conf";
    container.write(
        stray,
        &format!(
            "# Written by `keepalive enable`; `keepalive disable` removes it.\n\
             [Service]\nEnvironment=\"LD_PRELOAD={}\"\n",
            library()
        ),
    );
    let (code, stdout, stderr) = keepalive(&container, &["disable", "nick", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!exists(&container, stray), "{stdout}");
    assert!(!exists(
        &container,
        "/etc/systemd/system/real.service.d/zz-keepalive.conf"
    ));
    assert!(stdout.contains("restarted without the library"), "{stdout}");
    assert_eq!(environment(&container, "real.service", "LD_PRELOAD"), "");
}

/// A masked unit is refused, as `systemctl edit` refuses it; a template is configured
/// and never started, its instances get the settings; an instance name systemd would
/// refuse is refused before anything is written.
#[test]
fn masked_units_templates_and_instances() {
    let test = "masked_units_templates_and_instances";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    // `systemctl mask` links /etc/systemd/system/NAME to /dev/null, so the unit
    // itself lives in a directory of lower priority.
    container.write(
        "/run/systemd/system/hidden.service",
        "[Service]\nExecStart=/usr/bin/python3 /srv/echo-server.py 7531\n",
    );
    container.write(
        "/etc/systemd/system/tpl@.service",
        "[Service]\nExecStart=/usr/bin/python3 /srv/echo-server.py %i\n",
    );
    container.run_ok(&["systemctl", "daemon-reload"]);
    container.run_ok(&["systemctl", "mask", "hidden.service"]);

    let (code, stdout, stderr) = keepalive(&container, &["enable", "hidden", "--now"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("masked"), "{stderr}");
    assert!(!exists(&container, "/etc/systemd/system/hidden.service.d"));

    let (code, _, stderr) = keepalive(&container, &["enable", "tpl@x y", "--now"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("' '"), "{stderr}");
    assert!(!exists(&container, "/etc/systemd/system/tpl@x y.service.d"));

    let (code, stdout, stderr) =
        keepalive(&container, &["enable", "tpl@", "--idle", "21", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("is a template"), "{stdout}");
    assert!(exists(
        &container,
        "/etc/systemd/system/tpl@.service.d/zz-keepalive.conf"
    ));
    let units = container.run_ok(&[
        "systemctl",
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "tpl@*",
    ]);
    assert_eq!(units.trim(), "", "a template was started");

    container.start(&["tpl@7532.service"]);
    {
        let _client = connect(&container, 7532, "tpl@7532.service");
        assert_idle("the template's drop-in", server_timer(&container, 7532), 21);
    }
    let (code, stdout, stderr) =
        keepalive(&container, &["enable", "tpl@7532", "--idle", "22", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("verified: tpl@7532.service"), "{stdout}");
    let _client = connect(&container, 7532, "tpl@7532.service");
    assert_idle("the instance's drop-in", server_timer(&container, 7532), 22);
}

/// Enabling again keeps the settings not given again, and says so; a unit whose own
/// LD_PRELOAD changed after `enable` leaves the drop-in's copy stale (it would win),
/// which `check --unit` reports and `enable` refreshes.
#[test]
fn re_enable_keeps_settings_and_refreshes_a_drifted_preload() {
    let test = "re_enable_keeps_settings_and_refreshes_a_drifted_preload";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    echo_unit(
        &container,
        "again.service",
        7541,
        &format!("Environment=LD_PRELOAD={OWN_PRELOAD}\n"),
    );
    container.start(&["again.service"]);
    let (code, stdout, stderr) = keepalive(
        &container,
        &[
            "enable",
            "again",
            "--idle",
            "60",
            "--interval",
            "10",
            "--count",
            "6",
            "--now",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) =
        keepalive(&container, &["enable", "again", "--idle", "30", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for kept in ["keeps KEEPINTVL=10", "keeps KEEPCNT=6"] {
        assert!(stderr.contains(kept), "{kept}: {stderr}");
    }
    for (name, value) in [("KEEPIDLE", "30"), ("KEEPINTVL", "10"), ("KEEPCNT", "6")] {
        assert_eq!(
            environment(&container, "again.service", name),
            value,
            "{name}"
        );
    }

    let (code, stdout, _) = keepalive(&container, &["check", "--unit", "again"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("up to date"), "{stdout}");
    // The unit now preloads another library of its own; the drop-in still copies the
    // old one, and applied last it would win.
    let unit = "/etc/systemd/system/again.service";
    let edited = container.read(unit).replace(OWN_PRELOAD, "libdl.so.2");
    container.write(unit, &edited);
    let (code, stdout, _) = keepalive(&container, &["check", "--unit", "again"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("drifted") && stdout.contains(&format!("LD_PRELOAD={OWN_PRELOAD} ")),
        "{stdout}"
    );
    let (code, stdout, stderr) = keepalive(&container, &["enable", "again", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("LD_PRELOAD was {OWN_PRELOAD} ")),
        "{stderr}"
    );
    assert_eq!(
        environment(&container, "again.service", "LD_PRELOAD"),
        format!("libdl.so.2 {}", library())
    );
    assert_eq!(environment(&container, "again.service", "KEEPIDLE"), "30");
    let (code, stdout, _) = keepalive(&container, &["check", "--unit", "again"]);
    assert_eq!(code, 0, "{stdout}");
}

/// `keepalive env --format systemd` pasted into a drop-in, and `--format env-file`
/// named by `EnvironmentFile=`, each read by systemd itself: the service runs with the
/// library and the settings, and its connection has them.
#[test]
fn env_formats_configure_a_real_service() {
    let test = "env_formats_configure_a_real_service";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    let printed = |format: &str, idle: &str| {
        let (code, stdout, stderr) =
            keepalive(&container, &["env", "--idle", idle, "--format", format]);
        assert_eq!(code, 0, "{format}: {stderr}");
        stdout
    };
    echo_unit(&container, "pasted.service", 7551, "");
    container.write(
        "/etc/systemd/system/pasted.service.d/env.conf",
        &format!("[Service]\n{}", printed("systemd", "41")),
    );
    container.write("/etc/keepalive.env", &printed("env-file", "42"));
    echo_unit(
        &container,
        "from-file.service",
        7552,
        "EnvironmentFile=/etc/keepalive.env\n",
    );
    container.start(&["pasted.service", "from-file.service"]);
    for (unit, port, idle) in [
        ("pasted.service", 7551, 41),
        ("from-file.service", 7552, 42),
    ] {
        assert_eq!(
            environment(&container, unit, "LD_PRELOAD"),
            library(),
            "{unit}"
        );
        assert_eq!(
            environment(&container, unit, "KEEPIDLE"),
            idle.to_string(),
            "{unit}"
        );
        let _client = connect(&container, port, unit);
        assert_idle(unit, server_timer(&container, port), idle);
    }
}

/// A statically linked program that only waits, built here: no loader runs in it,
/// so nothing can preload a library.
fn static_sleeper(test: &str) -> Option<std::path::PathBuf> {
    if !common::have(test, "cc") {
        return None;
    }
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("static-sleeper");
    let mut cc = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&path)
        .args(["-x", "c", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run cc");
    std::io::Write::write_all(
        cc.stdin.as_mut().expect("cc's stdin"),
        b"#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
    )
    .expect("write the program to cc");
    drop(cc.stdin.take());
    assert!(
        cc.wait().expect("wait for cc").success(),
        "cc -static failed"
    );
    Some(path)
}

/// A service whose program preloading cannot reach (statically linked): `enable
/// --strict` writes nothing, and without it `--now` restarts the service and fails the
/// proof with the check's reason, never "done".
#[test]
fn enable_names_a_program_preloading_cannot_reach() {
    let test = "enable_names_a_program_preloading_cannot_reach";
    let Some(program) = static_sleeper(test) else {
        return;
    };
    let Some(container) = Container::boot(test) else {
        return;
    };
    // target/ is visible inside as TARGET, the test's scratch directory with it.
    let target = common::shim()
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target directory");
    let inside = format!(
        "{TARGET}/{}",
        program
            .strip_prefix(target)
            .expect("the program under target/")
            .display()
    );
    container.write(
        "/etc/systemd/system/static.service",
        &format!("[Service]\nExecStart={inside}\n"),
    );
    container.start(&["static.service"]);

    let (code, stdout, stderr) = keepalive(&container, &["enable", "static", "--strict", "--now"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.starts_with("keepalive: refused: preloading cannot reach")
            && stderr.contains("statically linked"),
        "{stderr}"
    );
    assert!(!exists(&container, "/etc/systemd/system/static.service.d"));

    let (code, stdout, stderr) = keepalive(&container, &["enable", "static", "--now"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(!stdout.contains("verified"), "{stdout}");
    assert!(
        stderr.contains("static.service: restarted without keepalive: preloading cannot reach")
            && stderr.contains("statically linked"),
        "{stderr}"
    );
}

/// Where the library's line goes in a real systemd (issue 14): a service's default
/// stderr is journald's stream socket, and a bad value's warning must arrive there; a per-connection service on an `AF_UNIX` listener whose
/// connection is its stdout and stderr but not its stdin (`StandardInput=null`,
/// `StandardOutput=socket`) must send its client nothing but the program's own bytes.
#[test]
fn lines_reach_the_journal_and_never_a_per_connection_client() {
    let test = "lines_reach_the_journal_and_never_a_per_connection_client";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let preload = format!(
        "Environment=LD_PRELOAD={}\nEnvironment=KEEPIDLE=30s\n",
        library()
    );
    let speaker = "import socket; socket.socket(); print('program speaks', flush=True)";
    container.write(
        "/etc/systemd/system/journaled.service",
        &format!("[Service]\nType=oneshot\nExecStart=/usr/bin/python3 -c \"{speaker}\"\n{preload}"),
    );
    container.write(
        "/etc/systemd/system/unix-client.socket",
        "[Socket]\nListenStream=/run/unix-client.sock\nAccept=yes\n",
    );
    container.write(
        "/etc/systemd/system/unix-client@.service",
        &format!(
            "[Service]\nExecStart=/usr/bin/python3 -c \"{speaker}\"\n\
             StandardInput=null\nStandardOutput=socket\n{preload}"
        ),
    );
    container.start(&["journaled.service", "unix-client.socket"]);

    // journald reads the stream on its own time: wait for the program's own line.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let journal = loop {
        let journal = container.run_text(&[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "journaled.service",
        ]);
        if journal.contains("program speaks") || std::time::Instant::now() > deadline {
            break journal;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        journal.contains("libkeepalive: KEEPIDLE=\"30s\" ignored"),
        "the warning did not reach the journal:\n{journal}"
    );

    let client = "import socket; c = socket.socket(socket.AF_UNIX); \
                  c.connect('/run/unix-client.sock'); data = b''\n\
                  while chunk := c.recv(4096): data += chunk\n\
                  print(repr(data))";
    let received = container.run_text(&["/usr/bin/python3", "-c", client]);
    assert_eq!(
        received.trim(),
        "b'program speaks\\n'",
        "the per-connection client read more than the program's own bytes"
    );
}

/// The proof is about the process that holds the service's sockets (issue 22): a
/// shell that starts the server with `env -i` has the library, the server does not,
/// and `enable --now` fails naming the server; without `env -i` it proves every
/// socket holder.
#[test]
fn enable_proves_the_process_that_holds_the_sockets() {
    let test = "enable_proves_the_process_that_holds_the_sockets";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    let wrapped = |env: &str, port: u16| {
        format!(
            "[Service]\nExecStart=/bin/sh -c '{env}/usr/bin/python3 /srv/echo-server.py {port} & wait'\n"
        )
    };
    container.write(
        "/etc/systemd/system/cleared.service",
        &wrapped("env -i ", 7521),
    );
    container.write("/etc/systemd/system/kept.service", &wrapped("", 7523));
    container.start(&["cleared.service", "kept.service"]);

    let (code, stdout, stderr) = keepalive(&container, &["enable", "cleared", "--now"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("(python3) holds the service's TCP sockets without"),
        "{stdout}{stderr}"
    );
    container.run_ok(&["systemctl", "stop", "cleared.service"]);

    let (code, stdout, stderr) = keepalive(&container, &["enable", "kept", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("so has every process of it that holds TCP sockets"),
        "{stdout}"
    );
}

/// `disable --now` proves what runs, drop-in or not (issue 22): after `enable --now`
/// and a `disable` without `--now` (the service still runs with the library), it
/// restarts the service and proves it runs without. `--runtime` touches /run only:
/// it leaves the /etc drop-in, and names it.
#[test]
fn disable_now_proves_without_a_drop_in_and_runtime_keeps_etc() {
    let test = "disable_now_proves_without_a_drop_in_and_runtime_keeps_etc";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    echo_unit(&container, "lingering.service", 7522, "");
    container.start(&["lingering.service"]);
    let (code, stdout, stderr) = keepalive(&container, &["enable", "lingering", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = keepalive(&container, &["disable", "lingering"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_ne!(
        environment(&container, "lingering.service", "LD_PRELOAD"),
        ""
    );
    let (code, stdout, stderr) = keepalive(&container, &["disable", "lingering", "--now"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("verified: lingering.service restarted without the library"),
        "{stdout}"
    );
    assert_eq!(
        environment(&container, "lingering.service", "LD_PRELOAD"),
        ""
    );

    let etc = "/etc/systemd/system/lingering.service.d/zz-keepalive.conf";
    let (code, _, _) = keepalive(&container, &["enable", "lingering"]);
    assert_eq!(code, 0);
    let (code, stdout, stderr) = keepalive(&container, &["disable", "lingering", "--runtime"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        exists(&container, etc),
        "--runtime removed the /etc drop-in"
    );
    assert!(stdout.contains(&format!("{etc} stays")), "{stdout}");
}

/// Every hint the command prints works when pasted (issue 22): the `systemctl
/// try-restart` line for an escaped instance name, `tplx@a\x20b`, run as printed by
/// bash and by dash, restarts that very instance.
#[test]
fn printed_restart_hints_work_when_pasted() {
    let test = "printed_restart_hints_work_when_pasted";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let instance = r"tplx@a\x20b.service";
    container.write(
        "/etc/systemd/system/tplx@.service",
        "[Service]\nExecStart=/usr/bin/sleep infinity\n",
    );
    container.start(&[instance]);
    let (code, stdout, stderr) = keepalive(&container, &["enable", r"tplx@a\x20b", "--idle", "60"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("to apply it: "))
        .unwrap_or_else(|| panic!("no restart hint in {stdout}"))
        .to_string();
    for shell in ["bash", "dash"] {
        let before = container.main_pid(instance);
        let pasted = container.run(&[shell, "-c", &line]);
        assert!(pasted.status.success(), "{shell}: {line}: {pasted:?}");
        assert_ne!(
            container.main_pid(instance),
            before,
            "{shell} ran {line} and {instance} was not restarted"
        );
    }
}

/// `--now` on a service that does not stop (`TimeoutStopSec=infinity`, SIGTERM
/// ignored) says it is waiting and gives up after `--timeout`, with a clear line and
/// the service as systemd has it, instead of hanging for ever (issue 22).
#[test]
fn now_gives_up_on_a_service_that_does_not_stop() {
    let test = "now_gives_up_on_a_service_that_does_not_stop";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write(
        "/etc/systemd/system/stubborn.service",
        "[Service]\nExecStart=/bin/sh -c 'trap \"\" TERM; while :; do sleep 1; done'\n\
         TimeoutStopSec=infinity\n",
    );
    container.start(&["stubborn.service"]);
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = keepalive(
        &container,
        &["enable", "stubborn", "--now", "--timeout", "6"],
    );
    let took = started.elapsed();
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        stdout.contains("waiting for stubborn.service to restart"),
        "{stdout}"
    );
    assert!(
        stderr.contains("stubborn.service: not restarted after 6 s")
            && stderr.contains("`systemctl status stubborn.service`"),
        "{stderr}"
    );
    assert_eq!(active_state(&container, "stubborn.service"), "deactivating");
}

/// `env --format env-file` reads back the same through sh (`set -a; . FILE`) and
/// systemd's `EnvironmentFile=`, and `--format systemd` through a unit, with an
/// inherited `LD_PRELOAD` of two entries, one a path with `\`, `$`, `"`, `'` and `%`
/// in it: kept whole, character for character (issue 22).
#[test]
fn env_formats_round_trip_awkward_values() {
    let test = "env_formats_round_trip_awkward_values";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let odd = r#"/opt/o\d$d"q'u%e.so"#;
    let expected = format!("{odd} {}", library());
    let printed = |format: &str| {
        let command = keepalive_command();
        let output = container.run(&[
            "env",
            &format!("LD_PRELOAD={odd}"),
            &command,
            "env",
            "--idle",
            "43",
            "--format",
            format,
        ]);
        assert!(output.status.success(), "{format}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    container.write("/etc/odd.env", &printed("env-file"));
    let sourced = container.run_text(&[
        "sh",
        "-c",
        "set -a; . /etc/odd.env; printf '%s' \"$LD_PRELOAD\"",
    ]);
    assert_eq!(sourced, expected, "sh read /etc/odd.env differently");
    let sleeper = "[Service]\nExecStart=/usr/bin/sleep infinity\n";
    container.write(
        "/etc/systemd/system/odd-file.service",
        &format!("{sleeper}EnvironmentFile=/etc/odd.env\n"),
    );
    container.write(
        "/etc/systemd/system/odd-unit.service",
        &format!("{sleeper}{}", printed("systemd")),
    );
    container.start(&["odd-file.service", "odd-unit.service"]);
    for unit in ["odd-file.service", "odd-unit.service"] {
        assert_eq!(
            environment(&container, unit, "LD_PRELOAD"),
            expected,
            "{unit}"
        );
        assert_eq!(environment(&container, unit, "KEEPIDLE"), "43", "{unit}");
    }
}

/// `attach --unit` gives every process of a running service keepalive on its open
/// connection now, without a restart, and `detach --unit` takes it back (issue 23).
#[test]
fn attach_and_detach_a_running_service() {
    let test = "attach_and_detach_a_running_service";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write("/srv/echo-server.py", SERVER);
    echo_unit(&container, "running-echo.service", 7561, "");
    container.start(&["running-echo.service"]);
    let before = container.main_pid("running-echo.service");
    let _client = connect(&container, 7561, "running-echo.service");
    assert_eq!(
        server_timer(&container, 7561),
        None,
        "keepalive before attach"
    );
    // audit names the service and the line that fixes it, quoted to paste.
    let (code, stdout, stderr) = keepalive(&container, &["audit", "--unit", "running-echo"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "fix: keepalive attach --unit running-echo.service; \
             next start: keepalive enable running-echo.service"
        ),
        "{stdout}"
    );

    let (code, stdout, stderr) = keepalive(
        &container,
        &["attach", "--unit", "running-echo", "--idle", "61"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_idle("attach --unit", server_timer(&container, 7561), 61);
    assert_eq!(
        container.main_pid("running-echo.service"),
        before,
        "attach restarted the service"
    );

    let (code, stdout, stderr) = keepalive(&container, &["detach", "--unit", "running-echo"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        server_timer(&container, 7561),
        None,
        "keepalive after detach"
    );

    // A service whose shell starts a short-lived child after another: processes of
    // the unit end while attach and detach run, which is no failure.
    container.write(
        "/etc/systemd/system/churning.service",
        "[Service]\nExecStart=/bin/sh -c \
         '/usr/bin/python3 /srv/echo-server.py 7562 & while :; do /bin/true; done'\n",
    );
    container.start(&["churning.service"]);
    let _client = connect(&container, 7562, "churning.service");
    for round in 0..10 {
        for verb in ["attach", "detach"] {
            let (code, stdout, stderr) = keepalive(&container, &[verb, "--unit", "churning"]);
            assert_eq!(code, 0, "{verb}, round {round}: {stdout}{stderr}");
        }
    }
}

/// After the package is removed (issue 21, 22): a unit whose drop-ins name a library
/// and a command that are gone — the drop-ins `enable` and `enable --kernel` write,
/// with the paths no longer there — still starts and runs.
#[test]
fn drop_ins_outlive_the_package_removal() {
    let test = "drop_ins_outlive_the_package_removal";
    let Some(container) = Container::boot(test) else {
        return;
    };
    container.write(
        "/etc/systemd/system/orphan.service",
        "[Service]\nExecStart=/usr/bin/sleep infinity\n",
    );
    container.write(
        "/etc/systemd/system/orphan.service.d/zz-keepalive.conf",
        "[Service]\nEnvironment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/gone/libkeepalive.so.0\n\
         ExecStartPre=+-/usr/bin/gone/keepalive kernel-attach --idle 61\n",
    );
    container.start(&["orphan.service"]);
    assert_eq!(active_state(&container, "orphan.service"), "active");
}

/// What one test found wrong, each check made even after an earlier one failed, so
/// that a run against older code shows every finding that fails; asserted together
/// at the end.
#[derive(Default)]
struct Findings(std::cell::RefCell<Vec<String>>);

impl Findings {
    fn check(&self, ok: bool, what: String) {
        if !ok {
            self.0.borrow_mut().push(what);
        }
    }

    fn assert_none(self) {
        let found = self.0.into_inner();
        assert!(
            found.is_empty(),
            "{} check(s) failed:\n{}",
            found.len(),
            found.join("\n---\n")
        );
    }
}

/// `assert!`, recorded in a [`Findings`].
macro_rules! expect {
    ($findings:expr, $ok:expr $(,)?) => {
        $findings.check($ok, stringify!($ok).to_string())
    };
    ($findings:expr, $ok:expr, $($what:tt)+) => {
        $findings.check($ok, format!("{}: {}", stringify!($ok), format!($($what)+)))
    };
}

/// `assert_eq!`, recorded in a [`Findings`].
macro_rules! expect_eq {
    ($findings:expr, $left:expr, $right:expr $(,)?) => {{
        let (left, right) = (&$left, &$right);
        $findings.check(left == right, format!("{left:?} != {right:?}"))
    }};
    ($findings:expr, $left:expr, $right:expr, $($what:tt)+) => {{
        let (left, right) = (&$left, &$right);
        $findings.check(
            left == right,
            format!("{left:?} != {right:?}: {}", format!($($what)+)),
        )
    }};
}

/// The proof is about the file that runs, not a path (review 22, F13, F22): the
/// loader leaves a read-only mapping of a library it could not map as code (a noexec
/// mount), and a bind mount or `RootDirectory=` can put another file at the library's
/// path. Each exits 1 without "verified". A byte-for-byte copy bound at the path is
/// the library, and is proven.
#[test]
fn now_proves_the_library_file_not_its_path() {
    let test = "now_proves_the_library_file_not_its_path";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    container.write("/srv/echo-server.py", SERVER);
    let libz = "/usr/lib/x86_64-linux-gnu/libz.so.1";
    container.run_ok(&[
        "mkdir",
        "-p",
        "/mnt/nx",
        "/srv/ka",
        "/srv/fake",
        "/srv/copy",
    ]);
    container.run_ok(&["mount", "-t", "tmpfs", "-o", "noexec", "tmpfs", "/mnt/nx"]);
    for dir in ["/mnt/nx", "/srv/ka", "/srv/copy"] {
        container.run_ok(&["cp", &library(), &format!("{dir}/libkeepalive.so")]);
    }
    container.run_ok(&["cp", libz, "/srv/fake/libkeepalive.so"]);
    // A root with another file at the library's path, and the host's /usr bound in.
    let root = "/srv/chroot";
    for dir in ["usr", "srv/ka", "proc", "dev", "tmp"] {
        container.run_ok(&["mkdir", "-p", &format!("{root}/{dir}")]);
    }
    for (link, to) in [
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("bin", "usr/bin"),
    ] {
        container.run_ok(&["ln", "-s", to, &format!("{root}/{link}")]);
    }
    container.run_ok(&["cp", libz, &format!("{root}/srv/ka/libkeepalive.so")]);
    container.run_ok(&["cp", "/srv/echo-server.py", &format!("{root}/srv/")]);
    echo_unit(&container, "noexec.service", 7601, "");
    echo_unit(
        &container,
        "faked.service",
        7602,
        "BindReadOnlyPaths=/srv/fake:/srv/ka\n",
    );
    echo_unit(
        &container,
        "rooted.service",
        7603,
        &format!("RootDirectory={root}\nBindReadOnlyPaths=/usr\n"),
    );
    echo_unit(
        &container,
        "copied.service",
        7604,
        "BindReadOnlyPaths=/srv/copy:/srv/ka\n",
    );
    // A unit whose own KEEPALIVE=off stays in force: the library is mapped and does
    // nothing (re-review of issue 22, N6: "verified ... with the kernel's timers").
    echo_unit(
        &container,
        "offed.service",
        7605,
        "Environment=KEEPALIVE=off\n",
    );
    let units = [
        "noexec.service",
        "faked.service",
        "rooted.service",
        "copied.service",
        "offed.service",
    ];
    container.start(&units);
    let enable = |unit: &str, library: &str| {
        keepalive(
            &container,
            &[
                "enable",
                unit,
                "--library",
                library,
                "--idle",
                "44",
                "--now",
            ],
        )
    };

    let (code, stdout, stderr) = enable("noexec", "/mnt/nx/libkeepalive.so");
    expect_eq!(findings, code, 1, "noexec: {stdout}{stderr}");
    expect!(findings, !stdout.contains("verified"), "noexec: {stdout}");
    expect!(
        findings,
        stderr.contains("cannot be preloaded") || stderr.contains("only as data"),
        "noexec: {stderr}"
    );
    for unit in ["faked", "rooted"] {
        let (code, stdout, stderr) = enable(unit, "/srv/ka/libkeepalive.so");
        expect_eq!(findings, code, 1, "{unit}: {stdout}{stderr}");
        expect!(findings, !stdout.contains("verified"), "{unit}: {stdout}");
        expect!(
            findings,
            stderr.contains("loaded another file at /srv/ka/libkeepalive.so"),
            "{unit}: {stderr}"
        );
    }
    let (code, stdout, stderr) = keepalive(
        &container,
        &[
            "enable",
            "offed",
            "--library",
            "/srv/ka/libkeepalive.so",
            "--now",
        ],
    );
    expect_eq!(findings, code, 1, "offed: {stdout}{stderr}");
    expect!(findings, !stdout.contains("verified"), "offed: {stdout}");
    expect!(
        findings,
        stderr.contains("it carries KEEPALIVE=off"),
        "offed: {stderr}"
    );
    let (code, stdout, stderr) = enable("copied", "/srv/ka/libkeepalive.so");
    expect_eq!(findings, code, 0, "copied: {stdout}{stderr}");
    expect!(
        findings,
        stdout.contains("verified: copied.service"),
        "{stdout}"
    );
    let _client = connect(&container, 7604, "copied.service");
    assert_idle(
        "a copy bound at the path",
        server_timer(&container, 7604),
        44,
    );
    findings.assert_none();
}

/// `enable` and `disable` change only what `enable` wrote (review 22, F5, F6, F16,
/// F20): an operator's own `zz-keepalive.conf` (a file or a link), a line added to ours, and a
/// `UNIT.service.d` that is a symbolic link to a directory other units share are left
/// alone with exit status 1; a directory that was there before stays after `disable`,
/// one that `enable` made goes.
#[test]
fn enable_and_disable_leave_an_operators_files_alone() {
    let test = "enable_and_disable_leave_an_operators_files_alone";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    let dir = "/etc/systemd/system";
    for unit in [
        "own", "linked", "shared1", "shared2", "added", "premade", "fresh",
    ] {
        echo_unit(&container, &format!("{unit}.service"), 7611, "");
    }
    let operators = "[Service]\n# by hand\nEnvironment=LD_PRELOAD=/x.so\nLimitNOFILE=65536\n";
    container.write(&format!("{dir}/own.service.d/zz-keepalive.conf"), operators);
    container.write("/srv/important.conf", operators);
    container.run_ok(&["mkdir", "-p", &format!("{dir}/linked.service.d")]);
    let link = format!("{dir}/linked.service.d/zz-keepalive.conf");
    container.run_ok(&["ln", "-s", "/srv/important.conf", &link]);
    container.write(
        "/etc/systemd/shared.d/10-common.conf",
        "[Service]\nLimitNOFILE=4096\n",
    );
    for unit in ["shared1", "shared2"] {
        container.run_ok(&[
            "ln",
            "-s",
            "/etc/systemd/shared.d",
            &format!("{dir}/{unit}.service.d"),
        ]);
    }
    container.run_ok(&["mkdir", "-p", &format!("{dir}/premade.service.d")]);
    container.run_ok(&["systemctl", "daemon-reload"]);
    let enable = |unit: &str| keepalive(&container, &["enable", unit, "--idle", "45"]);
    let disable = |unit: &str| keepalive(&container, &["disable", unit]);

    let (code, stdout, stderr) = enable("own");
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(
        findings,
        stderr.contains("not written by keepalive enable"),
        "{stderr}"
    );
    expect_eq!(
        findings,
        container.read(&format!("{dir}/own.service.d/zz-keepalive.conf")),
        operators
    );

    let (code, stdout, stderr) = enable("linked");
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, stderr.contains("is a symbolic link"), "{stderr}");
    expect!(
        findings,
        container.run(&["test", "-L", &link]).status.success(),
        "the operator's link was replaced"
    );

    let (code, stdout, stderr) = enable("shared1");
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, stderr.contains("is a symbolic link"), "{stderr}");
    expect!(
        findings,
        !exists(&container, "/etc/systemd/shared.d/zz-keepalive.conf")
    );
    expect_eq!(
        findings,
        environment_of_unit(&container, "shared2.service"),
        ""
    );
    // A drop-in of ours there (from an earlier version) is not removed for all either.
    let (code, _, _) = enable("fresh");
    expect_eq!(findings, code, 0);
    container.run_ok(&[
        "cp",
        &format!("{dir}/fresh.service.d/zz-keepalive.conf"),
        "/etc/systemd/shared.d/zz-keepalive.conf",
    ]);
    let (code, stdout, stderr) = disable("shared1");
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, stderr.contains("is a symbolic link"), "{stderr}");
    expect!(
        findings,
        exists(&container, "/etc/systemd/shared.d/zz-keepalive.conf")
    );

    let added = format!("{dir}/added.service.d/zz-keepalive.conf");
    let (code, _, _) = enable("added");
    expect_eq!(findings, code, 0);
    let text = container.read(&added) + "LimitNOFILE=65536\n";
    container.write(&added, &text);
    for (verb, (code, stdout, stderr)) in
        [("enable", enable("added")), ("disable", disable("added"))]
    {
        expect_eq!(findings, code, 1, "{verb}: {stdout}{stderr}");
        expect!(
            findings,
            stderr.contains("`LimitNOFILE=65536`"),
            "{verb}: {stderr}"
        );
        expect_eq!(findings, container.read(&added), text, "{verb} changed it");
    }

    for unit in ["premade", "fresh"] {
        if unit == "premade" {
            let (code, stdout, stderr) = enable(unit);
            expect_eq!(findings, code, 0, "{stdout}{stderr}");
        }
        let (code, stdout, stderr) = disable(unit);
        expect_eq!(findings, code, 0, "{unit}: {stdout}{stderr}");
        expect!(
            findings,
            !exists(
                &container,
                &format!("{dir}/{unit}.service.d/zz-keepalive.conf")
            )
        );
    }
    expect!(
        findings,
        exists(&container, &format!("{dir}/premade.service.d"))
    );
    expect!(
        findings,
        !exists(&container, &format!("{dir}/fresh.service.d"))
    );
    findings.assert_none();
}

/// The `Environment=` systemd gives `unit` (`systemctl show -p Environment`).
fn environment_of_unit(container: &Container, unit: &str) -> String {
    container
        .run_ok(&["systemctl", "show", "-p", "Environment", "--value", unit])
        .trim()
        .to_string()
}

/// What would undo the drop-in after it is applied is refused before anything is
/// written (review 22, F3, F9, F12): the unit's `UnsetEnvironment=LD_PRELOAD`, a
/// later drop-in's `Environment=` that resets every variable, later drop-ins in the
/// prefix (`web-.service.d`) and top-level (`service.d`) directories, and a sandbox
/// that hides the file a symbolic link `--library` leads to.
#[test]
fn enable_refuses_what_would_undo_it_later() {
    let test = "enable_refuses_what_would_undo_it_later";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    let dir = "/etc/systemd/system";
    echo_unit(
        &container,
        "unset.service",
        7621,
        "UnsetEnvironment=LD_PRELOAD\n",
    );
    echo_unit(&container, "reset.service", 7622, "");
    container.write(
        &format!("{dir}/reset.service.d/zzz-reset.conf"),
        "[Service]\nEnvironment=\n",
    );
    echo_unit(&container, "web-a.service", 7623, "");
    container.write(
        &format!("{dir}/web-.service.d/zzz-mine.conf"),
        "[Service]\nEnvironment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libz.so.1\n",
    );
    echo_unit(&container, "linked.service", 7624, "ProtectHome=yes\n");
    container.run_ok(&["mkdir", "-p", "/root/ka"]);
    container.run_ok(&["cp", &library(), "/root/ka/libkeepalive.so"]);
    container.run_ok(&["ln", "-s", "/root/ka/libkeepalive.so", "/srv/linked.so"]);
    echo_unit(&container, "any.service", 7625, "");
    container.run_ok(&["systemctl", "daemon-reload"]);
    let refused = |unit: &str, library: &str, why: &str| {
        let (code, stdout, stderr) = keepalive(
            &container,
            &["enable", unit, "--library", library, "--idle", "46"],
        );
        expect_eq!(findings, code, 1, "{unit}: {stdout}{stderr}");
        expect!(findings, stderr.contains(why), "{unit}: {stderr}");
        expect!(
            findings,
            !exists(
                &container,
                &format!("{dir}/{unit}.service.d/zz-keepalive.conf")
            ),
            "{unit}: a drop-in was written"
        );
    };
    let lib = library();
    refused("unset", &lib, "UnsetEnvironment=LD_PRELOAD");
    refused("reset", &lib, "zzz-reset.conf resets Environment=");
    refused(
        "web-a",
        &lib,
        "web-.service.d/zzz-mine.conf sets LD_PRELOAD",
    );
    refused(
        "linked",
        "/srv/linked.so",
        "ProtectHome=yes hides /root from the service (where /srv/linked.so leads)",
    );
    // Last: it applies to every service.
    container.write(
        &format!("{dir}/service.d/zzzz-all.conf"),
        "[Service]\nEnvironment=KEEPIDLE=5\n",
    );
    container.run_ok(&["systemctl", "daemon-reload"]);
    refused("any", &lib, "service.d/zzzz-all.conf sets KEEPIDLE");
    findings.assert_none();
}

/// systemd applies one file named `zz-keepalive.conf` per unit (review 22, F1, F10,
/// F23): enabling an instance after its template, under /etc after `--runtime`, or
/// under the real name after an alias's drop-in keeps the hidden drop-in's settings
/// and says so; a drop-in under /run that the template's would hide is refused, as is
/// hiding a file of that name that `enable` did not write.
#[test]
fn re_enable_elsewhere_keeps_the_hidden_drop_ins_settings() {
    let test = "re_enable_elsewhere_keeps_the_hidden_drop_ins_settings";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    let dir = "/etc/systemd/system";
    for unit in ["tp@.service", "rt.service", "fresh.service", "tq@.service"] {
        echo_unit(&container, unit, 7631, "");
    }
    echo_unit(
        &container,
        "bl.service",
        7631,
        "[Install]\nAlias=bl2.service\n",
    );
    container.write(
        &format!("{dir}/tq@.service.d/zz-keepalive.conf"),
        "[Service]\nEnvironment=KEEPCNT=2\n",
    );
    container.run_ok(&["systemctl", "daemon-reload"]);
    container.run_ok(&["systemctl", "enable", "bl.service"]);
    let enable = |args: &[&str]| {
        let mut all = vec!["enable"];
        all.extend_from_slice(args);
        keepalive(&container, &all)
    };
    let applied = |unit: &str, variables: &[&str]| {
        let environment = environment_of_unit(&container, unit);
        for variable in variables {
            expect!(
                findings,
                environment.split(' ').any(|v| v == *variable),
                "{unit}: {variable} not in {environment}"
            );
        }
    };

    let (code, _, stderr) = enable(&["tp@", "--idle", "62"]);
    expect_eq!(findings, code, 0, "{stderr}");
    let (code, stdout, stderr) = enable(&["tp@x1", "--interval", "11"]);
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    expect!(
        findings,
        stderr.contains(&format!(
            "keeps KEEPIDLE=62 from {dir}/tp@.service.d/zz-keepalive.conf"
        )),
        "{stderr}"
    );
    applied("tp@x1.service", &["KEEPIDLE=62", "KEEPINTVL=11"]);
    let (code, stdout, stderr) = enable(&["tp@x2", "--runtime", "--count", "4"]);
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, stderr.contains("takes precedence"), "{stderr}");
    expect!(
        findings,
        !exists(&container, "/run/systemd/system/tp@x2.service.d")
    );

    let (code, _, stderr) = enable(&["rt", "--runtime", "--idle", "74"]);
    expect_eq!(findings, code, 0, "{stderr}");
    let (code, stdout, stderr) = enable(&["rt", "--interval", "9"]);
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    expect!(
        findings,
        stderr.contains("keeps KEEPIDLE=74 from /run/"),
        "{stderr}"
    );
    applied("rt.service", &["KEEPIDLE=74", "KEEPINTVL=9"]);

    // A drop-in of ours under the alias's name, as an earlier version wrote it.
    let (code, _, stderr) = enable(&["fresh", "--idle", "33", "--count", "3"]);
    expect_eq!(findings, code, 0, "{stderr}");
    container.run_ok(&["mkdir", "-p", &format!("{dir}/bl2.service.d")]);
    container.run_ok(&[
        "cp",
        &format!("{dir}/fresh.service.d/zz-keepalive.conf"),
        &format!("{dir}/bl2.service.d/zz-keepalive.conf"),
    ]);
    let (code, stdout, stderr) = enable(&["bl", "--interval", "4"]);
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    applied("bl.service", &["KEEPIDLE=33", "KEEPCNT=3", "KEEPINTVL=4"]);

    let (code, stdout, stderr) = enable(&["tq@y", "--idle", "47"]);
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, stderr.contains("would hide it"), "{stderr}");
    expect!(
        findings,
        !exists(&container, &format!("{dir}/tq@y.service.d"))
    );
    findings.assert_none();
}

/// `--now` waits for the restart systemd actually does (review 22, F4, F11): a unit on
/// its way down with a restart queued is not "left stopped" (the restart is waited
/// for, here until `--timeout`), and a `Type=oneshot` with `RemainAfterExit=yes`
/// is seen restarted at once, with no process left to prove.
#[test]
fn now_follows_a_queued_restart_and_a_oneshot() {
    let test = "now_follows_a_queued_restart_and_a_oneshot";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    container.write("/srv/echo-server.py", SERVER);
    echo_unit(
        &container,
        "slow.service",
        7641,
        "ExecStop=/bin/sleep 1000\nTimeoutStopSec=infinity\n",
    );
    container.write(
        "/etc/systemd/system/once.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    );
    container.start(&["slow.service", "once.service"]);
    container.run_ok(&["systemctl", "restart", "--no-block", "slow.service"]);
    let (code, stdout, stderr) = keepalive(
        &container,
        &["enable", "slow", "--idle", "48", "--now", "--timeout", "3"],
    );
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, !stdout.contains("left stopped"), "{stdout}");
    expect!(
        findings,
        stderr.contains("slow.service: not restarted after 3 s"),
        "{stderr}"
    );
    container.run_ok(&["systemctl", "kill", "--signal=KILL", "slow.service"]);

    let (code, stdout, stderr) = keepalive(
        &container,
        &["enable", "once", "--idle", "48", "--now", "--timeout", "60"],
    );
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, !stderr.contains("not restarted"), "{stderr}");
    expect!(
        findings,
        stderr.contains("no main process to check (ActiveState=active, SubState=exited)"),
        "{stderr}"
    );
    findings.assert_none();
}

/// Paths and names that a unit file or a shell line would take apart (review 22,
/// F19, F21, F25): `--kernel` run from a directory with a space writes its path as
/// one word of `ExecStartPre=`; the hint for a unit named `-x` works when pasted; a
/// `--library` whose path is not UTF-8 is refused before anything is written.
#[test]
fn awkward_paths_and_names_are_carried_or_refused() {
    let test = "awkward_paths_and_names_are_carried_or_refused";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    container.write("/srv/echo-server.py", SERVER);
    let dir = "/etc/systemd/system";
    echo_unit(&container, "spaced.service", 7651, "");
    echo_unit(&container, "-x.service", 7652, "");
    echo_unit(&container, "latin.service", 7653, "");
    container.run_ok(&["systemctl", "daemon-reload"]);
    container.run_ok(&["systemctl", "start", "--", "-x.service"]);

    let odd = "/srv/odd dir/keepalive";
    container.run_ok(&["mkdir", "-p", "/srv/odd dir"]);
    container.run_ok(&["cp", &keepalive_command(), odd]);
    let output = container.run(&[odd, "enable", "spaced", "--kernel", "--idle", "60"]);
    expect!(findings, output.status.success(), "{output:?}");
    container.run_ok(&["systemctl", "daemon-reload"]);
    let pre = container.run_ok(&["systemctl", "show", "-p", "ExecStartPre", "spaced.service"]);
    expect!(findings, pre.contains(&format!("path={odd} ;")), "{pre}");

    let (code, stdout, stderr) = keepalive(&container, &["enable", "--idle", "61", "--", "-x"]);
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("to apply it: "))
        .unwrap_or_else(|| panic!("no restart hint in {stdout}"))
        .to_string();
    let main_pid = || {
        container.run_ok(&[
            "systemctl",
            "show",
            "-p",
            "MainPID",
            "--value",
            "--",
            "-x.service",
        ])
    };
    let before = main_pid();
    let pasted = container.run(&["sh", "-c", &line]);
    expect!(findings, pasted.status.success(), "{line}: {pasted:?}");
    expect!(
        findings,
        main_pid() != before,
        "{line} did not restart -x.service"
    );

    let script = format!(
        "bad=\"$(printf '/srv/bad\\377.so')\"; cp {} \"$bad\"; exec {} enable latin --library \"$bad\" --idle 62",
        library(),
        keepalive_command()
    );
    let output = container.run(&["sh", "-c", &script]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    expect_eq!(findings, output.status.code(), Some(2), "{output:?}");
    expect!(findings, stderr.contains("not UTF-8"), "{stderr}");
    expect!(
        findings,
        !exists(&container, &format!("{dir}/latin.service.d"))
    );
    findings.assert_none();
}

/// A service started by a script that leaves a listener in the background, then
/// execs the echo server on PORT: with `KillMode=process` the background one outlives
/// every restart.
const LEAVES_A_LISTENER: &str = "\
#!/bin/sh
/usr/bin/python3 /srv/echo-server.py 0 &
exec /usr/bin/python3 /srv/echo-server.py \"$1\"
";

/// The proof covers every process of the unit's cgroup that holds TCP sockets
/// (review 22, F14): with `KillMode=process`, a listener left from before the restart
/// has no library after `enable --now`, and one still has it after `disable --now`;
/// each exits 1 and names it.
#[test]
fn now_judges_processes_left_from_before_the_restart() {
    let test = "now_judges_processes_left_from_before_the_restart";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    container.write("/srv/echo-server.py", SERVER);
    container.write("/srv/leaves.sh", LEAVES_A_LISTENER);
    container.run_ok(&["chmod", "+x", "/srv/leaves.sh"]);
    container.write(
        "/etc/systemd/system/leaves.service",
        "[Service]\nKillMode=process\nExecStart=/srv/leaves.sh 7661\n",
    );
    container.start(&["leaves.service"]);
    let (code, stdout, stderr) =
        keepalive(&container, &["enable", "leaves", "--idle", "49", "--now"]);
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, !stdout.contains("verified"), "{stdout}");
    expect!(
        findings,
        stderr.contains("left from before the restart"),
        "{stderr}"
    );
    let (code, stdout, stderr) = keepalive(&container, &["disable", "leaves", "--now"]);
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, !stdout.contains("verified"), "{stdout}");
    expect!(
        findings,
        stderr.contains("left from before the restart"),
        "{stderr}"
    );
    findings.assert_none();
}

/// A preload the service inherits from the manager's environment (`systemctl
/// set-environment`) is kept in the drop-in's `LD_PRELOAD`, which replaces it, and
/// said (review 22, F15).
#[test]
fn enable_keeps_the_managers_preload() {
    let test = "enable_keeps_the_managers_preload";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    container.write("/srv/echo-server.py", SERVER);
    echo_unit(&container, "inherits.service", 7671, "");
    container.run_ok(&[
        "systemctl",
        "set-environment",
        &format!("LD_PRELOAD={OWN_PRELOAD}"),
    ]);
    container.start(&["inherits.service"]);
    let (code, stdout, stderr) = keepalive(&container, &["enable", "inherits", "--now"]);
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    expect!(
        findings,
        stderr.contains(&format!(
            "keeps LD_PRELOAD={OWN_PRELOAD} of the service manager's"
        )),
        "{stderr}"
    );
    let preload = environment(&container, "inherits.service", "LD_PRELOAD");
    let entries: Vec<&str> = preload.split([' ', ':']).collect();
    expect!(
        findings,
        entries.contains(&OWN_PRELOAD) && entries.contains(&library().as_str()),
        "{preload}"
    );
    findings.assert_none();
}

/// `disable` removes the drop-in of a unit whose file is gone (its package removed):
/// left, it would preload the unit installed again (review 22, F17).
#[test]
fn disable_removes_the_drop_in_of_a_removed_unit() {
    let test = "disable_removes_the_drop_in_of_a_removed_unit";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    let unit = "/etc/systemd/system/gone.service";
    let text = "[Service]\nExecStart=/usr/bin/sleep infinity\n";
    container.write(unit, text);
    container.run_ok(&["systemctl", "daemon-reload"]);
    let (code, _, stderr) = keepalive(&container, &["enable", "gone", "--idle", "50"]);
    expect_eq!(findings, code, 0, "{stderr}");
    container.run_ok(&["rm", unit]);
    container.run_ok(&["systemctl", "daemon-reload"]);
    let (code, stdout, stderr) = keepalive(&container, &["disable", "gone"]);
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    expect!(
        findings,
        !exists(&container, "/etc/systemd/system/gone.service.d")
    );
    container.write(unit, text);
    container.run_ok(&["systemctl", "daemon-reload"]);
    expect_eq!(
        findings,
        environment_of_unit(&container, "gone.service"),
        ""
    );
    let (code, _, _) = keepalive(&container, &["disable", "never-was"]);
    expect_eq!(findings, code, 2);
    findings.assert_none();
}

/// `check --unit` on an instance enabled through its template judges the template's
/// drop-in instead of saying "not enabled" (review 22, F2).
#[test]
fn check_unit_follows_an_instance_to_its_template() {
    let test = "check_unit_follows_an_instance_to_its_template";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    echo_unit(&container, "tc@.service", 7681, "");
    container.run_ok(&["systemctl", "daemon-reload"]);
    let (code, _, stderr) = keepalive(&container, &["enable", "tc@", "--idle", "63"]);
    expect_eq!(findings, code, 0, "{stderr}");
    let (code, stdout, stderr) = keepalive(&container, &["check", "--unit", "tc@x2"]);
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    expect!(
        findings,
        stdout.contains("enabled through its template tc@.service"),
        "{stdout}"
    );
    expect!(findings, stdout.contains("up to date"), "{stdout}");
    findings.assert_none();
}

/// Enables of one unit run at the same time each keep what the others set: the
/// read, keep and write of the drop-in is done under a lock (review 22, F18). Five
/// rounds of three at once; without the lock, one is lost in most rounds.
#[test]
fn concurrent_enables_keep_each_others_settings() {
    let test = "concurrent_enables_keep_each_others_settings";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    echo_unit(&container, "busy.service", 7691, "");
    container.run_ok(&["systemctl", "daemon-reload"]);
    let command = keepalive_command();
    for round in 1..=5 {
        let script = format!(
            "{command} enable busy --idle 4{round} & {command} enable busy --interval 5{round} & \
             {command} enable busy --count {round} & wait"
        );
        container.run(&["sh", "-c", &script]);
        let text = container.read("/etc/systemd/system/busy.service.d/zz-keepalive.conf");
        for wanted in [
            format!("KEEPIDLE=4{round}"),
            format!("KEEPINTVL=5{round}"),
            format!("KEEPCNT={round}"),
        ] {
            expect!(
                findings,
                text.contains(&wanted),
                "round {round}: {wanted} lost:\n{text}"
            );
        }
    }
    findings.assert_none();
}

/// A transient unit (`systemd-run`) is gone when it stops; a drop-in under /etc would
/// preload the next unit of its name, so `enable` refuses it without `--runtime`, and
/// once it is gone `disable --runtime` still removes the /run one (review 22, F24).
#[test]
fn transient_units_get_a_runtime_drop_in_only() {
    let test = "transient_units_get_a_runtime_drop_in_only";
    let Some(container) = Container::boot(test) else {
        return;
    };
    let findings = Findings::default();
    container.run_ok(&[
        "systemd-run",
        "--unit=passing",
        "/usr/bin/sleep",
        "infinity",
    ]);
    let (code, stdout, stderr) = keepalive(&container, &["enable", "passing", "--idle", "64"]);
    expect_eq!(findings, code, 1, "{stdout}{stderr}");
    expect!(findings, stderr.contains("a transient unit"), "{stderr}");
    expect!(
        findings,
        !exists(&container, "/etc/systemd/system/passing.service.d"),
        "a drop-in under /etc was written"
    );
    let (code, stdout, stderr) = keepalive(
        &container,
        &["enable", "passing", "--idle", "64", "--runtime"],
    );
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    container.run_ok(&["systemctl", "stop", "passing.service"]);
    let (code, stdout, stderr) = keepalive(&container, &["disable", "passing", "--runtime"]);
    expect_eq!(findings, code, 0, "{stdout}{stderr}");
    expect!(
        findings,
        !exists(
            &container,
            "/run/systemd/system/passing.service.d/zz-keepalive.conf"
        ),
        "{stdout}"
    );
    findings.assert_none();
}

/// With `--root`, the library is checked as without it: a file that is no ELF shared
/// object defining `socket` is refused with exit status 2 and nothing is written into
/// the image (review 22, F7). No systemd is needed: the tree is a directory here.
#[test]
fn enable_root_refuses_a_library_that_cannot_be_preloaded() {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("enable-root-f7");
    let _ = std::fs::remove_dir_all(&root);
    let system = root.join("etc/systemd/system");
    std::fs::create_dir_all(&system).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(
        system.join("rx.service"),
        "[Service]\nExecStart=/usr/bin/sleep infinity\n",
    )
    .unwrap();
    std::fs::write(root.join("usr/lib/text.so"), "hello\n").unwrap();
    std::fs::copy(
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        root.join("usr/lib/z.so"),
    )
    .unwrap();
    let findings = Findings::default();
    for (library, why) in [
        ("/usr/lib/text.so", "not an ELF file"),
        ("/usr/lib/z.so", "socket"),
    ] {
        let output = std::process::Command::new(common::keepalive())
            .args([
                "enable",
                "rx",
                "--idle",
                "69",
                "--library",
                library,
                "--root",
            ])
            .arg(&root)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        expect_eq!(
            findings,
            output.status.code(),
            Some(2),
            "{library}: {stderr}"
        );
        expect!(findings, stderr.contains(why), "{library}: {stderr}");
        expect!(
            findings,
            !system.join("rx.service.d").exists(),
            "{library}: a drop-in was written"
        );
    }
    findings.assert_none();
}
