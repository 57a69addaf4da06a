//! What this crate's own tests and benches reach inside for, behind the `testing`
//! feature (enabled only by the crate's dev-dependency on itself): the pure pieces they
//! test in isolation (keys, request checks, the value codec, the semantic index) and
//! hooks on a running app's state. Nothing here is part of the gateway's interface.

use crate::clock::Clock;
use crate::keying::CacheKey;
use crate::state::AppState;

pub mod analytics {
    pub use crate::analytics::{Agreement, AnalyticsWriter, CacheEvent, Outcome, shadow};
}

pub mod cache {
    pub use crate::cache::{AnswerFacts, CachedAnswer, StreamRecorder, codec};
}

pub mod endpoint {
    pub use crate::endpoint::Endpoint;
}

pub mod keying {
    pub use crate::keying::{CacheKey, KeyOptions, cache_key, canonical_bytes};
}

pub mod request {
    pub use crate::request::CacheableRequest;
}

pub mod semantic {
    pub use crate::semantic::{embed, index, verify};
}

pub mod telemetry {
    pub use crate::telemetry::{exporting, init};
}

/// Hooks on a running app, so tests wait for and observe what they assert on.
impl AppState {
    /// The app's clock: `advance` it to expire entries without waiting.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Waits until every analytics row queued so far is committed.
    pub async fn flush_analytics(&self) {
        self.analytics.writer.flush().await;
    }

    /// Waits until every SQLite cache write queued so far is committed.
    pub async fn flush_sqlite(&self) {
        self.cache.sqlite().flush().await;
    }

    /// Requests waiting on the relay call in flight for `key` (single flight).
    pub fn waiting_on(&self, key: &CacheKey) -> usize {
        self.flights.waiting(key)
    }

    /// No relay call in flight.
    pub fn no_flights(&self) -> bool {
        self.flights.is_empty()
    }

    /// Empties L1 (as a restart would) and nothing else.
    pub fn purge_l1(&self) {
        self.cache.l1().purge(None);
    }

    /// Entries in the semantic index; `None` when the semantic tier is off.
    pub fn semantic_entries(&self) -> Option<i64> {
        self.semantic
            .as_ref()
            .map(|_| self.metrics.semantic.entries.get())
    }

    /// Requests waiting now for another instance's answer.
    pub fn remote_waiting(&self) -> i64 {
        self.metrics.cache.remote_waiting.get()
    }

    /// Would-be semantic hits judged against the fresh answer so far (shadow mode).
    pub fn shadow_judged(&self) -> u64 {
        ["agree", "disagree", "refused"]
            .iter()
            .map(|o| self.metrics.semantic.shadow.with_label_values(&[o]).get())
            .sum()
    }

    /// `remote_flights_total{outcome}`.
    pub fn remote_flights(&self, outcome: &str) -> u64 {
        self.metrics
            .cache
            .remote_flights
            .with_label_values(&[outcome])
            .get()
    }
}
