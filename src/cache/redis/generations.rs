//! Purge generations: one hash (`{prefix}:purge:v1`, one Cluster slot) holding a counter
//! per purged namespace (`*` for a purge of everything). A purge bumps its counter after
//! Redis is emptied; every instance polls the hash and, when a counter moved, drops what
//! its own L1 and SQLite hold of that namespace. That is how a purge on one instance
//! reaches the in-process caches of all the others.

use super::{RedisTier, RedisUnavailable};

/// The field of a purge of every namespace.
pub const ALL: &str = "*";

impl RedisTier {
    fn generations_key(&self) -> String {
        format!("{}:purge:v1", self.inner.prefix)
    }

    /// Bumps the generation of `namespace` (`None`: all); returns the new value.
    pub async fn bump_generation(&self, namespace: Option<&str>) -> Result<i64, RedisUnavailable> {
        let key = self.generations_key();
        let mut cmd = redis::cmd("HINCRBY");
        cmd.arg(&key).arg(namespace.unwrap_or(ALL)).arg(1);
        self.call_keyed("purge", &key, cmd).await
    }

    /// Every namespace's generation.
    pub async fn generations(&self) -> Result<Vec<(String, i64)>, RedisUnavailable> {
        let key = self.generations_key();
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&key);
        self.call_keyed("purge", &key, cmd).await
    }
}
