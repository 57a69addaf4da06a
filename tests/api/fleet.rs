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
    let purged = a
        .client
        .post(a.url("/admin/cache/purge?namespace=acme"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .send()
        .await
        .unwrap();
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
    let metrics = b.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("edge_gateway_purge_generations_seen_total 1"),
        "{metrics}"
    );
    // a purge of everything reaches beta's copy too.
    let purged = a
        .client
        .post(a.url("/admin/cache/purge"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    eventually("b no longer serves beta's purged answer", || async {
        (ask(&b, "gw-beta", "What is your refund window?").await == "miss").then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}
