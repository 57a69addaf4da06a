//! Token counts for answers whose relay reported none. Some OpenAI-compatible relays
//! send no `usage` at all; without an estimate their traffic would be recorded as $0
//! spent and every hit of it as $0 saved. The estimate uses OpenAI's `o200k_base`
//! tokenizer (exact for the gpt-4o and o-series families, close for others) and OpenAI's
//! chat framing (about 3 tokens per message and 3 to prime the reply). Rows and entries
//! built from an estimate carry `usage_estimated = 1`.

use std::sync::OnceLock;

use serde_json::{Map, Value};
use tiktoken_rs::CoreBPE;

use crate::endpoint::Endpoint;
use crate::usage::Usage;

/// Loaded once, on first use (~130 ms; callers run on the blocking pool).
fn tokenizer() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match tokenizer() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        // Never expected (the ranks are compiled in); a rough figure beats none.
        None => text.len().div_ceil(4) as u64,
    }
}

/// Tokens of a content value: a string, parts with `text`, or token ids.
fn count_value(value: &Value) -> u64 {
    match value {
        Value::String(s) => count(s),
        Value::Number(_) => 1,
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(part) => part.get("text").map_or(0, count_value),
                other => count_value(other),
            })
            .sum(),
        _ => 0,
    }
}

/// Per-message framing in OpenAI's chat accounting.
const PER_MESSAGE: u64 = 3;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const REPLY_PRIMING: u64 = 3;

/// The usage of `answer` to `request`, estimated.
pub fn estimate(endpoint: Endpoint, request: &Map<String, Value>, answer: &Value) -> Usage {
    let prompt_tokens = match endpoint {
        Endpoint::ChatCompletions => {
            let messages = request.get("messages").and_then(Value::as_array);
            REPLY_PRIMING
                + messages.into_iter().flatten().fold(0, |sum, m| {
                    sum + PER_MESSAGE
                        + m.get("role").map_or(0, count_value)
                        + m.get("name").map_or(0, count_value)
                        + m.get("content").map_or(0, count_value)
                })
        }
        Endpoint::Completions => request.get("prompt").map_or(0, count_value),
        Endpoint::Embeddings => request.get("input").map_or(0, count_value),
        Endpoint::Responses => {
            request.get("instructions").map_or(0, count_value)
                + request.get("input").map_or(0, count_value)
        }
    };
    if endpoint == Endpoint::Responses {
        let text = crate::cache::responses::output_text(answer);
        return Usage {
            prompt_tokens,
            completion_tokens: count_value(&Value::String(text)),
            estimated: true,
        };
    }
    let choices = answer.get("choices").and_then(Value::as_array);
    let completion_tokens = choices
        .into_iter()
        .flatten()
        .map(|choice| match endpoint {
            Endpoint::ChatCompletions => {
                let message = choice.get("message");
                let field = |name: &str| message.and_then(|m| m.get(name)).map_or(0, count_value);
                let calls = message
                    .and_then(|m| m.get("tool_calls"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|call| {
                        call.pointer("/function/name").map_or(0, count_value)
                            + call.pointer("/function/arguments").map_or(0, count_value)
                    })
                    .sum::<u64>();
                field("content") + field("reasoning_content") + field("refusal") + calls
            }
            Endpoint::Completions => choice.get("text").map_or(0, count_value),
            Endpoint::Embeddings | Endpoint::Responses => 0,
        })
        .sum();
    Usage {
        prompt_tokens,
        completion_tokens,
        estimated: true,
    }
}

pub use crate::usage::reported;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimates_follow_the_tokenizer_and_openais_framing() {
        let request = json!({"messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hello world"}]},
        ]});
        let answer =
            json!({"choices": [{"message": {"role": "assistant", "content": "Hello world"}}]});
        let usage = estimate(
            Endpoint::ChatCompletions,
            request.as_object().unwrap(),
            &answer,
        );
        // o200k_base: "Hello world" is 2 tokens, "system" 1, "user" 1, "You are terse." 4.
        assert_eq!(usage.completion_tokens, 2);
        assert_eq!(
            usage.prompt_tokens,
            REPLY_PRIMING + 2 * PER_MESSAGE + 1 + 4 + 1 + 2
        );
        assert!(usage.estimated);
        let chinese = estimate(
            Endpoint::Completions,
            json!({"prompt": "你好世界"}).as_object().unwrap(),
            &json!({"choices": [{"text": "你好"}]}),
        );
        assert!(chinese.prompt_tokens >= 1 && chinese.completion_tokens >= 1);
        assert!(reported(
            &json!({"usage": {"prompt_tokens": 3, "completion_tokens": 1}})
        ));
        assert!(reported(
            &json!({"usage": {"input_tokens": 3, "output_tokens": 1}})
        ));
        assert!(!reported(&json!({"usage": {"completion_tokens": 1}})));
        assert!(!reported(&json!({"usage": null})));
        assert!(!reported(&json!({})));
    }
}
