//! The release artifacts packaging/dist writes into target/dist/, used as an operator
//! uses them: the .deb installed with dpkg beside Debian's own libkeepalive0, the .rpm
//! installed into a scratch root, the tarball unpacked into a prefix; the man pages,
//! the README's variable table against libkeepalive(7), the version everywhere, and
//! packaging/dist's own failures.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The package name, the same in the .deb and the .rpm.
const DEB_PACKAGE: &str = "libkeepalive-rs";
/// Where the .deb puts the library: the Debian multiarch directory.
const DEB_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/libkeepalive.so.0";

fn artifact(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn deb(dir: &Path) -> PathBuf {
    artifact(dir, &format!("{DEB_PACKAGE}_{VERSION}_amd64.deb"))
}

fn rpm(dir: &Path) -> PathBuf {
    artifact(dir, &format!("{DEB_PACKAGE}-{VERSION}-1.x86_64.rpm"))
}

fn tarball(dir: &Path) -> PathBuf {
    artifact(
        dir,
        &format!("libkeepalive-{VERSION}-x86_64-linux-gnu.tar.gz"),
    )
}

/// Runs `command`, asserts it succeeded, returns its stdout.
fn stdout_of(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch directory");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The probe example with `library` preloaded: every socket it makes must read back
/// the variables given.
fn assert_library_configures_sockets(library: &Path) {
    let vars = [
        ("KEEPIDLE", "61"),
        ("KEEPINTVL", "11"),
        ("KEEPCNT", "7"),
        ("TCP_USER_TIMEOUT", "30001"),
    ];
    let output = common::preloaded(common::probe_example(), &vars)
        .env("LD_PRELOAD", library)
        .output()
        .expect("run probe");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for socket in ["IPv4 client", "IPv6 accepted"] {
        assert_eq!(
            common::probe_row(&stdout, socket),
            ["on", "61", "11", "7", "30001"],
            "{} {socket}",
            library.display()
        );
    }
}

/// The command installed at `command` finds `library` on its own: `keepalive env`
/// names it in LD_PRELOAD.
fn assert_command_finds(command: &Path, library: &Path) {
    let stdout = stdout_of(Command::new(command).args(["env", "--idle", "45"]));
    assert_eq!(
        stdout,
        format!(
            "export LD_PRELOAD={}\nexport KEEPIDLE=45\n",
            library.display()
        )
    );
}

/// Where each package puts the completions, under its root: bash's, fish's, zsh's.
fn completion_files(zsh: &str) -> [String; 3] {
    [
        "usr/share/bash-completion/completions/keepalive".to_string(),
        "usr/share/fish/vendor_completions.d/keepalive.fish".to_string(),
        format!("{zsh}/_keepalive"),
    ]
}

/// The installed bash completion, sourced into a real bash and asked what follows
/// `keepalive run --mode`, as readline asks it: the three modes.
fn assert_bash_completion_works(script: &Path) {
    let ask = format!(
        "source {}; COMP_WORDS=(keepalive run --mode ''); COMP_CWORD=3; \
         COMP_LINE='keepalive run --mode '; COMP_POINT=${{#COMP_LINE}}; \
         _keepalive keepalive '' --mode; echo \"${{COMPREPLY[*]}}\"",
        script.display()
    );
    let stdout = stdout_of(Command::new("bash").args(["-c", &ask]));
    assert_eq!(stdout.trim(), "on skip off", "{}", script.display());
}

/// The file the dynamic loader maps for the bare name `name` in LD_PRELOAD, read from
/// a program's own /proc/self/maps.
fn loaded_for(name: &str) -> String {
    // What the system's loader finds: cargo test puts target/debug and its deps on
    // LD_LIBRARY_PATH, where a debug build of the library lies.
    let maps = stdout_of(
        Command::new("cat")
            .arg("/proc/self/maps")
            .env("LD_PRELOAD", name)
            .env_remove("LD_LIBRARY_PATH"),
    );
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.contains("libkeepalive"))
        .collect();
    files.dedup();
    assert_eq!(files.len(), 1, "LD_PRELOAD={name} maps {files:?}");
    std::fs::canonicalize(files[0])
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| files[0].to_string())
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"ii"))
}

