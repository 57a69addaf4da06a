//! The compact binary form of a cached answer in Redis. A fixed header (magic and
//! format version, endpoint, flags, expiry, usage), then model and namespace, the body's
//! length and its stored length, the body (LZ4-compressed when that saves at least an
//! eighth, for bodies of `COMPRESS_ABOVE` bytes or more), and a CRC-32 of everything
//! before it.
//!
//! A value read back is trusted for nothing: a truncated or bit-flipped value fails the
//! checksum, every length is checked against the bytes present, and the body length is
//! bounded by the configured entry size before a byte is allocated (a crafted size
//! prefix once made the process try to allocate 4 GiB). A value that fails is a miss.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::answer::{CachedAnswer, Usage};
use crate::endpoint::Endpoint;

/// `EG2`: version 2 added the lengths and the checksum. Version 1 values (no checksum)
/// are read as misses and replaced by the next store.
const MAGIC: &[u8; 3] = b"EG2";
const FLAG_LZ4: u8 = 1;
const FLAG_USAGE_ESTIMATED: u8 = 2;
/// Bodies below this size are stored as they are (compression would cost more than it saves).
pub const COMPRESS_ABOVE: usize = 1024;
const CHECKSUM_BYTES: usize = 4;

/// Why a stored value was not served (the label of the `cache_corrupt_total` metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corrupt {
    /// Not a value of this format (another version, another program's key).
    Format,
    /// Truncated or altered: the checksum does not match.
    Checksum,
    /// A length that does not fit the bytes present or the configured limit.
    Length,
    /// The body does not decompress to its recorded length.
    Compression,
}

impl Corrupt {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Format => "format",
            Self::Checksum => "checksum",
            Self::Length => "length",
            Self::Compression => "compression",
        }
    }
}

fn endpoint_code(e: Endpoint) -> u8 {
    match e {
        Endpoint::ChatCompletions => 1,
        Endpoint::Completions => 2,
        Endpoint::Embeddings => 3,
        Endpoint::Responses => 4,
    }
}

fn endpoint_of(code: u8) -> Option<Endpoint> {
    Some(match code {
        1 => Endpoint::ChatCompletions,
        2 => Endpoint::Completions,
        3 => Endpoint::Embeddings,
        4 => Endpoint::Responses,
        _ => return None,
    })
}

