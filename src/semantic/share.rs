//! One semantic cache across regions: every instance appends what it remembers (and its
//! purges) to one Redis Stream and tails it, so a paraphrase asked in `sin` finds the
//! answer first given in `cdg` (the answer itself is read from Redis like any L2 hit).
//! A new instance reads the stream from its start (bounded by `semantic.max_entries`
//! records), after what it kept in SQLite.
//!
//! Records: `op=put` with the entry's fields, or `op=purge` with a namespace (empty for
//! all) and the time of the purge: entries created before it are forgotten, wherever
//! and whenever the record is read.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::SemanticCache;
use crate::cache::{
    RedisTier, RedisUnavailable, SemanticRow, StreamRecord, vector_bytes, vector_from_bytes,
};
use crate::keying::CacheKey;

/// Records read per XRANGE.
const BATCH: usize = 512;
/// How often expired entries are swept and tombstone-heavy partitions rebuilt.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

impl SemanticCache {
    pub(super) async fn publish(&self, row: &SemanticRow) {
        let Some(redis) = &self.redis else { return };
        let (partition, key) = (row.partition.to_hex(), row.key.to_hex());
        let vector = vector_bytes(&row.vector);
        let (created, expires) = (row.created_ms.to_string(), row.expires_ms.to_string());
        let fields: [(&str, &[u8]); 9] = [
            ("op", b"put"),
            ("p", partition.as_bytes()),
            ("k", key.as_bytes()),
            ("n", row.namespace.as_bytes()),
            ("e", row.embedder.as_bytes()),
            ("t", row.text.as_bytes()),
            ("v", &vector),
            ("c", created.as_bytes()),
            ("x", expires.as_bytes()),
        ];
        let stream = redis.semantic_stream_key();
        if redis
            .stream_add(&stream, &fields, self.config.max_entries)
            .await
            .is_ok()
        {
            self.metrics.shared.with_label_values(&["published"]).inc();
        }
    }

    pub(super) async fn publish_purge(&self, namespace: Option<&str>, at_ms: u64) {
        let Some(redis) = &self.redis else { return };
        if let Err(e) = publish_purge(redis, namespace, at_ms, self.config.max_entries).await {
            tracing::warn!(error = %e, "semantic purge not shared: other regions keep their semantic entries until TTL");
        }
    }

    /// Applies one record from the stream; returns whether it changed the index.
    fn apply(&self, fields: &[(String, Vec<u8>)]) -> bool {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, v)| v.as_slice())
        };
        let text = |name: &str| get(name).and_then(|v| std::str::from_utf8(v).ok());
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        match text("op") {
            Some("purge") => {
                let namespace = text("n").filter(|n| !n.is_empty());
                let Some(at) = number("c") else { return false };
                self.index.purge(namespace, at) > 0
            }
            Some("put") => {
                if text("e") != Some(&*self.embedder_id) {
                    return false;
                }
                let parsed = (|| {
                    let partition = CacheKey::from_hex(text("p")?)?;
                    let key = CacheKey::from_hex(text("k")?)?;
                    Some(SemanticRow {
                        partition,
                        key,
                        namespace: Arc::from(text("n")?),
                        embedder: self.embedder_id.clone(),
                        text: Arc::from(text("t")?),
                        vector: vector_from_bytes(get("v")?)?,
                        created_ms: number("c")?,
                        expires_ms: number("x")?,
                    })
                })();
                match parsed {
                    Some(row)
                        if row.expires_ms > self.clock.now_ms()
                            && !self.index.contains(&row.partition, &row.key) =>
                    {
                        self.insert(&row);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// Tails the shared stream and sweeps the index until `stop`.
    pub fn spawn_background(self: &Arc<Self>, stop: CancellationToken) {
        if self.redis.is_some() {
            let this = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move { this.tail(stop).await });
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(SWEEP_EVERY) => {}
                }
                this.index.sweep(this.clock.now_ms());
                let index = this.clone();
                let _ = tokio::task::spawn_blocking(move || index.index.compact()).await;
                this.metrics.entries.set(this.index.len() as i64);
            }
        });
    }

    async fn tail(&self, stop: CancellationToken) {
        let Some(redis) = &self.redis else { return };
        let stream = redis.semantic_stream_key();
        let poll = Duration::from_millis(self.config.share_poll_ms);
        let mut after: Option<String> = None;
        loop {
            let records: Vec<StreamRecord> = if redis.is_up() {
                redis
                    .stream_after(&stream, after.as_deref(), BATCH)
                    .await
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let full = records.len() == BATCH;
            for (id, fields) in &records {
                if self.apply(fields) {
                    self.metrics.shared.with_label_values(&["received"]).inc();
                }
                after = Some(id.clone());
            }
            if !records.is_empty() {
                self.metrics.entries.set(self.index.len() as i64);
            }
            if full {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// Tells every instance to forget semantic entries (all, or a namespace's) created up to
/// `at_ms`; `cache purge` on the command line uses it too.
pub async fn publish_purge(
    redis: &RedisTier,
    namespace: Option<&str>,
    at_ms: u64,
    max_len: usize,
) -> Result<(), RedisUnavailable> {
    // No stream: no instance ever shared a semantic entry, there is nothing to forget.
    if !redis.stream_exists(&redis.semantic_stream_key()).await? {
        return Ok(());
    }
    let at = at_ms.to_string();
    let fields: [(&str, &[u8]); 3] = [
        ("op", b"purge"),
        ("n", namespace.unwrap_or("").as_bytes()),
        ("c", at.as_bytes()),
    ];
    redis
        .stream_add(&redis.semantic_stream_key(), &fields, max_len)
        .await
        .map(drop)
}
