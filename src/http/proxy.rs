//! Every `/v1/*` request that is not cacheable: forwarded with method, path, query and
//! body intact, and the answer streamed back as the relay sends it. Never cached.
//!
//! In managed mode tenants share the operator's relay account, so only the routes in
//! `relay.forward_routes` are forwarded (one tenant must never list, read or delete
//! another's files or batches); anything else is a 404 that never reaches the relay.
//! Only idempotent methods are retried after the relay may have acted on them.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::error::ApiError;
use crate::http::X_RELAY_REGION;
use crate::relay::{
    RelayBody, RelayResponse, request_headers_for_relay, response_headers_for_client,
};
use crate::state::AppState;

pub async fn forward(State(state): State<AppState>, request: Request) -> Response {
    forward_inner(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn forward_inner(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = state.auth.authenticate(&parts.headers)?;
    if caller.managed && !is_forwarded(&state.config.relay.forward_routes, parts.uri.path()) {
        return Err(ApiError::NotFound(parts.uri.path().to_owned()));
    }
    state.rate_limit(&caller.namespace)?;
    let body = crate::http::body::read_request_body(state, &parts.headers, body).await?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |pq| pq.as_str());
    let suffix = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
    let headers = request_headers_for_relay(&parts.headers, caller.managed, false);
    let idempotent = parts.method.is_idempotent();
    let relay = state
        .relay
        .send(parts.method, suffix, headers, body, idempotent)
        .await?;
    Ok(streamed_response(relay, caller.managed))
}

/// Whether managed mode forwards `path`: a listed route or a path under one.
fn is_forwarded(routes: &[String], path: &str) -> bool {
    routes.iter().any(|route| {
        path.strip_prefix(route.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The relay's answer as it arrives: status, end-to-end headers, body chunks unbuffered.
/// An event stream that breaks ends with an SSE error event, so the client's SDK reports
/// the failure instead of a truncated connection.
pub fn streamed_response(relay: RelayResponse, managed: bool) -> Response {
    let body = if super::cacheable::is_event_stream(&relay.headers) {
        sse_errors_as_events(relay.body)
    } else {
        relay.body
    };
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = relay.status;
    *response.headers_mut() = response_headers_for_client(&relay.headers, managed);
    if let Ok(region) = HeaderValue::from_str(&relay.region) {
        response.headers_mut().insert(X_RELAY_REGION, region);
    }
    response
}

/// Ends an SSE body at its first error, with that error as a last `data:` event.
fn sse_errors_as_events(body: RelayBody) -> RelayBody {
    Box::pin(futures_util::stream::unfold(
        Some(body),
        |state| async move {
            let mut body = state?;
            match body.next().await? {
                Ok(chunk) => Some((Ok(chunk), Some(body))),
                Err(error) => Some((Ok(error.sse_event()), None)),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::is_forwarded;

    #[test]
    fn forwarded_routes_cover_their_subpaths_only() {
        let routes = vec!["/v1/models".to_owned()];
        assert!(is_forwarded(&routes, "/v1/models"));
        assert!(is_forwarded(&routes, "/v1/models/gpt-4o"));
        assert!(!is_forwarded(&routes, "/v1/models-private"));
        assert!(!is_forwarded(&routes, "/v1/files"));
    }
}