fn dpkg(args: &[&str]) {
    stdout_of(
        Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    );
}

/// Purges the packages this test installed, whatever happened.
struct Installed(Vec<&'static str>);

impl Drop for Installed {
    fn drop(&mut self) {
        for package in &self.0 {
            let _ = Command::new("dpkg")
                .args(["-P", package])
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// The rows of the demo's table: socket name -> [SO_KEEPALIVE, idle, intvl, cnt].
fn demo_rows(stdout: &str) -> BTreeMap<String, Vec<String>> {
    stdout
        .lines()
        .filter(|line| line.starts_with("client") || line.starts_with("accepted"))
        .map(|line| {
            let mut cells = line.split_whitespace().map(String::from);
            (cells.next().unwrap(), cells.collect())
        })
        .collect()
}

/// dpkg -i beside Debian's own libkeepalive0 (the C original, /usr/lib), the README's
/// demo against the installed library, the man pages found by man -w, the command
/// finding the library, then dpkg -r and -P leave nothing the package installed.
#[test]
fn deb_installs_beside_debians_libkeepalive0_works_and_removes_cleanly() {
    let test = "deb_installs_beside_debians_libkeepalive0_works_and_removes_cleanly";
    if !is_root() {
        common::skip(test, "dpkg -i needs root");
        return;
    }
    if !common::have(test, "dpkg") || !common::have(test, "man") || !common::have(test, "python3") {
        return;
    }
    if dpkg_installed(DEB_PACKAGE) {
        common::skip(
            test,
            "libkeepalive-rs is installed on this machine; not touching it",
        );
        return;
    }
    let Some(dist) = common::dist(test) else {
        return;
    };
    let Some(debian) = common::debian_packages(test, "bullseye", &["libkeepalive0"]) else {
        return;
    };
    let mut installed = Installed(Vec::new());
    if !dpkg_installed("libkeepalive0") {
        installed.0.push("libkeepalive0");
        dpkg(&["-i", debian.deb("libkeepalive0").to_str().unwrap()]);
    }
    let original = Path::new("/usr/lib/libkeepalive.so");
    assert!(original.is_file(), "Debian's libkeepalive0 did not install");

    let deb = deb(dist);
    installed.0.insert(0, DEB_PACKAGE);
    let listed = stdout_of(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let paths: Vec<PathBuf> = listed
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(|path| PathBuf::from(path.trim_start_matches('.')))
        .filter(|path| path != Path::new("/"))
        .collect();
    let existed_before: Vec<bool> = paths.iter().map(|path| path.exists()).collect();
    let theirs = std::fs::canonicalize(original).expect("Debian's library");
    let before: Vec<String> = ["libkeepalive.so.0", "libkeepalive.so"]
        .into_iter()
        .filter(|name| Path::new("/usr/lib").join(name).exists())
        .map(loaded_for)
        .collect();
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(dpkg_installed(DEB_PACKAGE) && dpkg_installed("libkeepalive0"));
    assert!(Path::new(DEB_LIBRARY).is_file() && original.is_file());
    // Declared (Provides: libkeepalive0, packaging/debian/control): while both are
    // installed the bare names load this package's library, the multiarch directory
    // coming first in ld.so.cache; full paths load each.
    for name in ["libkeepalive.so.0", "libkeepalive.so"] {
        assert_eq!(
            loaded_for(name),
            DEB_LIBRARY,
            "bare {name} with both installed"
        );
    }
    assert_eq!(
        loaded_for(&theirs.display().to_string()),
        theirs.display().to_string()
    );
    let control = stdout_of(Command::new("dpkg-query").args(["-s", DEB_PACKAGE]));
    assert!(control.contains("\nProvides: libkeepalive0\n"), "{control}");
    for file in completion_files("usr/share/zsh/vendor-completions") {
        assert!(
            Path::new("/").join(&file).is_file(),
            "/{file} not installed"
        );
    }
    if common::have(test, "bash") {
        assert_bash_completion_works(Path::new(
            "/usr/share/bash-completion/completions/keepalive",
        ));
    }

    // The README's demo, with the installed path.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.py");
    let vars = [("KEEPIDLE", "60"), ("KEEPINTVL", "10"), ("KEEPCNT", "6")];
    let stdout = stdout_of(
        common::preloaded("python3", &vars)
            .env("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libkeepalive.so")
            .arg(&demo),
    );
    let rows = demo_rows(&stdout);
    let configured: Vec<String> = ["on", "60", "10", "6"].map(String::from).to_vec();
    for socket in ["client", "accepted"] {
        assert_eq!(rows.get(socket), Some(&configured), "{socket}\n{stdout}");
    }
    assert!(stdout.contains("timer:(keepalive,"), "{stdout}");

    for (page, path) in [
        ("libkeepalive", "/usr/share/man/man7/libkeepalive.7.gz"),
        ("keepalive", "/usr/share/man/man1/keepalive.1.gz"),
    ] {
        assert_eq!(
            stdout_of(Command::new("man").args(["-w", page])).trim(),
            path
        );
    }
    assert_command_finds(Path::new("/usr/bin/keepalive"), Path::new(DEB_LIBRARY));

    dpkg(&["-r", DEB_PACKAGE]);
    // Removed, the bare names are Debian's library's again, as before.
    let after: Vec<String> = ["libkeepalive.so.0", "libkeepalive.so"]
        .into_iter()
        .filter(|name| Path::new("/usr/lib").join(name).exists())
        .map(loaded_for)
        .collect();
    assert_eq!(after, before, "bare names after dpkg -r");
    dpkg(&["-P", DEB_PACKAGE]);
    installed.0.retain(|package| *package != DEB_PACKAGE);
    assert!(!dpkg_installed(DEB_PACKAGE));
    for (path, existed) in paths.iter().zip(existed_before) {
        assert!(
            existed || !path.exists(),
            "{} is left after dpkg -P",
            path.display()
        );
    }
    let records: Vec<String> = std::fs::read_dir("/var/lib/dpkg/info")
        .expect("read dpkg's database")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&format!("{DEB_PACKAGE}.")))
        .collect();
    assert_eq!(records, Vec::<String>::new(), "dpkg still holds records");
    assert!(
        original.is_file() && dpkg_installed("libkeepalive0"),
        "removing libkeepalive-rs touched Debian's libkeepalive0"
    );
}

#[test]
fn deb_is_lintian_clean() {
    let test = "deb_is_lintian_clean";
    if !common::have(test, "lintian") {
        return;
    }
    let Some(dist) = common::dist(test) else {
        return;
    };
    let output = Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(deb(dist))
        .output()
        .expect("run lintian");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    let complaints: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("E:") || line.starts_with("W:"))
        .collect();
    assert_eq!(complaints, Vec::<&str>::new());
}

/// Every path the .rpm installs, in the order `rpm -qlp` lists them.
fn expected_rpm_files() -> Vec<String> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let pages = std::fs::read_dir(docs).unwrap().map(|entry| {
        let name = entry.unwrap().file_name();
        format!(
            "/usr/share/doc/libkeepalive-rs/docs/{}",
            name.to_string_lossy()
        )
    });
    ["/usr/share/doc/libkeepalive-rs/docs".to_string()]
        .into_iter()
        .chain(pages)
        .chain(
            [
                "/usr/bin/keepalive",
                "/usr/lib64/libkeepalive.so",
                "/usr/lib64/libkeepalive.so.0",
                "/usr/share/doc/libkeepalive-rs",
                "/usr/share/doc/libkeepalive-rs/README.md",
                "/usr/share/doc/libkeepalive-rs/changelog",
                "/usr/share/licenses/libkeepalive-rs",
                "/usr/share/licenses/libkeepalive-rs/LICENSE-APACHE",
                "/usr/share/licenses/libkeepalive-rs/LICENSE-MIT",
                "/usr/share/man/man1/keepalive.1.gz",
                "/usr/share/man/man7/libkeepalive.7.gz",
                "/usr/share/bash-completion",
                "/usr/share/bash-completion/completions",
                "/usr/share/bash-completion/completions/keepalive",
                "/usr/share/fish",
                "/usr/share/fish/vendor_completions.d",
                "/usr/share/fish/vendor_completions.d/keepalive.fish",
                "/usr/share/zsh",
                "/usr/share/zsh/site-functions",
                "/usr/share/zsh/site-functions/_keepalive",
            ]
            .map(String::from),
        )
        .collect()
}

#[test]
fn rpm_lists_the_expected_files() {
    let test = "rpm_lists_the_expected_files";
    if !common::have(test, "rpm") {
        return;
    }
    let Some(dist) = common::dist(test) else {
        return;
    };
    let listed = stdout_of(Command::new("rpm").arg("-qlp").arg(rpm(dist)));
    let mut expected = expected_rpm_files();
    expected.sort_unstable();
    assert_eq!(listed.lines().collect::<Vec<_>>(), expected);
}

/// What an RPM-based system expects of a shared library's package: ldconfig run after
/// install and removal (the bare name through ld.so.cache), an executable library
/// (RPM's convention: brp-strip and find-debuginfo skip others), a %changelog
/// entry naming the maintainer and version; and rpmlint finds nothing but the
/// exceptions packaging/rpm/rpmlint.toml gives with their reasons.
#[test]
fn rpm_has_scriptlets_changelog_and_passes_rpmlint() {
    let test = "rpm_has_scriptlets_changelog_and_passes_rpmlint";
    if !common::have(test, "rpm") {
        return;
    }
    let Some(dist) = common::dist(test) else {
        return;
    };
    let rpm = rpm(dist);
    let scripts = stdout_of(Command::new("rpm").arg("-qp").arg("--scripts").arg(&rpm));
    for phase in [
        "postinstall program: /sbin/ldconfig",
        "postuninstall program: /sbin/ldconfig",
    ] {
        assert!(scripts.contains(phase), "{phase}: {scripts}");
    }
    let changelog = stdout_of(Command::new("rpm").arg("-qp").arg("--changelog").arg(&rpm));
    assert!(
        changelog.starts_with("* ") && changelog.contains(&format!("> - {VERSION}-1\n")),
        "{changelog}"
    );
    assert!(!changelog.contains(".invalid"), "{changelog}");
    let modes = stdout_of(
        Command::new("rpm")
            .args(["-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]"])
            .arg(&rpm),
    );
    assert!(
        modes.contains("-rwxr-xr-x /usr/lib64/libkeepalive.so.0\n"),
        "{modes}"
    );
    if !common::have(test, "rpmlint") {
        return;
    }
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/rpm/rpmlint.toml");
    let output = Command::new("rpmlint")
        .arg("--config")
        .arg(&config)
        .arg(&rpm)
        .output()
        .expect("run rpmlint");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains(" 0 errors, 0 warnings"), "{report}");
}

