//! One relay endpoint behind a pooled reqwest client (HTTP/1.1 keep-alive, HTTP/2 when
//! the relay offers it over TLS). Answers are never buffered here: the body is a stream
//! whose every chunk must arrive within the idle timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::config::RelayConfig;
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

#[derive(Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    base: Arc<str>,
    region: Arc<str>,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
}

impl RelayClient {
    pub fn new(config: &RelayConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            // A proxy must hand redirects to its client, not follow them.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base: config.url.trim_end_matches('/').into(),
            region: "default".into(),
            first_byte_timeout: Duration::from_millis(config.first_byte_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        })
    }

    pub fn region(&self) -> &Arc<str> {
        &self.region
    }

    /// Sends `method {base}{suffix}` where `suffix` is the path after `/v1` plus query.
    /// Resolves once the relay's status and headers have arrived.
    pub async fn send(
        &self,
        method: Method,
        suffix: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<RelayResponse, ApiError> {
        let url = format!("{}{}", self.base, suffix);
        let request = self.http.request(method, url).headers(headers).body(body);
        let response = match tokio::time::timeout(self.first_byte_timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(map_reqwest_error(&e)),
            Err(_) => return Err(ApiError::RelayTimeout("no response headers in time")),
        };
        let status = response.status();
        let headers = response.headers().clone();
        Ok(RelayResponse {
            status,
            headers,
            body: idle_limited(response.bytes_stream(), self.idle_timeout),
            region: self.region.clone(),
        })
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
