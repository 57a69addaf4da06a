//! OpenTelemetry traces (OTLP/HTTP) against the test kit's receiver stand-in: the real
//! binary, a span per request with its cache figures, a span per relay attempt, the
//! client's `traceparent` continued and passed on to the relay, no prompt text.

use testkit::otlp::Receiver;

use crate::helpers::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

#[tokio::test]
async fn requests_are_traced_from_the_client_through_the_relay() {
    let receiver = Receiver::start().await.unwrap();
    let stub = relay_stub::RelayStub::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway(&[
        ("RELAY_URL", stub.url()),
        ("SQLITE_PATH", dir.path().join("g.db").display().to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
    ]);
    let client = client_with_key();
    let question = "Which trains run to Lyon on Sundays?";
    for _ in 0..2 {
        let response = client
            .post(gateway.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
            .body(serde_json::to_vec(&chat_body(question)).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let spans = eventually("the request and attempt spans", || async {
        let spans = receiver.spans();
        let requests = spans
            .iter()
            .filter(|s| s.name == "POST /v1/chat/completions")
            .count();
        let attempts = spans.iter().filter(|s| s.name == "relay attempt").count();
        (requests == 2 && attempts == 1).then_some(spans)
    })
    .await;
    let request = |tier: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == "POST /v1/chat/completions" && s.attribute("cache.tier") == Some(tier)
            })
            .unwrap_or_else(|| panic!("a {tier} span in {spans:?}"))
            .clone()
    };
    let miss = request("miss");
    let hit = request("l1");
    for span in [&miss, &hit] {
        assert_eq!(span.trace_id, TRACE, "the client's trace continues");
        assert_eq!(span.parent_span_id, PARENT);
        assert_eq!(span.attribute("http.response.status_code"), Some("200"));
        assert!(
            span.attribute("namespace")
                .is_some_and(|n| n.starts_with("key-"))
        );
        assert_eq!(span.attribute("cache.key_prefix").map(str::len), Some(16));
    }
    assert_eq!(miss.attribute("relay.region"), Some("default"));
    assert_eq!(hit.attribute("relay.region"), None, "a hit calls no relay");
    let attempt = spans.iter().find(|s| s.name == "relay attempt").unwrap();
    assert_eq!(attempt.trace_id, TRACE);
    assert_eq!(
        attempt.parent_span_id, miss.span_id,
        "the attempt belongs to the miss"
    );
    assert_eq!(attempt.attribute("relay.region"), Some("default"));
    // The relay got the trace too, as a child of the attempt.
    let sent = stub.last_headers().unwrap();
    let traceparent = sent["traceparent"].to_str().unwrap();
    assert_eq!(traceparent, format!("00-{TRACE}-{}-01", attempt.span_id));
    // No prompt text, no key in any span.
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains("Lyon") && !value.contains("sk-client-test"),
                "{key}={value}"
            );
        }
    }
}

#[tokio::test]
async fn without_an_otlp_endpoint_nothing_is_traced_and_traceparent_passes_through() {
    let app = spawn_app().await;
    assert!(!edge_gateway::testing::telemetry::exporting());
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .body(serde_json::to_vec(&chat_body("Hi")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = app.stub.last_headers().unwrap();
    assert_eq!(
        sent["traceparent"].to_str().unwrap(),
        format!("00-{TRACE}-{PARENT}-01"),
        "the client's header reaches the relay unchanged"
    );
    app.stop().await;
}