/// The .deb's control fields: Section libs (where Debian files preload libraries such
/// as libeatmydata1), a maintainer who can be written to, Provides: libkeepalive0 for
/// the bare names it takes over, and no Multi-Arch claim it cannot keep (a command in
/// /usr/bin is not "same"; a library is not "foreign").
#[test]
fn deb_control_fields() {
    let test = "deb_control_fields";
    if !common::have(test, "dpkg-deb") {
        return;
    }
    let Some(dist) = common::dist(test) else {
        return;
    };
    let field = |name: &str| {
        stdout_of(Command::new("dpkg-deb").arg("-f").arg(deb(dist)).arg(name))
            .trim()
            .to_string()
    };
    assert_eq!(field("Section"), "libs");
    assert_eq!(field("Provides"), "libkeepalive0");
    // dpkg-deb shows the default of a field left out: "no".
    assert_eq!(field("Multi-Arch"), "no");
    let maintainer = field("Maintainer");
    let changelog = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/debian/changelog"),
    )
    .expect("changelog");
    assert!(
        !maintainer.contains(".invalid") && changelog.contains(&format!(" -- {maintainer}  ")),
        "Maintainer: {maintainer}"
    );
}

#[test]
fn rpm_installs_into_a_scratch_root_works_and_erases_cleanly() {
    let test = "rpm_installs_into_a_scratch_root_works_and_erases_cleanly";
    if !common::have(test, "rpm") {
        return;
    }
    let Some(dist) = common::dist(test) else {
        return;
    };
    let root = Scratch::new("rpm-root");
    stdout_of(
        Command::new("rpm")
            .arg("--root")
            .arg(&root.0)
            .args(["--nodeps", "-i"])
            .arg(rpm(dist)),
    );
    for file in expected_rpm_files() {
        assert!(root.0.join(&file[1..]).exists(), "{file} not installed");
    }
    for file in completion_files("usr/share/zsh/site-functions") {
        assert!(root.0.join(&file).is_file(), "/{file} not installed");
    }
    if common::have(test, "bash") {
        assert_bash_completion_works(
            &root
                .0
                .join("usr/share/bash-completion/completions/keepalive"),
        );
    }
    let library = root.0.join("usr/lib64/libkeepalive.so.0");
    assert_library_configures_sockets(&library);
    assert_library_configures_sockets(&root.0.join("usr/lib64/libkeepalive.so"));
    assert_command_finds(&root.0.join("usr/bin/keepalive"), &library);

    stdout_of(
        Command::new("rpm")
            .arg("--root")
            .arg(&root.0)
            .args(["-e", DEB_PACKAGE]),
    );
    let left = named_keepalive(&root.0);
    assert_eq!(left, Vec::<PathBuf>::new(), "left after rpm -e");
}

