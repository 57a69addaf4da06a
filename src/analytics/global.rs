//! The cross-region view. Each instance adds its counts to per-hour Redis hashes
//! (`{prefix}:stats:v1:{region}:{hour}`, one key per command, so Cluster-safe), flushed
//! every few seconds off the request path; counts that cannot be flushed (Redis down)
//! are kept and added on the next successful flush. Any instance or the CLI can then sum
//! every region's figures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::event::CacheEvent;
use crate::cache::RedisTier;

const HOUR_MS: u64 = 3_600_000;
/// Hour buckets outlive the longest sensible report range.
const KEEP_SECS: u64 = 400 * 86_400;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    pub requests: i64,
    pub hits: i64,
    pub tokens_saved: i64,
    /// Nano-dollars, so Redis adds them as exact integers (a small request costs a
    /// few micro-dollars: coarser units would round every event).
    pub saved_nano_usd: i64,
    pub spent_nano_usd: i64,
}

impl Counts {
    const FIELDS: [&'static str; 5] = [
        "requests",
        "hits",
        "tokens_saved",
        "saved_nano_usd",
        "spent_nano_usd",
    ];

    fn values(&self) -> [i64; 5] {
        [
            self.requests,
            self.hits,
            self.tokens_saved,
            self.saved_nano_usd,
            self.spent_nano_usd,
        ]
    }

    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.tokens_saved += other.tokens_saved;
        self.saved_nano_usd += other.saved_nano_usd;
        self.spent_nano_usd += other.spent_nano_usd;
    }

    fn set(&mut self, field: &str, value: i64) {
        match field {
            "requests" => self.requests = value,
            "hits" => self.hits = value,
            "tokens_saved" => self.tokens_saved = value,
            "saved_nano_usd" => self.saved_nano_usd = value,
            "spent_nano_usd" => self.spent_nano_usd = value,
            _ => {}
        }
    }
}

#[derive(Clone)]
pub struct GlobalCounters {
    region: Arc<str>,
    pending: Arc<Mutex<BTreeMap<u64, Counts>>>,
}

impl GlobalCounters {
    pub fn new(region: Arc<str>) -> Self {
        Self {
            region,
            pending: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Counts>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn record(&self, event: &CacheEvent) {
        let hit = event.tier.is_hit();
        let c = Counts {
            requests: 1,
            hits: i64::from(hit),
            tokens_saved: if hit {
                (event.prompt_tokens + event.completion_tokens) as i64
            } else {
                0
            },
            saved_nano_usd: (event.saved_usd * 1e9).round() as i64,
            spent_nano_usd: (event.cost_usd * 1e9).round() as i64,
        };
        self.lock()
            .entry(event.ts_ms / HOUR_MS * HOUR_MS)
            .or_default()
            .add(&c);
    }

    /// Sends pending counts to Redis; what fails is kept for the next attempt.
    pub async fn flush(&self, redis: &RedisTier) {
        let pending = std::mem::take(&mut *self.lock());
        if pending.is_empty() {
            return;
        }
        let mut failed = BTreeMap::new();
        if redis
            .add_to_set(&redis.stats_regions_key(), &self.region)
            .await
            .is_err()
        {
            failed = pending;
        } else {
            for (hour, counts) in pending {
                let key = redis.stats_key(&self.region, hour);
                let fields: Vec<(&str, i64)> =
                    Counts::FIELDS.into_iter().zip(counts.values()).collect();
                if redis.add_to_hash(&key, &fields, KEEP_SECS).await.is_err() {
                    failed.insert(hour, counts);
                }
            }
        }
        if !failed.is_empty() {
            let mut pending = self.lock();
            for (hour, counts) in failed {
                pending.entry(hour).or_default().add(&counts);
            }
        }
    }

    pub fn spawn_flusher(&self, redis: RedisTier, every: Duration, stop: CancellationToken) {
        let counters = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => {
                        counters.flush(&redis).await;
                        return;
                    }
                    () = tokio::time::sleep(every) => counters.flush(&redis).await,
                }
            }
        });
    }
}

/// Every region's counts summed over `[since_ms, until_ms)`, by region.
pub async fn read_global(
    redis: &RedisTier,
    since_ms: u64,
    until_ms: u64,
) -> Result<BTreeMap<String, Counts>, String> {
    let regions = redis
        .set_members(&redis.stats_regions_key())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for region in regions {
        let mut total = Counts::default();
        let mut hour = since_ms / HOUR_MS * HOUR_MS;
        while hour < until_ms {
            let fields = redis
                .hash_all(&redis.stats_key(&region, hour))
                .await
                .map_err(|e| e.to_string())?;
            let mut c = Counts::default();
            for (field, value) in fields {
                c.set(&field, value);
            }
            total.add(&c);
            hour += HOUR_MS;
        }
        out.insert(region, total);
    }
    Ok(out)
}
