//! Cache entries in Redis: bounded, checked reads and background writes.

use std::sync::Arc;

use super::{Connection, RedisTier, RedisUnavailable, VALUE_OVERHEAD};
use crate::cache::answer::CachedAnswer;
use crate::cache::codec;
use crate::keying::CacheKey;

impl RedisTier {
    /// The entry under `key`. At most `max_entry_bytes` (plus the value's overhead) are
    /// read, so a huge value planted under a key costs one bounded read and is skipped,
    /// never a slow call that would trip the breaker. A value that fails its checksum or
    /// lengths is a miss, deleted and counted.
    pub async fn get(
        &self,
        namespace: &str,
        key: &CacheKey,
    ) -> Result<Option<CachedAnswer>, RedisUnavailable> {
        let redis_key = self.redis_key(namespace, key);
        let max_value = self.inner.max_entry_bytes.saturating_add(VALUE_OVERHEAD);
        // GETRANGE answers "" for a missing key; no stored value is ever empty.
        // The key picks a Cluster's slot-range breaker; standalone has none to pick.
        let slot_key = self.is_cluster().then(|| redis_key.as_bytes().to_vec());
        let lookups = &self.inner.lookups;
        let value: Vec<u8> = self
            .run("get", slot_key.as_deref(), |connection| async move {
                match connection {
                    Connection::Single(c) => lookups.get(c, redis_key, max_value).await,
                    mut cluster => {
                        let mut cmd = redis::cmd("GETRANGE");
                        cmd.arg(&redis_key).arg(0).arg(max_value);
                        cluster.query(&cmd).await
                    }
                }
            })
            .await?;
        if value.is_empty() {
            return Ok(None);
        }
        if value.len() > max_value {
            self.reject("oversized");
            return Ok(None);
        }
        match codec::decode(&value, self.inner.max_entry_bytes) {
            Ok(answer) => Ok((!answer.is_expired(self.inner.clock.now_ms())).then_some(answer)),
            Err(corrupt) => {
                let redis_key = self.redis_key(namespace, key);
                self.reject(corrupt.as_str());
                tracing::warn!(key = %redis_key, reason = corrupt.as_str(), "redis value failed its checks: deleted, served as a miss");
                let tier = self.clone();
                tokio::spawn(async move {
                    let mut cmd = redis::cmd("UNLINK");
                    cmd.arg(&redis_key);
                    let _: Result<i64, _> = tier.call_keyed("delete", &redis_key, cmd).await;
                });
                Ok(None)
            }
        }
    }

    fn reject(&self, reason: &str) {
        self.inner
            .rejected
            .with_label_values(&["redis", reason])
            .inc();
    }

    /// Stores in the background; the request never waits for it.
    pub fn put(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        let tier = self.clone();
        tokio::spawn(async move { tier.put_now(key, answer).await });
    }

    /// Stores and waits for Redis to have it (a lease holder, before it frees the lease
    /// other instances wait on).
    pub async fn put_now(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        if !self.is_up() {
            return;
        }
        let ttl_ms = answer.remaining_ttl(self.inner.clock.now_ms()).as_millis() as u64;
        if ttl_ms == 0 || answer.body.len() > self.inner.max_entry_bytes {
            return;
        }
        let redis_key = self.redis_key(&answer.namespace, &key);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&redis_key)
            .arg(codec::encode(&answer))
            .arg("PX")
            .arg(ttl_ms);
        let _: Result<(), _> = self.call_keyed("set", &redis_key, cmd).await;
    }
}
