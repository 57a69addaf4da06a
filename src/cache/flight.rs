//! Single-flight: concurrent identical misses in one instance make one relay call. The
//! first becomes the leader; the others wait for its outcome. A leader that vanishes
//! without an outcome (cancelled, panicked) releases its followers, who then each call
//! the relay alone, so no follower ever hangs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use tokio::sync::watch;

use super::answer::CachedAnswer;
use crate::error::ApiError;
use crate::keying::CacheKey;

/// A relay answer that is not cached (an error status), kept whole so every follower
/// can be given the same answer the leader got.
#[derive(Debug)]
pub struct BufferedAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub region: Arc<str>,
}

#[derive(Clone, Debug)]
pub enum FlightOutcome {
    Answer(Arc<CachedAnswer>),
    Relayed(Arc<BufferedAnswer>),
    Failed(ApiError),
}

type Slot = watch::Receiver<Option<FlightOutcome>>;
type Publisher = Arc<watch::Sender<Option<FlightOutcome>>>;

#[derive(Default)]
pub struct Flights {
    in_flight: Mutex<HashMap<CacheKey, Publisher>>,
}

pub enum Join {
    Leader(FlightGuard),
    Follower(Slot),
}

/// Held by the leader; `complete` hands the outcome to every follower.
pub struct FlightGuard {
    flights: Arc<Flights>,
    key: CacheKey,
    sender: Publisher,
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Publisher>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn join(self: &Arc<Self>, key: CacheKey) -> Join {
        let mut map = self.lock();
        if let Some(sender) = map.get(&key) {
            return Join::Follower(sender.subscribe());
        }
        let sender = Arc::new(watch::Sender::new(None));
        map.insert(key, sender.clone());
        Join::Leader(FlightGuard {
            flights: self.clone(),
            key,
            sender,
        })
    }

    /// Followers currently waiting on the flight for `key`.
    #[cfg(any(test, feature = "testing"))]
    pub fn waiting(&self, key: &CacheKey) -> usize {
        self.lock().get(key).map_or(0, |s| s.receiver_count())
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FlightGuard {
    pub fn complete(self, outcome: FlightOutcome) {
        // Publish first, then leave the map (in Drop): a request that joins in between
        // gets this outcome at once instead of starting a second relay call.
        self.sender.send_replace(Some(outcome));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        // Leaving the map drops its copy of the sender; ours goes with the guard, after
        // which followers without an outcome see the channel closed.
        self.flights.lock().remove(&self.key);
    }
}

/// Waits for the leader's outcome; `None` when the leader gave up without one.
pub async fn wait(mut slot: Slot) -> Option<FlightOutcome> {
    match slot.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_outcome_and_a_vanished_leader_frees_them() {
        let flights = Arc::new(Flights::default());
        let key = CacheKey([1; 32]);
        let Join::Leader(leader) = flights.join(key) else {
            panic!("first is leader")
        };
        let Join::Follower(follower) = flights.join(key) else {
            panic!("second follows")
        };
        assert_eq!(flights.waiting(&key), 1);
        leader.complete(FlightOutcome::Failed(ApiError::NoHealthyRelay));
        assert!(matches!(
            wait(follower).await,
            Some(FlightOutcome::Failed(ApiError::NoHealthyRelay))
        ));
        assert!(flights.is_empty());

        let Join::Leader(leader) = flights.join(key) else {
            panic!("a new flight starts after completion")
        };
        let Join::Follower(follower) = flights.join(key) else {
            panic!()
        };
        drop(leader);
        assert!(wait(follower).await.is_none());
        assert!(flights.is_empty());
    }
}
