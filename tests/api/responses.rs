//! `POST /v1/responses` (OpenAI's Responses API) cached like chat completions: plain and
//! streamed, replayed as the API's event sequence, plain ↔ stream, usage and analytics.

use serde_json::{Value, json};

use crate::helpers::*;

fn ask(input: &str) -> Value {
    json!({"model": "gpt-4o-mini", "input": input, "instructions": "Be brief."})
}

async fn post(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json("/v1/responses", body).await
}

fn event_kinds(sse: &str) -> Vec<String> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(str::to_owned)
        .collect()
}

fn completed(sse: &str) -> Value {
    let last = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .expect("an event");
    let event: Value = serde_json::from_str(last).unwrap();
    assert_eq!(event["type"], "response.completed");
    event["response"].clone()
}

#[tokio::test]
async fn a_repeated_response_is_served_from_the_cache_as_it_was() {
    let app = spawn_app().await;
    let first = post(&app, &ask("What is your refund window?")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache"), "miss");
    let first = first.text().await.unwrap();
    let second = post(&app, &ask("What is your refund window?")).await;
    assert_eq!(header(&second, "x-cache"), "hit");
    assert_eq!(header(&second, "x-cache-tier"), "l1");
    assert_eq!(
        second.text().await.unwrap(),
        first,
        "the stored object, byte for byte"
    );
    assert_eq!(app.stub.calls("/v1/responses"), 1);
    // Analytics: the row counts the Responses API's input/output tokens.
    let db = app.dir.path().join("gateway.db");
    let (tier, prompt, completion, endpoint) = eventually("the hit's row", || async {
        app.state.flush_analytics().await;
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT tier, prompt_tokens, completion_tokens, endpoint FROM cache_events
                 WHERE tier = 'l1'",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .ok()
    })
    .await;
    assert_eq!((tier.as_str(), endpoint.as_str()), ("l1", "responses"));
    let usage = serde_json::from_str::<Value>(&first).unwrap()["usage"].clone();
    assert_eq!(prompt, usage["input_tokens"].as_i64().unwrap());
    assert_eq!(completion, usage["output_tokens"].as_i64().unwrap());
    app.stop().await;
}

#[tokio::test]
async fn a_streamed_response_is_stored_from_its_completed_event_and_replayed_as_events() {
    let app = spawn_app().await;
    let mut streamed = ask("Do you ship to Norway?");
    streamed["stream"] = json!(true);
    let miss = post(&app, &streamed).await;
    assert_eq!(header(&miss, "x-cache"), "miss");
    let live = miss.text().await.unwrap();
    let object = completed(&live);
    // Stream → plain: the object the stream completed with.
    let plain = eventually("the stream's answer stored", || async {
        let r = post(&app, &ask("Do you ship to Norway?")).await;
        (header(&r, "x-cache") == "hit").then_some(r)
    })
    .await;
    assert_eq!(plain.json_value().await, object);
    // Stream → stream: the API's event sequence, ending with the same object.
    let replay = post(&app, &streamed).await;
    assert_eq!(header(&replay, "x-cache"), "hit");
    assert_eq!(header(&replay, "content-type"), "text/event-stream");
    let replay = replay.text().await.unwrap();
    let kinds = event_kinds(&replay);
    assert_eq!(kinds.first().map(String::as_str), Some("response.created"));
    assert!(
        kinds.contains(&"response.output_text.delta".to_owned()),
        "{kinds:?}"
    );
    assert_eq!(completed(&replay), object);
    // The replayed deltas spell the stored text.
    let text: String = replay
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, object["output"][0]["content"][0]["text"]);
    assert_eq!(app.stub.calls("/v1/responses"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_plain_response_is_replayed_to_a_streamed_request() {
    let app = spawn_app().await;
    let plain = post(&app, &ask("Where is my parcel?")).await;
    let object: Value = plain.json_value().await;
    let mut streamed = ask("Where is my parcel?");
    streamed["stream"] = json!(true);
    let replay = post(&app, &streamed).await;
    assert_eq!(header(&replay, "x-cache"), "hit");
    let replay = replay.text().await.unwrap();
    assert_eq!(
        event_kinds(&replay),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(completed(&replay), object);
    app.stop().await;
}

#[tokio::test]
async fn previous_response_id_is_part_of_the_key_and_incomplete_responses_are_not_stored() {
    let app = spawn_app().await;
    let mut follow_up = ask("And to Sweden?");
    follow_up["previous_response_id"] = json!("resp_a");
    post(&app, &follow_up).await.text().await.unwrap();
    follow_up["previous_response_id"] = json!("resp_b");
    let other = post(&app, &follow_up).await;
    assert_eq!(header(&other, "x-cache"), "miss", "another conversation");
    other.text().await.unwrap();

    app.stub.set(relay_stub::Behavior {
        finish_reason: Some("length".into()),
        ..Default::default()
    });
    let cut = post(&app, &ask("Tell me everything about shipping")).await;
    assert_eq!(cut.json_value().await["status"], "incomplete");
    app.stub.set(relay_stub::Behavior::default());
    let again = post(&app, &ask("Tell me everything about shipping")).await;
    assert_eq!(
        header(&again, "x-cache"),
        "miss",
        "an incomplete response is never replayed"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_response_without_input_is_a_400_that_never_reaches_the_relay() {
    let app = spawn_app().await;
    let bad = post(&app, &json!({"model": "gpt-4o-mini"})).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(error_code(bad).await, "missing_or_invalid_field");
    assert_eq!(app.stub.calls("/v1/responses"), 0);
    app.stop().await;
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}