/// Every path under `dir` whose name mentions keepalive, outside rpm's own database.
fn named_keepalive(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read directory").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".rpmdb" || name == "rpm" {
            continue;
        }
        if name.contains("keepalive") {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(named_keepalive(&path));
        }
    }
    found
}

#[test]
fn tarball_unpacks_into_a_prefix_and_works() {
    let test = "tarball_unpacks_into_a_prefix_and_works";
    let Some(dist) = common::dist(test) else {
        return;
    };
    let prefix = Scratch::new("tarball-prefix");
    stdout_of(
        Command::new("tar")
            .arg("-xzf")
            .arg(tarball(dist))
            .arg("-C")
            .arg(&prefix.0)
            .arg("--strip-components=1"),
    );
    for file in [
        "bin/keepalive",
        "lib/libkeepalive.so",
        "lib/libkeepalive.so.0",
        "lib/glibc-2.34/libkeepalive.so.0",
        "share/man/man1/keepalive.1",
        "share/man/man7/libkeepalive.7",
        "share/doc/libkeepalive/README.md",
        "share/doc/libkeepalive/changelog",
        "share/doc/libkeepalive/LICENSE-MIT",
        "share/doc/libkeepalive/LICENSE-APACHE",
        "share/bash-completion/completions/keepalive",
        "share/fish/vendor_completions.d/keepalive.fish",
        "share/zsh/site-functions/_keepalive",
    ] {
        assert!(prefix.0.join(file).exists(), "{file} not in the tarball");
    }
    if common::have(test, "bash") {
        assert_bash_completion_works(&prefix.0.join("share/bash-completion/completions/keepalive"));
    }
    // Two builds (packaging/dist): the default loads on every glibc since 2.17; the
    // command picks the glibc 2.34 one where it loads, as here.
    assert_library_configures_sockets(&prefix.0.join("lib/libkeepalive.so.0"));
    let modern = prefix.0.join("lib/glibc-2.34/libkeepalive.so.0");
    assert_library_configures_sockets(&modern);
    assert_command_finds(&prefix.0.join("bin/keepalive"), &modern);
}

