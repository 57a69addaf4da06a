//! The upstream side: the relay's regional endpoints chosen by weight, with breakers,
//! active health checks, key pools and retries; answers streamed back with separate
//! connect, first-byte and idle-between-chunks timeouts.

mod body;
mod breaker;
mod client;
mod headers;
mod keys;
mod latency;
mod metrics;
mod path;
mod picker;

pub use client::{Relay, RelayBody, RelayResponse};
pub use headers::{request_headers_for_relay, response_headers_for_client};
pub use metrics::RelayMetrics;
