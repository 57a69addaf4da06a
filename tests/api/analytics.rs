use edge_gateway::config::Secret;
use relay_stub::{Behavior, RelayStub};
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::helpers::RedisServer;
use crate::helpers::*;

const TOKEN: &str = "admin-token-0123456789";

#[derive(Debug)]
struct EventRow {
    region: String,
    endpoint: String,
    namespace: String,
    model: String,
    tier: String,
    status: i64,
    key_hash: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    relay_region: Option<String>,
    cost_usd: f64,
    saved_usd: f64,
}

fn rows(db: &std::path::Path) -> Vec<EventRow> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT region, endpoint, namespace, model, tier, status, key_hash, prompt_tokens,
                    completion_tokens, relay_region, cost_usd, saved_usd
             FROM cache_events ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(EventRow {
            region: r.get(0)?,
            endpoint: r.get(1)?,
            namespace: r.get(2)?,
            model: r.get(3)?,
            tier: r.get(4)?,
            status: r.get(5)?,
            key_hash: r.get(6)?,
            prompt_tokens: r.get(7)?,
            completion_tokens: r.get(8)?,
            relay_region: r.get(9)?,
            cost_usd: r.get(10)?,
            saved_usd: r.get(11)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// gpt-4o-mini's built-in price: $0.15 / $0.60 per million tokens.
fn mini_cost(prompt: i64, completion: i64) -> f64 {
    (prompt as f64 * 0.15 + completion as f64 * 0.60) / 1e6
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

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
        edge_gateway::keying::cache_key(
            edge_gateway::endpoint::Endpoint::ChatCompletions,
            &ns,
            &m,
            Default::default(),
        )
    };
    eventually("two followers waiting", || async {
        (app.state.flights.waiting(&key2) == 2).then_some(())
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
        app.state.analytics.writer.flush().await;
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

fn known_dataset(db: &std::path::Path) {
    let (code, _, err) = run_binary(&["migrate"], &[("SQLITE_PATH", db.to_str().unwrap())]);
    assert_eq!(code, 0, "{err}");
    let conn = Connection::open(db).unwrap();
    for (i, (tier, p, c, latency, cost, saved)) in [
        ("l1", 10, 20, 1.0, 0.0, 0.5),
        ("redis", 5, 5, 3.0, 0.0, 0.25),
        ("miss", 10, 20, 100.0, 0.5, 0.0),
        ("miss", 1, 1, 200.0, 0.1, 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        conn.execute(
            "INSERT INTO cache_events (ts, region, endpoint, namespace, model, tier, status, key_hash,
                 prompt_tokens, completion_tokens, latency_ms, relay_region, cost_usd, saved_usd)
             VALUES (?1, 'cdg', 'chat.completions', 'acme', 'gpt-4o-mini', ?2, 200, 'k', ?3, ?4, ?5, NULL, ?6, ?7)",
            rusqlite::params![1_000_000 + i as i64, tier, p, c, latency, cost, saved],
        )
        .unwrap();
    }
    // Outside the range: must not count.
    conn.execute(
        "INSERT INTO cache_events (ts, region, endpoint, namespace, model, tier, status, key_hash, latency_ms)
         VALUES (5000000, 'cdg', 'chat.completions', 'acme', 'gpt-4o-mini', 'l1', 200, 'k', 1.0)",
        [],
    )
    .unwrap();
}

#[test]
fn analytics_command_prints_exact_figures_in_three_formats() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("known.db");
    known_dataset(&db);
    let env = [("SQLITE_PATH", db.to_str().unwrap())];
    let args = |format: &'static str| {
        vec![
            "analytics",
            "--since",
            "1000000",
            "--until",
            "2000000",
            "--group-by",
            "tier",
            "--format",
            format,
        ]
    };
    let (code, csv, err) = run_binary(&args("csv"), &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        csv,
        "tier,requests,hits,hit_rate,tokens_saved,usd_saved,usd_spent,p50_ms,p95_ms\n\
         l1,1,1,1.0000,30,0.500000,0.000000,1.000,1.000\n\
         miss,2,0,0.0000,0,0.000000,0.600000,100.000,200.000\n\
         redis,1,1,1.0000,10,0.250000,0.000000,3.000,3.000\n"
    );
    let (code, json, _) = run_binary(&args("json"), &env);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["group_by"], json!(["tier"]));
    assert_eq!(report["rows"][1]["group"]["tier"], "miss");
    assert_eq!(report["rows"][1]["requests"], 2);
    assert_eq!(report["rows"][1]["usd_spent"], 0.6);
    assert_eq!(report["rows"][1]["p95_latency_ms"], 200.0);
    assert_eq!(
        report["total"],
        json!({"requests": 4, "hits": 2, "hit_rate": 0.5, "tokens_saved": 40, "usd_saved": 0.75,
               "usd_spent": 0.6, "p50_latency_ms": 3.0, "p95_latency_ms": 200.0})
    );
    let (code, table, _) = run_binary(&args("table"), &env);
    assert_eq!(code, 0);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "tier",
            "requests",
            "hits",
            "hit_rate",
            "tokens_saved",
            "usd_saved",
            "usd_spent",
            "p50_ms",
            "p95_ms"
        ]
    );
    assert_eq!(
        lines[1],
        [
            "l1", "1", "1", "1.0000", "30", "0.500000", "0.000000", "1.000", "1.000"
        ]
    );
    assert_eq!(
        lines[4],
        [
            "TOTAL", "4", "2", "0.5000", "40", "0.750000", "0.600000", "3.000", "200.000"
        ]
    );

    let (code, csv, _) = run_binary(
        &[
            "analytics",
            "--since",
            "1000000",
            "--until",
            "2000000",
            "--group-by",
            "region,model",
            "--format",
            "csv",
        ],
        &env,
    );
    assert_eq!(code, 0);
    assert_eq!(
        csv.lines().nth(1).unwrap(),
        "cdg,gpt-4o-mini,4,2,0.5000,40,0.750000,0.600000,3.000,200.000"
    );
    let (code, _, err) = run_binary(&["analytics", "--group-by", "colour"], &env);
    assert_eq!(code, 2);
    assert!(err.contains("unknown group"));
}

