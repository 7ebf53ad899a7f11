//! `keepalive`: run a program with TCP keepalive, wrap a systemd unit, check whether
//! preloading can reach a program.
//!
//! The command never configures a socket itself: it sets the variables the library
//! reads and puts the library in `LD_PRELOAD`, after checking the values with the
//! library's own parser (crates/config) and the program with [`check`].

mod attach;
mod audit;
mod check;
mod cli;
mod elf;
mod env;
mod exec;
mod failure;
mod formats;
mod json;
mod kernel;
mod library;
mod netns;
mod options;
mod run;
mod signals;
mod socket;
mod status;
mod unit;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Generate, Subcommand};
use failure::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return cli::report_parse_error(err),
    };
    let result = match cli.command {
        Subcommand::Run(args) => run::run(args),
        Subcommand::Check(args) if args.unit => unit::check(&args),
        Subcommand::Check(args) if args.kernel => kernel::verdict::command(&args),
        Subcommand::Check(args) => check::command(&args),
        Subcommand::Enable(args) => unit::enable(&args),
        Subcommand::Disable(args) => unit::disable(&args),
        Subcommand::Status { pid, json } => status::run(pid, json),
        Subcommand::Attach(args) => attach::run(&args),
        Subcommand::Audit(args) => audit::run(&args),
        Subcommand::Detach { unit, pids } => attach::detach(unit.as_deref(), &pids),
        Subcommand::Env(args) => env::print(&args),
        Subcommand::KernelAttach(args) => kernel::attach::attach(&args),
        Subcommand::Generate { what } => generate(what),
    };
    result.unwrap_or_else(Failure::report)
}

/// The man page and completions, from the same definition as `--help`.
fn generate(what: Generate) -> Result<ExitCode, Failure> {
    // Rendered in memory first: clap_complete panics when a write fails.
    let mut text = Vec::new();
    match what {
        Generate::Man => cli::man_page(&mut text)
            .map_err(|err| Failure::with_code(1, format!("cannot render keepalive(1): {err}")))?,
        Generate::Completions { shell } => {
            clap_complete::generate(shell, &mut cli::shown_command(), "keepalive", &mut text)
        }
    }
    std::io::stdout()
        .write_all(&text)
        .and_then(|()| std::io::stdout().flush())
        .map_err(|err| Failure::with_code(1, format!("cannot write to stdout: {err}")))?;
    Ok(ExitCode::SUCCESS)
}
