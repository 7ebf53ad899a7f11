//! `check --kernel`: whether the kernel route can reach a program here, asked of the
//! kernel itself. The sock_ops program sees every TCP connection of its cgroup, so the
//! program's kind matters only where the program overrides what the kernel set.

use std::process::ExitCode;

use keepalive_config::Config;

use crate::check::{self, Reach, Root, Runner, Verdict};
use crate::cli::CheckArgs;
use crate::failure::{self, Failure};

/// What the kernel route would do for one program on this machine.
pub enum KernelReach {
    /// Every connection gets the settings (unless the program set its own first).
    Whole,
    /// The kernel sets them, and the program then sets its own over some of them.
    InPart(&'static str),
    /// Not here; why.
    Unavailable(String),
}

impl KernelReach {
    pub fn reachable(&self) -> bool {
        matches!(self, KernelReach::Whole)
    }

    pub fn line(&self) -> String {
        match self {
            KernelReach::Whole => "kernel route: reachable: `keepalive run --kernel` gives \
                                  every TCP connection the settings"
                .to_string(),
            KernelReach::InPart(why) => format!("kernel route: in part: {why}"),
            KernelReach::Unavailable(why) => format!("kernel route: not available here: {why}"),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            KernelReach::Whole => "reachable",
            KernelReach::InPart(_) => "in-part",
            KernelReach::Unavailable(_) => "unavailable",
        }
    }
}

/// Go's net package turns keepalive on for every connection right after connect and
/// accept return, after the kernel's ESTABLISHED callbacks: 15 s idle time and interval
/// by default (and, since Go 1.23's KeepAliveConfig, 9 probes), over the kernel's.
const GO: &str = "Go sets SO_KEEPALIVE, TCP_KEEPIDLE and TCP_KEEPINTVL (15 s by default; \
                  Go 1.23 and later also TCP_KEEPCNT) after connect and accept, over what \
                  the kernel set; TCP_USER_TIMEOUT keeps the kernel's, and connections \
                  dialled with KeepAlive: -1 keep all of it; set KeepAliveConfig in the \
                  program";

/// Judges the kernel route for `verdict`'s program by what `run --kernel` would do
/// before starting it: its refusals, then a real load of the programs (the verifier,
/// BPF, lockdown) and, where the command makes the cgroup itself, the cgroup made
/// (cgroup2 found or mounted, writable, able to take a process) — both undone again.
pub fn judge(verdict: &Verdict) -> KernelReach {
    if let Err(failure) = super::obstacle(&verdict.command) {
        return KernelReach::Unavailable(super::reason(failure));
    }
    let tried = if super::systemd_makes_the_cgroup() {
        super::load(&Config::DEFAULT).map(drop)
    } else {
        super::prepare(&Config::DEFAULT).map(drop)
    };
    if let Err(failure) = tried {
        return KernelReach::Unavailable(super::reason(failure));
    }
    match verdict.reach {
        Reach::Go => KernelReach::InPart(GO),
        _ => KernelReach::Whole,
    }
}

/// `check --kernel`: the preloading verdict, then the kernel route's, as two lines or
/// one JSON object; exit status 0 when the kernel route reaches the whole program.
pub fn command(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let verdict = check::inspect(&args.program, &Root::host(), Runner::Anyone)?;
    let kernel = judge(&verdict);
    if args.json {
        let mut object = verdict.json_object();
        object
            .bool("kernel_reachable", kernel.reachable())
            .string("kernel_kind", kernel.kind())
            .string("kernel_line", &kernel.line());
        failure::say(format_args!("{}", object.finish()))?;
    } else {
        failure::say(format_args!("{}", verdict.line()))?;
        failure::say(format_args!("{}", kernel.line()))?;
    }
    Ok(if kernel.reachable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
