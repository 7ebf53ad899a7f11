//! What `attach` prints: a line per socket and what covers the connections to come, or
//! one JSON document.

use std::fmt::Write as _;

use crate::formats;
use crate::json::{self, Object};
use crate::kernel::live::Coverage;
use crate::options::Options;
use crate::socket::Tcp;
use crate::status::process;
use crate::status::tcp_table::State;

/// What happened to one socket.
pub struct Outcome {
    pub fd: i32,
    pub tcp: Tcp,
    /// What it carried; `None` where that cannot be read (MPTCP).
    pub before: Option<Options>,
    /// The settings now in force, when they were (or, with --dry-run, would be)
    /// changed; `None` when the socket was left alone.
    pub after: Option<Options>,
    /// Why it was left alone.
    pub why: Option<String>,
}

/// What covers the connections made from now on, for the output.
pub enum Future<'a> {
    /// Processes named by PID: nothing does.
    Program,
    /// The service of `--unit`: the kernel route, as far as it could.
    Service(&'a str, Coverage),
}

impl Future<'_> {
    /// Whether the connections the program makes from now on get settings.
    pub fn covered(&self) -> bool {
        matches!(
            self,
            Future::Service(
                _,
                Coverage::Attached | Coverage::WouldAttach | Coverage::Already
            )
        )
    }

    /// What happens to the connections the program makes from now on, in a sentence
    /// whose commands can be pasted.
    pub fn describe(&self) -> String {
        let Future::Service(unit, coverage) = self else {
            return "new connections the program makes itself do not: nothing runs inside \
                    it (`keepalive attach --unit UNIT` covers a service's while it runs; \
                    `keepalive enable UNIT` or `keepalive run` gives them at the next start)"
                .into();
        };
        let word = formats::shell_word(unit);
        match coverage {
            Coverage::Attached => format!(
                "new connections of {unit}'s processes get them from the kernel route \
                 attached to its cgroup, until it stops or `keepalive detach --unit {word}`"
            ),
            Coverage::WouldAttach => format!(
                "new connections of {unit}'s processes would get them from the kernel route, \
                 attached to its cgroup"
            ),
            Coverage::Already => format!(
                "new connections of {unit}'s processes get the settings of the kernel route \
                 already on its cgroup (from `keepalive enable --kernel` or an earlier attach)"
            ),
            Coverage::Not(why) => format!(
                "new connections the program makes itself do not: the kernel route cannot \
                 cover {unit} ({why}); `keepalive enable {word}` gives them at the next start"
            ),
        }
    }
}

pub fn render_text(
    reports: &[(i32, Vec<Outcome>)],
    exited: &[i32],
    future: &Future,
    dry_run: bool,
) -> String {
    let mut out = String::new();
    let verb = if dry_run { "would set" } else { "set" };
    for (pid, outcomes) in reports {
        let name = process::command(*pid).unwrap_or_default();
        let changed = outcomes.iter().filter(|o| o.after.is_some()).count();
        let _ = writeln!(
            out,
            "PID {pid} ({}): {} TCP sockets, {changed} {}",
            name.escape_debug(),
            outcomes.len(),
            if dry_run {
                "to configure"
            } else {
                "configured"
            }
        );
        for outcome in outcomes {
            let place = place(&outcome.tcp);
            match (&outcome.after, &outcome.before, &outcome.why) {
                (Some(after), Some(before), _) => {
                    let _ = writeln!(
                        out,
                        "  fd {} {place}: {verb} {after}  (was {before})",
                        outcome.fd
                    );
                }
                (_, _, why) => {
                    let _ = writeln!(
                        out,
                        "  fd {} {place}: left alone: {}",
                        outcome.fd,
                        why.as_deref().unwrap_or("")
                    );
                }
            }
        }
        let listeners = outcomes
            .iter()
            .filter(|o| o.after.is_some() && o.tcp.state == State::LISTEN)
            .count();
        let _ = writeln!(
            out,
            "  from now on: connections accepted on the {listeners} listener(s) configured \
             here carry the settings; {}",
            future.describe()
        );
    }
    for pid in exited {
        let _ = writeln!(out, "PID {pid}: exited while attach ran; nothing to do");
    }
    out
}

pub fn place(tcp: &Tcp) -> String {
    match tcp.peer {
        Some(peer) if tcp.state != State::LISTEN => {
            format!("{} {} -> {peer}", tcp.state.name(), tcp.local)
        }
        _ => format!("{} {}", tcp.state.name(), tcp.local),
    }
}

pub fn render_json(
    reports: &[(i32, Vec<Outcome>)],
    exited: &[i32],
    future: &Future,
    dry_run: bool,
) -> String {
    let mut sockets = Vec::new();
    for (pid, outcomes) in reports {
        for outcome in outcomes {
            let mut object = Object::new();
            object
                .number("pid", *pid as u64)
                .number("fd", outcome.fd as u64)
                .string("state", outcome.tcp.state.name())
                .string("local", &outcome.tcp.local.to_string());
            if let Some(peer) = outcome
                .tcp
                .peer
                .filter(|_| outcome.tcp.state != State::LISTEN)
            {
                object.string("peer", &peer.to_string());
            }
            object.bool("changed", outcome.after.is_some() && !dry_run);
            if let Some(before) = &outcome.before {
                object.string("before", &before.to_string());
            }
            match (&outcome.after, &outcome.why) {
                (Some(after), _) => object.string("after", &after.to_string()),
                (None, why) => object.string("left_alone", why.as_deref().unwrap_or("")),
            };
            sockets.push(object.finish());
        }
    }
    let mut out = String::from("{\"dry_run\":");
    out.push_str(if dry_run { "true" } else { "false" });
    out.push_str(",\"new_connections_covered\":");
    out.push_str(if future.covered() { "true" } else { "false" });
    out.push_str(",\"new_connections\":");
    json::push_string(&mut out, &future.describe());
    let exited: Vec<String> = exited.iter().map(i32::to_string).collect();
    out.push_str(",\"exited\":[");
    out.push_str(&exited.join(","));
    out.push_str("],\"sockets\":[");
    out.push_str(&sockets.join(","));
    out.push_str("]}");
    out
}