/// Every path under `root` (relative), with its mode and owner.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a directory of the prefix") {
            let path = entry.expect("an entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat an entry");
            if meta.is_dir() {
                pending.push(path.clone());
            }
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            found.insert(relative, (meta.mode(), meta.uid()));
        }
    }
    found
}

/// The README's tarball command, then docs/install.md's removal, as printed, in a
/// prefix that already has directories of its own (an owner and mode other than
/// root's 0755, a file of another program): installing leaves them as they were, and
/// removing leaves exactly what was there before.
#[test]
fn tarball_install_and_removal_leave_the_prefix_as_it_was() {
    let test = "tarball_install_and_removal_leave_the_prefix_as_it_was";
    let Some(dist) = common::dist(test) else {
        return;
    };
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        common::skip(test, "tar keeps the archive's owners only as root");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let install = readme
        .split('`')
        .find(|part| part.starts_with("tar -xzf libkeepalive-VERSION"))
        .expect("the README's tarball command");
    let guide = std::fs::read_to_string(root.join("docs/install.md")).unwrap();
    let start = guide
        .find("cd /usr/local && rm -f")
        .expect("the removal command");
    let removal = &guide[start..start + guide[start..].find("```").unwrap()];

    let prefix = Scratch::new("tarball-round-trip");
    for dir in ["bin", "lib", "share/man"] {
        std::fs::create_dir_all(prefix.0.join(dir)).unwrap();
    }
    std::fs::write(prefix.0.join("bin/other"), "#!/bin/sh\n").unwrap();
    let own = |dir: &str| {
        let status = Command::new("sh")
            .args(["-c", "chown 1:1 \"$1\" && chmod 2750 \"$1\"", "sh"])
            .arg(prefix.0.join(dir))
            .status()
            .unwrap();
        assert!(status.success());
    };
    own("bin");
    own("share/man");
    let before = tree(&prefix.0);

    let install = install
        .replace(
            "libkeepalive-VERSION-x86_64-linux-gnu.tar.gz",
            &tarball(dist).display().to_string(),
        )
        .replace("/usr/local", &prefix.0.display().to_string());
    stdout_of(Command::new("sh").args(["-c", &install]));
    let installed = tree(&prefix.0);
    for (path, kept) in &before {
        assert_eq!(
            installed.get(path),
            Some(kept),
            "{} after installing",
            path.display()
        );
    }
    assert!(installed.contains_key(Path::new("bin/keepalive")));

    let removal = removal.replace("cd /usr/local", &format!("cd '{}'", prefix.0.display()));
    stdout_of(Command::new("sh").args(["-c", &removal]));
    assert_eq!(tree(&prefix.0), before, "after removing");
}

