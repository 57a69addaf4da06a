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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::breaker::{Breaker, BreakerState, Transition, Trial};
use super::keys::{KeyPool, retry_after};
use super::latency::{PeakEwma, latency_weights};
use super::path::relay_url;
use super::picker::SmoothWeighted;
use crate::config::{Config, RetryConfig};
use crate::error::ApiError;
use crate::metrics::RelayMetrics;

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
    base: Arc<str>,
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

/// How one attempt ended, for the retry decision.
enum Verdict {
    Final,
    Retry,
    /// 429: another key or region now, else wait out `retry-after` if it is short.
    Throttled(Option<Duration>),
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
                    base: r.url.trim_end_matches('/').into(),
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

    pub fn regions(&self) -> &[Region] {
        &self.regions
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

    /// The weights for the next pick: configured, scaled down for slow regions.
    fn current_weights(&self) -> Vec<u32> {
        let latency: Vec<Option<f64>> = self
            .regions
            .iter()
            .map(|r| lock(&r.latency).estimate())
            .collect();
        let mut out = Vec::with_capacity(self.regions.len());
        latency_weights(&self.weights, &latency, LATENCY_SLACK_SECS, &mut out);
        out
    }

    /// The region for the next attempt: an untried available primary; else an untried
    /// backup (this request found no primary that works); else a tried primary again,
    /// then a tried backup. So backups carry traffic only while primaries fail. When no
    /// region is available at all, panic mode: the same order over every region that
    /// has a key, ignoring breakers (refusing would fail every client for certain).
    /// Returns the region, its breaker permit, and whether this is a panic pick.
    fn choose(&self, tried: &[bool]) -> Option<(usize, Trial<'_>, bool)> {
        let now = Instant::now();
        let weights = self.current_weights();
        let available = |i: usize| {
            let r = &self.regions[i];
            r.breaker.is_available(now) && (!self.managed || r.keys.has_usable(now))
        };
        let pick_in_order = |eligible: &dyn Fn(usize) -> bool| {
            let mut picker = lock(&self.picker);
            let primary = |i: usize| !self.regions[i].backup && eligible(i);
            let backup = |i: usize| self.regions[i].backup && eligible(i);
            picker
                .pick(&weights, |i| primary(i) && !tried[i])
                .or_else(|| picker.pick(&weights, |i| backup(i) && !tried[i]))
                .or_else(|| picker.pick(&weights, primary))
                .or_else(|| picker.pick(&weights, backup))
        };
        for _ in 0..=self.regions.len() {
            let chosen = pick_in_order(&available)?;
            let (permit, transition) = self.regions[chosen].breaker.try_acquire(now);
            self.report(&self.regions[chosen], transition);
            if let Some(permit) = permit {
                return Some((chosen, permit, false));
            }
        }
        None
    }

    /// Panic mode's pick (see [`Relay::choose`]): prefers untried regions, then the one
    /// whose breaker opened first.
    fn choose_in_panic(&self, tried: &[bool]) -> Option<(usize, Trial<'_>, bool)> {
        let has_key = |i: usize| !self.managed || self.regions[i].keys.has_any();
        let rank = |i: usize| {
            let r = &self.regions[i];
            (tried[i], r.backup, r.breaker.open_until())
        };
        let chosen = (0..self.regions.len())
            .filter(|&i| has_key(i))
            .min_by_key(|&i| rank(i))?;
        let region = &self.regions[chosen];
        self.metrics
            .panics
            .with_label_values(&[region.name.as_ref()])
            .inc();
        tracing::debug!(region = %region.name, "no relay region available: trying one anyway");
        Some((chosen, region.breaker.bypass(), true))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .backoff_base_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
            .min(self.retry.backoff_max_ms);
        // Full jitter from a splitmix64 step: no shared RNG lock on the request path.
        let mut z = self
            .jitter
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Duration::from_millis(if exp == 0 { 0 } else { z % (exp + 1) })
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
            let url = relay_url(&region.base, suffix)?;
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
            let result = self
                .attempt(region, method.clone(), url, attempt_headers, body.clone())
                .await;
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

    /// Feeds the breaker and key pool with an attempt's outcome and decides on a retry.
    /// `signalled`: this request already reported a failure for this region (one request
    /// is one signal, however many times it retried).
    fn judge(
        &self,
        region: &Region,
        key: Option<usize>,
        result: &Result<RelayResponse, ApiError>,
        signalled: &mut bool,
        idempotent: bool,
        keys_rejected: &mut u32,
    ) -> Verdict {
        let now = Instant::now();
        let mut failure = |fatal: bool| {
            if !std::mem::replace(signalled, true) {
                self.report(region, region.breaker.on_failure(now, fatal));
            }
        };
        let response = match result {
            Err(error) => {
                let never_sent = matches!(error, ApiError::RelayUnreachable(_));
                let fatal = never_sent || matches!(error, ApiError::RelayTimeout(_));
                failure(fatal);
                return if idempotent || never_sent {
                    Verdict::Retry
                } else {
                    Verdict::Final
                };
            }
            Ok(response) => response,
        };
        let status = response.status;
        if status.is_server_error() {
            failure(false);
            return if idempotent {
                Verdict::Retry
            } else {
                Verdict::Final
            };
        }
        // The region answered: it is alive, whatever it thought of the request.
        self.report(region, region.breaker.on_success());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(&response.headers);
            if let (Some(k), Some(w)) = (key, wait) {
                region.keys.rest(k, now + w);
            }
            return Verdict::Throttled(wait);
        }
        if status == StatusCode::UNAUTHORIZED
            && let Some(k) = key
        {
            if let Some(header) = region.keys.suspect(k) {
                tracing::warn!(region = %region.name, key_index = k,
                    "relay answered 401 for a key: checking it before taking it out");
                self.spawn_key_check(region, k, header);
            }
            *keys_rejected += 1;
            // Another key may work; one request never walks the whole pool.
            return if *keys_rejected == 1 {
                Verdict::Retry
            } else {
                Verdict::Final
            };
        }
        Verdict::Final
    }

    /// Asks the relay whether key `index` of `region` is accepted (`GET /models` with it)
    /// and records the answer: a 401 revokes it, anything else below 500 restores it.
    /// No answer leaves it as it is.
    fn spawn_key_check(&self, region: &Region, index: usize, key: HeaderValue) {
        let request = self
            .http
            .get(format!("{}/models", region.base))
            .timeout(self.probe_timeout)
            .header(header::AUTHORIZATION, key);
        let (keys, name, revoked) = (
            region.keys.clone(),
            region.name.clone(),
            self.metrics.keys_revoked.clone(),
        );
        tokio::spawn(async move {
            let Ok(response) = request.send().await else {
                return;
            };
            let status = response.status();
            if status.is_server_error() {
                return;
            }
            let rejected = status == StatusCode::UNAUTHORIZED;
            let left = keys.checked(index, rejected);
            if rejected {
                revoked.with_label_values(&[name.as_ref()]).inc();
                tracing::error!(region = %name, key_index = index, keys_left = left,
                    "relay rejected a key twice: taken out of the pool until it is accepted again");
            } else {
                tracing::info!(region = %name, key_index = index, "relay key accepted: back in the pool");
            }
        });
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

    /// Active health: `GET {url}/models` on every region each `interval`. Any answer
    /// below 500 means alive and closes an open breaker; no answer or a 5xx counts as a
    /// failure. Revoked keys are re-checked on the same beat.
    pub fn spawn_prober(
        self: &Arc<Self>,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if interval.is_zero() {
            return;
        }
        let relay = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                for region in &relay.regions {
                    relay.probe(region).await;
                    for (index, key) in region.keys.revoked() {
                        relay.spawn_key_check(region, index, key);
                    }
                }
            }
        });
    }

    async fn probe(&self, region: &Region) {
        let mut request = self
            .http
            .get(format!("{}/models", region.base))
            .timeout(self.probe_timeout);
        if self.managed
            && let Some((_, key)) = region.keys.next(Instant::now(), true)
        {
            request = request.header(header::AUTHORIZATION, key);
        }
        let now = Instant::now();
        match request.send().await {
            Ok(r) if !r.status().is_server_error() => {
                self.report(region, region.breaker.probe_succeeded())
            }
            Ok(_) => self.report(region, region.breaker.on_failure(now, false)),
            Err(e) => {
                tracing::debug!(region = %region.name, error = ?e, "relay probe failed");
                self.report(region, region.breaker.on_failure(now, true));
            }
        }
    }
}

fn map_reqwest_error(e: &reqwest::Error) -> ApiError {
    // A failed connect (refused or timed out) means the request was never sent.
    if e.is_connect() {
        ApiError::RelayUnreachable("could not connect to the relay".into())
    } else if e.is_timeout() {
        ApiError::RelayTimeout("the relay timed out")
    } else if e.is_body() || e.is_decode() {
        ApiError::RelayBadResponse("the relay's body ended abnormally".into())
    } else {
        ApiError::RelayBadResponse("the relay closed the connection or sent invalid HTTP".into())
    }
}

/// Ends the stream with a timeout error when the relay goes silent for `idle`.
fn idle_limited(
    inner: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    idle: Duration,
) -> RelayBody {
    let inner = Box::pin(inner);
    Box::pin(futures_util::stream::unfold(
        Some(inner),
        move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(inner))),
                Ok(Some(Err(e))) => Some((Err(map_reqwest_error(&e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(ApiError::RelayTimeout("relay went silent mid-response")),
                    None,
                )),
            }
        },
    ))
}
