//! The gateway asks the relay for usage on every streamed miss (`stream_options.
//! include_usage`), because the official SDKs do not ask by default and a stream without
//! usage would be recorded as $0 spent and every later hit of it as $0 saved. A client
//! that did not ask gets the stream it would have got: the final usage chunk (`choices:
//! []`) is dropped and the `"usage": null` that every chunk then carries is removed.
//! Events that mention no usage pass byte for byte; the rest are re-serialized.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

#[derive(Default)]
pub struct UsageStrip {
    pending: BytesMut,
}

impl UsageStrip {
    /// The bytes to forward for `chunk`; an event cut by the chunk boundary waits for
    /// the rest of it.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::with_capacity(self.pending.len());
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end);
            strip_event(&event, &mut out);
        }
        out.freeze()
    }

    /// Whatever is left at the end of the stream (an unterminated event), as it is.
    pub fn finish(self) -> Bytes {
        self.pending.freeze()
    }
}

/// End (separator included) of the first complete event in `buf`.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn strip_event(event: &[u8], out: &mut BytesMut) {
    let passthrough = |out: &mut BytesMut| out.extend_from_slice(event);
    if !event.windows(7).any(|w| w == b"\"usage\"") {
        return passthrough(out);
    }
    let Ok(text) = std::str::from_utf8(event) else {
        return passthrough(out);
    };
    let trimmed = text.trim_end_matches(['\r', '\n']);
    // One `data:` line is what OpenAI-compatible relays send; anything else passes.
    let Some(data) = trimmed.strip_prefix("data:").filter(|d| !d.contains('\n')) else {
        return passthrough(out);
    };
    let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data.trim_start()) else {
        return passthrough(out);
    };
    if !chunk.contains_key("usage") {
        return passthrough(out);
    }
    let usage_only = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && chunk.get("usage").is_some_and(|u| !u.is_null());
    if usage_only {
        return;
    }
    chunk.remove("usage");
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(&chunk).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_USAGE: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"index\":0}],\"id\":\"c\",\"usage\":null}\n\n",
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"id\":\"c\",\"usage\":null}\n\n",
        "data: {\"choices\":[],\"id\":\"c\",\"usage\":{\"completion_tokens\":1,\"prompt_tokens\":2}}\n\n",
        "data: [DONE]\n\n",
    );
    const WITHOUT_USAGE: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"index\":0}],\"id\":\"c\"}\n\n",
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"id\":\"c\"}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn the_stream_is_what_a_client_that_did_not_ask_would_get_at_any_boundary() {
        for size in [1, 2, 5, 17, 4096] {
            let mut strip = UsageStrip::default();
            let mut out = Vec::new();
            for piece in WITH_USAGE.as_bytes().chunks(size) {
                out.extend_from_slice(&strip.feed(piece));
            }
            out.extend_from_slice(&strip.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                WITHOUT_USAGE,
                "size {size}"
            );
        }
    }

    #[test]
    fn events_without_usage_pass_byte_for_byte() {
        let mut strip = UsageStrip::default();
        let odd =
            "data:{\"choices\":[{\"delta\":{\"content\":\"usage\"}}],\"z\":1, \"a\":2}\r\n\r\n";
        assert_eq!(strip.feed(odd.as_bytes()), odd.as_bytes());
        assert_eq!(strip.feed(b"data: [DONE]\n\n"), &b"data: [DONE]\n\n"[..]);
    }
}
