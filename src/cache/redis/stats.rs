//! The per-hour analytics counters shared by every region (one hash per region and
//! hour, one key per command, so one Cluster slot each).

use super::{RedisTier, RedisUnavailable};

impl RedisTier {
    /// The set of regions that ever reported global counts.
    pub fn stats_regions_key(&self) -> String {
        format!("{}:stats:v1:regions", self.inner.prefix)
    }

    /// The hash of one region's counts for the hour starting at `hour_ms`.
    pub fn stats_key(&self, region: &str, hour_ms: u64) -> String {
        format!("{}:stats:v1:{region}:{}", self.inner.prefix, hour_ms / 1000)
    }

    pub async fn add_to_set(&self, key: &str, member: &str) -> Result<(), RedisUnavailable> {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(key).arg(member);
        self.call::<i64>("stats", cmd).await.map(drop)
    }

    pub async fn set_members(&self, key: &str) -> Result<Vec<String>, RedisUnavailable> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(key);
        self.call("stats", cmd).await
    }

    /// Adds each `(field, delta)` to the hash at `key` and keeps it `ttl_secs`, in one
    /// MULTI/EXEC: a reader never sees some fields of a flush without the others. One
    /// key, so one Cluster slot.
    pub async fn add_to_hash(
        &self,
        key: &str,
        fields: &[(&str, i64)],
        ttl_secs: u64,
    ) -> Result<(), RedisUnavailable> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (field, delta) in fields.iter().filter(|(_, d)| *d != 0) {
            pipe.cmd("HINCRBY")
                .arg(key)
                .arg(*field)
                .arg(*delta)
                .ignore();
        }
        pipe.cmd("EXPIRE").arg(key).arg(ttl_secs).ignore();
        self.call_pipeline("stats", &pipe).await
    }

    pub async fn hash_all(&self, key: &str) -> Result<Vec<(String, i64)>, RedisUnavailable> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(key);
        self.call("stats", cmd).await
    }
}
