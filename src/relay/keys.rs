//! A region's relay keys (managed mode), used in turn.
//!
//! Only the key can be blamed for a 401, and only once a check confirms it: a 401 makes
//! the key *suspect* (used only while no good key is left) and the relay checks it with
//! `GET /models`; a second 401 revokes it. Revoked keys are re-checked by the prober and
//! come back when the relay accepts them again. 403/404/400 describe the request (its
//! model, its parameters), never the key. A key answered with 429 rests for its
//! `retry-after`. So no request, however it fails, can empty the pool for good.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;

use crate::config::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Good,
    /// Answered 401 once; a check decides.
    Suspect,
    /// Confirmed bad; re-checked in the background.
    Revoked,
}

#[derive(Debug)]
struct Slot {
    header: HeaderValue,
    standing: Standing,
    resting_until: Option<Instant>,
}

impl Slot {
    fn rested(&self, now: Instant) -> bool {
        self.resting_until.is_none_or(|t| now >= t)
    }
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
                    standing: Standing::Good,
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

    /// The next key in turn, `(index, authorization header)`: a good rested key, else a
    /// suspect rested one (better than refusing while its check runs). `desperate` (no
    /// region has a usable key) also takes a resting key: it may answer 429, which the
    /// client can act on, where refusing would tell it nothing.
    pub fn next(&self, now: Instant, desperate: bool) -> Option<(usize, HeaderValue)> {
        let slots = self.lock();
        let n = slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = || (0..n).map(|k| (start + k) % n);
        let pick = |ok: &dyn Fn(&Slot) -> bool| {
            order()
                .find(|&i| ok(&slots[i]))
                .map(|i| (i, slots[i].header.clone()))
        };
        pick(&|s| s.standing == Standing::Good && s.rested(now))
            .or_else(|| pick(&|s| s.standing == Standing::Suspect && s.rested(now)))
            .or_else(|| {
                if desperate {
                    pick(&|s| s.standing != Standing::Revoked)
                } else {
                    None
                }
            })
    }

    /// A 401 for key `index`: it becomes suspect. Returns its header when it was good
    /// until now (the caller then checks it once).
    pub fn suspect(&self, index: usize) -> Option<HeaderValue> {
        let mut slots = self.lock();
        let slot = slots.get_mut(index)?;
        (slot.standing == Standing::Good).then(|| {
            slot.standing = Standing::Suspect;
            slot.header.clone()
        })
    }

    /// The outcome of checking key `index`: rejected again → revoked (returns the number
    /// of keys still usable); accepted → good again.
    pub fn checked(&self, index: usize, rejected: bool) -> usize {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(index) {
            slot.standing = if rejected {
                Standing::Revoked
            } else {
                Standing::Good
            };
        }
        slots
            .iter()
            .filter(|s| s.standing != Standing::Revoked)
            .count()
    }

    /// Revoked keys, for the prober to re-check.
    pub fn revoked(&self) -> Vec<(usize, HeaderValue)> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.standing == Standing::Revoked)
            .map(|(i, s)| (i, s.header.clone()))
            .collect()
    }

    pub fn rest(&self, index: usize, until: Instant) {
        if let Some(s) = self.lock().get_mut(index) {
            s.resting_until = Some(until);
        }
    }

    /// Whether `next(now, false)` would give a key.
    pub fn has_usable(&self, now: Instant) -> bool {
        self.usable(now) > 0
    }

    /// Keys neither revoked nor resting.
    pub fn usable(&self, now: Instant) -> usize {
        self.lock()
            .iter()
            .filter(|s| s.standing != Standing::Revoked && s.rested(now))
            .count()
    }

    /// Whether any key is not revoked (resting ones included).
    pub fn has_any(&self) -> bool {
        self.lock().iter().any(|s| s.standing != Standing::Revoked)
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
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> KeyPool {
        KeyPool::new(&[Secret::new("a"), Secret::new("b"), Secret::new("c")]).unwrap()
    }

    #[test]
    fn rotates_skipping_revoked_and_resting_keys() {
        let pool = pool();
        let now = Instant::now();
        let order: Vec<usize> = (0..3).map(|_| pool.next(now, false).unwrap().0).collect();
        assert_eq!(order, [0, 1, 2]);
        assert!(pool.suspect(1).is_some());
        assert_eq!(pool.checked(1, true), 2);
        pool.rest(2, now + Duration::from_secs(5));
        for _ in 0..4 {
            assert_eq!(pool.next(now, false).unwrap().0, 0);
        }
        assert_eq!(
            pool.next(now + Duration::from_secs(5), false)
                .map(|k| k.0 != 1),
            Some(true)
        );
    }

    #[test]
    fn a_suspect_key_is_used_only_when_no_good_key_is_left_and_comes_back_when_checked() {
        let pool = pool();
        let now = Instant::now();
        assert!(pool.suspect(0).is_some());
        assert!(pool.suspect(0).is_none(), "checked once, not per 401");
        for _ in 0..6 {
            assert_ne!(pool.next(now, false).unwrap().0, 0);
        }
        pool.suspect(1);
        pool.suspect(2);
        assert!(
            pool.next(now, false).is_some(),
            "suspects still serve: only a confirmed 401 takes a key out"
        );
        pool.checked(0, false);
        assert_eq!(pool.next(now, false).unwrap().0, 0, "good again");
    }

    #[test]
    fn the_pool_never_empties_for_good() {
        let pool = pool();
        let now = Instant::now();
        for i in 0..3 {
            pool.suspect(i);
            pool.checked(i, true);
        }
        assert!(pool.next(now, true).is_none());
        assert!(!pool.has_any());
        let revoked: Vec<usize> = pool.revoked().into_iter().map(|(i, _)| i).collect();
        assert_eq!(revoked, [0, 1, 2], "every revoked key is re-checked");
        pool.checked(1, false);
        assert_eq!(
            pool.next(now, false).unwrap().0,
            1,
            "a key that works again returns"
        );
    }

    #[test]
    fn a_desperate_pick_takes_a_resting_key_but_never_a_revoked_one() {
        let pool = KeyPool::new(&[Secret::new("a"), Secret::new("b")]).unwrap();
        let now = Instant::now();
        pool.rest(0, now + Duration::from_secs(60));
        pool.suspect(1);
        pool.checked(1, true);
        assert!(pool.next(now, false).is_none());
        assert_eq!(pool.next(now, true).unwrap().0, 0);
    }
}
