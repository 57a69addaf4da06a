use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn plain_chat_answer_is_passed_through_byte_exact() {
    let app = spawn_app().await;
    let response = app.chat(&chat_body("What are your opening hours?")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-edge-region"], "test");
    assert_eq!(response.headers()["x-relay-region"], "default");
    let body = response.bytes().await.unwrap();
    assert_eq!(body, app.stub.last_sent());
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value["choices"][0]["message"]["content"],
        "Answer to: What are your opening hours?"
    );
    assert_eq!(app.stub.calls("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn official_request_shapes_reach_the_relay_intact() {
    let app = spawn_app().await;
    let requests = [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                "temperature": 0.2, "max_tokens": 64, "seed": 7,
                "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
                "response_format": {"type": "text"}}),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        ),
    ];
    for (path, body) in requests {
        let raw = serde_json::to_vec(&body).unwrap();
        let response = app.post_raw(path, raw.clone()).await;
        assert_eq!(response.status(), 200, "{path}");
        let answer = response.bytes().await.unwrap();
        assert_eq!(answer, app.stub.last_sent(), "{path}");
        assert_eq!(app.stub.last_body().unwrap(), raw, "{path}: body intact");
        assert_eq!(app.stub.calls(path), 1);
    }
}

#[tokio::test]
async fn other_v1_routes_keep_method_path_query_and_body() {
    let app = spawn_app().await;
    let response = app
        .client
        .patch(app.url("/v1/fine_tuning/jobs/ft-1?limit=2&after=x%20y"))
        .header("openai-beta", "assistants=v2")
        .body("raw-body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo = json_of(response).await;
    assert_eq!(echo["method"], "PATCH");
    assert_eq!(echo["uri"], "/v1/fine_tuning/jobs/ft-1?limit=2&after=x%20y");
    assert_eq!(echo["body"], "raw-body");
    assert_eq!(
        app.stub.last_headers().unwrap()["openai-beta"],
        "assistants=v2"
    );
}

#[tokio::test]
async fn models_are_forwarded_and_never_cached() {
    let app = spawn_app().await;
    for _ in 0..2 {
        let response = app.get("/v1/models").await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("x-cache").is_none());
        assert_eq!(response.bytes().await.unwrap(), app.stub.last_sent());
    }
    assert_eq!(app.stub.calls("/v1/models"), 2);
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_reach_the_relay() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-end-to-end", "kept")
        .header("x-cache-namespace", "ours")
        .body(serde_json::to_vec(&chat_body("hi")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = app.stub.last_headers().unwrap();
    for dropped in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "x-cache-namespace",
    ] {
        assert!(seen.get(dropped).is_none(), "{dropped} reached the relay");
    }
    assert_eq!(seen["x-end-to-end"], "kept");
}

#[tokio::test]
async fn relay_error_statuses_pass_through_as_sent() {
    // One attempt and a patient breaker: this is about pass-through, not retries.
    let app = spawn_app_with(|c| {
        c.relay.retry.max_attempts = 1;
        c.relay.health.failure_threshold = 100;
    })
    .await;
    for (status, retry_after) in [
        (400, None),
        (404, None),
        (429, Some(7)),
        (500, None),
        (503, Some(2)),
    ] {
        app.stub.set(relay_stub::Behavior {
            status: Some(status),
            retry_after,
            ..Default::default()
        });
        let response = app.chat(&chat_body("hi")).await;
        assert_eq!(response.status().as_u16(), status);
        if let Some(secs) = retry_after {
            assert_eq!(response.headers()["retry-after"], secs.to_string().as_str());
        }
        assert_eq!(response.bytes().await.unwrap(), app.stub.last_sent());
    }
}