#[tokio::test]
async fn admin_analytics_needs_the_token_and_matches_the_command() {
    let app = spawn_app_with(|c| c.admin_token = Some(Secret::new(TOKEN))).await;
    app.chat(&chat_body("one")).await.bytes().await.unwrap();
    app.chat(&chat_body("one")).await.bytes().await.unwrap();
    let r = app.get("/admin/analytics").await;
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/admin/analytics?since=1h&group_by=tier,model"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report = json_of(r).await;
    assert_eq!(report["total"]["requests"], 2);
    assert_eq!(report["total"]["hits"], 1);
    assert_eq!(report["rows"][0]["group"]["tier"], "l1");
    assert_eq!(report["rows"][0]["group"]["model"], "gpt-4o-mini");
    let r = app
        .client
        .get(app.url("/admin/analytics?group_by=nonsense"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let disabled = spawn_app().await;
    assert_eq!(disabled.get("/admin/analytics").await.status(), 404);
}

#[tokio::test]
async fn rows_past_the_retention_are_pruned_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let (code, _, _) = run_binary(&["migrate"], &[("SQLITE_PATH", db.to_str().unwrap())]);
    assert_eq!(code, 0);
    let now = edge_gateway::cache::now_ms() as i64;
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
    let mut gateway = spawn_gateway(&[("RELAY_URL", stub.url())]);
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
    let status = tokio::task::spawn_blocking(move || {
        let s = gateway.wait_exit();
        (s, gateway)
    })
    .await
    .unwrap();
    assert!(status.0.success());
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst) as i64;
    let count: i64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM cache_events", [], |r| r.get(0))
        .unwrap();
    assert!(answered >= 50);
    assert_eq!(count, answered, "every answered request has its row");
}

#[tokio::test]
async fn the_global_view_sums_every_region() {
    let redis = RedisServer::start();
    let region = |name: &'static str| {
        let url = redis.url();
        move |c: &mut edge_gateway::Config| {
            c.redis.url = Some(Secret::new(url));
            c.edge_region = name.into();
            c.analytics.global_flush_ms = 50;
            c.admin_token = Some(Secret::new(TOKEN));
        }
    };
    let cdg = spawn_app_with(region("cdg")).await;
    let sin = spawn_app_with(region("sin")).await;
    for _ in 0..3 {
        cdg.chat(&chat_body("cdg question"))
            .await
            .bytes()
            .await
            .unwrap();
    }
    for _ in 0..2 {
        sin.chat(&chat_body("sin question"))
            .await
            .bytes()
            .await
            .unwrap();
    }
    let report = eventually("both regions in the global view", || async {
        let r = cdg
            .client
            .get(cdg.url("/admin/analytics?global=true&since=2h"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let report = json_of(r).await;
        (report["total"]["requests"] == 5).then_some(report)
    })
    .await;
    let rows = report["rows"].as_array().unwrap();
    let by_region = |name: &str| rows.iter().find(|r| r["region"] == name).unwrap().clone();
    assert_eq!(
        (
            by_region("cdg")["requests"].as_i64(),
            by_region("cdg")["hits"].as_i64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(
        (
            by_region("sin")["requests"].as_i64(),
            by_region("sin")["hits"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(report["total"]["hits"], 3);

    let url = redis.url();
    let (code, out, err) = run_binary(
        &["analytics", "--global", "--since", "2h", "--format", "json"],
        &[("REDIS_URL", url.as_str())],
    );
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli["total"], report["total"]);

    let (code, _, err) = run_binary(
        &["analytics", "--global"],
        &[("REDIS_URL", "redis://127.0.0.1:1")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("global view is unavailable"), "{err}");
}
