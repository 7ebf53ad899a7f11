//! Unit names as systemd accepts them (systemd.unit(5), "DESCRIPTION"; the rules are
//! `unit_name_is_valid()` in systemd's src/basic/unit-name.c): at most 255 bytes, a
//! prefix of ASCII letters, digits and `:-_.\`, an optional `@instance` that may also
//! hold `@`, and a type suffix. `systemctl` adds `.service` to a name without a type
//! suffix (`unit_name_mangle()`); so does this command.

use crate::failure::Failure;

/// `UNIT_NAME_MAX` in systemd: the longest unit name, suffix included.
const MAX_LEN: usize = 255;

/// The suffixes systemd knows (`unit_type_from_string()`); a name ending in any of
/// these names a unit of that type, not a service.
const TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// A valid service name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    /// `name.service`, `name@instance.service` or `name@.service`.
    full: String,
    kind: Kind,
}

/// Whether a name is a plain unit, a template or an instance of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Plain,
    /// `name@.service`: never started itself; its instances read its drop-ins.
    Template,
    /// `name@instance.service`.
    Instance,
}

impl ServiceName {
    /// The name as systemctl would take `typed`, or why systemd would refuse it.
    pub fn parse(typed: &str) -> Result<ServiceName, Failure> {
        let refuse = |why: String| Failure::usage(format!("'{typed}': {why}"));
        if typed.contains('/') {
            return Err(refuse(
                "not a unit name (a name such as nginx.service, without a path)".into(),
            ));
        }
        let full = match typed.rsplit_once('.') {
            Some((_, "service")) => typed.to_string(),
            Some((_, suffix)) if TYPES.contains(&suffix) => {
                return Err(refuse(format!(
                    "a .{suffix} unit; only a .service runs a program to preload into"
                )));
            }
            _ => format!("{typed}.service"),
        };
        if full.len() > MAX_LEN {
            return Err(refuse(format!(
                "longer than systemd's {MAX_LEN} bytes for a unit name"
            )));
        }
        let stem = &full[..full.len() - ".service".len()];
        let (prefix, instance) = match stem.split_once('@') {
            Some((prefix, instance)) => (prefix, Some(instance)),
            None => (stem, None),
        };
        if prefix.is_empty() {
            return Err(refuse(
                "not a unit name: nothing before the suffix or the @".into(),
            ));
        }
        if let Some(bad) = prefix.chars().find(|&c| !plain_char(c)) {
            return Err(refuse(format!(
                "not a unit name: systemd does not allow {bad:?} in it (letters, digits and :-_.\\ only)"
            )));
        }
        let kind = match instance {
            None => Kind::Plain,
            Some("") => Kind::Template,
            Some(instance) => {
                if let Some(bad) = instance.chars().find(|&c| !plain_char(c) && c != '@') {
                    return Err(refuse(format!(
                        "not a unit name: systemd does not allow {bad:?} in an instance \
                         (letters, digits and :-_.\\@ only; `systemd-escape` makes one)"
                    )));
                }
                Kind::Instance
            }
        };
        Ok(ServiceName { full, kind })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// `name@.service` for an instance `name@x.service`.
    pub fn template(&self) -> Option<ServiceName> {
        (self.kind == Kind::Instance).then(|| {
            let (prefix, _) = self.full.split_once('@').unwrap_or((&self.full, ""));
            ServiceName {
                full: format!("{prefix}@.service"),
                kind: Kind::Template,
            }
        })
    }

    /// The same instance of another unit: `real@.service` and this name's instance,
    /// for an alias of a template (`alias@x` → `real@x`); else `real` itself.
    pub fn with_unit(&self, real: &str) -> Result<ServiceName, Failure> {
        let instance = match self.kind {
            Kind::Instance => self.full.split_once('@').map(|(_, rest)| rest),
            _ => None,
        };
        match (instance, real.strip_suffix("@.service")) {
            (Some(rest), Some(prefix)) => ServiceName::parse(&format!("{prefix}@{rest}")),
            _ => ServiceName::parse(real),
        }
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full)
    }
}

fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ":-_.\\".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(typed: &str) -> Result<String, String> {
        ServiceName::parse(typed)
            .map(|name| name.to_string())
            .map_err(|failure| failure.message)
    }

    #[test]
    fn names_follow_systemds_rules() {
        assert_eq!(full("nginx").unwrap(), "nginx.service");
        assert_eq!(full("a@b.service").unwrap(), "a@b.service");
        assert_eq!(full("foo.bar").unwrap(), "foo.bar.service");
        assert_eq!(full("getty@tty1").unwrap(), "getty@tty1.service");
        assert!(full("../etc/passwd").is_err());
        assert!(full("sshd.socket").unwrap_err().contains(".socket unit"));
        assert!(full("").is_err());
        assert!(full("@x").is_err());
        assert!(full("tpl@x y").unwrap_err().contains("' '"));
        assert!(full("a b.service").unwrap_err().contains("' '"));
        assert!(full(&"a".repeat(250)).unwrap_err().contains("255"));
        assert_eq!(full("a@b@c").unwrap(), "a@b@c.service");
    }

    #[test]
    fn templates_and_instances() {
        let instance = ServiceName::parse("getty@tty1.service").unwrap();
        assert_eq!(instance.kind(), Kind::Instance);
        assert_eq!(instance.template().unwrap().as_str(), "getty@.service");
        let template = ServiceName::parse("getty@").unwrap();
        assert_eq!(template.kind(), Kind::Template);
        assert_eq!(template.template(), None);
        assert_eq!(
            instance.with_unit("real@.service").unwrap().as_str(),
            "real@tty1.service"
        );
        let plain = ServiceName::parse("sshd").unwrap();
        assert_eq!(
            plain.with_unit("ssh.service").unwrap().as_str(),
            "ssh.service"
        );
    }
}
