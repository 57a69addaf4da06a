//! Relay answer bodies: every chunk within the idle timeout, transport errors mapped to
//! the gateway's errors.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::RelayBody;
use crate::error::ApiError;

pub(super) fn map_reqwest_error(e: &reqwest::Error) -> ApiError {
    // A failed connect (refused or timed out) means the request was never sent.
    if e.is_connect() {
        ApiError::RelayUnreachable("could not connect to the relay".into())
    } else if e.is_timeout() {
        ApiError::RelayTimeout("the relay timed out")
    } else if e.is_body() || e.is_decode() {
        ApiError::RelayBadResponse("the relay's body ended abnormally".into())
    } else {
        ApiError::RelayBadResponse("the relay closed the connection or sent invalid HTTP".into())
    }
}

/// Ends the stream with a timeout error when the relay goes silent for `idle`.
pub(super) fn idle_limited(
    inner: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    idle: Duration,
) -> RelayBody {
    let inner = Box::pin(inner);
    Box::pin(futures_util::stream::unfold(
        Some(inner),
        move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(inner))),
                Ok(Some(Err(e))) => Some((Err(map_reqwest_error(&e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(ApiError::RelayTimeout("relay went silent mid-response")),
                    None,
                )),
            }
        },
    ))
}
