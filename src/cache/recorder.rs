//! Records a streamed relay answer while it is forwarded: parses the SSE events as they
//! pass (any chunk boundaries), merges the deltas, and once `[DONE]` has passed yields
//! the equivalent complete JSON answer. Anything malformed poisons the recording, so a
//! broken stream is never stored.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::endpoint::Endpoint;

/// The largest stream the recorder keeps; longer answers are forwarded but not cached.
const MAX_RECORDED_BYTES: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct ToolCall {
    id: Option<Value>,
    kind: Option<Value>,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct Choice {
    role: Option<Value>,
    content: Option<String>,
    reasoning: Option<String>,
    refusal: Option<String>,
    /// Legacy completions: the text.
    text: String,
    tool_calls: BTreeMap<u64, ToolCall>,
    finish_reason: Value,
    logprobs: Vec<Value>,
}

pub struct StreamRecorder {
    endpoint: Endpoint,
    pending: Vec<u8>,
    seen_bytes: usize,
    head: Map<String, Value>,
    choices: BTreeMap<u64, Choice>,
    usage: Option<Value>,
    done: bool,
    poisoned: bool,
    /// The Responses API: named events, the answer in `response.completed`.
    responses: super::responses::ResponsesRecording,
}

fn append(slot: &mut Option<String>, piece: &str) {
    slot.get_or_insert_with(String::new).push_str(piece);
}

impl StreamRecorder {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            pending: Vec::new(),
            seen_bytes: 0,
            head: Map::new(),
            choices: BTreeMap::new(),
            usage: None,
            done: false,
            poisoned: false,
            responses: Default::default(),
        }
    }

    /// Feeds the next bytes exactly as the relay sent them.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.poisoned {
            return;
        }
        self.seen_bytes += bytes.len();
        if self.seen_bytes > MAX_RECORDED_BYTES {
            self.poisoned = true;
            return;
        }
        self.pending.extend_from_slice(bytes);
        while let Some((end, sep)) = find_event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end + sep).collect();
            self.event(&event[..end]);
            if self.poisoned {
                return;
            }
        }
    }

    fn event(&mut self, raw: &[u8]) {
        let Ok(text) = std::str::from_utf8(raw) else {
            self.poisoned = true;
            return;
        };
        let mut data = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            } else if line.starts_with("event:")
                && line.trim_end() != "event: message"
                && self.endpoint != Endpoint::Responses
            {
                // Named events (errors, vendor extras) are not part of an answer.
                self.poisoned = true;
                return;
            }
        }
        if data.is_empty() {
            return; // comments and keep-alives
        }
        if self.done {
            self.poisoned = true; // data after [DONE]
            return;
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return;
        }
        if self.endpoint == Endpoint::Responses {
            match serde_json::from_str::<Value>(&data) {
                Ok(event) if self.responses.event(&event).is_ok() => {}
                _ => self.poisoned = true,
            }
            return;
        }
        match serde_json::from_str::<Value>(&data) {
            Ok(Value::Object(chunk)) if chunk.get("error").is_none_or(Value::is_null) => {
                self.chunk(chunk)
            }
            _ => self.poisoned = true,
        }
    }

    fn chunk(&mut self, chunk: Map<String, Value>) {
        for key in super::answer::HEAD_FIELDS {
            if let Some(v) = chunk.get(key).filter(|v| !v.is_null()) {
                self.head.entry(key).or_insert_with(|| v.clone());
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        for c in choices {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let choice = self.choices.entry(index).or_default();
            if let Some(reason) = c.get("finish_reason").filter(|r| !r.is_null()) {
                choice.finish_reason = reason.clone();
            }
            if let Some(content) = c.pointer("/logprobs/content").and_then(Value::as_array) {
                choice.logprobs.extend(content.iter().cloned());
            }
            if let Some(text) = c.get("text").and_then(Value::as_str) {
                choice.text.push_str(text);
            }
            let Some(delta) = c.get("delta") else {
                continue;
            };
            if let Some(role) = delta.get("role").filter(|r| !r.is_null()) {
                choice.role = Some(role.clone());
            }
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                append(&mut choice.content, t);
            }
            if let Some(t) = delta.get("reasoning_content").and_then(Value::as_str) {
                append(&mut choice.reasoning, t);
            }
            if let Some(t) = delta.get("refusal").and_then(Value::as_str) {
                append(&mut choice.refusal, t);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let i = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let slot = choice.tool_calls.entry(i).or_default();
                if let Some(id) = call.get("id").filter(|v| !v.is_null()) {
                    slot.id = Some(id.clone());
                }
                if let Some(kind) = call.get("type").filter(|v| !v.is_null()) {
                    slot.kind = Some(kind.clone());
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    slot.name.push_str(name);
                }
                if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    slot.arguments.push_str(args);
                }
            }
        }
    }

    /// The complete answer, or `None` when the stream did not end cleanly with `[DONE]`.
    pub fn finish(self) -> Option<Value> {
        if self.endpoint == Endpoint::Responses {
            let clean = !self.poisoned && self.pending.iter().all(u8::is_ascii_whitespace);
            return self.responses.completed.filter(|_| clean);
        }
        if self.poisoned || !self.done || !self.pending.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let mut answer = self.head;
        let choices: Vec<Value> = match self.endpoint {
            Endpoint::ChatCompletions => {
                answer.insert("object".into(), json!("chat.completion"));
                self.choices.into_iter().map(chat_choice).collect()
            }
            Endpoint::Completions => {
                answer.insert("object".into(), json!("text_completion"));
                self.choices
                    .into_iter()
                    .map(|(index, c)| {
                        json!({"index": index, "text": c.text, "logprobs": null,
                               "finish_reason": c.finish_reason})
                    })
                    .collect()
            }
            Endpoint::Embeddings | Endpoint::Responses => return None,
        };
        answer.insert("choices".into(), Value::Array(choices));
        if let Some(usage) = self.usage {
            answer.insert("usage".into(), usage);
        }
        Some(Value::Object(answer))
    }
}

