//! A miss: one relay call for the flight, in a task of its own, whose answer goes to
//! the client, to the cache when storable, and once to every follower.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tracing::Instrument;

use super::{buffered_response, is_event_stream, mark_relayed};
use crate::cache::{
    AnswerFacts, BufferedAnswer, CachedAnswer, FlightGuard, FlightOutcome, NotCacheable, Usage,
};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::http::X_CACHE;
use crate::http::request_log::RequestLog;
use crate::keying::CacheKey;
use crate::relay::{RelayBody, RelayResponse, response_headers_for_client};
use crate::state::AppState;

/// Everything a miss needs to call the relay and store the answer.
pub(super) struct Miss {
    pub(super) state: AppState,
    /// Rate-limit bucket of the caller (their namespace before partitioning).
    pub(super) caller: Arc<str>,
    pub(super) endpoint: Endpoint,
    pub(super) key: CacheKey,
    pub(super) namespace: Arc<str>,
    pub(super) ttl: Duration,
    pub(super) stream: bool,
    /// The client asked for a usage chunk; if not, the one the gateway asked the relay
    /// for is stripped from what it sees.
    pub(super) include_usage: bool,
    /// Managed mode: the relay's account headers stay here.
    pub(super) managed: bool,
    pub(super) relay_headers: HeaderMap,
    /// What the relay gets: the client's bytes, or on a stream that did not ask for
    /// usage, the body with `stream_options.include_usage` set.
    pub(super) relay_body: Bytes,
    /// The parsed request, to estimate usage when the relay reports none.
    pub(super) request_body: Arc<serde_json::Map<String, serde_json::Value>>,
    /// Set when the semantic tier is on and the request comparable: the stored answer
    /// is also remembered by the meaning of its last user message.
    pub(super) remember: Option<super::semantic::Remember>,
    /// Held while this instance calls the relay for every instance; freed once the
    /// answer is in Redis (or when this miss ends without one).
    pub(super) lease: Option<super::remote::Lease>,
}

/// The body re-serialized with `stream_options.include_usage = true`.
pub(super) fn with_usage_requested(body: &serde_json::Map<String, serde_json::Value>) -> Bytes {
    let mut body = body.clone();
    let options = body
        .entry("stream_options")
        .or_insert_with(|| serde_json::json!({}));
    if !options.is_object() {
        *options = serde_json::json!({});
    }
    options["include_usage"] = serde_json::Value::Bool(true);
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().to_ascii_lowercase();
            v.starts_with("application/json")
                || v.split(';').next().is_some_and(|t| t.ends_with("+json"))
        })
}

