//! Every `/v1/*` request that is not cacheable: forwarded with method, path, query and
//! body intact, and the answer streamed back as the relay sends it. Never cached.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::http::X_RELAY_REGION;
use crate::relay::{RelayResponse, request_headers_for_relay, response_headers_for_client};

pub async fn forward(State(state): State<AppState>, request: Request) -> Response {
    forward_inner(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn forward_inner(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = state.auth.authenticate(&parts.headers)?;
    state.rate_limit(&caller.namespace)?;
    let body = state.read_body(&parts.headers, body).await?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |pq| pq.as_str());
    let suffix = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
    let headers = request_headers_for_relay(&parts.headers, caller.managed, false);
    let relay = state
        .send_to_relay(parts.method, suffix, headers, body)
        .await?;
    Ok(streamed_response(relay))
}

/// The relay's answer as it arrives: status, end-to-end headers, body chunks unbuffered.
pub fn streamed_response(relay: RelayResponse) -> Response {
    let mut response = Response::new(Body::from_stream(relay.body));
    *response.status_mut() = relay.status;
    *response.headers_mut() = response_headers_for_client(&relay.headers);
    if let Ok(region) = HeaderValue::from_str(&relay.region) {
        response.headers_mut().insert(X_RELAY_REGION, region);
    }
    response
}
