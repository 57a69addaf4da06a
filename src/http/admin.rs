//! `/admin/*`: operator routes behind `ADMIN_TOKEN` (disabled when it is unset). The
//! token is compared in constant time on SHA-256 digests, so neither its content nor
//! its length leaks through timing.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::ApiError;

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.config.admin_token else {
        return Err(ApiError::AdminDisabled);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized("admin token required"))?;
    let expected: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
    let presented: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    if constant_time_eq(&expected, &presented) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid admin token"))
    }
}

#[derive(Debug, Deserialize)]
pub struct PurgeParams {
    namespace: Option<String>,
}

pub async fn purge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<PurgeParams>,
) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let namespace = params.namespace.filter(|n| !n.is_empty());
    let report = state.cache.purge(namespace.as_deref()).await;
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("*"),
        complete = report.is_complete(),
        "cache purged via admin API"
    );
    let status = if report.is_complete() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        status,
        Json(json!({"namespace": namespace, "purged": report})),
    )
        .into_response()
}
