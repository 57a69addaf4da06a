//! Recognises a request body seen before and skips straight to its cache key: no JSON
//! parsing, validation or normalization on repeats, which is what FAQ traffic mostly is.
//!
//! The map is keyed by the endpoint, the namespace and the SHA-256 of the body, never
//! by the body itself: an entry costs the same ~200 bytes whatever the body's size, so
//! the byte budget holds however large the bodies clients send (whole bodies as keys
//! once let 300 distinct 3 MB bodies hold over 1 GB, freed late by moka's deferred
//! destruction). SHA-256 makes answering on the digest alone as safe as comparing the
//! bytes. Bodies over `max_body` are not remembered at all (hashing them would cost
//! more than parsing saves). A miss here just takes the slow path.

use std::sync::Arc;

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::endpoint::Endpoint;
use crate::keying::CacheKey;

/// What identifies a request body on the fast path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    endpoint: Endpoint,
    namespace: Arc<str>,
    digest: [u8; 32],
}

/// What the slow path learned about a body.
#[derive(Debug)]
pub struct KnownRequest {
    pub key: CacheKey,
    pub model: Arc<str>,
    pub stream: bool,
    pub include_usage: bool,
}

/// Bytes an entry costs besides its namespace: the digest, the known request, moka's
/// own bookkeeping.
const ENTRY_OVERHEAD: usize = 192;

#[derive(Clone)]
pub struct FastPath {
    known: Option<Cache<Fingerprint, Arc<KnownRequest>, super::KeyHasher>>,
    max_body: usize,
}

impl FastPath {
    /// `max_bytes` of 0 turns the fast path off; bodies over `max_body` bytes are never
    /// remembered.
    pub fn new(max_bytes: u64, max_body: usize) -> Self {
        Self {
            known: (max_bytes > 0).then(|| {
                Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(|fp: &Fingerprint, _: &Arc<KnownRequest>| {
                        u32::try_from(fp.namespace.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                    })
                    .build_with_hasher(super::KeyHasher::default())
            }),
            max_body,
        }
    }

    /// The body's fingerprint, or `None` when the fast path is off or the body too large.
    pub fn fingerprint(
        &self,
        endpoint: Endpoint,
        namespace: &Arc<str>,
        body: &[u8],
    ) -> Option<Fingerprint> {
        (self.known.is_some() && body.len() <= self.max_body).then(|| Fingerprint {
            endpoint,
            namespace: namespace.clone(),
            digest: Sha256::digest(body).into(),
        })
    }

    pub fn get(&self, fingerprint: &Fingerprint) -> Option<Arc<KnownRequest>> {
        self.known.as_ref()?.get(fingerprint)
    }

    pub fn remember(&self, fingerprint: Fingerprint, known: KnownRequest) {
        if let Some(cache) = &self.known {
            cache.insert(fingerprint, Arc::new(known));
        }
    }

    /// The budget in use (for tests).
    #[cfg(test)]
    pub fn weighted_size(&self) -> u64 {
        self.known.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.weighted_size()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KnownRequest {
        KnownRequest {
            key: crate::keying::cache_key(
                Endpoint::ChatCompletions,
                "ns",
                &serde_json::Map::new(),
                Default::default(),
            ),
            model: Arc::from("m"),
            stream: false,
            include_usage: false,
        }
    }

    #[test]
    fn an_entry_costs_the_same_whatever_the_body_size_and_big_bodies_are_not_kept() {
        let path = FastPath::new(1 << 20, 256 * 1024);
        let ns: Arc<str> = Arc::from("tenant");
        for size in [10, 1_000, 100_000] {
            let body = vec![b'a' + (size % 26) as u8; size];
            let fp = path
                .fingerprint(Endpoint::ChatCompletions, &ns, &body)
                .expect("under the cap");
            path.remember(fp, known());
        }
        assert_eq!(
            path.weighted_size(),
            3 * (ns.len() + ENTRY_OVERHEAD) as u64,
            "weight is independent of the body"
        );
        let big = vec![b'z'; 256 * 1024 + 1];
        assert!(
            path.fingerprint(Endpoint::ChatCompletions, &ns, &big)
                .is_none()
        );
        let fp = path
            .fingerprint(Endpoint::ChatCompletions, &ns, &[b'a' + 10; 10])
            .unwrap();
        assert!(path.get(&fp).is_some(), "found again by its digest");
        let other_ns = path
            .fingerprint(
                Endpoint::ChatCompletions,
                &Arc::from("other"),
                &[b'a' + 10; 10],
            )
            .unwrap();
        assert!(path.get(&other_ns).is_none(), "namespaces never share");
    }
}
