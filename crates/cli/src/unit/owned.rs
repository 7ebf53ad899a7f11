//! What `enable` may overwrite and `disable` may remove: only a drop-in `enable`
//! wrote (its marker line first, and nothing an operator added since), in a directory
//! of the unit's own, and that directory only when `enable` made it.
//!
//! A `UNIT.service.d` that is a symbolic link is a directory other units may read as
//! well (one set of drop-ins for several services): a file written there preloads
//! them all, so it is left alone, as are an operator's own file of the same name and
//! lines added to ours: rewriting or removing them would lose them for good.

use std::os::fd::AsRawFd;
use std::path::Path;

use super::MARKER;

/// The second line of a drop-in whose directory `enable` made: `disable` removes the
/// directory only then, and only when it is empty.
const MADE_DIR: &str = "# It made this directory too; `keepalive disable` removes it when empty.";

/// The lines a drop-in starts with: the marker, and whether `enable` made its
/// directory.
pub fn header(made_dir: bool) -> String {
    if made_dir {
        format!("{MARKER}\n{MADE_DIR}\n[Service]\n")
    } else {
        format!("{MARKER}\n[Service]\n")
    }
}

/// Whether writing `path` now leaves a drop-in whose directory `enable` made: there
/// is no directory yet, or the drop-in there says so.
pub fn made_dir(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(Path::new("/"));
    !dir.exists() || std::fs::read_to_string(path).is_ok_and(|text| says_made_dir(&text))
}

fn says_made_dir(text: &str) -> bool {
    text.starts_with(MARKER) && text.lines().nth(1) == Some(MADE_DIR)
}

/// Why `path` may be neither written nor removed, or `None` when it is `enable`'s to
/// change (or not there at all).
pub fn refusal(path: &Path) -> Option<String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if let Ok(target) = std::fs::read_link(dir) {
        return Some(format!(
            "{} is a symbolic link to {}: other units may read the drop-ins there too, and \
             would be changed with it; left alone (make it a directory of the unit's own, \
             or write the drop-in by hand)",
            dir.display(),
            target.display()
        ));
    }
    if let Ok(target) = std::fs::read_link(path) {
        return Some(format!(
            "{} is a symbolic link to {}, not written by keepalive enable; left alone",
            path.display(),
            target.display()
        ));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => return Some(format!("{}: {err}", path.display())),
    };
    if !text.starts_with(MARKER) {
        return Some(format!(
            "{}: not written by keepalive enable; left alone (move its settings to a \
             drop-in of another name and remove it first)",
            path.display()
        ));
    }
    foreign_line(&text).map(|line| {
        format!(
            "{}: has `{line}`, which keepalive enable did not write; left alone (move it \
             to a drop-in of another name first)",
            path.display()
        )
    })
}

/// An exclusive lock on the unit directory that holds `path`'s directory, for as long
/// as the file lives: enables of one unit at once would each read the earlier drop-in
/// and write their own over the others' (flock(2), which the kernel releases when the
/// process ends). `None` where there is no such directory (a tree under --root).
pub fn lock(path: &Path) -> Result<Option<std::fs::File>, crate::failure::Failure> {
    let Some(units) = path.parent().and_then(Path::parent) else {
        return Ok(None);
    };
    let Ok(dir) = std::fs::File::open(units) else {
        return Ok(None);
    };
    // SAFETY: flock(2) on a descriptor this function owns, open for its whole call.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(crate::failure::Failure::with_code(
            1,
            format!("cannot lock {}: {err}", units.display()),
        ));
    }
    Ok(Some(dir))
}

/// The first line of one of our drop-ins that `enable` does not write: neither its
/// header, nor an `Environment=` or `ExecStartPre=` line, nor blank.
fn foreign_line(text: &str) -> Option<&str> {
    text.lines().skip(1).map(str::trim).find(|line| {
        !(line.is_empty()
            || *line == MADE_DIR
            || *line == "[Service]"
            || line.starts_with("Environment=")
            || line.starts_with("ExecStartPre="))
    })
}

/// After `path` was removed: its directory too, when `enable` made it (`text` was the
/// file's) and nothing else is in it.
pub fn remove_dir(path: &Path, text: &str) {
    if says_made_dir(text) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_enable_writes_is_its_own() {
        let ours = format!("{}Environment=\"LD_PRELOAD=/l.so\"\n", header(true));
        assert!(says_made_dir(&ours));
        assert_eq!(foreign_line(&ours), None);
        assert!(!says_made_dir(&header(false)));
        let added = format!("{ours}LimitNOFILE=65536\n");
        assert_eq!(foreign_line(&added), Some("LimitNOFILE=65536"));
        let comment = format!("{ours}# mine\n");
        assert_eq!(foreign_line(&comment), Some("# mine"));
    }
}
