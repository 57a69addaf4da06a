//! One cache across instances (issue 16): a purge on one instance reaches the in-process
//! L1 of every other instance sharing the Redis.

use edge_gateway::config::{Config, Secret};
use serde_json::json;

use crate::helpers::*;

const ADMIN: &str = "admin-token-0123456789";

fn fleet_member(redis_url: String) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.redis.url = Some(Secret::new(redis_url));
        c.redis.probe_interval_ms = 50;
        c.redis.purge_poll_ms = 50;
        c.admin_token = Some(Secret::new(ADMIN));
        managed(c, "sk-relay", &[("acme", "gw-acme"), ("beta", "gw-beta")]);
    }
}

async fn ask(app: &TestApp, key: &str, question: &str) -> String {
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tier = response
        .headers()
        .get("x-cache-tier")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| "miss".into());
    response.bytes().await.unwrap();
    tier
}

#[tokio::test]
async fn a_purge_on_one_instance_empties_the_l1_of_the_others() {
    let redis = RedisServer::start();
    let a = spawn_app_with(fleet_member(redis.url())).await;
    let b = spawn_app_with(fleet_member(redis.url())).await;
    assert_eq!(
        ask(&a, "gw-acme", "What is your refund window?").await,
        "miss"
    );
    assert_eq!(
        ask(&a, "gw-beta", "What is your refund window?").await,
        "miss"
    );
    // b learns both answers from Redis and keeps them in its own L1.
    for key in ["gw-acme", "gw-beta"] {
        assert_eq!(ask(&b, key, "What is your refund window?").await, "redis");
        assert_eq!(ask(&b, key, "What is your refund window?").await, "l1");
    }
    let purged = a.purge("?namespace=acme", ADMIN).await;
    assert_eq!(purged.status(), 200);

    // b drops acme's copy at its next read of the purge generations, and only acme's.
    eventually("b no longer serves acme's purged answer", || async {
        (ask(&b, "gw-acme", "What is your refund window?").await == "miss").then_some(())
    })
    .await;
    assert_eq!(
        ask(&b, "gw-beta", "What is your refund window?").await,
        "l1"
    );
    // Counted once the purge is applied to every local tier (SQLite after L1).
    eventually("b counts the purge it applied", || async {
        let metrics = b.get("/metrics").await.text().await.unwrap();
        metrics
            .contains("edge_gateway_purge_generations_seen_total 1")
            .then_some(())
    })
    .await;
    // a purge of everything reaches beta's copy too.
    let purged = a.purge("", ADMIN).await;
    assert_eq!(purged.status(), 200);
    eventually("b no longer serves beta's purged answer", || async {
        (ask(&b, "gw-beta", "What is your refund window?").await == "miss").then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

const CHAT: &str = "/v1/chat/completions";

async fn fire(
    app: &TestApp,
    body: &serde_json::Value,
) -> tokio::task::JoinHandle<(u16, String, String)> {
    let (client, url, body) = (
        app.client.clone(),
        app.url(CHAT),
        serde_json::to_vec(body).unwrap(),
    );
    tokio::spawn(async move {
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let tier = response
            .headers()
            .get("x-cache-tier")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.text().await.unwrap();
        (status, tier, body)
    })
}

/// Six identical misses, three per instance, while the relay holds the first call: one
/// relay call in all, every client gets that answer.
async fn one_relay_call_for_the_fleet(member: impl Fn(&mut Config) + Clone) {
    let a = spawn_app_with(member.clone()).await;
    let b = spawn_app_with(member).await;
    for app in [&a, &b] {
        app.stub.set(relay_stub::Behavior {
            hold: true,
            ..Default::default()
        });
    }
    let body = chat_body("Where is the status page?");
    let key = key_for(&body);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(fire(&a, &body).await);
        tasks.push(fire(&b, &body).await);
    }
    eventually(
        "one call at a relay, one instance waiting on it, four local followers",
        || async {
            let calls = a.stub.calls(CHAT) + b.stub.calls(CHAT);
            let remote = a.state.remote_waiting() + b.state.remote_waiting();
            let local = a.state.waiting_on(&key) + b.state.waiting_on(&key);
            (calls == 1 && remote == 1 && local == 4).then_some(())
        },
    )
    .await;
    a.stub.release();
    b.stub.release();
    let mut answers = Vec::new();
    for task in tasks {
        let (status, _, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        answers.push(value["choices"][0]["message"]["content"].clone());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(
        a.stub.calls(CHAT) + b.stub.calls(CHAT),
        1,
        "one relay call in all"
    );
    let coalesced = |app: &TestApp| app.state.remote_flights("coalesced");
    assert_eq!(coalesced(&a) + coalesced(&b), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn identical_misses_on_two_instances_make_one_relay_call() {
    let redis = RedisServer::start();
    let url = redis.url();
    one_relay_call_for_the_fleet(move |c: &mut Config| {
        c.redis.url = Some(Secret::new(url.clone()));
        c.redis.probe_interval_ms = 50;
    })
    .await;
}

#[tokio::test]
async fn the_same_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    one_relay_call_for_the_fleet(move |c: &mut Config| {
        c.redis.cluster_urls = urls.iter().map(Secret::new).collect();
        c.redis.probe_interval_ms = 50;
    })
    .await;
}

#[tokio::test]
async fn with_redis_down_each_instance_coalesces_on_its_own_and_nothing_fails() {
    let port = closed_port();
    let member = move |c: &mut Config| {
        c.redis.url = Some(Secret::new(format!("redis://127.0.0.1:{port}")));
    };
    let a = spawn_app_with(member).await;
    let b = spawn_app_with(member).await;
    for app in [&a, &b] {
        app.stub.set(relay_stub::Behavior {
            hold: true,
            ..Default::default()
        });
    }
    let body = chat_body("Is there a free trial?");
    let key = key_for(&body);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(fire(&a, &body).await);
        tasks.push(fire(&b, &body).await);
    }
    eventually("a leader and two followers on each instance", || async {
        let ready = |app: &TestApp| app.stub.calls(CHAT) == 1 && app.state.waiting_on(&key) == 2;
        (ready(&a) && ready(&b)).then_some(())
    })
    .await;
    a.stub.release();
    b.stub.release();
    for task in tasks {
        assert_eq!(task.await.unwrap().0, 200);
    }
    assert_eq!(
        a.stub.calls(CHAT) + b.stub.calls(CHAT),
        2,
        "one call per instance"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_leader_killed_mid_call_frees_the_waiting_instance_within_its_lease() {
    let redis = RedisServer::start();
    let stub = relay_stub::RelayStub::start().await.unwrap();
    stub.set(relay_stub::Behavior {
        hold: true,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[redis]\nlease_ms = 300\nprobe_interval_ms = 50\nremote_wait_ms = 20000\n",
    )
    .unwrap();
    let env = |name: &str| {
        vec![
            ("RELAY_URL", stub.url()),
            ("REDIS_URL", redis.url()),
            ("EDGE_GATEWAY_CONFIG", config.to_str().unwrap().to_owned()),
            (
                "SQLITE_PATH",
                dir.path()
                    .join(format!("{name}.db"))
                    .to_str()
                    .unwrap()
                    .to_owned(),
            ),
        ]
    };
    let a = spawn_gateway(&env("a"));
    let b = spawn_gateway(&env("b"));
    let client = client_with_key();
    let body = serde_json::to_vec(&chat_body("Why was I charged twice?")).unwrap();
    let ask = |url: String| {
        let (client, body) = (client.clone(), body.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        })
    };
    let to_a = ask(a.url(CHAT));
    eventually("a's call held at the relay", || async {
        (stub.calls(CHAT) == 1).then_some(())
    })
    .await;
    let to_b = ask(b.url(CHAT));
    let waiting = |metrics: String| metrics.contains("edge_gateway_remote_flight_waiting 1");
    eventually("b waiting on a's lease", || async {
        let metrics = client
            .get(b.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        waiting(metrics).then_some(())
    })
    .await;
    a.signal("KILL");
    assert!(to_a.await.unwrap().is_err(), "a died mid-call");
    // a's lease expires (no more renewals); b calls the relay itself.
    stub.set(relay_stub::Behavior::default());
    let response = to_b.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(stub.calls(CHAT), 2);
    let metrics = client
        .get(b.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("edge_gateway_remote_flights_total{outcome=\"leader_gone\"} 1"),
        "{metrics}"
    );
}
