//! A cached answer: the relay's complete 200 answer as JSON (`chat.completion`,
//! `text_completion` or an embeddings list), whichever way it first arrived. A plain
//! request is served these bytes; a streamed request gets an SSE replay rendered from
//! them once and kept. Usage figures ride along for analytics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::HeaderValue;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::endpoint::Endpoint;
use crate::keying::CacheKey;

pub use crate::usage::Usage;

#[derive(Debug)]
pub struct CachedAnswer {
    pub endpoint: Endpoint,
    /// Namespace the entry belongs to (purge by namespace matches on it).
    pub namespace: Arc<str>,
    pub model: Arc<str>,
    /// The answer as JSON, exactly as served to plain requests.
    pub body: Bytes,
    pub usage: Usage,
    /// Unix milliseconds after which the entry must not be served.
    pub expires_at_ms: u64,
    sse: OnceLock<Bytes>,
    sse_with_usage: OnceLock<Bytes>,
    /// The `x-cache-key` value of the key this entry was served under, kept from its
    /// second hit: every hit
    /// sends it, and hex-encoding, validating and allocating it each time was ~500
    /// instructions of a ~20,000-instruction hit (callgrind, bench/RESULTS.md).
    key_header: OnceLock<(CacheKey, HeaderValue)>,
    /// Served once already: the value is kept from the second time on, so an entry
    /// restored from Redis or SQLite for one request does not pay for keeping it.
    served: AtomicBool,
}

/// What the gateway acts on in a complete relay answer.
#[derive(Debug, PartialEq)]
pub struct AnswerFacts {
    pub model: Arc<str>,
    pub usage: Usage,
    /// The relay reported its token counts (else the gateway estimates them).
    pub usage_reported: bool,
    /// Whether the answer may be stored (SPEC "Cache key").
    pub storable: Result<(), NotCacheable>,
}

impl AnswerFacts {
    /// The facts of an answer parsed whole.
    pub fn of(endpoint: Endpoint, value: &Value) -> Self {
        let model = value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Self {
            model: Arc::from(model),
            usage: Usage::from_json(value.get("usage")),
            usage_reported: crate::usage::reported(value),
            storable: CachedAnswer::storable(endpoint, value),
        }
    }
}

