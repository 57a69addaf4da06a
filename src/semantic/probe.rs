//! What a request offers the semantic tier: the last user message (compared by meaning)
//! and the partition (everything else, compared exactly).
//!
//! The partition is the exact cache key of the request with the last user message
//! replaced by a marker, so it covers whatever the exact key covers: route, namespace,
//! model, every parameter, tools, the system prompt and every earlier turn, normalized
//! the same way. Two requests share a partition only if they differ in nothing but the
//! last user message, so "yes, cancel it" after a gym conversation can never be served
//! the answer given after a streaming-plan conversation.

use serde_json::{Map, Value};

use crate::endpoint::Endpoint;
use crate::keying::{CacheKey, KeyOptions, cache_key};

/// Stands in for the last user message in the partition's key (never a real message:
/// it holds control characters a JSON client does not send by accident, and the key it
/// makes is never looked up in the exact tiers).
const MARKER: &str = "\u{1}edge-gateway:semantic:last-user-message\u{1}";

#[derive(Clone, Debug)]
pub struct Probe {
    pub partition: CacheKey,
    /// The last user message, trimmed.
    pub text: String,
}

/// `None` when the request has nothing to compare by meaning: embeddings, a
/// conversation that does not end with a user message, a message with non-text parts
/// (images, audio), an empty or over-long message.
pub fn probe(
    endpoint: Endpoint,
    namespace: &str,
    body: &Map<String, Value>,
    options: KeyOptions,
    max_chars: usize,
) -> Option<Probe> {
    let mut body = body.clone();
    let text = match endpoint {
        Endpoint::ChatCompletions => {
            let last = body.get_mut("messages")?.as_array_mut()?.last_mut()?;
            let last = last.as_object_mut()?;
            if last.get("role")?.as_str()? != "user" {
                return None;
            }
            let text = message_text(last.get("content")?)?;
            last.insert("content".into(), Value::String(MARKER.into()));
            text
        }
        Endpoint::Completions => {
            let prompt = body.get_mut("prompt")?;
            let text = prompt.as_str()?.to_owned();
            *prompt = Value::String(MARKER.into());
            text
        }
        Endpoint::Embeddings | Endpoint::Responses => return None,
    };
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max_chars {
        return None;
    }
    Some(Probe {
        partition: cache_key(endpoint, namespace, &body, options),
        text: text.to_owned(),
    })
}

/// A message's text: a string, or an array made only of text parts.
fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                let part = part.as_object()?;
                if part.get("type")?.as_str()? != "text" {
                    return None;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(part.get("text")?.as_str()?);
            }
            Some(text)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(body: Value) -> Option<Probe> {
        let Value::Object(body) = body else {
            panic!("object")
        };
        probe(
            Endpoint::ChatCompletions,
            "ns",
            &body,
            KeyOptions::default(),
            2_000,
        )
    }

    fn chat(system: &str, turns: &[(&str, &str)], temperature: f64) -> Value {
        let mut messages = vec![json!({"role": "system", "content": system})];
        for (role, content) in turns {
            messages.push(json!({"role": role, "content": content}));
        }
        json!({"model": "m", "messages": messages, "temperature": temperature})
    }

    #[test]
    fn only_the_last_user_message_is_left_out_of_the_partition() {
        let a = of(chat("be brief", &[("user", "What are your hours?")], 0.0)).unwrap();
        let b = of(chat("be brief", &[("user", "When are you open?")], 0.0)).unwrap();
        assert_eq!(a.partition, b.partition);
        assert_eq!(a.text, "What are your hours?");
    }

    #[test]
    fn system_prompt_earlier_turns_and_parameters_partition() {
        let base = of(chat(
            "s",
            &[
                ("user", "a"),
                ("assistant", "b"),
                ("user", "yes, cancel it"),
            ],
            0.0,
        ))
        .unwrap();
        for other in [
            chat(
                "t",
                &[
                    ("user", "a"),
                    ("assistant", "b"),
                    ("user", "yes, cancel it"),
                ],
                0.0,
            ),
            chat(
                "s",
                &[
                    ("user", "x"),
                    ("assistant", "b"),
                    ("user", "yes, cancel it"),
                ],
                0.0,
            ),
            chat(
                "s",
                &[
                    ("user", "a"),
                    ("assistant", "y"),
                    ("user", "yes, cancel it"),
                ],
                0.0,
            ),
            chat(
                "s",
                &[
                    ("user", "a"),
                    ("assistant", "b"),
                    ("user", "yes, cancel it"),
                ],
                0.5,
            ),
        ] {
            assert_ne!(of(other).unwrap().partition, base.partition);
        }
        let Value::Object(body) = chat("s", &[("user", "q")], 0.0) else {
            unreachable!()
        };
        let here = probe(
            Endpoint::ChatCompletions,
            "ns",
            &body,
            KeyOptions::default(),
            99,
        );
        let there = probe(
            Endpoint::ChatCompletions,
            "other",
            &body,
            KeyOptions::default(),
            99,
        );
        assert_ne!(here.unwrap().partition, there.unwrap().partition);
    }

    #[test]
    fn nothing_to_compare() {
        assert!(of(chat("s", &[("user", "q"), ("assistant", "a")], 0.0)).is_none());
        assert!(of(chat("s", &[("user", "   ")], 0.0)).is_none());
        let image = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]});
        assert!(of(image).is_none());
        let long = "x".repeat(2_001);
        assert!(of(chat("s", &[("user", &long)], 0.0)).is_none());
    }

    #[test]
    fn text_parts_are_joined() {
        let parts = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello"}, {"type": "text", "text": "world"}]}]});
        assert_eq!(of(parts).unwrap().text, "hello\nworld");
    }
}