/// What `mandoc -Tlint` with `level` says about the page in `path`.
fn mandoc_lint(path: &Path, level: &str) -> Output {
    Command::new("mandoc")
        .args(["-Tlint", level])
        .arg(path)
        .output()
        .expect("run mandoc")
}

/// The man pages as shipped (from the tarball, where they are not compressed).
#[test]
fn man_pages_are_mandoc_lint_clean() {
    let test = "man_pages_are_mandoc_lint_clean";
    if !common::have(test, "mandoc") {
        return;
    }
    let Some(dist) = common::dist(test) else {
        return;
    };
    let prefix = Scratch::new("man-pages");
    stdout_of(
        Command::new("tar")
            .arg("-xzf")
            .arg(tarball(dist))
            .arg("-C")
            .arg(&prefix.0)
            .arg("--strip-components=1"),
    );
    // libkeepalive(7) is written by hand: clean at every level, style included.
    let page = prefix.0.join("share/man/man7/libkeepalive.7");
    let lint = mandoc_lint(&page, "-Wall");
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    // keepalive(1) is generated by clap_mangen: no warnings either (style notes are
    // the generator's).
    let page = prefix.0.join("share/man/man1/keepalive.1");
    let lint = mandoc_lint(&page, "-Wwarning");
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}

/// libkeepalive(7)'s text for each variable: the `.TP` entry under VARIABLES, with
/// the roff markup taken out.
fn man_page_variables() -> BTreeMap<String, String> {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/libkeepalive.7"),
    )
    .expect("read packaging/libkeepalive.7");
    let section = page
        .split(".SH VARIABLES")
        .nth(1)
        .and_then(|rest| rest.split("\n.SH ").next())
        .expect("a VARIABLES section");
    let plain = |line: &str| -> String {
        let text = match line.split_once(' ') {
            Some((macro_name, rest)) if macro_name.starts_with('.') => rest.replace(' ', ""),
            _ if line.starts_with('.') => String::new(),
            _ => line.to_string(),
        };
        text.replace("\\(en", "–")
            .replace("\\-", "-")
            .replace("\\(mu", "×")
    };
    let mut entries = BTreeMap::new();
    for entry in section.split("\n.TP\n").skip(1) {
        let entry = entry.split("\n.PP").next().unwrap_or(entry);
        let mut lines = entry.lines();
        let name = lines
            .next()
            .and_then(|line| line.strip_prefix(".B "))
            .expect("an entry starts with .B NAME")
            .to_string();
        let text: Vec<String> = lines.map(plain).filter(|t| !t.is_empty()).collect();
        entries.insert(name, text.join(" "));
    }
    entries
}

