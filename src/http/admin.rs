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

use crate::error::ApiError;
use crate::state::AppState;

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The dashboard's session cookie: a digest of the admin token (never the token itself),
/// so rotating `ADMIN_TOKEN` signs every browser out.
pub const SESSION_COOKIE: &str = "eg_admin";

pub fn session_value(token: &str) -> String {
    hex::encode(Sha256::digest(format!(
        "edge-gateway admin session\0{token}"
    )))
}

/// The session cookie's value, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.config.admin_token else {
        return Err(ApiError::AdminDisabled);
    };
    if let Some(session) = session_cookie(headers) {
        let expected: [u8; 32] = Sha256::digest(session_value(token.expose()).as_bytes()).into();
        let presented: [u8; 32] = Sha256::digest(session.as_bytes()).into();
        if constant_time_eq(&expected, &presented) {
            return Ok(());
        }
    }
    // The scheme is case-insensitive (RFC 9110 §11.1), as for client keys.
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| crate::auth::bearer_token(v.as_bytes()))
        .ok_or(ApiError::Unauthorized("admin token required"))?;
    let expected: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
    let presented: [u8; 32] = Sha256::digest(presented).into();
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
    let semantic = match &state.semantic {
        Some(semantic) => Some(semantic.purge(namespace.as_deref()).await),
        None => None,
    };
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
        Json(json!({"namespace": namespace, "purged": report, "semantic_entries": semantic})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct AnalyticsParams {
    since: Option<String>,
    until: Option<String>,
    group_by: Option<String>,
    #[serde(default)]
    global: bool,
    /// The semantic shadow-mode report instead (`max_disagreement`, `answer_agreement`).
    #[serde(default)]
    semantic: bool,
    max_disagreement: Option<f64>,
    answer_agreement: Option<f32>,
    /// The `top` keys by dollars saved instead (the dashboard's table).
    top: Option<u32>,
}

/// The `analytics` command's figures as JSON.
pub async fn analytics(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<AnalyticsParams>,
) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let request = match crate::analytics::cli::Request::parse(
        params.since.as_deref().unwrap_or("24h"),
        params.until.as_deref(),
        params.group_by.as_deref().unwrap_or("tier"),
        state.clock.now_ms(),
    ) {
        Ok(r) => r,
        Err(e) => return ApiError::invalid(e, None).into_response(),
    };
    if params.global {
        let Some(redis) = state.cache.redis() else {
            return ApiError::invalid(
                "the global view needs Redis, which is not configured",
                Some("global"),
            )
            .into_response();
        };
        if let (Some(global), true) = (&state.analytics.global, redis.is_up()) {
            global.flush(redis).await;
        }
        return match crate::analytics::cli::global_report(redis, &request).await {
            Ok(report) => Json(report.to_json()).into_response(),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": {"message": format!("global view unavailable: {e}"), "type": "api_error", "param": null, "code": "redis_unavailable"}})),
            )
                .into_response(),
        };
    }
    // Rows still queued are part of the answer.
    state.analytics.writer.flush().await;
    let path = state.config.sqlite.path.clone();
    if let Some(limit) = params.top {
        let (since, until) = (request.since_ms, request.until_ms);
        let limit = limit.clamp(1, 1_000);
        return match tokio::task::spawn_blocking(move || {
            let conn = crate::db::open_migrated(&path).map_err(|e| e.to_string())?;
            crate::analytics::query::top_entries(&conn, since, until, limit)
                .map_err(|e| e.to_string())
        })
        .await
        {
            Ok(Ok(entries)) => {
                Json(json!({"since_ms": since, "until_ms": until, "entries": entries}))
                    .into_response()
            }
            Ok(Err(e)) => ApiError::Internal(e).into_response(),
            Err(e) => ApiError::Internal(e.to_string()).into_response(),
        };
    }
    if params.semantic {
        let defaults = crate::analytics::Agreement::default();
        let agreement = crate::analytics::Agreement {
            min_answer_similarity: params
                .answer_agreement
                .unwrap_or(defaults.min_answer_similarity),
            max_disagreement: params.max_disagreement.unwrap_or(defaults.max_disagreement),
        };
        let (since, until) = (request.since_ms, request.until_ms);
        return match tokio::task::spawn_blocking(move || {
            crate::analytics::cli::shadow_report(&path, since, until, agreement)
        })
        .await
        {
            Ok(Ok(report)) => Json(report).into_response(),
            Ok(Err(e)) => ApiError::invalid(e, Some("max_disagreement")).into_response(),
            Err(e) => ApiError::Internal(e.to_string()).into_response(),
        };
    }
    match tokio::task::spawn_blocking(move || crate::analytics::cli::local_report(&path, &request))
        .await
    {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => ApiError::Internal(e).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_every_byte() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &b));
    }
}
