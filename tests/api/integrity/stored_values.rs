//! Never serve a broken stored value; Redis values, cluster health, integers, tier metrics.

use super::*;

/// The Redis key the gateway uses for `prompt` asked by the test client.
fn redis_key_of(prompt: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"sk-client-test");
    let namespace = format!("key-{}", hex::encode(&digest[..8]));
    format!("eg:v1:{namespace}:{}", key_for(&chat_body(prompt)).to_hex())
}

fn rejected(metrics: &str, reason: &str) -> u64 {
    let needle =
        format!("edge_gateway_cache_rejected_total{{reason=\"{reason}\",tier=\"redis\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn damaged_crafted_and_huge_redis_values_are_misses_never_crashes_or_outages() {
    use redis::AsyncCommands;
    let redis = crate::helpers::RedisServer::start();
    let with_redis = |url: String| {
        move |c: &mut edge_gateway::config::Config| {
            c.redis.url = Some(edge_gateway::config::Secret::new(url));
            c.redis.probe_interval_ms = 50;
            c.cache.max_entry_bytes = 64 * 1024;
        }
    };
    let writer = spawn_app_with(with_redis(redis.url())).await;
    let reader = spawn_app_with(with_redis(redis.url())).await;
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    // 1. A value truncated by one byte.
    let prompt = "Where is my refund?";
    writer.chat(&chat_body(prompt)).await.bytes().await.unwrap();
    let key = redis_key_of(prompt);
    let good: Vec<u8> = eventually("the entry in Redis", || async {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<Vec<u8>>>(&mut conn.clone())
            .await
            .unwrap()
            .unwrap_or_default();
        (!v.is_empty()).then_some(v)
    })
    .await;
    let _: () = conn.set(&key, &good[..good.len() - 1]).await.unwrap();
    reader.stub.set(Behavior {
        status: Some(500),
        ..Default::default()
    });
    let r = reader.chat(&chat_body(prompt)).await;
    assert_eq!(
        r.status(),
        500,
        "a miss: the relay was asked (and failed on purpose)"
    );
    assert_eq!(header(&r, "x-cache"), "miss");
    eventually("the damaged value deleted", || async {
        let exists: bool = conn.clone().exists(&key).await.unwrap();
        (!exists).then_some(())
    })
    .await;
    let m = reader.get("/metrics").await.text().await.unwrap();
    assert!(rejected(&m, "checksum") >= 1, "{m}");
    reader.stub.set(Behavior::default());
    let r = reader.chat(&chat_body(prompt)).await;
    assert_eq!(header(&r, "x-cache"), "miss", "not served from L1 either");
    let body = json_of(r).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!("Answer to: {prompt}")
    );

    // 2. A crafted size prefix (4 GiB) with a valid checksum.
    let crafted_prompt = "Crafted?";
    writer
        .chat(&chat_body(crafted_prompt))
        .await
        .bytes()
        .await
        .unwrap();
    let crafted_key = redis_key_of(crafted_prompt);
    let mut value: Vec<u8> = eventually("the second entry in Redis", || async {
        let v: Option<Vec<u8>> = conn.clone().get(&crafted_key).await.unwrap();
        v
    })
    .await;
    value.truncate(value.len() - 4);
    // Header: magic, endpoint, flags, expiry and usage (29 bytes), then model and
    // namespace (a u16 length each), then the body's length.
    let mut body_len_at = 3 + 1 + 1 + 24;
    for _ in 0..2 {
        let len = u16::from_le_bytes([value[body_len_at], value[body_len_at + 1]]) as usize;
        body_len_at += 2 + len;
    }
    value[body_len_at..body_len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let checksum = crc32fast::hash(&value);
    value.extend_from_slice(&checksum.to_le_bytes());
    let _: () = conn.set(&crafted_key, value).await.unwrap();
    let r = reader.chat(&chat_body(crafted_prompt)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-cache"), "miss");
    assert_eq!(reader.get("/healthz").await.status(), 200, "still alive");

    // 3. A 50 MB value under a key: skipped and counted, Redis stays up for every key.
    let huge_key = redis_key_of("Huge?");
    let _: () = conn
        .set(&huge_key, vec![b'x'; 50 * 1024 * 1024])
        .await
        .unwrap();
    for _ in 0..5 {
        let r = reader.chat(&chat_body("Huge?")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-cache"), "miss");
        r.bytes().await.unwrap();
        // A new miss stores over the huge value; plant it again.
        let _: () = conn
            .set(&huge_key, vec![b'x'; 50 * 1024 * 1024])
            .await
            .unwrap();
        reader.state.purge_l1();
    }
    let m = reader.get("/metrics").await.text().await.unwrap();
    assert!(rejected(&m, "oversized") >= 1, "{m}");
    assert!(rejected(&m, "length") >= 1, "{m}");
    assert_eq!(
        json_of(reader.get("/readyz").await).await["tiers"]["redis"],
        "up"
    );
    assert!(
        !m.contains(r#"edge_gateway_redis_calls_total{op="get",outcome="timeout"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_deleted_database_file_is_recreated_and_later_rows_and_entries_land_in_it() {
    let app = spawn_app().await;
    app.chat(&chat_body("before")).await.bytes().await.unwrap();
    app.state.flush_analytics().await;
    app.state.flush_sqlite().await;
    let db = app.dir.path().join("gateway.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    for i in 0..10 {
        let r = app.chat(&chat_body(&format!("after {i}"))).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    app.state.flush_analytics().await;
    app.state.flush_sqlite().await;
    assert!(db.exists(), "the file is back");
    assert_eq!(count(&db, "SELECT count(*) FROM cache_events"), 10, "rows");
    assert_eq!(
        count(&db, "SELECT count(*) FROM cache_entries"),
        10,
        "entries"
    );
    assert_eq!(
        json_of(app.get("/readyz").await).await["tiers"]["sqlite"],
        "up"
    );
}

#[tokio::test]
async fn integers_beyond_64_bits_are_refused_so_they_never_share_a_key() {
    let app = spawn_app().await;
    for seed in ["18446744073709551616", "18446744073709551617"] {
        let body = format!(
            r#"{{"model":"gpt-4o-mini","seed":{seed},"messages":[{{"role":"user","content":"dice"}}]}}"#
        );
        let r = app.post_raw("/v1/chat/completions", body).await;
        assert_eq!(r.status(), 400, "{seed}");
        assert_eq!(error_code(r).await, "invalid_json");
    }
    assert_eq!(app.stub.total_calls(), 0);
    let mut keys = std::collections::HashSet::new();
    for seed in ["18446744073709551615", "18446744073709551614"] {
        let body = format!(
            r#"{{"model":"gpt-4o-mini","seed":{seed},"messages":[{{"role":"user","content":"dice"}}]}}"#
        );
        let r = app.post_raw("/v1/chat/completions", body).await;
        assert_eq!(r.status(), 200);
        keys.insert(header(&r, "x-cache-key"));
    }
    assert_eq!(keys.len(), 2, "64-bit seeds keep their own keys");
}

#[tokio::test]
async fn a_tier_that_is_not_configured_is_not_reported_down() {
    let app = spawn_app().await;
    let m = app.get("/metrics").await.text().await.unwrap();
    assert!(
        m.contains(r#"edge_gateway_cache_tier_enabled{tier="redis"} 0"#),
        "{m}"
    );
    assert!(
        !m.contains(r#"edge_gateway_cache_tier_up{tier="redis"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"edge_gateway_cache_tier_up{tier="sqlite"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_stream_cut_at_the_end_of_the_grace_period_still_leaves_its_row() {
    let stub = RelayStub::start().await.unwrap();
    stub.set(Behavior {
        chunk_delay_ms: 2_000,
        ..Default::default()
    });
    let gateway = spawn_gateway(&[
        ("RELAY_URL", stub.url()),
        ("SHUTDOWN_GRACE_SECS", "1".to_owned()),
    ]);
    let client = client_with_key();
    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .body(serde_json::to_vec(&stream_body("a long story please")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reading = tokio::spawn(async move { response.bytes().await });
    gateway.signal("TERM");
    let gateway = exits_cleanly(gateway).await;
    let _ = reading.await;
    let db = gateway.dir.path().join("gw.db");
    assert_eq!(
        count(&db, "SELECT count(*) FROM cache_events WHERE tier = 'miss'"),
        1,
        "the cut stream's row"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM cache_entries"),
        0,
        "not stored"
    );
}

#[tokio::test]
async fn a_relay_that_reports_no_usage_gets_estimated_and_marked_figures() {
    let app = spawn_app().await;
    app.stub.set(Behavior {
        no_usage: true,
        ..Default::default()
    });
    let plain = json_of(app.chat(&chat_body("Do you have gift cards?")).await).await;
    assert!(
        plain.get("usage").is_none(),
        "the client gets the relay's answer as sent"
    );
    let hit = json_of(app.chat(&chat_body("Do you have gift cards?")).await).await;
    assert!(
        hit["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "a hit returns the estimate: {hit}"
    );
    let streamed = app.chat(&stream_body("Can I pay by invoice?")).await;
    streamed.bytes().await.unwrap();
    let db = app.dir.path().join("gateway.db");
    // The streamed miss's row is written once its answer is complete and estimated.
    eventually("plain and streamed misses priced from the estimate", || async {
        app.state.flush_analytics().await;
        let rows = count(
            &db,
            "SELECT count(*) FROM cache_events WHERE tier = 'miss' AND usage_estimated = 1 AND completion_tokens > 0 AND cost_usd > 0",
        );
        (rows == 2).then_some(())
    })
    .await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cache_events WHERE tier = 'l1' AND usage_estimated = 1 AND saved_usd > 0"
        ),
        1
    );
    eventually("both entries stored with their estimate", || async {
        app.state.flush_sqlite().await;
        let entries = count(
            &db,
            "SELECT count(*) FROM cache_entries WHERE usage_estimated = 1",
        );
        (entries == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn with_one_cluster_master_down_the_live_masters_keep_serving_from_redis() {
    use crate::helpers::{RedisCluster, cli};
    use edge_gateway::config::{Config, Secret};
    let mut cluster = RedisCluster::start();
    for node in &cluster.nodes {
        // Live masters keep serving their slots while one is down (no replica here).
        cli(
            node.port,
            &["CONFIG", "SET", "cluster-require-full-coverage", "no"],
        );
    }
    let seeds = cluster.urls();
    let cluster_config = move |c: &mut Config| {
        c.redis.cluster_urls = seeds.iter().cloned().map(Secret::new).collect();
        c.redis.timeout_ms = 300;
        // A breaker that opens stays open long: the test sees what it costs.
        c.redis.probe_interval_ms = 10_000;
    };
    let writer = spawn_app_with(cluster_config.clone()).await;
    let prompts: Vec<String> = (0..45).map(|i| format!("Cluster FAQ {i}")).collect();
    for p in &prompts {
        writer.chat(&chat_body(p)).await.bytes().await.unwrap();
    }
    eventually("every entry in the cluster", || async {
        (cluster
            .nodes
            .iter()
            .map(crate::helpers::RedisServer::dbsize)
            .sum::<u64>()
            == 45)
            .then_some(())
    })
    .await;
    let dead_keys = cli(cluster.nodes[0].port, &["KEYS", "*"]);
    let on_dead = |p: &str| dead_keys.contains(&key_for(&chat_body(p)).to_hex());
    let (dead, live): (Vec<&String>, Vec<&String>) = prompts.iter().partition(|p| on_dead(p));
    assert!(
        dead.len() >= 3 && live.len() >= 20,
        "{} / {}",
        dead.len(),
        live.len()
    );
    let reader = spawn_app_with(cluster_config).await;
    cluster.nodes[0].kill();
    // The dead master's keys first: three failures in a row.
    for p in &dead {
        let r = reader.chat(&chat_body(p)).await;
        assert_eq!(
            r.status(),
            200,
            "a dead master costs a miss, never a failure"
        );
        r.bytes().await.unwrap();
    }
    let mut from_redis = 0;
    for p in &live {
        let r = reader.chat(&chat_body(p)).await;
        assert_eq!(r.status(), 200);
        from_redis += u32::from(header(&r, "x-cache-tier") == "redis");
        r.bytes().await.unwrap();
    }
    assert_eq!(
        from_redis as usize,
        live.len(),
        "every key on a live master is served from Redis"
    );
    assert_eq!(
        json_of(reader.get("/readyz").await).await["tiers"]["redis"],
        "up"
    );
}
