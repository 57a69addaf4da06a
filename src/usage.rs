//! Token usage of an answer, as the relay reported it or as the gateway estimated it.

use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Counted by the gateway (the relay reported none): see `tokens`.
    pub estimated: bool,
}

impl Usage {
    pub fn from_json(usage: Option<&Value>) -> Self {
        Self::from_counts(|name| usage.and_then(|u| u.get(name)).and_then(Value::as_u64))
    }

    /// The usage of a `usage` object whose whole non-negative counts `count` gives by
    /// field name (an answer parsed whole, or read field by field).
    pub fn from_counts(count: impl Fn(&str) -> Option<u64>) -> Self {
        let field = |name| count(name).unwrap_or(0);
        // The Responses API names them input_tokens / output_tokens.
        Self {
            prompt_tokens: field("prompt_tokens").max(field("input_tokens")),
            completion_tokens: field("completion_tokens").max(field("output_tokens")),
            estimated: false,
        }
    }

    /// Whether those counts include the prompt's, which the gateway can use.
    pub fn counts_reported(count: impl Fn(&str) -> Option<u64>) -> bool {
        // Chat and completions say prompt_tokens; the Responses API says input_tokens.
        ["prompt_tokens", "input_tokens"]
            .iter()
            .any(|field| count(field).is_some())
    }
}

/// Whether an answer reported usage the gateway can use.
pub fn reported(answer: &Value) -> bool {
    answer
        .get("usage")
        .is_some_and(|u| Usage::counts_reported(|field| u.get(field).and_then(Value::as_u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_and_responses_api_counts_are_read_alike() {
        let chat = Usage::from_json(Some(&json!({"prompt_tokens": 3, "completion_tokens": 2})));
        let responses = Usage::from_json(Some(&json!({"input_tokens": 3, "output_tokens": 2})));
        assert_eq!((chat.prompt_tokens, chat.completion_tokens), (3, 2));
        assert_eq!(chat, responses);
        assert_eq!(
            Usage::from_json(Some(&json!({"prompt_tokens": -1}))),
            Usage::default()
        );
        assert_eq!(Usage::from_json(None), Usage::default());
    }
}
