use relay_stub::{Behavior, RelayStub};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn invalid_bodies_get_400_and_never_reach_the_relay() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "/v1/chat/completions",
            b"{not json".to_vec(),
            "invalid_json",
        ),
        ("/v1/chat/completions", b"[1,2]".to_vec(), "invalid_json"),
        ("/v1/chat/completions", b"".to_vec(), "invalid_json"),
        (
            "/v1/chat/completions",
            br#"{"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            "missing_or_invalid_field",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":42,"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            "missing_or_invalid_field",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"m","messages":"hi"}"#.to_vec(),
            "missing_or_invalid_field",
        ),
        (
            "/v1/completions",
            br#"{"model":"m"}"#.to_vec(),
            "missing_or_invalid_field",
        ),
        (
            "/v1/completions",
            br#"{"model":"m","prompt":{}}"#.to_vec(),
            "missing_or_invalid_field",
        ),
        (
            "/v1/embeddings",
            br#"{"model":"m"}"#.to_vec(),
            "missing_or_invalid_field",
        ),
        (
            "/v1/embeddings",
            br#"{"input":"x"}"#.to_vec(),
            "missing_or_invalid_field",
        ),
    ];
    for (path, body, code) in cases {
        let response = app.post_raw(path, body.clone()).await;
        assert_eq!(
            response.status(),
            400,
            "{path} {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(error_code(response).await, code);
    }
    assert_eq!(app.stub.total_calls(), 0);
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let app = spawn_app_with(|c| c.server.max_body_bytes = 1024).await;
    let mut body = chat_body(&"x".repeat(2048));
    let response = app.chat(&body).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "request_too_large");
    // Without content-length (chunked), the limit is enforced while reading.
    body["model"] = json!("m");
    let bytes = serde_json::to_vec(&body).unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let response = app
        .post_raw(
            "/v1/chat/completions",
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "request_too_large");
    let response = app.post_raw("/v1/files", vec![b'a'; 4096]).await;
    assert_eq!(response.status(), 413);
    assert_eq!(app.stub.total_calls(), 0);
}

#[tokio::test]
async fn a_refused_connection_is_502_and_the_next_request_to_a_recovered_relay_succeeds() {
    let port = closed_port();
    let app = spawn_app_with(|c| {
        c.relay.url = format!("http://127.0.0.1:{port}/v1");
        c.relay.health.probe_interval_ms = 0;
    })
    .await;
    let response = app.chat(&chat_body("hi")).await;
    assert_eq!(response.status(), 502);
    assert_eq!(error_code(response).await, "relay_unreachable");
    // The refused connection opened the region's breaker: readiness says so...
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(json_of(ready).await["relay"]["default"], "down");
    // ...but a lone region is never refused to clients: once it is back, the very next
    // request reaches it (no 503 for the rest of a cool-down).
    let relay = RelayStub::start_on(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    let response = app.chat(&chat_body("hi again")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(relay.total_calls(), 1);
    assert_eq!(
        json_of(app.get("/readyz").await).await["relay"]["default"],
        "up"
    );
}

#[tokio::test]
async fn after_a_timeout_the_next_request_to_a_recovered_relay_succeeds() {
    let app = spawn_app_with(|c| {
        c.relay.first_byte_timeout_ms = 200;
        c.relay.retry.max_attempts = 1;
        c.relay.health.probe_interval_ms = 0;
    })
    .await;
    app.stub.set(Behavior {
        hang: true,
        ..Default::default()
    });
    let response = app.chat(&chat_body("slow")).await;
    assert_eq!(response.status(), 504);
    app.stub.set(Behavior::default());
    let response = app.chat(&chat_body("fast")).await;
    assert_eq!(response.status(), 200, "no 503 after one timeout");
}

#[tokio::test]
async fn relay_that_never_answers_is_504_after_the_first_byte_timeout() {
    let app = spawn_app_with(|c| c.relay.first_byte_timeout_ms = 200).await;
    app.stub.set(Behavior {
        hang: true,
        ..Default::default()
    });
    let response = app.chat(&chat_body("hi")).await;
    assert_eq!(response.status(), 504);
    assert_eq!(error_code(response).await, "relay_timeout");
}

#[tokio::test]
async fn unknown_routes_get_an_openai_shaped_404() {
    let app = spawn_app().await;
    let response = app.get("/nope").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
}
