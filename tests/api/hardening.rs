//! Abuse and overload protection: rate limits, load shedding, header and body limits,
//! and privacy of payloads in logs.

use edge_gateway::config::TenantLimit;
use relay_stub::{Behavior, RelayStub};

use crate::helpers::*;

async fn post_as(app: &TestApp, key: &str, prompt: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .body(serde_json::to_vec(&chat_body(prompt)).unwrap())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn each_client_key_gets_its_own_bucket_and_excess_gets_429_with_retry_after() {
    let app = spawn_app_with(|c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 2;
    })
    .await;
    for i in 0..2 {
        assert_eq!(post_as(&app, "sk-a", &format!("q{i}")).await.status(), 200);
    }
    let limited = post_as(&app, "sk-a", "q2").await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after));
    assert_eq!(error_code(limited).await, "rate_limit_exceeded");
    assert_eq!(
        post_as(&app, "sk-b", "q0").await.status(),
        200,
        "another key is not limited"
    );
    assert_eq!(
        app.stub.total_calls(),
        3,
        "a limited request never reaches the relay"
    );
    // The models route shares the bucket.
    let r = app.get_as("/v1/models", "sk-a").await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn cache_hits_can_be_exempt_from_the_limit() {
    let app = spawn_app_with(|c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 1;
        c.rate_limit.exempt_cache_hits = true;
    })
    .await;
    assert_eq!(post_as(&app, "sk-a", "faq").await.status(), 200);
    for _ in 0..10 {
        let r = post_as(&app, "sk-a", "faq").await;
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers()["x-cache"].to_str().unwrap()
            ),
            (200, "hit")
        );
    }
    assert_eq!(
        post_as(&app, "sk-a", "new question").await.status(),
        429,
        "misses still count"
    );
}

#[tokio::test]
async fn tenants_can_have_their_own_limits() {
    let app = spawn_app_with(|c| {
        managed(c, "sk-relay", &[("small", "gw-small"), ("big", "gw-big")]);
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 1;
        c.rate_limit.tenants.insert(
            "big".into(),
            TenantLimit {
                requests_per_second: 1,
                burst: 5,
            },
        );
    })
    .await;
    assert_eq!(post_as(&app, "gw-small", "a").await.status(), 200);
    assert_eq!(post_as(&app, "gw-small", "b").await.status(), 429);
    for i in 0..5 {
        assert_eq!(
            post_as(&app, "gw-big", &format!("q{i}")).await.status(),
            200
        );
    }
    assert_eq!(post_as(&app, "gw-big", "q5").await.status(), 429);
}

#[tokio::test]
async fn past_max_in_flight_requests_are_shed_with_503_and_health_still_answers() {
    let app = spawn_app_with(|c| c.server.max_in_flight = 2).await;
    app.stub.set(Behavior {
        hold: true,
        ..Default::default()
    });
    let held: Vec<_> = (0..2)
        .map(|i| {
            let (client, url) = (app.client.clone(), app.url("/v1/chat/completions"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .body(serde_json::to_vec(&chat_body(&format!("held {i}"))).unwrap())
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    eventually("two requests at the relay", || async {
        (app.stub.total_calls() == 2).then_some(())
    })
    .await;
    let shed = app.chat(&chat_body("one too many")).await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(error_code(shed).await, "overloaded");
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stub.release();
    app.stub.release();
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(app.chat(&chat_body("room again")).await.status(), 200);
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let app = spawn_app_with(|c| {
        c.server.max_headers = 50;
        c.server.max_header_bytes = 8 * 1024;
    })
    .await;
    let mut many = app.client.post(app.url("/v1/chat/completions"));
    for i in 0..60 {
        many = many.header(format!("x-filler-{i}"), "1");
    }
    let r = many
        .body(serde_json::to_vec(&chat_body("hi")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(error_code(r).await, "headers_too_large");
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("x-big", "v".repeat(10 * 1024))
        .body(serde_json::to_vec(&chat_body("hi")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(app.stub.total_calls(), 0);
}

#[tokio::test]
async fn a_body_that_trickles_in_too_slowly_is_cut_with_408() {
    let app = spawn_app_with(|c| c.server.body_timeout_ms = 200).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(b"{\"model\":".to_vec())).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let r = tokio::time::timeout(DEADLINE, app.post_raw("/v1/chat/completions", body))
        .await
        .expect("the gateway answers without waiting for the rest of the body");
    assert_eq!(r.status(), 408);
    assert_eq!(error_code(r).await, "request_timeout");
    drop(tx);
    assert_eq!(app.stub.total_calls(), 0);
}

fn run_and_collect_logs(extra_env: &[(&str, String)], prompt: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let stub = RelayStub::start().await.unwrap();
        let mut env = vec![("RELAY_URL", stub.url()), ("RUST_LOG", "debug".to_owned())];
        env.extend(extra_env.iter().cloned());
        let mut gateway = spawn_gateway(&env);
        let r = client_with_key()
            .post(gateway.url("/v1/chat/completions"))
            .body(serde_json::to_vec(&chat_body(prompt)).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        gateway.signal("TERM");
        let gateway = tokio::task::spawn_blocking(move || {
            gateway.wait_exit();
            gateway
        })
        .await
        .unwrap();
        gateway.output_until_closed().join("\n")
    })
}

#[test]
fn prompts_and_answers_are_logged_only_when_opted_in() {
    let marker = "zebra-7f3c-private-question";
    let logs = run_and_collect_logs(&[], marker);
    assert!(logs.contains("stopped"), "logs were captured:\n{logs}");
    assert!(
        !logs.contains(marker),
        "a prompt reached the logs by default:\n{logs}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("debug.toml");
    std::fs::write(&config, "[privacy]\nlog_payloads = true\n").unwrap();
    let logs = run_and_collect_logs(
        &[("EDGE_GATEWAY_CONFIG", config.display().to_string())],
        marker,
    );
    assert!(logs.contains(marker), "opted in, the prompt is logged");
    assert!(
        logs.contains(&format!("Answer to: {marker}")),
        "and the answer"
    );
}
