//! What one relay attempt's outcome means: for the region's breaker and key pool, and
//! for the request (answer as is, retry elsewhere, or wait out a 429).

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::{Region, Relay, RelayResponse};
use crate::error::ApiError;
use crate::relay::keys::retry_after;

/// How one attempt ended, for the retry decision.
pub(super) enum Verdict {
    Final,
    Retry,
    /// 429: another key or region now, else wait out `retry-after` if it is short.
    Throttled(Option<Duration>),
}

impl Relay {
    /// Feeds the breaker and key pool with an attempt's outcome and decides on a retry.
    /// `signalled`: this request already reported a failure for this region (one request
    /// is one signal, however many times it retried).
    pub(super) fn judge(
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
}
