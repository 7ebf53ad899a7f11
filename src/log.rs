//! The shim's only output: single lines on stderr, each starting with
//! `libkeepalive:`, built on the stack and written with one `write(2)` so that lines
//! from concurrent threads do not interleave.
//!
//! No `core::fmt`: formatting machinery would cost more bytes than the rest of the
//! library, and every process in a wrapped service's tree maps those bytes.

use core::ffi::{CStr, c_int};

use crate::config::Var;
use crate::sys;

/// A diagnostic line being built. Text past the capacity is dropped; the line always
/// ends with a newline.
pub struct Line {
    buf: [u8; Line::CAPACITY],
    len: usize,
}

impl Line {
    const CAPACITY: usize = 400;
    /// The most bytes of a user's value shown in a warning, before `...`.
    const VALUE_LIMIT: usize = 64;

    pub fn new() -> Self {
        let mut line = Line {
            buf: [0; Line::CAPACITY],
            len: 0,
        };
        line.text("libkeepalive: ");
        line
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

    /// Writes the line to stderr, newline included.
    pub fn emit(&mut self) {
        let end = self.len.min(Self::CAPACITY - 1);
        if let Some(slot) = self.buf.get_mut(end) {
            *slot = b'\n';
        }
        sys::write_stderr(self.buf.get(..=end).unwrap_or_default());
    }

    fn byte(&mut self, b: u8) -> &mut Self {
        // The last byte is kept for the newline.
        if self.len < Self::CAPACITY - 1 {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        self
    }
}

/// Reports a value that was refused, what is accepted instead, and what is used.
pub fn rejected(var: Var, value: &[u8]) {
    Line::new()
        .bytes(var.name())
        .text("=")
        .quoted(value)
        .text(" ignored: expected ")
        .text(var.accepted())
        .text("; using ")
        .text(var.fallback())
        .emit();
}

/// Reports that the real function could not be found, so calls to it fail.
pub fn unresolved(name: &CStr) {
    Line::new()
        .text("cannot find the next definition of ")
        .bytes(name.to_bytes())
        .text("() with dlsym(RTLD_NEXT); calls to it fail with ENOSYS")
        .emit();
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

    fn text(line: &Line) -> &str {
        std::str::from_utf8(&line.buf[..line.len]).unwrap()
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 32767, 2147483647, u32::MAX] {
            let mut line = Line::new();
            line.number(n);
            assert_eq!(text(&line), format!("libkeepalive: {n}"));
        }
    }

    #[test]
    fn values_are_quoted_escaped_and_bounded() {
        let mut line = Line::new();
        line.quoted(b"a\"b\\c\n\x00\xff ~");
        assert_eq!(text(&line), r#"libkeepalive: "a\"b\\c\x0a\x00\xff ~""#);

        let mut long = Line::new();
        long.quoted(&[b'9'; 100]);
        assert_eq!(
            text(&long),
            format!("libkeepalive: \"{}...\"", "9".repeat(64))
        );
    }

    #[test]
    fn a_full_line_keeps_its_newline() {
        let mut line = Line::new();
        for _ in 0..100 {
            line.text("0123456789");
        }
        assert_eq!(line.len, Line::CAPACITY - 1);
    }

    #[test]
    fn errno_names() {
        let mut line = Line::new();
        line.errno(libc::EINVAL).text(" ").errno(9999);
        assert_eq!(text(&line), "libkeepalive: EINVAL errno 9999");
    }
}
