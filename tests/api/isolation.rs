//! One client never harms another: relay health, key pools, tenants, the relay's path,
//! connections, retries (issue 12). Each test names the harm it rules out.

use std::time::{Duration, Instant};

use edge_gateway::config::Config;
use relay_stub::{Behavior, RelayStub};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn no_probes(c: &mut Config) {
    c.relay.health.probe_interval_ms = 0;
    c.relay.retry.backoff_base_ms = 1;
}

/// A client with no credential at all.
fn bare_client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn chat_as(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap()
}

/// Sends `head` (request line and headers, no final blank line) on a fresh connection
/// and returns the whole answer. For paths an HTTP client would normalize.
async fn raw_http(app: &TestApp, head: &str) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!("{head}\r\nHost: gw\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the gateway answers")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

// ---- relay health -------------------------------------------------------------------

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

#[tokio::test]
async fn a_cancelled_half_open_trial_never_wedges_the_breaker() {
    let (main, spare) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let app = spawn_app_with(|c| {
        no_probes(c);
        c.relay.health.cooldown_ms = 100;
        c.relay.health.failure_threshold = 1;
        c.relay.regions = vec![
            region("main", &main, 1, false),
            region("spare", &spare, 1, true),
        ];
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
    tokio::time::sleep(Duration::from_millis(150)).await; // let the cool-down pass
    let trial = app
        .client
        .post(app.url("/v1/chat/completions"))
        .body(serde_json::to_vec(&chat_body("the trial")).unwrap())
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(trial.is_err(), "the trial's client timed out");
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
    let (main, spare) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let app = spawn_app_with(|c| {
        c.relay.health.probe_interval_ms = 20;
        c.relay.health.cooldown_ms = 60_000;
        c.relay.health.failure_threshold = 1;
        c.relay.regions = vec![
            region("main", &main, 1, false),
            region("spare", &spare, 1, true),
        ];
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

// ---- retries and spend --------------------------------------------------------------

#[tokio::test]
async fn a_non_cacheable_post_is_never_retried_and_cacheable_retries_are_counted() {
    let app = spawn_app_with(no_probes).await;
    app.stub.set(Behavior {
        status: Some(500),
        ..Default::default()
    });
    let r = app.post_raw("/v1/files", b"upload".to_vec()).await;
    assert_eq!(r.status(), 500);
    assert_eq!(
        app.stub.calls("/v1/files"),
        1,
        "a POST the relay got is not resent"
    );
    let r = app.get("/v1/models").await;
    assert_eq!(r.status(), 500);
    assert_eq!(app.stub.calls("/v1/models"), 3, "a GET is retried");
    let r = app.chat(&chat_body("retried")).await;
    assert_eq!(r.status(), 500);
    assert_eq!(app.stub.calls("/v1/chat/completions"), 3);
    let m = metrics(&app).await;
    assert!(
        m.contains(r#"edge_gateway_relay_retries_total{region="default"} 4"#),
        "each retry is visible: {m}"
    );
}

// ---- key pools ----------------------------------------------------------------------

#[tokio::test]
async fn a_403_for_one_request_never_empties_the_key_pool() {
    let app = spawn_app_with(|c| {
        no_probes(c);
        managed(
            c,
            "k-one,k-two,k-three",
            &[("acme", "gw-acme"), ("globex", "gw-globex")],
        );
    })
    .await;
    app.stub.set(Behavior {
        status: Some(403),
        fail_when_body_contains: Some("gpt-restricted".into()),
        ..Default::default()
    });
    let mut body = chat_body("hello");
    body["model"] = json!("gpt-restricted");
    let r = chat_as(&app, "gw-acme", &body).await;
    assert_eq!(r.status(), 403, "the 403 describes the request: passed on");
    assert_eq!(app.stub.calls("/v1/chat/completions"), 1, "not retried");
    for i in 0..6 {
        let r = chat_as(&app, "gw-globex", &chat_body(&format!("q{i}"))).await;
        assert_eq!(r.status(), 200);
    }
    let m = metrics(&app).await;
    assert!(!m.contains("edge_gateway_relay_keys_revoked_total{"), "{m}");
    assert!(m.contains(r#"edge_gateway_relay_keys_usable{region="default"} 3"#));
}

#[tokio::test]
async fn a_revoked_key_comes_back_once_the_relay_accepts_it() {
    let app = spawn_app_with(|c| {
        c.relay.health.probe_interval_ms = 30;
        managed(c, "k-one,k-two", &[("acme", "gw-acme")]);
    })
    .await;
    app.stub.set(Behavior {
        reject_keys: vec!["k-one".into()],
        ..Default::default()
    });
    for i in 0..2 {
        let r = chat_as(&app, "gw-acme", &chat_body(&format!("q{i}"))).await;
        assert_eq!(r.status(), 200, "the retry used the other key");
    }
    eventually("k-one to be revoked", || async {
        metrics(&app)
            .await
            .contains(r#"edge_gateway_relay_keys_usable{region="default"} 1"#)
            .then_some(())
    })
    .await;
    app.stub.set(Behavior::default());
    eventually("k-one to be accepted again", || async {
        metrics(&app)
            .await
            .contains(r#"edge_gateway_relay_keys_usable{region="default"} 2"#)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_429_rests_its_key_and_the_retry_uses_another_at_once() {
    let app = spawn_app_with(|c| {
        no_probes(c);
        managed(c, "k-one,k-two", &[("acme", "gw-acme")]);
    })
    .await;
    app.stub.set(Behavior {
        status: Some(429),
        retry_after: Some(30),
        fail_times: Some(1),
        ..Default::default()
    });
    let started = Instant::now();
    let r = chat_as(&app, "gw-acme", &chat_body("busy")).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5), "no 30 s wait");
    let seen = app.stub.authorizations();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0], seen[1],
        "the throttled key was not reused: {seen:?}"
    );
    // The throttled key rests: the next requests use the other one.
    for i in 0..3 {
        chat_as(&app, "gw-acme", &chat_body(&format!("q{i}"))).await;
    }
    let seen = app.stub.authorizations();
    assert!(seen[2..].iter().all(|k| *k == seen[1]), "{seen:?}");
}

#[tokio::test]
async fn the_relay_refusing_the_operator_key_never_shows_the_relay_answer_to_tenants() {
    let app = spawn_app_with(|c| {
        no_probes(c);
        managed(c, "k-only", &[("acme", "gw-acme")]);
    })
    .await;
    app.stub.set(Behavior {
        reject_keys: vec!["k-only".into()],
        ..Default::default()
    });
    let r = chat_as(&app, "gw-acme", &chat_body("hi")).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(!text.contains("Incorrect API key"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "relay_auth_failed");
}

// ---- tenants ------------------------------------------------------------------------

#[tokio::test]
async fn pass_through_requests_need_exactly_one_credential() {
    let app = spawn_app().await;
    assert_eq!(app.chat(&chat_body("faq")).await.status(), 200);
    let calls = app.stub.total_calls();
    let r = bare_client()
        .post(app.url("/v1/chat/completions"))
        .body(serde_json::to_vec(&chat_body("faq")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no credential: refused before any lookup");
    assert_eq!(error_code(r).await, "invalid_api_key");
    let r = bare_client()
        .get(app.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.stub.total_calls(), calls);

    // Azure-style keys are credentials of their own: two keys never share entries.
    let azure = |key: &'static str| {
        bare_client()
            .post(app.url("/v1/chat/completions"))
            .header("api-key", key)
            .body(serde_json::to_vec(&chat_body("azure faq")).unwrap())
            .send()
    };
    assert_eq!(header(&azure("az-one").await.unwrap(), "x-cache"), "miss");
    assert_eq!(header(&azure("az-one").await.unwrap(), "x-cache"), "hit");
    assert_eq!(header(&azure("az-two").await.unwrap(), "x-cache"), "miss");
    assert_eq!(
        app.stub.last_headers().unwrap()["api-key"],
        "az-two",
        "pass-through forwards the client's own credential"
    );

    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("api-key", "az-one")
        .body(serde_json::to_vec(&chat_body("azure faq")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "two credentials are ambiguous");
    assert_eq!(error_code(r).await, "ambiguous_credentials");
}

#[tokio::test]
async fn anonymous_callers_are_served_only_when_the_operator_allows_them() {
    let app = spawn_app_with(|c| c.auth.allow_anonymous = true).await;
    let ask = || {
        bare_client()
            .post(app.url("/v1/chat/completions"))
            .body(serde_json::to_vec(&chat_body("open faq")).unwrap())
            .send()
    };
    assert_eq!(header(&ask().await.unwrap(), "x-cache"), "miss");
    assert_eq!(header(&ask().await.unwrap(), "x-cache"), "hit");
    // A keyed caller never sees the anonymous entries.
    assert_eq!(
        header(&app.chat(&chat_body("open faq")).await, "x-cache"),
        "miss"
    );
}

#[tokio::test]
async fn managed_mode_forwards_only_the_listed_routes() {
    let app = spawn_app_with(|c| managed(c, "k-relay", &[("acme", "gw-acme")])).await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/files"),
        (reqwest::Method::GET, "/v1/files/file-abc/content"),
        (reqwest::Method::DELETE, "/v1/files/file-abc"),
        (reqwest::Method::POST, "/v1/batches"),
        (reqwest::Method::GET, "/v1/models-secret"),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth("gw-acme")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        assert_eq!(error_code(r).await, "not_found");
    }
    assert_eq!(app.stub.total_calls(), 0, "nothing reached the relay");
    let r = app
        .client
        .get(app.url("/v1/models/gpt-4o-mini"))
        .bearer_auth("gw-acme")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the default list forwards /v1/models and below"
    );

    let open = spawn_app_with(|c| {
        managed(c, "k-relay", &[("acme", "gw-acme")]);
        c.relay.forward_routes.push("/v1/files".into());
    })
    .await;
    let r = open
        .client
        .get(open.url("/v1/files"))
        .bearer_auth("gw-acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "an operator may open a route");
}

#[tokio::test]
async fn managed_mode_keeps_accounts_and_cookies_apart() {
    let app = spawn_app_with(|c| managed(c, "k-relay", &[("acme", "gw-acme")])).await;
    app.stub.set(Behavior {
        response_headers: vec![
            ("set-cookie".into(), "__cf_bm=operator-session".into()),
            ("openai-organization".into(), "org-operator".into()),
            ("openai-project".into(), "proj-operator".into()),
        ],
        ..Default::default()
    });
    for path in ["/v1/chat/completions", "/v1/models"] {
        let request = if path == "/v1/models" {
            app.client.get(app.url(path))
        } else {
            app.client
                .post(app.url(path))
                .body(serde_json::to_vec(&chat_body("account")).unwrap())
        };
        let r = request
            .bearer_auth("gw-acme")
            .header("openai-organization", "org-tenant")
            .header("openai-project", "proj-tenant")
            .header("cookie", "session=tenant")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        for name in ["set-cookie", "openai-organization", "openai-project"] {
            assert!(
                r.headers().get(name).is_none(),
                "{path}: {name} reached the tenant"
            );
        }
        let seen = app.stub.last_headers().unwrap();
        for name in ["openai-organization", "openai-project", "cookie"] {
            assert!(seen.get(name).is_none(), "{path}: {name} reached the relay");
        }
        assert_eq!(seen["authorization"], "Bearer k-relay");
    }
}

// ---- the relay's path ---------------------------------------------------------------

#[tokio::test]
async fn dot_segments_never_leave_the_relay_base_path() {
    let app = spawn_app().await;
    for path in [
        "/v1/../../internal/admin/rotate-keys",
        "/v1/%2e%2e/%2e%2e/internal/admin/rotate-keys",
        "/v1/files/%2E%2E/%2e%2e/%2e%2e/internal",
        "/v1/models/..%2f..%2finternal",
    ] {
        let answer = raw_http(
            &app,
            &format!(
                "POST {path} HTTP/1.1\r\nAuthorization: Bearer sk-client-test\r\nContent-Length: 0"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid_path"), "{path}: {answer}");
    }
    assert_eq!(app.stub.total_calls(), 0);

    let managed_app = spawn_app_with(|c| managed(c, "k-relay", &[("acme", "gw-acme")])).await;
    let answer = raw_http(
        &managed_app,
        "GET /v1/models/../../internal/admin HTTP/1.1\r\nAuthorization: Bearer gw-acme",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(managed_app.stub.total_calls(), 0);
}

#[tokio::test]
async fn a_body_with_duplicate_keys_is_refused() {
    let app = spawn_app().await;
    let r = app
        .post_raw(
            "/v1/chat/completions",
            br#"{"model":"gpt-4o-mini","model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body = json_of(r).await;
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key")
    );
    assert_eq!(app.stub.total_calls(), 0);
}

// ---- connections --------------------------------------------------------------------

/// Reads until the peer closes; `true` when it did within the deadline.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_after_the_header_timeout() {
    let app = spawn_app_with(|c| c.server.header_timeout_ms = 300).await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap(); // ...and never the blank line
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(
        closed_by_peer(&mut silent).await,
        "a silent connection stays open"
    );
    assert!(
        closed_by_peer(&mut slow).await,
        "slow headers hold the connection"
    );
    assert!(
        closed_by_peer(&mut idle).await,
        "an idle keep-alive stays open"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn at_the_connection_cap_the_idlest_connection_makes_room() {
    let app = spawn_app_with(|c| c.server.max_connections = 4).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        idle.push(s);
    }
    // A fifth client is served: the connection idle longest is closed for it.
    let r = bare_client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        closed_by_peer(&mut idle[0]).await,
        "the idlest connection was kept"
    );
    let m = metrics(&app).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("edge_gateway_connections_shed_total") && !l.ends_with(" 0")),
        "{m}"
    );
}

// ---- small ones ---------------------------------------------------------------------

#[tokio::test]
async fn too_many_headers_get_an_openai_shaped_431() {
    let app = spawn_app().await;
    let mut request = app.client.get(app.url("/v1/models"));
    for i in 0..150 {
        request = request.header(format!("x-filler-{i}"), "1");
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(error_code(r).await, "headers_too_large");
}

#[tokio::test]
async fn admin_auth_accepts_any_case_of_bearer_and_cache_headers_come_once() {
    let token = "admin-token-0123456789";
    let app = spawn_app_with(|c| {
        c.admin_token = Some(edge_gateway::config::Secret::new(token));
    })
    .await;
    let r = app
        .client
        .post(app.url("/admin/cache/purge"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for name in ["x-cache-ttl", "x-cache-namespace"] {
        let value = if name == "x-cache-ttl" { "60" } else { "faq" };
        let r = app
            .client
            .post(app.url("/v1/chat/completions"))
            .header(name, value)
            .header(name, value)
            .body(serde_json::to_vec(&chat_body("twice")).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name} twice");
        assert_eq!(error_code(r).await, "invalid_header");
    }
    assert_eq!(app.stub.total_calls(), 0);
}

#[test]
fn the_start_log_names_the_relay_and_the_mode_and_warns_without_v1() {
    let mut gateway =
        spawn_gateway(&[("RELAY_URL", "http://user:pw@127.0.0.1:9/openai".to_owned())]);
    gateway.signal("TERM");
    gateway.wait_exit();
    let lines = [gateway.startup.clone(), gateway.output_until_closed()]
        .concat()
        .join("\n");
    assert!(lines.contains("pass-through"), "{lines}");
    assert!(lines.contains("does not end with /v1"), "{lines}");
    assert!(lines.contains("http://127.0.0.1:9/openai"), "{lines}");
    assert!(
        !lines.contains("user:pw"),
        "credentials in a URL are not logged"
    );
}
