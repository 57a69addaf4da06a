//! The Responses API (`POST /v1/responses`) as a cached answer. The stored form is the
//! `response` object, whichever way it arrived: a plain answer as sent, a streamed one
//! from its `response.completed` event (which carries the whole object). A streamed
//! request is replayed the event sequence the API streams: `response.created`,
//! `response.in_progress`, per output item `response.output_item.added`, per text part
//! `response.content_part.added`, `response.output_text.delta`,
//! `response.output_text.done`, `response.content_part.done`, then
//! `response.output_item.done`, and `response.completed` with the whole object.

use serde_json::{Map, Value, json};

use super::answer::NotCacheable;

/// Checks that a plain 200 body is a `response` object.
pub(super) fn validate(value: &Value) -> Result<(), NotCacheable> {
    if value.get("error").is_some_and(|e| !e.is_null()) {
        return Err(NotCacheable("body carries an error"));
    }
    if !value.get("output").is_some_and(Value::is_array) {
        return Err(NotCacheable("body has no output list"));
    }
    Ok(())
}

/// Only a `completed` response with output is stored: `incomplete` (cut by
/// max_output_tokens or a filter), `failed`, `in_progress` (background) and `queued` are
/// passed on, never replayed.
pub(super) fn storable(value: &Value) -> Result<(), NotCacheable> {
    if value.get("status").and_then(Value::as_str) != Some("completed") {
        return Err(NotCacheable("the response is not completed"));
    }
    if value
        .get("output")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err(NotCacheable("no result in the answer"));
    }
    Ok(())
}

/// The output's text (message parts), for token estimates.
pub fn output_text(value: &Value) -> String {
    let mut text = String::new();
    for item in value
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for part in item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                text.push_str(t);
            }
        }
        for key in ["arguments", "name"] {
            if let Some(t) = item.get(key).and_then(Value::as_str) {
                text.push_str(t);
            }
        }
    }
    text
}

/// The event sequence of a stored response, as SSE (`event:` and `data:` lines).
pub(super) fn render_sse(response: &Map<String, Value>) -> Vec<u8> {
    let mut events: Vec<Value> = Vec::new();
    let mut opening = response.clone();
    opening.insert("status".into(), json!("in_progress"));
    opening.insert("output".into(), json!([]));
    opening.insert("usage".into(), Value::Null);
    events.push(json!({"type": "response.created", "response": opening.clone()}));
    events.push(json!({"type": "response.in_progress", "response": opening}));
    let empty = Vec::new();
    let output = response
        .get("output")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (index, item) in output.iter().enumerate() {
        let item_id = item.get("id").cloned().unwrap_or(Value::Null);
        let mut added = item.clone();
        if let Some(fields) = added.as_object_mut() {
            fields.insert("status".into(), json!("in_progress"));
            if fields.contains_key("content") {
                fields.insert("content".into(), json!([]));
            }
        }
        events.push(
            json!({"type": "response.output_item.added", "output_index": index, "item": added}),
        );
        let parts = item
            .get("content")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        for (part_index, part) in parts.iter().enumerate() {
            let text = part.get("text").and_then(Value::as_str);
            let mut start = part.clone();
            if let (Some(fields), Some(_)) = (start.as_object_mut(), text) {
                fields.insert("text".into(), json!(""));
            }
            let at = |kind: &str| {
                json!({"type": kind, "item_id": item_id, "output_index": index,
                       "content_index": part_index})
            };
            let mut e = at("response.content_part.added");
            e["part"] = start;
            events.push(e);
            if let Some(text) = text {
                let mut delta = at("response.output_text.delta");
                delta["delta"] = json!(text);
                events.push(delta);
                let mut done = at("response.output_text.done");
                done["text"] = json!(text);
                events.push(done);
            }
            let mut e = at("response.content_part.done");
            e["part"] = part.clone();
            events.push(e);
        }
        events.push(
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
    }
    events.push(json!({"type": "response.completed", "response": response}));
    let mut out = Vec::new();
    for (sequence, mut event) in events.into_iter().enumerate() {
        event["sequence_number"] = json!(sequence);
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &event);
        out.extend_from_slice(b"\n\n");
    }
    out
}

/// What a recorded Responses stream yields: the object of its `response.completed`.
#[derive(Default)]
pub(super) struct ResponsesRecording {
    pub(super) completed: Option<Value>,
}

impl ResponsesRecording {
    /// One SSE event's data; `Err` poisons the recording (an error event, or anything
    /// after completion).
    pub(super) fn event(&mut self, data: &Value) -> Result<(), ()> {
        if self.completed.is_some() {
            return Err(());
        }
        match data.get("type").and_then(Value::as_str) {
            Some("response.completed") => {
                self.completed = Some(data.get("response").cloned().ok_or(())?);
                Ok(())
            }
            Some("error" | "response.failed" | "response.incomplete") => Err(()),
            Some(_) => Ok(()),
            None => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> Value {
        json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
               "model": "gpt-4o-mini",
               "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": "Hello there", "annotations": []}]}],
               "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}})
    }

    #[test]
    fn a_replay_is_the_api_event_sequence_and_ends_with_the_whole_response() {
        let Value::Object(r) = response() else {
            unreachable!()
        };
        let sse = String::from_utf8(render_sse(&r)).unwrap();
        let kinds: Vec<&str> = sse
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let last = sse
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap();
        let last: Value = serde_json::from_str(last).unwrap();
        assert_eq!(last["response"], response());
        assert_eq!(last["sequence_number"], 8);
    }

    #[test]
    fn only_completed_responses_with_output_are_stored() {
        assert!(storable(&response()).is_ok());
        let mut cut = response();
        cut["status"] = json!("incomplete");
        assert!(storable(&cut).is_err());
        let mut empty = response();
        empty["output"] = json!([]);
        assert!(storable(&empty).is_err());
        assert_eq!(output_text(&response()), "Hello there");
    }

    #[test]
    fn a_recording_keeps_the_completed_object_and_refuses_failures() {
        let mut rec = ResponsesRecording::default();
        assert!(
            rec.event(&json!({"type": "response.created", "response": {}}))
                .is_ok()
        );
        assert!(
            rec.event(&json!({"type": "response.completed", "response": response()}))
                .is_ok()
        );
        assert_eq!(rec.completed, Some(response()));
        assert!(
            rec.event(&json!({"type": "response.output_text.delta"}))
                .is_err()
        );
        let mut failed = ResponsesRecording::default();
        assert!(
            failed
                .event(&json!({"type": "response.failed", "response": {}}))
                .is_err()
        );
    }
}