fn chat_choice((index, c): (u64, Choice)) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), c.role.unwrap_or(json!("assistant")));
    let has_tools = !c.tool_calls.is_empty();
    message.insert(
        "content".into(),
        match c.content {
            Some(t) if !(t.is_empty() && has_tools) => json!(t),
            Some(_) | None => Value::Null,
        },
    );
    if let Some(r) = c.reasoning {
        message.insert("reasoning_content".into(), json!(r));
    }
    message.insert(
        "refusal".into(),
        c.refusal.map_or(Value::Null, |r| json!(r)),
    );
    if has_tools {
        let calls: Vec<Value> = c
            .tool_calls
            .into_values()
            .map(|t| {
                json!({"id": t.id.unwrap_or(Value::Null),
                       "type": t.kind.unwrap_or(json!("function")),
                       "function": {"name": t.name, "arguments": t.arguments}})
            })
            .collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let logprobs = if c.logprobs.is_empty() {
        Value::Null
    } else {
        json!({"content": c.logprobs})
    };
    json!({"index": index, "message": message, "logprobs": logprobs,
           "finish_reason": c.finish_reason})
}

/// Position and length of the first event separator (a blank line).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        match (buf[i], buf[i + 1]) {
            (b'\n', b'\n') => return Some((i, 2)),
            (b'\r', b'\n') if buf[i + 2..].starts_with(b"\r\n") => return Some((i, 4)),
            (b'\r', b'\r') => return Some((i, 2)),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"think \"}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n",
        "data: [DONE]\n\n",
    );

    fn record(chunks: &[&[u8]]) -> Option<Value> {
        let mut r = StreamRecorder::new(Endpoint::ChatCompletions);
        for c in chunks {
            r.feed(c);
        }
        r.finish()
    }

    #[test]
    fn merges_deltas_into_a_complete_answer_at_any_chunk_boundary() {
        let whole = record(&[STREAM.as_bytes()]).expect("complete");
        assert_eq!(whole["object"], "chat.completion");
        assert_eq!(whole["id"], "c1");
        assert_eq!(whole["model"], "m");
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["content"], "Hello");
        assert_eq!(message["reasoning_content"], "think ");
        assert_eq!(message["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            message["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(whole["usage"]["completion_tokens"], 4);
        for size in [1, 2, 3, 7, 64] {
            let pieces: Vec<&[u8]> = STREAM.as_bytes().chunks(size).collect();
            assert_eq!(record(&pieces).as_ref(), Some(&whole), "chunk size {size}");
        }
    }

    #[test]
    fn broken_streams_are_not_recorded() {
        let cut = &STREAM[..STREAM.len() - "data: [DONE]\n\n".len()];
        assert_eq!(record(&[cut.as_bytes()]), None, "no [DONE]");
        let garbage = STREAM.replace("\"content\":\"lo\"", "\"content\":lo");
        assert_eq!(record(&[garbage.as_bytes()]), None, "bad JSON");
        let error = format!("data: {{\"error\":{{\"message\":\"x\"}}}}\n\n{STREAM}");
        assert_eq!(record(&[error.as_bytes()]), None, "error event");
        let trailing = format!("{STREAM}data: {{\"id\":\"x\"}}\n\n");
        assert_eq!(record(&[trailing.as_bytes()]), None, "data after [DONE]");
    }

    #[test]
    fn legacy_completions_concatenate_text() {
        let mut r = StreamRecorder::new(Endpoint::Completions);
        r.feed(b"data: {\"id\":\"x\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\"Hi \",\"finish_reason\":null}]}\n\n");
        r.feed(b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"text\":\"there\",\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        let answer = r.finish().unwrap();
        assert_eq!(answer["object"], "text_completion");
        assert_eq!(answer["choices"][0]["text"], "Hi there");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    }
}
