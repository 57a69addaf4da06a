use futures_util::StreamExt;
use serde_json::{Value, json};

use edge_gateway::keying::CacheKey;
use relay_stub::Behavior;

use crate::helpers::*;

/// Parses an SSE body into its JSON events; asserts it ends with `[DONE]`.
fn sse_events(text: &str) -> Vec<Value> {
    assert!(text.ends_with("data: [DONE]\n\n"), "no [DONE]: {text}");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event is JSON"))
        .collect()
}

#[tokio::test]
async fn repeated_requests_make_one_relay_call_and_identical_hits() {
    let app = spawn_app().await;
    let body = chat_body("How do I reset my password?");
    let first = app.chat(&body).await;
    assert_eq!(header(&first, "x-cache"), "miss");
    let key = header(&first, "x-cache-key").to_owned();
    assert!(CacheKey::from_hex(&key).is_some(), "{key}");
    let first = first.bytes().await.unwrap();
    for _ in 0..4 {
        let again = app.chat(&body).await;
        assert_eq!(again.status(), 200);
        assert_eq!(header(&again, "x-cache"), "hit");
        assert_eq!(header(&again, "x-cache-tier"), "l1");
        assert_eq!(header(&again, "x-cache-key"), key);
        assert_eq!(header(&again, "x-edge-region"), "test");
        assert_eq!(header(&again, "content-type"), "application/json");
        assert_eq!(again.bytes().await.unwrap(), first);
    }
    assert_eq!(app.stub.calls("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn spelling_variants_hit_and_a_changed_parameter_misses() {
    let app = spawn_app().await;
    let base = r#"{"model":"gpt-4o-mini","temperature":1,"messages":[{"role":"user","content":"What are your hours?"}]}"#;
    assert_eq!(
        header(&app.post_raw("/v1/chat/completions", base).await, "x-cache"),
        "miss"
    );
    for variant in [
        r#"{"messages":[{"content":"What are your hours?","role":"user"}],"temperature":1.0,"model":"gpt-4o-mini"}"#,
        r#"{"model":"gpt-4o-mini","temperature":1,"messages":[{"role":"user","content":"  What   are your\n hours?\t"}],"user":"u-42"}"#,
    ] {
        let r = app.post_raw("/v1/chat/completions", variant).await;
        assert_eq!(header(&r, "x-cache"), "hit", "{variant}");
    }
    let warmer = base.replace("\"temperature\":1", "\"temperature\":0.5");
    let r = app.post_raw("/v1/chat/completions", warmer).await;
    assert_eq!(header(&r, "x-cache"), "miss");
    assert_eq!(app.stub.calls("/v1/chat/completions"), 2);
}

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
    let original_text: String = original
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
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
    let text: String = events
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
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
    let text: String = events
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
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
        (app.state.flights.waiting(&key) == 49 && app.stub.total_calls() == 1).then_some(())
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
    assert!(app.state.flights.is_empty());
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
        (app.state.flights.waiting(&key) == 9).then_some(())
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

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let app = spawn_app().await;
    let body = chat_body("Short-lived answer");
    let first = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-test")
        .header("x-cache-ttl", "1")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&first, "x-cache"), "miss");
    assert_eq!(header(&app.chat(&body).await, "x-cache"), "hit");
    eventually("the entry to expire", || async {
        let r = app.chat(&body).await;
        (header(&r, "x-cache") == "miss").then_some(())
    })
    .await;
    for bad in ["0", "abc", "-5", "99999999999"] {
        let r = app
            .client
            .post(app.url("/v1/chat/completions"))
            .header("x-cache-ttl", bad)
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(error_code(r).await, "invalid_header");
    }
}

