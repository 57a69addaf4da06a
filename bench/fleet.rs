//! One cache across instances (issue 16): `cargo bench --bench fleet`.
//!
//! Two release gateway processes share one Redis, side by side with a second pair whose
//! `redis.single_flight` is off (its own Redis and relay stub), in the same run:
//! 1. **FAQ trace in bursts**: 3,000 requests over 192 distinct questions (Zipf-like
//!    popularity), in bursts of 32 concurrent requests split over the two instances, the
//!    relay taking 50 ms. Printed: relay calls against the minimum (the distinct
//!    questions asked).
//! 2. **What the lease costs a miss**: sequential distinct misses (relay answering at
//!    once), rounds interleaved between the pairs; p50/p99 of each and the difference.

use std::time::{Duration, Instant};

use relay_stub::{Behavior, RelayStub};
use testkit::GatewayProcess;
use testkit::redis::RedisServer;

const CHAT: &str = "/v1/chat/completions";

struct Pair {
    stub: RelayStub,
    _redis: RedisServer,
    _dir: tempfile::TempDir,
    a: GatewayProcess,
    b: GatewayProcess,
}

async fn pair(single_flight: bool) -> Pair {
    let stub = RelayStub::start().await.expect("stub");
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[redis]\nsingle_flight = {single_flight}\n"),
    )
    .expect("config");
    let env = |name: &str| {
        vec![
            ("RELAY_URL", stub.url()),
            ("REDIS_URL", redis.url()),
            ("EDGE_GATEWAY_CONFIG", config.display().to_string()),
            (
                "SQLITE_PATH",
                dir.path().join(format!("{name}.db")).display().to_string(),
            ),
            ("RUST_LOG", "warn,edge_gateway=info".to_owned()),
        ]
    };
    let a = GatewayProcess::spawn(env!("CARGO_BIN_EXE_edge-gateway"), &env("a"), None);
    let b = GatewayProcess::spawn(env!("CARGO_BIN_EXE_edge-gateway"), &env("b"), None);
    Pair {
        stub,
        _redis: redis,
        _dir: dir,
        a,
        b,
    }
}

fn body(question: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": question}],
    }))
    .expect("json")
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Duration {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("authorization", "Bearer sk-bench")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
    started.elapsed()
}

/// The trace: question index per request, Zipf-like (weight 1/(rank+1)).
fn trace(requests: usize, questions: usize) -> Vec<usize> {
    let weights: Vec<f64> = (0..questions).map(|i| 1.0 / (i as f64 + 1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..requests)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut x = (state >> 11) as f64 / (1u64 << 53) as f64 * total;
            weights
                .iter()
                .position(|w| {
                    x -= w;
                    x <= 0.0
                })
                .unwrap_or(questions - 1)
        })
        .collect()
}

async fn replay(pair: &Pair, client: &reqwest::Client, trace: &[usize], run: &str) -> u64 {
    let before = pair.stub.calls(CHAT);
    for burst in trace.chunks(32) {
        let tasks: Vec<_> = burst
            .iter()
            .enumerate()
            .map(|(j, q)| {
                let gateway = if j % 2 == 0 { &pair.a } else { &pair.b };
                let (client, url) = (client.clone(), gateway.url(CHAT));
                let body = body(&format!("{run}: FAQ question number {q}?"));
                tokio::spawn(async move { post(&client, &url, body).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("request");
        }
    }
    pair.stub.calls(CHAT) - before
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let on = pair(true).await;
        let off = pair(false).await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        for p in [&on, &off] {
            p.stub.set(Behavior {
                delay_ms: 50,
                ..Default::default()
            });
        }
        let trace = trace(3_000, 192);
        let distinct = {
            let mut seen = trace.clone();
            seen.sort_unstable();
            seen.dedup();
            seen.len()
        };
        let calls_on = replay(&on, &client, &trace, "on").await;
        let calls_off = replay(&off, &client, &trace, "off").await;
        println!("\n### FAQ trace: 3,000 requests, {distinct} distinct questions, bursts of 32 over two instances, relay 50 ms\n");
        println!("| single flight | relay calls | minimum (distinct questions) | extra calls |");
        println!("|---|---|---|---|");
        println!("| across instances (`redis.single_flight = true`) | {calls_on} | {distinct} | {} |", calls_on as i64 - distinct as i64);
        println!("| per instance (`false`) | {calls_off} | {distinct} | {} |", calls_off as i64 - distinct as i64);

        for p in [&on, &off] {
            p.stub.set(Behavior::default());
        }
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for round in 0..5 {
            for i in 0..200 {
                with.push(post(&client, &on.a.url(CHAT), body(&format!("miss on {round} {i}"))).await);
                without.push(post(&client, &off.a.url(CHAT), body(&format!("miss off {round} {i}"))).await);
            }
        }
        with.sort();
        without.sort();
        println!("\n### What the lease costs a miss (1,000 sequential distinct misses each, interleaved, relay answering at once)\n");
        println!("| | p50 | p99 |");
        println!("|---|---|---|");
        println!("| lease on | {:.0} µs | {:.0} µs |", percentile(&with, 0.5), percentile(&with, 0.99));
        println!("| lease off | {:.0} µs | {:.0} µs |", percentile(&without, 0.5), percentile(&without, 0.99));
        println!(
            "| added | {:+.0} µs | {:+.0} µs |",
            percentile(&with, 0.5) - percentile(&without, 0.5),
            percentile(&with, 0.99) - percentile(&without, 0.99)
        );
    });
}
