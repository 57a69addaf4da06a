use std::time::Duration;

use relay_stub::{Behavior, RelayStub};

use crate::helpers::*;

#[tokio::test]
async fn sigterm_finishes_the_in_flight_request_then_exits() {
    let stub = RelayStub::start().await.unwrap();
    stub.set(Behavior {
        delay_ms: 500,
        ..Default::default()
    });
    let gateway = spawn_gateway(&[("RELAY_URL", stub.url())]);
    let client = client_with_key();
    let in_flight = tokio::spawn({
        let url = gateway.url("/v1/chat/completions");
        let client = client.clone();
        async move {
            client
                .post(url)
                .body(serde_json::to_vec(&chat_body("slow question")).unwrap())
                .send()
                .await
        }
    });
    // The request is at the relay (being delayed) before the signal is sent.
    eventually("the relay to receive the request", || async {
        (stub.calls("/v1/chat/completions") == 1).then_some(())
    })
    .await;
    gateway.signal("TERM");
    let response = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("in-flight request completes")
        .unwrap()
        .expect("no connection error");
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Answer to: slow question"
    );
    let gateway = exits_cleanly(gateway).await;
    // Nothing listens any more.
    let refused = client
        .get(gateway.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err());
}