async fn collect(mut body: RelayBody) -> Result<Bytes, ApiError> {
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

pub(super) fn settle(guard: Option<FlightGuard>, outcome: FlightOutcome) {
    if let Some(guard) = guard {
        guard.complete(outcome);
    }
}

impl Miss {
    /// Calls the relay in a task of its own: the call belongs to the flight, not to the
    /// client's connection. A client that goes away before the answer does not cancel
    /// it; the answer is still completed, stored, counted and handed to every follower
    /// (it is paid for either way). The task records the request's row; shutdown waits
    /// for it within the grace period, and at the end of the grace the row is still
    /// written.
    pub(super) async fn run(
        self,
        store: bool,
        guard: Option<FlightGuard>,
        x_cache: HeaderValue,
        log: &mut RequestLog,
    ) -> Result<Response, ApiError> {
        if self.state.limits.exempt_cache_hits
            && let Err(limited) = self.state.rate_limit(&self.caller)
        {
            settle(guard, FlightOutcome::Failed(limited.clone()));
            return Err(limited);
        }
        // The task records the row, even if this handler is gone by then.
        let mut task_log = log.hand_over();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = self.state.clone();
        state.work.spawn(
            async move {
                let state = self.state.clone();
                let result = tokio::select! {
                    result = self.call(store, guard, x_cache, &mut task_log) => result,
                    () = state.cut.cancelled() => Err(ApiError::RelayTimeout(
                        "the gateway shut down before the relay answered",
                    )),
                };
                let status = match &result {
                    Ok(response) => response.status(),
                    Err(error) => error.status(),
                };
                task_log.answered(status.as_u16());
                drop(task_log); // the row (unless a stream task took it over)
                let _ = tx.send(result); // the client may be gone: nothing is lost
            }
            .in_current_span(),
        );
        rx.await
            .unwrap_or_else(|_| Err(ApiError::Internal("the relay task ended early".into())))
    }

    /// One relay call for the flight: the answer goes to the client, to the cache when
    /// storable, and (once, at the end) to every follower.
    async fn call(
        mut self,
        store: bool,
        guard: Option<FlightGuard>,
        x_cache: HeaderValue,
        log: &mut RequestLog,
    ) -> Result<Response, ApiError> {
        let sent = self
            .state
            .relay
            .send(
                Method::POST,
                self.endpoint.relay_suffix(),
                self.relay_headers.clone(),
                self.relay_body.clone(),
                true,
            )
            .await;
        let relay = match sent {
            Ok(relay) => relay,
            Err(error) => {
                settle(guard, FlightOutcome::Failed(error.clone()));
                return Err(error);
            }
        };
        log.relay_region = Some(relay.region.clone());
        tracing::Span::current().record("relay.region", &*relay.region);
        if relay.status == StatusCode::OK && self.stream && is_event_stream(&relay.headers) {
            // The stream's task records the row, with the usage the stream reports.
            return Ok(self.stream_through(relay, store, guard, x_cache, log.hand_over()));
        }
        let RelayResponse {
            status,
            headers,
            body,
            region,
        } = relay;
        let concluded = match collect(body).await {
            Ok(body) => {
                self.conclude(status, headers, body, region, store, x_cache, log)
                    .await
            }
            Err(error) => Err(error),
        };
        match concluded {
            Ok((outcome, response)) => {
                settle(guard, outcome);
                Ok(response)
            }
            Err(error) => {
                settle(guard, FlightOutcome::Failed(error.clone()));
                Err(error)
            }
        }
    }

    /// A whole (not streamed) relay answer: what the client gets and what followers
    /// get. Error statuses and 200s that are not complete answers are passed on as
    /// sent and never stored; a 200 that is not JSON at all is a broken response.
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &mut self,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        region: Arc<str>,
        store: bool,
        x_cache: HeaderValue,
        log: &mut RequestLog,
    ) -> Result<(FlightOutcome, Response), ApiError> {
        if status != StatusCode::OK {
            let answer = Arc::new(BufferedAnswer {
                status,
                headers,
                body,
                region,
            });
            let mut response = buffered_response(&answer, self.key, self.managed);
            response.headers_mut().insert(X_CACHE, x_cache);
            return Ok((FlightOutcome::Relayed(answer), response));
        }
        let bad = |why: NotCacheable| ApiError::RelayBadResponse(why.0.into());
        let mut facts = CachedAnswer::read(self.endpoint, &body).map_err(bad)?;
        let (stored_body, estimate) = if facts.usage_reported {
            (body.clone(), None)
        } else {
            // No usage from the relay: estimated on the whole answer, which carries the
            // estimate when stored, so its hits return usage too.
            let mut value = CachedAnswer::validate(self.endpoint, &body).map_err(bad)?;
            let estimate = self.estimate_usage(&mut value).await;
            let stored = match estimate {
                None => body.clone(),
                Some(_) => Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
            };
            facts = AnswerFacts::of(self.endpoint, &value);
            (stored, estimate)
        };
        let storable = if is_json(&headers) {
            std::mem::replace(&mut facts.storable, Ok(()))
        } else {
            Err(NotCacheable("the answer is not labelled JSON"))
        };
        let answer = Arc::new(self.answer_of(stored_body, &facts, estimate));
        log.spent(&self.state, answer.usage);
        if self.state.config.privacy.log_payloads {
            tracing::info!(target: "edge_gateway::payload", key = %self.key, answer = %String::from_utf8_lossy(&body[..body.len().min(4096)]), "relay answer (privacy.log_payloads)");
        }
        self.store(store, storable, &answer).await;
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = response_headers_for_client(&headers, self.managed);
        mark_relayed(response.headers_mut(), x_cache, self.key, &region);
        Ok((FlightOutcome::Answer(answer), response))
    }

    /// Adds an estimate to an answer whose relay reported no usage (see
    /// [`crate::tokens`]) and returns it; `None` when the relay reported usage.
    pub(super) async fn estimate_usage(&self, value: &mut serde_json::Value) -> Option<Usage> {
        if crate::tokens::reported(value) {
            return None;
        }
        let (endpoint, request, answer) = (self.endpoint, self.request_body.clone(), value.clone());
        let usage = tokio::task::spawn_blocking(move || {
            crate::tokens::estimate(endpoint, &request, &answer)
        })
        .await
        .ok()?;
        if let serde_json::Value::Object(fields) = value {
            let (input, output) = match endpoint {
                Endpoint::Responses => ("input_tokens", "output_tokens"),
                _ => ("prompt_tokens", "completion_tokens"),
            };
            fields.insert(
                "usage".into(),
                serde_json::json!({
                    input: usage.prompt_tokens,
                    output: usage.completion_tokens,
                    "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                }),
            );
        }
        Some(usage)
    }

    /// A cached answer built from a complete relay answer, with the estimate (if any).
    pub(super) fn answer(
        &self,
        body: Bytes,
        value: &serde_json::Value,
        estimate: Option<Usage>,
    ) -> CachedAnswer {
        self.answer_of(body, &AnswerFacts::of(self.endpoint, value), estimate)
    }

    /// As [`Miss::answer`], from the answer's facts.
    fn answer_of(&self, body: Bytes, facts: &AnswerFacts, estimate: Option<Usage>) -> CachedAnswer {
        let expires_at_ms = self
            .state
            .clock
            .now_ms()
            .saturating_add(self.ttl.as_millis() as u64);
        let mut answer = CachedAnswer::from_facts(
            self.endpoint,
            self.namespace.clone(),
            body,
            facts,
            expires_at_ms,
        );
        if let Some(usage) = estimate {
            answer.usage = usage;
        }
        answer
    }

    /// Stores a complete answer when the request allows it and the answer may be stored.
    pub(super) async fn store(
        &mut self,
        store: bool,
        storable: Result<(), NotCacheable>,
        answer: &Arc<CachedAnswer>,
    ) {
        match storable {
            Ok(()) if store => {
                match self.lease.take() {
                    // Others wait for it in Redis: it must be there before the lease goes.
                    Some(lease) => {
                        self.state.cache.put_shared(self.key, answer.clone()).await;
                        drop(lease);
                    }
                    None => self.state.cache.put(self.key, answer.clone()).await,
                }
                if let Some(remember) = &mut self.remember {
                    remember.stored(self.key, answer);
                    remember.judge(answer);
                }
            }
            Ok(()) => {}
            Err(why) => {
                self.state
                    .metrics
                    .cache
                    .answers_not_stored
                    .with_label_values(&[why.0])
                    .inc();
                tracing::debug!(key = %self.key, reason = why.0, "answer passed on, not stored");
            }
        }
    }
}
