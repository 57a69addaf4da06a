//! Fault injection with real processes, under concurrent load: Redis killed or paused,
//! relay regions failing or hanging, the SQLite disk full. For each: zero wrong answers,
//! bounded latency, clear errors where failure is unavoidable, and a healthy gateway
//! afterwards. (Broken relay streams, clients leaving mid-stream and SIGTERM under load
//! are in `cache.rs` and `analytics.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_gateway::config::{Config, RegionConfig, Secret};
use relay_stub::{Behavior, RelayStub};
use serde_json::Value;
use tokio::sync::Barrier;

use crate::helpers::*;

/// What one request under load saw.
struct Seen {
    status: u16,
    correct: bool,
    latency: Duration,
}

/// `SOAK_FACTOR` (default 1) multiplies every client's request count: the soak run is
/// `SOAK_FACTOR=50 cargo nextest run --release -E 'test(faults::)' --no-capture`.
fn soak_factor() -> usize {
    std::env::var("SOAK_FACTOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// `tasks` concurrent clients send `per_task` requests each (times the soak factor);
/// prompts repeat so hits and misses mix. `during` runs once every client has sent its
/// first few requests.
async fn load<F, Fut>(app: &TestApp, tasks: usize, per_task: usize, during: F) -> Vec<Seen>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let per_task = per_task * soak_factor();
    let barrier = Arc::new(Barrier::new(tasks + 1));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (client, url, barrier) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            barrier.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..per_task {
                if i == 3 {
                    barrier.wait().await;
                }
                let prompt = format!("Load {}", (t * per_task + i) % 25);
                let started = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth("sk-load")
                    .body(serde_json::to_vec(&chat_body(&prompt)).unwrap())
                    .send()
                    .await
                    .expect("the gateway answers");
                let status = r.status().as_u16();
                let body: Value =
                    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
                let latency = started.elapsed();
                let correct = status != 200
                    || body["choices"][0]["message"]["content"] == format!("Answer to: {prompt}");
                seen.push(Seen {
                    status,
                    correct,
                    latency,
                });
            }
            seen
        }));
    }
    barrier.wait().await;
    during().await;
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

fn assert_all_good(seen: &[Seen], bound: Duration) {
    let mut latencies: Vec<Duration> = seen.iter().map(|s| s.latency).collect();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "{} requests: p50 {:?}, p99 {:?}, max {:?}, non-200 {}",
        seen.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        seen.iter().filter(|s| s.status != 200).count()
    );
    assert!(seen.iter().all(|s| s.correct), "a wrong answer was served");
    let failed = seen.iter().filter(|s| s.status != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", seen.len());
    let slowest = seen.iter().map(|s| s.latency).max().unwrap_or_default();
    assert!(slowest < bound, "slowest request took {slowest:?}");
}

fn redis_config(url: String) -> impl FnOnce(&mut Config) {
    move |c| {
        c.redis.url = Some(Secret::new(url));
        c.redis.probe_interval_ms = 50;
    }
}

#[tokio::test]
async fn redis_sigkill_under_load_loses_no_request() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(redis_config(redis.url())).await;
    let seen = load(&app, 8, 30, || async {
        redis.kill();
    })
    .await;
    assert_all_good(&seen, Duration::from_secs(1));
    assert_eq!(
        json_of(app.get("/readyz").await).await["tiers"]["redis"],
        "down"
    );
    redis.restart();
    eventually("Redis back in use", || async {
        (json_of(app.get("/readyz").await).await["tiers"]["redis"] == "up").then_some(())
    })
    .await;
    assert_eq!(app.chat(&chat_body("after")).await.status(), 200);
}

#[tokio::test]
async fn redis_sigstop_under_load_costs_at_most_a_timeout() {
    let redis = RedisServer::start();
    let app = spawn_app_with(redis_config(redis.url())).await;
    let seen = load(&app, 8, 30, || async {
        redis.signal("STOP");
    })
    .await;
    // At most one Redis timeout (50 ms) per request, plus the relay.
    assert_all_good(&seen, Duration::from_secs(1));
    redis.signal("CONT");
    eventually("Redis back in use", || async {
        (json_of(app.get("/readyz").await).await["tiers"]["redis"] == "up").then_some(())
    })
    .await;
}

