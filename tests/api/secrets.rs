//! Secrets never leave: after a run that exercises every path, no relay key, client key
//! or admin token appears in the logs, any response (bodies and headers), `check-config`
//! output, the metrics or any row of the database.

use relay_stub::{Behavior, RelayStub};
use rusqlite::Connection;
use serde_json::json;

use crate::helpers::*;

const RELAY_KEYS: [&str; 2] = ["sk-relay-SECRET-aaaa1111", "sk-relay-SECRET-bbbb2222"];
const CLIENT_KEY: &str = "gw-client-SECRET-cccc3333";
const ADMIN: &str = "admin-SECRET-dddd4444-token";

fn secrets() -> Vec<&'static str> {
    let mut all = RELAY_KEYS.to_vec();
    all.extend([CLIENT_KEY, ADMIN]);
    all
}

fn record(seen: &mut String, response_text: &str, headers: &reqwest::header::HeaderMap) {
    seen.push_str(response_text);
    seen.push_str(&format!("{headers:?}"));
}

#[tokio::test]
async fn no_secret_appears_anywhere_after_every_path_ran() {
    let stub = RelayStub::start().await.unwrap();
    // The second relay key is revoked by the relay: its rejection is logged and counted.
    stub.set(Behavior {
        reject_keys: vec![RELAY_KEYS[1].into()],
        ..Default::default()
    });
    let env = vec![
        ("RELAY_URL", stub.url()),
        ("RELAY_API_KEY", RELAY_KEYS.join(",")),
        ("GATEWAY_API_KEYS", format!("acme:{CLIENT_KEY}")),
        ("ADMIN_TOKEN", ADMIN.to_owned()),
        ("RUST_LOG", "debug".to_owned()),
        ("MAX_BODY_BYTES", "4096".to_owned()),
    ];
    let gateway = spawn_gateway(&env);
    let db = gateway.dir.path().join("gw.db");
    let client = reqwest::Client::new();
    let mut seen = String::new();
    let chat = |body: serde_json::Value, auth: Option<&str>| {
        let mut r = client
            .post(gateway.url("/v1/chat/completions"))
            .body(serde_json::to_vec(&body).unwrap());
        if let Some(auth) = auth {
            r = r.bearer_auth(auth);
        }
        r.send()
    };
    let mut stream = chat_body("streamed path");
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let requests = vec![
        (chat_body("plain path"), Some(CLIENT_KEY)),
        (chat_body("plain path"), Some(CLIENT_KEY)), // hit
        (stream.clone(), Some(CLIENT_KEY)),
        (stream, Some(CLIENT_KEY)), // streamed hit
        (chat_body("no key"), None),
        (chat_body("wrong key"), Some("gw-wrong")),
        (chat_body("relay key as client key"), Some(RELAY_KEYS[0])),
        (json!({"model": 1}), Some(CLIENT_KEY)),
        (chat_body(&"x".repeat(5000)), Some(CLIENT_KEY)),
        (chat_body("another miss for the key pool"), Some(CLIENT_KEY)),
        (chat_body("and another"), Some(CLIENT_KEY)),
    ];
    for (body, auth) in requests {
        let r = chat(body, auth).await.unwrap();
        let headers = r.headers().clone();
        record(&mut seen, &r.text().await.unwrap(), &headers);
    }
    for (path, token) in [
        (
            "/admin/analytics?since=1h&group_by=tier,namespace",
            Some(ADMIN),
        ),
        ("/admin/analytics", None),
        ("/admin/analytics", Some("not-the-token-at-all")),
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/v1/models", Some(CLIENT_KEY)),
    ] {
        let mut r = client.get(gateway.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let headers = r.headers().clone();
        record(&mut seen, &r.text().await.unwrap(), &headers);
    }
    let r = client
        .post(gateway.url("/admin/cache/purge?namespace=acme"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    record(
        &mut seen,
        &r.text().await.unwrap(),
        &reqwest::header::HeaderMap::new(),
    );
    // The pool really was exercised: the rejected key was tried and taken out.
    assert!(
        stub.authorizations()
            .iter()
            .any(|a| a.ends_with(RELAY_KEYS[1]))
    );
    assert!(seen.contains("edge_gateway_relay_keys_revoked_total{region=\"default\"} 1"));

    gateway.signal("TERM");
    let gateway = exits_cleanly(gateway).await;
    let logs = gateway.output_until_closed().join("\n");
    assert!(
        logs.contains("relay rejected a key"),
        "the revocation was logged"
    );

    let owned: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
    let refs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, check_out, check_err) = run_binary(&["check-config"], &refs);
    assert_eq!(code, 0, "{check_err}");
    assert!(check_out.contains("*****"));

    let conn = Connection::open(&db).unwrap();
    let mut dump = String::new();
    for table in ["cache_events", "cache_entries", "schema_migrations"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |row| {
                let mut line = Vec::new();
                for i in 0..columns {
                    let v: rusqlite::types::Value = row.get(i)?;
                    line.push(format!("{v:?}"));
                }
                Ok(line.join("|"))
            })
            .unwrap();
        for row in rows {
            dump.push_str(&row.unwrap());
            dump.push('\n');
        }
    }
    assert!(dump.contains("acme"), "the dump holds the run's rows");

    for secret in secrets() {
        for (place, text) in [
            ("logs", &logs),
            ("responses", &seen),
            ("check-config", &format!("{check_out}{check_err}")),
            ("database", &dump),
        ] {
            assert!(!text.contains(secret), "{secret} leaked into the {place}");
        }
    }
}
