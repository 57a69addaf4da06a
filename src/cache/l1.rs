//! L1: the in-process moka cache, bounded in bytes (each entry weighs what it holds) with
//! a per-entry lifetime taken from the entry itself.
//!
//! moka's `sync` cache, not its `future` one: nothing here awaits (no loader, the single
//! flight is the gateway's own), and the `future` cache's `get` recorded each read
//! through a shared future and an interrupted-operations retry: ~390 of an L1 hit's
//! ~23,300 instructions (callgrind, bench/RESULTS.md). Its housekeeping runs on the
//! caller's thread in both kinds alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::answer::CachedAnswer;
use crate::clock::Clock;
use crate::keying::CacheKey;

/// Tells moka when an entry ends, read on the app's [`Clock`].
struct EntryLifetime(Clock);

impl Expiry<CacheKey, Arc<CachedAnswer>> for EntryLifetime {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedAnswer>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.remaining_ttl(self.0.now_ms()))
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedAnswer>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.remaining_ttl(self.0.now_ms()))
    }
}

#[derive(Clone)]
pub struct L1Cache {
    cache: Cache<CacheKey, Arc<CachedAnswer>, super::KeyHasher>,
    max_bytes: u64,
    clock: Clock,
}

impl L1Cache {
    pub fn new(max_bytes: u64, clock: Clock) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key, value: &Arc<CachedAnswer>| value.weight())
            .expire_after(EntryLifetime(clock.clone()))
            .support_invalidation_closures()
            .build_with_hasher(super::KeyHasher::default());
        Self {
            cache,
            max_bytes,
            clock,
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        // moka expires lazily on its own clock; the entry's expiry on ours is final.
        let now = self.clock.now_ms();
        self.cache.get(key).filter(|a| !a.is_expired(now))
    }

    pub fn insert(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        // moka would admit an entry larger than the whole budget until its next eviction
        // pass; such an entry never belongs in L1.
        if u64::from(answer.weight()) <= self.max_bytes && !answer.is_expired(self.clock.now_ms()) {
            self.cache.insert(key, answer);
        }
    }

    /// Drops every entry, or those of `namespace` (and its partitions).
    pub fn purge(&self, namespace: Option<&str>) {
        match namespace {
            None => self.cache.invalidate_all(),
            Some(ns) => {
                let ns: Arc<str> = Arc::from(ns);
                // Only fails when closures are unsupported, which the builder enables.
                let _ = self
                    .cache
                    .invalidate_entries_if(move |_, a| super::in_namespace(&a.namespace, &ns));
            }
        }
    }

    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    #[cfg(test)]
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    #[cfg(test)]
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use bytes::Bytes;

    fn answer(len: usize) -> Arc<CachedAnswer> {
        Arc::new(CachedAnswer::new(
            Endpoint::ChatCompletions,
            Arc::from("n"),
            Bytes::from(vec![b'x'; len]),
            &serde_json::json!({}),
            Clock::system().now_ms() + 60_000,
        ))
    }

    #[test]
    fn holds_entries_within_its_byte_budget() {
        let l1 = L1Cache::new(10_000, Clock::system());
        l1.insert(CacheKey([1; 32]), answer(20_000));
        assert!(
            l1.get(&CacheKey([1; 32])).is_none(),
            "larger than the budget"
        );
        for i in 0..50u8 {
            l1.insert(CacheKey([i; 32]), answer(1_000));
        }
        l1.run_pending_tasks();
        assert!(l1.weighted_size() <= 10_000, "{}", l1.weighted_size());
        assert!(l1.entry_count() >= 1);
    }
}
