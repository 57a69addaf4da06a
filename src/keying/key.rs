//! The `CacheKey` newtype and the function that computes it.

use std::fmt;

use axum::http::HeaderValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::canonical::canonical_bytes;
use crate::endpoint::Endpoint;

/// SHA-256 of the canonical request; shown to clients as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn to_hex(self) -> String {
        // `hex::encode` collects char by char (0.4% of a Redis hit's samples).
        self.hex_str().to_owned()
    }

    /// The hex digits as a `&str` on the stack, for `format!` without a `String`.
    pub fn hex_str(&self) -> HexDigits {
        HexDigits(self.hex_bytes())
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The hex digits without allocating.
    pub fn hex_bytes(&self) -> [u8; 64] {
        let mut buf = [0u8; 64];
        // 32 bytes always fit 64 digits; the error cannot happen.
        let _ = hex::encode_to_slice(self.0, &mut buf);
        buf
    }

    /// The `x-cache-key` header value.
    pub fn header_value(&self) -> HeaderValue {
        // Hex digits are always valid header bytes; the fallback cannot happen.
        HeaderValue::from_bytes(&self.hex_bytes()).unwrap_or(HeaderValue::from_static(""))
    }
}

/// A key's 64 hex digits, held inline.
pub struct HexDigits([u8; 64]);

impl std::ops::Deref for HexDigits {
    type Target = str;
    fn deref(&self) -> &str {
        // Hex digits are ASCII; the fallback cannot happen.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for HexDigits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.hex_str())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex_str())
    }
}

/// Settings that change how requests are keyed.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyOptions {
    pub case_insensitive: bool,
}

