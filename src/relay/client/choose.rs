//! Which region the next attempt goes to: smooth weighted round-robin over the
//! available primaries (backups only while no primary works), weights scaled by observed
//! latency, and panic mode when no region is available. Plus the retry backoff.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{LATENCY_SLACK_SECS, Relay, lock};
use crate::relay::breaker::Trial;
use crate::relay::latency::latency_weights;

impl Relay {
    /// The weights for the next pick: configured, scaled down for slow regions.
    pub(super) fn current_weights(&self) -> Vec<u32> {
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
    pub(super) fn choose(&self, tried: &[bool]) -> Option<(usize, Trial<'_>, bool)> {
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
    pub(super) fn choose_in_panic(&self, tried: &[bool]) -> Option<(usize, Trial<'_>, bool)> {
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

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
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
}
