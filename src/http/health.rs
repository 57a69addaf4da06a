//! Liveness, readiness and metrics. `/healthz` answers while the process serves;
//! `/readyz` reports each cache tier and relay region so an operator (or Fly's checks)
//! can see what is degraded.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

pub async fn healthz(State(state): State<AppState>) -> Response {
    Json(json!({
        "status": "ok",
        "region": state.config.edge_region,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.readiness();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    state.refresh_gauges();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn not_found(request: Request) -> Response {
    ApiError::NotFound(request.uri().path().to_owned()).into_response()
}
