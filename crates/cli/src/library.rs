//! Finding the library to preload, and putting it in `LD_PRELOAD`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::elf;
use crate::failure::Failure;

/// The Debian multiarch triplet of the target this command was built for: packages
/// install the library under /usr/lib/<triplet>/.
const MULTIARCH: &str = env!("KEEPALIVE_MULTIARCH");

/// The library the user named, and where: `--library`, else `KEEPALIVE_LIBRARY` when
/// it is set and not empty.
fn named(option: Option<&Path>) -> Option<(PathBuf, &'static str)> {
    option
        .map(|path| (path.to_path_buf(), "--library"))
        .or_else(|| {
            std::env::var_os("KEEPALIVE_LIBRARY")
                .filter(|value| !value.is_empty())
                .map(|value| (PathBuf::from(value), "KEEPALIVE_LIBRARY"))
        })
}

/// The library named by `--library`, else by `KEEPALIVE_LIBRARY`, else the first that
/// exists of the install layouts relative to the directory D of this executable:
/// D/libkeepalive.so (cargo's target/release), D/../lib/<multiarch>/libkeepalive.so.0
/// (Debian), D/../lib64/libkeepalive.so.0 (RPM), D/../lib/libkeepalive.so.0 (tarball,
/// /usr/local). Always absolute: it is written into LD_PRELOAD and unit files, which
/// are read from another working directory.
pub fn find(option: Option<&Path>) -> Result<PathBuf, Failure> {
    let named = named(option);
    if let Some((path, source)) = named {
        let found = absolute(&path)
            .filter(|path| path.is_file())
            .ok_or_else(|| {
                Failure::usage(format!(
                    "{source} {}: no such library file",
                    quoted(path.as_os_str())
                ))
            })?;
        let found = preloadable(found, source)?;
        loads(&found, &found, source)?;
        return Ok(found);
    }
    let exe = std::env::current_exe()
        .map_err(|err| Failure::usage(format!("cannot find this command's own file: {err}")))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = beside(dir);
    let found = candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            Failure::usage(format!(
                "cannot find the library: looked at {}; name it with --library PATH or KEEPALIVE_LIBRARY",
                looked.join(", ")
            ))
        })?;
    preloadable(found, "the library found")
}

/// The library for a service in the file system tree at `root` (`enable --root`), as
/// that service names it: `--library` or `KEEPALIVE_LIBRARY` is a path inside the
/// tree, else the first package layout present in it (Debian's multiarch directory,
/// /usr/lib64, /usr/local/lib). The library must be a file inside the tree, and its
/// symbolic links, followed as this machine follows them, must end inside it: a path
/// that exists only on this machine, or leads out of the tree, would not load in the
/// system the tree boots.
pub fn find_in(root: &Path, option: Option<&Path>) -> Result<PathBuf, Failure> {
    let named = named(option);
    let inside = |path: &Path| root.join(path.strip_prefix("/").unwrap_or(path));
    let (path, source) = match named {
        Some((path, source)) if !path.is_absolute() => {
            return Err(Failure::usage(format!(
                "{source} {}: with --root, the library is named by its absolute path inside {}",
                quoted(path.as_os_str()),
                root.display()
            )));
        }
        Some(named) => named,
        None => {
            let candidates = [
                format!("/usr/lib/{MULTIARCH}/libkeepalive.so.0"),
                "/usr/lib64/libkeepalive.so.0".to_string(),
                "/usr/local/lib/libkeepalive.so.0".to_string(),
            ];
            let found = candidates
                .iter()
                .map(PathBuf::from)
                .find(|path| inside(path).is_file())
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "cannot find the library under {}: looked at {}; install it there or \
                         name it with --library PATH (a path inside the root)",
                        root.display(),
                        candidates.join(", ")
                    ))
                })?;
            (found, "the library found")
        }
    };
    let real = resolve_in(root, &path)
        .filter(|real| real.is_file())
        .ok_or_else(|| {
            Failure::usage(format!(
                "{source} {}: no such library file inside {} ({} leads to no file in that \
                 tree)",
                quoted(path.as_os_str()),
                root.display(),
                inside(&path).display()
            ))
        })?;
    // Checked as without --root: an image would load nothing at every boot.
    loads(&real, &path, source)?;
    preloadable(path, source)
}

/// Refuses a file ld.so(8) could not preload into a program (`elf::preloadable`),
/// read at `file`, named as `shown`.
fn loads(file: &Path, shown: &Path, source: &str) -> Result<(), Failure> {
    let shown = quoted(shown.as_os_str());
    let data =
        std::fs::read(file).map_err(|err| Failure::usage(format!("{source} {shown}: {err}")))?;
    elf::preloadable(&data)
        .map_err(|why| Failure::usage(format!("{source} {shown}: cannot be preloaded: {why}")))
}

