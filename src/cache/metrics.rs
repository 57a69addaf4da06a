//! The cache tiers' metrics, registered by the cache itself.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use crate::metrics::Registrar;

/// Tier health, Redis calls, what was refused or not stored, and cross-instance
/// coordination (purges, remote single flight).
#[derive(Clone)]
pub struct CacheMetrics {
    pub tier_up: IntGaugeVec,
    pub tier_enabled: IntGaugeVec,
    pub redis_slots_down: IntGauge,
    pub redis_calls: IntCounterVec,
    /// Entries neither stored nor served (`tier`, `reason`).
    pub rejected: IntCounterVec,
    pub answers_not_stored: IntCounterVec,
    /// Purges made by other instances applied to this one's L1 and SQLite.
    pub purge_generations_seen: IntCounter,
    /// Cross-instance single flight, by `outcome`: leader (took the lease), coalesced
    /// (served another instance's answer), wait_timeout, leader_gone.
    pub remote_flights: IntCounterVec,
    /// Requests waiting now for another instance's answer.
    pub remote_waiting: IntGauge,
}

impl CacheMetrics {
    pub fn register(r: &Registrar<'_>) -> Self {
        Self {
            tier_up: r.gauge_vec(
                "cache_tier_up",
                "1 when a configured cache tier is up, 0 when down (absent when not configured)",
                &["tier"],
            ),
            tier_enabled: r.gauge_vec(
                "cache_tier_enabled",
                "1 when a cache tier is configured, 0 when it is not (Redis without REDIS_URL)",
                &["tier"],
            ),
            redis_slots_down: r.gauge(
                "redis_slots_down",
                "Redis Cluster hash slots skipped now because their master does not answer",
            ),
            redis_calls: r.counter_vec(
                "redis_calls_total",
                "Redis calls by operation (get, set) and outcome (ok, error, timeout, skipped_down)",
                &["op", "outcome"],
            ),
            rejected: r.counter_vec(
                "cache_rejected_total",
                "Entries neither stored nor served: oversized, or a stored value that failed its checks",
                &["tier", "reason"],
            ),
            answers_not_stored: r.counter_vec(
                "answers_not_stored_total",
                "Relay answers passed on but not stored (incomplete or not cacheable), by reason",
                &["reason"],
            ),
            purge_generations_seen: r.counter(
                "purge_generations_seen_total",
                "Purges made by other instances (new purge generations) applied to this instance's L1 and SQLite",
            ),
            remote_flights: r.counter_vec(
                "remote_flights_total",
                "Misses coordinated with other instances through a Redis lease, by outcome",
                &["outcome"],
            ),
            remote_waiting: r.gauge(
                "remote_flight_waiting",
                "Requests waiting for another instance's answer",
            ),
        }
    }

    /// A group in a registry of its own, for the command-line tools that talk to Redis
    /// without serving `/metrics`.
    pub fn unregistered() -> Self {
        Self::register(&Registrar(&prometheus::Registry::new()))
    }
}
