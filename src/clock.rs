//! Wall-clock time, passed in: entry expiries, analytics timestamps, retention and the
//! semantic index all read the [`Clock`] they were given, so a test moves time forward
//! (`Clock::advance`, behind the `testing` feature) instead of waiting for a TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds. Clones share one offset: advancing one advances all, so
/// the tiers, the writers and the handlers of one app always agree on the time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Added to the system time; 0 unless a test moved the clock forward.
    ahead_ms: Arc<AtomicU64>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Unix time in milliseconds (0 if the system clock is before 1970).
    pub fn now_ms(&self) -> u64 {
        system_ms().saturating_add(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock and its clones forward by `by` (never back: expiries stay
    /// monotonic for whoever already read the time).
    #[cfg(any(test, feature = "testing"))]
    pub fn advance(&self, by: std::time::Duration) {
        self.ahead_ms
            .fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

/// The system time, for records no test needs to move (when a migration was applied).
pub(crate) fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clones_advance_together() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = other.now_ms();
        clock.advance(Duration::from_secs(3600));
        let after = other.now_ms();
        assert!(after >= before + 3_600_000, "{before} -> {after}");
        assert!(
            Clock::system().now_ms() < after - 3_000_000,
            "a new clock is not moved"
        );
    }
}
