//! A region's circuit breaker. Closed: requests flow. Open: the region is skipped until
//! its cool-down ends; then one trial request is let through (half-open); its success
//! closes the breaker, its failure opens it again. Opened by `failure_threshold`
//! consecutive failures, by an error ratio over the last `window` attempts, or at once
//! by a failure that signals a dead or hung region (timeouts, refused connections).
//!
//! A breaker never stays stuck: the trial slot belongs to a [`Trial`] guard that gives
//! it back when its request goes away without an outcome (a client that disconnected),
//! and a successful active probe closes the breaker. An open breaker only steers
//! traffic: when every region is open the relay still tries one (see `Relay::choose`).
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
    /// asker gets the trial, as a [`Trial`] that must be held until the attempt ends.
    pub fn try_acquire(&self, now: Instant) -> (Option<Trial<'_>>, Transition) {
        let mut s = self.lock();
        let (granted, trial, transition) = match s.state {
            BreakerState::Closed => (true, false, None),
            BreakerState::Open if now >= s.open_until => {
                s.state = BreakerState::HalfOpen;
                s.trial_in_flight = true;
                (
                    true,
                    true,
                    Some((BreakerState::Open, BreakerState::HalfOpen)),
                )
            }
            BreakerState::Open => (false, false, None),
            BreakerState::HalfOpen if !s.trial_in_flight => {
                s.trial_in_flight = true;
                (true, true, None)
            }
            BreakerState::HalfOpen => (false, false, None),
        };
        let permit = granted.then_some(Trial {
            breaker: self,
            trial,
        });
        (permit, transition)
    }

    /// A request sent while no region is available (the relay's panic mode): no trial
    /// slot is taken; its outcome still feeds the breaker.
    pub fn bypass(&self) -> Trial<'_> {
        Trial {
            breaker: self,
            trial: false,
        }
    }

    /// The trial's request went away without an outcome: the next asker gets the trial.
    fn release_trial(&self) {
        let mut s = self.lock();
        if s.state == BreakerState::HalfOpen {
            s.trial_in_flight = false;
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

    /// An active probe answered: the region is alive, so the breaker closes (requests
    /// flow again without waiting for a trial that may never come).
    pub fn probe_succeeded(&self) -> Transition {
        let mut s = self.lock();
        if s.state == BreakerState::Closed {
            return None;
        }
        let from = s.state;
        s.state = BreakerState::Closed;
        s.trial_in_flight = false;
        s.consecutive = 0;
        s.window_total = 0;
        s.window_errors = 0;
        Some((from, BreakerState::Closed))
    }

    /// When the breaker may next be tried (for the panic choice: the one that opened
    /// first is tried first).
    pub fn open_until(&self) -> Option<Instant> {
        let s = self.lock();
        (s.state != BreakerState::Closed).then_some(s.open_until)
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

/// Permission to send one attempt to a region, held until the attempt's outcome has
/// been reported. Dropping it gives a half-open trial slot back unless the outcome
/// already settled the state (so a cancelled request never wedges the breaker).
#[must_use]
pub struct Trial<'a> {
    breaker: &'a Breaker,
    trial: bool,
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        if self.trial {
            self.breaker.release_trial();
        }
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
        assert!(b.try_acquire(t0 + Duration::from_millis(999)).0.is_none());
        let later = t0 + Duration::from_millis(1_000);
        let (trial, transition) = b.try_acquire(later);
        assert_eq!(
            transition,
            Some((BreakerState::Open, BreakerState::HalfOpen))
        );
        assert!(trial.is_some());
        assert!(b.try_acquire(later).0.is_none(), "only one trial at a time");
        assert_eq!(
            b.on_success(),
            Some((BreakerState::HalfOpen, BreakerState::Closed))
        );
        drop(trial);
        assert!(b.try_acquire(later).0.is_some());
    }

    #[test]
    fn a_failed_trial_reopens_and_fatal_failures_open_at_once() {
        let b = breaker(3, 100);
        let t0 = Instant::now();
        assert!(b.on_failure(t0, true).is_some(), "a timeout opens at once");
        let t1 = t0 + Duration::from_millis(100);
        drop(b.try_acquire(t1).0.expect("the trial"));
        assert_eq!(
            b.on_failure(t1, false),
            Some((BreakerState::HalfOpen, BreakerState::Open))
        );
        assert!(!b.is_available(t1 + Duration::from_millis(50)));
        assert_eq!(
            b.probe_succeeded(),
            Some((BreakerState::Open, BreakerState::Closed)),
            "a successful probe closes the breaker"
        );
        assert!(b.is_available(t1 + Duration::from_millis(50)));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_trial_whose_request_went_away_frees_the_slot() {
        let b = breaker(1, 100);
        let t0 = Instant::now();
        b.on_failure(t0, false);
        let t1 = t0 + Duration::from_millis(100);
        let trial = b.try_acquire(t1).0.expect("the trial");
        assert!(!b.is_available(t1), "the trial is taken");
        drop(trial); // the client disconnected before the relay answered
        assert!(b.is_available(t1), "the next request gets the trial");
        assert!(b.try_acquire(t1).0.is_some());
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