pub fn cache_key(
    endpoint: Endpoint,
    namespace: &str,
    body: &Map<String, Value>,
    options: KeyOptions,
) -> CacheKey {
    let bytes = canonical_bytes(endpoint, namespace, body, options.case_insensitive);
    CacheKey(Sha256::digest(&bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn key_of(text: &str) -> CacheKey {
        key_ns(text, "ns")
    }

    fn key_ns(text: &str, ns: &str) -> CacheKey {
        let Value::Object(body) = serde_json::from_str(text).unwrap() else {
            panic!("object expected")
        };
        cache_key(Endpoint::ChatCompletions, ns, &body, KeyOptions::default())
    }

    #[test]
    fn chinese_input_in_full_width_or_ascii_forms_shares_one_key() {
        let ask = |t: &str| {
            key_of(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"{t}"}}]}}"#
            ))
        };
        assert_eq!(ask("退货要多久？"), ask("退货要多久?"));
        assert_eq!(ask("你好，请问"), ask("你好,请问"));
        assert_eq!(ask("订单ＡＢＣ１２３"), ask("订单ABC123"));
        assert_eq!(ask("你好\u{3000}世界"), ask("你好 世界"));
        assert_ne!(ask("x²"), ask("x2"));
    }

    #[test]
    fn key_is_64_lowercase_hex_and_round_trips() {
        let key = key_of(r#"{"model":"m","messages":[]}"#);
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(CacheKey::from_hex(&hex), Some(key));
        assert_eq!(key.header_value(), hex.as_str());
        assert_eq!(&*key.hex_str(), hex);
        assert_eq!(format!("{key}"), hex);
        assert_eq!(
            hex,
            hex::encode(key.0),
            "the same digits as the hex crate's"
        );
    }

    #[test]
    fn spelling_variants_share_a_key() {
        let base = key_of(
            r#"{"model":"m","temperature":1,"messages":[{"role":"user","content":"What are your hours?"}]}"#,
        );
        for variant in [
            r#"{"messages":[{"content":"What are your hours?","role":"user"}],"temperature":1.0,"model":"m"}"#,
            r#"{"model":"m","temperature":1e0,"messages":[{"role":"user","content":"  What  are\tyour\nhours? "}]}"#,
            r#"{"model":"m","temperature":10e-1,"messages":[{"role":"user","content":"What are your hours?"}],"stream":true,"stream_options":{"include_usage":true},"user":"u1","metadata":{"a":"b"},"store":false}"#,
        ] {
            assert_eq!(key_of(variant), base, "{variant}");
        }
    }

    #[test]
    fn content_parts_are_normalized_part_by_part() {
        let a = key_of(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":" hi  there "},{"type":"image_url","image_url":{"url":"https://x/a b.png"}}]}]}"#,
        );
        let b = key_of(
            r#"{"model":"m","messages":[{"role":"user","content":[{"text":"hi there","type":"text"},{"type":"image_url","image_url":{"url":"https://x/a b.png"}}]}]}"#,
        );
        let c = key_of(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi there"},{"type":"image_url","image_url":{"url":"https://x/a  b.png"}}]}]}"#,
        );
        assert_eq!(a, b);
        assert_ne!(a, c, "URLs are not message text");
    }

    #[test]
    fn every_kept_field_changes_the_key() {
        let base = json!({"model":"m","messages":[{"role":"user","content":"q"}]});
        let base_key = key_of(&base.to_string());
        for (field, value) in [
            ("model", json!("m2")),
            ("temperature", json!(0.7)),
            ("top_p", json!(0.9)),
            ("max_tokens", json!(10)),
            ("n", json!(2)),
            ("stop", json!(["\n"])),
            ("seed", json!(1)),
            (
                "tools",
                json!([{"type":"function","function":{"name":"f"}}]),
            ),
            ("tool_choice", json!("auto")),
            ("response_format", json!({"type":"json_object"})),
            ("presence_penalty", json!(0.5)),
            ("logit_bias", json!({"50256": -100})),
        ] {
            let mut changed = base.clone();
            changed[field] = value;
            assert_ne!(key_of(&changed.to_string()), base_key, "{field}");
        }
        let mut role = base.clone();
        role["messages"][0]["role"] = json!("system");
        assert_ne!(key_of(&role.to_string()), base_key);
        assert_ne!(key_ns(&base.to_string(), "other"), base_key);
        let Value::Object(body) = base else {
            unreachable!()
        };
        assert_ne!(
            cache_key(Endpoint::Completions, "ns", &body, KeyOptions::default()),
            base_key,
            "the route is part of the key"
        );
    }

    #[test]
    fn case_folding_is_opt_in() {
        let Value::Object(a) = json!({"model":"M","messages":[{"role":"user","content":"Hello"}]})
        else {
            unreachable!()
        };
        let Value::Object(b) = json!({"model":"M","messages":[{"role":"user","content":"hello"}]})
        else {
            unreachable!()
        };
        let on = KeyOptions {
            case_insensitive: true,
        };
        let ep = Endpoint::ChatCompletions;
        assert_ne!(
            cache_key(ep, "n", &a, KeyOptions::default()),
            cache_key(ep, "n", &b, KeyOptions::default())
        );
        assert_eq!(cache_key(ep, "n", &a, on), cache_key(ep, "n", &b, on));
    }

    /// A random request body: words for messages, a few numeric parameters.
    fn body_strategy() -> impl Strategy<Value = (Vec<(String, String)>, f64, u32, Option<i64>)> {
        (
            prop::collection::vec(
                (
                    prop::sample::select(vec!["system", "user", "assistant"])
                        .prop_map(String::from),
                    prop::collection::vec("[a-zA-Zéß0-9?!.]{1,8}", 1..6).prop_map(|w| w.join(" ")),
                ),
                1..4,
            ),
            (0u32..=20).prop_map(|t| f64::from(t) / 10.0),
            1u32..4096,
            prop::option::of(any::<i64>()),
        )
    }

    fn render(
        messages: &[(String, String)],
        temperature: &str,
        max_tokens: &str,
        seed: Option<i64>,
        reverse: bool,
        space: &dyn Fn(&str) -> String,
    ) -> String {
        let msgs: Vec<String> = messages
            .iter()
            .map(|(role, content)| {
                let content = serde_json::to_string(&space(content)).unwrap();
                if reverse {
                    format!(r#"{{"content":{content},"role":"{role}"}}"#)
                } else {
                    format!(r#"{{"role":"{role}","content":{content}}}"#)
                }
            })
            .collect();
        let mut fields = vec![
            format!(r#""model":"gpt-4o-mini""#),
            format!(r#""messages":[{}]"#, msgs.join(",")),
            format!(r#""temperature":{temperature}"#),
            format!(r#""max_tokens":{max_tokens}"#),
        ];
        if let Some(seed) = seed {
            fields.push(format!(r#""seed":{seed}"#));
        }
        if reverse {
            fields.reverse();
        }
        format!("{{{}}}", fields.join(","))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn key_ignores_order_white_space_and_number_spelling(
            (messages, temperature, max_tokens, seed) in body_strategy(),
            pad in prop::sample::select(vec![" ", "  ", "\t", "\n", " \u{00a0}", "\r\n "]),
        ) {
            let plain = render(&messages, &format!("{temperature}"), &max_tokens.to_string(), seed, false, &|s| s.to_owned());
            let spaced = render(
                &messages,
                &format!("{temperature:e}"),
                &format!("{max_tokens}.0"),
                seed,
                true,
                &|s| format!("{pad}{}{pad}", s.replace(' ', pad)),
            );
            prop_assert_eq!(key_of(&plain), key_of(&spaced));
        }

        #[test]
        fn key_changes_when_a_kept_field_changes(
            (messages, temperature, max_tokens, seed) in body_strategy(),
            which in 0usize..4,
        ) {
            let base = render(&messages, &format!("{temperature}"), &max_tokens.to_string(), seed, false, &|s| s.to_owned());
            let mut messages2 = messages.clone();
            let (t2, m2, s2) = match which {
                0 => (temperature + 0.05, max_tokens, seed),
                1 => (temperature, max_tokens + 1, seed),
                2 => (temperature, max_tokens, Some(seed.unwrap_or(0).wrapping_add(1))),
                _ => {
                    messages2[0].1.push_str(" more");
                    (temperature, max_tokens, seed)
                }
            };
            let changed = render(&messages2, &format!("{t2}"), &m2.to_string(), s2, false, &|s| s.to_owned());
            prop_assert_ne!(key_of(&base), key_of(&changed));
        }
    }
}
