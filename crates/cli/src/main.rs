//! `keepalive`: the command operators type.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod status;

#[derive(Parser)]
#[command(
    name = "keepalive",
    version,
    about = "TCP keepalive for programs that cannot be changed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a running process's TCP sockets and the keepalive settings in force on each.
    ///
    /// For every TCP socket the process holds, listeners included: local and peer
    /// address, state, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and
    /// TCP_USER_TIMEOUT as the kernel holds them (getsockopt on a duplicate made with
    /// pidfd_getfd(2), Linux 5.6), and the time to the next keepalive probe with the
    /// probes sent (from /proc/PID/net/tcp and tcp6, the process's own network
    /// namespace). Reading the options takes ptrace permission over the process: its
    /// own user, or root. Without it, the command shows what it can read and says what
    /// it could not, and why.
    ///
    /// Exit status: 0 when everything was read; 1 when there is no such process or it
    /// exited while being read; 2 for a PID that is not a process; 3 when the report is
    /// printed but part of it could not be read.
    Status {
        /// The process to look at.
        pid: i32,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Status { pid, json } => status::run(pid, json),
    }
}
