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

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisResult};
use tokio_util::sync::CancellationToken;

use crate::cache::CacheMetrics;
use crate::clock::Clock;
use crate::config::RedisConfig;
use crate::keying::CacheKey;

mod batch;
mod entries;
mod generations;
mod lease;
mod purge;
mod slots;
mod stats;
mod stream;

pub use generations::ALL;
use slots::SlotHealth;
pub use stream::StreamRecord;

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
    /// `calls{op="get",outcome="ok"}`, resolved on first use.
    get_ok: std::sync::OnceLock<prometheus::IntCounter>,
    /// Bodies above this are neither stored nor read back.
    max_entry_bytes: usize,
    /// Values not served, by reason (`cache_rejected_total{tier="redis"}`).
    rejected: prometheus::IntCounterVec,
    /// Cluster mode: health per slot range.
    slots: Option<SlotHealth>,
    /// Reads expiries: what is expired is a miss, what is left is the `PX` written.
    clock: Clock,
    /// Lookups ready together, sent as one pipeline (standalone Redis).
    lookups: Arc<batch::Lookups>,
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
    /// `None` when neither `REDIS_URL` nor `REDIS_CLUSTER_URLS` is set. For the
    /// command-line tools: counts nothing anyone reads, the system clock.
    pub fn from_config(config: &RedisConfig) -> Option<Self> {
        let metrics = CacheMetrics::unregistered();
        Self::with_limits(config, &metrics, 8 * 1024 * 1024, Clock::system())
    }

    /// As [`RedisTier::from_config`], with the entry size bound, the app's metrics
    /// (`redis_calls_total`, `cache_rejected_total{tier="redis"}`) and clock.
    pub fn with_limits(
        config: &RedisConfig,
        metrics: &CacheMetrics,
        max_entry_bytes: usize,
        clock: Clock,
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
                calls: metrics.redis_calls.clone(),
                get_ok: std::sync::OnceLock::new(),
                max_entry_bytes,
                rejected: metrics.rejected.clone(),
                slots: matches!(target, Target::Cluster(_)).then(SlotHealth::new),
                target,
                clock,
                lookups: Arc::default(),
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

    /// `{prefix}:v1:{namespace}:{key}`. Pieces pushed into one allocation: `format!`
    /// was ~1,500 instructions of a Redis hit's ~9,400 in the tier (callgrind).
    pub fn redis_key(&self, namespace: &str, key: &CacheKey) -> String {
        let (prefix, hex) = (&self.inner.prefix, key.hex_str());
        let mut out = String::with_capacity(prefix.len() + namespace.len() + hex.len() + 5);
        for piece in [prefix.as_ref(), ":v1:", namespace, ":", &hex] {
            out.push_str(piece);
        }
        out
    }

    async fn connect(&self) -> RedisResult<Connection> {
        let inner = &self.inner;
        match &inner.target {
            Target::Single(url) => {
                // The response timeout is what bounds this connection's calls (`run`).
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
        let count = |outcome: &str| {
            if op == "get" && outcome == "ok" {
                // The Redis hit's counter, resolved once.
                self.inner
                    .get_ok
                    .get_or_init(|| self.inner.calls.with_label_values(&["get", "ok"]))
                    .inc();
            } else {
                self.inner.calls.with_label_values(&[op, outcome]).inc();
            }
        };
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
        // A standalone connection bounds every command by its own response timeout (set
        // in `connect` to the same `timeout`, and counted from before the command is
        // queued), so a second timer here only cost a timer entry per call (~600
        // instructions a Redis hit, callgrind). A Cluster connection retries, which its
        // response timeout does not bound: its calls are bounded here.
        let outcome = if matches!(connection, Connection::Single(_)) {
            Ok(query(connection).await)
        } else {
            tokio::time::timeout(self.inner.timeout, query(connection)).await
        };
        let result = match outcome {
            Ok(Ok(v)) => Ok(v),
            // The connection's own response timeout: the only one for a standalone
            // connection, and it may fire before ours for a Cluster.
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
}
