//! One semantic cache across instances (through Redis), across restarts (SQLite), and
//! purges that reach every instance.

use super::*;

async fn entries_of(app: &TestApp, at_least: i64) {
    eventually("the instance holds the shared entries", || async {
        (app.state.semantic_entries().expect("semantic on") >= at_least).then_some(())
    })
    .await;
}

async fn second_instance_finds_the_first_ones_entry(redis_config: impl Fn(&mut Config) + Copy) {
    let a = spawn_app_with(move |c| {
        semantic_on(c);
        redis_config(c);
    })
    .await;
    let b = spawn_app_with(move |c| {
        semantic_on(c);
        redis_config(c);
    })
    .await;
    let original = seed(&a, "What is your refund policy for shoes?").await;
    entries_of(&b, 1).await;
    let response = b.chat(&ask("What's your refund policy for shoes?")).await;
    assert_eq!(header(&response, "x-cache-tier"), "semantic");
    assert_eq!(content(response).await, original);
    assert_eq!(chat_calls(&b), 0, "b never called the relay");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_paraphrase_asked_in_one_region_finds_the_answer_given_in_another() {
    let redis = RedisServer::start();
    let url = redis.url();
    let url: &'static str = Box::leak(url.into_boxed_str());
    second_instance_finds_the_first_ones_entry(move |c| {
        c.redis.url = Some(Secret::new(url));
        c.redis.probe_interval_ms = 50;
    })
    .await;
}

#[tokio::test]
async fn the_same_holds_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let urls: &'static [String] = Box::leak(cluster.urls().into_boxed_slice());
    second_instance_finds_the_first_ones_entry(move |c| {
        c.redis.cluster_urls = urls.iter().map(Secret::new).collect();
        c.redis.probe_interval_ms = 50;
    })
    .await;
}

#[tokio::test]
async fn semantic_entries_survive_a_restart_in_sqlite() {
    let disk = tempfile::tempdir().unwrap();
    let db = disk.path().join("kept.db");
    let on_disk = |db: std::path::PathBuf| {
        move |c: &mut Config| {
            semantic_on(c);
            c.sqlite.path = db;
        }
    };
    let first = spawn_app_with(on_disk(db.clone())).await;
    let original = seed(&first, "Do you offer gift wrapping for orders?").await;
    first.stop().await;

    let second = spawn_app_with(on_disk(db.clone())).await;
    assert_eq!(second.state.semantic_entries(), Some(1));
    let response = second
        .chat(&ask("Do you offer gift wrapping on orders?"))
        .await;
    assert_eq!(header(&response, "x-cache-tier"), "semantic");
    assert_eq!(content(response).await, original);
    assert_eq!(chat_calls(&second), 0);
    second.stop().await;
}

#[tokio::test]
async fn a_purge_on_one_instance_stops_semantic_hits_on_every_instance() {
    let redis = RedisServer::start();
    let a = spawn_app_with(with_redis(redis.url())).await;
    let b = spawn_app_with(with_redis(redis.url())).await;
    seed(&a, "How long does delivery take to Paris?").await;
    let purged = header(
        &a.chat(&ask("How long does delivery take to Paris?")).await,
        "x-cache-key",
    );
    entries_of(&b, 1).await;
    // b serves it once, so b's own L1 now holds the answer too.
    let paraphrase = ask("How long does a delivery take to Paris?");
    let response = b.chat(&paraphrase).await;
    assert_eq!(header(&response, "x-cache-tier"), "semantic");
    response.bytes().await.unwrap();

    let purge = a.purge("", ADMIN).await;
    assert_eq!(purge.status(), 200);
    let report = json_of(purge).await;
    assert_eq!(report["semantic_entries"], 1, "{report}");

    // b hears of the purge through the stream and forgets its entries.
    eventually("b forgot the purged entries", || async {
        (b.state.semantic_entries().expect("semantic on") == 0).then_some(())
    })
    .await;
    // b's L1 still holds the purged answer under its key (purging other instances'
    // L1 is issue 16), but b no longer serves it for a paraphrase.
    let response = b
        .chat(&ask("How long does delivery usually take to Paris?"))
        .await;
    assert_eq!(header(&response, "x-cache"), "miss");
    response.bytes().await.unwrap();
    // a asks another paraphrase: it may find b's fresh answer, never the purged one.
    let response = a
        .chat(&ask("How long does delivery take to Paris, France?"))
        .await;
    assert_ne!(header(&response, "x-cache-key"), purged);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_expired_answer_is_never_served_by_meaning() {
    let app = spawn_app_with(semantic_on).await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-test")
        .header("x-cache-ttl", "60")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&ask("Can I change my delivery address?")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-cache"), "miss");
    response.bytes().await.unwrap();
    entries_of(&app, 1).await;
    // Served by meaning while the answer lives, a miss once its TTL is over (on the
    // app's clock: the test does not wait).
    let paraphrase = ask("Can I change the delivery address?");
    let response = app.chat(&paraphrase).await;
    assert_eq!(header(&response, "x-cache"), "hit");
    assert_eq!(header(&response, "x-cache-tier"), "semantic");
    response.bytes().await.unwrap();
    app.state
        .clock()
        .advance(std::time::Duration::from_secs(61));
    let response = app.chat(&paraphrase).await;
    assert_eq!(header(&response, "x-cache"), "miss");
    response.bytes().await.unwrap();
    app.stop().await;
}
