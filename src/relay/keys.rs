//! A region's relay keys (managed mode), used in turn. A key answered with 401/403 is
//! taken out for good (and reported); one answered with 429 rests for its `retry-after`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;

use crate::config::Secret;

#[derive(Debug)]
struct Slot {
    header: HeaderValue,
    revoked: bool,
    resting_until: Option<Instant>,
}

#[derive(Debug)]
pub struct KeyPool {
    slots: Mutex<Vec<Slot>>,
    next: AtomicUsize,
}

impl KeyPool {
    pub fn new(keys: &[Secret]) -> Result<Self, String> {
        let slots = keys
            .iter()
            .map(|k| {
                let mut header =
                    HeaderValue::try_from(format!("Bearer {}", k.expose())).map_err(|_| {
                        "a relay key holds characters not allowed in a header".to_owned()
                    })?;
                header.set_sensitive(true);
                Ok(Slot {
                    header,
                    revoked: false,
                    resting_until: None,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            slots: Mutex::new(slots),
            next: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The next usable key in turn: `(index, authorization header)`.
    pub fn next(&self, now: Instant) -> Option<(usize, HeaderValue)> {
        let slots = self.lock();
        let n = slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).find_map(|i| {
            let s = &slots[i];
            let usable = !s.revoked && s.resting_until.is_none_or(|t| now >= t);
            usable.then(|| (i, s.header.clone()))
        })
    }

    /// Takes a key out for good; returns how many remain usable.
    pub fn revoke(&self, index: usize) -> usize {
        let mut slots = self.lock();
        if let Some(s) = slots.get_mut(index) {
            s.revoked = true;
        }
        slots.iter().filter(|s| !s.revoked).count()
    }

    pub fn rest(&self, index: usize, until: Instant) {
        if let Some(s) = self.lock().get_mut(index) {
            s.resting_until = Some(until);
        }
    }

    /// Whether any key can be used now.
    pub fn has_usable(&self, now: Instant) -> bool {
        self.lock()
            .iter()
            .any(|s| !s.revoked && s.resting_until.is_none_or(|t| now >= t))
    }
}

/// How long a `retry-after` asks to wait (seconds; HTTP dates are not used by relays).
pub fn retry_after(headers: &axum::http::HeaderMap) -> Option<Duration> {
    headers
        .get(axum::http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_skipping_revoked_and_resting_keys() {
        let pool = KeyPool::new(&[Secret::new("a"), Secret::new("b"), Secret::new("c")]).unwrap();
        let now = Instant::now();
        let order: Vec<usize> = (0..3).map(|_| pool.next(now).unwrap().0).collect();
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(pool.revoke(1), 2);
        pool.rest(2, now + Duration::from_secs(5));
        for _ in 0..4 {
            assert_eq!(pool.next(now).unwrap().0, 0);
        }
        assert_eq!(
            pool.next(now + Duration::from_secs(5)).map(|k| k.0 != 1),
            Some(true)
        );
        pool.revoke(0);
        pool.revoke(2);
        assert!(pool.next(now + Duration::from_secs(9)).is_none());
        assert!(!pool.has_usable(now));
    }
}