/// Why a relay answer cannot be cached (it is still passed to the client as sent).
#[derive(Debug, PartialEq, Eq)]
pub struct NotCacheable(pub &'static str);

impl CachedAnswer {
    /// An entry of an answer parsed whole (tests, benches).
    #[cfg(any(test, feature = "testing"))]
    pub fn new(
        endpoint: Endpoint,
        namespace: Arc<str>,
        body: Bytes,
        value: &Value,
        expires_at_ms: u64,
    ) -> Self {
        Self::from_facts(
            endpoint,
            namespace,
            body,
            &AnswerFacts::of(endpoint, value),
            expires_at_ms,
        )
    }

    /// An entry of an answer whose facts were read (see [`CachedAnswer::read`]).
    pub fn from_facts(
        endpoint: Endpoint,
        namespace: Arc<str>,
        body: Bytes,
        facts: &AnswerFacts,
        expires_at_ms: u64,
    ) -> Self {
        Self {
            endpoint,
            namespace,
            model: facts.model.clone(),
            usage: facts.usage,
            expires_at_ms,
            // Exact size: the body arrives as a view into a larger buffer (read buffers,
            // a grown BytesMut), which must not stay alive as long as the entry.
            body: Bytes::copy_from_slice(&body),
            sse: OnceLock::new(),
            sse_with_usage: OnceLock::new(),
            key_header: OnceLock::new(),
            served: AtomicBool::new(false),
        }
    }

    /// Rebuilds an entry read from a shared tier (its expiry travels with it).
    pub fn restore(
        endpoint: Endpoint,
        namespace: Arc<str>,
        model: Arc<str>,
        body: Bytes,
        usage: Usage,
        expires_at_ms: u64,
    ) -> Self {
        Self {
            endpoint,
            namespace,
            model,
            body,
            usage,
            expires_at_ms,
            sse: OnceLock::new(),
            sse_with_usage: OnceLock::new(),
            key_header: OnceLock::new(),
            served: AtomicBool::new(false),
        }
    }

    /// Checks a plain 200 body as [`CachedAnswer::validate`] does and reads its facts.
    /// Chat, completion and embeddings answers are read without building a `Value` of
    /// them ([`super::outline`]); a Responses API answer is parsed whole.
    pub fn read(endpoint: Endpoint, body: &[u8]) -> Result<AnswerFacts, NotCacheable> {
        let outline = match endpoint {
            Endpoint::Responses => {
                let value = Self::validate(endpoint, body)?;
                return Ok(AnswerFacts::of(endpoint, &value));
            }
            _ => super::outline::read(body).map_err(|_| NotCacheable("body is not JSON"))?,
        };
        if outline.error {
            return Err(NotCacheable("body carries an error"));
        }
        let results = match endpoint {
            Endpoint::Embeddings => outline.data,
            _ => outline.choices.as_ref().map(Vec::len),
        };
        let Some(results) = results else {
            return Err(NotCacheable("body has no result list"));
        };
        let finished = outline.choices.iter().flatten().all(|&f| f);
        let storable = if results == 0 {
            Err(NotCacheable("no result in the answer"))
        } else if endpoint == Endpoint::Embeddings || finished {
            Ok(())
        } else {
            Err(NotCacheable(
                "a choice did not finish with stop or tool_calls",
            ))
        };
        let count = |name: &str| outline.usage.as_ref().and_then(|u| u.count(name));
        Ok(AnswerFacts {
            model: Arc::from(outline.model.as_deref().unwrap_or_default()),
            usage: Usage::from_counts(count),
            usage_reported: Usage::counts_reported(count),
            storable,
        })
    }

    /// Checks that a plain 200 body is a complete answer for `endpoint`.
    pub fn validate(endpoint: Endpoint, body: &[u8]) -> Result<Value, NotCacheable> {
        let value: Value =
            serde_json::from_slice(body).map_err(|_| NotCacheable("body is not JSON"))?;
        let list = match endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions => "choices",
            Endpoint::Embeddings => "data",
            Endpoint::Responses => {
                super::responses::validate(&value)?;
                return Ok(value);
            }
        };
        if value.get("error").is_some_and(|e| !e.is_null()) {
            return Err(NotCacheable("body carries an error"));
        }
        if !value.get(list).is_some_and(Value::is_array) {
            return Err(NotCacheable("body has no result list"));
        }
        Ok(value)
    }

    /// Whether a complete answer may be stored (SPEC "Cache key"): at least one result,
    /// and every choice finished by the model itself (`stop` or `tool_calls`). An answer
    /// cut by `length` or `content_filter`, or with no choices, is passed to its client
    /// but never replayed to others for a whole TTL.
    pub fn storable(endpoint: Endpoint, value: &Value) -> Result<(), NotCacheable> {
        let list = match endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions => "choices",
            Endpoint::Embeddings => "data",
            Endpoint::Responses => return super::responses::storable(value),
        };
        let items = value
            .get(list)
            .and_then(Value::as_array)
            .filter(|items| !items.is_empty())
            .ok_or(NotCacheable("no result in the answer"))?;
        if endpoint == Endpoint::Embeddings {
            return Ok(());
        }
        let finished = items.iter().all(|choice| {
            matches!(
                choice.get("finish_reason").and_then(Value::as_str),
                Some("stop" | "tool_calls")
            )
        });
        if finished {
            Ok(())
        } else {
            Err(NotCacheable(
                "a choice did not finish with stop or tool_calls",
            ))
        }
    }

    /// Time left at `now_ms` (a [`crate::clock::Clock`] reading).
    pub fn remaining_ttl(&self, now_ms: u64) -> Duration {
        Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms))
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// Bytes this entry costs in memory, for the L1 byte budget. Counts the body, one
    /// SSE rendering (about the body's size again) and fixed overhead (the entry itself,
    /// its `x-cache-key` value once served).
    pub fn weight(&self) -> u32 {
        let bytes = self.body.len() * 2 + self.model.len() + self.namespace.len() + 384;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// The `x-cache-key` header value for `key`, made once per entry. Another key (an
    /// answer served by meaning, under the asking request's key) gets its own, not kept.
    pub fn key_header(&self, key: CacheKey) -> HeaderValue {
        if self.key_header.get().is_none() && !self.served.swap(true, Ordering::Relaxed) {
            return key.header_value();
        }
        let (first, value) = self.key_header.get_or_init(|| (key, key.header_value()));
        if *first == key {
            value.clone()
        } else {
            key.header_value()
        }
    }

    /// The answer replayed as an SSE stream (rendered on first use, then shared).
    pub fn sse(&self, include_usage: bool) -> Bytes {
        let cell = if include_usage {
            &self.sse_with_usage
        } else {
            &self.sse
        };
        cell.get_or_init(|| render_sse(self.endpoint, &self.body, include_usage))
            .clone()
    }
}

