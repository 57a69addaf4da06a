//! The response cache seen from outside: keys, replays, single flight.
mod flights;
mod keys;
mod replay;

use futures_util::StreamExt;
use serde_json::{Value, json};

use edge_gateway::testing::keying::CacheKey;
use relay_stub::Behavior;

use crate::helpers::*;

/// Parses an SSE body into its JSON events; asserts it ends with `[DONE]`.
pub(super) fn sse_events(text: &str) -> Vec<Value> {
    assert!(text.ends_with("data: [DONE]\n\n"), "no [DONE]: {text}");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event is JSON"))
        .collect()
}

/// The text a chat stream's events carry, joined.
pub(super) fn streamed_text(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}
