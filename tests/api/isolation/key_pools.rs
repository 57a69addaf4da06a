//! Key pools never empty themselves.

use super::*;

#[tokio::test]
async fn a_403_for_one_request_never_empties_the_key_pool() {
    let app = spawn_app_with(|c| {
        no_probes(c);
        managed(
            c,
            "k-one,k-two,k-three",
            &[("acme", "gw-acme"), ("globex", "gw-globex")],
        );
    })
    .await;
    app.stub.set(Behavior {
        status: Some(403),
        fail_when_body_contains: Some("gpt-restricted".into()),
        ..Default::default()
    });
    let mut body = chat_body("hello");
    body["model"] = json!("gpt-restricted");
    let r = app.chat_as("gw-acme", &body).await;
    assert_eq!(r.status(), 403, "the 403 describes the request: passed on");
    assert_eq!(app.stub.calls("/v1/chat/completions"), 1, "not retried");
    for i in 0..6 {
        let r = app.chat_as("gw-globex", &chat_body(&format!("q{i}"))).await;
        assert_eq!(r.status(), 200);
    }
    let m = metrics(&app).await;
    assert!(!m.contains("edge_gateway_relay_keys_revoked_total{"), "{m}");
    assert!(m.contains(r#"edge_gateway_relay_keys_usable{region="default"} 3"#));
}

#[tokio::test]
async fn a_revoked_key_comes_back_once_the_relay_accepts_it() {
    let app = spawn_app_with(|c| {
        c.relay.health.probe_interval_ms = 30;
        managed(c, "k-one,k-two", &[("acme", "gw-acme")]);
    })
    .await;
    app.stub.set(Behavior {
        reject_keys: vec!["k-one".into()],
        ..Default::default()
    });
    for i in 0..2 {
        let r = app.chat_as("gw-acme", &chat_body(&format!("q{i}"))).await;
        assert_eq!(r.status(), 200, "the retry used the other key");
    }
    eventually("k-one to be revoked", || async {
        metrics(&app)
            .await
            .contains(r#"edge_gateway_relay_keys_usable{region="default"} 1"#)
            .then_some(())
    })
    .await;
    app.stub.set(Behavior::default());
    eventually("k-one to be accepted again", || async {
        metrics(&app)
            .await
            .contains(r#"edge_gateway_relay_keys_usable{region="default"} 2"#)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_429_rests_its_key_and_the_retry_uses_another_at_once() {
    let app = spawn_app_with(|c| {
        no_probes(c);
        managed(c, "k-one,k-two", &[("acme", "gw-acme")]);
    })
    .await;
    app.stub.set(Behavior {
        status: Some(429),
        retry_after: Some(30),
        fail_times: Some(1),
        ..Default::default()
    });
    let started = Instant::now();
    let r = app.chat_as("gw-acme", &chat_body("busy")).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5), "no 30 s wait");
    let seen = app.stub.authorizations();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0], seen[1],
        "the throttled key was not reused: {seen:?}"
    );
    // The throttled key rests: the next requests use the other one.
    for i in 0..3 {
        app.chat_as("gw-acme", &chat_body(&format!("q{i}"))).await;
    }
    let seen = app.stub.authorizations();
    assert!(seen[2..].iter().all(|k| *k == seen[1]), "{seen:?}");
}

#[tokio::test]
async fn the_relay_refusing_the_operator_key_never_shows_the_relay_answer_to_tenants() {
    let app = spawn_app_with(|c| {
        no_probes(c);
        managed(c, "k-only", &[("acme", "gw-acme")]);
    })
    .await;
    app.stub.set(Behavior {
        reject_keys: vec!["k-only".into()],
        ..Default::default()
    });
    let r = app.chat_as("gw-acme", &chat_body("hi")).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(!text.contains("Incorrect API key"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "relay_auth_failed");
}
