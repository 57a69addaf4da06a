//! Tenants never cross: credentials, managed-mode routes and headers.

use super::*;

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
    let r = app.get_as("/v1/models/gpt-4o-mini", "gw-acme").await;
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
    let r = open.get_as("/v1/files", "gw-acme").await;
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
