//! The Redis tier (L2), shared by every regional instance: standalone (`REDIS_URL`) or
//! Redis Cluster (`REDIS_CLUSTER_URLS`; slots discovered, MOVED/ASK followed by the
//! `redis` crate). Every command touches one key, so CROSSSLOT cannot happen.
//!
//! Health: each call is bounded by `redis.timeout_ms`. After `failure_threshold`
//! consecutive failures the breaker opens: Redis is skipped entirely (requests go to
//! SQLite and pay nothing), and a background prober reconnects and PINGs until Redis
//! answers, then closes the breaker. One log line per transition.
//!
//! On a Cluster, one master down must not take the others with it: keyed commands feed
//! a breaker per range of hash slots ([`SlotHealth`]) instead, so keys on live masters
//! keep being served from Redis while the dead master's ranges are skipped (and retried
//! once per probe interval). The whole tier is marked down only when every range is.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisResult};
use tokio_util::sync::CancellationToken;

use super::answer::CachedAnswer;
use super::codec;
use crate::config::RedisConfig;
use crate::keying::CacheKey;

#[derive(Clone)]
enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => cmd.query_async(c).await,
        }
    }

    async fn query_pipeline(&mut self, pipe: &redis::Pipeline) -> RedisResult<()> {
        match self {
            Self::Single(c) => pipe.query_async(c).await,
            Self::Cluster(c) => pipe.query_async(c).await,
        }
    }
}

#[derive(Clone)]
enum Target {
    Single(String),
    Cluster(Vec<String>),
}

struct Inner {
    target: Target,
    connection: RwLock<Option<Connection>>,
    up: AtomicBool,
    failures: AtomicU32,
    threshold: u32,
    timeout: Duration,
    connect_timeout: Duration,
    probe_interval: Duration,
    prefix: String,
    calls: prometheus::IntCounterVec,
    /// Bodies above this are neither stored nor read back.
    max_entry_bytes: usize,
    /// Values not served, by reason (`cache_rejected_total{tier="redis"}`).
    rejected: prometheus::IntCounterVec,
    /// Cluster mode: health per slot range.
    slots: Option<SlotHealth>,
}

/// Ranges of hash slots with a breaker each (16384 slots / 128 = 128 slots a range: a
/// master owns whole ranges in any balanced layout).
const SLOT_RANGES: usize = 128;
const SLOTS: u16 = 16_384;

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of the key or its `{hashtag}`).
pub fn hash_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS
}

/// Cluster mode: consecutive failures and down-until time per slot range.
struct SlotHealth {
    failures: Vec<AtomicU32>,
    /// Milliseconds since `epoch` until which the range is skipped (0: up).
    down_until: Vec<AtomicU64>,
    down: AtomicUsize,
    epoch: Instant,
}

