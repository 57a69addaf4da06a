//! Retry-after, key pools and per-region keys, and every region failing.

use super::*;

#[tokio::test]
async fn a_short_retry_after_is_waited_out_and_a_long_one_reaches_the_client() {
    let app = spawn_app_with(|c| {
        quick_health(c);
        c.relay.retry.retry_after_cap_ms = 2_000;
    })
    .await;
    app.stub.set(Behavior {
        status: Some(429),
        retry_after: Some(1),
        fail_times: Some(1),
        ..Default::default()
    });
    let started = Instant::now();
    let (status, _) = ask(&app, "patience").await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after was honoured"
    );
    assert_eq!(app.stub.total_calls(), 2);

    app.stub.set(Behavior {
        status: Some(429),
        retry_after: Some(30),
        ..Default::default()
    });
    let r = app.chat(&chat_body("too long to wait")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    assert_eq!(error_code(r).await, "stub");
    assert_eq!(app.stub.total_calls(), 3, "no retry past the cap");
}

#[tokio::test]
async fn the_key_pool_rotates_past_a_revoked_key() {
    let app = spawn_app_with(|c| {
        quick_health(c);
        managed(c, "k-one,k-two,k-three", &[("acme", "gw-acme")]);
    })
    .await;
    app.stub.set(Behavior {
        reject_keys: vec!["k-two".into()],
        ..Default::default()
    });
    for i in 0..9 {
        let r = app.chat_as("gw-acme", &chat_body(&format!("q{i}"))).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(!text.contains("k-one") && !text.contains("k-two"));
    }
    // k-two reached the relay twice: the request it failed (retried on another key)
    // and the check that confirmed the 401 before the key was taken out.
    let metrics = eventually("the 401 to be confirmed", || async {
        let m = app.get("/metrics").await.text().await.unwrap();
        m.contains(r#"edge_gateway_relay_keys_revoked_total{region="default"} 1"#)
            .then_some(m)
    })
    .await;
    assert!(!metrics.is_empty());
    let seen = app.stub.authorizations();
    assert_eq!(
        seen.iter().filter(|a| *a == "Bearer k-two").count(),
        2,
        "{seen:?}"
    );
    assert!(seen.iter().filter(|a| *a == "Bearer k-one").count() >= 4);
    assert!(seen.iter().filter(|a| *a == "Bearer k-three").count() >= 4);
    assert!(
        seen.iter().all(|a| a != "Bearer gw-acme"),
        "the client key never reaches the relay"
    );
}

#[tokio::test]
async fn per_region_keys_come_from_their_env_var() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        format!(
            "[[relay.regions]]\nname = \"cdg\"\nurl = \"{}\"\nweight = 1\napi_key_env = \"KEY_CDG\"\n\n\
             [[relay.regions]]\nname = \"sin\"\nurl = \"{}\"\nweight = 1\n",
            a.url(),
            b.url()
        ),
    )
    .unwrap();
    let env: std::collections::BTreeMap<String, String> = [
        ("KEY_CDG", "k-cdg"),
        ("RELAY_API_KEY", "k-shared"),
        ("GATEWAY_API_KEYS", "acme:gw-acme"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut config = Config::load(Some(&path), &env).unwrap();
    quick_health(&mut config);
    config.server.port = 0;
    config.server.bind = [127, 0, 0, 1].into();
    config.sqlite.path = dir.path().join("gw.db");
    let stub = RelayStub::start().await.unwrap();
    let app = spawn_with_config(stub, tempfile::tempdir().unwrap(), config).await;
    for i in 0..4 {
        let r = app.chat_as("gw-acme", &chat_body(&format!("q{i}"))).await;
        assert_eq!(r.status(), 200);
    }
    assert!(a.authorizations().iter().all(|k| k == "Bearer k-cdg"));
    assert!(b.authorizations().iter().all(|k| k == "Bearer k-shared"));
    assert_eq!((a.total_calls(), b.total_calls()), (2, 2));
    let missing: std::collections::BTreeMap<String, String> =
        [("GATEWAY_API_KEYS".to_owned(), "acme:gw".to_owned())].into();
    let err = Config::load(Some(&path), &missing).unwrap_err().to_string();
    assert!(err.contains("KEY_CDG"), "{err}");
}

#[tokio::test]
async fn when_every_region_fails_the_client_gets_an_openai_error_and_nothing_is_cached() {
    let app = spawn_app_with(|c| {
        quick_health(c);
        c.relay.regions = vec![
            RegionConfig {
                name: "one".into(),
                url: format!("http://127.0.0.1:{}/v1", closed_port()),
                weight: 1,
                backup: false,
                api_key_env: None,
                keys: Vec::new(),
            },
            RegionConfig {
                name: "two".into(),
                url: format!("http://127.0.0.1:{}/v1", closed_port()),
                weight: 1,
                backup: true,
                api_key_env: None,
                keys: Vec::new(),
            },
        ];
    })
    .await;
    let r = app.chat(&chat_body("nobody home")).await;
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("x-cache").is_none() || r.headers()["x-cache"] != "hit");
    assert_eq!(error_code(r).await, "relay_unreachable");
    // Every breaker is open now, yet the gateway still tries (panic mode): refusing
    // would fail the client for certain, trying may find a region that came back.
    let r = app.chat(&chat_body("nobody home")).await;
    assert_eq!(r.status(), 502);
    let body: Value = json_of(r).await;
    assert_eq!(body["error"]["code"], "relay_unreachable");
    assert_eq!(body["error"]["type"], "api_error");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("edge_gateway_relay_panic_total"),
        "{metrics}"
    );
    let count: i64 = rusqlite::Connection::open(app.dir.path().join("gateway.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM cache_entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 0);
}
