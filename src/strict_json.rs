//! JSON parsing that refuses duplicate object keys. `serde_json` keeps the last of two
//! equal keys, other parsers (some relays among them) keep the first: a body such as
//! `{"model":"a","model":"b"}` would be keyed by the gateway as one request and answered
//! by the relay as another, so its answer would poison the cache entry of the first.
//! One pass, building the same `serde_json::Value` the plain parser builds.
//!
//! Integer literals beyond 64 bits are refused too: serde_json reads them as `f64`, so
//! seeds `2^64` and `2^64+1` would become one value and share a cache key. OpenAI's
//! integer parameters are 64-bit, so such a body is one the relay would refuse anyway.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `raw` like `serde_json::from_slice::<Value>`, failing on a duplicate key or
/// an integer that does not fit 64 bits.
pub fn from_slice(raw: &[u8]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    if let Some(literal) = wide_integer(raw) {
        return Err(de::Error::custom(format_args!(
            "integer {literal} does not fit in 64 bits"
        )));
    }
    Ok(value)
}

/// The first integer literal (outside strings) beyond `i64::MIN..=u64::MAX`, if any.
/// Runs on a body serde_json has accepted, so the scan only tells tokens apart.
fn wide_integer(raw: &[u8]) -> Option<String> {
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    while i < raw.len() {
        let b = raw[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < raw.len()
                    && matches!(raw[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &raw[start..i];
                let integer = !token.iter().any(|c| matches!(c, b'.' | b'e' | b'E'));
                // Up to 19 digits always fit; only longer literals need a closer look.
                if integer && token.len() > 19 {
                    let text = String::from_utf8_lossy(token);
                    let fits = text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok();
                    if !fits {
                        return Some(text.chars().take(40).collect());
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    key.chars().take(64).collect::<String>()
                )));
            }
            let value = map.next_value_seed(Strict)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_values_as_serde_json_and_duplicates_refused() {
        for text in [
            r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e9"}"#,
            "[]",
            "12345678901234567890",
            r#""s""#,
        ] {
            let plain: Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_slice(text.as_bytes()).unwrap(), plain, "{text}");
        }
        for text in [
            r#"{"model":"a","model":"b"}"#,
            r#"{"messages":[{"role":"user","role":"system"}]}"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            let err = from_slice(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("duplicate key"), "{text}: {err}");
        }
        assert!(from_slice(b"{} trailing").is_err());
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_and_the_rest_kept_exact() {
        for text in [
            r#"{"seed":18446744073709551616}"#,
            r#"{"seed":18446744073709551617}"#,
            r#"{"a":[1,{"b":-9223372036854775809}]}"#,
        ] {
            let err = from_slice(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("64 bits"), "{text}: {err}");
        }
        for text in [
            r#"{"seed":18446744073709551615,"low":-9223372036854775808}"#,
            r#"{"s":"18446744073709551616 in a string is text","f":1.8446744073709552e19}"#,
            r#"{"s":"escaped \" 18446744073709551616"}"#,
            r#"{"f":184467440737095516160.5}"#,
        ] {
            assert!(from_slice(text.as_bytes()).is_ok(), "{text}");
        }
        let max = from_slice(br#"{"seed":18446744073709551615}"#).unwrap();
        let below = from_slice(br#"{"seed":18446744073709551614}"#).unwrap();
        assert_ne!(max, below, "64-bit integers stay exact");
    }
}
