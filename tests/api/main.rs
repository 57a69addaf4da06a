//! One integration test binary: the real router on port 0 against the relay stub (and,
//! from the cache tiers on, real redis-server processes and SQLite files).

mod helpers;

mod analytics;
mod auth;
mod cache;
mod cli;
mod dashboard;
mod deploy;
mod errors;
mod faults;
mod fleet;
mod hardening;
mod health;
mod integrity;
mod isolation;
mod otel;
mod proxy;
mod regions;
mod responses;
mod secrets;
mod semantic;
mod shutdown;
mod streaming;
mod structure;
mod tiers;
mod wire;
