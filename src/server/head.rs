//! Reading a request head off the wire with `httparse`, for the requests the connection
//! loop answers itself: HTTP/1.1 with plain framing (a `content-length` body or none).
//! Everything else is [`Head::Other`]: the connection goes to hyper, which knows chunked
//! bodies, `expect: 100-continue`, upgrades, HTTP/1.0 and how to refuse a broken head.

use std::mem::MaybeUninit;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use bytes::{Bytes, BytesMut};

/// Headers a plain request may carry here; more and hyper reads it (with its own, higher
/// limit, so the guard can still answer 431 with a JSON body).
const MAX_HEADERS: usize = 64;

/// A head that has not ended after this many bytes goes to hyper, which bounds its
/// buffer and refuses what is over.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Header lines and a target no longer than this are remembered for the next request of
/// the connection (copied: a connection keeps at most this much besides its buffer).
const MEMO_MAX_BYTES: usize = 2 * 1024;

/// What the last request of a connection sent, for the next one. Clients send the same
/// header lines with every request of a connection (SDKs, proxies, load generators), and
/// building a `HeaderMap` was ~2,500 instructions of a ~17,000-instruction cache hit
/// (callgrind, bench/RESULTS.md): lines byte for byte the last request's get a clone of
/// its map (shared bytes, two small allocations); the map is built from the remembered
/// copy the second time the lines come, so a connection whose lines vary pays only the
/// copy. Same for the target and its `Uri`.
#[derive(Default)]
pub(super) struct HeadMemo {
    lines: Bytes,
    headers: Option<HeaderMap>,
    target: Bytes,
    uri: Option<Uri>,
}

/// A request head, read whole.
pub(super) struct PlainHead {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// Bytes of body that follow the head.
    pub content_length: usize,
    /// The client asked to close after this response (`connection: close`).
    pub close: bool,
}

// Returned and taken apart at once: boxing the big variant would cost an allocation
// per request for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Head {
    /// More bytes are needed.
    Partial,
    /// A head this loop answers; its bytes are taken off the buffer.
    Plain(PlainHead),
    /// Anything else: hyper reads it.
    Other,
}

