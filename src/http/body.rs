//! Reading a request body under `MAX_BODY_BYTES`: an oversized body is refused with 413
//! from its `content-length` before a byte is read, or as soon as the limit is crossed.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::state::AppState;

/// Reads a request body under the configured size limit and body timeout.
pub async fn read_request_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    read_body(
        headers,
        body,
        state.config.server.max_body_bytes,
        std::time::Duration::from_millis(state.config.server.body_timeout_ms),
    )
    .await
}

/// Reads the whole body: at most `limit` bytes, within `timeout` (slow-loris bodies are
/// cut with 408 instead of holding a worker).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let mut read = std::pin::pin!(read_limited(headers, body, limit));
    // A body the connection loop already holds whole is read at the first poll: no
    // timer to arm (a clock read and a timer entry on every cache hit).
    if let Some(result) = futures_util::FutureExt::now_or_never(read.as_mut()) {
        return result;
    }
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // Frame by frame rather than `axum::body::to_bytes` (a limit layer, a collector and
    // a buffer list): a body that arrived whole is one frame, returned as it is.
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut more = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::invalid("could not read the request body", None))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        match &first {
            None => first = Some(data),
            Some(head) => {
                if more.is_empty() {
                    more.reserve(total);
                    more.extend_from_slice(head);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        more.freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static str]) -> Body {
        let frames: Vec<Result<Bytes, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
            .collect();
        Body::from_stream(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_read_whole_is_handed_on_as_it_is() {
        let bytes = Bytes::from_static(b"{\"model\":\"m\"}");
        let read = read_limited(&HeaderMap::new(), Body::from(bytes.clone()), 64)
            .await
            .unwrap();
        assert_eq!(read.as_ptr(), bytes.as_ptr(), "not copied");
        assert_eq!(read, bytes);
    }

    #[tokio::test]
    async fn a_body_in_pieces_is_joined_and_refused_once_over_the_limit() {
        let read = read_limited(&HeaderMap::new(), chunked(&["", "ab", "", "cd", "e"]), 5)
            .await
            .unwrap();
        assert_eq!(&read[..], b"abcde");
        let empty = read_limited(&HeaderMap::new(), chunked(&["", ""]), 5)
            .await
            .unwrap();
        assert!(empty.is_empty());
        let over = read_limited(&HeaderMap::new(), chunked(&["abc", "def"]), 5).await;
        assert!(
            matches!(over, Err(ApiError::PayloadTooLarge { limit: 5 })),
            "{over:?}"
        );
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, "6".parse().unwrap());
        let early = read_limited(&declared, chunked(&["a"]), 5).await;
        assert!(
            matches!(early, Err(ApiError::PayloadTooLarge { limit: 5 })),
            "{early:?}"
        );
    }
}
