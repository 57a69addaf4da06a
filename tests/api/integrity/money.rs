//! Money figures for every answer: usage on streams, estimates when the relay reports none.

use super::*;

#[tokio::test]
async fn a_streamed_miss_without_include_usage_is_priced_and_its_hits_save() {
    let app = spawn_app().await;
    let r = app.chat(&stream_body("What is the refund window?")).await;
    let text = r.text().await.unwrap();
    assert!(!text.contains("usage"), "the client did not ask: {text}");
    let asked: Value = serde_json::from_slice(&app.stub.last_body().unwrap()).unwrap();
    assert_eq!(asked["stream_options"]["include_usage"], json!(true));
    let hit = json_of(app.chat(&chat_body("What is the refund window?")).await).await;
    assert!(
        hit["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{hit}"
    );
    app.state.flush_analytics().await;
    let db = app.dir.path().join("gateway.db");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cache_events WHERE tier = 'miss' AND completion_tokens > 0 AND cost_usd > 0"
        ),
        1,
        "the streamed miss is priced"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cache_events WHERE tier = 'l1' AND saved_usd > 0"
        ),
        1,
        "its hit saves"
    );
}

#[tokio::test]
async fn with_stream_usage_off_the_relay_body_is_untouched_and_usage_is_estimated() {
    let app = spawn_app_with(|c| c.relay.stream_usage = false).await;
    let body = stream_body("Do you deliver on weekends?");
    app.chat(&body).await.bytes().await.unwrap();
    let sent: Value = serde_json::from_slice(&app.stub.last_body().unwrap()).unwrap();
    assert!(sent.get("stream_options").is_none(), "{sent}");
    // The stream's row is written once its answer is complete and its usage estimated.
    let db = app.dir.path().join("gateway.db");
    eventually("the streamed miss's estimated row", || async {
        app.state.flush_analytics().await;
        let rows = count(
            &db,
            "SELECT count(*) FROM cache_events WHERE tier = 'miss' AND usage_estimated = 1 AND completion_tokens > 0",
        );
        (rows == 1).then_some(())
    })
    .await;
}
