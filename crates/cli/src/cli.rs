//! The command line: one clap definition gives the parser, `--help`, the man page
//! keepalive(1) and the shell completions.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::TypedValueParser;
use clap::{Args, CommandFactory, Parser};
use keepalive_config::{Millis, Mode, Probes, Seconds, Var};

use crate::failure;
use crate::formats::Format;

const ABOUT: &str = "Turn on TCP keepalive for programs that cannot be changed";

const LONG_ABOUT: &str = "\
Turn on TCP keepalive for programs that cannot be changed.

keepalive runs a program with libkeepalive preloaded (LD_PRELOAD), so that every TCP \
socket the program creates or accepts gets SO_KEEPALIVE and the timers given here. It \
checks first that preloading can reach the program at all: statically linked programs, \
Go programs, setuid, setgid or file-capability programs and programs of another \
architecture never load the library, and keepalive says so instead of pretending.

Values are checked by the library's own parser, with the same ranges; a bad value is \
one line on stderr and exit status 2, and no program is started.";

const AFTER_LONG_HELP: &str = "\
Examples:
  keepalive run --idle 60s --interval 10s --count 6 -- ./legacy-app
  keepalive check /usr/bin/redis-server
  keepalive enable legacy.service --idle 2m --user-timeout 90s --now
  eval \"$(keepalive env --idle 60)\"
  keepalive env --idle 60 --format env-file >> /etc/default/legacy
  keepalive run --kernel --idle 60s -- ./static-app   # root: a cgroup sock_ops program

The library is found beside the command (target/release/libkeepalive.so, or \
../lib/<multiarch>/, ../lib64/ or ../lib/ libkeepalive.so.0) unless --library or \
KEEPALIVE_LIBRARY names it.

Exit status: 0 on success (check: reachable), 1 when check finds the program out of \
reach, --strict refuses it, or enable --now cannot prove the service got the library, \
2 for bad input. run exits with COMMAND's status. \
With --kernel, 1 also when the kernel route cannot be taken here (see kernel.md in the package's docs/).";

/// keepalive(1), ENVIRONMENT: what the command itself reads.
const MAN_ENVIRONMENT: &str = "\
.TP
\\fBKEEPALIVE\\fR, \\fBKEEPIDLE\\fR, \\fBKEEPINTVL\\fR, \\fBKEEPCNT\\fR, \\fBTCP_USER_TIMEOUT\\fR
The library's variables (libkeepalive(7)). \\fBrun\\fR passes inherited ones on, checked; \
an option wins over an inherited variable it contradicts, and a line on stderr says so \
(timers given over \\fBKEEPALIVE=off\\fR turn keepalive on).
.TP
\\fBLD_PRELOAD\\fR
Kept by \\fBrun\\fR and \\fBenv\\fR, the library added after its entries, never twice.
.TP
\\fBKEEPALIVE_LIBRARY\\fR
The library to preload when \\fB\\-\\-library\\fR is not given; with \\fBenable \\-\\-root\\fR, \
a path inside the root.
.TP
\\fBXDG_CONFIG_HOME\\fR, \\fBHOME\\fR, \\fBXDG_RUNTIME_DIR\\fR
Where \\fBenable \\-\\-user\\fR finds user units (and \\fB\\-\\-runtime\\fR ones).
";