pub fn encode(answer: &CachedAnswer) -> Vec<u8> {
    let compressed = (answer.body.len() >= COMPRESS_ABOVE)
        .then(|| lz4_flex::block::compress(&answer.body))
        .filter(|c| c.len() <= answer.body.len() - answer.body.len() / 8);
    let (mut flags, body): (u8, &[u8]) = match &compressed {
        Some(c) => (FLAG_LZ4, c),
        None => (0, &answer.body),
    };
    if answer.usage.estimated {
        flags |= FLAG_USAGE_ESTIMATED;
    }
    let model = truncated(&answer.model);
    let namespace = truncated(&answer.namespace);
    let mut out = BytesMut::with_capacity(52 + model.len() + namespace.len() + body.len());
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
    out.put_u32_le(u32::try_from(answer.body.len()).unwrap_or(u32::MAX));
    out.put_u32_le(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_slice(body);
    let checksum = crc32fast::hash(&out);
    out.put_u32_le(checksum);
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
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<Arc<str>> {
        let len = self.u16()? as usize;
        std::str::from_utf8(self.take(len)?).ok().map(Arc::from)
    }
}

/// Decodes a stored value whose body may be at most `max_body` bytes.
pub fn decode(bytes: &[u8], max_body: usize) -> Result<CachedAnswer, Corrupt> {
    if !bytes.starts_with(MAGIC) {
        return Err(Corrupt::Format);
    }
    let (content, trailer) = bytes
        .split_at_checked(bytes.len().saturating_sub(CHECKSUM_BYTES))
        .ok_or(Corrupt::Length)?;
    let stored = u32::from_le_bytes(trailer.try_into().map_err(|_| Corrupt::Length)?);
    if crc32fast::hash(content) != stored {
        return Err(Corrupt::Checksum);
    }
    let mut r = Reader(&content[MAGIC.len()..]);
    let endpoint = endpoint_of(r.u8().ok_or(Corrupt::Length)?).ok_or(Corrupt::Format)?;
    let flags = r.u8().ok_or(Corrupt::Length)?;
    let header = (|| {
        let expires_at_ms = r.u64()?;
        let usage = Usage {
            prompt_tokens: r.u64()?,
            completion_tokens: r.u64()?,
            estimated: flags & FLAG_USAGE_ESTIMATED != 0,
        };
        let model = r.text()?;
        let namespace = r.text()?;
        let body_len = r.u32()? as usize;
        let stored_len = r.u32()? as usize;
        Some((expires_at_ms, usage, model, namespace, body_len, stored_len))
    })();
    let (expires_at_ms, usage, model, namespace, body_len, stored_len) =
        header.ok_or(Corrupt::Length)?;
    if body_len > max_body || stored_len != r.0.len() {
        return Err(Corrupt::Length);
    }
    let body = if flags & FLAG_LZ4 != 0 {
        // The output buffer is `body_len` (already bounded); a body that would decompress
        // to more fails instead of growing it.
        let body = lz4_flex::block::decompress(r.0, body_len).map_err(|_| Corrupt::Compression)?;
        if body.len() != body_len {
            return Err(Corrupt::Compression);
        }
        Bytes::from(body)
    } else if r.0.len() == body_len {
        Bytes::copy_from_slice(r.0)
    } else {
        return Err(Corrupt::Length);
    };
    Ok(CachedAnswer::restore(
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

    fn answer(body: String) -> CachedAnswer {
        let value = serde_json::json!({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 12, "completion_tokens": 34}});
        CachedAnswer::new(
            Endpoint::ChatCompletions,
            Arc::from("acme/faq"),
            Bytes::from(body),
            &value,
            crate::clock::Clock::system().now_ms() + 60_000,
        )
    }

    const MAX: usize = 1 << 20;

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
            let b = decode(&encoded, MAX).expect("decodes");
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
        assert_eq!(decode(b"", MAX).err(), Some(Corrupt::Format));
        assert!(decode(b"EG2", MAX).is_err());
        assert_eq!(decode(b"XX1\x01\x00", MAX).err(), Some(Corrupt::Format));
        let mut valid = encode(&answer("y".repeat(5_000)));
        valid.truncate(valid.len() - 10);
        assert!(decode(&valid, MAX).is_err(), "truncated compressed body");
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_caught() {
        for body in ["{\"choices\":[1]}".to_owned(), "z".repeat(3_000)] {
            let valid = encode(&answer(body));
            for cut in 0..valid.len() {
                assert!(decode(&valid[..cut], MAX).is_err(), "cut at {cut}");
            }
            for i in 0..valid.len() {
                for bit in 0..8 {
                    let mut flipped = valid.clone();
                    flipped[i] ^= 1 << bit;
                    assert!(decode(&flipped, MAX).is_err(), "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn a_size_beyond_the_limit_is_refused_before_allocating() {
        let big = encode(&answer("w".repeat(50_000)));
        assert_eq!(decode(&big, 10_000).err(), Some(Corrupt::Length));
        assert!(decode(&big, 50_000).is_ok());
        // A crafted value: valid checksum, a body length of 4 GiB.
        let mut crafted = encode(&answer("v".repeat(2_000)));
        crafted.truncate(crafted.len() - CHECKSUM_BYTES);
        let body_len_at = 3 + 1 + 1 + 24 + 2 + "gpt-4o-mini".len() + 2 + "acme/faq".len();
        crafted[body_len_at..body_len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let checksum = crc32fast::hash(&crafted);
        crafted.extend_from_slice(&checksum.to_le_bytes());
        assert_eq!(decode(&crafted, MAX).err(), Some(Corrupt::Length));
    }
}
