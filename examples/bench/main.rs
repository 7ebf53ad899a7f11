//! What libkeepalive costs, measured side by side in one run.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench            # full run
//! cargo build --release && cargo run --release --example bench -- --quick # a few rounds
//! ```
//!
//! Every comparison runs its variants in the same round, one after the other, for many
//! rounds; the table shows per-round ratios as the median and [min–max] over rounds, so
//! load from elsewhere on a shared machine hits all variants alike. The variants:
//!
//! - *libkeepalive*: the release library preloaded;
//! - *inline floor*: no preload, the program itself making the identical setsockopt
//!   calls: what any shim must at least cost;
//! - *no shim*: no preload, no calls;
//! - *C shim*: `reference_shim.c` beside this file, the same job in a few lines of C;
//! - *minimal C shim*: `minimal_shim.c`, the least a shim can do at load (two dlsym,
//!   four getenv): the reference of the load-cost target.
//!
//! Instruction counts come from `valgrind --tool=callgrind`, which counts the same
//! whatever else the machine is doing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The settings every variant uses: four setsockopt calls per socket.
const VARS: [(&str, &str); 3] = [("KEEPIDLE", "60"), ("KEEPINTVL", "10"), ("KEEPCNT", "6")];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return worker(&args[1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let plan = if quick {
        Plan {
            rounds: 3,
            sockets: 2_000,
            connections: 300,
            execs: 20,
            audited: 2_000,
        }
    } else {
        Plan {
            rounds: 15,
            sockets: 20_000,
            connections: 3_000,
            execs: 200,
            audited: 10_000,
        }
    };
    let paths = Paths::find();
    println!(
        "libkeepalive benchmark{}",
        if quick {
            " (quick mode: too few rounds to trust)"
        } else {
            ""
        }
    );
    println!("machine: {}", machine());
    println!(
        "{} rounds, variants interleaved within each round; ratio = median of per-round ratios [min-max]\n",
        plan.rounds
    );
    per_socket(&paths, &plan);
    per_connection(&paths, &plan);
    per_accept_call(&paths, &plan);
    per_activated_accept(&paths, &plan);
    per_process(&paths, &plan);
    portable_load_work(&paths);
    footprint(&paths);
    kernel_route(&paths, &plan);
    audit(&paths, &plan);
}

/// (f) The kernel route's price per connection: one process connects to its own
/// loopback listener, accepts and closes both ends, `plan.connections` times, timed
/// inside; run as is, with the library preloaded, and under `keepalive run --kernel`
/// with the settings and with `--mode off` (the sock_ops program runs and sets
/// nothing). Interleaved within each round, like every comparison here.
fn kernel_route(paths: &Paths, plan: &Plan) {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("(f) kernel route: not measured: it needs root\n");
        return;
    }
    let names = [
        "no route, no library",
        "library",
        "kernel route, --mode off",
        "kernel route, 3 settings",
    ];
    let samples = under_route(paths, plan, &names, &["pairs"], plan.connections);
    print_comparison(
        &format!(
            "(f) per connection, both ends in one process: connect + accept + close, {} per run",
            plan.connections
        ),
        &names,
        &samples,
        &[
            (3, 0, "kernel route / none"),
            (2, 0, "route, mode off / none"),
            (1, 0, "library / none"),
            (3, 1, "kernel route / library"),
        ],
        "kernel route / library <= 1.00\n",
    );
    // (g) What the marking program adds to a program's own setsockopt(2): of a
    // keepalive option (it marks the socket) and of another (it only looks).
    let calls = plan.connections * 20;
    for option in ["TCP_KEEPIDLE", "TCP_NODELAY"] {
        let samples = under_route(paths, plan, &names, &["setsockopts", option], calls);
        print_comparison(
            &format!("(g) per setsockopt({option}) of the program's own, {calls} per run"),
            &names,
            &samples,
            &[(3, 0, "kernel route / none")],
            "reported, no target\n",
        );
    }
}

