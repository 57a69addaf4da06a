use futures_util::StreamExt;
use serde_json::{Value, json};

use relay_stub::Behavior;

use crate::helpers::*;

#[tokio::test]
async fn streamed_answer_is_passed_through_byte_exact() {
    let app = spawn_app().await;
    let mut body = stream_body("Tell me about refunds");
    body["stream_options"] = json!({"include_usage": true});
    let response = app.chat(&body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes, app.stub.last_sent());
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(text.contains("\"usage\":{"), "{text}");
}

#[tokio::test]
async fn first_sse_event_arrives_before_the_relay_has_finished() {
    let app = spawn_app().await;
    // The stub sends its first event, then holds the stream until released.
    app.stub.set(Behavior {
        gate: true,
        ..Default::default()
    });
    // The client asks for usage itself, so the gateway forwards the relay's bytes as
    // they are (otherwise it strips the usage it asked for on the client's behalf).
    let mut body = stream_body("Where is my order?");
    body["stream_options"] = json!({"include_usage": true});
    let response = app.chat(&body).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let first = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("first event arrives while the relay is still holding the stream")
        .expect("a chunk")
        .expect("no error");
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(
        first.starts_with("data: {") && first.contains("\"role\":\"assistant\""),
        "{first}"
    );
    assert!(!first.contains("[DONE]"));
    app.stub.release();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap() {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let all = [first.as_bytes(), &rest].concat();
    assert_eq!(all, app.stub.last_sent());
}

#[tokio::test]
async fn a_relay_silent_mid_stream_is_cut_after_the_idle_timeout() {
    let app = spawn_app_with(|c| c.relay.idle_timeout_ms = 200).await;
    app.stub.set(Behavior {
        gate: true,
        ..Default::default()
    });
    let response = app.chat(&stream_body("hello")).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("stream ends")
    {
        text.push_str(std::str::from_utf8(&chunk.expect("a clean end")).unwrap());
    }
    // OpenAI's SDKs raise on an event that carries `error`; a cut connection would
    // surface as a network error, and a `[DONE]` would make the answer look complete.
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let event: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(event["error"]["code"], "relay_timeout", "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}
