//! The library's only output: at load, a line for each refused value or missing
//! function, and never again. Entry points write nothing, open nothing and change no
//! signal mask, whatever happens (docs/safety.md).
//!
//! Where a line may go is one rule, because it is the only rule under which a write
//! into someone else's process can neither wait, nor raise a signal, nor take a
//! descriptor, nor reach the program's peer:
//!
//! 1. fd 2 is an `AF_UNIX` stream socket: `sendto` with `MSG_DONTWAIT` never sleeps
//!    (no room: EAGAIN; an AF_UNIX stream send takes no lock a slow writer could
//!    hold), and with `MSG_NOSIGNAL` never raises SIGPIPE (send(2));
//! 2. its own end is unnamed and its peer is named: it was connected to a listener
//!    bound to a name. A connection accepted from a listener carries the listener's
//!    name, an autobind one included (unix(7)), so a per-connection service's client
//!    never gets a line; and a socketpair(2) has no name at either end, so the pairs
//!    a parent gives its child as stdio (Node's child_process, libuv) are data, never
//!    a log;
//! 3. it is not also fd 0 (compared by `SO_COOKIE`): a connection handed over as the
//!    standard descriptors (inetd, `ncat --exec`) starts at fd 0, and is the program's
//!    data stream.
//!
//! That is what a systemd service's stderr is by default: a stream connected to
//! journald (`/run/systemd/journal/stdout`), the same one as its stdout, so a bad
//! value in a unit lands in its journal. On a terminal, a pipe or a file no write call can promise all four (a
//! terminal waits on flow control and raises SIGTTOU, a pipe waits on its lock and
//! raises SIGPIPE, a file waits on its inode lock, a frozen or network file system),
//! so there the library says nothing, and `keepalive` says it instead: `run`, `env`
//! and `enable` refuse a bad value before anything starts, and `keepalive status PID`
//! shows what the library of a running process refused.
//!
//! Lines are built on the stack without `core::fmt`, whose machinery would cost more
//! bytes than the rest of the library: every process in a wrapped service's tree maps
//! them.

use core::ffi::{CStr, c_int};
use core::mem::MaybeUninit;

use crate::sys::{self, End};
use keepalive_config::Var;

const STDERR: c_int = 2;

/// fd 2, when the rule allows a line there.
#[derive(Clone, Copy)]
pub struct Channel(());

impl Channel {
    /// Checks the rule once, when there is something to say.
    pub fn stderr() -> Option<Channel> {
        let int = |fd, option| sys::int_option(fd, libc::SOL_SOCKET, option);
        let unix_stream = int(STDERR, libc::SO_DOMAIN) == Ok(libc::AF_UNIX)
            && int(STDERR, libc::SO_TYPE) == Ok(libc::SOCK_STREAM);
        let journal_shaped = sys::named(STDERR, End::Own) == Some(false)
            && sys::named(STDERR, End::Peer) == Some(true);
        if !unix_stream || !journal_shaped {
            return None;
        }
        let own = sys::cookie(STDERR).ok()?;
        (sys::cookie(0) != Ok(own)).then_some(Channel(()))
    }

    /// Reports a value that was refused, what is accepted instead, and what is used.
    pub fn refused(self, var: Var, value: &[u8]) {
        Line::send(|line| {
            line.bytes(var.name())
                .text("=")
                .quoted(value)
                .text(" ignored: expected ")
                .text(var.accepted())
                .text("; using ")
                .text(var.fallback());
        });
    }

    /// Reports that the real function could not be found, so calls to it fail.
    pub fn unresolved(self, name: &CStr) {
        Line::send(|line| {
            line.text("cannot find the next definition of ")
                .bytes(name.to_bytes())
                .text("() with dlsym(RTLD_NEXT); calls to it fail with ENOSYS");
        });
    }
}

/// A line being built, in place on the stack. Text past the capacity is dropped; the
/// line always ends with a newline.
///
/// The buffer is never zeroed or moved: either would make the compiler call `memset`
/// or `memcpy` from libc, one more import to look up at every exec.
struct Line {
    buf: [MaybeUninit<u8>; Line::CAPACITY],
    len: usize,
}

impl Line {
    const CAPACITY: usize = 400;
    /// The most bytes of a user's value shown, before `...`.
    const VALUE_LIMIT: usize = 64;

    /// Builds a line that starts with `libkeepalive: ` in place, and sends it.
    fn send(build: impl FnOnce(&mut Line)) {
        Line::in_place(|line| {
            build(line);
            // One send, never waited for: a line this short fits one buffer of the
            // socket, so it goes whole or, when there is no room, not at all.
            let _ = sys::send_now(STDERR, line.finish());
        });
    }

    fn in_place<R>(f: impl FnOnce(&mut Line) -> R) -> R {
        let mut line = Line {
            buf: [MaybeUninit::uninit(); Line::CAPACITY],
            len: 0,
        };
        line.text("libkeepalive: ");
        f(&mut line)
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.byte(b);
        }
        self
    }

    fn text(&mut self, text: &str) -> &mut Self {
        self.bytes(text.as_bytes())
    }

    /// A value the user typed, in double quotes, with anything that is not printable
    /// ASCII escaped as `\xNN` so that the line stays one line whatever they typed.
    fn quoted(&mut self, value: &[u8]) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.byte(b'"');
        for &b in value.iter().take(Self::VALUE_LIMIT) {
            match b {
                b'"' | b'\\' => self.bytes(&[b'\\', b]),
                b' '..=b'~' => self.byte(b),
                _ => self.bytes(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]),
            };
        }
        if value.len() > Self::VALUE_LIMIT {
            self.text("...");
        }
        self.byte(b'"')
    }

    /// Ends the line with its newline, in the byte `byte` keeps free, and returns it.
    fn finish(&mut self) -> &[u8] {
        if let Some(slot) = self.buf.get_mut(self.len) {
            slot.write(b'\n');
            self.len += 1;
        }
        // SAFETY: `byte` and the write above initialise the first `len` bytes of `buf`,
        // in order, and `len` never exceeds the capacity.
        unsafe { core::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) }
    }

    fn byte(&mut self, b: u8) -> &mut Self {
        // The last byte is kept for the newline.
        if self.len < Self::CAPACITY - 1 {
            if let Some(slot) = self.buf.get_mut(self.len) {
                slot.write(b);
                self.len += 1;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(f: impl FnOnce(&mut Line)) -> String {
        Line::in_place(|line| {
            f(line);
            String::from_utf8(line.finish().to_vec()).unwrap()
        })
    }

    #[test]
    fn values_are_quoted_escaped_and_bounded() {
        let line = build(|l| {
            l.quoted(b"a\"b\\c\n\x00\xff ~");
        });
        assert_eq!(line, "libkeepalive: \"a\\\"b\\\\c\\x0a\\x00\\xff ~\"\n");

        let long = build(|l| {
            l.quoted(&[b'9'; 100]);
        });
        assert_eq!(long, format!("libkeepalive: \"{}...\"\n", "9".repeat(64)));
    }

    #[test]
    fn a_full_line_keeps_its_newline() {
        let line = build(|l| {
            for _ in 0..100 {
                l.text("0123456789");
            }
        });
        let full = format!("libkeepalive: {}", "0123456789".repeat(100));
        assert_eq!(line, format!("{}\n", &full[..Line::CAPACITY - 1]));
    }
}
