//! Leases for one relay call per key across instances: the first instance to miss a key
//! takes `{prefix}:lease:v1:{namespace}:{key}` with SET NX PX; it renews the lease while
//! its relay call runs and deletes it once the answer is in Redis. Others wait for the
//! answer instead of calling. Renewal and release check the owner (a Lua script on the
//! one key, so it works on a Cluster), so an instance never extends or frees a lease
//! that expired and went to someone else.

use super::{RedisTier, RedisUnavailable};
use crate::keying::CacheKey;

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                       return redis.call('DEL', KEYS[1]) else return 0 end";

impl RedisTier {
    pub fn lease_key(&self, namespace: &str, key: &CacheKey) -> String {
        format!("{}:lease:v1:{namespace}:{key}", self.inner.prefix)
    }

    /// Takes the lease if nobody holds it.
    pub async fn try_lease(
        &self,
        lease: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<bool, RedisUnavailable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(lease).arg(owner).arg("NX").arg("PX").arg(ttl_ms);
        let reply: Option<String> = self.call_keyed("lease", lease, cmd).await?;
        Ok(reply.is_some())
    }

    /// Extends the lease if `owner` still holds it.
    pub async fn renew_lease(
        &self,
        lease: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<bool, RedisUnavailable> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RENEW).arg(1).arg(lease).arg(owner).arg(ttl_ms);
        let renewed: i64 = self.call_keyed("lease", lease, cmd).await?;
        Ok(renewed == 1)
    }

    /// Frees the lease if `owner` still holds it.
    pub async fn release_lease(&self, lease: &str, owner: &str) -> Result<(), RedisUnavailable> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE).arg(1).arg(lease).arg(owner);
        let _: i64 = self.call_keyed("lease", lease, cmd).await?;
        Ok(())
    }

    /// Whether anybody holds the lease.
    pub async fn lease_held(&self, lease: &str) -> Result<bool, RedisUnavailable> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(lease);
        let n: i64 = self.call_keyed("lease", lease, cmd).await?;
        Ok(n > 0)
    }
}
