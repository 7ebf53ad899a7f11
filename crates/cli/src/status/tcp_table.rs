//! The kernel's tables of TCP sockets: `/proc/PID/net/tcp` and `tcp6`.
//!
//! `/proc/PID/net` is the network namespace of process PID, not of the reader, so these
//! are the tables the process's sockets live in. Each line is printed by
//! `get_tcp4_sock()` / `get_tcp6_sock()` (net/ipv4/tcp_ipv4.c, net/ipv6/tcp_ipv6.c;
//! proc(5), "/proc/net/tcp"). The columns read here:
//!
//! - `local_address`, `rem_address`: the address as the CPU reads its big-endian 32-bit
//!   words, in hex (one word for IPv4, four for IPv6), a colon, the port in host order;
//! - `st`: the TCP state (include/net/tcp_states.h);
//! - `tr:tm->when`: which timer is pending and the time left on it in clock ticks
//!   (`USER_HZ`, `sysconf(_SC_CLK_TCK)`, 100 on Linux). `tr` is 0 for none, 1 for the
//!   retransmission timer (also the loss-probe and reordering timers), 2 for `sk_timer`,
//!   which on a socket a process holds is the keepalive timer, 3 for TIME-WAIT and 4 for
//!   the zero-window probe timer;
//! - `retrnsmt`: `icsk_retransmits`;
//! - `uid`: the owner of the socket (the file system user that created it);
//! - `timeout`: `icsk_probes_out`, the keepalive probes sent and unanswered for timer 2,
//!   the zero-window probes for timer 4 (the third field of `ss -o`'s `timer:(…)`);
//! - `inode`: the socket's inode, the number in a descriptor's `socket:[N]` link.
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// One socket of a TCP table.
#[derive(Clone, Debug)]
pub struct Entry {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub state: State,
    pub timer: Option<Timer>,
    pub uid: u32,
    pub inode: u64,
}

/// A TCP state, as `st` numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State(pub u8);

impl State {
    pub const ESTABLISHED: State = State(1);
    pub const LISTEN: State = State(10);

    /// The RFC 793 name, as `ss` spells it in its `state` filter (upper case).
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "ESTABLISHED",
            2 => "SYN-SENT",
            3 => "SYN-RECV",
            4 => "FIN-WAIT-1",
            5 => "FIN-WAIT-2",
            6 => "TIME-WAIT",
            7 => "CLOSE",
            8 => "CLOSE-WAIT",
            9 => "LAST-ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            12 => "NEW-SYN-RECV",
            _ => "UNKNOWN",
        }
    }
}

/// The timer pending on a socket.
#[derive(Clone, Copy, Debug)]
pub struct Timer {
    pub kind: TimerKind,
    /// Time left until it fires.
    pub left: Duration,
    /// `icsk_probes_out`: keepalive or zero-window probes sent without an answer.
    pub probes: u32,
    /// `icsk_retransmits`.
    pub retransmits: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    Retransmit,
    Keepalive,
    TimeWait,
    ZeroWindowProbe,
    /// A code this program does not know; kept so that nothing is hidden.
    Other(u8),
}

impl TimerKind {
    fn from_code(code: u8) -> Option<TimerKind> {
        Some(match code {
            0 => return None,
            1 => TimerKind::Retransmit,
            2 => TimerKind::Keepalive,
            3 => TimerKind::TimeWait,
            4 => TimerKind::ZeroWindowProbe,
            other => TimerKind::Other(other),
        })
    }

    /// The `tr` code the kernel prints.
    pub fn code(self) -> u8 {
        match self {
            TimerKind::Retransmit => 1,
            TimerKind::Keepalive => 2,
            TimerKind::TimeWait => 3,
            TimerKind::ZeroWindowProbe => 4,
            TimerKind::Other(code) => code,
        }
    }
}

/// Reads one table. `ticks_per_second` is `USER_HZ`, the unit of `tm->when`.
pub fn read(path: &Path, ticks_per_second: u64) -> io::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .skip(1)
        .map(|line| {
            parse_line(line, ticks_per_second).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: unexpected line {line:?}", path.display()),
                )
            })
        })
        .collect()
}

