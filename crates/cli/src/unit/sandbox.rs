//! The sandboxing options that hide a path from a service (systemd.exec(5)): the
//! loader then cannot open the library, says "cannot be preloaded" in the journal, and
//! the service runs without keepalive. `enable` refuses before writing a drop-in that
//! would only do that.

use std::path::Path;

use super::files::Service;

/// The option that hides `library` (as the service would name it) from the service,
/// with what it does, or `None`. `exists_under` says whether a path exists inside the
/// service's `RootDirectory=`.
pub fn hides(
    service: &Service,
    library: &Path,
    exists_under: impl Fn(&Path, &Path) -> bool,
) -> Option<String> {
    // systemd sets up a service's mounts from the root down, the deeper path on top
    // (namespace.c sorts them by path): a bind whose destination holds the library
    // brings it back over whatever hides its parent, RootDirectory= included (binds
    // are made inside the new root, from the host's paths).
    if bound(service, library).is_some() {
        return None;
    }
    let under = |dir: &str| library.starts_with(dir);
    let protect_home = service.setting("ProtectHome").unwrap_or("no");
    if matches!(protect_home, "tmpfs") || boolean(protect_home) == Some(true) {
        if let Some(dir) = ["/home", "/root", "/run/user"]
            .into_iter()
            .find(|dir| under(dir))
        {
            return Some(format!(
                "ProtectHome={protect_home} hides {dir} from the service"
            ));
        }
    }
    let dynamic_user = service.setting("DynamicUser").and_then(boolean) == Some(true);
    let private_tmp = service.setting("PrivateTmp").and_then(boolean) == Some(true);
    if private_tmp || dynamic_user {
        if let Some(dir) = ["/tmp", "/var/tmp"].into_iter().find(|dir| under(dir)) {
            let option = if private_tmp {
                "PrivateTmp=yes"
            } else {
                "PrivateTmp= (implied by DynamicUser=yes)"
            };
            return Some(format!(
                "{option} gives the service an empty {dir} of its own"
            ));
        }
    }
    for entry in service.list("TemporaryFileSystem") {
        let dir = entry.split(':').next().unwrap_or_default();
        if !dir.is_empty() && under(dir) {
            return Some(format!(
                "TemporaryFileSystem={entry} puts an empty file system over {dir}"
            ));
        }
    }
    for entry in service.list("InaccessiblePaths") {
        let dir = entry.trim_start_matches(['-', '+']);
        if !dir.is_empty() && under(dir) {
            return Some(format!("InaccessiblePaths={entry} hides {dir}"));
        }
    }
    for entry in service.list("NoExecPaths") {
        let dir = entry.trim_start_matches('-');
        if !dir.is_empty() && under(dir) {
            return Some(format!(
                "NoExecPaths={entry}: the loader cannot map the library's code from {dir}"
            ));
        }
    }
    if let Some(dir) = service
        .setting("RootDirectory")
        .filter(|dir| !dir.is_empty())
    {
        if !exists_under(Path::new(dir), library) {
            return Some(format!(
                "RootDirectory={dir}: the service looks the library up under {dir}, where {} does not exist",
                library.display()
            ));
        }
    }
    if let Some(image) = service
        .setting("RootImage")
        .filter(|image| !image.is_empty())
    {
        return Some(format!(
            "RootImage={image}: the service looks the library up inside the image, which keepalive cannot look into"
        ));
    }
    None
}

/// The host file a `BindPaths=` or `BindReadOnlyPaths=` entry (`[-]SRC[:DEST[:OPTIONS]]`,
/// DEST defaulting to SRC) shows at `library`, when one covers it and the file is
/// there.
fn bound(service: &Service, library: &Path) -> Option<std::path::PathBuf> {
    ["BindPaths", "BindReadOnlyPaths"]
        .into_iter()
        .flat_map(|key| service.list(key))
        .find_map(|entry| {
            let entry = entry.trim_start_matches('-');
            let mut parts = entry.splitn(3, ':');
            let source = parts.next().filter(|s| !s.is_empty())?;
            let destination = parts.next().filter(|d| !d.is_empty()).unwrap_or(source);
            let rest = library.strip_prefix(destination).ok()?;
            let host = Path::new(source).join(rest);
            host.is_file().then_some(host)
        })
}

