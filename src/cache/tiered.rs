//! Lookup order and write policy across the cache tiers:
//! L1 → Redis (while its breaker is closed) → SQLite (only while Redis is down or not
//! configured). Hits from lower tiers are promoted into L1; every store goes to all
//! tiers, the shared and durable ones off the request path.

use std::sync::Arc;

use serde::Serialize;

use super::answer::CachedAnswer;
use super::l1::L1Cache;
use super::redis::RedisTier;
use super::sqlite::SqliteTier;
use crate::keying::CacheKey;

/// Which tier answered; the `x-cache-tier` header and the analytics `tier` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    L1,
    Redis,
    Sqlite,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::Redis => "redis",
            Self::Sqlite => "sqlite",
        }
    }
}

/// What a purge removed, tier by tier (`null` for a tier that is not configured).
#[derive(Debug, Serialize)]
pub struct PurgeReport {
    pub l1: &'static str,
    pub redis: Option<Result<u64, String>>,
    pub sqlite: Result<usize, String>,
}

impl PurgeReport {
    pub fn is_complete(&self) -> bool {
        self.sqlite.is_ok() && self.redis.as_ref().is_none_or(Result::is_ok)
    }
}

pub struct TieredCache {
    /// The purge generations last read from Redis (`None` until the first read).
    generations: std::sync::Mutex<Option<std::collections::HashMap<String, i64>>>,
    l1: L1Cache,
    redis: Option<RedisTier>,
    sqlite: SqliteTier,
    /// Answers with a larger body are not stored anywhere (counted).
    max_entry_bytes: usize,
    rejected: Option<prometheus::IntCounterVec>,
}

impl TieredCache {
    pub fn new(l1: L1Cache, redis: Option<RedisTier>, sqlite: SqliteTier) -> Self {
        Self {
            generations: std::sync::Mutex::new(None),
            l1,
            redis,
            sqlite,
            max_entry_bytes: usize::MAX,
            rejected: None,
        }
    }