/// keepalive(1), EXIT STATUS.
const MAN_EXIT_STATUS: &str = "\
.TP
0
Success; \\fBcheck\\fR: the program is reachable; \\fBenable \\-\\-now\\fR: the restarted service \
has the library mapped and its variables (or it was not running and stays stopped).
.TP
1
\\fBcheck\\fR: not reachable; \\fBrun \\-\\-strict\\fR, \\fBenable \\-\\-strict\\fR: refused; \
\\fBenable\\fR: a masked unit, sandboxing that hides the library, or a service that restarted \
without it; \\fB\\-\\-kernel\\fR: the kernel route cannot be taken here (kernel.md in the package's docs/); a \
failure of the system.
.TP
2
Bad input: an option, a value, a unit name or a path.
.TP
3
\\fBstatus\\fR: the report is printed, part of it could not be read.
.TP
126, 127
\\fBrun\\fR: COMMAND cannot be executed, or is not found. Otherwise \\fBrun\\fR exits with \
COMMAND's own status.
";

/// keepalive(1), FILES.
const MAN_FILES: &str = "\
.TP
\\fI/usr/lib/<multiarch>/libkeepalive.so.0\\fR, \\fI/usr/lib64/libkeepalive.so.0\\fR, \\fI/usr/local/lib/libkeepalive.so.0\\fR
The library, found from the command's own directory (../lib/...).
.TP
\\fI/etc/systemd/system/UNIT.d/zz\\-keepalive.conf\\fR
The drop-in \\fBenable\\fR writes under the unit's real name (\\fI/run/systemd/system\\fR with \
\\fB\\-\\-runtime\\fR, \\fI~/.config/systemd/user\\fR with \\fB\\-\\-user\\fR); \\fBdisable\\fR removes \
only such a file.
";

/// keepalive(1), EXAMPLES.
const MAN_EXAMPLES: &str = "\
.TP
\\fBkeepalive run \\-\\-idle 60s \\-\\-interval 10s \\-\\-count 6 \\-\\- ./legacy\\-app\\fR
Run a program with keepalive on every TCP socket it creates or accepts.
.TP
\\fBkeepalive enable legacy \\-\\-idle 2m \\-\\-now\\fR
Write the drop-in, reload systemd, restart legacy.service if it runs, and prove that \
the new process has the library and its settings.
.TP
\\fBeval \\(dq$(keepalive env \\-\\-idle 60)\\(dq\\fR
Export the variables into the current shell (sh, dash, bash).
.TP
\\fBkeepalive env \\-\\-idle 60 \\-\\-format env\\-file > app.env\\fR
A file for \\fBdocker run \\-\\-env\\-file\\fR or systemd's \\fBEnvironmentFile=\\fR.
";

#[derive(Parser, Debug)]
#[command(
    name = "keepalive",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Subcommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum Subcommand {
    /// Run COMMAND with keepalive on its TCP sockets (exec, no extra process; with
    /// --kernel and no systemd, the command stays as its parent to remove its cgroup)
    #[command(
        long_about = "Run COMMAND with keepalive on its TCP sockets.\n\n\
            Checks COMMAND as `keepalive check` does, sets the variables from the options \
            (over those inherited), adds the library to LD_PRELOAD (keeping the entries \
            already there, never twice) and executes COMMAND in place: no extra process, \
            COMMAND's own exit status, signals and file descriptors. When preloading \
            cannot reach COMMAND, a warning says why and COMMAND still runs, unless \
            --strict is given.\n\n\
            With --kernel, COMMAND runs in a cgroup of its own that the kernel route \
            serves. Where systemd makes that cgroup (a transient scope) COMMAND is still \
            executed in place; elsewhere `keepalive` stays as COMMAND's parent, passes \
            signals on, and removes the cgroup when COMMAND ends. Inside a systemd \
            service it refuses: `keepalive enable --kernel UNIT` serves the unit's own \
            cgroup.",
        after_help = "Example: ExecStart=/usr/bin/keepalive run --idle 60s -- /usr/bin/legacy-app"
    )]
    Run(RunArgs),
    /// Say whether preloading can reach a program, and why (exit 0 yes, 1 no)
    #[command(
        long_about = "Say whether preloading can reach a program, and why.\n\n\
            Looks PROGRAM up in PATH, follows #! scripts to their interpreter (also \
            through /usr/bin/env NAME) and reads the ELF file: a program without a \
            loader (statically linked), a Go program (its net package makes system \
            calls directly), another architecture or word size, setuid or setgid bits \
            and file capabilities (secure execution: the loader ignores LD_PRELOAD) \
            are out of reach. Programs whose loader is glibc's or musl's are reachable: \
            musl's loader takes the library's libc.so.6 as itself.\n\n\
            Prints one line, the verdict and the reason; exit status 0 when reachable, \
            1 when not, 2 when PROGRAM is not a program that can be read, 127 when it \
            is not found in PATH."
    )]
    Check(CheckArgs),
    /// Preload the library into a systemd service with a drop-in
    #[command(
        long_about = "Preload the library into a systemd service with a drop-in.\n\n\
            Writes UNIT.d/zz-keepalive.conf under the unit's real name (an alias is \
            followed, as `systemctl edit` does) in /etc/systemd/system (/run with \
            --runtime, the user unit directory with --user), with an Environment= line \
            that keeps the LD_PRELOAD the unit sets now, and the variables from the \
            options; those of an earlier enable not given again are kept, and said so. \
            Refuses a masked unit, a name systemd would refuse, and a library the \
            unit's sandboxing hides (ProtectHome=, PrivateTmp=, TemporaryFileSystem=, \
            InaccessiblePaths=, NoExecPaths=, RootDirectory=, RootImage=). Checks the \
            unit's ExecStart program as `keepalive check` does: a warning, or a \
            refusal with --strict. With systemd running, reloads it. With --now, \
            restarts the service if it runs (try-restart: a stopped service stays \
            stopped, a template is never started) and proves the result: the new \
            main process (or a child) has the library mapped and the variables in its \
            environment, or the command exits 1 with the reason."
    )]
    Enable(EnableArgs),
    /// Remove the drop-in `keepalive enable` wrote, and nothing else
    #[command(
        long_about = "Remove the drop-in `keepalive enable` wrote, and nothing else.\n\n\
            Follows an alias to the unit's real name, as enable does, and removes \
            enable's drop-ins under /etc and /run (--runtime) and under the unit's \
            other names: any one left would keep preloading. With systemd running, \
            reloads it; with --now, restarts the service if it runs and \
            checks that the new process no longer has the library mapped."
    )]
    Disable(DisableArgs),
    /// Show a running process's TCP sockets and the keepalive settings in force on each
    #[command(long_about = "Show a running process's TCP sockets and the keepalive \
            settings in force on each.\n\n\
            For every TCP socket the process holds, listeners included: local and peer \
            address, state, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and \
            TCP_USER_TIMEOUT as the kernel holds them (getsockopt on a duplicate made with \
            pidfd_getfd(2), Linux 5.6), and the time to the next keepalive probe with the \
            probes sent (from /proc/PID/net/tcp and tcp6, the process's own network \
            namespace). Reading the options takes ptrace permission over the process: its \
            own user, or root. Without it, the command shows what it can read and says what \
            it could not, and why.\n\n\
            Exit status: 0 when everything was read; 1 when there is no such process or it \
            exited while being read; 2 for a PID that is not a process; 3 when the report is \
            printed but part of it could not be read.")]
    Status {
        /// The process to look at
        #[arg(value_parser = pid, allow_hyphen_values = true)]
        pid: i32,
        /// Print one JSON document instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Give a running process's TCP connections and listeners keepalive now
    #[command(long_about = "Give a running process's TCP connections and listeners \
            keepalive now, without a restart.\n\n\
            Every established TCP connection and listener of each PID is duplicated with \
            pidfd_getfd(2) (Linux 5.6) and configured with setsockopt(2), which acts on the \
            socket the program holds. A socket someone configured (keepalive on, a user \
            timeout, or a timer that differs from its network namespace's sysctl) is left \
            alone, as the library leaves it. Connections accepted later on a listener \
            configured here inherit its settings. Connections the program makes later are \
            covered with --unit, by the kernel route on the service's own cgroup until it \
            stops or `keepalive detach --unit UNIT` (where the kernel allows: Linux 6.1, \
            root); by PID alone they are not, and `keepalive enable UNIT` or `keepalive \
            run` covers them at the next start. \
            Takes ptrace permission over the process (root, or its own user where Yama's \
            ptrace_scope allows); works on a process of another pid or network namespace \
            from the host.\n\n\
            Exit status: 0 when done (or, with --dry-run, shown); 1 when a process cannot \
            be attached (no such process, no permission, a kernel without pidfd_getfd), \
            with nothing changed in any of the processes, since every one is checked \
            before any socket changes; 1 also when a setsockopt fails part way, after \
            printing what was changed, which detach puts back; 2 for a bad value, or \
            settings that set nothing.")]
    Attach(AttachProcessArgs),
    /// Put back what `keepalive attach` changed in a running process
    #[command(long_about = "Put back what `keepalive attach` changed in a running \
            process.\n\n\
            attach records, per process (by pid and start time, under \
            /run/keepalive/attach, or a user's $XDG_RUNTIME_DIR/keepalive/attach), each \
            socket it changed with its options before and after. detach sets back the \
            options attach changed on every socket that still carries exactly what attach \
            set; one changed since is left as it is, and said so. Then the record goes. \
            A timer set back stays at that value: a socket cannot be told to follow the \
            sysctl again. It finds what root or the process's owner attached, and the \
            sockets a forked child still holds after the attached process exited. With \
            --unit, the kernel route `attach --unit` put on the service's cgroup is \
            detached too.\n\n\
            Exit status: 0 when done, also when attach changed nothing in the process; 1 \
            when there is no such process, no permission, or a record it cannot read or \
            remove, with nothing changed.")]
    Detach {
        /// Every process of this systemd service (a name without a suffix is a .service)
        #[arg(long, value_name = "UNIT")]
        unit: Option<String>,
        /// The processes to detach from
        #[arg(value_name = "PID", required_unless_present = "unit", value_parser = pid, allow_hyphen_values = true)]
        pids: Vec<i32>,
    },
    /// Show the host's established TCP connections that have no keepalive
    #[command(
        long_about = "Show the host's established TCP connections that have no \
            keepalive, by systemd unit, container or process, with how many, how long the \
            longest has been idle, and the line that fixes each group (`keepalive attach` \
            now, `keepalive enable` for the next start, the kernel route where preloading \
            cannot reach the program).\n\n\
            Connections come from the kernel (sock_diag, as ss reads them) in every network \
            namespace the command can enter: all of them as root, its own otherwise. \
            A namespace it cannot enter is left out, and named on stderr. \
            Keepalive is read on each socket with getsockopt where the command may \
            duplicate the holder's descriptors (root), else from a pending keepalive timer. \
            A connection its program set up itself (a user timeout, its own timers) is \
            counted, named, and offered no attach, which would leave it alone."
    )]
    Audit(AuditArgs),
    /// Print the variables for a shell, a unit, Docker or Kubernetes
    #[command(
        long_about = "Print the variables for a shell, a unit, Docker or Kubernetes.\n\n\
            LD_PRELOAD is the inherited one with the library found (or --library) added, \
            as `run` builds it; the other lines are the options given, checked as `run` \
            checks them. Settings left at their default print nothing. The default \
            format is `export NAME=value` lines for eval \"$(keepalive env ...)\" in sh, \
            dash or bash."
    )]
    Env(EnvArgs),
    /// Attach the route's programs to this process's cgroup, then execute COMMAND in
    /// place: the ExecStartPre=+ step of `enable --kernel`, and `run --kernel` inside
    /// a systemd scope
    #[command(name = "kernel-attach", hide = true)]
    KernelAttach(AttachArgs),
    /// Write the man page or shell completions to stdout (for packaging)
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum Generate {
    /// keepalive(1) in roff
    Man,
    /// A completion script for SHELL
    Completions { shell: clap_complete::Shell },
}

#[derive(Args, Debug)]
pub struct AttachProcessArgs {
    #[command(flatten)]
    pub settings: Settings,
    /// Show what would change, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document instead of lines
    #[arg(long)]
    pub json: bool,
    /// Every process of this systemd service (a name without a suffix is a .service)
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,
    /// The processes to attach to
    #[arg(value_name = "PID", required_unless_present = "unit", value_parser = pid, allow_hyphen_values = true)]
    pub pids: Vec<i32>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Every connection, with keepalive or without
    #[arg(long)]
    pub all: bool,
    /// Only connections idle at least this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub min_idle: u64,
    /// Only the connections of this systemd unit (a name without a suffix is a .service)
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,
    /// Only the connections of this process
    #[arg(long, value_name = "PID", value_parser = pid)]
    pub pid: Option<i32>,
    /// text, json, or prometheus (node_exporter's textfile collector)
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "text",
        hide_possible_values = true
    )]
    pub format: AuditFormat,
}

