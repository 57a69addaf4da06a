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
        let field = |name| {
            usage
                .and_then(|u| u.get(name))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        // The Responses API names them input_tokens / output_tokens.
        Self {
            prompt_tokens: field("prompt_tokens").max(field("input_tokens")),
            completion_tokens: field("completion_tokens").max(field("output_tokens")),
            estimated: false,
        }
    }
}

/// Whether an answer reported usage the gateway can use.
pub fn reported(answer: &Value) -> bool {
    // Chat and completions say prompt_tokens; the Responses API says input_tokens.
    answer.get("usage").is_some_and(|u| {
        ["prompt_tokens", "input_tokens"]
            .iter()
            .any(|field| u.get(field).and_then(Value::as_u64).is_some())
    })
}
