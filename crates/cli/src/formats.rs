//! The formats `keepalive env` prints, each for the consumer that reads it: a POSIX
//! shell's `eval`, a systemd unit, Docker's `--env-file` and a Kubernetes container's
//! `env:` list.

use crate::json;

/// Where the variables are pasted or fed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `export NAME='value'` lines: `eval "$(keepalive env …)"` in sh, dash or bash
    /// exports them to every program the shell starts (a plain assignment would not).
    #[default]
    Sh,
    /// `Environment="NAME=value"` lines for a unit's `[Service]` section
    /// (systemd.exec(5)): quotes and backslashes escaped, `%` doubled (a specifier
    /// otherwise, systemd.unit(5)).
    Systemd,
    /// `NAME=value` lines that read the same sourced by sh (`set -a; . FILE`) and as
    /// systemd's `EnvironmentFile=`: a value with any character either would read
    /// (blanks, quotes, `\`, `$`) in double quotes, with `\`, `"`, `$` and `` ` ``
    /// escaped by a backslash — the escapes POSIX sh and systemd's env-file parser
    /// share (single quotes would not do: systemd does not read `'\''`). Docker's
    /// `--env-file` removes no quotes: plain values only.
    EnvFile,
    /// Entries of a container's `env:` list, values as YAML double-quoted strings.
    Kubernetes,
}

/// The lines of `variables` in `format`. The values are the command's own (numbers,
/// `on|skip|off`, library paths without blanks or colons), so every format can hold
/// them; the quoting still covers any byte a path may hold.
pub fn render(format: Format, variables: &[(String, String)]) -> Vec<String> {
    variables
        .iter()
        .map(|(name, value)| match format {
            Format::Sh => format!("export {name}={}", shell_word(value)),
            Format::Systemd => {
                let value = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('%', "%%");
                format!("Environment=\"{name}={value}\"")
            }
            Format::EnvFile => format!("{name}={}", env_file_word(value)),
            Format::Kubernetes => {
                let mut quoted = String::new();
                json::push_string(&mut quoted, value);
                format!("- name: {name}\n  value: {quoted}")
            }
        })
        .collect()
}

/// `text` with every control character escaped (`\u{1b}`), so that a name a program
/// or a cgroup chose cannot move the cursor, retitle or clear the terminal it is
/// printed on, or split a line, while the rest stays as typed: a command line to
/// paste, whose quotes and backslashes (a unit's `\x2d`) must stay. A name shown on
/// its own takes `escape_debug`, which escapes those too and so cannot be mistaken.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `text` as one shell word: as is when it is plain, else in single quotes.
pub fn shell_word(text: &str) -> String {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._+-@".contains(&b));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `text` as an env-file value: as is when it is plain, else double-quoted.
fn env_file_word(text: &str) -> String {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._+-@".contains(&b));
    if plain && !text.is_empty() {
        return text.to_string();
    }
    let mut quoted = String::from('"');
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_quotes_for_its_reader() {
        let vars = [
            ("LD_PRELOAD".to_string(), "/a.so /b%i.so".to_string()),
            ("KEEPIDLE".to_string(), "60".to_string()),
        ];
        assert_eq!(
            render(Format::Sh, &vars),
            ["export LD_PRELOAD='/a.so /b%i.so'", "export KEEPIDLE=60"]
        );
        assert_eq!(
            render(Format::Systemd, &vars)[0],
            "Environment=\"LD_PRELOAD=/a.so /b%%i.so\""
        );
        assert_eq!(
            render(Format::EnvFile, &vars),
            ["LD_PRELOAD=\"/a.so /b%i.so\"", "KEEPIDLE=60"]
        );
        assert_eq!(
            render(Format::Kubernetes, &vars)[1],
            "- name: KEEPIDLE\n  value: \"60\""
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(env_file_word(r#"a\b$c"d'e`f"#), r#""a\\b\$c\"d'e\`f""#);
    }
}