/// Output formats of `audit`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// One line per unit, container or process, with the line that fixes it.
    #[default]
    Text,
    /// One JSON document: one object per connection.
    Json,
    /// Prometheus text format, for node_exporter's textfile collector: connections
    /// without keepalive per group, and those of them their program set up itself.
    Prometheus,
}

/// What the library is told to do: the options `run`, `enable` and `env` share.
#[derive(Args, Debug, Clone, Default)]
pub struct Settings {
    /// Idle time before the first probe (KEEPIDLE): 90s, 2m, 1h; a bare number is seconds
    #[arg(long, value_name = "DURATION", value_parser = idle, allow_hyphen_values = true)]
    pub idle: Option<Seconds>,
    /// Time between probes (KEEPINTVL): as --idle
    #[arg(long, value_name = "DURATION", value_parser = interval, allow_hyphen_values = true)]
    pub interval: Option<Seconds>,
    /// Unanswered probes before the connection is dropped (KEEPCNT): 1 to 127
    #[arg(long, value_name = "PROBES", value_parser = count, allow_hyphen_values = true)]
    pub count: Option<Probes>,
    /// Longest time sent data may stay unacknowledged (TCP_USER_TIMEOUT): with a unit,
    /// 120s or 120000ms; 0ms is the system default
    #[arg(long, value_name = "DURATION", value_parser = user_timeout, allow_hyphen_values = true)]
    pub user_timeout: Option<Millis>,
    /// on: turn keepalive on; skip: leave SO_KEEPALIVE as the program sets it, apply
    /// the timers; off: touch nothing (KEEPALIVE)
    #[arg(long, value_name = "on|skip|off", value_parser = ModeParser, hide_possible_values = true)]
    pub mode: Option<Mode>,
    /// The library to preload [default: found beside this command; env:
    /// KEEPALIVE_LIBRARY]
    #[arg(long, value_name = "PATH")]
    pub library: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub settings: Settings,
    /// Do not start COMMAND when preloading cannot reach it (exit status 1)
    #[arg(long)]
    pub strict: bool,
    /// Give COMMAND's connections the settings from the kernel instead of the
    /// library: a cgroup sock_ops program that reaches static, setuid and raw-syscall
    /// programs too (root, Linux 6.1, cgroup v2; see kernel.md in the package's docs/)
    #[arg(long, conflicts_with_all = ["strict", "library"])]
    pub kernel: bool,
    /// The program and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    #[command(flatten)]
    pub settings: Settings,
    /// A program to execute in place once the route's programs are attached
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A program name (looked up in PATH) or a path; with --unit, a service
    #[arg(value_name = "COMMAND|PATH")]
    pub program: OsString,
    /// One JSON object instead of the line
    #[arg(long, conflicts_with = "unit")]
    pub json: bool,
    /// Also say whether `run --kernel` reaches it here (kernel, cgroup v2, privileges,
    /// BPF, lockdown); the exit status is then the kernel route's: 0 reachable, 1 not
    #[arg(long)]
    pub kernel: bool,
    /// Check a service instead: its ExecStart program, and whether the drop-in of
    /// `keepalive enable` still matches the unit (exit 1 when it has drifted)
    #[arg(long)]
    pub unit: bool,
    /// With --unit: a user unit
    #[arg(long, requires = "unit")]
    pub user: bool,
    /// With --unit: the file system under DIR instead of /
    #[arg(long, value_name = "DIR", requires = "unit")]
    pub root: Option<PathBuf>,
}

