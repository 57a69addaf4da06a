//! Load and abuse protection in front of `/v1/*`: header count and size limits (431),
//! and a global in-flight limit that sheds with 503 + `retry-after` before the process
//! degrades. Health, readiness and metrics stay outside it, so operators can still see in.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// A request's place under the in-flight limit: given back however the request ends
/// (including cancellation).
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lets a `/v1/*` request in, or answers it (431, 503).
pub(super) fn admit<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<InFlight<'a>, ApiError> {
    if headers.len() > state.config.server.max_headers {
        return Err(ApiError::HeadersTooLarge("too many headers"));
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if bytes > state.config.server.max_header_bytes {
        return Err(ApiError::HeadersTooLarge("header bytes over the limit"));
    }
    let before = state.in_flight.fetch_add(1, Ordering::AcqRel);
    let slot = InFlight(&state.in_flight);
    if before >= state.config.server.max_in_flight {
        state.metrics.http.shed.inc();
        return Err(ApiError::Overloaded);
    }
    Ok(slot)
}

pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    match admit(&state, request.headers()) {
        Ok(_slot) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}
