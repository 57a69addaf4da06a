//! edge-gateway: an OpenAI-compatible caching gateway, one instance per region.
//!
//! Map of the crate:
//! - [`config`]: the typed configuration (defaults → TOML file → env), validated at start.
//! - [`app`]: `App::build` (listener, shared state, background tasks), `run_until` with
//!   graceful drain and final flushes.
//! - [`http`]: the routes; `router(state)` builds them all.
//! - [`auth`]: pass-through and managed mode; who the caller is, which key the relay sees.
//! - [`request`]: validation of cacheable bodies (400s happen here, before the relay).
//! - [`keying`]: normalization and the SHA-256 cache key (pure).
//! - [`cache`]: cached answers (JSON + SSE replay), the stream recorder, single-flight,
//!   and the tiers: L1 (moka), Redis (standalone/Cluster, breaker), SQLite (durable).
//! - [`relay`]: the upstream client with connect / first-byte / idle timeouts.
//! - [`analytics`]: `cache_events` rows, pricing, global counters, reports.
//! - [`db`]: the SQLite file and its embedded migrations.
//! - [`error`]: `ApiError`, the one OpenAI-shaped error a client can see.
//! - [`metrics`], [`telemetry`]: Prometheus registry and logging.
//!
//! A cacheable request's life, in order (`http::cacheable`): `http::observe` (metrics,
//! `x-edge-region`) → `auth` → body read under `MAX_BODY_BYTES` →
//! `request::CacheableRequest::parse` → cache headers → `keying::cache_key` →
//! `cache::TieredCache::get` (L1 → Redis → SQLite) → on a miss, `cache::Flights` (one
//! relay call per key) → `relay` → answer forwarded as it arrives, recorded, stored when
//! complete → one `analytics::CacheEvent` queued for the writer thread.

pub mod app;
pub mod auth;
pub mod batch;
pub mod cli;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod request;
pub mod server;
pub mod strict_json;
pub mod telemetry;
pub mod tokens;

pub use app::{App, AppState};
pub use config::Config;
pub mod analytics;
pub mod cache;
pub mod db;
pub mod keying;
pub mod limits;