/// Where the unit lives.
#[derive(Args, Debug, Clone)]
pub struct Place {
    /// The service, as systemctl names it (a name without a suffix is a .service)
    #[arg(value_name = "UNIT")]
    pub unit: String,
    /// A user unit (~/.config/systemd/user) instead of a system unit
    #[arg(long)]
    pub user: bool,
    /// Work on the file system under DIR instead of /, without a running systemd
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Restart the service if it runs (systemctl try-restart) and prove what it got
    #[arg(long, conflicts_with = "root")]
    pub now: bool,
    /// A drop-in under /run, gone at the next boot (as `systemctl edit --runtime`)
    #[arg(long)]
    pub runtime: bool,
    /// With --now: how long to wait for systemd to restart the service before giving
    /// up (the service is left as systemd has it)
    #[arg(long, value_name = "SECONDS", default_value_t = 90, requires = "now")]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct EnableArgs {
    #[command(flatten)]
    pub place: Place,
    #[command(flatten)]
    pub settings: Settings,
    /// Attach a sock_ops program to the unit's cgroup at every start instead of
    /// preloading the library (an ExecStartPre=+ line; see kernel.md in the package's docs/)
    #[arg(long, conflicts_with_all = ["library", "user"])]
    pub kernel: bool,
    /// Write nothing when preloading cannot reach the unit's ExecStart program (exit
    /// status 1)
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug)]
pub struct DisableArgs {
    #[command(flatten)]
    pub place: Place,
}

