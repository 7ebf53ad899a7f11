//! The shim's only output: single lines on stderr, each starting with
//! `libkeepalive:`, built on the stack and written with one system call so that lines
//! from concurrent threads do not interleave ([`stderr`] decides whether it may go).
//!
//! No `core::fmt`: formatting machinery would cost more bytes than the rest of the
//! library, and every process in a wrapped service's tree maps those bytes.

use core::ffi::{CStr, c_int};
use core::mem::MaybeUninit;

use crate::stderr;
use keepalive_config::Var;

/// A diagnostic line being built, in place on the stack. Text past the capacity is
/// dropped; the line always ends with a newline.
///
/// The buffer is never zeroed or moved: either would make the compiler call `memset`
/// or `memcpy` from libc, and every libc function the library imports costs a symbol
/// lookup in every process that loads it.
pub struct Line {
    buf: [MaybeUninit<u8>; Line::CAPACITY],
    len: usize,
}

impl Line {
    const CAPACITY: usize = 400;
    /// The most bytes of a user's value shown in a warning, before `...`.
    const VALUE_LIMIT: usize = 64;

    /// Builds a line that starts with `libkeepalive: ` and writes it to stderr.
    pub fn emit(build: impl FnOnce(&mut Line)) {
        Line::in_place(|line| {
            build(line);
            stderr::write(line.finish());
        });
    }

    /// Runs `f` on a new line whose prefix is written.
    fn in_place<R>(f: impl FnOnce(&mut Line) -> R) -> R {
        let mut line = Line {
            buf: [MaybeUninit::uninit(); Line::CAPACITY],
            len: 0,
        };
        line.text("libkeepalive: ");
        f(&mut line)
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.byte(b);
        }
        self
    }

    pub fn text(&mut self, text: &str) -> &mut Self {
        self.bytes(text.as_bytes())
    }

    pub fn number(&mut self, n: u32) -> &mut Self {
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        let mut rest = n;
        while let Some(slot) = start.checked_sub(1).and_then(|i| digits.get_mut(i)) {
            *slot = b'0' + (rest % 10) as u8;
            start -= 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.bytes(digits.get(start..).unwrap_or_default())
    }

    /// A value the user typed, in double quotes, with anything that is not printable
    /// ASCII escaped as `\xNN` so that the line stays one line whatever they typed.
    pub fn quoted(&mut self, value: &[u8]) -> &mut Self {
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

    /// The symbolic name of an errno value, as errno(3) spells it.
    pub fn errno(&mut self, errno: c_int) -> &mut Self {
        match errno_name(errno) {
            Some(name) => self.text(name),
            None => self.text("errno ").number(errno.unsigned_abs()),
        }
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

/// Reports a value that was refused, what is accepted instead, and what is used.
pub fn rejected(var: Var, value: &[u8]) {
    Line::emit(|line| {
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
pub fn unresolved(name: &CStr) {
    Line::emit(|line| {
        line.text("cannot find the next definition of ")
            .bytes(name.to_bytes())
            .text("() with dlsym(RTLD_NEXT); calls to it fail with ENOSYS");
    });
}

fn errno_name(errno: c_int) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::EBADF => "EBADF",
        libc::EINTR => "EINTR",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOTCONN => "ENOTCONN",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a line as `Line::emit` does, without writing it.
    fn build(f: impl FnOnce(&mut Line)) -> String {
        Line::in_place(|line| {
            f(line);
            String::from_utf8(line.finish().to_vec()).unwrap()
        })
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 32767, 2147483647, u32::MAX] {
            assert_eq!(
                build(|l| {
                    l.number(n);
                }),
                format!("libkeepalive: {n}\n")
            );
        }
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

    #[test]
    fn errno_names() {
        let line = build(|l| {
            l.errno(libc::EINVAL).text(" ").errno(9999);
        });
        assert_eq!(line, "libkeepalive: EINVAL errno 9999\n");
    }
}
