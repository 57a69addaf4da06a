//! Latency-aware weights. Each region keeps a peak-EWMA of its time to response headers
//! (a slower sample is taken at once, faster ones pull the estimate down gradually), and
//! the picker's weights are scaled by how much slower than the fastest region each one
//! is. A region within `slack` of the fastest keeps its configured weight, so small,
//! noisy differences never reshape the operator's split; a region ten times slower gets
//! about a tenth of its share (never zero, so its recovery is seen). Pure: time is
//! passed in.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct PeakEwma {
    /// Seconds; `None` until the first sample.
    value: Option<f64>,
    at: Instant,
    tau: Duration,
}

impl PeakEwma {
    pub fn new(tau: Duration, now: Instant) -> Self {
        Self {
            value: None,
            at: now,
            tau,
        }
    }

    pub fn observe(&mut self, sample: Duration, now: Instant) {
        let sample = sample.as_secs_f64();
        let value = match self.value {
            Some(v) if sample < v => {
                let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
                let w = (-elapsed / self.tau.as_secs_f64().max(1e-3)).exp();
                v * w + sample * (1.0 - w)
            }
            _ => sample,
        };
        self.value = Some(value);
        self.at = now;
    }

    pub fn estimate(&self) -> Option<f64> {
        self.value
    }
}

/// Fixed-point scale of the weights handed to the picker.
const SCALE: u64 = 1_000;

/// `weights` scaled by observed latency into `out` (see the module docs). Regions
/// without a sample count as fast.
pub fn latency_weights(weights: &[u32], latency: &[Option<f64>], slack: f64, out: &mut Vec<u32>) {
    let best = latency
        .iter()
        .flatten()
        .copied()
        .fold(f64::INFINITY, f64::min);
    out.clear();
    out.extend(weights.iter().zip(latency).map(|(&weight, lat)| {
        let factor = match lat {
            Some(l) if best.is_finite() && *l > best + slack => (best + slack) / l,
            _ => 1.0,
        };
        let scaled = (u64::from(weight) * SCALE) as f64 * factor;
        (scaled as u64).clamp(1, u64::from(u32::MAX)) as u32
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn peaks_are_taken_at_once_and_decay_with_time() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::from_secs(10), t0);
        assert_eq!(e.estimate(), None);
        e.observe(ms(100), t0);
        e.observe(ms(5_000), t0 + ms(10));
        assert_eq!(e.estimate(), Some(5.0), "a slow sample is believed at once");
        e.observe(ms(100), t0 + ms(20));
        assert!(
            e.estimate().unwrap() > 4.9,
            "one fast sample right after does little"
        );
        e.observe(ms(100), t0 + Duration::from_secs(60));
        assert!(e.estimate().unwrap() < 0.2, "a minute later it has decayed");
    }

    #[test]
    fn a_slow_region_loses_its_share_and_close_regions_keep_theirs() {
        let mut out = Vec::new();
        latency_weights(&[1, 1], &[Some(0.05), Some(5.0)], 0.05, &mut out);
        assert_eq!(out[0], 1_000);
        assert!(
            out[1] <= 20,
            "100× slower: about 1/50 of the share: {out:?}"
        );
        latency_weights(&[3, 1], &[Some(0.010), Some(0.040)], 0.05, &mut out);
        assert_eq!(out, [3_000, 1_000], "within slack: weights as configured");
        latency_weights(&[3, 1], &[None, Some(9.0)], 0.05, &mut out);
        assert_eq!(out, [3_000, 1_000], "one sample alone sets no reference");
        latency_weights(&[1, 1], &[Some(0.01), Some(1e9)], 0.05, &mut out);
        assert_eq!(out[1], 1, "never zero: recovery stays visible");
    }
}
