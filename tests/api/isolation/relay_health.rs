//! One client never locks the others out: relay health, panic mode, trials, probes, latency.

use super::*;

#[tokio::test]
async fn a_prompt_the_relay_always_rejects_never_fails_other_clients() {
    let app = spawn_app_with(no_probes).await;
    app.stub.set(Behavior {
        status: Some(500),
        fail_when_body_contains: Some("poison".into()),
        ..Default::default()
    });
    let mut failures = 0;
    for round in 0..8 {
        let bad = app.chat(&chat_body("poison pill")).await;
        assert_eq!(
            bad.status(),
            500,
            "the relay's 500 is passed on to its sender"
        );
        for other in 0..3 {
            let r = app
                .chat(&chat_body(&format!("question {round}-{other}")))
                .await;
            failures += u32::from(r.status() != 200);
        }
    }
    assert_eq!(failures, 0, "other clients saw failures");
}

/// An app with a primary region `main` (one failure opens its breaker) and a backup
/// `spare`; `health` sets the rest. Returns both stubs (the spare must outlive the app).
async fn primary_with_spare(health: impl FnOnce(&mut Config)) -> (RelayStub, RelayStub, TestApp) {
    let (main, spare) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let app = spawn_app_with(|c| {
        health(c);
        c.relay.health.failure_threshold = 1;
        c.relay.regions = vec![
            region("main", &main, 1, false),
            region("spare", &spare, 1, true),
        ];
    })
    .await;
    (main, spare, app)
}

#[tokio::test]
async fn a_cancelled_half_open_trial_never_wedges_the_breaker() {
    let (main, _spare, app) = primary_with_spare(|c| {
        no_probes(c);
        c.relay.health.cooldown_ms = 100;
    })
    .await;
    main.set(Behavior {
        status: Some(500),
        ..Default::default()
    });
    let r = app.chat(&chat_body("first")).await;
    assert_eq!(header(&r, "x-relay-region"), "spare");
    // The relay holds the trial request; its client gives up and disconnects.
    main.set(Behavior {
        hold: true,
        ..Default::default()
    });
    // Until the cool-down is over requests go to the spare and are answered; the first
    // one after it is the trial, held by the primary until its client gives up.
    eventually("a trial whose client timed out", || async {
        let body = chat_body(&format!("the trial {:?}", Instant::now()));
        let trial = app
            .client
            .post(app.url("/v1/chat/completions"))
            .body(serde_json::to_vec(&body).unwrap())
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        trial.is_err().then_some(())
    })
    .await;
    main.set(Behavior::default());
    eventually("traffic back on the recovered primary", || async {
        let r = app
            .chat(&chat_body(&format!("later {:?}", Instant::now())))
            .await;
        (header(&r, "x-relay-region") == "main").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_successful_probe_closes_an_open_breaker() {
    let (main, _spare, app) = primary_with_spare(|c| {
        c.relay.health.probe_interval_ms = 20;
        c.relay.health.cooldown_ms = 60_000;
    })
    .await;
    main.set(Behavior {
        status: Some(500),
        ..Default::default()
    });
    eventually("the primary to be marked down", || async {
        (json_of(app.get("/readyz").await).await["relay"]["main"] == "down").then_some(())
    })
    .await;
    main.set(Behavior::default());
    // No request is needed: the probe's success alone closes the breaker.
    eventually("the probe to bring the primary back", || async {
        (json_of(app.get("/readyz").await).await["relay"]["main"] == "up").then_some(())
    })
    .await;
    let r = app.chat(&chat_body("back")).await;
    assert_eq!(header(&r, "x-relay-region"), "main");
}

#[tokio::test]
async fn a_slow_region_gets_little_traffic_beside_a_fast_one() {
    let (fast, slow) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    slow.set(Behavior {
        delay_ms: 500,
        ..Default::default()
    });
    let app = spawn_app_with(|c| {
        no_probes(c);
        c.relay.regions = vec![
            region("fast", &fast, 1, false),
            region("slow", &slow, 1, false),
        ];
    })
    .await;
    for i in 0..60 {
        assert_eq!(app.chat(&chat_body(&format!("q{i}"))).await.status(), 200);
    }
    // Weights 1:1 would send 30 here; a 500 ms region beside a ~1 ms one keeps about
    // a tenth of its share while it stays slow.
    assert!(
        slow.total_calls() <= 12,
        "the slow region still got {} of 60",
        slow.total_calls()
    );
}
