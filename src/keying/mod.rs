//! Cache keys: SHA-256 over a canonical encoding of the route, the namespace and the
//! normalized request body (SPEC.md, "Cache key"). Pure functions, no I/O, so the rules
//! are unit- and property-tested in isolation.

mod canonical;
mod key;
mod text;

#[cfg(feature = "testing")]
pub use canonical::canonical_bytes;
pub use key::{CacheKey, KeyOptions, cache_key};
