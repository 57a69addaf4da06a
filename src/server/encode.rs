//! Writing a response head and its body framing onto the wire, as hyper would: the
//! status line with its reason, the handler's headers, `content-length` when the body's
//! size is known (else `transfer-encoding: chunked`), `date`, and `connection: close`
//! when the connection ends after this response.

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use axum::http::response::Parts;
use axum::http::{StatusCode, header};
use hyper::body::SizeHint;

/// How the body follows the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body at all (1xx, 204, 304).
    None,
    /// Exactly this many bytes (declared in `content-length`).
    Length(u64),
    /// Chunks, then a zero-length chunk.
    Chunked,
}

/// Appends the head of `parts` to `out` and says how the body must be framed.
pub(super) fn head(parts: &Parts, size: &SizeHint, close: bool, out: &mut Vec<u8>) -> Framing {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut declared = None;
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            declared = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_none() {
                continue; // a broken length is not sent; the body is framed below
            }
        }
        // Hop-by-hop: this loop decides them.
        if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        has_date |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framing = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else if let Some(n) = size.exact() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
        Framing::Length(n)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        with_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// The start of one chunk of `len` bytes (its data and `\r\n` follow).
pub(super) fn chunk_start(len: usize, out: &mut Vec<u8>) {
    let _ = write!(out, "{len:X}\r\n");
}

pub(super) const CHUNK_END: &[u8] = b"\r\n";
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

thread_local! {
    /// The `date` value, formatted once a second per thread (HTTP dates have seconds).
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

/// The HTTP date of now. Wall time on purpose: a header of the wire, not of the cache,
/// whose times are read on the app's clock. Read on the coarse clock
/// (`clock::system_ms`): an HTTP date has whole seconds.
fn with_date(f: impl FnOnce(&[u8])) {
    let secs = crate::clock::system_ms() / 1_000;
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let now = UNIX_EPOCH + Duration::from_secs(secs);
            *cached = (secs, httpdate::fmt_http_date(now).into_bytes());
        }
        f(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Response};

    fn parts(status: u16, headers: &[(&'static str, &'static str)]) -> Parts {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            response
                .headers_mut()
                .append(*k, HeaderValue::from_static(v));
        }
        response.into_parts().0
    }

    fn encoded(parts: &Parts, size: SizeHint, close: bool) -> (String, Framing) {
        let mut out = Vec::new();
        let framing = head(parts, &size, close, &mut out);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn a_known_size_is_declared_and_a_date_added() {
        let (text, framing) = encoded(
            &parts(
                200,
                &[("content-type", "application/json"), ("x-cache", "hit")],
            ),
            SizeHint::with_exact(42),
            false,
        );
        assert_eq!(framing, Framing::Length(42));
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-cache: hit\r\ncontent-length: 42\r\ndate: "), "{text}");
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        assert!(!text.contains("connection"));
    }

    #[test]
    fn an_unknown_size_is_chunked_and_hop_by_hop_headers_are_this_loops() {
        let (text, framing) = encoded(
            &parts(
                503,
                &[("connection", "keep-alive"), ("transfer-encoding", "gzip")],
            ),
            SizeHint::new(),
            true,
        );
        assert_eq!(framing, Framing::Chunked);
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\nconnection: close\r\ndate: "), "{text}");
        let mut chunk = Vec::new();
        chunk_start(300, &mut chunk);
        assert_eq!(chunk, b"12C\r\n");
    }

    #[test]
    fn a_declared_length_frames_the_body_and_no_content_has_none() {
        let (text, framing) = encoded(
            &parts(200, &[("content-length", "7")]),
            SizeHint::new(),
            false,
        );
        assert_eq!(framing, Framing::Length(7));
        assert_eq!(text.matches("content-length").count(), 1);
        let (text, framing) = encoded(&parts(204, &[]), SizeHint::with_exact(0), false);
        assert_eq!(framing, Framing::None);
        assert!(!text.contains("content-length"), "{text}");
        let (text, _) = encoded(&parts(599, &[]), SizeHint::with_exact(0), false);
        assert!(text.starts_with("HTTP/1.1 599 <none>\r\n"), "{text}");
    }
}