/// Runs the worker `mode` (which prints nanoseconds for `per` operations) as the four
/// variants of (f), interleaved over rounds: plain, with the library, under `run
/// --kernel --mode off` and under `run --kernel` with three settings; nanoseconds per
/// operation.
fn under_route(paths: &Paths, plan: &Plan, names: &[&str], mode: &[&str], per: usize) -> Samples {
    let keepalive = paths.shim.with_file_name("keepalive");
    let settings = ["--idle", "60", "--interval", "10", "--count", "6"];
    let mut samples = Samples::new(names.len());
    for _ in 0..plan.rounds {
        for (i, sample) in samples.0.iter_mut().enumerate() {
            let mut command = match i {
                0 | 1 => Command::new(&paths.exe),
                _ => {
                    let mut run = Command::new(&keepalive);
                    run.args(["run", "--kernel"]);
                    if i == 2 {
                        run.args(["--mode", "off"]);
                    } else {
                        run.args(settings);
                    }
                    run.arg("--").arg(&paths.exe);
                    run
                }
            };
            command
                .arg("worker")
                .args(mode)
                .arg(per.to_string())
                .env_remove("LD_PRELOAD");
            for (name, _) in VARS {
                command.env_remove(name);
            }
            if i == 1 {
                command.envs(VARS).env("LD_PRELOAD", &paths.shim);
            }
            sample.push(worker_number(&mut command) / per as f64);
        }
    }
    samples
}

