//! A flat JSON object writer: the few string, bool and array fields `--json` prints
//! do not need a serialization framework.

use std::fmt::Write;

/// One JSON object, written field by field.
pub struct Object {
    text: String,
}

impl Object {
    pub fn new() -> Object {
        Object {
            text: String::from("{"),
        }
    }

    fn key(&mut self, key: &str) -> &mut Object {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        push_string(&mut self.text, key);
        self.text.push(':');
        self
    }

    pub fn string(&mut self, key: &str, value: &str) -> &mut Object {
        self.key(key);
        push_string(&mut self.text, value);
        self
    }

    pub fn number(&mut self, key: &str, value: u64) -> &mut Object {
        self.key(key);
        let _ = write!(self.text, "{value}");
        self
    }

    /// `null`: a key every object has, whose value is not known for this one.
    pub fn null(&mut self, key: &str) -> &mut Object {
        self.key(key);
        self.text.push_str("null");
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Object {
        self.key(key);
        self.text.push_str(if value { "true" } else { "false" });
        self
    }

    pub fn strings<S: AsRef<str>>(
        &mut self,
        key: &str,
        values: impl Iterator<Item = S>,
    ) -> &mut Object {
        self.key(key);
        self.text.push('[');
        for (i, value) in values.enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            push_string(&mut self.text, value.as_ref());
        }
        self.text.push(']');
        self
    }

    pub fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.text);
        text.push('}');
        text
    }
}

/// A JSON string (RFC 8259 §7): quote, backslash and control characters escaped.
pub fn push_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_requires() {
        let text = Object::new()
            .string("a", "q\"b\\n\n\u{1}é")
            .bool("ok", true)
            .strings("list", ["x", "y"].iter())
            .finish();
        assert_eq!(
            text,
            r#"{"a":"q\"b\\n\n\u0001é","ok":true,"list":["x","y"]}"#
        );
    }
}
