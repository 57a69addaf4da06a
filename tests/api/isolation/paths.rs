//! The relay's path is the operator's: dot segments, duplicate keys.

use super::*;

#[tokio::test]
async fn dot_segments_never_leave_the_relay_base_path() {
    let app = spawn_app().await;
    for path in [
        "/v1/../../internal/admin/rotate-keys",
        "/v1/%2e%2e/%2e%2e/internal/admin/rotate-keys",
        "/v1/files/%2E%2E/%2e%2e/%2e%2e/internal",
        "/v1/models/..%2f..%2finternal",
    ] {
        let answer = raw_http(
            &app,
            &format!(
                "POST {path} HTTP/1.1\r\nAuthorization: Bearer sk-client-test\r\nContent-Length: 0"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid_path"), "{path}: {answer}");
    }
    assert_eq!(app.stub.total_calls(), 0);

    let managed_app = spawn_app_with(|c| managed(c, "k-relay", &[("acme", "gw-acme")])).await;
    let answer = raw_http(
        &managed_app,
        "GET /v1/models/../../internal/admin HTTP/1.1\r\nAuthorization: Bearer gw-acme",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(managed_app.stub.total_calls(), 0);
}

#[tokio::test]
async fn a_body_with_duplicate_keys_is_refused() {
    let app = spawn_app().await;
    let r = app
        .post_raw(
            "/v1/chat/completions",
            br#"{"model":"gpt-4o-mini","model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key")
    );
    assert_eq!(app.stub.total_calls(), 0);
}