/// (e) `keepalive audit` on a host with many established connections: a worker holds
/// `plan.audited / 2` loopback pairs (both ends established: `plan.audited`
/// connections); the audit's wall time, over rounds, as JSON (every connection read and
/// printed).
fn audit(paths: &Paths, plan: &Plan) {
    let command = paths.shim.with_file_name("keepalive");
    let pairs = (plan.audited / 2).to_string();
    let mut holder = Command::new(&paths.exe)
        .args(["worker", "hold", &pairs])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the connection holder");
    let mut ready = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("holder ready");
    let mut samples = Vec::new();
    for _ in 0..plan.rounds {
        let start = Instant::now();
        let output = Command::new(&command)
            .args(["audit", "--all", "--format", "json"])
            .output()
            .expect("run keepalive audit");
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(output.status.success(), "keepalive audit failed");
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let (low, high) = range(&samples);
    println!(
        "(e) keepalive audit --all --format json, {} established connections held by one process ({})",
        plan.audited,
        ready.trim()
    );
    println!(
        "    {:.0} ms median [{low:.0}-{high:.0}] over {} runs   target: well under 1 s for 10 000\n",
        median(samples),
        plan.rounds
    );
}

struct Plan {
    rounds: usize,
    sockets: usize,
    connections: usize,
    execs: usize,
    /// Established connections for `keepalive audit` to read.
    audited: usize,
}

struct Paths {
    shim: PathBuf,
    reference: PathBuf,
    minimal: PathBuf,
    exe: PathBuf,
}

impl Paths {
    fn find() -> Paths {
        let exe = std::env::current_exe().expect("current_exe");
        // target/release/examples/bench -> target/release/libkeepalive.so
        let release = exe.parent().and_then(Path::parent).expect("target dir");
        let shim = release.join("libkeepalive.so");
        if !shim.exists() {
            eprintln!(
                "{} is missing: run `cargo build --release` first",
                shim.display()
            );
            std::process::exit(2);
        }
        Paths {
            shim,
            reference: c_shim(release, "reference_shim"),
            minimal: c_shim(release, "minimal_shim"),
            exe,
        }
    }
}

/// Builds `examples/bench/NAME.c` into `release/libNAME.so`, as a careful C
/// programmer would ship it: optimised, stripped, full RELRO.
fn c_shim(release: &Path, name: &str) -> PathBuf {
    let library = release.join(format!("lib{name}.so"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/bench/{name}.c"));
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-s", "-Wl,-z,relro,-z,now", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("run cc to build a C shim");
    assert!(built.success(), "cc failed on {}", source.display());
    library
}

/// How a measured process is started.
#[derive(Clone, Copy)]
enum Variant {
    NoShim,
    Inline,
    Shim,
    CShim,
    MinimalShim,
}

impl Variant {
    fn command(self, paths: &Paths, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.envs(VARS).env_remove("LD_PRELOAD");
        match self {
            Variant::NoShim | Variant::Inline => {}
            Variant::Shim => {
                command.env("LD_PRELOAD", &paths.shim);
            }
            Variant::CShim => {
                command.env("LD_PRELOAD", &paths.reference);
            }
            Variant::MinimalShim => {
                command.env("LD_PRELOAD", &paths.minimal);
            }
        }
        command
    }

    fn mode(self) -> &'static str {
        match self {
            Variant::Inline => "inline",
            _ => "plain",
        }
    }
}

/// Samples per variant, one per round.
struct Samples(Vec<Vec<f64>>);

impl Samples {
    fn new(variants: usize) -> Samples {
        Samples(vec![Vec::new(); variants])
    }

    fn median(&self, i: usize) -> f64 {
        median(self.0[i].clone())
    }

    /// The median and range of the per-round ratio of variant `a` to variant `b`.
    fn ratio(&self, a: usize, b: usize) -> String {
        let ratios: Vec<f64> = self.0[a]
            .iter()
            .zip(&self.0[b])
            .map(|(x, y)| x / y)
            .collect();
        let (low, high) = range(&ratios);
        format!("{:.3} [{low:.3}-{high:.3}]", median(ratios))
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (low, high)
}

/// Takes one sample of every variant in every round, the variants interleaved.
fn measure(rounds: usize, variants: &[Variant], mut sample: impl FnMut(Variant) -> f64) -> Samples {
    let mut samples = Samples::new(variants.len());
    for _ in 0..rounds {
        for (i, &variant) in variants.iter().enumerate() {
            samples.0[i].push(sample(variant));
        }
    }
    samples
}

/// Prints each variant's median, then each ratio `(a, b, what)` of variant a to b,
/// then the target.
fn print_comparison(
    title: &str,
    names: &[&str],
    samples: &Samples,
    ratios: &[(usize, usize, &str)],
    target: &str,
) {
    println!("{title}");
    for (i, name) in names.iter().enumerate() {
        println!("    {name:<30} {:>9.0} ns", samples.median(i));
    }
    for &(a, b, what) in ratios {
        println!("    {what:<30} {}", samples.ratio(a, b));
    }
    println!("    target: {target}");
}

/// Runs a worker and returns the number it prints.
fn worker_number(command: &mut Command) -> f64 {
    let output = command.output().expect("run worker");
    assert!(output.status.success(), "worker failed: {command:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a number")
}

/// The variants of (a) and (b), their names and the ratios compared, in that order.
const FLOOR_VARIANTS: [Variant; 3] = [Variant::NoShim, Variant::Inline, Variant::Shim];
const FLOOR_NAMES: [&str; 3] = ["no shim", "inline floor (+4 setsockopt)", "libkeepalive"];
const FLOOR_RATIOS: [(usize, usize, &str); 2] = [
    (2, 1, "libkeepalive / inline floor"),
    (2, 0, "libkeepalive / no shim"),
];
const FLOOR_TARGET: &str = "libkeepalive / inline floor <= 1.03\n";

fn per_socket(paths: &Paths, plan: &Plan) {
    let samples = measure(plan.rounds, &FLOOR_VARIANTS, |variant| {
        let count = plan.sockets.to_string();
        let ns = worker_number(variant.command(paths, &paths.exe).args([
            "worker",
            "sockets",
            &count,
            variant.mode(),
        ]));
        ns / plan.sockets as f64
    });
    print_comparison(
        &format!(
            "(a) per socket: socket() + close(), {} per run",
            plan.sockets
        ),
        &FLOOR_NAMES,
        &samples,
        &FLOOR_RATIOS,
        FLOOR_TARGET,
    );
}

fn per_connection(paths: &Paths, plan: &Plan) {
    let count = plan.connections.to_string();
    let samples = measure(plan.rounds, &FLOOR_VARIANTS, |variant| {
        let mut server = variant
            .command(paths, &paths.exe)
            .args(["worker", "accept", &count, variant.mode()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start accept worker");
        let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
        let port = lines.next().expect("port line").expect("read port");
        // The client runs without any preload in every variant.
        let client = Variant::NoShim
            .command(paths, &paths.exe)
            .args(["worker", "connect", &count, &port])
            .status()
            .expect("run client");
        assert!(client.success(), "client failed");
        let ns: f64 = lines
            .next()
            .expect("result")
            .expect("read")
            .trim()
            .parse()
            .expect("ns");
        assert!(server.wait().expect("wait").success());
        ns / plan.connections as f64
    });
    print_comparison(
        &format!(
            "(b) per accepted connection: a loopback server accept4()s and closes {} short-lived connections per run",
            plan.connections
        ),
        &FLOOR_NAMES,
        &samples,
        &FLOOR_RATIOS,
        FLOOR_TARGET,
    );
}

/// The accept path alone. The floor is a server that configured its listener inline
/// (its connections inherit the options, so accept4 needs nothing more); the library
/// configured the listener at `socket()`, and must then leave accept4 at that floor.
fn per_accept_call(paths: &Paths, plan: &Plan) {
    let count = (plan.connections * 2).to_string();
    let samples = measure(plan.rounds, &FLOOR_VARIANTS, |variant| {
        let ns = worker_number(variant.command(paths, &paths.exe).args([
            "worker",
            "accept-only",
            &count,
            variant.mode(),
        ]));
        ns / (plan.connections * 2) as f64
    });
    print_comparison(
        &format!(
            "(b2) per accept4() call alone: {} queued connections per run, clients made without the library",
            plan.connections * 2
        ),
        &["no shim", "inline floor (listener set)", "libkeepalive"],
        &samples,
        &[
            (2, 1, "libkeepalive / inline floor"),
            (2, 0, "libkeepalive / no shim"),
        ],
        "libkeepalive / inline floor <= 1.15\n",
    );
}

/// The accept path on a listener the library did not make (systemd socket activation,
/// an inherited one): its connections arrive untouched, so the library asks each one
/// what it carries (five getsockopt) and configures it. The floor is the program
/// setting the same four options on each connection itself.
fn per_activated_accept(paths: &Paths, plan: &Plan) {
    let count = (plan.connections * 2).to_string();
    let variants = [Variant::NoShim, Variant::Inline, Variant::Shim];
    let samples = measure(plan.rounds, &variants, |variant| {
        let ns = worker_number(variant.command(paths, &paths.exe).args([
            "worker",
            "accept-activated",
            &count,
            variant.mode(),
        ]));
        ns / (plan.connections * 2) as f64
    });
    print_comparison(
        &format!(
            "(b3) per accept4() on an activated listener: {} queued connections per run",
            plan.connections * 2
        ),
        &["no shim", "inline floor (+4 setsockopt)", "libkeepalive"],
        &samples,
        &[(2, 1, "libkeepalive / inline floor")],
        "none: reported for docs/cost.md\n",
    );
}

fn per_process(paths: &Paths, plan: &Plan) {
    let trivial = Path::new("/bin/true");
    let variants = [
        Variant::NoShim,
        Variant::CShim,
        Variant::Shim,
        Variant::MinimalShim,
    ];
    let samples = measure(plan.rounds, &variants[..3], |variant| {
        let mut command = variant.command(paths, trivial);
        let start = Instant::now();
        for _ in 0..plan.execs {
            assert!(command.status().expect("exec /bin/true").success());
        }
        start.elapsed().as_nanos() as f64 / plan.execs as f64
    });
    print_comparison(
        &format!(
            "(c) per process start: fork + exec of /bin/true, {} per run",
            plan.execs
        ),
        &["no preload", "C shim", "libkeepalive"],
        &samples,
        &[
            (2, 0, "libkeepalive / no preload"),
            (2, 1, "libkeepalive / C shim"),
        ],
        "libkeepalive / no preload <= 1.03 in wall time",
    );
    let counts: Vec<Option<u64>> = variants
        .iter()
        .map(|v| instructions(v.command(paths, trivial)))
        .collect();
    match counts[..] {
        [Some(none), Some(c), Some(ours), Some(minimal)] => {
            println!(
                "    instructions (callgrind, whole process): no preload {none}, C shim {c}, minimal C shim {minimal}, libkeepalive {ours}"
            );
            let (c, minimal, ours) = (
                c.saturating_sub(none),
                minimal.saturating_sub(none).max(1),
                ours.saturating_sub(none),
            );
            println!(
                "    load work = instructions added over no preload: C shim {c}, minimal C shim {minimal}, libkeepalive {ours}"
            );
            println!(
                "    libkeepalive / minimal C shim, load work {:.3}   target: <= 1.10; libkeepalive / C shim {:.3}\n",
                ours as f64 / minimal as f64,
                ours as f64 / c.max(1) as f64
            );
        }
        _ => println!("    instructions: valgrind is not installed; no count\n"),
    }
}

/// (c) for the builds that packaging/dist ships (target/dist/), both linked against an
/// old glibc's symbol versions: the one for glibc 2.34 and later (the packages') needs
/// libc alone; the one for 2.17 also needs libdl.so.2 for `dlsym`, and loading that
/// costs instructions on every exec. Counted beside the native build and the minimal
/// C shim.
fn portable_load_work(paths: &Paths) {
    let release = paths.shim.parent().expect("target/release");
    let dist = release.parent().expect("target").join("dist");
    let version = env!("CARGO_PKG_VERSION");
    let builds = [
        ("glibc 2.34 build", format!("libkeepalive-{version}.so")),
        (
            "glibc 2.17 build",
            format!("libkeepalive-{version}-glibc2.17.so"),
        ),
    ];
    println!(
        "(c) per process start, shipped builds in {}",
        dist.display()
    );
    let trivial = Path::new("/bin/true");
    let load_work = |variant: Variant, library: Option<&Path>| {
        let none = instructions(Variant::NoShim.command(paths, trivial))?;
        let mut command = variant.command(paths, trivial);
        if let Some(library) = library {
            command.env("LD_PRELOAD", library);
        }
        Some(instructions(command)?.saturating_sub(none))
    };
    let (Some(native), Some(minimal)) = (
        load_work(Variant::Shim, None),
        load_work(Variant::MinimalShim, None),
    ) else {
        println!("    instructions: valgrind is not installed; no count\n");
        return;
    };
    println!("    load work: native build {native}, minimal C shim {minimal}");
    for (name, file) in builds {
        let library = dist.join(file);
        if !library.exists() {
            println!("    {name}: not built: run packaging/dist first");
            continue;
        }
        if let Some(ours) = load_work(Variant::NoShim, Some(&library)) {
            println!(
                "    {name}: load work {ours}, {:.3} of the minimal C shim (target <= 1.10 for the packages' build)",
                ours as f64 / minimal.max(1) as f64
            );
        }
    }
    println!();
}

/// The instructions callgrind counts for one run of `command`.
fn instructions(command: Command) -> Option<u64> {
    let mut valgrind = Command::new("valgrind");
    valgrind.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"]);
    valgrind.arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => valgrind.env(key, value),
            None => valgrind.env_remove(key),
        };
    }
    let output = valgrind.output().ok()?;
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|line| line.split("Collected :").nth(1)?.trim().parse().ok())
}

fn footprint(paths: &Paths) {
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let deps = |path: &Path| -> String {
        Command::new("ldd")
            .arg(path)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|_| "(ldd missing)".into())
    };
    let variants = [Variant::CShim, Variant::Shim];
    let rss: Vec<String> = variants
        .iter()
        .map(|variant| {
            let output = variant
                .command(paths, &paths.exe)
                .args(["worker", "rss"])
                .output()
                .expect("run rss worker");
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        })
        .collect();
    println!("(d) footprint");
    println!(
        "    libkeepalive  {:>6} bytes stripped; needs: {}",
        size(&paths.shim),
        deps(&paths.shim)
    );
    println!(
        "    C shim        {:>6} bytes stripped; needs: {}",
        size(&paths.reference),
        deps(&paths.reference)
    );
    println!(
        "    minimal shim  {:>6} bytes stripped; needs: {}",
        size(&paths.minimal),
        deps(&paths.minimal)
    );
    println!(
        "    resident memory of the library's mappings in a process: C shim {} KiB, libkeepalive {} KiB",
        rss[0], rss[1]
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

/// The measured processes. Each prints one number on stdout.
fn worker(args: &[String]) {
    let count = |i: usize| -> usize { args[i].parse().expect("count") };
    match args[0].as_str() {
        "sockets" => {
            let inline = args[2] == "inline";
            let start = Instant::now();
            for _ in 0..count(1) {
                // SAFETY: socket(2) and close(2) on a descriptor this loop owns.
                unsafe {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                    if inline {
                        set_keepalive_inline(fd);
                    }
                    libc::close(fd);
                }
            }
            println!("{}", start.elapsed().as_nanos());
        }
        "accept" => {
            let inline = args[2] == "inline";
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            println!("{}", listener.local_addr().expect("address").port());
            std::io::stdout().flush().expect("flush");
            let fd = listener.as_raw_fd();
            let mut start = None;
            for _ in 0..count(1) {
                // SAFETY: accept4(2) on our listener; the connection is closed at once.
                unsafe {
                    let conn = libc::accept4(
                        fd,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    );
                    assert!(conn >= 0, "accept4");
                    start.get_or_insert_with(Instant::now);
                    if inline {
                        set_keepalive_inline(conn);
                    }
                    libc::close(conn);
                }
            }
            println!("{}", start.map(|s| s.elapsed().as_nanos()).unwrap_or(0));
        }
        "accept-only" => {
            // Only the accept4 calls are timed: the clients are made here, in batches,
            // with a raw socket system call that the library never sees, and connected
            // before the clock starts.
            let inline = args[2] == "inline";
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let fd = listener.as_raw_fd();
            // SAFETY: listen(2) on our socket, to make room for a whole batch.
            assert_eq!(unsafe { libc::listen(fd, ACCEPT_BATCH as i32) }, 0);
            if inline {
                // SAFETY: fd is a socket.
                unsafe { set_keepalive_inline(fd) };
            }
            let address = listener.local_addr().expect("address");
            let mut elapsed = std::time::Duration::ZERO;
            let mut left = count(1);
            while left > 0 {
                let batch = left.min(ACCEPT_BATCH);
                left -= batch;
                let clients: Vec<TcpStream> = (0..batch).map(|_| raw_client(address)).collect();
                let mut conns = Vec::with_capacity(batch);
                let start = Instant::now();
                for _ in 0..batch {
                    // SAFETY: accept4(2) on our listener, whose backlog holds the batch.
                    conns.push(unsafe {
                        libc::accept4(
                            fd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_CLOEXEC,
                        )
                    });
                }
                elapsed += start.elapsed();
                for conn in conns {
                    assert!(conn >= 0, "accept4");
                    // SAFETY: each connection is ours to close.
                    unsafe { libc::close(conn) };
                }
                drop(clients);
            }
            println!("{}", elapsed.as_nanos());
        }
        "pairs" => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("address");
            let start = Instant::now();
            for _ in 0..count(1) {
                let client = TcpStream::connect(address).expect("connect");
                let (accepted, _) = listener.accept().expect("accept");
                drop(accepted);
                drop(client);
            }
            println!("{}", start.elapsed().as_nanos());
        }
        "setsockopts" => {
            // One TCP socket, OPTION set COUNT times: for TCP_KEEPIDLE the marking
            // program's whole path (its socket storage found, one byte written), for
            // TCP_NODELAY its comparisons only.
            let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
            let (option, value): (libc::c_int, libc::c_int) = match args[1].as_str() {
                "TCP_KEEPIDLE" => (libc::TCP_KEEPIDLE, 60),
                "TCP_NODELAY" => (libc::TCP_NODELAY, 1),
                other => panic!("no option {other}"),
            };
            let start = Instant::now();
            for _ in 0..count(2) {
                // SAFETY: setsockopt(2) of a live c_int, with its size.
                let rc = unsafe {
                    libc::setsockopt(
                        socket.as_raw_fd(),
                        libc::IPPROTO_TCP,
                        option,
                        (&raw const value).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(rc, 0, "setsockopt");
            }
            println!("{}", start.elapsed().as_nanos());
        }
        "hold" => {
            // PAIRS loopback connections, both ends held here, until killed.
            let pairs = count(1);
            let limit = libc::rlimit {
                rlim_cur: (pairs * 2 + 64) as libc::rlim_t,
                rlim_max: (pairs * 2 + 64) as libc::rlim_t,
            };
            // SAFETY: setrlimit(2) of this process's own descriptor limit.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("address");
            let mut held = Vec::with_capacity(pairs * 2);
            for _ in 0..pairs {
                held.push(TcpStream::connect(address).expect("connect"));
                held.push(listener.accept().expect("accept").0);
            }
            println!("{} sockets open", held.len());
            std::io::stdout().flush().expect("flush");
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        "accept-activated" => {
            // A listener made with a raw socket system call, which the library never
            // sees: as one systemd passes. The clients are made the same way, in
            // batches, connected before the clock starts.
            let mode = args[2].as_str();
            let listener = raw_listener();
            let fd = listener.as_raw_fd();
            let address = listener.local_addr().expect("address");
            let mut elapsed = std::time::Duration::ZERO;
            let mut left = count(1);
            while left > 0 {
                let batch = left.min(ACCEPT_BATCH);
                left -= batch;
                let clients: Vec<TcpStream> = (0..batch).map(|_| raw_client(address)).collect();
                let mut conns = Vec::with_capacity(batch);
                let start = Instant::now();
                for _ in 0..batch {
                    // SAFETY: accept4(2) on our listener, whose backlog holds the batch;
                    // the inline floor then configures the connection itself.
                    let conn = unsafe {
                        libc::accept4(
                            fd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_CLOEXEC,
                        )
                    };
                    if mode == "inline" {
                        // SAFETY: conn is a socket (or -1, and the calls fail).
                        unsafe { set_keepalive_inline(conn) };
                    }
                    conns.push(conn);
                }
                elapsed += start.elapsed();
                for conn in conns {
                    assert!(conn >= 0, "accept4");
                    // SAFETY: each connection is ours to close.
                    unsafe { libc::close(conn) };
                }
                drop(clients);
            }
            println!("{}", elapsed.as_nanos());
        }
        "connect" => {
            let port: u16 = args[2].parse().expect("port");
            for _ in 0..count(1) {
                let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                // Wait for the server's close, so client and server go in lockstep and
                // the backlog never overflows.
                let _ = conn.read(&mut [0u8; 1]);
            }
        }
        "rss" => {
            // Resident memory of the preloaded library's own mappings: exact, where
            // the process's whole VmRSS varies by more than the library's size.
            let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
            let name = Path::new(&preload)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
            let mut ours = false;
            let mut kb = 0u64;
            for line in smaps.lines() {
                if line
                    .split_whitespace()
                    .next()
                    .is_some_and(|f| f.contains('-') && f.len() > 8)
                {
                    ours = name.as_ref().is_some_and(|n| line.ends_with(n.as_str()));
                } else if let Some(rss) = line.strip_prefix("Rss:").filter(|_| ours) {
                    kb += rss
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
            println!("{kb}");
        }
        other => panic!("unknown worker {other}"),
    }
}

/// Connections queued on the listener per timed batch of accept4 calls.
const ACCEPT_BATCH: usize = 200;

/// `address` as the kernel takes it.
fn sockaddr(address: std::net::SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*address.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A listener on 127.0.0.1, made with a raw socket system call so that a preloaded
/// library does not see (and configure) it, with room for a batch.
fn raw_listener() -> TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: the raw socket(2) system call takes plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_socket,
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        )
    } as i32;
    assert!(fd >= 0, "socket");
    let sin = sockaddr(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        0,
    ));
    // SAFETY: bind(2) with a live sockaddr_in and its size, listen(2) with integers;
    // fd is ours.
    let ok = unsafe {
        libc::bind(
            fd,
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) == 0
            && libc::listen(fd, ACCEPT_BATCH as i32) == 0
    };
    assert!(ok, "bind and listen");
    // SAFETY: fd is a listening socket that nothing else owns.
    unsafe { TcpListener::from_raw_fd(fd) }
}

/// A client connected to `address`, made with a raw socket system call so that a
/// preloaded library does not see (and configure) it.
fn raw_client(address: std::net::SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(v4) = address else {
        panic!("IPv4 listener expected")
    };
    // SAFETY: the raw socket(2) system call takes plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_socket,
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        )
    } as i32;
    assert!(fd >= 0, "socket");
    let sin = sockaddr(v4);
    // SAFETY: connect(2) with a live sockaddr_in and its size; fd is ours.
    let rc = unsafe {
        libc::connect(
            fd,
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect");
    // SAFETY: fd is a connected socket that nothing else owns.
    unsafe { TcpStream::from_raw_fd(fd) }
}

/// The calls libkeepalive makes for [`VARS`], made by the program itself.
///
/// # Safety
/// `fd` must be a socket descriptor (or invalid, in which case the calls fail).
unsafe fn set_keepalive_inline(fd: i32) {
    for (level, option, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 6),
    ] {
        // SAFETY: value is a live c_int and its size is passed with it.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                (&raw const value).cast(),
                size_of::<i32>() as libc::socklen_t,
            );
        }
    }
}
