//! The SQLite tier against real files: reads, writes, expiry, purges, eviction.

use super::writer::{apply, cleanup};
use super::*;

fn entry(ns: &str, body_len: usize, ttl: Duration) -> Arc<CachedAnswer> {
    Arc::new(CachedAnswer::new(
        Endpoint::ChatCompletions,
        Arc::from(ns),
        Bytes::from(vec![b'x'; body_len]),
        &serde_json::json!({"model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
        Clock::system().now_ms() + ttl.as_millis() as u64,
    ))
}

#[tokio::test]
async fn keeping_warm_writes_an_entry_once_and_a_new_one_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let tier = SqliteTier::open(&path, u64::MAX, Duration::from_secs(60), Clock::system()).unwrap();
    // Counts every row written to cache_entries, however it is written.
    let counter = db::open(&path).unwrap();
    counter
        .execute_batch(
            "CREATE TABLE writes (n INTEGER);
             INSERT INTO writes VALUES (0);
             CREATE TRIGGER w1 AFTER INSERT ON cache_entries BEGIN UPDATE writes SET n = n + 1; END;
             CREATE TRIGGER w2 AFTER UPDATE ON cache_entries BEGIN UPDATE writes SET n = n + 1; END;",
        )
        .unwrap();
    let writes = || -> i64 {
        counter
            .query_row("SELECT n FROM writes", [], |r| r.get(0))
            .unwrap()
    };
    let key = CacheKey([7; 32]);
    let first = entry("acme", 10, Duration::from_secs(60));
    for _ in 0..5 {
        tier.keep_warm(key, first.clone()); // five Redis hits on the same entry
    }
    tier.flush().await;
    assert_eq!(writes(), 1, "the same entry is written once");
    let renewed = Arc::new(CachedAnswer::restore(
        first.endpoint,
        first.namespace.clone(),
        first.model.clone(),
        first.body.clone(),
        first.usage,
        first.expires_at_ms + 1_000,
    ));
    tier.keep_warm(key, renewed.clone());
    tier.keep_warm(key, renewed);
    tier.flush().await;
    assert_eq!(writes(), 2, "a new entry for the key is written");
    tier.purge(None).await.unwrap();
    tier.keep_warm(key, first);
    tier.flush().await;
    assert_eq!(writes(), 3, "after a purge it is written again");
}

#[tokio::test]
async fn stores_reads_purges_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let tier = SqliteTier::open(&path, u64::MAX, Duration::from_secs(60), Clock::system()).unwrap();
    let (k1, k2, k3) = (CacheKey([1; 32]), CacheKey([2; 32]), CacheKey([3; 32]));
    tier.put(k1, entry("acme", 10, Duration::from_secs(60)));
    tier.put(k2, entry("acme/faq", 10, Duration::from_secs(60)));
    tier.put(k3, entry("acmeish", 10, Duration::from_secs(60)));
    tier.flush().await;
    let got = tier.get(k1).await.expect("stored");
    assert_eq!(got.usage.completion_tokens, 2);
    assert_eq!(got.namespace.as_ref(), "acme");

    let reopened =
        SqliteTier::open(&path, u64::MAX, Duration::from_secs(60), Clock::system()).unwrap();
    assert!(reopened.get(k2).await.is_some(), "durable across reopen");
    assert_eq!(reopened.purge(Some("acme")).await.unwrap(), 2);
    assert!(reopened.get(k1).await.is_none());
    assert!(reopened.get(k2).await.is_none());
    assert!(
        reopened.get(k3).await.is_some(),
        "a prefix is not a namespace"
    );
    assert_eq!(reopened.purge(None).await.unwrap(), 1);
}

#[tokio::test]
async fn expired_entries_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::system();
    let path = dir.path().join("c.db");
    let tier = SqliteTier::open(&path, u64::MAX, Duration::from_secs(60), clock.clone()).unwrap();
    let key = CacheKey([9; 32]);
    tier.put(key, entry("n", 5, Duration::from_secs(60)));
    tier.flush().await;
    assert!(tier.get(key).await.is_some(), "live for a minute");
    clock.advance(Duration::from_secs(61));
    assert!(tier.get(key).await.is_none(), "expired on the tier's clock");
    let reopened = SqliteTier::open(&path, u64::MAX, Duration::from_secs(60), clock).unwrap();
    assert!(
        reopened.get(key).await.is_none(),
        "not loaded as a live key"
    );
}

#[test]
fn cleanup_evicts_oldest_until_under_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open_migrated(&dir.path().join("c.db")).unwrap();
    let mut ops = Vec::new();
    for i in 0..10u8 {
        ops.push(WriteOp::Put(
            CacheKey([i; 32]),
            entry("n", 100, Duration::from_secs(60)),
        ));
    }
    apply(&mut conn, ops, Clock::system().now_ms()).unwrap();
    // Make creation order explicit: key i created at i.
    for i in 0..10u8 {
        conn.execute(
            "UPDATE cache_entries SET created_at_ms = ?1 WHERE key = ?2",
            params![i as i64, CacheKey([i; 32]).to_hex()],
        )
        .unwrap();
    }
    let gone = cleanup(&conn, 450, Clock::system().now_ms()).unwrap();
    assert_eq!(gone.len(), 6);
    let mut left: Vec<String> = conn
        .prepare("SELECT key FROM cache_entries ORDER BY created_at_ms")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let total: i64 = conn
        .query_row("SELECT sum(size) FROM cache_entries", [], |r| r.get(0))
        .unwrap();
    assert!(total <= 450, "{total}");
    assert_eq!(left.len(), 4);
    assert_eq!(
        left.remove(0),
        CacheKey([6; 32]).to_hex(),
        "the newest stay"
    );
}