    /// Bounds what is stored: bodies over `max_entry_bytes` are counted in `rejected`
    /// (`tier="all"`, `reason="oversized"`) and not stored.
    pub fn with_entry_limit(
        mut self,
        max_entry_bytes: usize,
        rejected: prometheus::IntCounterVec,
    ) -> Self {
        self.max_entry_bytes = max_entry_bytes;
        self.rejected = Some(rejected);
        self
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn l1(&self) -> &L1Cache {
        &self.l1
    }

    pub fn redis(&self) -> Option<&RedisTier> {
        self.redis.as_ref()
    }

    pub fn sqlite(&self) -> &SqliteTier {
        &self.sqlite
    }

    pub async fn get(&self, namespace: &str, key: &CacheKey) -> Option<(Arc<CachedAnswer>, Tier)> {
        if let Some(answer) = self.l1.get(key) {
            return Some((answer, Tier::L1));
        }
        // Boxed: the Redis and SQLite futures are large, and an L1 hit should not carry
        // (and move) them.
        Box::pin(self.get_below_l1(namespace, key)).await
    }

    async fn get_below_l1(
        &self,
        namespace: &str,
        key: &CacheKey,
    ) -> Option<(Arc<CachedAnswer>, Tier)> {
        if let Some(redis) = &self.redis {
            // While the breaker is open this returns at once (counted as skipped_down).
            match redis.get(namespace, key).await {
                Ok(Some(answer)) => {
                    let answer = Arc::new(answer);
                    self.l1.insert(*key, answer.clone());
                    // Keep the local fallback warm with what other regions stored.
                    self.sqlite.keep_warm(*key, answer.clone());
                    return Some((answer, Tier::Redis));
                }
                // Redis answered: it is the shared truth, SQLite is not consulted.
                Ok(None) => return None,
                Err(_) => {} // down, timed out or failed: this request falls back to SQLite
            }
        }
        let answer = Arc::new(self.sqlite.get(*key).await?);
        self.l1.insert(*key, answer.clone());
        Some((answer, Tier::Sqlite))
    }

    pub async fn put(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        self.store(key, answer, false).await;
    }

    /// As [`TieredCache::put`], returning only once Redis has the entry (or failed to
    /// take it): other instances waiting on this one's lease read it from there.
    pub async fn put_shared(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        self.store(key, answer, true).await;
    }

    async fn store(&self, key: CacheKey, answer: Arc<CachedAnswer>, wait_for_redis: bool) {
        if answer.body.len() > self.max_entry_bytes {
            if let Some(rejected) = &self.rejected {
                rejected.with_label_values(&["all", "oversized"]).inc();
            }
            return;
        }
        self.l1.insert(key, answer.clone());
        if let Some(redis) = &self.redis {
            if wait_for_redis {
                redis.put_now(key, answer.clone()).await;
            } else {
                redis.put(key, answer.clone());
            }
        }
        self.sqlite.put(key, answer);
    }

    /// Empties every tier, or only `namespace` and its partitions.
    pub async fn purge(&self, namespace: Option<&str>) -> PurgeReport {
        self.l1.purge(namespace);
        self.l1.run_pending_tasks();
        let redis = match &self.redis {
            None => None,
            Some(r) => Some(r.purge(namespace).await.map_err(|e| e.to_string())),
        };
        // Every other instance drops its L1 copies when it sees the new generation.
        if let (Some(r), Some(Ok(_))) = (&self.redis, &redis) {
            match r.bump_generation(namespace).await {
                Ok(generation) => {
                    let field = namespace.unwrap_or(super::redis::ALL).to_owned();
                    if let Some(known) = self.lock_generations().as_mut() {
                        known.insert(field, generation);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purge generation not bumped: other instances keep their L1 copies until TTL")
                }
            }
        }
        let sqlite = self.sqlite.purge(namespace).await;
        PurgeReport {
            l1: "purged",
            redis,
            sqlite,
        }
    }

    fn lock_generations(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<std::collections::HashMap<String, i64>>> {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the purge generations and drops from L1 and SQLite every namespace another
    /// instance purged since the last read (`None` in the result: everything). The first
    /// read only learns the generations. Nothing happens while Redis is down: purges made
    /// meanwhile are applied at the first read after it comes back.
    pub async fn apply_remote_purges(&self) -> Vec<Option<String>> {
        let Some(redis) = self.redis.as_ref().filter(|r| r.is_up()) else {
            return Vec::new();
        };
        let Ok(current) = redis.generations().await else {
            return Vec::new();
        };
        let current: std::collections::HashMap<String, i64> = current.into_iter().collect();
        let changed: Vec<Option<String>> = {
            let mut known = self.lock_generations();
            let changed = match known.as_ref() {
                None => Vec::new(),
                Some(old) => current
                    .iter()
                    .filter(|(ns, generation)| old.get(*ns) != Some(*generation))
                    .map(|(ns, _)| (ns != super::redis::ALL).then(|| ns.clone()))
                    .collect(),
            };
            *known = Some(current);
            changed
        };
        for namespace in &changed {
            self.l1.purge(namespace.as_deref());
            if let Err(e) = self.sqlite.purge(namespace.as_deref()).await {
                tracing::warn!(error = %e, "local sqlite copy of a remote purge failed");
            }
        }
        if !changed.is_empty() {
            self.l1.run_pending_tasks();
        }
        changed
    }

    /// `up`, `down` or `disabled` per tier, for `/readyz`.
    pub fn states(&self) -> [(&'static str, &'static str); 3] {
        let redis = match &self.redis {
            None => "disabled",
            Some(r) if r.is_up() => "up",
            Some(_) => "down",
        };
        let sqlite = if self.sqlite.is_up() { "up" } else { "down" };
        [("l1", "up"), ("redis", redis), ("sqlite", sqlite)]
    }
}
