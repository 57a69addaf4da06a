//! A region's circuit breaker. Closed: requests flow. Open: the region is skipped until
//! its cool-down ends; then one trial request is let through (half-open); its success
//! closes the breaker, its failure opens it again. Opened by `failure_threshold`
//! consecutive failures, by an error ratio over the last `window` attempts, or at once
//! by a failure that signals a dead or hung region (timeouts, refused connections).
//! Time is passed in, so the state machine is tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::HealthConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    open_until: Instant,
    trial_in_flight: bool,
    consecutive: u32,
    window_total: u32,
    window_errors: u32,
}

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    threshold: u32,
    ratio: f64,
    window: u32,
    cooldown: Duration,
}

/// A state change, for the log and metrics (one line per transition).
pub type Transition = Option<(BreakerState, BreakerState)>;

impl Breaker {
    pub fn new(config: &HealthConfig) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                open_until: Instant::now(),
                trial_in_flight: false,
                consecutive: 0,
                window_total: 0,
                window_errors: 0,
            }),
            threshold: config.failure_threshold.max(1),
            ratio: config.error_ratio,
            window: config.window.max(1),
            cooldown: Duration::from_millis(config.cooldown_ms),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether a request may go to this region now; in half-open state only the first
    /// asker gets the trial.
    pub fn try_acquire(&self, now: Instant) -> (bool, Transition) {
        let mut s = self.lock();
        match s.state {
            BreakerState::Closed => (true, None),
            BreakerState::Open if now >= s.open_until => {
                s.state = BreakerState::HalfOpen;
                s.trial_in_flight = true;
                (true, Some((BreakerState::Open, BreakerState::HalfOpen)))
            }
            BreakerState::Open => (false, None),
            BreakerState::HalfOpen if !s.trial_in_flight => {
                s.trial_in_flight = true;
                (true, None)
            }
            BreakerState::HalfOpen => (false, None),
        }
    }

    /// Whether `try_acquire` would let a request through (no state change).
    pub fn is_available(&self, now: Instant) -> bool {
        let s = self.lock();
        match s.state {
            BreakerState::Closed => true,
            BreakerState::Open => now >= s.open_until,
            BreakerState::HalfOpen => !s.trial_in_flight,
        }
    }

    pub fn on_success(&self) -> Transition {
        let mut s = self.lock();
        s.consecutive = 0;
        s.trial_in_flight = false;
        Self::count(&mut s, self.window, false);
        if s.state != BreakerState::Closed {
            let from = s.state;
            s.state = BreakerState::Closed;
            s.window_total = 0;
            s.window_errors = 0;
            return Some((from, BreakerState::Closed));
        }
        None
    }

    /// Records a failure; `fatal` (timeout, refused connection) opens at once.
    pub fn on_failure(&self, now: Instant, fatal: bool) -> Transition {
        let mut s = self.lock();
        s.consecutive += 1;
        s.trial_in_flight = false;
        Self::count(&mut s, self.window, true);
        // The ratio needs a sample: at least half a window of recent attempts.
        let ratio_tripped = s.window_total * 2 >= self.window
            && f64::from(s.window_errors) / f64::from(s.window_total) >= self.ratio;
        let trip = fatal
            || s.state == BreakerState::HalfOpen
            || s.consecutive >= self.threshold
            || ratio_tripped;
        if trip {
            let from = s.state;
            s.state = BreakerState::Open;
            s.open_until = now + self.cooldown;
            s.window_total = 0;
            s.window_errors = 0;
            if from != BreakerState::Open {
                return Some((from, BreakerState::Open));
            }
        }
        None
    }

    /// An active probe answered: end the cool-down early so the next request is the trial.
    pub fn probe_succeeded(&self, now: Instant) {
        let mut s = self.lock();
        if s.state == BreakerState::Open {
            s.open_until = now;
        }
    }

    fn count(s: &mut Inner, window: u32, error: bool) {
        if s.window_total >= window {
            s.window_total = 0;
            s.window_errors = 0;
        }
        s.window_total += 1;
        s.window_errors += u32::from(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, cooldown_ms: u64) -> Breaker {
        Breaker::new(&HealthConfig {
            failure_threshold: threshold,
            error_ratio: 0.5,
            window: 10,
            cooldown_ms,
            probe_interval_ms: 0,
            probe_timeout_ms: 0,
        })
    }

    #[test]
    fn consecutive_failures_open_then_one_trial_then_close() {
        let b = breaker(3, 1_000);
        let t0 = Instant::now();
        assert_eq!(b.on_failure(t0, false), None);
        assert_eq!(b.on_failure(t0, false), None);
        assert_eq!(
            b.on_failure(t0, false),
            Some((BreakerState::Closed, BreakerState::Open))
        );
        assert!(!b.try_acquire(t0 + Duration::from_millis(999)).0);
        let later = t0 + Duration::from_millis(1_000);
        assert_eq!(
            b.try_acquire(later),
            (true, Some((BreakerState::Open, BreakerState::HalfOpen)))
        );
        assert!(!b.try_acquire(later).0, "only one trial at a time");
        assert_eq!(
            b.on_success(),
            Some((BreakerState::HalfOpen, BreakerState::Closed))
        );
        assert!(b.try_acquire(later).0);
    }

    #[test]
    fn a_failed_trial_reopens_and_fatal_failures_open_at_once() {
        let b = breaker(3, 100);
        let t0 = Instant::now();
        assert!(b.on_failure(t0, true).is_some(), "a timeout opens at once");
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.try_acquire(t1).0);
        assert_eq!(
            b.on_failure(t1, false),
            Some((BreakerState::HalfOpen, BreakerState::Open))
        );
        assert!(!b.is_available(t1 + Duration::from_millis(50)));
        b.probe_succeeded(t1 + Duration::from_millis(50));
        assert!(b.is_available(t1 + Duration::from_millis(50)));
    }

    #[test]
    fn error_ratio_opens_without_consecutive_failures() {
        let b = breaker(100, 100);
        let t0 = Instant::now();
        let mut opened = false;
        for i in 0..10 {
            let t = if i % 2 == 0 {
                b.on_failure(t0, false)
            } else {
                b.on_success()
            };
            opened |= t.is_some();
        }
        assert!(opened, "3 errors in 5 attempts reach the 0.5 ratio");
        let healthy = breaker(100, 100);
        for i in 0..30 {
            let t = if i % 4 == 0 {
                healthy.on_failure(t0, false)
            } else {
                healthy.on_success()
            };
            assert!(t.is_none(), "1 error in 4 stays under the ratio");
        }
    }
}
