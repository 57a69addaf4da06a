use crate::helpers::*;

#[tokio::test]
async fn healthz_readyz_and_metrics_answer() {
    let app = spawn_app().await;
    let health = json_of(app.get("/healthz").await).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["region"], "test");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready = json_of(ready).await;
    assert_eq!(ready["tiers"]["l1"], "up");
    assert_eq!(ready["relay"]["default"], "up");

    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"edge_gateway_http_requests_total{route="/v1/chat/completions",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("edge_gateway_http_request_duration_seconds_bucket"));
    assert!(
        metrics.contains(r#"edge_gateway_relay_requests_total{outcome="200",region="default"} 1"#)
    );
}
