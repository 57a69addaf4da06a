//! The shared state every handler sees: configuration, the cache tiers, the relay,
//! analytics, limits and metrics, built once by [`AppState::new`]. Handlers depend on
//! this module; `app` builds it and serves the router, so nothing points back.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use axum::http::HeaderValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::analytics::{Analytics, AnalyticsMetrics, AnalyticsWriter, GlobalCounters, Pricing};
use crate::auth::Authenticator;
use crate::cache::{
    CacheMetrics, FastPath, Flights, L1Cache, RedisTier, SqliteTier, TieredCache, Usage,
};
use crate::clock::Clock;
use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::keying::KeyOptions;
use crate::limits::RateLimits;
use crate::metrics::{HttpMetrics, Registrar};
use crate::relay::{Relay, RelayMetrics};
use crate::semantic::{SemanticCache, SemanticMetrics};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Relay(String),
    #[error("cannot open the SQLite database: {0}")]
    Database(#[from] crate::db::DbError),
    #[error("{0}")]
    Setup(String),
}

/// Shared, read-mostly state every handler sees.
pub struct Shared {
    pub(crate) config: Config,
    /// The one clock every part of this app reads (tests move it forward).
    pub(crate) clock: Clock,
    pub(crate) auth: Authenticator,
    pub(crate) relay: Arc<Relay>,
    pub(crate) metrics: Metrics,
    pub(crate) cache: TieredCache,
    pub(crate) fast_path: FastPath,
    pub(crate) flights: Arc<Flights>,
    pub(crate) key_options: KeyOptions,
    pub(crate) analytics: Analytics,
    pub(crate) limits: RateLimits,
    /// The semantic tier; `None` when it is off for every namespace.
    pub(crate) semantic: Option<Arc<SemanticCache>>,
    /// `/v1/*` requests being served now (the in-flight limit).
    pub(crate) in_flight: AtomicUsize,
    /// Names this process in Redis leases (region, pid, start time).
    pub(crate) instance_id: Arc<str>,
    /// `x-edge-region`, built once.
    pub(crate) region_header: HeaderValue,

    /// Relay calls and streams that outlive their client's connection; shutdown waits
    /// for them within the grace period.
    pub(crate) work: tokio_util::task::TaskTracker,
    /// Cancelled when the grace period is over: unfinished relay work stops and still
    /// records its analytics row.
    pub(crate) cut: CancellationToken,
}

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `/readyz` reports.
pub struct Readiness {
    pub ready: bool,
    pub body: Value,
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, StartError> {
        let clock = Clock::system();
        let auth =
            Authenticator::from_config(&config).map_err(|e| StartError::Setup(e.to_string()))?;

        let region_header = HeaderValue::from_str(&config.edge_region)
            .map_err(|_| StartError::Setup("EDGE_REGION is not a valid header value".into()))?;
        let sqlite = SqliteTier::open(
            &config.sqlite.path,
            config.sqlite.max_cache_bytes,
            Duration::from_secs(config.sqlite.cleanup_interval_secs),
            clock.clone(),
        )?;
        let metrics = Metrics::new();
        let relay =
            Arc::new(Relay::new(&config, metrics.relay.clone()).map_err(StartError::Relay)?);
        let cache = TieredCache::new(
            L1Cache::new(config.cache.l1_max_bytes, clock.clone()),
            RedisTier::with_limits(
                &config.redis,
                &metrics.cache,
                config.cache.max_entry_bytes,
                clock.clone(),
            ),
            sqlite,
        )
        .with_entry_limit(config.cache.max_entry_bytes, metrics.cache.rejected.clone());
        let semantic = SemanticCache::new(
            &config.semantic,
            relay.clone(),
            cache.redis().cloned(),
            cache.sqlite().clone(),
            metrics.semantic.clone(),
            clock.clone(),
        )
        .map_err(|e| StartError::Setup(e.to_string()))?
        .map(Arc::new);
        let region: Arc<str> = Arc::from(config.edge_region.as_str());
        let region_name = region.clone();
        let analytics = Analytics {
            enabled: config.analytics.enabled,
            writer: AnalyticsWriter::start_reporting(
                &config.sqlite.path,
                region.clone(),
                config.analytics.retention_days,
                config.analytics.queue_capacity,
                cache.sqlite().health(),
                clock.clone(),
            )?,
            global: cache.redis().map(|_| GlobalCounters::new(region)),
            pricing: Pricing::new(&config.pricing),
            metrics: metrics.analytics.clone(),
        };
        let key_options = KeyOptions {
            case_insensitive: config.normalize.case_insensitive,
        };
        let limits = RateLimits::new(&config.rate_limit);
        let fast_path = FastPath::new(
            config.cache.fast_path_bytes,
            config.cache.fast_path_max_body_bytes,
        );
        let instance_started = clock.now_ms();
        Ok(Self(Arc::new(Shared {
            config,
            clock,
            auth,
            relay,
            metrics,
            fast_path,
            cache,
            flights: Arc::new(Flights::default()),
            key_options,
            analytics,
            limits,
            semantic,
            instance_id: Arc::from(format!(
                "{}-{}-{}",
                region_name,
                std::process::id(),
                instance_started
            )),
            in_flight: AtomicUsize::new(0),
            region_header,
            work: tokio_util::task::TaskTracker::new(),
            cut: CancellationToken::new(),
        })))
    }

