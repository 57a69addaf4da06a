//! The cacheable routes: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`.
//! Authenticate, read and validate the body (a bad one never reaches the relay), then
//! forward it.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::http::proxy::streamed_response;
use crate::http::read_limited;
use crate::relay::request_headers_for_relay;
use crate::request::CacheableRequest;

pub async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    handle(&state, Endpoint::ChatCompletions, request).await
}

pub async fn completions(State(state): State<AppState>, request: Request) -> Response {
    handle(&state, Endpoint::Completions, request).await
}

pub async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    handle(&state, Endpoint::Embeddings, request).await
}

async fn handle(state: &AppState, endpoint: Endpoint, request: Request) -> Response {
    handle_inner(state, endpoint, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle_inner(
    state: &AppState,
    endpoint: Endpoint,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = state.auth.authenticate(&parts.headers)?;
    let raw = read_limited(&parts.headers, body, state.config.server.max_body_bytes).await?;
    let _parsed = CacheableRequest::parse(endpoint, &raw)?;
    let headers = request_headers_for_relay(&parts.headers, caller.relay_auth.as_ref(), true);
    let relay = state
        .send_to_relay(parts.method, endpoint.relay_suffix(), headers, raw)
        .await?;
    Ok(streamed_response(relay))
}