/// Reads one head from the front of `buf`. A request whose declared body is over
/// `max_body` is `Other` too: hyper and the handler refuse it (413) before reading it.
pub(super) fn read_head(buf: &mut BytesMut, max_body: usize, memo: &mut HeadMemo) -> Head {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Head::Partial,
        _ => return Head::Other,
    };
    if request.version != Some(1) {
        return Head::Other;
    }
    let (Some(method), Some(path)) = (request.method, request.path) else {
        return Head::Other;
    };
    let method = match method {
        "POST" => Method::POST,
        "GET" => Method::GET,
        // HEAD answers carry no body; the others are rare: hyper frames them.
        _ => return Head::Other,
    };
    if !path.starts_with('/') {
        return Head::Other;
    }
    // Framing first: nothing leaves `buf` for a request hyper is to read.
    let (mut content_length, mut close) = (None::<usize>, false);
    for header in request.headers.iter() {
        let name = header.name;
        if ["transfer-encoding", "expect", "upgrade"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            return Head::Other;
        }
        if name.eq_ignore_ascii_case("content-length") {
            match parse_length(header.value) {
                Some(n) if content_length.is_none_or(|m| m == n) => content_length = Some(n),
                _ => return Head::Other,
            }
        } else if name.eq_ignore_ascii_case("connection") {
            match connection_close(header.value) {
                Some(c) => close |= c,
                None => return Head::Other,
            }
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > max_body {
        return Head::Other;
    }
    // Offsets into the head, so its bytes can be shared (not copied) by the header map.
    let base = buf.as_ptr() as usize;
    let mut fields = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = request.headers.len();
    for (field, header) in fields.iter_mut().zip(request.headers.iter()) {
        *field = (
            header.name.as_ptr() as usize - base,
            header.name.len(),
            header.value.as_ptr() as usize - base,
            header.value.len(),
        );
    }
    let path = (path.as_ptr() as usize - base, path.len());
    let head = buf.split_to(len).freeze();
    let Some((uri, headers)) = memo.parts(&head, path, &fields[..count]) else {
        // Not for this loop after all: the head goes back, for hyper to read.
        let mut whole = BytesMut::with_capacity(head.len() + buf.len());
        whole.extend_from_slice(&head);
        whole.extend_from_slice(buf);
        *buf = whole;
        return Head::Other;
    };
    Head::Plain(PlainHead {
        method,
        uri,
        headers,
        content_length,
        close,
    })
}

impl HeadMemo {
    /// The target and the header map: the remembered ones when the bytes are the same.
    fn parts(
        &mut self,
        head: &Bytes,
        (path_at, path_len): (usize, usize),
        fields: &[(usize, usize, usize, usize)],
    ) -> Option<(Uri, HeaderMap)> {
        let target = &head[path_at..path_at + path_len];
        let uri = match &self.uri {
            Some(uri) if self.target == target => uri.clone(),
            _ => {
                let uri = Uri::from_maybe_shared(head.slice(path_at..path_at + path_len)).ok()?;
                if target.len() <= MEMO_MAX_BYTES {
                    self.target = Bytes::copy_from_slice(target);
                    self.uri = Some(uri.clone());
                }
                uri
            }
        };
        let (Some(first), Some(last)) = (fields.first(), fields.last()) else {
            return Some((uri, HeaderMap::new()));
        };
        let (start, end) = (first.0, last.2 + last.3);
        let lines = &head[start..end];
        if self.lines != lines {
            // New lines: built from the head; remembered as bytes only, in case they come
            // again.
            let headers = header_map(head, 0, fields)?;
            (self.lines, self.headers) = if lines.len() <= MEMO_MAX_BYTES {
                (Bytes::copy_from_slice(lines), None)
            } else {
                (Bytes::new(), None)
            };
            return Some((uri, headers));
        }
        if self.headers.is_none() {
            // The same lines a second time: built once more, from the remembered copy
            // (so the map shares no bytes with a connection buffer), and kept.
            self.headers = Some(header_map(&self.lines, start, fields)?);
        }
        self.headers.clone().map(|headers| (uri, headers))
    }
}

/// The header map of `fields`, whose offsets are `base` bytes past the start of `bytes`,
/// sharing those bytes.
fn header_map(
    bytes: &Bytes,
    base: usize,
    fields: &[(usize, usize, usize, usize)],
) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    for &(name_at, name_len, value_at, value_len) in fields {
        let (name_at, value_at) = (name_at - base, value_at - base);
        let name = HeaderName::from_bytes(&bytes[name_at..name_at + name_len]).ok()?;
        let value =
            HeaderValue::from_maybe_shared(bytes.slice(value_at..value_at + value_len)).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

fn parse_length(raw: &[u8]) -> Option<usize> {
    if raw.is_empty() || raw.len() > 15 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// `Some(true)` for `close`; `None` for `upgrade`, which hyper reads. Other tokens name
/// hop-by-hop headers, which the relay's header filter drops.
fn connection_close(raw: &[u8]) -> Option<bool> {
    let mut close = false;
    for token in raw.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            return None;
        }
    }
    Some(close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &str) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let head = read_head(&mut buf, 1024, &mut HeadMemo::default());
        (head, buf)
    }

    fn plain(raw: &str) -> (PlainHead, BytesMut) {
        match read(raw) {
            (Head::Plain(head), rest) => (head, rest),
            (Head::Partial, _) => panic!("partial: {raw:?}"),
            (Head::Other, _) => panic!("other: {raw:?}"),
        }
    }

    fn is_other(raw: &str) -> bool {
        matches!(read(raw).0, Head::Other)
    }

    #[test]
    fn what_an_sdk_sends_is_read_here_and_the_body_stays_in_the_buffer() {
        let (head, rest) = plain(
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-1\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\
             X-Cache-TTL: 60\r\n\r\n{}POST",
        );
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.path(), "/v1/chat/completions");
        assert_eq!(head.uri.query(), Some("x=1"));
        assert_eq!(head.content_length, 2);
        assert!(!head.close);
        assert_eq!(head.headers["authorization"], "Bearer sk-1");
        assert_eq!(head.headers["x-cache-ttl"], "60");
        assert_eq!(head.headers.len(), 6);
        assert_eq!(&rest[..], b"{}POST", "the body and what follows are left");
    }

    #[test]
    fn repeated_header_lines_reuse_the_last_map_and_changed_ones_do_not() {
        let mut memo = HeadMemo::default();
        let mut next = |raw: &str| match read_head(&mut BytesMut::from(raw), 1024, &mut memo) {
            Head::Plain(head) => head,
            _ => panic!("not plain: {raw:?}"),
        };
        let same = "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-1\r\n\
                    X-Cache-TTL: 60\r\nContent-Length: 2\r\n\r\n{}";
        for round in 0..3 {
            let head = next(same);
            assert_eq!(head.uri.path(), "/v1/chat/completions", "round {round}");
            assert_eq!(head.headers.len(), 4, "round {round}");
            assert_eq!(
                head.headers["authorization"], "Bearer sk-1",
                "round {round}"
            );
            assert_eq!(head.headers["x-cache-ttl"], "60", "round {round}");
            assert_eq!(head.content_length, 2, "round {round}");
        }
        let kept = memo
            .headers
            .clone()
            .expect("the map is kept the second time");
        let lines = memo.lines.as_ptr_range();
        let value = kept["authorization"].as_bytes().as_ptr();
        assert!(
            lines.contains(&value),
            "the kept map shares the remembered copy only"
        );

        // Another key, another length, another target: nothing of the last map leaks.
        let mut memo2 = HeadMemo::default();
        let mut next2 = |raw: &str| match read_head(&mut BytesMut::from(raw), 1024, &mut memo2) {
            Head::Plain(head) => head,
            _ => panic!("not plain: {raw:?}"),
        };
        for _ in 0..2 {
            next2(same);
        }
        let other = next2(
            "POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-2\r\n\
             X-Cache-TTL: 60\r\nContent-Length: 3\r\n\r\n{ }",
        );
        assert_eq!(other.uri.path(), "/v1/embeddings");
        assert_eq!(other.headers["authorization"], "Bearer sk-2");
        assert_eq!(other.headers["content-length"], "3");
        assert_eq!(other.content_length, 3);
        // A target of the same length is read for what it says.
        let query = next2("GET /healthz?a=1 HTTP/1.1\r\n\r\n");
        assert_eq!(query.uri.query(), Some("a=1"));
        let query = next2("GET /healthz?a=2 HTTP/1.1\r\n\r\n");
        assert_eq!(query.uri.query(), Some("a=2"));
        let bare = next2("GET /healthz HTTP/1.1\r\n\r\n");
        assert!(bare.headers.is_empty());
        let back = next2(same);
        assert_eq!(back.headers["authorization"], "Bearer sk-1");
        assert_eq!(back.uri.path(), "/v1/chat/completions");
    }

    #[test]
    fn a_head_in_pieces_is_partial_until_its_blank_line() {
        assert!(matches!(
            read("POST /v1/x HTTP/1.1\r\nHost: g").0,
            Head::Partial
        ));
        assert!(matches!(read("GET /healthz HTTP/1.1\r\n").0, Head::Partial));
        let (head, rest) = plain("GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n");
        assert_eq!((head.method, head.content_length), (Method::GET, 0));
        assert!(rest.is_empty());
    }

    #[test]
    fn framing_this_loop_does_not_do_goes_to_hyper() {
        for raw in [
            "POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST /v1/x HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
            "HEAD /healthz HTTP/1.1\r\n\r\n",
            "PUT /v1/x HTTP/1.1\r\n\r\n",
            "POST http://gw/v1/x HTTP/1.1\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nContent-Length: 1025\r\n\r\n",
            "POST /v1/x HTTP/1.1\r\nBad Header: 1\r\n\r\n",
        ] {
            assert!(is_other(raw), "{raw:?} was read here");
            let (_, left) = read(raw);
            assert_eq!(&left[..], raw.as_bytes(), "{raw:?}: hyper gets every byte");
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("x-{i}: 1\r\n"))
            .collect();
        assert!(is_other(&format!("GET / HTTP/1.1\r\n{many}\r\n")));
        let long = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(is_other(&long), "a head without end is hyper's to refuse");
    }

    proptest::proptest! {
        /// Whatever arrives, reading a head never panics; a head for hyper leaves every
        /// byte in the buffer, and a plain one takes exactly its head off it.
        #[test]
        fn any_bytes_leave_the_buffer_whole_for_hyper_or_cut_at_the_head(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            target in "[!-~]{0,40}",
            mode in 0..3u8,
        ) {
            let bytes = match mode {
                // Anything at all.
                0 => raw.clone(),
                // A plain request line and length, then anything.
                1 => [&b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\n"[..], &raw].concat(),
                // Any visible ASCII as the target of a complete head (httparse admits
                // some that a `Uri` does not).
                _ => [&b"GET /"[..], target.as_bytes(), b" HTTP/1.1\r\nHost: gw\r\n\r\n"].concat(),
            };
            let mut buf = BytesMut::from(&bytes[..]);
            match read_head(&mut buf, 1024, &mut HeadMemo::default()) {
                Head::Partial | Head::Other => proptest::prop_assert_eq!(&buf[..], &bytes[..]),
                Head::Plain(_) => {
                    // The head ends at its blank line (httparse, like hyper, takes a bare
                    // LF as a line end); what follows stays.
                    let cut = bytes.len() - buf.len();
                    proptest::prop_assert_eq!(&bytes[cut..], &buf[..]);
                    let head = &bytes[..cut];
                    proptest::prop_assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"));
                }
            }
        }
    }

    #[test]
    fn connection_close_is_honoured_and_repeated_equal_lengths_are_one() {
        let (head, _) = plain(
            "POST /v1/x HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n",
        );
        assert!(head.close);
        assert_eq!(head.content_length, 3);
    }
}
