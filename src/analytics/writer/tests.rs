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

/// Each column of each row, in every statement shape, holds that row's own value: the
/// region is bound once per statement and every other value by its row's placeholders.
#[test]
fn every_column_of_every_row_lands_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = OpenedFile::open(&dir.path().join("a.db")).unwrap().conn;
    let tiers = [
        super::super::Outcome::L1,
        super::super::Outcome::Miss,
        super::super::Outcome::Redis,
    ];
    let event = |i: u64| CacheEvent {
        ts_ms: i,
        endpoint: if i.is_multiple_of(2) {
            crate::endpoint::Endpoint::ChatCompletions
        } else {
            crate::endpoint::Endpoint::Embeddings
        },
        namespace: Arc::from(format!("ns{i}")),
        model: Arc::from(format!("m{i}")),
        tier: tiers[i as usize % 3],
        status: 200 + (i % 5) as u16,
        key: Some(crate::keying::CacheKey([i as u8; 32])),
        prompt_tokens: i * 3,
        completion_tokens: i * 7,
        usage_estimated: i % 2 == 1,
        latency_ms: i as f64 / 4.0,
        relay_region: i.is_multiple_of(3).then(|| Arc::from(format!("r{i}"))),
        cost_usd: i as f64 / 100.0,
        saved_usd: i as f64 / 1000.0,
        similarity: i.is_multiple_of(4).then_some(i as f32 / 512.0),
        embedding_cost_usd: i as f64 / 8.0,
    };
    // 64 + 32 + 2 + 1 rows: four statement shapes.
    let events: Vec<CacheEvent> = (0..99).map(event).collect();
    insert(&mut conn, "lhr", &events, true).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT ts, region, endpoint, namespace, model, tier, status, key_hash,
                    prompt_tokens, completion_tokens, latency_ms, relay_region, cost_usd,
                    saved_usd, usage_estimated, similarity, embedding_cost_usd
             FROM cache_events ORDER BY ts",
        )
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| {
            Ok(format!(
                "{} {} {} {} {} {} {} {} {} {} {} {:?} {} {} {} {:?} {}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, f64>(10)?,
                r.get::<_, Option<String>>(11)?,
                r.get::<_, f64>(12)?,
                r.get::<_, f64>(13)?,
                r.get::<_, i64>(14)?,
                r.get::<_, Option<f64>>(15)?,
                r.get::<_, f64>(16)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} lhr {} {} {} {} {} {} {} {} {} {:?} {} {} {} {:?} {}",
                e.ts_ms,
                e.endpoint.as_str(),
                e.namespace,
                e.model,
                e.tier.as_str(),
                e.status,
                e.key.map(|k| k.hex_str().to_string()).unwrap_or_default(),
                e.prompt_tokens,
                e.completion_tokens,
                e.latency_ms,
                e.relay_region.as_deref().map(str::to_owned),
                e.cost_usd,
                e.saved_usd,
                i64::from(e.usage_estimated),
                e.similarity.map(f64::from),
                e.embedding_cost_usd,
            )
        })
        .collect();
    assert_eq!(rows, expected);
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
