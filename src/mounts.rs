//! Which file system a device number belongs to, read from `/proc/self/mountinfo`
//! (proc(5)): the one way to learn it without asking the file system. fstatfs(2)
//! sends FUSE's server a request, and an NFS client its server, and waits for the
//! answer — for ever, when the server hangs.
//!
//! Read with pread(2) in pieces through a stack buffer: mount tables run to thousands
//! of lines on container hosts, and the library allocates nothing. Used only to write
//! a line into a regular file, never on a socket or accept call.

use core::mem::MaybeUninit;

use crate::sys::File;
use keepalive_config::decimal;

/// File systems whose writes complete in this machine's memory or on its own block
/// devices: a write there waits at most for memory or a local disk, never for a
/// server (nor for a FUSE daemon: `fuseblk` is not here).
const LOCAL: [&[u8]; 16] = [
    b"ext2",
    b"ext3",
    b"ext4",
    b"xfs",
    b"btrfs",
    b"tmpfs",
    b"ramfs",
    b"overlay",
    b"f2fs",
    b"zfs",
    b"bcachefs",
    b"jfs",
    b"vfat",
    b"exfat",
    b"ntfs3",
    b"nilfs2",
];

/// Whether a write to a file on device `major:minor` completes locally: its mount's
/// type is one of [`LOCAL`], or no mount shows the device at all. The second case is
/// the file systems that give their files devices of their own — btrfs and bcachefs
/// subvolumes, overlayfs layers — all local: FUSE, NFS, SMB and Ceph give every file
/// its mount's device. `false` when the table cannot be read (no `/proc`), or has a
/// line too long to read.
pub fn is_local(major: u32, minor: u32) -> bool {
    let mut local = None;
    let read = scan(major, minor, |fs| {
        local = Some(LOCAL.iter().any(|&known| same(known, fs)));
    });
    read && local.unwrap_or(true)
}

/// Byte-wise equality, spelled out: `==` on slices compiles to a call to bcmp(3), one
/// more import to look up at every exec.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Reads the whole table, calling `found` with the type of the first mount on device
/// `major:minor`; `false` when the table could not be read to its end.
fn scan(major: u32, minor: u32, mut found: impl FnMut(&[u8])) -> bool {
    let Some(file) = File::open(c"/proc/self/mountinfo") else {
        return false;
    };
    let mut buf = [MaybeUninit::uninit(); 4096];
    let mut offset = 0u64;
    loop {
        let Some(chunk) = file.read_at(&mut buf, offset) else {
            return false;
        };
        if chunk.is_empty() {
            return true;
        }
        let mut consumed = 0;
        for line in chunk.split_inclusive(|&b| b == b'\n') {
            if line.last() != Some(&b'\n') {
                break;
            }
            consumed += line.len();
            if let Some(fs) = fs_type(line, major, minor) {
                found(fs);
                return true;
            }
        }
        if consumed == 0 {
            // A single line longer than the buffer: its device cannot be told apart
            // from the lines after it without reading it whole.
            return false;
        }
        offset += consumed as u64;
    }
}

/// The file system type of a mountinfo line for device `major:minor` (its third
/// field): the first field after the lone "-" that ends the optional fields.
fn fs_type(line: &[u8], major: u32, minor: u32) -> Option<&[u8]> {
    let mut fields = line
        .strip_suffix(b"\n")
        .unwrap_or(line)
        .split(|&b| b == b' ');
    let (line_major, line_minor) = split_once(fields.nth(2)?, b':')?;
    if decimal(line_major)? != major || decimal(line_minor)? != minor {
        return None;
    }
    fields.find(|&field| same(field, b"-"))?;
    fields.next()
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == separator)?;
    Some((bytes.get(..at)?, bytes.get(at + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_type_follows_the_separator() {
        let line = b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw\n";
        assert_eq!(fs_type(line, 98, 0), Some(&b"ext3"[..]));
        assert_eq!(fs_type(line, 98, 1), None);
        assert_eq!(fs_type(line, 8, 0), None);
        let no_optional = b"25 1 0:23 / /run rw shared:5 - tmpfs tmpfs rw";
        assert_eq!(fs_type(no_optional, 0, 23), Some(&b"tmpfs"[..]));
        assert_eq!(fs_type(b"garbage", 0, 23), None);
    }

    #[test]
    fn proc_is_found_and_not_local() {
        let dir = std::fs::File::open("/proc").unwrap();
        let id = crate::sys::file_id(dir.as_raw_fd()).unwrap();
        let mut seen = std::string::String::new();
        assert!(scan(id.major(), id.minor(), |fs| {
            seen = std::string::String::from_utf8_lossy(fs).into_owned();
        }));
        assert_eq!(seen, "proc");
        assert!(!is_local(id.major(), id.minor()));
    }
}
