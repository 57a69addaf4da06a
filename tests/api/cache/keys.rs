//! What shares an entry and what does not: keys, namespaces, cache headers, TTL, endpoints.

use super::*;

#[tokio::test]
async fn repeated_requests_make_one_relay_call_and_identical_hits() {
    let app = spawn_app().await;
    let body = chat_body("How do I reset my password?");
    let first = app.chat(&body).await;
    assert_eq!(header(&first, "x-cache"), "miss");
    let key = header(&first, "x-cache-key").to_owned();
    assert!(CacheKey::from_hex(&key).is_some(), "{key}");
    let first = first.bytes().await.unwrap();
    for _ in 0..4 {
        let again = app.chat(&body).await;
        assert_eq!(again.status(), 200);
        assert_eq!(header(&again, "x-cache"), "hit");
        assert_eq!(header(&again, "x-cache-tier"), "l1");
        assert_eq!(header(&again, "x-cache-key"), key);
        assert_eq!(header(&again, "x-edge-region"), "test");
        assert_eq!(header(&again, "content-type"), "application/json");
        assert_eq!(again.bytes().await.unwrap(), first);
    }
    assert_eq!(app.stub.calls("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn spelling_variants_hit_and_a_changed_parameter_misses() {
    let app = spawn_app().await;
    let base = r#"{"model":"gpt-4o-mini","temperature":1,"messages":[{"role":"user","content":"What are your hours?"}]}"#;
    assert_eq!(
        header(&app.post_raw("/v1/chat/completions", base).await, "x-cache"),
        "miss"
    );
    for variant in [
        r#"{"messages":[{"content":"What are your hours?","role":"user"}],"temperature":1.0,"model":"gpt-4o-mini"}"#,
        r#"{"model":"gpt-4o-mini","temperature":1,"messages":[{"role":"user","content":"  What   are your\n hours?\t"}],"user":"u-42"}"#,
    ] {
        let r = app.post_raw("/v1/chat/completions", variant).await;
        assert_eq!(header(&r, "x-cache"), "hit", "{variant}");
    }
    let warmer = base.replace("\"temperature\":1", "\"temperature\":0.5");
    let r = app.post_raw("/v1/chat/completions", warmer).await;
    assert_eq!(header(&r, "x-cache"), "miss");
    assert_eq!(app.stub.calls("/v1/chat/completions"), 2);
}

#[tokio::test]
async fn pass_through_keys_and_namespaces_never_share_entries() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&chat_body("Same question")).unwrap();
    let send = |auth: &'static str, ns: Option<&'static str>| {
        let mut r = app
            .client
            .post(app.url("/v1/chat/completions"))
            .header("authorization", auth)
            .body(body.clone());
        if let Some(ns) = ns {
            r = r.header("x-cache-namespace", ns);
        }
        r.send()
    };
    let a = send("Bearer sk-alice", None).await.unwrap();
    let b = send("Bearer sk-bob", None).await.unwrap();
    assert_eq!(header(&a, "x-cache"), "miss");
    assert_eq!(header(&b, "x-cache"), "miss");
    assert_ne!(header(&a, "x-cache-key"), header(&b, "x-cache-key"));
    assert_eq!(
        header(&send("Bearer sk-alice", None).await.unwrap(), "x-cache"),
        "hit"
    );
    assert_eq!(
        header(
            &send("Bearer sk-alice", Some("faq")).await.unwrap(),
            "x-cache"
        ),
        "miss"
    );
    assert_eq!(
        header(
            &send("Bearer sk-alice", Some("faq")).await.unwrap(),
            "x-cache"
        ),
        "hit"
    );
    assert_eq!(app.stub.total_calls(), 3);
}