/// Where `path` leads in the tree at `root`, as the system that boots it resolves it:
/// an absolute link starts again at `root`, and `..` stops there (path_resolution(7),
/// under chroot(2)), so nothing it names is outside the tree. `None` for a loop (more
/// than 40 links, as the kernel's ELOOP) or a component that cannot be read.
fn resolve_in(root: &Path, path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut at: Vec<std::ffi::OsString> = Vec::new();
    // The names still to walk, the next one last.
    let names = |path: &Path| -> Vec<std::ffi::OsString> {
        path.components()
            .rev()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name.to_owned()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    let mut left = names(path);
    let mut links = 0;
    while let Some(name) = left.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        at.push(name);
        let here: PathBuf = at.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        if !here.symlink_metadata().ok()?.file_type().is_symlink() {
            continue;
        }
        links += 1;
        let target = std::fs::read_link(&here).ok().filter(|_| links <= 40)?;
        at.pop();
        if target.is_absolute() {
            at.clear();
        }
        left.extend(names(&target));
    }
    Some(at.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// Refuses a path ld.so(8) would split — LD_PRELOAD entries are separated by spaces
/// and colons — and one with a newline, which no line `env` prints or `enable` writes
/// can carry.
fn preloadable(path: PathBuf, source: &str) -> Result<PathBuf, Failure> {
    let bytes = path.as_os_str().as_bytes();
    if let Some(&b) = bytes.iter().find(|&&b| b == b' ' || b == b':') {
        return Err(Failure::usage(format!(
            "{source} {}: holds {:?}, which separates LD_PRELOAD entries (ld.so(8)); \
             use a path without spaces or colons (a symbolic link will do)",
            quoted(path.as_os_str()),
            char::from(b)
        )));
    }
    if bytes.contains(&b'\n') {
        return Err(Failure::usage(format!(
            "{source} {}: holds a newline, which no environment line can carry; use a \
             path without one (a symbolic link will do)",
            quoted(path.as_os_str())
        )));
    }
    Ok(path)
}

/// Where the packages and `cargo build` put the library, relative to the directory of
/// the command, in the order they are tried. The tarball carries two builds
/// (packaging/dist): lib/libkeepalive.so.0 loads on every glibc since 2.17, and
/// lib/glibc-2.34/libkeepalive.so.0, which needs no libdl.so.2 and so costs less at
/// every exec, loads only where glibc is 2.34 or later: it comes first there.
fn beside(dir: &Path) -> Vec<PathBuf> {
    let up = dir.parent().unwrap_or(dir);
    let mut candidates = vec![
        dir.join("libkeepalive.so"),
        up.join("lib").join(MULTIARCH).join("libkeepalive.so.0"),
        up.join("lib64/libkeepalive.so.0"),
    ];
    if glibc_at_least(2, 34) {
        candidates.push(up.join("lib/glibc-2.34/libkeepalive.so.0"));
    }
    candidates.push(up.join("lib/libkeepalive.so.0"));
    candidates
}

/// Whether the glibc this command runs on is `major.minor` or later, as
/// gnu_get_libc_version(3) tells; the programs it starts load the same one.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: gnu_get_libc_version(3) returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or("")
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

fn absolute(path: &Path) -> Option<PathBuf> {
    std::path::absolute(path).ok()
}

/// `LD_PRELOAD` with `library` added after the entries already there, unless it is
/// one of them. ld.so(8) separates entries with colons or spaces.
pub fn preload(existing: Option<&OsStr>, library: &Path) -> OsString {
    let mut entries: Vec<&[u8]> = existing
        .map(|value| {
            value
                .as_bytes()
                .split(|&b| b == b':' || b == b' ')
                .filter(|entry| !entry.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let ours = library.as_os_str().as_bytes();
    if !entries.iter().any(|entry| same_file(entry, library)) {
        entries.push(ours);
    }
    OsString::from_vec(entries.join(&b' '))
}

/// Whether an `LD_PRELOAD` entry is `library`: the same path, or the same file.
pub fn same_file(entry: &[u8], library: &Path) -> bool {
    let entry = Path::new(OsStr::from_bytes(entry));
    entry == library
        || match (entry.canonicalize(), library.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// A path or value as the user typed it, quoted so that blanks show, on one line:
/// control characters are escaped (`\n`, `\u{1b}`), so that a message stays the one
/// line it promises whatever was typed.
pub fn quoted(text: &OsStr) -> String {
    let text = text.to_string_lossy();
    format!(
        "'{}'",
        text.chars()
            .flat_map(char::escape_debug)
            .collect::<String>()
    )
}

/// A variable's value as [`quoted`] shows it, cut after as many characters as the
/// library's own warnings show (64), with `...`.
pub fn quoted_value(value: &OsStr) -> String {
    const LIMIT: usize = 64;
    match value.to_string_lossy().char_indices().nth(LIMIT) {
        Some((cut, _)) => {
            let shown = quoted(OsStr::new(&value.to_string_lossy()[..cut]));
            format!("{}...'", &shown[..shown.len() - 1])
        }
        None => quoted(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_text_stays_on_one_line() {
        assert_eq!(quoted(OsStr::new("a b")), "'a b'");
        assert_eq!(quoted(OsStr::new("1\n2\u{1b}")), "'1\\n2\\u{1b}'");
        let long = "9".repeat(100);
        assert_eq!(
            quoted_value(OsStr::new(&long)),
            format!("'{}...'", "9".repeat(64))
        );
        assert_eq!(quoted_value(OsStr::new("30s")), "'30s'");
    }

    #[test]
    fn preload_keeps_entries_and_never_adds_twice() {
        let lib = Path::new("/usr/lib/libkeepalive.so.0");
        assert_eq!(preload(None, lib), "/usr/lib/libkeepalive.so.0");
        assert_eq!(
            preload(Some(OsStr::new("/a.so:/b.so")), lib),
            "/a.so /b.so /usr/lib/libkeepalive.so.0"
        );
        assert_eq!(
            preload(Some(OsStr::new("/usr/lib/libkeepalive.so.0 /a.so")), lib),
            "/usr/lib/libkeepalive.so.0 /a.so"
        );
    }

    #[test]
    fn layouts_are_tried_in_the_agreed_order() {
        let found = beside(Path::new("/usr/bin"));
        assert_eq!(found[0], Path::new("/usr/bin/libkeepalive.so"));
        assert_eq!(
            found[1],
            Path::new(&format!("/usr/lib/{MULTIARCH}/libkeepalive.so.0"))
        );
        assert_eq!(found[2], Path::new("/usr/lib64/libkeepalive.so.0"));
        assert_eq!(
            found.last().unwrap(),
            Path::new("/usr/lib/libkeepalive.so.0")
        );
    }
}