#[derive(Args, Debug)]
pub struct EnvArgs {
    #[command(flatten)]
    pub settings: Settings,
    /// sh: export lines for eval; systemd: Environment= lines; env-file: NAME=value
    /// for docker --env-file; kubernetes: a container's env: entries
    #[arg(
        long,
        value_enum,
        value_name = "sh|systemd|env-file|kubernetes",
        default_value_t,
        hide_possible_values = true
    )]
    pub format: Format,
}

fn refused(refusal: keepalive_config::Refused) -> String {
    refusal.to_string()
}

fn idle(text: &str) -> Result<Seconds, String> {
    keepalive_config::seconds_option(Var::Idle, text.as_bytes()).map_err(refused)
}

fn interval(text: &str) -> Result<Seconds, String> {
    keepalive_config::seconds_option(Var::Interval, text.as_bytes()).map_err(refused)
}

fn count(text: &str) -> Result<Probes, String> {
    keepalive_config::count_option(text.as_bytes()).map_err(refused)
}

fn user_timeout(text: &str) -> Result<Millis, String> {
    keepalive_config::millis_option(text.as_bytes()).map_err(refused)
}

/// `--mode`: the library's own parser, which also names the values it takes, so that
/// completions and `--help` list them instead of offering file names.
#[derive(Clone)]
struct ModeParser;

