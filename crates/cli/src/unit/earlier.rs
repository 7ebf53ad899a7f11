//! What earlier `enable`s left for a unit. systemd applies one file of a name per
//! unit: the drop-in `enable` writes hides a `zz-keepalive.conf` found after it (under
//! /run when it writes /etc, under the template's or an alias's name), and one found
//! before it hides the drop-in. So the variables of hidden drop-ins of ours are kept,
//! and said, as those of the drop-in rewritten; anything else of that name is refused
//! rather than silently hidden or left to hide ours.

use std::path::{Path, PathBuf};

use super::DROP_IN;
use super::files::{self, Unit};
use crate::failure::Failure;

pub struct Earlier {
    /// The variables of our drop-in at the path `enable` writes.
    pub own: Vec<(String, String)>,
    /// Our drop-ins elsewhere that the one written hides, with their variables.
    pub hidden: Vec<(PathBuf, Vec<(String, String)>)>,
}

impl Earlier {
    /// Reads them; refuses a file of our name that would win over the drop-in, or that
    /// the drop-in would hide and is not ours. `afresh` is the command that starts
    /// afresh, for the message.
    pub fn read(unit: &Unit, afresh: &str) -> Result<Earlier, Failure> {
        let drop_in = unit.drop_in();
        let (before, after) = unit.same_named();
        if let Some(wins) = before.first() {
            return Err(Failure::with_code(
                1,
                format!(
                    "{}: {} takes precedence over {} (systemd applies the first file named \
                     {DROP_IN} it finds), so the drop-in would change nothing; enable \
                     without --runtime, or `{afresh}` first",
                    unit.name,
                    wins.display(),
                    drop_in.display()
                ),
            ));
        }
        if let Some(foreign) = after.iter().find(|path| !files::is_ours(path)) {
            return Err(Failure::with_code(
                1,
                format!(
                    "{}: {} applies to it, and {} would hide it (systemd applies one file \
                     named {DROP_IN}); it was not written by keepalive enable: rename it",
                    unit.name,
                    foreign.display(),
                    drop_in.display()
                ),
            ));
        }
        Ok(Earlier {
            own: files::our_variables(&drop_in),
            hidden: after
                .into_iter()
                .map(|path| {
                    let variables = files::our_variables(&path);
                    (path, variables)
                })
                .collect(),
        })
    }

    /// The value of `name` systemd applies now: the drop-in's own, else the first
    /// hidden one's.
    pub fn get(&self, name: &str) -> Option<&str> {
        std::iter::once(&self.own)
            .chain(self.hidden.iter().map(|(_, variables)| variables))
            .find_map(|variables| {
                variables
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, value)| value.as_str())
            })
    }

    /// Where the value of `name` comes from: `Some(None)` for the drop-in itself,
    /// `Some(Some(path))` for a hidden one.
    pub fn source(&self, name: &str) -> Option<Option<&Path>> {
        if self.own.iter().any(|(n, _)| n == name) {
            return Some(None);
        }
        self.hidden
            .iter()
            .find(|(_, variables)| variables.iter().any(|(n, _)| n == name))
            .map(|(path, _)| Some(path.as_path()))
    }

    /// The line that says `name=value` is kept.
    pub fn kept(&self, name: &str, value: &str, afresh: &str) -> Option<String> {
        match self.source(name)? {
            None => Some(format!(
                "keeps {name}={value} from the earlier enable (`{afresh}` starts afresh)"
            )),
            Some(path) => Some(format!(
                "keeps {name}={value} from {}, which the new drop-in hides (systemd \
                 applies one file named {DROP_IN})",
                path.display()
            )),
        }
    }
}
