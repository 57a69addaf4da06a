use super::insert::statement_chunks;
use super::*;

#[test]
fn batches_split_into_few_statement_shapes_and_keep_every_row_in_order() {
    let mut shapes = std::collections::BTreeSet::new();
    for n in 0..=300usize {
        let rows: Vec<usize> = (0..n).collect();
        let chunks: Vec<&[usize]> = statement_chunks(&rows).collect();
        assert_eq!(chunks.concat(), rows, "{n} rows");
        shapes.extend(chunks.iter().map(|c| c.len()));
    }
    assert_eq!(
        shapes.into_iter().collect::<Vec<_>>(),
        [1, 2, 4, 8, 16, 32, 64],
        "within the statement cache's 16"
    );
}

#[test]
fn every_statement_shape_inserts_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = OpenedFile::open(&dir.path().join("a.db")).unwrap().conn;
    let key = crate::keying::CacheKey::from_hex(&"ab".repeat(32)).unwrap();
    let event = |i: u64| CacheEvent {
        ts_ms: i,
        endpoint: crate::endpoint::Endpoint::ChatCompletions,
        namespace: Arc::from("ns"),
        model: Arc::from("m"),
        tier: super::super::Outcome::L1,
        status: 200,
        key: i.is_multiple_of(2).then_some(key),
        prompt_tokens: 1,
        completion_tokens: 2,
        usage_estimated: false,
        latency_ms: 0.5,
        relay_region: None,
        cost_usd: 0.0,
        saved_usd: 0.1,
        similarity: None,
        embedding_cost_usd: 0.0,
    };
    let events: Vec<CacheEvent> = (0..127).map(event).collect();
    insert(&mut conn, "lhr", &events, true).unwrap();
    // Several chunks of one shape in a batch share one statement: each binds its own rows.
    let more: Vec<CacheEvent> = (1_000..1_197).map(event).collect();
    insert(&mut conn, "lhr", &more, false).unwrap();
    let (count, ts_sum): (i64, i64) = conn
        .query_row(
            "SELECT count(DISTINCT ts), sum(ts) FROM cache_events WHERE ts >= 1000",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((count, ts_sum), (197, (1_000..1_197).sum::<i64>()));
    conn.execute("DELETE FROM cache_events WHERE ts >= 1000", [])
        .unwrap();
    let (rows, keyed, blank): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(key_hash = ?1), sum(key_hash = '') FROM cache_events",
            ["ab".repeat(32)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((rows, keyed, blank), (127, 64, 63));
}

#[test]
fn the_writer_stays_polite_with_full_batches_until_a_quarter_of_the_queue_waits() {
    let capacity = 65_536;
    // A full batch (4,096 rows) taken off a queue that holds little else: polite.
    assert!(polite(10_000, 10_000 - 500, capacity));
    assert!(polite(BATCH as u64, BATCH as u64, capacity));
    // Falling behind: longer turns, to catch up before the queue drops events.
    assert!(!polite(40_000, 40_000 - 16_384, capacity));
    assert!(polite(40_000, 40_000 - 16_383, capacity));
}
