//! Purges by namespace and whole, the admin routes without a token, and the migrate / cache purge commands.

use super::*;

#[tokio::test]
async fn purge_empties_every_tier_by_namespace_or_whole() {
    let redis = RedisServer::start();
    let token = "admin-token-0123456789";
    let app = spawn_app_with({
        let url = redis.url();
        move |c| {
            with_redis(url)(c);
            c.admin_token = Some(Secret::new(token));
        }
    })
    .await;
    let send = |prompt: &'static str, ns: &'static str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .header("authorization", "Bearer sk-client-test")
            .header("x-cache-namespace", ns)
            .body(serde_json::to_vec(&chat_body(prompt)).unwrap())
            .send()
    };
    for (p, ns) in [("p1", "faq"), ("p2", "faq"), ("p3", "docs")] {
        assert_eq!(header(&send(p, ns).await.unwrap(), "x-cache"), "miss");
    }
    eventually("3 entries in Redis", || async {
        (redis.dbsize() == 3).then_some(())
    })
    .await;
    app.state.flush_sqlite().await;

    // Refused without the token.
    let r = app
        .client
        .post(app.url("/admin/cache/purge"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app.purge("", "wrong-token-0123456789").await;
    assert_eq!(r.status(), 401);

    // The caller's namespace is key-<hash>; purge its `faq` partition.
    let ns = json_key_namespace("sk-client-test");
    let r = app.purge(&format!("?namespace={ns}/faq"), token).await;
    assert_eq!(r.status(), 200);
    let report = json_of(r).await;
    assert_eq!(report["purged"]["redis"]["Ok"], 2);
    assert_eq!(report["purged"]["sqlite"]["Ok"], 2);
    assert_eq!(header(&send("p3", "docs").await.unwrap(), "x-cache"), "hit");
    assert_eq!(header(&send("p1", "faq").await.unwrap(), "x-cache"), "miss");

    let r = app.purge("", token).await;
    assert_eq!(r.status(), 200);
    // No entry left; what remains is the purge generations hash.
    assert_eq!(redis.keys("eg:v1:*"), Vec::<String>::new());
    assert_eq!(redis.keys("*"), vec!["eg:purge:v1".to_owned()]);
    let count: i64 = rusqlite::Connection::open(app.dir.path().join("gateway.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM cache_entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 0);
    assert_eq!(
        header(&send("p3", "docs").await.unwrap(), "x-cache"),
        "miss"
    );
}

fn json_key_namespace(auth: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(auth.as_bytes());
    format!("key-{}", hex::encode(&digest[..8]))
}

#[tokio::test]
async fn admin_routes_are_disabled_without_a_token() {
    let app = spawn_app().await;
    let r = app.purge("", "anything-at-all-here").await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "admin_disabled");
}

#[tokio::test]
async fn migrate_and_cache_purge_commands_work_on_the_database_and_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let db_str = db.to_str().unwrap();
    let (code, out, err) = run_binary(&["migrate"], &[("SQLITE_PATH", db_str)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("applied 0001_cache_entries.sql")
            && out.contains("applied 0002_cache_events.sql"),
        "{out}"
    );
    let (code, out, _) = run_binary(&["migrate"], &[("SQLITE_PATH", db_str)]);
    assert_eq!(code, 0);
    assert!(out.contains("up to date"));

    let app = spawn_app_with({
        let url = redis.url();
        let db = db.clone();
        move |c| {
            with_redis(url)(c);
            sqlite_at(db)(c);
        }
    })
    .await;
    tier_of(&app, "to be purged").await;
    app.state.flush_sqlite().await;
    eventually("the entry in Redis", || async {
        (redis.dbsize() == 1).then_some(())
    })
    .await;
    let url = redis.url();
    let (code, out, err) = run_binary(
        &["cache", "purge"],
        &[("SQLITE_PATH", db_str), ("REDIS_URL", &url)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sqlite: deleted 1 entries") && out.contains("redis: deleted 1 keys"),
        "{out}"
    );
    assert_eq!(redis.keys("eg:v1:*"), Vec::<String>::new());
    assert_eq!(
        cli_hget(&redis, "eg:purge:v1", "*"),
        "1",
        "running instances learn of the purge"
    );
    let (code, _, err) = run_binary(
        &["cache", "purge", "--namespace", "acme"],
        &[
            ("SQLITE_PATH", db_str),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
    );
    assert_eq!(code, 1, "an unreachable Redis is reported: {err}");
    assert!(err.contains("redis: purge failed"));
}

fn cli_hget(redis: &RedisServer, key: &str, field: &str) -> String {
    let port: u16 = redis
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap();
    cli(port, &["HGET", key, field]).trim().to_owned()
}