#[tokio::test]
async fn managed_tenants_are_isolated_unless_a_shared_namespace_is_configured() {
    for (shared, expected_calls) in [(None, 2), (Some("public"), 1)] {
        let app = spawn_app_with(|c| {
            managed(
                c,
                "sk-relay",
                &[("acme", "gw-acme"), ("globex", "gw-globex")],
            );
            c.cache.shared_namespace = shared.map(String::from);
        })
        .await;
        for key in ["gw-acme", "gw-globex"] {
            let r = app
                .client
                .post(app.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {key}"))
                .body(serde_json::to_vec(&chat_body("Shared FAQ")).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        assert_eq!(
            app.stub.total_calls(),
            expected_calls,
            "shared = {shared:?}"
        );
    }
}

#[tokio::test]
async fn no_cache_refreshes_and_no_store_leaves_nothing() {
    let app = spawn_app().await;
    let body = chat_body("Fresh please");
    let first = json_of(app.chat(&body).await).await;
    let send = |directive: &'static str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .header("cache-control", directive)
            .header("authorization", "Bearer sk-client-test")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
    };
    let refreshed = send("no-cache").await.unwrap();
    assert_eq!(header(&refreshed, "x-cache"), "bypass");
    let refreshed = json_of(refreshed).await;
    assert_ne!(refreshed["id"], first["id"], "the relay answered again");
    let hit = app.chat(&body).await;
    assert_eq!(header(&hit, "x-cache"), "hit");
    assert_eq!(
        json_of(hit).await["id"],
        refreshed["id"],
        "no-cache stored the fresh answer"
    );

    let other = chat_body("Do not keep this");
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("cache-control", "private, no-store")
        .header("authorization", "Bearer sk-client-test")
        .body(serde_json::to_vec(&other).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-cache"), "bypass");
    assert_eq!(header(&app.chat(&other).await, "x-cache"), "miss");
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let app = spawn_app().await;
    let body = chat_body("Short-lived answer");
    let first = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-test")
        .header("x-cache-ttl", "60")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&first, "x-cache"), "miss");
    assert_eq!(header(&app.chat(&body).await, "x-cache"), "hit");
    // Time moves on the app's clock, not the test's: no waiting for the TTL.
    app.state
        .clock()
        .advance(std::time::Duration::from_secs(59));
    assert_eq!(
        header(&app.chat(&body).await, "x-cache"),
        "hit",
        "a second left"
    );
    app.state.clock().advance(std::time::Duration::from_secs(1));
    let r = app.chat(&body).await;
    assert_eq!(header(&r, "x-cache"), "miss", "expired in every tier");
    assert_eq!(header(&r, "x-cache-tier"), "", "not served by any tier");
    for bad in ["0", "abc", "-5", "99999999999"] {
        let r = app
            .client
            .post(app.url("/v1/chat/completions"))
            .header("x-cache-ttl", bad)
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(error_code(r).await, "invalid_header");
    }
}

#[tokio::test]
async fn completions_and_embeddings_are_cached_too() {
    let app = spawn_app().await;
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["a b", "c"]}),
        ),
    ] {
        let miss = app.post_json(path, &body).await;
        assert_eq!(header(&miss, "x-cache"), "miss");
        let miss = miss.bytes().await.unwrap();
        let hit = app.post_json(path, &body).await;
        assert_eq!(header(&hit, "x-cache"), "hit", "{path}");
        assert_eq!(hit.bytes().await.unwrap(), miss);
        assert_eq!(app.stub.calls(path), 1);
    }
    // A streamed legacy completion replays from the plain entry.
    let mut body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "stream": true});
    let replay = app.post_json("/v1/completions", &body).await;
    assert_eq!(header(&replay, "x-cache"), "hit");
    let events = sse_events(&replay.text().await.unwrap());
    assert_eq!(events[0]["object"], "text_completion");
    assert_eq!(events[0]["choices"][0]["text"], "Completion of: Say hi");
    body["prompt"] = json!("Say bye");
    let streamed_miss = app
        .post_json("/v1/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    sse_events(&streamed_miss);
    body["stream"] = json!(false);
    let plain = json_of(app.post_json("/v1/completions", &body).await).await;
    assert_eq!(plain["choices"][0]["text"], "Completion of: Say bye");
}
