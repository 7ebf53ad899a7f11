//! What a socket of another process says about itself, asked of its duplicate
//! (pidfd_getfd(2)): whether it is TCP, its state and its addresses.
//!
//! Asking the socket, not the process's `/proc/PID/net/tcp`, finds every socket it
//! holds whatever network namespace made it: a table lists only its own namespace's
//! sockets, and a `PrivateNetwork=` service holds the listener systemd made in the
//! host's, and the connections accepted on it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::options::int_option;
use crate::status::tcp_table::State;

/// `IPPROTO_MPTCP` (linux/in.h), which the libc crate does not name.
const IPPROTO_MPTCP: u32 = 262;

/// What one socket is, for `attach` and `audit`.
pub enum Kind {
    /// A TCP socket.
    Tcp(Tcp),
    /// An MPTCP socket: its keepalive options live on subflows the kernel makes and
    /// holds itself, which no setsockopt on the socket reaches (docs/sockets.md).
    Mptcp(Tcp),
    /// Anything else: UDP, Unix, raw.
    Other,
}

/// A TCP socket's place: its inode, state and addresses.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub inode: u64,
    pub state: State,
    pub local: SocketAddr,
    /// The peer; `None` for a listener, or a socket not connected.
    pub peer: Option<SocketAddr>,
}

impl Kind {
    /// What `socket` is (socket(7) `SO_DOMAIN`, `SO_TYPE`, `SO_PROTOCOL`), with its
    /// state from `TCP_INFO` (tcp(7)), which MPTCP answers for itself too.
    pub fn of(socket: BorrowedFd<'_>, inode: u64) -> io::Result<Kind> {
        let option = |name| int_option(socket, libc::SOL_SOCKET, name);
        let inet = matches!(
            option(libc::SO_DOMAIN)? as i32,
            libc::AF_INET | libc::AF_INET6
        );
        if !inet || option(libc::SO_TYPE)? != libc::SOCK_STREAM as u32 {
            return Ok(Kind::Other);
        }
        let protocol = option(libc::SO_PROTOCOL)?;
        if protocol != libc::IPPROTO_TCP as u32 && protocol != IPPROTO_MPTCP {
            return Ok(Kind::Other);
        }
        let tcp = Tcp {
            inode,
            state: state(socket)?,
            local: address(socket, libc::getsockname)?,
            peer: address(socket, libc::getpeername).ok(),
        };
        Ok(match protocol {
            IPPROTO_MPTCP => Kind::Mptcp(tcp),
            _ => Kind::Tcp(tcp),
        })
    }
}

/// `tcpi_state` of `TCP_INFO`, the first byte of `struct tcp_info`.
fn state(socket: BorrowedFd<'_>) -> io::Result<State> {
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `info`, a live buffer of
    // that size, and the length it wrote into `len`; TCP_INFO copies a prefix of its
    // struct when the buffer is shorter.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(State(info[0]))
}

/// The socket's own address or its peer's, by `call` (getsockname(2), getpeername(2)).
fn address(
    socket: BorrowedFd<'_>,
    call: unsafe extern "C" fn(
        libc::c_int,
        *mut libc::sockaddr,
        *mut libc::socklen_t,
    ) -> libc::c_int,
) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain integers, for which all zeroes is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the call writes at most `len` bytes into `storage`, which has room for
    // any address, and the address's length into `len`.
    if unsafe { call(socket.as_raw_fd(), (&raw mut storage).cast(), &mut len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, which fits.
            let sin: libc::sockaddr_in = unsafe { *(&raw const storage).cast() };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6, which fits.
            let sin6: libc::sockaddr_in6 = unsafe { *(&raw const storage).cast() };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::from(io::ErrorKind::InvalidData)),
    }
}
