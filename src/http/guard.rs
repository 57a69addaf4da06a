//! Load and abuse protection in front of `/v1/*`: header count and size limits (431),
//! and a global in-flight limit that sheds with 503 + `retry-after` before the process
//! degrades. Health, readiness and metrics stay outside it, so operators can still see in.

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Decrements the in-flight count however the request ends (including cancellation).
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let headers = request.headers();
    if headers.len() > state.config.server.max_headers {
        return ApiError::HeadersTooLarge("too many headers").into_response();
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if bytes > state.config.server.max_header_bytes {
        return ApiError::HeadersTooLarge("header bytes over the limit").into_response();
    }
    let before = state.in_flight.fetch_add(1, Ordering::AcqRel);
    let _slot = InFlight(&state.in_flight);
    if before >= state.config.server.max_in_flight {
        state.metrics.shed.inc();
        return ApiError::Overloaded.into_response();
    }
    next.run(request).await
}
