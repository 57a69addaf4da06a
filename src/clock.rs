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
///
/// Read on Linux's coarse real-time clock: the time of the last timer tick (1–10 ms
/// behind, by the kernel's tick rate), 3.4 ns a read against 22.7 ns for the exact clock
/// on this VM (bench/RESULTS.md). Everything read here is in whole milliseconds and far
/// coarser in use (entry lifetimes in seconds, analytics rows grouped by day), and a
/// cache hit read it twice; nginx likewise reads the time once per event-loop turn.
pub(crate) fn system_ms() -> u64 {
    coarse_ms().unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

#[cfg(target_os = "linux")]
fn coarse_ms() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes the `timespec` it is given, nothing else.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    let secs = u64::try_from(now.tv_sec).ok()?;
    (read == 0).then(|| secs * 1_000 + now.tv_nsec as u64 / 1_000_000)
}

#[cfg(not(target_os = "linux"))]
fn coarse_ms() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The coarse clock is the system's, at most one tick behind: a wrong unit or clock
    /// id would put it seconds (or decades) away.
    #[test]
    fn the_coarse_reading_is_the_system_time_within_a_tick() {
        let exact = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        for _ in 0..1_000 {
            let before = exact();
            let read = system_ms();
            let after = exact();
            // A tick is 10 ms at the slowest kernel tick rate (100 Hz).
            assert!(
                read + 10 >= before && read <= after,
                "{before} <= {read} (+10) <= {after}"
            );
        }
    }

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
