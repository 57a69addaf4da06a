//! edge-gateway: an OpenAI-compatible caching gateway, one instance per region.
//!
//! The public API is small: [`App`], [`AppState`], [`config`], [`cli`], [`commands`] (what
//! the binary runs) and [`clock`]; everything else is crate-private. The crate's own tests
//! and benches reach inside through `testing` (feature `testing`, turned on only by the
//! crate's dev-dependency on itself).
//!
//! Map of the crate:
//! - [`commands`]: `serve`, `check-config`, `migrate`, `analytics`, `cache purge`.
//! - [`config`]: the typed configuration (defaults → TOML file → env table), validated at start.
//! - [`app`]: `App::build` (listener, background tasks), `run_until` with graceful drain
//!   (connections, then relay work) and final flushes.
//! - [`state`]: `AppState`, what every handler sees (built once).
//! - [`server`]: the accept loop: header/idle timeout, connection cap (idlest first);
//!   a connection loop that reads plain HTTP/1.1 requests itself (`httparse`) and writes
//!   their responses, handing anything else (chunked bodies, `expect`, upgrades,
//!   HTTP/1.0, `HEAD`) to hyper; each request goes to `http::Dispatch`.
//! - [`http`]: the routes; `router(state)` builds them all; `Dispatch` sends `POST`s to
//!   the cacheable routes straight to their handler and the rest through the router.
//! - [`auth`]: pass-through and managed mode; who the caller is, which key the relay sees.
//! - [`request`]: validation of cacheable bodies (400s happen here, before the relay).
//! - [`keying`]: normalization and the SHA-256 cache key (pure).
//! - [`cache`]: cached answers (JSON + SSE replay), the stream recorder, single-flight,
//!   and the tiers: L1 (moka), Redis (standalone/Cluster, breaker), SQLite (durable).
//! - [`relay`]: the upstream client: regions by weight and latency, breakers with panic
//!   mode, key pools, retries, connect / first-byte / idle timeouts, path containment.
//! - [`semantic`]: the opt-in semantic tier: partition (everything but the last user
//!   message), embedder (relay or local model2vec), index (exact, then HNSW), verifier,
//!   sharing through a Redis Stream and SQLite.
//! - [`analytics`]: `cache_events` rows, pricing, global counters, reports.
//! - [`db`]: the SQLite file and its embedded migrations.
//! - [`error`]: `ApiError`, the one OpenAI-shaped error a client can see.
//! - [`metrics`], [`telemetry`]: Prometheus registry (and the HTTP layer's series) and logging.
//! - [`clock`]: the app's one `Clock` (wall-clock ms), passed to whatever reads the time.
//! - [`tokens`]: token estimates when the relay reports no usage; [`usage`], [`paths`],
//!   [`strict_json`]: small leaves the others share.
//!
//! Module arrows point one way (tests/api/structure.rs checks there is no cycle):
//!
//! ```text
//! commands ──► app, analytics, cache, semantic, db, cli, clock   (testing: over them all)
//! app ──► http, server, state          server ──► http, auth, metrics
//! http ──► state, analytics, cache, relay, semantic, auth, request, keying, tokens
//! state ──► analytics, cache, relay, semantic, auth, limits, metrics, clock
//! semantic ──► cache, relay, keying, metrics, clock     relay ──► metrics, paths
//! analytics ──► cache, db, keying, metrics, clock, batch
//! cache ──► db, keying, metrics, clock, usage, batch    db ──► clock
//! leaves: clock, usage, paths, endpoint, error, strict_json, batch; metrics ──► endpoint;
//! config ──► paths only (everything reads config)
//! ```
//!
//! Each module registers its own metrics (`cache::CacheMetrics`, `relay::RelayMetrics`,
//! `analytics::AnalyticsMetrics`, `semantic::SemanticMetrics`, `metrics::HttpMetrics`)
//! through `metrics::Registrar`; `state::Metrics` holds them in the app's registry. Time
//! comes from the `clock::Clock` the app was built with.
//!
//! A cacheable request's life, in order (`http::dispatch`, `http::cacheable`): the guard
//! (header limits, in-flight cap) → `auth` (remembered per connection) → body read under `MAX_BODY_BYTES` →
//! `request::CacheableRequest::parse` → cache headers → `keying::cache_key` →
//! `cache::TieredCache::get` (L1 → Redis → SQLite) → on a miss, `cache::Flights` (one
//! relay call per key) → the leader's `semantic` lookup (when on) → `relay` → answer
//! forwarded as it arrives, recorded, stored when complete (and remembered by meaning)
//! → one `analytics::CacheEvent` queued for the writer thread → the observer (metrics
//! through pre-resolved handles, `x-edge-region`).

// The map above is for the people who work on the crate: it links the crate-private
// modules too (`cargo doc --document-private-items` renders them).
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod app;
pub(crate) mod auth;
pub(crate) mod batch;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod paths;
pub(crate) mod relay;
pub(crate) mod request;
pub(crate) mod semantic;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod strict_json;
pub(crate) mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub(crate) mod tokens;
pub(crate) mod usage;

pub use app::App;
pub use config::Config;
pub use state::AppState;
pub(crate) mod analytics;
pub(crate) mod cache;
pub(crate) mod db;
pub(crate) mod keying;
pub(crate) mod limits;