fn render_sse(endpoint: Endpoint, body: &[u8], include_usage: bool) -> Bytes {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return Bytes::from_static(b"data: [DONE]\n\n");
    };
    let events = match endpoint {
        Endpoint::ChatCompletions => chat_events(&answer, include_usage),
        Endpoint::Completions => completion_events(&answer, include_usage),
        Endpoint::Embeddings => Vec::new(),
        // Named events, no `[DONE]`: the Responses API's own framing.
        Endpoint::Responses => return Bytes::from(super::responses::render_sse(&answer)),
    };
    let mut out = Vec::with_capacity(body.len() * 2);
    for event in events {
        out.extend_from_slice(b"data: ");
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &event);
        out.extend_from_slice(b"\n\n");
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Bytes::from(out)
}

/// Answer-level fields that every stream chunk repeats: what the recorder keeps from a
/// stream and what a replay puts back in each chunk.
pub(super) const HEAD_FIELDS: [&str; 5] = [
    "id",
    "created",
    "model",
    "system_fingerprint",
    "service_tier",
];

/// The fields every chunk repeats: id, created, model and friends.
fn chunk_head(answer: &Map<String, Value>, object: &str) -> Map<String, Value> {
    let mut head = Map::new();
    for key in HEAD_FIELDS {
        if let Some(v) = answer.get(key) {
            head.insert(key.to_owned(), v.clone());
        }
    }
    head.insert("object".into(), json!(object));
    head
}

fn chunk(head: &Map<String, Value>, choices: Value, include_usage: bool) -> Value {
    let mut c = head.clone();
    c.insert("choices".into(), choices);
    if include_usage {
        c.insert("usage".into(), Value::Null);
    }
    Value::Object(c)
}

fn usage_chunk(head: &Map<String, Value>, answer: &Map<String, Value>) -> Option<Value> {
    let usage = answer.get("usage").filter(|u| !u.is_null())?;
    let mut c = head.clone();
    c.insert("choices".into(), json!([]));
    c.insert("usage".into(), usage.clone());
    Some(Value::Object(c))
}

