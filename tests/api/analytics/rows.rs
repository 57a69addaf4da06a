//! One row per request, with its tier, tokens and dollars; retention; nothing lost at SIGTERM.

use super::*;

#[tokio::test]
async fn every_request_gets_one_row_with_its_tier_tokens_and_dollars() {
    let app = spawn_app().await;
    let db = app.dir.path().join("gateway.db");
    let body = chat_body("What is your refund window?");
    let miss = app.chat(&body).await;
    let key = miss.headers()["x-cache-key"].to_str().unwrap().to_owned();
    let usage = json_of(miss).await["usage"].clone();
    let (p, c) = (
        usage["prompt_tokens"].as_i64().unwrap(),
        usage["completion_tokens"].as_i64().unwrap(),
    );
    app.chat(&body).await.bytes().await.unwrap(); // l1 hit
    let bypass = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("cache-control", "no-store")
        .header("authorization", "Bearer sk-client-test")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    bypass.bytes().await.unwrap();
    // Coalesced: three concurrent identical misses, the relay held until all have joined.
    app.stub.set(Behavior {
        hold: true,
        ..Default::default()
    });
    let coalesce = chat_body("Do you price match?");
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (client, url, body) = (
                app.client.clone(),
                app.url("/v1/chat/completions"),
                serde_json::to_vec(&coalesce).unwrap(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("authorization", "Bearer sk-client-test")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Release the relay once both followers are waiting on the leader.
    let key2 = {
        use sha2::Digest;
        let ns = format!(
            "key-{}",
            hex::encode(&sha2::Sha256::digest(b"sk-client-test")[..8])
        );
        let Value::Object(m) = coalesce.clone() else {
            unreachable!()
        };
        edge_gateway::testing::keying::cache_key(
            edge_gateway::testing::endpoint::Endpoint::ChatCompletions,
            &ns,
            &m,
            Default::default(),
        )
    };
    eventually("two followers waiting", || async {
        (app.state.waiting_on(&key2) == 2).then_some(())
    })
    .await;
    app.stub.release();
    for t in tasks {
        t.await.unwrap();
    }
    app.stub.set(Behavior::default());
    // A streamed miss with usage, and a request refused before the relay.
    let mut streamed = stream_body("Streamed question here");
    streamed["stream_options"] = json!({"include_usage": true});
    app.chat(&streamed).await.bytes().await.unwrap();
    assert_eq!(
        app.post_raw("/v1/chat/completions", "{").await.status(),
        400
    );

    eventually("all 8 rows", || async {
        app.state.flush_analytics().await;
        (rows(&db).len() == 8).then_some(())
    })
    .await;
    let rows = rows(&db);
    let tiers: Vec<&str> = rows.iter().map(|r| r.tier.as_str()).collect();
    let mut sorted_tiers = tiers.clone();
    sorted_tiers.sort();
    assert_eq!(
        sorted_tiers,
        [
            "bypass",
            "bypass",
            "coalesced",
            "coalesced",
            "l1",
            "miss",
            "miss",
            "miss"
        ],
        "{tiers:?}"
    );
    let (m, h, b) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(
        (m.tier.as_str(), h.tier.as_str(), b.tier.as_str()),
        ("miss", "l1", "bypass")
    );
    for r in [m, h, b] {
        assert_eq!(r.region, "test");
        assert_eq!(r.endpoint, "chat.completions");
        assert_eq!(r.model, "gpt-4o-mini");
        assert_eq!(r.status, 200);
        assert_eq!(r.key_hash, key);
        assert!(r.namespace.starts_with("key-"));
        assert_eq!((r.prompt_tokens, r.completion_tokens), (p, c));
    }
    assert!(close(m.cost_usd, mini_cost(p, c)) && m.saved_usd == 0.0);
    assert_eq!(m.relay_region.as_deref(), Some("default"));
    assert!(
        close(h.saved_usd, mini_cost(p, c)) && h.cost_usd == 0.0,
        "a hit saves what the miss cost"
    );
    assert!(h.relay_region.is_none());
    assert!(close(b.cost_usd, mini_cost(p, c)) && b.saved_usd == 0.0);

    let coalesced: Vec<&EventRow> = rows.iter().filter(|r| r.tier == "coalesced").collect();
    let leader = rows
        .iter()
        .find(|r| r.tier == "miss" && r.key_hash == key2.to_hex())
        .unwrap();
    for r in &coalesced {
        assert!(r.saved_usd > 0.0 && close(r.saved_usd, leader.cost_usd));
        assert_eq!(r.cost_usd, 0.0);
    }
    let stream_row = rows
        .iter()
        .rev()
        .find(|r| r.tier == "miss" && r.key_hash != key && r.key_hash != key2.to_hex())
        .unwrap();
    assert!(
        stream_row.completion_tokens > 0,
        "a streamed miss records the stream's usage"
    );
    assert!(close(
        stream_row.cost_usd,
        mini_cost(stream_row.prompt_tokens, stream_row.completion_tokens)
    ));
    let bad = rows.last().unwrap();
    assert_eq!(
        (bad.status, bad.tier.as_str(), bad.key_hash.as_str()),
        (400, "bypass", "")
    );

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let saved: i64 = rows
        .iter()
        .filter(|r| r.tier == "l1" || r.tier == "coalesced")
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    assert!(saved > p + c);
    assert!(
        metrics.contains(&format!("edge_gateway_tokens_saved_total {saved}")),
        "{metrics}"
    );
    assert!(metrics.contains("edge_gateway_analytics_dropped_total 0"));
}

#[tokio::test]
async fn rows_past_the_retention_are_pruned_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let (code, _, _) = run_binary(&["migrate"], &[("SQLITE_PATH", db.to_str().unwrap())]);
    assert_eq!(code, 0);
    let now = edge_gateway::clock::Clock::system().now_ms() as i64;
    {
        let conn = Connection::open(&db).unwrap();
        for age_days in [30, 10, 1] {
            conn.execute(
                "INSERT INTO cache_events (ts, region, endpoint, namespace, model, tier, status, key_hash, latency_ms)
                 VALUES (?1, 'r', 'chat.completions', 'n', 'm', 'l1', 200, 'k', 1.0)",
                [now - age_days * 86_400_000],
            )
            .unwrap();
        }
    }
    let _app = spawn_app_with({
        let db = db.clone();
        move |c| {
            c.sqlite.path = db;
            c.analytics.retention_days = 7;
        }
    })
    .await;
    eventually("rows older than 7 days to be pruned", || async {
        let count: i64 = Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM cache_events", [], |r| r.get(0))
            .unwrap();
        (count == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn no_row_is_lost_across_sigterm_under_load() {
    let stub = RelayStub::start().await.unwrap();
    stub.set(Behavior {
        delay_ms: 20,
        ..Default::default()
    });
    let gateway = spawn_gateway(&[("RELAY_URL", stub.url())]);
    let db = gateway.dir.path().join("gw.db");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_static("Bearer sk-client-test"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let url = gateway.url("/v1/chat/completions");
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (client, url, answered) = (client.clone(), url.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            // A few prompts repeat, so hits, misses and coalesced waiters all occur.
            let body =
                serde_json::to_vec(&chat_body(&format!("Load question {}", i % 40))).unwrap();
            if let Ok(r) = client.post(url).body(body).send().await
                && r.bytes().await.is_ok()
            {
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    eventually("some requests answered", || async {
        (answered.load(std::sync::atomic::Ordering::SeqCst) >= 50).then_some(())
    })
    .await;
    gateway.signal("TERM");
    for t in tasks {
        let _ = t.await;
    }
    let _gateway = exits_cleanly(gateway).await;
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst) as i64;
    let count: i64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM cache_events", [], |r| r.get(0))
        .unwrap();
    assert!(answered >= 50);
    assert_eq!(count, answered, "every answered request has its row");
}
