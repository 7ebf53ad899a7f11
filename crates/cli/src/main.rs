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
    /// Show a running process's TCP sockets: addresses, state, the keepalive settings in
    /// force and the time to the next probe.
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
