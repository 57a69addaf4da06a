//! Single flight: one relay call for concurrent misses; errors shared, never cached.

use super::*;

#[tokio::test]
async fn fifty_concurrent_identical_misses_make_one_relay_call() {
    let app = spawn_app().await;
    app.stub.set(Behavior {
        hold: true,
        ..Default::default()
    });
    let body = chat_body("Is there a student discount?");
    let key = key_for(&body);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = app.client.clone();
        let url = app.url("/v1/chat/completions");
        let mut body = body.clone();
        if i % 2 == 1 {
            body["stream"] = json!(true); // streamed and plain requests share the flight
        }
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("authorization", "Bearer sk-client-test")
                .body(serde_json::to_vec(&body).unwrap())
                .send()
                .await
                .unwrap();
            let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
            let tier = r
                .headers()
                .get("x-cache-tier")
                .map(|t| t.to_str().unwrap().to_owned());
            (r.status().as_u16(), cache, tier, r.text().await.unwrap())
        }));
    }
    eventually("49 followers waiting on one relay call", || async {
        (app.state.waiting_on(&key) == 49 && app.stub.total_calls() == 1).then_some(())
    })
    .await;
    app.stub.release();
    let mut coalesced = 0;
    for task in tasks {
        let (status, cache, tier, text) = task.await.unwrap();
        assert_eq!(status, 200);
        assert!(
            text.contains("Answer to: Is there a student discount?") || text.contains("student"),
            "{text}"
        );
        if tier.as_deref() == Some("coalesced") {
            assert_eq!(cache, "hit");
            coalesced += 1;
        }
    }
    assert_eq!(coalesced, 49);
    assert_eq!(app.stub.total_calls(), 1);
    assert!(app.state.no_flights());
}

#[tokio::test]
async fn followers_of_a_failed_leader_get_the_same_error_and_nothing_is_cached() {
    // One attempt: the leader's failure is final (retries are the relay tests' subject).
    let app = spawn_app_with(|c| c.relay.retry.max_attempts = 1).await;
    app.stub.set(Behavior {
        hold: true,
        status: Some(500),
        fail_times: Some(1),
        ..Default::default()
    });
    let body = chat_body("Cancel my subscription");
    let key = key_for(&body);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = app.client.clone();
        let url = app.url("/v1/chat/completions");
        let body = serde_json::to_vec(&body).unwrap();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("authorization", "Bearer sk-client-test")
                .body(body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    eventually("9 followers waiting", || async {
        (app.state.waiting_on(&key) == 9).then_some(())
    })
    .await;
    app.stub.release();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 500);
    }
    assert_eq!(app.stub.total_calls(), 1);
    // The error was not cached: the next request goes to the relay and succeeds.
    app.stub.set(Behavior::default());
    let r = app.chat(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-cache"), "miss");
}

#[tokio::test]
async fn relay_errors_and_broken_streams_are_never_cached() {
    let app = spawn_app_with(|c| c.relay.retry.max_attempts = 1).await;
    app.stub.set(Behavior {
        status: Some(503),
        fail_times: Some(1),
        ..Default::default()
    });
    let body = chat_body("Refund policy?");
    assert_eq!(app.chat(&body).await.status(), 503);
    let r = app.chat(&body).await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "x-cache").as_str()),
        (200, "miss")
    );
    assert_eq!(header(&app.chat(&body).await, "x-cache"), "hit");

    // The gate makes the stub flush its first event before it breaks the stream.
    app.stub.set(Behavior {
        break_stream_after: Some(2),
        gate: true,
        ..Default::default()
    });
    let streamed = stream_body("Shipping to Canada?");
    let r = app.chat(&streamed).await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    assert!(stream.next().await.unwrap().is_ok(), "first event arrives");
    app.stub.release();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.expect("the stream ends cleanly, with an error event"));
    }
    let rest = String::from_utf8(rest).unwrap();
    let last = rest.trim_end().rsplit("\n\n").next().unwrap();
    let event: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        event["error"]["code"], "relay_bad_response",
        "the client sees the stream end with an SSE error event: {rest}"
    );
    assert!(!rest.contains("[DONE]"), "{rest}");
    app.stub.set(Behavior::default());
    let calls = app.stub.total_calls();
    let r = app.chat(&streamed).await;
    assert_eq!(header(&r, "x-cache"), "miss");
    r.bytes().await.unwrap();
    assert_eq!(app.stub.total_calls(), calls + 1);

    app.stub.set(Behavior {
        garbage: true,
        ..Default::default()
    });
    let r = app.chat(&chat_body("Garbage in?")).await;
    assert_eq!(r.status(), 502);
    assert_eq!(error_code(r).await, "relay_bad_response");
}