/// The README's "Variables" table: variable -> its cells, backticks removed.
fn readme_variables() -> BTreeMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let section = readme
        .split("\n## Variables\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Variables section");
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_string())
                .collect();
            (cells[0].replace('`', ""), cells)
        })
        .collect()
}

/// One source of truth, checked: every variable of the README's table is in
/// libkeepalive(7) with the same option, unit, accepted values and default, and the
/// page documents no other.
#[test]
fn readme_variables_table_matches_the_man_page() {
    let readme = readme_variables();
    let man = man_page_variables();
    assert_eq!(
        readme.keys().collect::<Vec<_>>(),
        man.keys().collect::<Vec<_>>(),
        "README and libkeepalive(7) document different variables"
    );
    let mut variables: Vec<&str> = common::VARIABLES.to_vec();
    variables.sort();
    assert_eq!(readme.keys().collect::<Vec<_>>(), variables);
    for (name, cells) in &readme {
        let [_, sets, unit, accepted, default] = &cells[..] else {
            panic!("README row of {name} has {} cells", cells.len());
        };
        let text = &man[name];
        let mut expected = vec![
            format!("Unit: {unit}."),
            format!("Accepted: {}.", accepted.replace('`', "")),
            format!("Default: {}.", default.replace('`', "")),
        ];
        // The socket option, where the README names one.
        if let Some(option) = sets.split('`').nth(1) {
            expected.push(format!("Sets {option}"));
        }
        for expected in expected {
            assert!(
                text.contains(&expected),
                "libkeepalive(7) on {name} lacks {expected:?}:\n{text}"
            );
        }
    }
}

