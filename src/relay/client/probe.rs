//! Active health: probes per region (a success closes an open breaker) and key checks
//! (a 401 is confirmed before a key is revoked; revoked keys are re-checked).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};

use super::{Region, Relay};

impl Relay {
    /// Asks the relay whether key `index` of `region` is accepted (`GET /models` with it)
    /// and records the answer: a 401 revokes it, anything else below 500 restores it.
    /// No answer leaves it as it is.
    pub(super) fn spawn_key_check(&self, region: &Region, index: usize, key: HeaderValue) {
        let request = self
            .http
            .get(format!("{}/models", region.base.as_str()))
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

    pub(super) async fn probe(&self, region: &Region) {
        let mut request = self
            .http
            .get(format!("{}/models", region.base.as_str()))
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
