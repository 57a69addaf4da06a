//! Names of the gateway's own headers (SPEC.md, "HTTP surface").

use axum::http::HeaderName;

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub const X_CACHE_TIER: HeaderName = HeaderName::from_static("x-cache-tier");
pub const X_CACHE_KEY: HeaderName = HeaderName::from_static("x-cache-key");
pub const X_EDGE_REGION: HeaderName = HeaderName::from_static("x-edge-region");
pub const X_RELAY_REGION: HeaderName = HeaderName::from_static("x-relay-region");
pub const X_CACHE_TTL: HeaderName = HeaderName::from_static("x-cache-ttl");
pub const X_CACHE_SEMANTIC: HeaderName = HeaderName::from_static("x-cache-semantic");
pub const X_CACHE_SIMILARITY: HeaderName = HeaderName::from_static("x-cache-similarity");
pub const X_CACHE_NAMESPACE: HeaderName = HeaderName::from_static("x-cache-namespace");
