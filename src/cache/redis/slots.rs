//! Redis Cluster health per range of hash slots: one master down must not take the
//! others with it.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Ranges of hash slots with a breaker each (16384 slots / 128 = 128 slots a range: a
/// master owns whole ranges in any balanced layout).
const SLOT_RANGES: usize = 128;
const SLOTS: u16 = 16_384;

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of the key or its `{hashtag}`).
pub fn hash_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS
}

/// Cluster mode: consecutive failures and down-until time per slot range.
pub(super) struct SlotHealth {
    failures: Vec<AtomicU32>,
    /// Milliseconds since `epoch` until which the range is skipped (0: up).
    down_until: Vec<AtomicU64>,
    down: AtomicUsize,
    epoch: Instant,
}

impl SlotHealth {
    pub(super) fn new() -> Self {
        Self {
            failures: (0..SLOT_RANGES).map(|_| AtomicU32::new(0)).collect(),
            down_until: (0..SLOT_RANGES).map(|_| AtomicU64::new(0)).collect(),
            down: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    pub(super) fn range(key: &[u8]) -> usize {
        usize::from(hash_slot(key)) * SLOT_RANGES / usize::from(SLOTS)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether the range is being skipped now (its retry time has not come).
    pub(super) fn skipping(&self, range: usize) -> bool {
        let until = self.down_until[range].load(Ordering::Acquire);
        until != 0 && self.now_ms() < until
    }

    pub(super) fn succeeded(&self, range: usize) {
        self.failures[range].store(0, Ordering::Release);
        if self.down_until[range].swap(0, Ordering::AcqRel) != 0
            && self.down.fetch_sub(1, Ordering::AcqRel) == 1
        {
            tracing::info!("redis cluster: every slot range answers again");
        }
    }

    /// Returns whether every range is now down.
    pub(super) fn failed(&self, range: usize, threshold: u32, retry_in: Duration) -> bool {
        let failures = self.failures[range].fetch_add(1, Ordering::AcqRel) + 1;
        if failures < threshold {
            return false;
        }
        let until = self.now_ms() + retry_in.as_millis() as u64;
        if self.down_until[range].swap(until, Ordering::AcqRel) == 0 {
            let down = self.down.fetch_add(1, Ordering::AcqRel) + 1;
            if down == 1 {
                tracing::warn!(
                    "redis cluster: a slot range does not answer; its keys go to SQLite while the other masters serve theirs"
                );
            }
            return down == SLOT_RANGES;
        }
        false
    }

    pub(super) fn reset(&self) {
        for range in 0..SLOT_RANGES {
            self.failures[range].store(0, Ordering::Release);
            self.down_until[range].store(0, Ordering::Release);
        }
        self.down.store(0, Ordering::Release);
    }

    /// Hash slots currently skipped.
    pub(super) fn slots_down(&self) -> usize {
        self.down.load(Ordering::Acquire) * usize::from(SLOTS) / SLOT_RANGES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(hash_slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"bar"), 5061);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(
            hash_slot(b"{}foo"),
            9500,
            "an empty tag hashes the whole key"
        );
    }

    #[test]
    fn one_range_going_down_leaves_the_others_up() {
        let slots = SlotHealth::new();
        let retry = Duration::from_secs(60);
        for _ in 0..2 {
            assert!(!slots.failed(3, 3, retry));
        }
        assert!(!slots.skipping(3), "below the threshold");
        assert!(!slots.failed(3, 3, retry));
        assert!(slots.skipping(3));
        assert!(!slots.skipping(4));
        assert_eq!(slots.slots_down(), 128);
        slots.succeeded(3);
        assert!(!slots.skipping(3));
        assert_eq!(slots.slots_down(), 0);
        let mut all = false;
        for range in 0..SLOT_RANGES {
            all = slots.failed(range, 1, retry);
        }
        assert!(all, "every range down: the tier is down");
    }
}