#[tokio::test]
async fn pass_through_keys_and_namespaces_never_share_entries() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&chat_body("Same question")).unwrap();
    let send = |auth: &'static str, ns: Option<&'static str>| {
        let mut r = app
            .client
            .post(app.url("/v1/chat/completions"))
            .header("authorization", auth)
            .body(body.clone());
        if let Some(ns) = ns {
            r = r.header("x-cache-namespace", ns);
        }
        r.send()
    };
    let a = send("Bearer sk-alice", None).await.unwrap();
    let b = send("Bearer sk-bob", None).await.unwrap();
    assert_eq!(header(&a, "x-cache"), "miss");
    assert_eq!(header(&b, "x-cache"), "miss");
    assert_ne!(header(&a, "x-cache-key"), header(&b, "x-cache-key"));
    assert_eq!(
        header(&send("Bearer sk-alice", None).await.unwrap(), "x-cache"),
        "hit"
    );
    assert_eq!(
        header(
            &send("Bearer sk-alice", Some("faq")).await.unwrap(),
            "x-cache"
        ),
        "miss"
    );
    assert_eq!(
        header(
            &send("Bearer sk-alice", Some("faq")).await.unwrap(),
            "x-cache"
        ),
        "hit"
    );
    assert_eq!(app.stub.total_calls(), 3);
}

#[tokio::test]
async fn managed_tenants_are_isolated_unless_a_shared_namespace_is_configured() {
    for (shared, expected_calls) in [(None, 2), (Some("public"), 1)] {
        let app = spawn_app_with(|c| {
            managed(
                c,
                "sk-relay",
                &[("acme", "gw-acme"), ("globex", "gw-globex")],
            );
            c.cache.shared_namespace = shared.map(String::from);
        })
        .await;
        for key in ["gw-acme", "gw-globex"] {
            let r = app
                .client
                .post(app.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {key}"))
                .body(serde_json::to_vec(&chat_body("Shared FAQ")).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        assert_eq!(
            app.stub.total_calls(),
            expected_calls,
            "shared = {shared:?}"
        );
    }
}

#[tokio::test]
async fn no_cache_refreshes_and_no_store_leaves_nothing() {
    let app = spawn_app().await;
    let body = chat_body("Fresh please");
    let first = json_of(app.chat(&body).await).await;
    let send = |directive: &'static str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .header("cache-control", directive)
            .header("authorization", "Bearer sk-client-test")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
    };
    let refreshed = send("no-cache").await.unwrap();
    assert_eq!(header(&refreshed, "x-cache"), "bypass");
    let refreshed = json_of(refreshed).await;
    assert_ne!(refreshed["id"], first["id"], "the relay answered again");
    let hit = app.chat(&body).await;
    assert_eq!(header(&hit, "x-cache"), "hit");
    assert_eq!(
        json_of(hit).await["id"],
        refreshed["id"],
        "no-cache stored the fresh answer"
    );

    let other = chat_body("Do not keep this");
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("cache-control", "private, no-store")
        .header("authorization", "Bearer sk-client-test")
        .body(serde_json::to_vec(&other).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-cache"), "bypass");
    assert_eq!(header(&app.chat(&other).await, "x-cache"), "miss");
}

#[tokio::test]
async fn completions_and_embeddings_are_cached_too() {
    let app = spawn_app().await;
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["a b", "c"]}),
        ),
    ] {
        let miss = app.post_json(path, &body).await;
        assert_eq!(header(&miss, "x-cache"), "miss");
        let miss = miss.bytes().await.unwrap();
        let hit = app.post_json(path, &body).await;
        assert_eq!(header(&hit, "x-cache"), "hit", "{path}");
        assert_eq!(hit.bytes().await.unwrap(), miss);
        assert_eq!(app.stub.calls(path), 1);
    }
    // A streamed legacy completion replays from the plain entry.
    let mut body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "stream": true});
    let replay = app.post_json("/v1/completions", &body).await;
    assert_eq!(header(&replay, "x-cache"), "hit");
    let events = sse_events(&replay.text().await.unwrap());
    assert_eq!(events[0]["object"], "text_completion");
    assert_eq!(events[0]["choices"][0]["text"], "Completion of: Say hi");
    body["prompt"] = json!("Say bye");
    let streamed_miss = app
        .post_json("/v1/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    sse_events(&streamed_miss);
    body["stream"] = json!(false);
    let plain = json_of(app.post_json("/v1/completions", &body).await).await;
    assert_eq!(plain["choices"][0]["text"], "Completion of: Say bye");
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