fn chat_events(answer: &Map<String, Value>, include_usage: bool) -> Vec<Value> {
    let head = chunk_head(answer, "chat.completion.chunk");
    let mut events = Vec::new();
    let empty = Vec::new();
    let choices = answer
        .get("choices")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for choice in choices {
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let message = choice.get("message").cloned().unwrap_or(json!({}));
        let delta = |d: Value| json!([{"index": index, "delta": d, "logprobs": null, "finish_reason": null}]);
        let role = message.get("role").cloned().unwrap_or(json!("assistant"));
        events.push(chunk(
            &head,
            delta(json!({"role": role, "content": ""})),
            include_usage,
        ));
        for field in ["reasoning_content", "content", "refusal"] {
            if let Some(text) = message
                .get(field)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                events.push(chunk(&head, delta(json!({field: text})), include_usage));
            }
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    let mut call = call.clone();
                    if let Value::Object(fields) = &mut call {
                        fields.insert("index".into(), json!(i));
                    }
                    call
                })
                .collect();
            if !calls.is_empty() {
                events.push(chunk(
                    &head,
                    delta(json!({"tool_calls": calls})),
                    include_usage,
                ));
            }
        }
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        let logprobs = choice.get("logprobs").cloned().unwrap_or(Value::Null);
        events.push(chunk(
            &head,
            json!([{"index": index, "delta": {}, "logprobs": logprobs, "finish_reason": finish}]),
            include_usage,
        ));
    }
    if include_usage {
        events.extend(usage_chunk(&head, answer));
    }
    events
}

fn completion_events(answer: &Map<String, Value>, include_usage: bool) -> Vec<Value> {
    let head = chunk_head(answer, "text_completion");
    let mut events = Vec::new();
    let empty = Vec::new();
    for choice in answer
        .get("choices")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let text = choice.get("text").cloned().unwrap_or(json!(""));
        events.push(chunk(
            &head,
            json!([{"index": index, "text": text, "logprobs": null, "finish_reason": null}]),
            include_usage,
        ));
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        events.push(chunk(
            &head,
            json!([{"index": index, "text": "", "logprobs": null, "finish_reason": finish}]),
            include_usage,
        ));
    }
    if include_usage {
        events.extend(usage_chunk(&head, answer));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_header_is_the_asked_keys_whichever_key_came_first() {
        let body = Bytes::from_static(br#"{"model":"m","choices":[]}"#);
        let value: Value = serde_json::from_slice(&body).unwrap();
        let answer = CachedAnswer::new(Endpoint::ChatCompletions, Arc::from("ns"), body, &value, 1);
        let (a, b) = (CacheKey([0xab; 32]), CacheKey([0x01; 32]));
        assert_eq!(answer.key_header(a), "ab".repeat(32).as_str());
        assert!(
            answer.key_header.get().is_none(),
            "served once: nothing kept"
        );
        assert_eq!(answer.key_header(a), "ab".repeat(32).as_str());
        assert!(
            answer.key_header.get().is_some(),
            "kept from the second time"
        );
        // Served by meaning under another request's key: that key, never the first one's.
        assert_eq!(answer.key_header(b), "01".repeat(32).as_str());
        assert_eq!(answer.key_header(a), "ab".repeat(32).as_str());
    }

    #[test]
    fn only_complete_answers_are_storable() {
        use Endpoint::*;
        let ok = |e, v: Value| CachedAnswer::storable(e, &v).is_ok();
        assert!(ok(
            ChatCompletions,
            json!({"choices": [{"finish_reason": "stop"}]})
        ));
        assert!(ok(
            ChatCompletions,
            json!({"choices": [{"finish_reason": "tool_calls"}, {"finish_reason": "stop"}]})
        ));
        assert!(!ok(ChatCompletions, json!({"choices": []})));
        assert!(!ok(
            ChatCompletions,
            json!({"choices": [{"finish_reason": "length"}]})
        ));
        assert!(!ok(
            ChatCompletions,
            json!({"choices": [{"finish_reason": "stop"}, {"finish_reason": "content_filter"}]})
        ));
        assert!(!ok(
            ChatCompletions,
            json!({"choices": [{"finish_reason": null}]})
        ));
        assert!(ok(
            Completions,
            json!({"choices": [{"finish_reason": "stop"}]})
        ));
        assert!(ok(Embeddings, json!({"data": [{"embedding": [0.1]}]})));
        assert!(!ok(Embeddings, json!({"data": []})));
    }
}
