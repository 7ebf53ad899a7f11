//! The established TCP connections of one network namespace, asked of the kernel with
//! `NETLINK_SOCK_DIAG` (sock_diag(7); what `ss` uses): one dump request per address
//! family, `inet_diag_req_v2` with `INET_DIAG_INFO` for each connection's `tcp_info`.
//! No text is parsed, and the cost is one request and a few receives for thousands of
//! connections.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_INFO: u16 = 2;
const TCP_ESTABLISHED: u32 = 1;
/// `nlmsghdr`, `inet_diag_req_v2`, `inet_diag_msg`: 16, 56 and 72 bytes (linux/netlink.h,
/// linux/inet_diag.h).
const HEADER: usize = 16;
const REQUEST: usize = 56;
const MESSAGE: usize = 72;
/// Where `tcp_info` (linux/tcp.h) keeps the milliseconds since data was last sent and
/// last received.
const LAST_DATA_SENT: usize = 44;
const LAST_DATA_RECV: usize = 52;

/// One established TCP connection, as sock_diag reports it.
#[derive(Clone, Debug)]
pub struct Connection {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// `idiag_timer`: 2 is the keepalive timer (1 retransmission, 4 zero-window probe).
    pub timer: u8,
    pub inode: u64,
    /// Since data last went either way, from `tcp_info`; `None` without it.
    pub idle_ms: Option<u32>,
}

/// Every established TCP connection of the calling thread's network namespace.
pub fn established() -> io::Result<Vec<Connection>> {
    let socket = open()?;
    let mut all = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        request(&socket, family as u8)?;
        receive(&socket, &mut all)?;
    }
    Ok(all)
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with integer arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn request(socket: &OwnedFd, family: u8) -> io::Result<()> {
    let mut message = [0u8; HEADER + REQUEST];
    message[0..4].copy_from_slice(&((HEADER + REQUEST) as u32).to_ne_bytes());
    message[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    message[6..8].copy_from_slice(&flags.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext (a bit per extension), pad, states.
    message[HEADER] = family;
    message[HEADER + 1] = libc::IPPROTO_TCP as u8;
    message[HEADER + 2] = 1 << (INET_DIAG_INFO - 1);
    message[HEADER + 4..HEADER + 8].copy_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes());
    // SAFETY: send(2) reads the message, a live buffer of the length given.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn receive(socket: &OwnedFd, into: &mut Vec<Connection>) -> io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv(2) writes at most the buffer's length into it.
        let got = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rest = &buffer[..got as usize];
        while rest.len() >= HEADER {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap_or_default());
            if len < HEADER || len > rest.len() {
                return Err(io::Error::other("a truncated netlink message"));
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = rest
                        .get(HEADER..HEADER + 4)
                        .map(|b| i32::from_ne_bytes(b.try_into().unwrap_or_default()))
                        .unwrap_or(0);
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                _ => {
                    if let Some(connection) = parse(&rest[HEADER..len]) {
                        into.push(connection);
                    }
                }
            }
            rest = &rest[align(len).min(rest.len())..];
        }
    }
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// One `inet_diag_msg` and its attributes.
fn parse(body: &[u8]) -> Option<Connection> {
    let message = body.get(..MESSAGE)?;
    let family = message[0];
    let timer = message[2];
    // inet_diag_sockid: ports (big-endian), then 16 bytes of source and destination.
    let port = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]);
    let address = |at: usize| -> IpAddr {
        let bytes: [u8; 16] = message[at..at + 16].try_into().unwrap_or_default();
        if family == libc::AF_INET as u8 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
    };
    let local = SocketAddr::new(address(8), port(4));
    let peer = SocketAddr::new(address(24), port(6));
    let inode = u32::from_ne_bytes(message[68..72].try_into().ok()?);
    let mut idle_ms = None;
    let mut attributes = body.get(align(MESSAGE)..).unwrap_or_default();
    while attributes.len() >= 4 {
        let len = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if len < 4 || len > attributes.len() {
            break;
        }
        if kind == INET_DIAG_INFO {
            let info = &attributes[4..len];
            let field = |at: usize| {
                info.get(at..at + 4)
                    .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
            };
            if let (Some(sent), Some(received)) = (field(LAST_DATA_SENT), field(LAST_DATA_RECV)) {
                idle_ms = Some(sent.min(received));
            }
        }
        attributes = &attributes[align(len).min(attributes.len())..];
    }
    Some(Connection {
        local,
        peer,
        timer,
        inode: u64::from(inode),
        idle_ms,
    })
}
