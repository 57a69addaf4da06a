//! Retries and what they cost.

use super::*;

#[tokio::test]
async fn a_non_cacheable_post_is_never_retried_and_cacheable_retries_are_counted() {
    let app = spawn_app_with(no_probes).await;
    app.stub.set(Behavior {
        status: Some(500),
        ..Default::default()
    });
    let r = app.post_raw("/v1/files", b"upload".to_vec()).await;
    assert_eq!(r.status(), 500);
    assert_eq!(
        app.stub.calls("/v1/files"),
        1,
        "a POST the relay got is not resent"
    );
    let r = app.get("/v1/models").await;
    assert_eq!(r.status(), 500);
    assert_eq!(app.stub.calls("/v1/models"), 3, "a GET is retried");
    let r = app.chat(&chat_body("retried")).await;
    assert_eq!(r.status(), 500);
    assert_eq!(app.stub.calls("/v1/chat/completions"), 3);
    let m = metrics(&app).await;
    assert!(
        m.contains(r#"edge_gateway_relay_retries_total{region="default"} 4"#),
        "each retry is visible: {m}"
    );
}