/// The version in every artifact, and in the files they are made from, is the one
/// in Cargo.toml.
#[test]
fn versions_match_cargo_toml() {
    let test = "versions_match_cargo_toml";
    let Some(dist) = common::dist(test) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let changelog =
        std::fs::read_to_string(root.join("packaging/debian/changelog")).expect("changelog");
    assert!(
        changelog.starts_with(&format!("{DEB_PACKAGE} ({VERSION}) ")),
        "packaging/debian/changelog's latest entry is not {VERSION}"
    );
    if common::have(test, "dpkg-deb") {
        let version = stdout_of(
            Command::new("dpkg-deb")
                .args(["-f"])
                .arg(deb(dist))
                .arg("Version"),
        );
        assert_eq!(version.trim(), VERSION, ".deb");
    }
    if common::have(test, "rpm") {
        let version = stdout_of(
            Command::new("rpm")
                .args(["-qp", "--qf", "%{VERSION}"])
                .arg(rpm(dist)),
        );
        assert_eq!(version, VERSION, ".rpm");
    }
    let listing = stdout_of(Command::new("tar").arg("-tzf").arg(tarball(dist)));
    let top = format!("libkeepalive-{VERSION}-x86_64-linux-gnu/");
    assert!(
        listing.lines().all(|line| line.starts_with(&top)),
        "{listing}"
    );
    let command = artifact(dist, &format!("keepalive-{VERSION}"));
    let version = stdout_of(Command::new(&command).arg("--version"));
    assert_eq!(version.trim(), format!("keepalive {VERSION}"));

    // Both man pages carry the day of the changelog's newest entry.
    let released = changelog
        .lines()
        .find_map(|line| line.strip_prefix(" -- ")?.split_once(">  ").map(|(_, d)| d))
        .expect("changelog trailer line");
    let released = stdout_of(Command::new("date").args(["-u", "-d", released, "+%F"]));
    let pages = [
        std::fs::read_to_string(root.join("packaging/libkeepalive.7")).expect("libkeepalive.7"),
        stdout_of(Command::new(&command).args(["generate", "man"])),
    ];
    for page in pages {
        let title = page.lines().find(|l| l.starts_with(".TH ")).expect(".TH");
        assert!(
            title.contains(released.trim()),
            "{title:?} is not dated {released}"
        );
    }
}

/// A directory of links to every program on PATH except `missing`.
fn path_without(missing: &[&str]) -> Scratch {
    let bin = Scratch::new(&format!("path-without-{}", missing.join("-")));
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if missing.iter().any(|m| name == *m) || bin.0.join(&name).exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(entry.path(), bin.0.join(&name));
        }
    }
    bin
}

/// The names and modification times of what is in target/dist/.
fn dist_state(dist: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut entries: Vec<(String, std::time::SystemTime)> = std::fs::read_dir(dist)
        .expect("read target/dist")
        .flatten()
        .map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).expect("mtime");
            (e.file_name().to_string_lossy().into_owned(), modified)
        })
        .collect();
    entries.sort();
    entries
}

/// Whether a scratch directory of packaging/dist is left in target/.
fn scratch_left(dist: &Path) -> bool {
    std::fs::read_dir(dist.parent().expect("target"))
        .expect("read target")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("dist-work."))
}

/// Without rpmbuild and without apt-get to install it, packaging/dist stops at once
/// with one line naming the Debian package, and writes nothing.
#[test]
fn dist_names_a_missing_tool_in_one_line() {
    let test = "dist_names_a_missing_tool_in_one_line";
    let Some(dist) = common::dist(test) else {
        return;
    };
    let before = dist_state(dist);
    let bin = path_without(&["rpmbuild", "apt-get"]);
    let output = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/dist"))
        .env("PATH", &bin.0)
        .output()
        .expect("run packaging/dist");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("packaging/dist: missing Debian packages: rpm "),
        "{stderr}"
    );
    assert_eq!(dist_state(dist), before);
}

/// A tool that fails halfway (here rpmbuild, after the .deb is built) leaves no new
/// file in target/dist/ and no scratch directory.
#[test]
fn dist_failing_halfway_leaves_no_artifact() {
    let test = "dist_failing_halfway_leaves_no_artifact";
    let Some(dist) = common::dist(test) else {
        return;
    };
    let before = dist_state(dist);
    let stub = Scratch::new("failing-rpmbuild");
    let rpmbuild = stub.0.join("rpmbuild");
    std::fs::write(
        &rpmbuild,
        "#!/bin/sh\necho 'rpmbuild: broken on purpose' >&2\nexit 1\n",
    )
    .expect("write stub");
    std::fs::set_permissions(
        &rpmbuild,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod stub");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![stub.0.clone()];
    dirs.extend(std::env::split_paths(&path));
    let output = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/dist"))
        .env("PATH", std::env::join_paths(dirs).expect("PATH"))
        .output()
        .expect("run packaging/dist");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("broken on purpose"), "{stderr}");
    assert_eq!(dist_state(dist), before, "{stderr}");
    assert!(
        !scratch_left(dist),
        "packaging/dist left its scratch directory"
    );
}