fn mode(text: &str) -> Result<Mode, String> {
    keepalive_config::mode_option(text.as_bytes()).map_err(refused)
}

impl TypedValueParser for ModeParser {
    type Value = Mode;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Mode, clap::Error> {
        let parse: fn(&str) -> Result<Mode, String> = mode;
        parse.parse_ref(command, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            ["on", "skip", "off"]
                .into_iter()
                .map(clap::builder::PossibleValue::new),
        ))
    }
}

/// `status PID`: a number that fits a `pid_t` (the status module refuses those that
/// are not positive); any other text is refused in words, never with Rust's integer
/// range.
fn pid(text: &str) -> Result<i32, String> {
    text.parse::<i32>().map_err(|_| {
        format!(
            "'{text}': not a process ID (a number from 1 to {})",
            i32::MAX
        )
    })
}

/// Help and version go to stdout as clap writes them; every other error is one line,
/// `keepalive: <what was typed>: <what is accepted>`, and exit status 2.
pub fn report_parse_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(err.exit_code() as u8)
        }
        _ => {
            // clap's message runs up to the first blank line ("… not provided:" and
            // the missing argument on the next); usage and hints follow it.
            let text = err.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            failure::warn(format_args!("keepalive: {message} (see keepalive --help)"));
            ExitCode::from(2)
        }
    }
}