fn parse_line(line: &str, ticks_per_second: u64) -> Option<Entry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [
        _,
        local,
        peer,
        state,
        _,
        timer,
        retransmits,
        uid,
        probes,
        inode,
        ..,
    ] = fields[..]
    else {
        return None;
    };
    let (code, when) = timer.split_once(':')?;
    let timer = TimerKind::from_code(u8::from_str_radix(code, 16).ok()?).map(|kind| Timer {
        kind,
        left: ticks(when, ticks_per_second),
        probes: probes.parse().unwrap_or(0),
        retransmits: u32::from_str_radix(retransmits, 16).unwrap_or(0),
    });
    Some(Entry {
        local: address(local)?,
        peer: address(peer)?,
        state: State(u8::from_str_radix(state, 16).ok()?),
        timer,
        uid: uid.parse().ok()?,
        inode: inode.parse().ok()?,
    })
}

/// `tm->when` in clock ticks. Kernels before 4.4 printed a timer already due as a
/// negative number (`jiffies_to_clock_t` of a negative delta); later ones clamp it to 0
/// (`jiffies_delta_to_clock_t`). Both mean "due now".
fn ticks(hex: &str, ticks_per_second: u64) -> Duration {
    let ticks = u64::from_str_radix(hex, 16).unwrap_or(0);
    let ticks = if ticks > i64::MAX as u64 { 0 } else { ticks };
    Duration::from_millis(ticks.saturating_mul(1000) / ticks_per_second.max(1))
}

/// `0100007F:1F90` or `00000000000000000000000001000000:1F90`.
fn address(field: &str) -> Option<SocketAddr> {
    let (address, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // Hex digits only: the slices below are byte ranges, which must fall on characters.
    if !address.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(address)?)),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(&address[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The kernel printed a word of network-order bytes as the CPU reads it, so its bytes in
/// native order are the address bytes in network order.
fn word(hex: &str) -> Option<[u8; 4]> {
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

// The lines below are as a little-endian machine prints them (trailing columns cut).
#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    const V4: &str = "   3: 0100007F:1F90 0100007F:AC8A 01 00000000:00000000 02:0000164E 00000000     0        0 1229586 2";
    const V6: &str = "   0: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000001000000:01BB 0A 00000000:00000000 00:00000000 00000003  1000        5 4242 1";

    #[test]
    fn ipv4_line() {
        let entry = parse_line(V4, 100).expect("parses");
        assert_eq!(entry.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(entry.peer, "127.0.0.1:44170".parse().unwrap());
        assert_eq!(entry.state.name(), "ESTABLISHED");
        assert_eq!((entry.uid, entry.inode), (0, 1229586));
        let timer = entry.timer.expect("a timer");
        assert_eq!(timer.kind, TimerKind::Keepalive);
        assert_eq!(timer.left, Duration::from_millis(57_100));
    }

    #[test]
    fn ipv6_line() {
        let entry = parse_line(V6, 100).expect("parses");
        assert_eq!(entry.local, "[::ffff:127.0.0.1]:8080".parse().unwrap());
        assert_eq!(entry.peer, "[::1]:443".parse().unwrap());
        assert_eq!(entry.state, State::LISTEN);
        assert_eq!((entry.uid, entry.inode), (1000, 4242));
        assert!(entry.timer.is_none());
    }

    #[test]
    fn malformed_addresses_are_refused_not_panicked_on() {
        let non_ascii = format!("{}é{}:1F90", "0".repeat(7), "0".repeat(23));
        for field in [non_ascii.as_str(), "0100007G:1F90", "0100007F", "7F:1F90"] {
            assert_eq!(address(field), None, "{field:?}");
        }
    }

    #[test]
    fn timer_columns() {
        // Retransmissions are hex, probes decimal; a negative time (kernels before
        // 4.4) means due now.
        let line = V4
            .replace("02:0000164E 00000000", "01:FFFFFFFFFFFFFFF6 0000000B")
            .replace("     0        0 ", "     0       12 ");
        let timer = parse_line(&line, 100).unwrap().timer.unwrap();
        assert_eq!(timer.kind, TimerKind::Retransmit);
        assert_eq!(timer.left, Duration::ZERO);
        assert_eq!((timer.retransmits, timer.probes), (11, 12));
    }

    #[test]
    fn a_short_line_is_refused() {
        assert!(parse_line("   0: 0100007F:1F90 0100007F:AC8A 01", 100).is_none());
    }
}
