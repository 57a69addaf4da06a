//! Lookups that are ready at the same moment go to Redis as one pipeline.
//!
//! The `redis` crate's multiplexed connection writes whatever is queued when its driver
//! task runs, and tokio runs a woken task right after the one that woke it (the LIFO
//! slot): each lookup woke the driver and went out alone, one `writev` on the serving
//! core per Redis hit (0.81 a hit at saturation, `perf stat`). Here the first lookup of
//! a moment spawns a sender that yields once, so every request task that is ready now
//! queues its key behind it; the sender then writes them all as one pipeline and hands
//! each caller its own reply. Under load that is one write for many hits; alone, a
//! lookup waits only for that one yield.
//!
//! Standalone Redis only: a Cluster routes each key to its own master.

use std::sync::{Arc, Mutex, PoisonError};

use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;

/// The lookups waiting for the next pipeline.
#[derive(Default)]
pub(super) struct Lookups {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Lookup>,
    /// A sender is spawned and has not taken `waiting` yet.
    sender_pending: bool,
}

struct Lookup {
    key: String,
    max_bytes: usize,
    reply: oneshot::Sender<RedisResult<Vec<u8>>>,
}

impl Lookups {
    /// `GETRANGE key 0 max_bytes`, sent with whatever other lookups are ready now.
    /// Dropping the future (the caller's timeout) leaves the others unharmed.
    pub(super) async fn get(
        self: &Arc<Self>,
        connection: MultiplexedConnection,
        key: String,
        max_bytes: usize,
    ) -> RedisResult<Vec<u8>> {
        let (reply, answer) = oneshot::channel();
        let spawn_sender = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push(Lookup {
                key,
                max_bytes,
                reply,
            });
            !std::mem::replace(&mut queue.sender_pending, true)
        };
        if spawn_sender {
            tokio::spawn(Arc::clone(self).send(connection));
        }
        answer.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "redis lookup dropped before it was sent",
            )))
        })
    }

    async fn send(self: Arc<Self>, mut connection: MultiplexedConnection) {
        // Every task that is ready now runs (and queues its lookup) before this resumes.
        tokio::task::yield_now().await;
        let mut lookups = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.sender_pending = false;
            std::mem::take(&mut queue.waiting)
        };
        lookups.retain(|l| !l.reply.is_closed()); // their callers gave up
        match lookups.len() {
            0 => {}
            1 => {
                let lookup = lookups.remove(0);
                let mut cmd = redis::cmd("GETRANGE");
                cmd.arg(&lookup.key).arg(0).arg(lookup.max_bytes);
                let _ = lookup.reply.send(cmd.query_async(&mut connection).await);
            }
            _ => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for l in &lookups {
                    pipe.cmd("GETRANGE").arg(&l.key).arg(0).arg(l.max_bytes);
                }
                match pipe
                    .query_async::<Vec<RedisResult<Vec<u8>>>>(&mut connection)
                    .await
                {
                    // One reply per command, in order; a missing one reaches its caller
                    // as a dropped lookup.
                    Ok(values) => {
                        for (lookup, value) in lookups.into_iter().zip(values) {
                            let _ = lookup.reply.send(value);
                        }
                    }
                    Err(e) => {
                        for lookup in lookups {
                            let _ = lookup.reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;
    use testkit::redis::{RedisServer, cli};

    async fn connect(server: &RedisServer) -> MultiplexedConnection {
        redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Redis's count of reads from its clients' sockets: a pipeline arriving in one
    /// write is one read, lookups written one by one are one read each.
    fn reads(server: &RedisServer) -> u64 {
        cli(server.port, &["INFO", "stats"])
            .lines()
            .find_map(|l| l.strip_prefix("total_reads_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("INFO stats has total_reads_processed")
    }

    /// What the hit path does: each request is its own task on a worker, the tier's
    /// `get` their only Redis call. One worker thread, as on the benchmark's one core.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn hits_ready_together_share_one_write_and_each_gets_its_own_answer() {
        use crate::cache::{CacheMetrics, answer::CachedAnswer};
        use crate::keying::CacheKey;

        let server = RedisServer::start();
        let config = crate::config::RedisConfig {
            url: Some(crate::config::Secret::new(server.url())),
            ..Default::default()
        };
        let clock = crate::clock::Clock::system();
        let tier = super::super::RedisTier::with_limits(
            &config,
            &CacheMetrics::unregistered(),
            1 << 20,
            clock.clone(),
        )
        .unwrap();
        assert!(tier.try_recover().await);
        let keys: Vec<CacheKey> = (0..40)
            .map(|i| CacheKey::from_hex(&format!("{i:064x}")).unwrap())
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let body = format!(r#"{{"answer":{i}}}"#);
            let answer = CachedAnswer::new(
                crate::endpoint::Endpoint::ChatCompletions,
                Arc::from("ns"),
                body.into(),
                &serde_json::json!({"model": "m"}),
                clock.now_ms() + 60_000,
            );
            tier.put_now(*key, Arc::new(answer)).await;
        }
        let before = reads(&server);
        // Spawned by a task on the worker, so all are ready before the first one runs
        // (as requests that arrived together are).
        let spawner = tokio::spawn(async move {
            keys.into_iter()
                .map(|key| {
                    let tier = tier.clone();
                    tokio::spawn(async move { tier.get("ns", &key).await })
                })
                .collect::<Vec<_>>()
        });
        let hits = spawner.await.unwrap();
        for (i, hit) in hits.into_iter().enumerate() {
            let answer = hit.await.unwrap().unwrap().expect("stored");
            assert_eq!(answer.body, format!(r#"{{"answer":{i}}}"#));
        }
        let read = reads(&server) - before;
        // Sent one by one, the 40 lookups were 40 reads.
        assert!(read <= 8, "{read} reads for 40 lookups ready together");
    }

    #[tokio::test]
    async fn one_failing_command_fails_only_its_own_lookup() {
        let server = RedisServer::start();
        cli(server.port, &["SET", "text", "plain"]);
        cli(server.port, &["HSET", "hash", "f", "v"]); // GETRANGE on it: WRONGTYPE
        let connection = connect(&server).await;
        let lookups = Arc::new(Lookups::default());
        let (text, hash, absent) = tokio::join!(
            lookups.get(connection.clone(), "text".into(), 100),
            lookups.get(connection.clone(), "hash".into(), 100),
            lookups.get(connection.clone(), "absent".into(), 100),
        );
        assert_eq!(text.unwrap(), b"plain");
        assert!(hash.is_err(), "WRONGTYPE reaches its caller");
        assert_eq!(absent.unwrap(), b"", "a missing key reads as empty");
        // Bounded: at most max_bytes + 1 bytes come back (GETRANGE's end is inclusive).
        let short = lookups.get(connection, "text".into(), 2).await.unwrap();
        assert_eq!(short, b"pla");
    }

    #[tokio::test]
    async fn a_lookup_given_up_on_does_not_disturb_the_next() {
        let server = RedisServer::start();
        cli(server.port, &["SET", "a", "1"]);
        let connection = connect(&server).await;
        let lookups = Arc::new(Lookups::default());
        let abandoned = lookups.get(connection.clone(), "a".into(), 10);
        drop(abandoned); // never polled: nothing queued
        let mut given_up = Box::pin(lookups.get(connection.clone(), "a".into(), 10));
        let waker = futures_util::task::noop_waker();
        let polled = given_up
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending(), "queued, its sender not run yet");
        drop(given_up);
        assert_eq!(lookups.get(connection, "a".into(), 10).await.unwrap(), b"1");
    }
}
