//! The relay: its regional endpoints behind one pooled reqwest client (HTTP/1.1
//! keep-alive, HTTP/2 when offered over TLS), chosen by smooth weighted round-robin
//! among healthy primaries (backups only while no primary is available), weights scaled
//! down for regions much slower than the fastest, with a breaker per region and retries
//! under a per-request budget.
//!
//! One client must never harm the others, so:
//! - one request is at most one failure signal per region, however often it retried;
//! - an open breaker steers traffic but never refuses it: when no region is available the
//!   relay still tries the one that has been out longest (Envoy's panic threshold), so a
//!   lone relay is never marked down by a client whose prompt it rejects;
//! - 4xx answers describe the request and never count against a region or a key (a 401
//!   in managed mode only makes its key suspect until a check confirms it).
//!
//! Retries happen only before `send` returns, that is before a byte of the answer has
//! reached the client: connect errors go to the next region at once; timeouts, broken
//! answers and 5xx are retried (after an exponential, jittered backoff) only for
//! idempotent requests, as the relay may have done the work; a 429 rests its key and
//! moves to another key or region, or waits out a short `retry-after`.
//!
//! Answers are never buffered here: the body is a stream whose every chunk must arrive
//! within the idle timeout.

use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, header};
use bytes::Bytes;
use futures_util::Stream;
use tracing::Instrument;

use super::body::{idle_limited, map_reqwest_error};
use super::breaker::{Breaker, BreakerState, Transition};
use super::keys::KeyPool;
use super::latency::PeakEwma;
use super::path::RelayBase;
use super::picker::SmoothWeighted;
use crate::config::{Config, RetryConfig};
use crate::error::ApiError;
use crate::relay::RelayMetrics;

mod choose;
mod judge;
mod probe;

use judge::Verdict;

/// A relay answer body: chunks as they arrive, or the error that ended it.
pub type RelayBody = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>>;

pub struct RelayResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: RelayBody,
    /// Name of the relay region that answered, for `x-relay-region` and analytics.
    pub region: Arc<str>,
}

/// Regions slower than the fastest by less than this keep their configured weight.
const LATENCY_SLACK_SECS: f64 = 0.05;
/// How fast a region's latency estimate forgets a slow spell.
const LATENCY_DECAY: Duration = Duration::from_secs(10);

pub struct Region {
    pub name: Arc<str>,
    base: RelayBase,
    weight: u32,
    pub backup: bool,
    pub breaker: Breaker,
    keys: Arc<KeyPool>,
    latency: Mutex<PeakEwma>,
}

