//! Lookup order and write policy across the cache tiers.

use std::sync::Arc;

use super::answer::CachedAnswer;
use super::l1::L1Cache;
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

pub struct TieredCache {
    l1: L1Cache,
}

impl TieredCache {
    pub fn new(l1: L1Cache) -> Self {
        Self { l1 }
    }

    pub fn l1(&self) -> &L1Cache {
        &self.l1
    }

    pub async fn get(&self, key: &CacheKey) -> Option<(Arc<CachedAnswer>, Tier)> {
        self.l1.get(key).await.map(|a| (a, Tier::L1))
    }

    pub async fn put(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        self.l1.insert(key, answer).await;
    }

    /// Empties every tier, or only `namespace` and its partitions.
    pub async fn purge(&self, namespace: Option<&str>) {
        self.l1.purge(namespace);
        self.l1.run_pending_tasks().await;
    }
}
