//! The compact binary form of a cached answer in Redis. A fixed header (magic and
//! format version, endpoint, flags, expiry, usage), then model, namespace and body;
//! bodies of `COMPRESS_ABOVE` bytes or more are LZ4-compressed when that saves at least
//! an eighth. A value that does not decode is treated as a miss, never served.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::answer::{CachedAnswer, Usage};
use crate::endpoint::Endpoint;

const MAGIC: &[u8; 3] = b"EG1";
const FLAG_LZ4: u8 = 1;
/// Bodies below this size are stored as they are (compression would cost more than it saves).
pub const COMPRESS_ABOVE: usize = 1024;

fn endpoint_code(e: Endpoint) -> u8 {
    match e {
        Endpoint::ChatCompletions => 1,
        Endpoint::Completions => 2,
        Endpoint::Embeddings => 3,
    }
}

fn endpoint_of(code: u8) -> Option<Endpoint> {
    Some(match code {
        1 => Endpoint::ChatCompletions,
        2 => Endpoint::Completions,
        3 => Endpoint::Embeddings,
        _ => return None,
    })
}

pub fn encode(answer: &CachedAnswer) -> Vec<u8> {
    let compressed = (answer.body.len() >= COMPRESS_ABOVE)
        .then(|| lz4_flex::compress_prepend_size(&answer.body))
        .filter(|c| c.len() <= answer.body.len() - answer.body.len() / 8);
    let (flags, body): (u8, &[u8]) = match &compressed {
        Some(c) => (FLAG_LZ4, c),
        None => (0, &answer.body),
    };
    let model = truncated(&answer.model);
    let namespace = truncated(&answer.namespace);
    let mut out = BytesMut::with_capacity(40 + model.len() + namespace.len() + body.len());
    out.put_slice(MAGIC);
    out.put_u8(endpoint_code(answer.endpoint));
    out.put_u8(flags);
    out.put_u64_le(answer.expires_at_ms);
    out.put_u64_le(answer.usage.prompt_tokens);
    out.put_u64_le(answer.usage.completion_tokens);
    out.put_u16_le(model.len() as u16);
    out.put_slice(model);
    out.put_u16_le(namespace.len() as u16);
    out.put_slice(namespace);
    out.put_slice(body);
    out.to_vec()
}

fn truncated(s: &str) -> &[u8] {
    &s.as_bytes()[..s.len().min(u16::MAX as usize)]
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<Arc<str>> {
        let len = self.u16()? as usize;
        std::str::from_utf8(self.take(len)?).ok().map(Arc::from)
    }
}

pub fn decode(bytes: &[u8]) -> Option<CachedAnswer> {
    let mut r = Reader(bytes);
    if r.take(3)? != MAGIC {
        return None;
    }
    let endpoint = endpoint_of(r.u8()?)?;
    let flags = r.u8()?;
    let expires_at_ms = r.u64()?;
    let usage = Usage {
        prompt_tokens: r.u64()?,
        completion_tokens: r.u64()?,
    };
    let model = r.text()?;
    let namespace = r.text()?;
    let body = if flags & FLAG_LZ4 != 0 {
        Bytes::from(lz4_flex::decompress_size_prepended(r.0).ok()?)
    } else {
        Bytes::copy_from_slice(r.0)
    };
    Some(CachedAnswer::restore(
        endpoint,
        namespace,
        model,
        body,
        usage,
        expires_at_ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(body: String) -> CachedAnswer {
        let value = serde_json::json!({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 12, "completion_tokens": 34}});
        CachedAnswer::new(
            Endpoint::ChatCompletions,
            Arc::from("acme/faq"),
            Bytes::from(body),
            &value,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn round_trips_small_and_large_bodies() {
        for body in [
            r#"{"choices":[]}"#.to_owned(),
            format!(
                r#"{{"choices":[{{"message":{{"content":"{}"}}}}]}}"#,
                "refund policy ".repeat(500)
            ),
        ] {
            let a = answer(body);
            let encoded = encode(&a);
            let b = decode(&encoded).expect("decodes");
            assert_eq!(b.body, a.body);
            assert_eq!(b.usage, a.usage);
            assert_eq!(b.model, a.model);
            assert_eq!(b.namespace, a.namespace);
            assert_eq!(b.expires_at_ms, a.expires_at_ms);
            assert_eq!(b.endpoint, a.endpoint);
        }
        let large = answer("x".repeat(10_000));
        assert!(encode(&large).len() < 1_000, "repetitive bodies compress");
    }

    #[test]
    fn garbage_never_decodes() {
        assert!(decode(b"").is_none());
        assert!(decode(b"EG1").is_none());
        assert!(decode(b"XX1\x01\x00").is_none());
        let mut valid = encode(&answer("y".repeat(5_000)));
        valid.truncate(valid.len() - 10);
        assert!(decode(&valid).is_none(), "truncated compressed body");
    }
}