/// Two equal regions by URL (the stubs stay owned by the test, alive).
fn two_regions(bad: String, good: String) -> impl FnOnce(&mut Config) {
    move |c| {
        c.relay.first_byte_timeout_ms = 300;
        c.relay.health.probe_interval_ms = 0;
        c.relay.health.cooldown_ms = 60_000;
        c.relay.retry.backoff_base_ms = 1;
        c.relay.regions = [("bad", bad), ("good", good)]
            .into_iter()
            .map(|(name, url)| RegionConfig {
                name: name.into(),
                url,
                weight: 1,
                backup: false,
                api_key_env: None,
                keys: Vec::new(),
            })
            .collect();
    }
}

/// An app over two equal regions, `bad` and `good`, each its own stub.
async fn bad_and_good() -> (RelayStub, RelayStub, TestApp) {
    let (bad, good) = (
        RelayStub::start().await.unwrap(),
        RelayStub::start().await.unwrap(),
    );
    let app = spawn_app_with(two_regions(bad.url(), good.url())).await;
    (bad, good, app)
}

#[tokio::test]
async fn a_region_that_hangs_under_load_costs_one_timeout_per_request_at_most() {
    let (bad, _good, app) = bad_and_good().await;
    let seen = load(&app, 16, 20, || async {
        bad.set(Behavior {
            hang: true,
            ..Default::default()
        });
    })
    .await;
    // One 300 ms timeout, then the good region.
    assert_all_good(&seen, Duration::from_millis(1_500));
    assert_eq!(
        json_of(app.get("/readyz").await).await["relay"]["bad"],
        "down"
    );
}

#[tokio::test]
async fn a_region_failing_under_load_is_invisible_to_clients() {
    let (bad, good, app) = bad_and_good().await;
    let seen = load(&app, 16, 20, || async {
        bad.set(Behavior {
            status: Some(500),
            ..Default::default()
        });
    })
    .await;
    assert_all_good(&seen, Duration::from_secs(1));
    assert!(good.total_calls() > 0);
}

/// A tmpfs mounted for the test's lifetime: a real disk that fills up.
struct SmallDisk {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "the disk-full test mounts a tmpfs and needs root (it runs as root on this project's machines)"
        );
        Self {
            dir,
            _parent: parent,
        }
    }

    /// Fills the disk: returns the filler file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.write_all(&[0u8; 512]);
        let _ = f.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn count_rows(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM cache_events", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_full_disk_keeps_the_gateway_serving_and_reports_what_it_could_not_write() {
    let disk = SmallDisk::mount("2m");
    let db = disk.dir.join("gw.db");
    let app = spawn_app_with({
        let db = db.clone();
        move |c| c.sqlite.path = db
    })
    .await;
    assert_eq!(
        app.chat(&chat_body("before the disk filled"))
            .await
            .status(),
        200
    );
    app.state.flush_analytics().await;
    let rows_before = count_rows(&db);
    let filler = disk.fill();
    for i in 0..40 {
        let r = app.chat(&chat_body(&format!("while full {i}"))).await;
        assert_eq!(r.status(), 200, "requests do not depend on the disk");
        let body = json_of(r).await;
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("Answer to: while full {i}")
        );
    }
    app.state.flush_analytics().await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edge_gateway_analytics_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        dropped > 0,
        "rows that could not be written are counted, not silently lost"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);

    std::fs::remove_file(filler).unwrap();
    for i in 0..5 {
        assert_eq!(
            app.chat(&chat_body(&format!("after {i}"))).await.status(),
            200
        );
    }
    app.state.flush_analytics().await;
    eventually("analytics writes to recover", || async {
        app.state.flush_analytics().await;
        (count_rows(&db) >= rows_before + 5).then_some(())
    })
    .await;
}