impl SlotHealth {
    fn new() -> Self {
        Self {
            failures: (0..SLOT_RANGES).map(|_| AtomicU32::new(0)).collect(),
            down_until: (0..SLOT_RANGES).map(|_| AtomicU64::new(0)).collect(),
            down: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    fn range(key: &[u8]) -> usize {
        usize::from(hash_slot(key)) * SLOT_RANGES / usize::from(SLOTS)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether the range is being skipped now (its retry time has not come).
    fn skipping(&self, range: usize) -> bool {
        let until = self.down_until[range].load(Ordering::Acquire);
        until != 0 && self.now_ms() < until
    }

    fn succeeded(&self, range: usize) {
        self.failures[range].store(0, Ordering::Release);
        if self.down_until[range].swap(0, Ordering::AcqRel) != 0
            && self.down.fetch_sub(1, Ordering::AcqRel) == 1
        {
            tracing::info!("redis cluster: every slot range answers again");
        }
    }

    /// Returns whether every range is now down.
    fn failed(&self, range: usize, threshold: u32, retry_in: Duration) -> bool {
        let failures = self.failures[range].fetch_add(1, Ordering::AcqRel) + 1;
        if failures < threshold {
            return false;
        }
        let until = self.now_ms() + retry_in.as_millis() as u64;
        if self.down_until[range].swap(until, Ordering::AcqRel) == 0 {
            let down = self.down.fetch_add(1, Ordering::AcqRel) + 1;
            if down == 1 {
                tracing::warn!(
                    "redis cluster: a slot range does not answer; its keys go to SQLite while the other masters serve theirs"
                );
            }
            return down == SLOT_RANGES;
        }
        false
    }

    fn reset(&self) {
        for range in 0..SLOT_RANGES {
            self.failures[range].store(0, Ordering::Release);
            self.down_until[range].store(0, Ordering::Release);
        }
        self.down.store(0, Ordering::Release);
    }

    /// Hash slots currently skipped.
    fn slots_down(&self) -> usize {
        self.down.load(Ordering::Acquire) * usize::from(SLOTS) / SLOT_RANGES
    }
}

/// What a stored value may add to its body: the header, model and namespace (each at
/// most 64 KiB) and the checksum.
const VALUE_OVERHEAD: usize = 2 * 65_536 + 64;

/// Why a Redis call did not give an answer (the caller falls back; it never fails).
#[derive(Debug, thiserror::Error)]
pub enum RedisUnavailable {
    #[error("redis is marked down")]
    Down,
    #[error("redis call timed out")]
    Timeout,
    #[error("redis error: {0}")]
    Error(#[from] redis::RedisError),
}

#[derive(Clone)]
pub struct RedisTier {
    inner: Arc<Inner>,
}

impl RedisTier {
    /// `None` when neither `REDIS_URL` nor `REDIS_CLUSTER_URLS` is set. `calls` counts
    /// call outcomes (the `redis_calls_total` metric).
    pub fn from_config(config: &RedisConfig, calls: prometheus::IntCounterVec) -> Option<Self> {
        let rejected = prometheus::IntCounterVec::new(
            prometheus::Opts::new("unregistered", "unregistered"),
            &["tier", "reason"],
        )
        .expect("valid metric");
        Self::with_limits(config, calls, 8 * 1024 * 1024, rejected)
    }

    /// As [`RedisTier::from_config`], with the entry size bound and the counter of
    /// values not served (`tier`, `reason` labels).
    pub fn with_limits(
        config: &RedisConfig,
        calls: prometheus::IntCounterVec,
        max_entry_bytes: usize,
        rejected: prometheus::IntCounterVec,
    ) -> Option<Self> {
        let target = match (&config.url, config.cluster_urls.is_empty()) {
            (Some(url), _) => Target::Single(url.expose().to_owned()),
            (None, false) => Target::Cluster(
                config
                    .cluster_urls
                    .iter()
                    .map(|u| u.expose().to_owned())
                    .collect(),
            ),
            (None, true) => return None,
        };
        Some(Self {
            inner: Arc::new(Inner {
                connection: RwLock::new(None),
                up: AtomicBool::new(false),
                failures: AtomicU32::new(0),
                threshold: config.failure_threshold.max(1),
                timeout: Duration::from_millis(config.timeout_ms),
                connect_timeout: Duration::from_millis(config.connect_timeout_ms),
                probe_interval: Duration::from_millis(config.probe_interval_ms),
                prefix: config.key_prefix.clone(),
                calls,
                max_entry_bytes,
                rejected,
                slots: matches!(target, Target::Cluster(_)).then(SlotHealth::new),
                target,
            }),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.target, Target::Cluster(_))
    }

    /// Whether lookups and writes go to Redis right now (breaker closed).
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// `{prefix}:v1:{namespace}:{key}`.
    pub fn redis_key(&self, namespace: &str, key: &CacheKey) -> String {
        format!("{}:v1:{}:{}", self.inner.prefix, namespace, key.to_hex())
    }

    async fn connect(&self) -> RedisResult<Connection> {
        let inner = &self.inner;
        match &inner.target {
            Target::Single(url) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(inner.connect_timeout))
                    .set_response_timeout(Some(inner.timeout));
                let client = redis::Client::open(url.as_str())?;
                Ok(Connection::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Target::Cluster(seeds) => {
                let client = redis::cluster::ClusterClient::builder(seeds.clone())
                    .connection_timeout(inner.connect_timeout)
                    .response_timeout(inner.timeout)
                    .retries(2)
                    .build()?;
                Ok(Connection::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Connects and PINGs; on success the breaker closes. Used at start and by the prober.
    pub async fn try_recover(&self) -> bool {
        let attempt = async {
            let mut conn = self.connect().await?;
            conn.query::<String>(&redis::cmd("PING")).await?;
            RedisResult::Ok(conn)
        };
        let budget = self.inner.connect_timeout + self.inner.timeout;
        match tokio::time::timeout(budget, attempt).await {
            Ok(Ok(conn)) => {
                *self
                    .inner
                    .connection
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn);
                self.inner.failures.store(0, Ordering::Release);
                if let Some(slots) = &self.inner.slots {
                    slots.reset();
                }
                if !self.inner.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(
                        cluster = self.is_cluster(),
                        "redis is up: L2 lookups resume"
                    );
                }
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis probe failed");
                false
            }
            Err(_) => {
                tracing::debug!("redis probe timed out");
                false
            }
        }
    }

    /// Probes in the background while Redis is down, until `stop` is cancelled.
    pub fn spawn_prober(&self, stop: CancellationToken) {
        let tier = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(tier.inner.probe_interval) => {}
                }
                if !tier.is_up() {
                    tier.try_recover().await;
                }
            }
        });
    }

    fn record_failure(&self, error: &RedisUnavailable) {
        let failures = self.inner.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.inner.threshold && self.inner.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %error, failures, "redis is down: serving from SQLite until it recovers");
        }
    }

    fn record_success(&self) {
        self.inner.failures.store(0, Ordering::Release);
    }

    /// Runs one command under the timeout, feeding the breaker.
    async fn call<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: Cmd,
    ) -> Result<T, RedisUnavailable> {
        self.run(op, None, |mut c| async move { c.query(&cmd).await })
            .await
    }

