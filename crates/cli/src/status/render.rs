//! The two forms of a status report: a table for people, JSON for programs.
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use super::tcp_table::{Timer, TimerKind};
use super::{Report, Socket};
use crate::json::push_string;

const HEADINGS: [&str; 10] = [
    "FD",
    "STATE",
    "LOCAL",
    "PEER",
    "KEEPALIVE",
    "IDLE",
    "INTVL",
    "CNT",
    "USER-TIMEOUT",
    "TIMER",
];

/// A heading line, then one aligned row per socket; unknown values are `?`. The command
/// name is the process's own choice (prctl(2) PR_SET_NAME): it is shown escaped, so that
/// it cannot forge lines or terminal controls.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let name = report
        .command
        .as_deref()
        .map(|c| format!(" ({})", c.escape_debug()))
        .unwrap_or_default();
    let count = report.sockets.len();
    let sockets = if count == 1 { "socket" } else { "sockets" };
    let whose = if report.fds_known {
        ""
    } else {
        " of its user in its network namespace"
    };
    let _ = writeln!(
        out,
        "PID {}{name}: {count} TCP {sockets}{whose}",
        report.pid
    );
    let by = if report.configured_by.is_empty() {
        "neither the library nor a keepalive sock_ops program".to_string()
    } else {
        report.configured_by.join("; ")
    };
    let _ = writeln!(out, "configured by: {by}");
    if count == 0 {
        return out;
    }
    let rows: Vec<[String; 10]> = report.sockets.iter().map(row).collect();
    let mut widths = HEADINGS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let headings = HEADINGS.map(String::from);
    for cells in std::iter::once(&headings).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(socket: &Socket) -> [String; 10] {
    let entry = &socket.entry;
    let unknown = || "?".to_string();
    let options = socket.options;
    [
        socket.fd.map_or_else(unknown, |fd| fd.to_string()),
        entry.state.name().to_string(),
        entry.local.to_string(),
        peer(socket).map_or_else(|| "*".to_string(), |p| p.to_string()),
        options.map_or_else(unknown, |o| {
            if o.keepalive { "on" } else { "off" }.to_string()
        }),
        options.map_or_else(unknown, |o| format!("{}s", o.idle)),
        options.map_or_else(unknown, |o| format!("{}s", o.interval)),
        options.map_or_else(unknown, |o| o.count.to_string()),
        options.map_or_else(unknown, |o| match o.user_timeout {
            0 => "default".to_string(),
            ms => format!("{ms}ms"),
        }),
        entry.timer.map_or_else(|| "-".to_string(), timer),
    ]
}

fn timer(timer: Timer) -> String {
    let left = seconds(timer.left);
    let n = |count: u32, what: &str| {
        let s = if count == 1 { "" } else { "s" };
        format!("{count} {what}{s}")
    };
    match timer.kind {
        TimerKind::Keepalive => format!(
            "keepalive probe in {left}, {} sent",
            n(timer.probes, "probe")
        ),
        TimerKind::Retransmit => format!(
            "retransmission in {left}, {} so far",
            n(timer.retransmits, "retransmission")
        ),
        TimerKind::ZeroWindowProbe => format!(
            "zero-window probe in {left}, {} sent",
            n(timer.probes, "probe")
        ),
        TimerKind::TimeWait => format!("TIME-WAIT ends in {left}"),
        TimerKind::Other(code) => format!("timer {code} in {left}"),
    }
}

/// The peer, or `None` for a listener (whose peer is the unspecified address, port 0).
fn peer(socket: &Socket) -> Option<SocketAddr> {
    let peer = socket.entry.peer;
    (peer.port() != 0 || !peer.ip().is_unspecified()).then_some(peer)
}

fn seconds(d: Duration) -> String {
    format!("{}.{:02}s", d.as_secs(), d.subsec_millis() / 10)
}

/// One JSON document; the field names are part of the command's interface (docs/status.md).
pub fn json(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(out, "{{\"pid\":{}", report.pid);
    out.push_str(",\"command\":");
    match &report.command {
        Some(command) => push_string(&mut out, command),
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"complete\":{},\"descriptors_known\":{}",
        report.problems.is_empty(),
        report.fds_known
    );
    out.push_str(",\"problems\":[");
    for (i, problem) in report.problems.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(&mut out, problem);
    }
    out.push_str("],\"configured_by\":[");
    for (i, by) in report.configured_by.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(&mut out, by);
    }
    out.push_str("],\"sockets\":[");
    for (i, socket) in report.sockets.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        socket_json(&mut out, socket);
    }
    out.push_str("]}\n");
    out
}

fn socket_json(out: &mut String, socket: &Socket) {
    let entry = &socket.entry;
    let family = if entry.local.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    };
    let _ = write!(
        out,
        "{{\"fd\":{},\"inode\":{},\"family\":\"{family}\",\"state\":\"{}\",\"listener\":{}",
        socket
            .fd
            .map_or_else(|| "null".to_string(), |fd| fd.to_string()),
        entry.inode,
        entry.state.name(),
        entry.state == super::tcp_table::State::LISTEN,
    );
    out.push_str(",\"local\":");
    address(out, Some(entry.local));
    out.push_str(",\"peer\":");
    address(out, peer(socket));
    let option = |value: Option<u32>| value.map_or_else(|| "null".to_string(), |v| v.to_string());
    let options = socket.options;
    let _ = write!(
        out,
        ",\"keepalive\":{},\"idle_seconds\":{},\"interval_seconds\":{},\"count\":{},\"user_timeout_ms\":{}",
        options.map_or_else(|| "null".to_string(), |o| o.keepalive.to_string()),
        option(options.map(|o| o.idle)),
        option(options.map(|o| o.interval)),
        option(options.map(|o| o.count)),
        option(options.map(|o| o.user_timeout)),
    );
    out.push_str(",\"timer\":");
    match entry.timer {
        None => out.push_str("null"),
        Some(timer) => {
            let kind = match timer.kind {
                TimerKind::Keepalive => "keepalive",
                TimerKind::Retransmit => "retransmit",
                TimerKind::ZeroWindowProbe => "zero_window_probe",
                TimerKind::TimeWait => "time_wait",
                TimerKind::Other(_) => "other",
            };
            let _ = write!(
                out,
                "{{\"kind\":\"{kind}\",\"code\":{},\"expires_ms\":{},\"probes\":{},\"retransmits\":{}}}",
                timer.kind.code(),
                timer.left.as_millis(),
                timer.probes,
                timer.retransmits,
            );
        }
    }
    out.push('}');
}

fn address(out: &mut String, address: Option<SocketAddr>) {
    match address {
        None => out.push_str("null"),
        Some(a) => {
            let _ = write!(out, "{{\"address\":\"{}\",\"port\":{}}}", a.ip(), a.port());
        }
    }
}
