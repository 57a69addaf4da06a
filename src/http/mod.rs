//! The HTTP surface: one file per route family. `router` builds the whole tree so tests
//! can drive it without a socket.

mod admin;
mod body;
mod cache_control;
mod cacheable;
mod dashboard;
mod dispatch;
mod guard;
mod headers;
mod health;
mod observe;
mod proxy;
mod request_log;
mod usage_strip;

use axum::Router;
use axum::routing::{any, get, post};

use crate::state::AppState;

pub use dispatch::Dispatch;
pub use headers::*;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(cacheable::chat_completions).fallback(proxy::forward),
        )
        .route(
            "/v1/completions",
            post(cacheable::completions).fallback(proxy::forward),
        )
        .route(
            "/v1/embeddings",
            post(cacheable::embeddings).fallback(proxy::forward),
        )
        .route(
            "/v1/responses",
            post(cacheable::responses).fallback(proxy::forward),
        )
        .route("/v1/{*rest}", any(proxy::forward))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/admin/cache/purge", post(admin::purge))
        .route("/admin/analytics", get(admin::analytics))
        .route("/admin/dashboard", get(dashboard::dashboard))
        .route("/admin/dashboard/login", post(dashboard::login))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .fallback(health::not_found)
        .with_state(state)
}
