//! edge-gateway: an OpenAI-compatible caching gateway, one instance per region.
//!
//! Map of the crate:
//! - [`config`]: the typed configuration (defaults → TOML file → env), validated at start.
//! - [`app`]: `App::build` (listener + shared state), `run_until` with graceful drain.
//! - [`http`]: the routes; `router(state)` builds them all.
//! - [`auth`]: pass-through and managed mode; who the caller is, which key the relay sees.
//! - [`request`]: validation of cacheable bodies (400s happen here, before the relay).
//! - [`relay`]: the upstream client with connect / first-byte / idle timeouts.
//! - [`error`]: `ApiError`, the one OpenAI-shaped error a client can see.
//! - [`metrics`], [`telemetry`]: Prometheus registry and logging.
//! - [`relay_stub`]: an OpenAI-compatible stand-in relay for tests, benches and demos.
//!
//! A cacheable request's life, in order: `http::observe` (metrics, `x-edge-region`) →
//! `auth` → body read under `MAX_BODY_BYTES` → `request::CacheableRequest::parse` →
//! relay call → answer streamed back unbuffered.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod relay_stub;
pub mod request;
pub mod telemetry;

pub use app::{App, AppState};
pub use config::Config;
pub mod analytics;
pub mod cache;
pub mod db;
pub mod keying;
