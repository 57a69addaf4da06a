//! Recognises a request body seen before, byte for byte, and skips straight to its cache
//! key: no JSON parsing, validation or normalization on repeats, which is what FAQ
//! traffic mostly is. The map key holds the whole body (compared exactly, never by a
//! hash alone), the endpoint and the namespace, so it answers only what the slow path
//! would compute. Bounded in bytes; a miss here just takes the slow path.

use std::sync::Arc;

use bytes::Bytes;
use moka::sync::Cache;

use crate::endpoint::Endpoint;
use crate::keying::CacheKey;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawRequest {
    pub endpoint: Endpoint,
    pub namespace: Arc<str>,
    pub body: Bytes,
}

/// What the slow path learned about a body.
#[derive(Debug)]
pub struct KnownRequest {
    pub key: CacheKey,
    pub model: Arc<str>,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Clone)]
pub struct FastPath {
    known: Option<Cache<RawRequest, Arc<KnownRequest>>>,
}

impl FastPath {
    /// `max_bytes` of 0 turns the fast path off.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            known: (max_bytes > 0).then(|| {
                Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(|raw: &RawRequest, _: &Arc<KnownRequest>| {
                        u32::try_from(raw.body.len() + raw.namespace.len() + 128)
                            .unwrap_or(u32::MAX)
                    })
                    .build()
            }),
        }
    }

    pub fn get(&self, raw: &RawRequest) -> Option<Arc<KnownRequest>> {
        self.known.as_ref()?.get(raw)
    }

    pub fn remember(&self, raw: RawRequest, known: KnownRequest) {
        if let Some(cache) = &self.known {
            // A request body is a view into hyper's read buffer; keeping the view would
            // keep the whole buffer (kilobytes) alive. Keep an exact copy instead.
            let raw = RawRequest {
                body: Bytes::copy_from_slice(&raw.body),
                ..raw
            };
            cache.insert(raw, Arc::new(known));
        }
    }
}