    /// Takes one request from the caller's rate-limit bucket.
    pub fn rate_limit(&self, caller: &Arc<str>) -> Result<(), ApiError> {
        self.limits
            .check(caller)
            .inspect_err(|_| self.metrics.http.rate_limited.inc())
    }

    /// Counts one cacheable request by how it was answered.
    pub fn count(&self, endpoint: Endpoint, tier: &str) {
        self.metrics.http.resolved.cache_request(endpoint, tier);
    }

    pub fn readiness(&self) -> Readiness {
        let mut tiers = serde_json::Map::new();
        for (tier, state) in self.cache.states() {
            tiers.insert(tier.into(), json!(state));
        }
        let mut relay = serde_json::Map::new();
        let mut any_up = false;
        for (name, state) in self.relay.states() {
            any_up |= state == "up";
            relay.insert(name.to_string(), json!(state));
        }
        // Hits are served whatever the relay's state; misses need a region.
        Readiness {
            ready: any_up,
            body: json!({
                "status": if any_up { "ready" } else { "degraded" },
                "region": self.config.edge_region,
                "tiers": tiers,
                "relay": relay,
            }),
        }
    }

    /// USD the relay charges for `usage` of `model` (0 when the model has no price).
    pub fn price(&self, model: &str, usage: Usage) -> f64 {
        self.analytics
            .price(model, usage.prompt_tokens, usage.completion_tokens)
    }

    /// Refreshes gauges that reflect live state, just before `/metrics` renders.
    pub fn refresh_gauges(&self) {
        self.analytics.refresh_metrics();
        let cache = &self.metrics.cache;
        for (tier, state) in self.cache.states() {
            let enabled = state != "disabled";
            cache
                .tier_enabled
                .with_label_values(&[tier])
                .set(i64::from(enabled));
            // A tier that is not configured is not down: no `up` series, so an alert
            // on `cache_tier_up == 0` means a real outage.
            if enabled {
                cache
                    .tier_up
                    .with_label_values(&[tier])
                    .set(i64::from(state == "up"));
            }
        }
        let dropped = self.cache.sqlite().dropped_writes();
        if dropped > 0 {
            let counted = cache.rejected.with_label_values(&["sqlite", "queue_full"]);
            counted.inc_by(dropped.saturating_sub(counted.get()));
        }
        if let Some(redis) = self.cache.redis() {
            cache.redis_slots_down.set(redis.slots_down() as i64);
        }
        if self.config.is_managed() {
            for (region, usable) in self.relay.usable_keys() {
                self.metrics
                    .relay
                    .keys_usable
                    .with_label_values(&[region.as_ref()])
                    .set(usable as i64);
            }
        }
    }
}

/// Every module's metrics, in the app's one registry (`/metrics` renders it).
pub struct Metrics {
    registry: prometheus::Registry,
    pub http: HttpMetrics,
    pub cache: CacheMetrics,
    pub relay: RelayMetrics,
    pub analytics: AnalyticsMetrics,
    pub semantic: SemanticMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = crate::metrics::registry();
        let r = Registrar(&registry);
        Self {
            http: HttpMetrics::register(&r),
            cache: CacheMetrics::register(&r),
            relay: RelayMetrics::register(&r),
            analytics: AnalyticsMetrics::register(&r),
            semantic: SemanticMetrics::register(&r),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        crate::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
