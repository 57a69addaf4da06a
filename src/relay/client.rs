//! The relay: its regional endpoints behind one pooled reqwest client (HTTP/1.1
//! keep-alive, HTTP/2 when offered over TLS), chosen by smooth weighted round-robin
//! among healthy primaries (backups only while no primary is available), with a
//! breaker per region and retries under a per-request budget.
//!
//! Retries happen only before `send` returns, that is before a byte of the answer has
//! reached the client: connect errors, timeouts and 5xx go to the next region after an
//! exponential, jittered backoff; a 429 is retried after its `retry-after` when that is
//! short enough, else handed to the client; other 4xx are final. In managed mode a
//! region's keys are used in turn; a key answered with 401/403 is taken out.
//!
//! Answers are never buffered here: the body is a stream whose every chunk must arrive
//! within the idle timeout.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, header};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

use super::breaker::{Breaker, BreakerState, Transition};
use super::keys::{KeyPool, retry_after};
use super::picker::SmoothWeighted;
use crate::config::{Config, RetryConfig};
use crate::error::ApiError;

/// A relay answer body: chunks as they arrive, or the error that ended it.
pub type RelayBody = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>>;

pub struct RelayResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: RelayBody,
    /// Name of the relay region that answered, for `x-relay-region` and analytics.
    pub region: Arc<str>,
}

/// Prometheus handles the relay reports to.
#[derive(Clone)]
pub struct RelayMetrics {
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub breaker_state: IntGaugeVec,
    pub keys_revoked: IntCounterVec,
    pub retries: IntCounterVec,
}

pub struct Region {
    pub name: Arc<str>,
    base: Arc<str>,
    weight: u32,
    pub backup: bool,
    pub breaker: Breaker,
    keys: KeyPool,
}

pub struct Relay {
    http: reqwest::Client,
    regions: Vec<Region>,
    weights: Vec<u32>,
    picker: Mutex<SmoothWeighted>,
    managed: bool,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    retry: RetryConfig,
    metrics: RelayMetrics,
    jitter: AtomicU64,
}

/// How one attempt ended, for the retry decision.
enum Verdict {
    Final,
    Retry { wait: Duration },
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
                    keys: KeyPool::new(&r.keys)?,
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

