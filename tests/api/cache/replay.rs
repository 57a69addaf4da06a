//! One entry, two shapes: plain and streamed answers replayed either way.

use super::*;

#[tokio::test]
async fn a_streamed_miss_is_served_plain_and_replayed_as_a_stream() {
    let app = spawn_app().await;
    let mut streamed = stream_body("Where is my parcel?");
    let miss = app.chat(&streamed).await;
    assert_eq!(header(&miss, "x-cache"), "miss");
    let original_raw = miss.text().await.unwrap();
    assert!(
        !original_raw.contains("usage"),
        "a client that did not ask sees no usage: {original_raw}"
    );
    let original = sse_events(&original_raw);
    let original_text = streamed_text(&original);
    assert_eq!(original_text, "Answer to: Where is my parcel?");

    let plain = app.chat(&chat_body("Where is my parcel?")).await;
    assert_eq!(header(&plain, "x-cache"), "hit");
    assert_eq!(header(&plain, "content-type"), "application/json");
    let plain = json_of(plain).await;
    assert_eq!(plain["object"], "chat.completion");
    assert_eq!(plain["choices"][0]["message"]["role"], "assistant");
    assert_eq!(plain["choices"][0]["message"]["content"], original_text);
    assert_eq!(plain["choices"][0]["finish_reason"], "stop");

    streamed["stream_options"] = json!({"include_usage": true});
    let replay = app.chat(&streamed).await;
    assert_eq!(header(&replay, "x-cache"), "hit");
    assert_eq!(header(&replay, "content-type"), "text/event-stream");
    let events = sse_events(&replay.text().await.unwrap());
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text = streamed_text(&events);
    assert_eq!(text, original_text);
    let finish = events.iter().find_map(|e| {
        e.pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
    });
    assert_eq!(finish, Some("stop"));
    // The client of the first stream did not ask for usage, but the gateway did: the
    // entry carries it, so a replay that asks gets it as its last chunk, and a plain hit
    // has it in its body.
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(
        last["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{last}"
    );
    assert_eq!(plain["usage"], last["usage"]);
    assert_eq!(app.stub.calls("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn a_plain_miss_is_replayed_as_a_stream_with_usage_when_asked() {
    let app = spawn_app().await;
    let plain = json_of(app.chat(&chat_body("Opening hours on Sunday?")).await).await;
    let mut streamed = stream_body("Opening hours on Sunday?");
    streamed["stream_options"] = json!({"include_usage": true});
    let replay = app.chat(&streamed).await;
    assert_eq!(header(&replay, "x-cache"), "hit");
    let events = sse_events(&replay.text().await.unwrap());
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], plain["usage"]);
    assert!(events.iter().all(|e| e["id"] == plain["id"]));
    let text = streamed_text(&events);
    assert_eq!(
        text,
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
}

#[tokio::test]
async fn tool_calls_and_reasoning_survive_both_directions() {
    let app = spawn_app().await;
    let tools = json!([{"type": "function", "function": {"name": "track_order", "parameters": {"type": "object"}}}]);
    // Stream first, then plain.
    let mut body = stream_body("Track order 42");
    body["model"] = json!("deep-reasoner");
    body["tools"] = tools.clone();
    let streamed = app.chat(&body).await.text().await.unwrap();
    let mut args = String::new();
    for e in sse_events(&streamed) {
        if let Some(a) = e.pointer("/choices/0/delta/tool_calls/0/function/arguments") {
            args.push_str(a.as_str().unwrap());
        }
    }
    body["stream"] = json!(false);
    let plain = app.chat(&body).await;
    assert_eq!(header(&plain, "x-cache"), "hit");
    let plain = json_of(plain).await;
    let message = &plain["choices"][0]["message"];
    assert_eq!(message["tool_calls"][0]["id"], "call_stub_0");
    assert_eq!(message["tool_calls"][0]["type"], "function");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "track_order");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        args.as_str()
    );
    assert_eq!(
        message["reasoning_content"],
        "The user asks: Track order 42"
    );
    assert!(message["content"].is_null());
    assert_eq!(plain["choices"][0]["finish_reason"], "tool_calls");

    // Plain first, then stream.
    let mut body = chat_body("Track order 43");
    body["model"] = json!("deep-reasoner");
    body["tools"] = tools;
    let plain = json_of(app.chat(&body).await).await;
    body["stream"] = json!(true);
    let replay = app.chat(&body).await;
    assert_eq!(header(&replay, "x-cache"), "hit");
    let events = sse_events(&replay.text().await.unwrap());
    let call = events
        .iter()
        .find_map(|e| e.pointer("/choices/0/delta/tool_calls/0"))
        .expect("a tool call delta");
    assert_eq!(call["index"], 0);
    assert_eq!(
        call["id"],
        plain["choices"][0]["message"]["tool_calls"][0]["id"]
    );
    assert_eq!(
        call["function"],
        plain["choices"][0]["message"]["tool_calls"][0]["function"]
    );
    let reasoning = events
        .iter()
        .find_map(|e| e.pointer("/choices/0/delta/reasoning_content"))
        .expect("reasoning delta");
    assert_eq!(
        reasoning,
        &plain["choices"][0]["message"]["reasoning_content"]
    );
}

#[tokio::test]
async fn a_client_leaving_mid_stream_still_gets_the_answer_cached() {
    let app = spawn_app().await;
    app.stub.set(Behavior {
        gate: true,
        ..Default::default()
    });
    let body = stream_body("Long answer I will not wait for");
    let response = app.chat(&body).await;
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(stream); // the client disconnects
    app.stub.release();
    let plain = chat_body("Long answer I will not wait for");
    eventually("the abandoned stream to be cached", || async {
        let r = app.chat(&plain).await;
        (header(&r, "x-cache") == "hit").then_some(())
    })
    .await;
    assert_eq!(app.stub.total_calls(), 1);
}
