//! Several relay stubs as the relay's regions: weights, failover, breakers, retries, keys.

use std::time::{Duration, Instant};

use edge_gateway::config::{Config, RegionConfig};
use relay_stub::{Behavior, RelayStub};
use serde_json::Value;

use crate::helpers::*;

mod keys;

/// Fast breakers and no active probes unless a test turns them on.
fn quick_health(c: &mut Config) {
    c.relay.health.cooldown_ms = 200;
    c.relay.health.probe_interval_ms = 0;
    c.relay.first_byte_timeout_ms = 300;
    c.relay.retry.backoff_base_ms = 1;
}

async fn ask(app: &TestApp, prompt: &str) -> (u16, String) {
    let r = app.chat(&chat_body(prompt)).await;
    let status = r.status().as_u16();
    let region = r
        .headers()
        .get("x-relay-region")
        .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
    r.bytes().await.unwrap();
    (status, region)
}

#[tokio::test]
async fn misses_split_three_to_one_by_weight() {
    let (a, b) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let app = spawn_app_with(|c| {
        quick_health(c);
        c.relay.regions = vec![region("cdg", &a, 3, false), region("sin", &b, 1, false)];
    })
    .await;
    let mut cdg = 0;
    for i in 0..400 {
        let (status, region) = ask(&app, &format!("Distinct question {i}")).await;
        assert_eq!(status, 200);
        cdg += u32::from(region == "cdg");
    }
    assert!((285..=315).contains(&cdg), "cdg answered {cdg} of 400");
    assert_eq!(a.total_calls() + b.total_calls(), 400);
    assert_eq!(
        app.stub.total_calls(),
        0,
        "RELAY_URL is unused when regions are configured"
    );
}

#[tokio::test]
async fn an_edge_regions_weight_table_replaces_the_weights() {
    let (a, b) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let app = spawn_app_with(|c| {
        quick_health(c);
        c.edge_region = "sin".into();
        c.relay.regions = vec![region("cdg", &a, 3, false), region("sin", &b, 1, false)];
        c.relay.weights.insert(
            "sin".into(),
            [("sin".to_owned(), 9), ("cdg".to_owned(), 1)].into(),
        );
    })
    .await;
    for i in 0..20 {
        ask(&app, &format!("q{i}")).await;
    }
    assert_eq!((a.total_calls(), b.total_calls()), (2, 18));
}

#[tokio::test]
async fn a_region_answering_500_is_routed_around_with_zero_client_errors() {
    let (bad, good) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    bad.set(Behavior {
        status: Some(500),
        ..Default::default()
    });
    let app = spawn_app_with(|c| {
        quick_health(c);
        c.relay.health.cooldown_ms = 60_000;
        c.relay.regions = vec![
            region("bad", &bad, 1, false),
            region("good", &good, 1, false),
        ];
    })
    .await;
    for i in 0..50 {
        let (status, region) = ask(&app, &format!("q{i}")).await;
        assert_eq!((status, region.as_str()), (200, "good"));
    }
    assert!(
        bad.total_calls() <= 3,
        "the breaker opened: {} calls",
        bad.total_calls()
    );
    let ready = json_of(app.get("/readyz").await).await;
    assert_eq!(ready["relay"]["bad"], "down");
    assert_eq!(ready["relay"]["good"], "up");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"edge_gateway_relay_breaker_state{region="bad"} 2"#));
}

#[tokio::test]
async fn a_hanging_region_costs_one_timeout_then_is_avoided() {
    let (hung, good) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    hung.set(Behavior {
        hang: true,
        ..Default::default()
    });
    let app = spawn_app_with(|c| {
        quick_health(c);
        c.relay.health.cooldown_ms = 60_000;
        c.relay.regions = vec![
            region("hung", &hung, 1, false),
            region("good", &good, 1, false),
        ];
    })
    .await;
    let mut slow = 0;
    for i in 0..20 {
        let started = Instant::now();
        let (status, region) = ask(&app, &format!("q{i}")).await;
        assert_eq!((status, region.as_str()), (200, "good"));
        slow += u32::from(started.elapsed() >= Duration::from_millis(300));
    }
    assert_eq!(hung.total_calls(), 1, "one attempt reached the hung region");
    assert!(slow <= 1, "{slow} requests waited for the hung region");
}

#[tokio::test]
async fn backups_serve_only_while_no_primary_works_and_recovery_returns_traffic() {
    let (primary, backup) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let app = spawn_app_with(|c| {
        quick_health(c);
        c.relay.regions = vec![
            region("main", &primary, 1, false),
            region("spare", &backup, 1, true),
        ];
    })
    .await;
    for i in 0..10 {
        assert_eq!(
            ask(&app, &format!("before {i}")).await,
            (200, "main".into())
        );
    }
    assert_eq!(backup.total_calls(), 0);

    primary.set(Behavior {
        status: Some(503),
        ..Default::default()
    });
    for i in 0..10 {
        assert_eq!(
            ask(&app, &format!("during {i}")).await,
            (200, "spare".into())
        );
    }
    assert!(primary.total_calls() <= 13, "primary breaker opened");
    assert_eq!(
        json_of(app.get("/readyz").await).await["relay"]["main"],
        "down"
    );

    // Recovery: after the cool-down one trial request goes to the primary (half-open);
    // its success closes the breaker and traffic returns.
    primary.set(Behavior::default());
    eventually("traffic back on the primary", || async {
        let (_, region) = ask(&app, &format!("probe {:?}", Instant::now())).await;
        (region == "main").then_some(())
    })
    .await;
    let spare_calls = backup.total_calls();
    for i in 0..10 {
        assert_eq!(ask(&app, &format!("after {i}")).await, (200, "main".into()));
    }
    assert_eq!(
        backup.total_calls(),
        spare_calls,
        "the backup is left once the primary recovers"
    );
    assert_eq!(
        json_of(app.get("/readyz").await).await["relay"]["main"],
        "up"
    );
}

#[tokio::test]
async fn active_probes_take_a_dead_region_out_before_requests_find_it() {
    let (dead, good) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let dead_url = dead.url();
    dead.stop().await;
    let good_region = region("good", &good, 1, false); // the stub itself stays alive here
    let app = spawn_app_with(move |c| {
        quick_health(c);
        c.relay.health.probe_interval_ms = 20;
        c.relay.health.cooldown_ms = 60_000;
        c.relay.regions = vec![
            RegionConfig {
                name: "dead".into(),
                url: dead_url,
                weight: 100,
                backup: false,
                api_key_env: None,
                keys: Vec::new(),
            },
            good_region,
        ];
    })
    .await;
    eventually("the probe to mark the dead region down", || async {
        (json_of(app.get("/readyz").await).await["relay"]["dead"] == "down").then_some(())
    })
    .await;
    let before = app.get("/metrics").await.text().await.unwrap();
    let dead_attempts = |m: &str| {
        m.lines()
            .filter(|l| {
                l.starts_with("edge_gateway_relay_requests_total") && l.contains(r#"region="dead""#)
            })
            .count()
    };
    for i in 0..10 {
        assert_eq!(ask(&app, &format!("q{i}")).await, (200, "good".into()));
    }
    let after = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(dead_attempts(&before), dead_attempts(&after));
    assert_eq!(
        dead_attempts(&after),
        0,
        "no request ever tried the dead region"
    );
}