/// The command as its users see it, for the completions: clap_complete offers hidden
/// subcommands too (`generate` is for packaging), so they are left out here, as
/// `--help` and keepalive(1) leave them out.
pub fn shown_command() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new("keepalive")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommands(visible)
}

/// The date keepalive(1) carries, as man-pages(7) asks: the release it documents. The
/// same day heads libkeepalive(7) and the newest entry of packaging/debian/changelog
/// (tests/packages.rs holds the three together).
const RELEASE_DATE: &str = "2026-11-24";

/// keepalive(1), one page: the command's name, synopsis, description and options, a
/// section for each subcommand with its own synopsis, description and options, then
/// the examples and exit status of `--help`.
/// A subcommand's SYNOPSIS, each option with the name of its value (`[--idle
/// DURATION]`): clap_mangen's shows the option alone.
fn synopsis(command: &clap::Command, name: &str) -> String {
    let roff = |text: &str| text.replace('-', "\\-");
    let mut line = format!(".SH SYNOPSIS\n\\fB{}\\fR", roff(name));
    for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
        let value = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map(|name| name.to_string())
            .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
        let takes = arg.get_action().takes_values();
        if arg.is_positional() {
            let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
            let dots = if many { "..." } else { "" };
            let word = format!("<\\fI{value}\\fR>{dots}");
            if arg.is_required_set() {
                line += &format!(" {word}");
            } else {
                line += &format!(" [{word}]");
            }
            continue;
        }
        let Some(long) = arg.get_long() else {
            continue;
        };
        let flag = format!("\\fB\\-\\-{}\\fR", roff(long));
        if takes {
            line += &format!(" [{flag} \\fI{value}\\fR]");
        } else {
            line += &format!(" [{flag}]");
        }
    }
    line.push('\n');
    line
}

pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = Cli::command();
    command.build();
    let man = clap_mangen::Man::new(command.clone()).date(RELEASE_DATE);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    for sub in command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
    {
        let name = format!("keepalive {}", sub.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let man = clap_mangen::Man::new(sub.clone().bin_name(&name));
        let mut section = synopsis(sub, &name).into_bytes();
        man.render_description_section(&mut section)?;
        man.render_options_section(&mut section)?;
        // One page: each subcommand's parts become subsections of its own section.
        let text = String::from_utf8_lossy(&section).replace(".SH ", ".SS ");
        out.write_all(text.as_bytes())?;
    }
    let mut extra = Vec::new();
    man.render_extra_section(&mut extra)?;
    let extra = String::from_utf8_lossy(&extra).replace(".SH EXTRA", ".SH NOTES");
    out.write_all(extra.as_bytes())?;
    for (title, text) in [
        ("ENVIRONMENT", MAN_ENVIRONMENT),
        ("EXIT STATUS", MAN_EXIT_STATUS),
        ("FILES", MAN_FILES),
        ("EXAMPLES", MAN_EXAMPLES),
    ] {
        writeln!(out, ".SH \"{title}\"")?;
        out.write_all(text.as_bytes())?;
    }
    writeln!(out, ".SH \"SEE ALSO\"")?;
    writeln!(
        out,
        "libkeepalive(7), ld.so(8), tcp(7), socket(7), systemd.exec(5), ss(8)"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
