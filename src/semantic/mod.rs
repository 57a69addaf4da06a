//! The semantic cache (SPEC.md "Semantic cache"): after every exact tier missed, a
//! question may be served the stored answer of an earlier question that means the same.
//!
//! - [`probe`]: what is compared by meaning (the last user message) and what must match
//!   exactly (the partition: everything else);
//! - [`embed`]: the question's vector, from the relay or a local model, cached by text;
//! - [`index`]: nearest neighbours per partition, bounded, with TTL;
//! - [`verifier`]: the last word: numbers, negation, polarity, names, scope must agree;
//! - [`share`]: entries and purges reach every region through a Redis Stream, and
//!   survive a restart in SQLite.
//!
//! The answer itself is never copied: an entry points at the exact key it was stored
//! under, so purges and TTL of the exact tiers apply to semantic hits too.

use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::cache::{RedisTier, SemanticRow, SqliteTier};
use crate::clock::Clock;
use crate::config::{SemanticConfig, SemanticMode};
use crate::endpoint::Endpoint;
use crate::keying::{CacheKey, KeyOptions};
use crate::relay::Relay;

pub mod embed;
pub mod index;
mod metrics;
pub mod probe;
mod share;
pub mod verifier;

pub use embed::{EmbedError, Embedded, Embedder, EmbeddingCache};
pub use index::{Candidate, Entry, Index};
pub use metrics::SemanticMetrics;
pub use probe::Probe;
pub use share::publish_purge;
pub use verifier::{Reason, verify};

/// Memory for vectors of questions seen (by exact text).
const EMBEDDING_CACHE_BYTES: u64 = 64 * 1024 * 1024;

pub struct SemanticCache {
    config: SemanticConfig,
    embedder: Embedder,
    /// Names the embedder: vectors of different embedders never compare.
    embedder_id: Arc<str>,
    embeddings: EmbeddingCache,
    index: Index,
    redis: Option<RedisTier>,
    sqlite: SqliteTier,
    metrics: SemanticMetrics,
    clock: Clock,
}

impl SemanticCache {
    /// `None` when the semantic cache is off for every namespace.
    pub fn new(
        config: &SemanticConfig,
        relay: Arc<Relay>,
        redis: Option<RedisTier>,
        sqlite: SqliteTier,
        metrics: SemanticMetrics,
        clock: Clock,
    ) -> Result<Option<Self>, EmbedError> {
        let used = config.mode != SemanticMode::Off
            || config.namespaces.values().any(|m| *m != SemanticMode::Off);
        if !used {
            return Ok(None);
        }
        let (embedder, embedder_id) =
            Embedder::from_config(&config.embedder, &config.embedding_model, relay)?;
        Ok(Some(Self {
            config: config.clone(),
            embedder,
            embedder_id,
            embeddings: EmbeddingCache::new(EMBEDDING_CACHE_BYTES),
            index: Index::new(config.max_entries),
            redis,
            sqlite,
            metrics,
            clock,
        }))
    }

    pub fn metrics(&self) -> &SemanticMetrics {
        &self.metrics
    }

    pub fn embedding_model(&self) -> Option<&str> {
        match self.embedder {
            Embedder::Relay { .. } => Some(&self.config.embedding_model),
            Embedder::Local(_) => None,
        }
    }

    /// The mode for a caller's namespace (before any `x-cache-namespace` partition).
    pub fn mode_for(&self, namespace: &str) -> SemanticMode {
        self.config
            .namespaces
            .get(namespace)
            .copied()
            .unwrap_or(self.config.mode)
    }

    pub fn probe(
        &self,
        endpoint: Endpoint,
        namespace: &str,
        body: &Map<String, Value>,
        options: KeyOptions,
    ) -> Option<Probe> {
        probe::probe(
            endpoint,
            namespace,
            body,
            options,
            self.config.max_text_chars,
        )
    }

    /// The question's vector (cached by text); `headers` pay for a relay embedding.
    pub async fn embed(&self, text: &str, headers: &HeaderMap) -> Result<Embedded, EmbedError> {
        let (embedded, fresh, seconds) = self
            .embeddings
            .get_or_embed(&self.embedder, &self.embedder_id, text, headers)
            .await?;
        self.metrics
            .embedding_seconds
            .with_label_values(&[self.embedder.kind(), if fresh { "no" } else { "yes" }])
            .observe(seconds);
        Ok(embedded)
    }

    pub fn threshold(&self) -> f32 {
        self.config.threshold
    }

    /// Entries of the partition at or above `floor`, most similar first.
    pub fn candidates(&self, partition: &CacheKey, vector: &[f32], floor: f32) -> Vec<Candidate> {
        let threshold = floor;
        let mut found = self.index.search(
            partition,
            vector,
            self.config.candidates,
            self.clock.now_ms(),
        );
        found.retain(|c| c.similarity >= threshold);
        found
    }

    /// The verifier's verdict on serving `candidate` for `asked` (refusals counted).
    pub fn verify(&self, candidate: &Candidate, asked: &str) -> Result<(), Reason> {
        verify(&candidate.entry.text, asked).inspect_err(|reason| {
            self.metrics
                .rejections
                .with_label_values(&[reason.as_str()])
                .inc();
        })
    }

    /// Forgets an entry whose answer is gone from the exact tiers.
    pub fn forget(&self, partition: &CacheKey, key: &CacheKey) {
        self.index.forget(partition, key);
    }

    pub fn count(&self, outcome: &str) {
        self.metrics.lookups.with_label_values(&[outcome]).inc();
    }

    /// Remembers that the answer stored under `key` answered `probe`: in the index, in
    /// SQLite (for a restart) and in the shared stream (for the other regions).
    pub fn remember(
        self: &Arc<Self>,
        probe: &Probe,
        vector: Arc<[f32]>,
        key: CacheKey,
        namespace: Arc<str>,
        expires_ms: u64,
    ) {
        let row = SemanticRow {
            partition: probe.partition,
            key,
            namespace,
            embedder: self.embedder_id.clone(),
            text: Arc::from(probe.text.as_str()),
            vector,
            created_ms: self.clock.now_ms(),
            expires_ms,
        };
        self.insert(&row);
        self.sqlite.put_semantic(row.clone());
        if self.redis.is_some() {
            let this = self.clone();
            tokio::spawn(async move { this.publish(&row).await });
        }
    }

    fn insert(&self, row: &SemanticRow) {
        self.index.insert(
            row.partition,
            Arc::new(Entry {
                key: row.key,
                namespace: row.namespace.clone(),
                text: row.text.clone(),
                vector: row.vector.clone(),
                created_ms: row.created_ms,
                expires_ms: row.expires_ms,
            }),
        );
        self.metrics.entries.set(self.index.len() as i64);
    }

    /// Forgets every entry (or a namespace's) here, and tells the other regions.
    pub async fn purge(&self, namespace: Option<&str>) -> usize {
        let at = self.clock.now_ms();
        let gone = self.index.purge(namespace, at);
        self.metrics.entries.set(self.index.len() as i64);
        self.publish_purge(namespace, at).await;
        gone
    }

    /// Forgets, here only, what a purge made elsewhere covered.
    pub fn forget_namespace(&self, namespace: Option<&str>) {
        self.index.purge(namespace, self.clock.now_ms());
        self.metrics.entries.set(self.index.len() as i64);
    }

    /// Reads back what this instance remembered before a restart.
    pub async fn load(&self) -> usize {
        let rows = self
            .sqlite
            .semantic_rows(&self.embedder_id, self.config.max_entries)
            .await;
        for row in &rows {
            self.insert(row);
        }
        rows.len()
    }
}
