//! Small ones: 431 bodies, admin bearer case, cache headers once, the start log.

use super::*;

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
