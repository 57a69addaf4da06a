//! Reading a request body under `MAX_BODY_BYTES`: an oversized body is refused with 413
//! from its `content-length` before a byte is read, or as soon as the limit is crossed.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;

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
    tokio::time::timeout(timeout, read_limited(headers, body, limit))
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
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge { limit };
            }
            source = err.source();
        }
        ApiError::invalid("could not read the request body", None)
    })
}