    /// As [`RedisTier::call`] for a command on one `key`: on a Cluster, its slot
    /// range's breaker is fed instead of the whole tier's.
    async fn call_keyed<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        cmd: Cmd,
    ) -> Result<T, RedisUnavailable> {
        self.run(op, Some(key.as_bytes()), |mut c| async move {
            c.query(&cmd).await
        })
        .await
    }

    /// Hash slots skipped now because their master does not answer (Cluster only).
    pub fn slots_down(&self) -> usize {
        self.inner.slots.as_ref().map_or(0, SlotHealth::slots_down)
    }

    /// Runs `query` on the shared connection: skipped at once while the breaker is open,
    /// bounded by the timeout, counted in `redis_calls_total`, fed to the breaker.
    async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        key: Option<&[u8]>,
        query: F,
    ) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let count = |outcome: &str| self.inner.calls.with_label_values(&[op, outcome]).inc();
        if !self.is_up() {
            count("skipped_down");
            return Err(RedisUnavailable::Down);
        }
        let range = self
            .inner
            .slots
            .as_ref()
            .zip(key)
            .map(|(slots, key)| (slots, SlotHealth::range(key)));
        if let Some((slots, range)) = range
            && slots.skipping(range)
        {
            count("skipped_down");
            return Err(RedisUnavailable::Down);
        }
        let connection = self
            .inner
            .connection
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(connection) = connection else {
            return Err(RedisUnavailable::Down);
        };
        let result = match tokio::time::timeout(self.inner.timeout, query(connection)).await {
            Ok(Ok(v)) => Ok(v),
            // The connection's own response timeout may fire first.
            Ok(Err(e)) if e.is_timeout() => Err(RedisUnavailable::Timeout),
            Ok(Err(e)) => Err(RedisUnavailable::Error(e)),
            Err(_) => Err(RedisUnavailable::Timeout),
        };
        match (&result, range) {
            (Ok(_), None) => {
                count("ok");
                self.record_success();
            }
            (Ok(_), Some((slots, range))) => {
                count("ok");
                slots.succeeded(range);
            }
            (Err(e), range) => {
                count(match e {
                    RedisUnavailable::Timeout => "timeout",
                    _ => "error",
                });
                match range {
                    None => self.record_failure(e),
                    Some((slots, range)) => {
                        let retry_in = self.inner.probe_interval;
                        if slots.failed(range, self.inner.threshold, retry_in)
                            && self.inner.up.swap(false, Ordering::AcqRel)
                        {
                            tracing::warn!(error = %e, "redis cluster is down (no slot range answers): serving from SQLite until it recovers");
                        }
                    }
                }
            }
        }
        result
    }

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
        let mut cmd = redis::cmd("GETRANGE");
        cmd.arg(&redis_key).arg(0).arg(max_value);
        // GETRANGE answers "" for a missing key; no stored value is ever empty.
        let value: Vec<u8> = self.call_keyed("get", &redis_key, cmd).await?;
        if value.is_empty() {
            return Ok(None);
        }
        if value.len() > max_value {
            self.reject("oversized");
            return Ok(None);
        }
        match codec::decode(&value, self.inner.max_entry_bytes) {
            Ok(answer) => Ok((!answer.is_expired()).then_some(answer)),
            Err(corrupt) => {
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
        if !self.is_up() {
            return;
        }
        let ttl_ms = answer.remaining_ttl().as_millis() as u64;
        if ttl_ms == 0 || answer.body.len() > self.inner.max_entry_bytes {
            return;
        }
        let tier = self.clone();
        tokio::spawn(async move {
            let redis_key = tier.redis_key(&answer.namespace, &key);
            let mut cmd = redis::cmd("SET");
            cmd.arg(&redis_key)
                .arg(codec::encode(&answer))
                .arg("PX")
                .arg(ttl_ms);
            let _: Result<(), _> = tier.call_keyed("set", &redis_key, cmd).await;
        });
    }

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

    async fn call_pipeline(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<(), RedisUnavailable> {
        self.run(
            op,
            None,
            |mut c| async move { c.query_pipeline(pipe).await },
        )
        .await
    }

    pub async fn hash_all(&self, key: &str) -> Result<Vec<(String, i64)>, RedisUnavailable> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(key);
        self.call("stats", cmd).await
    }

    /// Deletes every entry (or a namespace's) on every master. Returns keys deleted.
    pub async fn purge(&self, namespace: Option<&str>) -> RedisResult<u64> {
        let patterns: Vec<String> = match namespace {
            None => vec![format!("{}:v1:*", self.inner.prefix)],
            Some(ns) => {
                let ns = glob_escape(ns);
                vec![
                    format!("{}:v1:{ns}:*", self.inner.prefix),
                    format!("{}:v1:{ns}/*", self.inner.prefix),
                ]
            }
        };
        let nodes = match &self.inner.target {
            Target::Single(url) => vec![url.clone()],
            Target::Cluster(seeds) => cluster_masters(seeds, self.inner.connect_timeout).await?,
        };
        let mut deleted = 0;
        for node in nodes {
            let client = redis::Client::open(node.as_str())?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.inner.connect_timeout))
                .set_response_timeout(Some(Duration::from_secs(5)));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            for pattern in &patterns {
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await?;
                    if !keys.is_empty() {
                        // One key per command: keys on a cluster node may span slots.
                        let mut pipe = redis::pipe();
                        for key in &keys {
                            pipe.cmd("UNLINK").arg(key).ignore();
                        }
                        pipe.query_async::<()>(&mut conn).await?;
                        deleted += keys.len() as u64;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        Ok(deleted)
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// URLs of the cluster's masters, built from the first seed that answers `CLUSTER NODES`
/// (credentials and scheme are taken from that seed).
async fn cluster_masters(seeds: &[String], timeout: Duration) -> RedisResult<Vec<String>> {
    let mut last_error = None;
    for seed in seeds {
        let attempt = async {
            let client = redis::Client::open(seed.as_str())?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await?;
            RedisResult::Ok(nodes)
        };
        match attempt.await {
            Ok(nodes) => {
                let Ok(seed_url) = reqwest::Url::parse(seed) else {
                    continue;
                };
                let masters = nodes
                    .lines()
                    .filter_map(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        let flags = fields.get(2)?;
                        if !flags.contains("master") || flags.contains("fail") {
                            return None;
                        }
                        let addr = fields.get(1)?.split('@').next()?;
                        let (host, port) = addr.rsplit_once(':')?;
                        let mut url = seed_url.clone();
                        if !host.is_empty() {
                            url.set_host(Some(host)).ok()?;
                        }
                        url.set_port(port.parse().ok()).ok()?;
                        Some(url.to_string())
                    })
                    .collect();
                return Ok(masters);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Io, "no cluster seed answered"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(hash_slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"bar"), 5061);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(
            hash_slot(b"{}foo"),
            9500,
            "an empty tag hashes the whole key"
        );
    }

    #[test]
    fn one_range_going_down_leaves_the_others_up() {
        let slots = SlotHealth::new();
        let retry = Duration::from_secs(60);
        for _ in 0..2 {
            assert!(!slots.failed(3, 3, retry));
        }
        assert!(!slots.skipping(3), "below the threshold");
        assert!(!slots.failed(3, 3, retry));
        assert!(slots.skipping(3));
        assert!(!slots.skipping(4));
        assert_eq!(slots.slots_down(), 128);
        slots.succeeded(3);
        assert!(!slots.skipping(3));
        assert_eq!(slots.slots_down(), 0);
        let mut all = false;
        for range in 0..SLOT_RANGES {
            all = slots.failed(range, 1, retry);
        }
        assert!(all, "every range down: the tier is down");
    }
}
