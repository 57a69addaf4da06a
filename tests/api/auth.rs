use crate::helpers::*;

#[tokio::test]
async fn pass_through_forwards_the_client_key() {
    let app = spawn_app().await;
    let response = app.chat(&chat_body("hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.stub.last_headers().unwrap()["authorization"],
        "Bearer sk-client-test"
    );
}

#[tokio::test]
async fn managed_mode_requires_a_gateway_key_and_sends_only_the_relay_key() {
    let app = spawn_app_with(|c| managed(c, "sk-relay-secret", &[("acme", "gw-acme-key")])).await;
    for auth in [None, Some("Bearer wrong"), Some("Bearer sk-relay-secret")] {
        let mut request = app
            .client
            .post(app.url("/v1/chat/completions"))
            .body(serde_json::to_vec(&chat_body("hi")).unwrap());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains("invalid_api_key") && !text.contains("sk-relay-secret"));
    }
    let response = app.get("/v1/models").await;
    assert_eq!(response.status(), 401);
    assert_eq!(app.stub.total_calls(), 0);

    let response = app.chat_as("gw-acme-key", &chat_body("hi")).await;
    assert_eq!(response.status(), 200);
    let headers = format!("{:?}", response.headers());
    let body = response.text().await.unwrap();
    assert!(!body.contains("sk-relay-secret") && !headers.contains("sk-relay-secret"));
    let seen = app.stub.last_headers().unwrap();
    assert_eq!(seen["authorization"], "Bearer sk-relay-secret");
    assert_eq!(seen.get_all("authorization").iter().count(), 1);
}
