//! Validation of cacheable request bodies. A body that fails here gets a 400 and never
//! reaches the relay; one that passes carries what the cache needs to know about it.

use serde_json::{Map, Value};

use crate::endpoint::Endpoint;
use crate::error::ApiError;

/// A validated body of a cacheable route.
#[derive(Debug)]
pub struct CacheableRequest {
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`: a replayed stream ends with a usage chunk.
    pub include_usage: bool,
}

/// Model names are short (the longest public ones are under 100 bytes); a longer one is
/// refused before it reaches logs, analytics rows or the relay.
pub const MAX_MODEL_BYTES: usize = 256;

fn missing(field: &'static str, what: &str) -> ApiError {
    ApiError::InvalidRequest {
        message: format!("'{field}' is required and must be {what}"),
        param: Some(field),
        code: "missing_or_invalid_field",
    }
}

impl CacheableRequest {
    pub fn parse(endpoint: Endpoint, raw: &[u8]) -> Result<Self, ApiError> {
        // Duplicate keys are refused: the relay may read another value than the key did.
        let value: Value =
            crate::strict_json::from_slice(raw).map_err(|e| ApiError::InvalidRequest {
                message: format!("request body is not valid JSON: {e}"),
                param: None,
                code: "invalid_json",
            })?;
        let Value::Object(body) = value else {
            return Err(ApiError::InvalidRequest {
                message: "request body must be a JSON object".into(),
                param: None,
                code: "invalid_json",
            });
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() && m.len() <= MAX_MODEL_BYTES => m.clone(),
            _ => {
                return Err(missing("model", "a non-empty string of at most 256 bytes"));
            }
        };
        match endpoint {
            Endpoint::ChatCompletions => validate_messages(body.get("messages"))?,
            Endpoint::Completions => {
                if !is_text_or_tokens(body.get("prompt")) {
                    return Err(missing(
                        "prompt",
                        "a string, an array of strings or an array of token ids",
                    ));
                }
            }
            Endpoint::Responses => match body.get("input") {
                Some(Value::String(_)) => {}
                Some(Value::Array(items)) if !items.is_empty() => {}
                _ => {
                    return Err(missing(
                        "input",
                        "a string or a non-empty array of input items",
                    ));
                }
            },
            Endpoint::Embeddings => {
                if !is_text_or_tokens(body.get("input")) {
                    return Err(missing(
                        "input",
                        "a string, an array of strings or an array of token ids",
                    ));
                }
            }
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(missing("stream", "a boolean")),
        };
        if stream && !endpoint.supports_stream() {
            return Err(ApiError::invalid(
                "'stream' is not supported on /v1/embeddings",
                Some("stream"),
            ));
        }
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            body,
            model,
            stream,
            include_usage,
        })
    }
}

fn validate_messages(messages: Option<&Value>) -> Result<(), ApiError> {
    let Some(Value::Array(messages)) = messages else {
        return Err(missing("messages", "a non-empty array of messages"));
    };
    if messages.is_empty() {
        return Err(missing("messages", "a non-empty array of messages"));
    }
    for (i, message) in messages.iter().enumerate() {
        let ok = message
            .get("role")
            .is_some_and(|r| r.as_str().is_some_and(|s| !s.is_empty()));
        if !ok {
            return Err(ApiError::InvalidRequest {
                message: format!("messages[{i}] must be an object with a string 'role'"),
                param: Some("messages"),
                code: "missing_or_invalid_field",
            });
        }
        match message.get("content") {
            None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
            Some(_) => {
                return Err(ApiError::InvalidRequest {
                    message: format!(
                        "messages[{i}].content must be a string, an array of parts or null"
                    ),
                    param: Some("messages"),
                    code: "missing_or_invalid_field",
                });
            }
        }
    }
    Ok(())
}

fn is_text_or_tokens(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(_)) => true,
        Some(Value::Array(items)) => {
            !items.is_empty()
                && items.iter().all(|i| match i {
                    Value::String(_) | Value::Number(_) => true,
                    Value::Array(inner) => inner.iter().all(Value::is_number),
                    _ => false,
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(endpoint: Endpoint, raw: &str) -> Option<&'static str> {
        match CacheableRequest::parse(endpoint, raw.as_bytes()) {
            Ok(_) => None,
            Err(ApiError::InvalidRequest { code, .. }) => Some(code),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_what_the_relay_would_reject() {
        use Endpoint::*;
        assert_eq!(code(ChatCompletions, "{"), Some("invalid_json"));
        assert_eq!(code(ChatCompletions, "[1]"), Some("invalid_json"));
        assert_eq!(
            code(
                ChatCompletions,
                r#"{"model":"a","model":"b","messages":[{"role":"user","content":"x"}]}"#
            ),
            Some("invalid_json"),
            "a duplicate key is refused"
        );
        assert_eq!(
            code(
                ChatCompletions,
                r#"{"messages":[{"role":"user","content":"hi"}]}"#
            ),
            Some("missing_or_invalid_field")
        );
        assert_eq!(
            code(ChatCompletions, r#"{"model":3,"messages":[]}"#),
            Some("missing_or_invalid_field")
        );
        assert_eq!(
            code(ChatCompletions, r#"{"model":"m","messages":"hi"}"#),
            Some("missing_or_invalid_field")
        );
        assert_eq!(
            code(
                ChatCompletions,
                r#"{"model":"m","messages":[{"content":"x"}]}"#
            ),
            Some("missing_or_invalid_field")
        );
        assert_eq!(
            code(
                ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#
            ),
            Some("missing_or_invalid_field")
        );
        let long_model = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"x"}}]}}"#,
            "m".repeat(MAX_MODEL_BYTES + 1)
        );
        assert_eq!(
            code(ChatCompletions, &long_model),
            Some("missing_or_invalid_field"),
            "an overlong model name"
        );
        assert_eq!(
            code(Completions, r#"{"model":"m"}"#),
            Some("missing_or_invalid_field")
        );
        assert_eq!(
            code(Embeddings, r#"{"model":"m","input":{}}"#),
            Some("missing_or_invalid_field")
        );
        assert_eq!(
            code(Embeddings, r#"{"model":"m","input":"x","stream":true}"#),
            Some("invalid_request")
        );
    }

    #[test]
    fn accepts_the_official_shapes() {
        use Endpoint::*;
        assert_eq!(
            code(
                ChatCompletions,
                r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":null,"tool_calls":[]}],"stream":true,"stream_options":{"include_usage":true}}"#
            ),
            None
        );
        assert_eq!(
            code(Completions, r#"{"model":"m","prompt":["a","b"]}"#),
            None
        );
        assert_eq!(code(Completions, r#"{"model":"m","prompt":[1,2,3]}"#), None);
        assert_eq!(
            code(Embeddings, r#"{"model":"m","input":[[1,2],[3]]}"#),
            None
        );
        let r = CacheableRequest::parse(
            ChatCompletions,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(r.stream && r.include_usage);
        assert_eq!(r.model, "m");
    }
}
