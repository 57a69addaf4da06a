//! The canonical encoding that is hashed: compact JSON with sorted object keys, numbers
//! by value (`1`, `1.0` and `1e0` encode alike), message text normalized, and the fields
//! that do not change the answer (`stream`, `stream_options`, `user`, `metadata`,
//! `store`) left out.

use serde_json::{Map, Number, Value};

use super::text::normalize_text;
use crate::endpoint::Endpoint;

/// Top-level fields that do not change the answer, so they stay out of the key.
const IGNORED: &[&str] = &["stream", "stream_options", "user", "metadata", "store"];

/// Prefix that versions the encoding: changing the rules means changing this.
const VERSION: &[u8] = b"edge-gateway/key/v2\0";

#[derive(Clone, Copy)]
enum Text {
    /// Strings are kept exactly.
    Verbatim,
    /// Strings (and the `text` of content parts) are normalized message text.
    Message,
}

/// The exact bytes that `cache_key` hashes, for tests and debugging.
pub fn canonical_bytes(
    endpoint: Endpoint,
    namespace: &str,
    body: &Map<String, Value>,
    case_insensitive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(VERSION);
    out.extend_from_slice(endpoint.path().as_bytes());
    out.push(0);
    out.extend_from_slice(namespace.as_bytes());
    out.push(0);
    let mut writer = Writer {
        out: &mut out,
        case_insensitive,
    };
    writer.top_level(body);
    out
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    case_insensitive: bool,
}

impl Writer<'_> {
    fn top_level(&mut self, body: &Map<String, Value>) {
        self.out.push(b'{');
        let mut first = true;
        // serde_json's Map is a BTreeMap here (no `preserve_order`): keys iterate sorted.
        for (key, value) in body {
            if IGNORED.contains(&key.as_str()) {
                continue;
            }
            self.separator(&mut first);
            self.string(key, Text::Verbatim);
            self.out.push(b':');
            match key.as_str() {
                "messages" => self.messages(value),
                "prompt" | "input" => self.value(value, Text::Message),
                _ => self.value(value, Text::Verbatim),
            }
        }
        self.out.push(b'}');
    }

    fn messages(&mut self, messages: &Value) {
        let Value::Array(items) = messages else {
            return self.value(messages, Text::Verbatim);
        };
        self.out.push(b'[');
        for (i, message) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            match message {
                Value::Object(fields) => {
                    self.out.push(b'{');
                    let mut first = true;
                    for (key, value) in fields {
                        self.separator(&mut first);
                        self.string(key, Text::Verbatim);
                        self.out.push(b':');
                        let mode = if key == "content" {
                            Text::Message
                        } else {
                            Text::Verbatim
                        };
                        self.value(value, mode);
                    }
                    self.out.push(b'}');
                }
                other => self.value(other, Text::Verbatim),
            }
        }
        self.out.push(b']');
    }

    fn separator(&mut self, first: &mut bool) {
        if !*first {
            self.out.push(b',');
        }
        *first = false;
    }

    fn value(&mut self, value: &Value, mode: Text) {
        match value {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Number(n) => self.number(n),
            Value::String(s) => self.string(s, mode),
            Value::Array(items) => {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(item, mode);
                }
                self.out.push(b']');
            }
            Value::Object(fields) => {
                self.out.push(b'{');
                let mut first = true;
                for (key, item) in fields {
                    self.separator(&mut first);
                    self.string(key, Text::Verbatim);
                    self.out.push(b':');
                    // In message content, only a part's `text` is message text; its
                    // `type`, image URLs and the like are kept exactly.
                    let inner = match mode {
                        Text::Message if key == "text" => Text::Message,
                        _ => Text::Verbatim,
                    };
                    self.value(item, inner);
                }
                self.out.push(b'}');
            }
        }
    }

    fn number(&mut self, n: &Number) {
        use std::io::Write;
        if let Some(i) = n.as_i64() {
            let _ = write!(self.out, "{i}");
        } else if let Some(u) = n.as_u64() {
            let _ = write!(self.out, "{u}");
        } else {
            let f = n.as_f64().unwrap_or(0.0);
            // Integral floats below 2^53 encode as integers, so 1.0 == 1.
            if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                let _ = write!(self.out, "{}", f as i64);
            } else {
                // Shortest representation that round-trips: one spelling per value.
                let _ = write!(self.out, "{f:e}");
            }
        }
    }

    fn string(&mut self, s: &str, mode: Text) {
        let text = match mode {
            Text::Verbatim => std::borrow::Cow::Borrowed(s),
            Text::Message => normalize_text(s, self.case_insensitive),
        };
        // Serializing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, text.as_ref());
    }
}
