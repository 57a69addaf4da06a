//! Per-request bookkeeping shared by every matched route: the request counter and
//! latency histogram by route template and status, and the `x-edge-region` header.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::endpoint::Endpoint;
use crate::http::headers::X_EDGE_REGION;
use crate::state::AppState;

pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(X_EDGE_REGION, state.region_header.clone());
    let status = response.status();
    state
        .metrics
        .http
        .requests
        .with_label_values(&[route.as_str(), status.as_str()])
        .inc();
    state
        .metrics
        .http
        .latency
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// What [`observe`] does, for a cacheable route served without the router: the same
/// series, through handles resolved once, with the latency the request's analytics row
/// has (one clock read for both).
pub(super) fn observed(
    state: &AppState,
    endpoint: Endpoint,
    latency_ms: f64,
    response: &mut Response,
) {
    response
        .headers_mut()
        .insert(X_EDGE_REGION, state.region_header.clone());
    let resolved = &state.metrics.http.resolved;
    resolved.http_request(endpoint, response.status().as_u16());
    resolved.http_latency(endpoint, latency_ms / 1e3);
}