    /// The region for the next attempt: an untried available primary; else an untried
    /// backup (this request found no primary that works); else a tried primary again,
    /// then a tried backup. So backups carry traffic only while primaries fail.
    fn choose(&self, tried: &[bool]) -> Option<usize> {
        let now = Instant::now();
        let available = |i: usize| {
            let r = &self.regions[i];
            r.breaker.is_available(now) && (!self.managed || r.keys.has_usable(now))
        };
        for _ in 0..=self.regions.len() {
            let chosen = {
                let mut picker = self
                    .picker
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let primary = |i: usize| !self.regions[i].backup && available(i);
                let backup = |i: usize| self.regions[i].backup && available(i);
                picker
                    .pick(&self.weights, |i| primary(i) && !tried[i])
                    .or_else(|| picker.pick(&self.weights, |i| backup(i) && !tried[i]))
                    .or_else(|| picker.pick(&self.weights, primary))
                    .or_else(|| picker.pick(&self.weights, backup))
            }?;
            let (granted, transition) = self.regions[chosen].breaker.try_acquire(now);
            self.report(&self.regions[chosen], transition);
            if granted {
                return Some(chosen);
            }
        }
        None
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
    /// as the module docs say. Resolves once a region's status and headers have arrived.
    pub async fn send(
        &self,
        method: Method,
        suffix: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<RelayResponse, ApiError> {
        let started = Instant::now();
        let budget = Duration::from_millis(self.retry.budget_ms);
        let mut tried = vec![false; self.regions.len()];
        let mut last: Option<Result<RelayResponse, ApiError>> = None;
        for attempt in 1..=self.retry.max_attempts {
            let Some(i) = self.choose(&tried) else { break };
            let region = &self.regions[i];
            let mut attempt_headers = headers.clone();
            let key = if self.managed {
                match region.keys.next(Instant::now()) {
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
                .attempt(
                    region,
                    method.clone(),
                    suffix,
                    attempt_headers,
                    body.clone(),
                )
                .await;
            let verdict = self.judge(region, key, &result);
            last = Some(result);
            let Verdict::Retry { wait } = verdict else {
                break;
            };
            tried[i] = true;
            let out_of_budget = started.elapsed() + wait >= budget;
            if attempt == self.retry.max_attempts || out_of_budget {
                break;
            }
            self.metrics
                .retries
                .with_label_values(&[region.name.as_ref()])
                .inc();
            let wait = wait.max(self.backoff(attempt));
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        last.unwrap_or(Err(ApiError::NoHealthyRelay))
    }

    /// Feeds the breaker and key pool with an attempt's outcome and decides on a retry.
    fn judge(
        &self,
        region: &Region,
        key: Option<usize>,
        result: &Result<RelayResponse, ApiError>,
    ) -> Verdict {
        let now = Instant::now();
        let response = match result {
            Err(error) => {
                let fatal = matches!(
                    error,
                    ApiError::RelayTimeout(_) | ApiError::RelayUnreachable(_)
                );
                self.report(region, region.breaker.on_failure(now, fatal));
                return Verdict::Retry {
                    wait: Duration::ZERO,
                };
            }
            Ok(response) => response,
        };
        let status = response.status;
        if status.is_server_error() {
            self.report(region, region.breaker.on_failure(now, false));
            return Verdict::Retry {
                wait: Duration::ZERO,
            };
        }
        // The region answered: it is alive, whatever it thought of the request.
        self.report(region, region.breaker.on_success());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(&response.headers);
            if let (Some(k), Some(w)) = (key, wait) {
                region.keys.rest(k, now + w);
            }
            let cap = Duration::from_millis(self.retry.retry_after_cap_ms);
            return match wait {
                Some(w) if w > cap => Verdict::Final,
                Some(w) => Verdict::Retry { wait: w },
                None => Verdict::Retry {
                    wait: Duration::ZERO,
                },
            };
        }
        if matches!(status.as_u16(), 401 | 403)
            && let Some(k) = key
        {
            let left = region.keys.revoke(k);
            self.metrics
                .keys_revoked
                .with_label_values(&[region.name.as_ref()])
                .inc();
            tracing::error!(region = %region.name, key_index = k, keys_left = left, status = status.as_u16(),
                "relay rejected a key: taken out of the pool");
            return Verdict::Retry {
                wait: Duration::ZERO,
            };
        }
        Verdict::Final
    }

    async fn attempt(
        &self,
        region: &Region,
        method: Method,
        suffix: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<RelayResponse, ApiError> {
        let started = Instant::now();
        let url = format!("{}{}", region.base, suffix);
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
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Active health: `GET {url}/models` on every region each `interval`. Any answer
    /// below 500 means alive (ends an open breaker's cool-down); no answer or a 5xx
    /// counts as a failure.
    pub fn spawn_prober(
        self: &Arc<Self>,
        interval: Duration,
        timeout: Duration,
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
                    let mut request = relay
                        .http
                        .get(format!("{}/models", region.base))
                        .timeout(timeout);
                    if relay.managed
                        && let Some((_, key)) = region.keys.next(Instant::now())
                    {
                        request = request.header(header::AUTHORIZATION, key);
                    }
                    let now = Instant::now();
                    match request.send().await {
                        Ok(r) if !r.status().is_server_error() => {
                            region.breaker.probe_succeeded(now)
                        }
                        Ok(_) => relay.report(region, region.breaker.on_failure(now, false)),
                        Err(e) => {
                            tracing::debug!(region = %region.name, error = ?e, "relay probe failed");
                            relay.report(region, region.breaker.on_failure(now, true));
                        }
                    }
                }
            }
        });
    }
}

fn map_reqwest_error(e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::RelayTimeout("connect timed out")
    } else if e.is_connect() {
        ApiError::RelayUnreachable("could not connect to the relay".into())
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
