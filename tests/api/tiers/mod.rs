//! The shared and durable tiers against real redis-server processes and SQLite files.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_gateway::config::{Config, Secret};
use serde_json::Value;

use crate::helpers::*;
use crate::helpers::{RedisCluster, RedisServer};

mod purge;

fn with_redis(url: String) -> impl FnOnce(&mut Config) {
    move |c| {
        c.redis.url = Some(Secret::new(url));
        c.redis.probe_interval_ms = 50;
    }
}

fn sqlite_at(path: PathBuf) -> impl FnOnce(&mut Config) {
    move |c| c.sqlite.path = path
}

async fn tier_of(app: &TestApp, prompt: &str) -> (u16, String, String) {
    let r = app.chat(&chat_body(prompt)).await;
    let status = r.status().as_u16();
    let (cache, tier) = (header(&r, "x-cache"), header(&r, "x-cache-tier"));
    r.bytes().await.unwrap();
    (status, cache, tier)
}

async fn readyz(app: &TestApp) -> Value {
    json_of(app.get("/readyz").await).await
}

/// `redis_calls_total` for lookups (`op="get"`) with `outcome`.
async fn redis_calls(app: &TestApp, outcome: &str) -> u64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let needle = format!("edge_gateway_redis_calls_total{{op=\"get\",outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_second_instance_with_an_empty_l1_answers_from_redis() {
    let redis = RedisServer::start();
    let a = spawn_app_with(with_redis(redis.url())).await;
    let b = spawn_app_with(with_redis(redis.url())).await;
    assert_eq!(readyz(&a).await["tiers"]["redis"], "up");
    let (_, cache, _) = tier_of(&a, "Do you ship abroad?").await;
    assert_eq!(cache, "miss");
    let stored = eventually("the entry to reach Redis", || async {
        (redis.dbsize() == 1).then_some(())
    });
    stored.await;
    let r = b.chat(&chat_body("Do you ship abroad?")).await;
    assert_eq!(header(&r, "x-cache"), "hit");
    assert_eq!(header(&r, "x-cache-tier"), "redis");
    let body = json_of(r).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Answer to: Do you ship abroad?"
    );
    // Promoted into B's L1.
    assert_eq!(tier_of(&b, "Do you ship abroad?").await.2, "l1");
    assert_eq!(b.stub.total_calls(), 0);
    let keys = crate::helpers::cli(redis.port, &["KEYS", "*"]);
    assert!(
        keys.starts_with("eg:v1:key-"),
        "prefixed, versioned key: {keys}"
    );
}

