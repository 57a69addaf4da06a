//! One relay call per key across instances (issue 16). A flight's leader asks Redis for
//! the key's lease: with it, it calls the relay, renews the lease meanwhile, stores the
//! answer in Redis and frees the lease; without it, another instance is calling, so it
//! waits for that answer in Redis (polling with a short backoff) and serves it as
//! `coalesced`. A wait ends at `redis.remote_wait_ms`, or when the lease is gone with no
//! answer (the other instance failed, or died and its lease expired): then it calls the
//! relay itself. With Redis down nothing is asked: per-instance single flight, no added
//! latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Ctx;
use crate::cache::{CachedAnswer, RedisTier};
use crate::keying::CacheKey;

/// Poll of the awaited answer: starts at the first, doubles up to the second.
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(50);

/// A held lease: renewed until dropped, then freed (if still ours).
pub(super) struct Lease {
    redis: RedisTier,
    key: String,
    owner: Arc<str>,
    stop: CancellationToken,
}

impl Lease {
    fn hold(redis: RedisTier, key: String, owner: Arc<str>, ttl_ms: u64) -> Self {
        let stop = CancellationToken::new();
        let (r, k, o, s) = (redis.clone(), key.clone(), owner.clone(), stop.clone());
        tokio::spawn(async move {
            let every = Duration::from_millis((ttl_ms / 3).max(1));
            loop {
                tokio::select! {
                    () = s.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                if !matches!(r.renew_lease(&k, &o, ttl_ms).await, Ok(true)) {
                    return;
                }
            }
        });
        Self {
            redis,
            key,
            owner,
            stop,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
        let (redis, key, owner) = (self.redis.clone(), self.key.clone(), self.owner.clone());
        tokio::spawn(async move {
            let _ = redis.release_lease(&key, &owner).await;
        });
    }
}

pub(super) enum Remote {
    /// This instance calls the relay for every instance.
    Leader(Lease),
    /// Another instance's answer.
    Answer(Arc<CachedAnswer>),
    /// Call the relay without a lease (Redis down, or the wait ended without an answer).
    Alone,
}

impl Ctx {
    fn count_remote(&self, outcome: &str) {
        self.state
            .metrics
            .cache
            .remote_flights
            .with_label_values(&[outcome])
            .inc();
    }

    pub(super) async fn remote_flight(&self, key: CacheKey) -> Remote {
        let Some(redis) = self
            .state
            .cache
            .redis()
            .filter(|r| r.is_up() && self.state.config.redis.single_flight)
        else {
            return Remote::Alone;
        };
        let lease = redis.lease_key(&self.namespace, &key);
        let config = &self.state.config.redis;
        match redis
            .try_lease(&lease, &self.state.instance_id, config.lease_ms)
            .await
        {
            Ok(true) => {
                self.count_remote("leader");
                Remote::Leader(Lease::hold(
                    redis.clone(),
                    lease,
                    self.state.instance_id.clone(),
                    config.lease_ms,
                ))
            }
            Ok(false) => {
                let waiting = &self.state.metrics.cache.remote_waiting;
                waiting.inc();
                let outcome = self.wait_for_remote(redis, &lease, key).await;
                waiting.dec();
                outcome
            }
            Err(_) => Remote::Alone,
        }
    }

    async fn wait_for_remote(&self, redis: &RedisTier, lease: &str, key: CacheKey) -> Remote {
        let deadline =
            Instant::now() + Duration::from_millis(self.state.config.redis.remote_wait_ms);
        let mut pause = FIRST_POLL;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.count_remote("wait_timeout");
                return Remote::Alone;
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(MAX_POLL);
            if let Some((answer, _)) = self.state.cache.get(&self.namespace, &key).await {
                self.count_remote("coalesced");
                return Remote::Answer(answer);
            }
            match redis.lease_held(lease).await {
                Ok(true) => {}
                Ok(false) => {
                    // The answer may have landed between the two reads.
                    if let Some((answer, _)) = self.state.cache.get(&self.namespace, &key).await {
                        self.count_remote("coalesced");
                        return Remote::Answer(answer);
                    }
                    self.count_remote("leader_gone");
                    return Remote::Alone;
                }
                Err(_) => return Remote::Alone,
            }
        }
    }
}