pub struct Relay {
    http: reqwest::Client,
    regions: Vec<Region>,
    weights: Vec<u32>,
    picker: Mutex<SmoothWeighted>,
    managed: bool,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    probe_timeout: Duration,
    retry: RetryConfig,
    metrics: RelayMetrics,
    jitter: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Relay {
    pub fn new(config: &Config, metrics: RelayMetrics) -> Result<Self, String> {
        let relay = &config.relay;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(relay.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            // A proxy must hand redirects to its client, not follow them.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the relay client: {e}"))?;
        let now = Instant::now();
        let regions = config
            .effective_regions()
            .into_iter()
            .map(|r| {
                Ok(Region {
                    weight: config.region_weight(&r),
                    name: Arc::from(r.name.as_str()),
                    base: RelayBase::new(&r.url).map_err(|e| e.to_string())?,
                    backup: r.backup,
                    breaker: Breaker::new(&relay.health),
                    keys: Arc::new(KeyPool::new(&r.keys)?),
                    latency: Mutex::new(PeakEwma::new(LATENCY_DECAY, now)),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        for r in &regions {
            metrics
                .breaker_state
                .with_label_values(&[r.name.as_ref()])
                .set(0);
        }
        Ok(Self {
            http,
            weights: regions.iter().map(|r| r.weight).collect(),
            picker: Mutex::new(SmoothWeighted::new(regions.len())),
            regions,
            managed: config.is_managed(),
            first_byte_timeout: Duration::from_millis(relay.first_byte_timeout_ms),
            idle_timeout: Duration::from_millis(relay.idle_timeout_ms),
            probe_timeout: Duration::from_millis(relay.health.probe_timeout_ms.max(1)),
            retry: relay.retry.clone(),
            metrics,
            jitter: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(7, |d| d.as_nanos() as u64),
            ),
        })
    }

    /// `up` or `down` per region, for `/readyz`.
    pub fn states(&self) -> Vec<(Arc<str>, &'static str)> {
        let now = Instant::now();
        self.regions
            .iter()
            .map(|r| {
                let up = r.breaker.state() == BreakerState::Closed
                    && (!self.managed || r.keys.has_usable(now));
                (r.name.clone(), if up { "up" } else { "down" })
            })
            .collect()
    }

    /// Keys usable now, per region (managed mode).
    pub fn usable_keys(&self) -> Vec<(Arc<str>, usize)> {
        let now = Instant::now();
        self.regions
            .iter()
            .map(|r| (r.name.clone(), r.keys.usable(now)))
            .collect()
    }

    fn report(&self, region: &Region, transition: Transition) {
        let Some((from, to)) = transition else { return };
        let level = match to {
            BreakerState::Open => 2,
            BreakerState::HalfOpen => 1,
            BreakerState::Closed => 0,
        };
        self.metrics
            .breaker_state
            .with_label_values(&[region.name.as_ref()])
            .set(level);
        match to {
            BreakerState::Open => {
                tracing::warn!(region = %region.name, from = from.as_str(), "relay region breaker open: routing around it")
            }
            _ => {
                tracing::info!(region = %region.name, from = from.as_str(), to = to.as_str(), "relay region breaker")
            }
        }
    }

    /// Sends `method {region}{suffix}` (`suffix`: path after `/v1`, with query), retrying
    /// as the module docs say. `idempotent`: the request may be sent twice (cacheable
    /// routes, GET, ...); others are retried only when they never reached the relay.
    /// Resolves once a region's status and headers have arrived.
    pub async fn send(
        &self,
        method: Method,
        suffix: &str,
        headers: HeaderMap,
        body: Bytes,
        idempotent: bool,
    ) -> Result<RelayResponse, ApiError> {
        let started = Instant::now();
        let budget = Duration::from_millis(self.retry.budget_ms);
        let n = self.regions.len();
        let mut tried = vec![false; n];
        let mut signalled = vec![false; n];
        let mut keys_rejected = 0u32;
        let mut last: Option<Result<RelayResponse, ApiError>> = None;
        for attempt in 1..=self.retry.max_attempts {
            let Some((i, permit, panic)) =
                self.choose(&tried).or_else(|| self.choose_in_panic(&tried))
            else {
                break;
            };
            let region = &self.regions[i];
            let url = region.base.join(suffix)?;
            let mut attempt_headers = headers.clone();
            let key = if self.managed {
                let any_usable = self
                    .regions
                    .iter()
                    .any(|r| r.keys.has_usable(Instant::now()));
                match region.keys.next(Instant::now(), panic || !any_usable) {
                    Some((index, value)) => {
                        attempt_headers.insert(header::AUTHORIZATION, value);
                        Some(index)
                    }
                    None => {
                        tried[i] = true;
                        continue;
                    }
                }
            } else {
                None
            };
            let span = crate::telemetry::attempt_span(&region.name, attempt);
            crate::telemetry::inject(&span, &mut attempt_headers);
            let result = self
                .attempt(region, method.clone(), url, attempt_headers, body.clone())
                .instrument(span.clone())
                .await;
            if let Ok(response) = &result {
                span.record("http.response.status_code", response.status.as_u16());
            }
            let verdict = self.judge(
                region,
                key,
                &result,
                &mut signalled[i],
                idempotent,
                &mut keys_rejected,
            );
            // Outcome reported (or deliberately not): a trial slot is free again.
            drop(permit);
            last = Some(result);
            tried[i] = true;
            let wait = match verdict {
                Verdict::Final => break,
                Verdict::Retry => self.backoff(attempt),
                Verdict::Throttled(asked) => {
                    let now = Instant::now();
                    let elsewhere = (0..n).any(|j| {
                        !tried[j]
                            && self.regions[j].breaker.is_available(now)
                            && (!self.managed || self.regions[j].keys.has_usable(now))
                    }) || (self.managed && region.keys.has_usable(now));
                    let cap = Duration::from_millis(self.retry.retry_after_cap_ms);
                    match asked {
                        _ if elsewhere => Duration::ZERO,
                        Some(w) if w > cap => break,
                        Some(w) => w,
                        None => self.backoff(attempt),
                    }
                }
            };
            if attempt == self.retry.max_attempts || started.elapsed() + wait >= budget {
                break;
            }
            self.metrics
                .retries
                .with_label_values(&[region.name.as_ref()])
                .inc();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        match last {
            // The relay refused the operator's key: its body (a masked key, the
            // operator's organization) is not the tenant's business.
            Some(Ok(r)) if self.managed && r.status == StatusCode::UNAUTHORIZED => {
                Err(ApiError::RelayRejectedKey)
            }
            Some(result) => result,
            None => Err(ApiError::NoHealthyRelay),
        }
    }

    async fn attempt(
        &self,
        region: &Region,
        method: Method,
        url: reqwest::Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<RelayResponse, ApiError> {
        let started = Instant::now();
        let request = self.http.request(method, url).headers(headers).body(body);
        let result = match tokio::time::timeout(self.first_byte_timeout, request.send()).await {
            Ok(Ok(response)) => {
                let status = response.status();
                let headers = response.headers().clone();
                Ok(RelayResponse {
                    status,
                    headers,
                    body: idle_limited(response.bytes_stream(), self.idle_timeout),
                    region: region.name.clone(),
                })
            }
            Ok(Err(e)) => Err(map_reqwest_error(&e)),
            Err(_) => Err(ApiError::RelayTimeout("no response headers in time")),
        };
        let elapsed = started.elapsed();
        if !matches!(result, Err(ApiError::RelayUnreachable(_))) {
            lock(&region.latency).observe(elapsed, Instant::now());
        }
        let outcome = match &result {
            Ok(r) => r.status.as_str().to_owned(),
            Err(e) => e.code().to_owned(),
        };
        self.metrics
            .requests
            .with_label_values(&[region.name.as_ref(), outcome.as_str()])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[region.name.as_ref()])
            .observe(elapsed.as_secs_f64());
        result
    }
}