#[tokio::test]
async fn cluster_spreads_entries_over_every_node_and_finds_each_again() {
    let cluster = RedisCluster::start();
    let seeds = cluster.urls();
    let cluster_config = move |c: &mut Config| {
        c.redis.cluster_urls = seeds.iter().cloned().map(Secret::new).collect();
        c.redis.timeout_ms = 500;
    };
    let a = spawn_app_with(cluster_config.clone()).await;
    let b = spawn_app_with(cluster_config).await;
    assert_eq!(readyz(&a).await["tiers"]["redis"], "up");
    let prompts: Vec<String> = (0..30).map(|i| format!("Cluster question {i}")).collect();
    for p in &prompts {
        assert_eq!(tier_of(&a, p).await.1, "miss");
    }
    eventually("all 30 entries in the cluster", || async {
        (cluster.nodes.iter().map(RedisServer::dbsize).sum::<u64>() == 30).then_some(())
    })
    .await;
    for node in &cluster.nodes {
        assert!(node.dbsize() > 0, "node {} holds no entry", node.port);
    }
    for p in &prompts {
        let (status, cache, tier) = tier_of(&b, p).await;
        assert_eq!(
            (status, cache.as_str(), tier.as_str()),
            (200, "hit", "redis"),
            "{p}"
        );
    }
    assert_eq!(b.stub.total_calls(), 0);
    assert_eq!(
        redis_calls(&b, "error").await,
        0,
        "no MOVED/CROSSSLOT errors"
    );

    // Purge reaches every node.
    let token = "admin-token-0123456789";
    let admin = spawn_app_with({
        let seeds = cluster.urls();
        move |c| {
            c.redis.cluster_urls = seeds.into_iter().map(Secret::new).collect();
            c.admin_token = Some(Secret::new(token));
        }
    })
    .await;
    let r = admin
        .client
        .post(admin.url("/admin/cache/purge"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Every entry gone from every node; the purge generations hash is what remains.
    let left: Vec<String> = cluster.nodes.iter().flat_map(|n| n.keys("*")).collect();
    assert_eq!(left, vec!["eg:purge:v1".to_owned()]);
}

#[tokio::test]
async fn redis_killed_under_load_fails_no_request_and_comes_back() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let a = spawn_app_with({
        let (url, db) = (redis.url(), db.clone());
        move |c| {
            with_redis(url)(c);
            sqlite_at(db)(c);
        }
    })
    .await;
    let stored: Vec<String> = (0..10)
        .map(|i| format!("Stored before the crash {i}"))
        .collect();
    for p in &stored {
        assert_eq!(tier_of(&a, p).await.0, 200);
    }
    a.state.flush_sqlite().await;
    // B shares the SQLite file but starts with an empty L1.
    let b = spawn_app_with({
        let (url, db) = (redis.url(), db.clone());
        move |c| {
            with_redis(url)(c);
            sqlite_at(db)(c);
        }
    })
    .await;
    assert_eq!(readyz(&b).await["tiers"]["redis"], "up");

    redis.kill();
    let mut slowest = Duration::ZERO;
    let mut sqlite_hits = 0;
    for round in 0..3 {
        for (i, p) in stored.iter().enumerate() {
            let started = Instant::now();
            let (status, cache, tier) = tier_of(&b, p).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(status, 200);
            assert_eq!(cache, "hit", "{p}");
            if round == 0 {
                assert_eq!(tier, "sqlite", "{p}");
                sqlite_hits += 1;
            }
            let fresh = format!("New question {round}-{i}");
            let started = Instant::now();
            let (status, cache, _) = tier_of(&b, &fresh).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!((status, cache.as_str()), (200, "miss"));
        }
    }
    assert_eq!(sqlite_hits, 10);
    assert!(
        slowest < Duration::from_secs(1),
        "slowest request took {slowest:?}"
    );
    assert_eq!(readyz(&b).await["tiers"]["redis"], "down");

    redis.restart();
    eventually("the gateway to return to Redis", || async {
        (readyz(&b).await["tiers"]["redis"] == "up").then_some(())
    })
    .await;
    assert_eq!(tier_of(&b, "After the restart").await.1, "miss");
    eventually("new entries to reach Redis again", || async {
        (redis.dbsize() >= 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_paused_redis_costs_at_most_one_timeout_per_request_then_nothing() {
    let redis = RedisServer::start();
    let app = spawn_app_with({
        let url = redis.url();
        move |c| {
            with_redis(url)(c);
            c.redis.timeout_ms = 50;
            c.redis.failure_threshold = 3;
            c.redis.probe_interval_ms = 60_000; // the breaker stays open for the whole test
        }
    })
    .await;
    assert_eq!(readyz(&app).await["tiers"]["redis"], "up");
    redis.signal("STOP"); // accepts connections, never answers
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        let (status, _, _) = tier_of(&app, &format!("While paused {i}")).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 200);
    }
    let timeouts = redis_calls(&app, "timeout").await;
    assert!(
        (1..=3).contains(&timeouts),
        "{timeouts} lookups waited for Redis"
    );
    assert!(redis_calls(&app, "skipped_down").await >= 17);
    assert_eq!(readyz(&app).await["tiers"]["redis"], "down");
    assert!(slowest < Duration::from_secs(1), "slowest {slowest:?}");
    redis.signal("CONT");
}

#[tokio::test]
async fn a_restarted_gateway_with_redis_down_serves_earlier_answers_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let dead_redis = format!("redis://127.0.0.1:{}", closed_port());
    let first = spawn_app_with({
        let (url, db) = (dead_redis.clone(), db.clone());
        move |c| {
            with_redis(url)(c);
            sqlite_at(db)(c);
        }
    })
    .await;
    assert_eq!(readyz(&first).await["tiers"]["redis"], "down");
    assert_eq!(tier_of(&first, "Remember me").await.1, "miss");
    first.stop().await; // flushes queued SQLite writes, like SIGTERM

    let second = spawn_app_with(move |c| {
        with_redis(dead_redis)(c);
        sqlite_at(db)(c);
    })
    .await;
    let (status, cache, tier) = tier_of(&second, "Remember me").await;
    assert_eq!(
        (status, cache.as_str(), tier.as_str()),
        (200, "hit", "sqlite")
    );
    assert_eq!(second.stub.total_calls(), 0);
}

#[tokio::test]
async fn without_redis_sqlite_is_the_second_tier() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let first = spawn_app_with(sqlite_at(db.clone())).await;
    assert_eq!(readyz(&first).await["tiers"]["redis"], "disabled");
    tier_of(&first, "No redis here").await;
    first.state.flush_sqlite().await;
    let second = spawn_app_with(sqlite_at(db)).await;
    assert_eq!(tier_of(&second, "No redis here").await.2, "sqlite");
}
