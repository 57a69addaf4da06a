//! Prometheus plumbing, one registry per app (so tests running several apps in one
//! process never mix figures). Each module declares and registers its own group
//! ([`HttpMetrics`] here; `CacheMetrics`, `RelayMetrics`, `AnalyticsMetrics` and
//! `SemanticMetrics` beside the code that counts them) through a [`Registrar`]; `state`
//! holds the groups together. Label values are low-cardinality by construction: route
//! templates, status codes, tier and region names; never keys, tenants or prompts.

mod http;
mod resolved;

pub use http::{ConnMetrics, HttpMetrics};
pub use resolved::Resolved;

use prometheus::{
    Counter, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds, from 100 µs (a cache hit) to a minute (a long relay answer).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// A registry whose series are all named `edge_gateway_*`.
pub fn registry() -> Registry {
    Registry::new_custom(Some("edge_gateway".into()), None)
        .expect("static registry prefix is valid")
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::with_capacity(8 * 1024);
    // Encoding into a Vec cannot fail for well-formed metrics.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Creates a metric and registers it in one step. Names and labels are literals in the
/// code, so an invalid or duplicate one is a bug found at start, never at request time.
pub struct Registrar<'a>(pub &'a Registry);

impl Registrar<'_> {
    fn keep<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.0
            .register(Box::new(metric.clone()))
            .expect("metric names are unique");
        metric
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.keep(IntCounter::new(name, help).expect("valid metric"))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.keep(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A counter of dollars (fractional).
    pub fn dollars(&self, name: &str, help: &str) -> Counter {
        self.keep(Counter::new(name, help).expect("valid metric"))
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.keep(IntGauge::new(name, help).expect("valid metric"))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.keep(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A histogram of seconds with [`LATENCY_BUCKETS`].
    pub fn seconds(&self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        self.keep(HistogramVec::new(opts, labels).expect("valid metric"))
    }
}
