//! The stub's routes: chat completions (plain and SSE), legacy completions,
//! embeddings, models, and an echo of any other `/v1/*` request.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::answers::{chat_answer, completion_text, embeddings};
use super::server::{Behavior, StubState, intake, lock};

/// A JSON answer whose exact bytes are remembered for byte-exactness checks.
pub(super) fn json_answer(state: &StubState, value: &Value) -> Response {
    let bytes = value.to_string().into_bytes();
    *lock(&state.last_sent) = bytes.clone();
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) async fn chat(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let (behavior, body) = match intake(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let n = state.total.load(Ordering::SeqCst);
    let id = format!("chatcmpl-stub-{n}");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("stub")
        .to_owned();
    let answer = chat_answer(&body);
    let usage = json!({
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    });
    let finish = match &behavior.finish_reason {
        Some(reason) => reason.as_str(),
        None if answer.tool_call.is_some() => "tool_calls",
        None => "stop",
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
        let chunk = |delta: Value, finish: Option<&str>| {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": now_secs(), "model": model,
                "system_fingerprint": "fp_stub",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            c
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        if let Some(reasoning) = &answer.reasoning {
            for piece in split_pieces(reasoning) {
                events.push(chunk(json!({"reasoning_content": piece}), None));
            }
        }
        if let Some(content) = &answer.content {
            for piece in split_pieces(content) {
                events.push(chunk(json!({"content": piece}), None));
            }
        }
        if let Some((call_id, name, arguments)) = &answer.tool_call {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            for piece in split_pieces(arguments) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
        }
        if !behavior.drop_finish_chunk {
            events.push(chunk(json!({}), Some(finish)));
        }
        if behavior.empty_choices {
            events.clear();
        }
        if include_usage && !behavior.no_usage {
            events.push(json!({
                "id": id, "object": "chat.completion.chunk", "created": now_secs(), "model": model,
                "system_fingerprint": "fp_stub", "choices": [], "usage": usage,
            }));
        }
        return sse(state, behavior, events);
    }
    let mut message = json!({"role": "assistant", "content": answer.content, "refusal": null});
    if let Some(reasoning) = answer.reasoning {
        message["reasoning_content"] = json!(reasoning);
    }
    if let Some((call_id, name, arguments)) = answer.tool_call {
        message["tool_calls"] = json!([{"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}]);
    }
    let mut answer = json!({
        "id": id, "object": "chat.completion", "created": now_secs(), "model": model,
        "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage,
    });
    if behavior.empty_choices {
        answer["choices"] = json!([]);
    }
    if behavior.no_usage
        && let Value::Object(fields) = &mut answer
    {
        fields.remove("usage");
    }
    let mut response = json_answer(&state, &answer);
    if let Some(content_type) = behavior
        .content_type
        .as_deref()
        .and_then(|t| axum::http::HeaderValue::from_str(t).ok())
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

pub(super) async fn completions(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let (behavior, body) = match intake(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let n = state.total.load(Ordering::SeqCst);
    let id = format!("cmpl-stub-{n}");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("stub")
        .to_owned();
    let (text, prompt_tokens) = completion_text(&body);
    let completion_tokens = text.split_whitespace().count() as u64;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens});
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
        let chunk = |text: &str, finish: Option<&str>| {
            json!({"id": id, "object": "text_completion", "created": now_secs(), "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]})
        };
        let mut events: Vec<Value> = split_pieces(&text).iter().map(|p| chunk(p, None)).collect();
        events.push(chunk("", Some("stop")));
        if include_usage {
            events.push(
                json!({"id": id, "object": "text_completion", "created": now_secs(),
                "model": model, "choices": [], "usage": usage}),
            );
        }
        return sse(state, behavior, events);
    }
    json_answer(
        &state,
        &json!({
            "id": id, "object": "text_completion", "created": now_secs(), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        }),
    )
    .into_response()
}

pub(super) async fn embed(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let (_, body) = match intake(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or("stub");
    json_answer(&state, &embeddings(&body, model))
}

pub(super) async fn models(State(state): State<Arc<StubState>>, request: Request) -> Response {
    if let Err(r) = intake(&state, request).await {
        return r;
    }
    json_answer(
        &state,
        &json!({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "stub"},
            {"id": "text-embedding-3-small", "object": "model", "created": 0, "owned_by": "stub"},
        ]}),
    )
}

/// Any other `/v1/*` path: describes the request it received, so pass-through tests can
/// check method, path, query and body arrived intact.
pub(super) async fn echo(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    if let Err(r) = intake(&state, request).await {
        return r;
    }
    let body = lock(&state.last_body).clone().unwrap_or_default();
    json_answer(
        &state,
        &json!({
            "method": method,
            "uri": uri,
            "body": String::from_utf8_lossy(&body),
        }),
    )
}

/// Splits text into a few pieces (about two words each) for streaming.
fn split_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for (i, word) in text.split_inclusive(' ').enumerate() {
        current.push_str(word);
        if i % 2 == 1 {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn sse(state: Arc<StubState>, behavior: Behavior, events: Vec<Value>) -> Response {
    let total = events.len();
    lock(&state.last_sent).clear();
    if total == 0 {
        *lock(&state.last_sent) = b"data: [DONE]\n\n".to_vec();
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from("data: [DONE]\n\n"))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let stream =
        futures_util::stream::iter(events.into_iter().enumerate()).then(move |(i, event)| {
            let state = state.clone();
            let behavior = behavior.clone();
            async move {
                if i > 0 {
                    if behavior.gate && i == 1 {
                        state.gate.notified().await;
                    }
                    if behavior.chunk_delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(behavior.chunk_delay_ms)).await;
                    }
                }
                if behavior.break_stream_after.is_some_and(|n| i >= n) {
                    return Err(std::io::Error::other("stub broke the stream"));
                }
                let mut frame = format!("data: {event}\n\n");
                if i + 1 == total {
                    frame.push_str("data: [DONE]\n\n");
                }
                lock(&state.last_sent).extend_from_slice(frame.as_bytes());
                Ok(Bytes::from(frame))
            }
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The Responses API: a `response` object naming the input, or (`stream: true`) its
/// event sequence with named events, ending with `response.completed`. With
/// `finish_reason` set in the behavior the response is `incomplete` (cut short).
pub(super) async fn responses(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let (behavior, body) = match intake(&state, request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let n = state.total.load(Ordering::SeqCst);
    let model = body.get("model").and_then(Value::as_str).unwrap_or("stub");
    let input = match body.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let text = format!("Stub response to: {input}");
    let input_tokens = input.split_whitespace().count().max(1);
    let output_tokens = text.split_whitespace().count();
    let incomplete = behavior.finish_reason.is_some();
    let response = json!({
        "id": format!("resp_stub_{n}"), "object": "response", "created_at": now_secs(),
        "status": if incomplete { "incomplete" } else { "completed" },
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "model": model,
        "previous_response_id": body.get("previous_response_id").cloned().unwrap_or(Value::Null),
        "output": [{"type": "message", "id": format!("msg_stub_{n}"), "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "total_tokens": input_tokens + output_tokens},
    });
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_answer(&state, &response);
    }
    let mut opening = response.clone();
    opening["status"] = json!("in_progress");
    opening["output"] = json!([]);
    opening["usage"] = Value::Null;
    let item_id = format!("msg_stub_{n}");
    let mut events = vec![
        json!({"type": "response.created", "response": opening}),
        json!({"type": "response.in_progress", "response": opening}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}}),
        json!({"type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}}),
    ];
    for word in text.split_inclusive(' ') {
        events.push(
            json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                           "content_index": 0, "delta": word}),
        );
    }
    events.push(
        json!({"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
                       "content_index": 0, "text": text}),
    );
    events.push(
        json!({"type": "response.content_part.done", "item_id": item_id, "output_index": 0,
                       "content_index": 0, "part": response["output"][0]["content"][0]}),
    );
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": response["output"][0]}));
    let last = if incomplete {
        "response.incomplete"
    } else {
        "response.completed"
    };
    events.push(json!({"type": last, "response": response}));
    let frames = events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e["sequence_number"] = json!(i);
            format!(
                "event: {}\ndata: {e}\n\n",
                e["type"].as_str().unwrap_or_default()
            )
        })
        .collect::<String>();
    *lock(&state.last_sent) = frames.clone().into_bytes();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from(frames))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