/// A boolean as systemd parses it (`parse_boolean()`, systemd.syntax(7)).
fn boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(settings: &[(&str, &str)]) -> Service {
        Service {
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Service::default()
        }
    }

    fn hidden(settings: &[(&str, &str)], library: &str) -> Option<String> {
        hides(&service(settings), Path::new(library), |_, _| false)
    }

    #[test]
    fn each_option_is_named() {
        let lib = "/root/lib/libkeepalive.so";
        assert!(
            hidden(&[("ProtectHome", "yes")], lib)
                .unwrap()
                .starts_with("ProtectHome=yes")
        );
        assert_eq!(hidden(&[("ProtectHome", "read-only")], lib), None);
        assert_eq!(
            hidden(&[("ProtectHome", "yes")], "/usr/lib/libkeepalive.so.0"),
            None
        );
        assert!(
            hidden(&[("PrivateTmp", "true")], "/tmp/x/libkeepalive.so")
                .unwrap()
                .starts_with("PrivateTmp=yes")
        );
        assert!(
            hidden(&[("DynamicUser", "yes")], "/var/tmp/l.so")
                .unwrap()
                .contains("DynamicUser")
        );
        assert!(
            hidden(&[("TemporaryFileSystem", "/opt:ro /srv")], "/srv/l.so")
                .unwrap()
                .starts_with("TemporaryFileSystem=/srv")
        );
        assert!(
            hidden(&[("InaccessiblePaths", "-/opt")], "/opt/l.so")
                .unwrap()
                .starts_with("InaccessiblePaths=-/opt")
        );
        assert_eq!(
            hidden(
                &[("InaccessiblePaths", "/opt"), ("InaccessiblePaths", "")],
                "/opt/l.so"
            ),
            None
        );
        assert!(
            hidden(&[("RootDirectory", "/srv/root")], "/usr/lib/l.so")
                .unwrap()
                .starts_with("RootDirectory=")
        );
        assert_eq!(hidden(&[("PrivateTmp", "no")], "/tmp/l.so"), None);
    }

    #[test]
    fn a_bind_over_the_library_brings_it_back() {
        let dir = std::env::temp_dir().join(format!("sandbox-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libkeepalive.so"), b"").unwrap();
        let source = dir.display().to_string();
        let in_home = "/home/app/lib/libkeepalive.so";
        let bind = format!("-{source}:/home/app/lib:norbind");
        for (settings, library) in [
            (
                vec![
                    ("ProtectHome", "tmpfs"),
                    ("BindReadOnlyPaths", bind.as_str()),
                ],
                in_home,
            ),
            (
                vec![
                    ("TemporaryFileSystem", "/home"),
                    ("BindPaths", bind.as_str()),
                ],
                in_home,
            ),
            (
                vec![
                    ("RootDirectory", "/srv/empty"),
                    ("BindReadOnlyPaths", bind.as_str()),
                ],
                in_home,
            ),
        ] {
            assert_eq!(hidden(&settings, library), None, "{settings:?}");
        }
        // A bind elsewhere, or of a source without the file, brings nothing back.
        let elsewhere = format!("{source}:/opt/other");
        assert!(
            hidden(
                &[("ProtectHome", "tmpfs"), ("BindPaths", &elsewhere)],
                in_home
            )
            .is_some()
        );
        let empty = format!("{source}/missing:/home/app/lib");
        assert!(hidden(&[("ProtectHome", "tmpfs"), ("BindPaths", &empty)], in_home).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
