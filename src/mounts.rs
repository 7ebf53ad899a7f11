//! Whether a file's mount writes locally, read from `/proc/self/mountinfo` (proc(5))
//! by the mount's ID: the one way to learn a file system's type without asking the
//! file system. fstatfs(2) sends a FUSE server a request, and an NFS client its
//! server, and waits for the answer — for ever, when the server hangs.
//!
//! By mount ID, not by device: btrfs gives each subvolume's files a device of its own,
//! which no mount line shows, while a mount that is hidden from this process — lazily
//! unmounted, or outside its chroot — shows no line at all. A mount not found is not
//! known to be local.
//!
//! Read with pread(2) in pieces through a small stack buffer: mount tables run to
//! thousands of lines on container hosts, an overlay mount's line to kilobytes, and
//! the library allocates nothing and may be running on a signal handler's stack. Used
//! only to write a line into a regular file, never on a socket or accept call.

use core::mem::MaybeUninit;

use crate::sys::{self, File};
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

/// The piece of the table read at a time. A line's start up to its type — mount ID,
/// parent, device, root, mount point, options, optional fields — fits in it unless
/// its paths are very long; such a line is not known to be local.
const PIECE: usize = 512;

/// Whether the mount with ID `mount` is of a type in [`LOCAL`]. `false` when it is of
/// another type, not in the table, or the table cannot be read (no `/proc`).
pub fn is_local(mount: u64) -> bool {
    let mut local = false;
    scan(mount, |fs| {
        local = LOCAL.iter().any(|&known| same(known, fs))
    });
    local
}

/// The mount ID of the file on `fd` from `/proc/self/fdinfo/FD` (`mnt_id:`, Linux
/// 3.15), for kernels whose statx does not say it (before 5.8).
pub fn mount_of_stderr() -> Option<u64> {
    let mut buf = [MaybeUninit::uninit(); 256];
    let text = sys::read_file(c"/proc/self/fdinfo/2", &mut buf)?;
    let line = text
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"mnt_id:"))?;
    let digits = line.iter().position(u8::is_ascii_digit)?;
    let line = line.get(digits..)?;
    let end = line
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(line.len());
    decimal(line.get(..end)?).map(u64::from)
}

/// Byte-wise equality, spelled out: `==` on slices compiles to a call to bcmp(3), one
/// more import to look up at every exec.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Reads the table, calling `found` with the type of the mount with ID `mount`.
fn scan(mount: u64, mut found: impl FnMut(&[u8])) {
    let Some(file) = File::open(c"/proc/self/mountinfo") else {
        return;
    };
    let mut buf = [MaybeUninit::uninit(); PIECE];
    let mut offset = 0u64;
    // Inside a line longer than the piece, whose rest is skipped.
    let mut skipping = false;
    loop {
        let Some(chunk) = file.read_at(&mut buf, offset) else {
            return;
        };
        if chunk.is_empty() {
            return;
        }
        let mut consumed = 0;
        for line in chunk.split_inclusive(|&b| b == b'\n') {
            let whole = line.last() == Some(&b'\n');
            if skipping {
                skipping = !whole;
                consumed += line.len();
                continue;
            }
            if !whole && consumed > 0 {
                // Read again from this line's start.
                break;
            }
            if let Some(fs) = fs_type(line, mount) {
                found(fs);
                return;
            }
            consumed += line.len();
            skipping = !whole;
        }
        offset += consumed as u64;
    }
}

/// The file system type of a mountinfo line whose mount ID (its first field) is
/// `mount`: the first field after the lone "-" that ends the optional fields.
fn fs_type(line: &[u8], mount: u64) -> Option<&[u8]> {
    let mut fields = line
        .strip_suffix(b"\n")
        .unwrap_or(line)
        .split(|&b| b == b' ');
    if decimal(fields.next()?).map(u64::from) != Some(mount) {
        return None;
    }
    fields.find(|&field| same(field, b"-"))?;
    fields.next().filter(|fs| !fs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_follows_the_separator() {
        let line = b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw\n";
        assert_eq!(fs_type(line, 36), Some(&b"ext3"[..]));
        assert_eq!(fs_type(line, 35), None);
        let no_optional = b"25 1 0:23 / /run rw shared:5 - tmpfs tmpfs rw";
        assert_eq!(fs_type(no_optional, 25), Some(&b"tmpfs"[..]));
        assert_eq!(fs_type(b"garbage", 25), None);
        // Cut before its type: not known.
        assert_eq!(fs_type(b"25 1 0:23 / /run rw shared:5 -", 25), None);
    }

    /// Every mount of this process is found by its ID, past lines longer than a piece,
    /// and /proc is not local.
    #[test]
    fn every_mount_is_found_by_its_id() {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for line in table.lines() {
            let mut fields = line.split(' ');
            let id: u64 = fields.next().unwrap().parse().unwrap();
            let fs = line.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
            if line.find(" - ").unwrap() >= PIECE {
                continue;
            }
            let mut seen = std::string::String::new();
            scan(id, |found| {
                seen = std::string::String::from_utf8_lossy(found).into()
            });
            assert_eq!(seen, fs, "{line}");
            if fs == "proc" {
                assert!(!is_local(id));
            }
        }
    }
}
