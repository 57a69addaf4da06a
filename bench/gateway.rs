//! Side-by-side latency and throughput of the gateway against its own baselines, all in
//! one run: `cargo bench --bench gateway` (add `-- --quick` for a short run).
//!
//! The release `edge-gateway` binary runs as its own process pinned to core 1 (when
//! `taskset` exists); the relay stub and the load generator run in this process on
//! core 0. Scenarios are interleaved in rounds so drift on a shared machine hits all of
//! them alike; medians and p99 are over every sample of every round.
//!
//! Scenarios (closed loop, one connection, sequential):
//! - `stub direct`        POST /v1/chat/completions straight to the stub
//! - `gateway miss`       the same through the gateway, a new prompt each time
//! - `stub models`        GET /v1/models straight to the stub
//! - `gateway passthrough` GET /v1/models through the gateway (never cached)
//! - `gateway L1 hit`     one prompt, answered from L1
//!
//! Throughput (64 connections, fixed duration): L1 hit vs pass-through vs stub direct.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use relay_stub::RelayStub;
use testkit::redis::RedisServer;
use testkit::{GatewayProcess, has_taskset};

/// The release gateway as its own process (pinned to core 1 when `pin`), and its base URL.
fn start_gateway(relay_url: &str, pin: bool, extra: &[(&str, String)]) -> (GatewayProcess, String) {
    let mut env = vec![
        ("RELAY_URL", relay_url.to_owned()),
        ("RUST_LOG", "warn,edge_gateway=info".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    let gateway = GatewayProcess::spawn(env!("CARGO_BIN_EXE_edge-gateway"), &env, pin.then_some(1));
    let base = format!("http://{}", gateway.addr);
    (gateway, base)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn one(client: &reqwest::Client, method: &str, url: &str, body: Option<String>) -> Duration {
    let start = Instant::now();
    let request = match body {
        Some(body) => client
            .request(method.parse().expect("method"), url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-bench")
            .body(body),
        None => client
            .request(method.parse().expect("method"), url)
            .header("authorization", "Bearer sk-bench"),
    };
    let response = request.send().await.expect("request");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.bytes().await.expect("body");
    start.elapsed()
}

fn chat(prompt: &str) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are the FAQ bot of a small shop."}},{{"role":"user","content":"{prompt}"}}]}}"#
    )
}

async fn throughput(
    client: &reqwest::Client,
    method: &'static str,
    url: String,
    body: Option<String>,
    connections: usize,
    duration: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, body, done, stop) = (
            client.clone(),
            url.clone(),
            body.clone(),
            done.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                one(&client, method, &url, body.clone()).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// Size and time of the Redis value encoding, with and without LZ4, on typical answers.
fn codec_report() {
    use edge_gateway::testing::cache::{CachedAnswer, codec};
    use edge_gateway::testing::endpoint::Endpoint;
    println!(
        "\nRedis value codec (LZ4 above {} bytes when it saves 1/8)",
        codec::COMPRESS_ABOVE
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>12}",
        "answer", "json B", "stored B", "encode ns", "decode ns"
    );
    // Varied prose (no sentence repeats), closer to real answers than repeated text.
    let words = [
        "store", "open", "Monday", "Friday", "refund", "within", "days", "receipt", "shipping",
        "free", "orders", "over", "customer", "support", "email", "reply", "hours", "weekend",
        "holiday", "exchange", "size", "colour", "warranty", "covers", "defects", "parcel",
        "tracking", "number",
    ];
    let prose = |sentences: usize| -> String {
        (0..sentences)
            .map(|i| {
                let sentence: Vec<&str> = (0..14)
                    .map(|j| words[(i * 7 + j * j * 3 + i * j) % words.len()])
                    .collect();
                format!("{} {}. ", sentence.join(" "), i)
            })
            .collect()
    };
    for (name, repeats) in [
        ("short FAQ (1 sentence)", 1),
        ("medium (8 sentences)", 8),
        ("long (40 sentences)", 40),
    ] {
        let content = prose(repeats);
        let body = serde_json::json!({
            "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 20 * repeats, "total_tokens": 42 + 20 * repeats},
        });
        let bytes = bytes::Bytes::from(serde_json::to_vec(&body).expect("json"));
        let answer = CachedAnswer::new(
            Endpoint::ChatCompletions,
            "acme".into(),
            bytes.clone(),
            &body,
            edge_gateway::clock::Clock::system().now_ms() + 60_000,
        );
        let n = 20_000;
        let start = Instant::now();
        let mut encoded = Vec::new();
        for _ in 0..n {
            encoded = std::hint::black_box(codec::encode(&answer));
        }
        let encode_ns = start.elapsed().as_nanos() as f64 / n as f64;
        let start = Instant::now();
        for _ in 0..n {
            let _ = std::hint::black_box(codec::decode(&encoded, 64 << 20));
        }
        let decode_ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{name:<28} {:>10} {:>10} {encode_ns:>12.0} {decode_ns:>12.0}",
            bytes.len(),
            encoded.len()
        );
    }
}

/// Sustained rows per second of the analytics writer: events offered as fast as the
/// queue takes them, timed until every one is committed.
fn writer_report() {
    use edge_gateway::testing::analytics::{AnalyticsWriter, CacheEvent, Outcome};
    use edge_gateway::testing::endpoint::Endpoint;
    use edge_gateway::testing::keying::CacheKey;
    let dir =
        std::env::temp_dir().join(format!("edge-gateway-bench-writer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let writer =
        AnalyticsWriter::start(&dir.join("w.db"), "bench".into(), 0, 65_536).expect("writer");
    let event = CacheEvent {
        ts_ms: 1,
        endpoint: Endpoint::ChatCompletions,
        namespace: "acme".into(),
        model: "gpt-4o-mini".into(),
        tier: Outcome::L1,
        status: 200,
        key: Some(CacheKey([7; 32])),
        prompt_tokens: 42,
        completion_tokens: 128,
        usage_estimated: false,
        latency_ms: 0.08,
        relay_region: None,
        cost_usd: 0.0,
        saved_usd: 0.000_083,
        similarity: None,
        embedding_cost_usd: 0.0,
    };
    let total: u64 = 300_000;
    let start = Instant::now();
    let mut offered = 0;
    while offered < total {
        if writer.depth() < 60_000 {
            writer.record(event.clone());
            offered += 1;
        } else {
            std::thread::yield_now();
        }
    }
    rt.block_on(writer.flush());
    let elapsed = start.elapsed();
    println!(
        "\nanalytics writer: {total} rows in {:.2} s = {:.0} rows/s sustained (dropped {})",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        writer.dropped()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    codec_report();
    writer_report();
    let quick = std::env::args().any(|a| a == "--quick");
    let pin = has_taskset();
    if pin {
        // This process (stub + load generator) on core 0, the gateway on core 1.
        let _ = Command::new("taskset")
            .args(["-cp", "0", &std::process::id().to_string()])
            .output();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let stub = RelayStub::start().await.expect("stub");
        let (_gateway, base) = start_gateway(&stub.url(), pin, &[]);
        let redis = RedisServer::start();
        // A 1-byte L1 holds nothing, so every lookup goes to the next tier.
        let (_redis_gateway, redis_base) = start_gateway(
            &stub.url(),
            pin,
            &[("L1_MAX_BYTES", "1".into()), ("REDIS_URL", redis.url())],
        );
        let no_analytics = std::env::temp_dir().join(format!("edge-gateway-bench-{}-noanalytics.toml", std::process::id()));
        std::fs::write(&no_analytics, "[analytics]\nenabled = false\n").expect("write config");
        let (_plain_gateway, plain_base) = start_gateway(
            &stub.url(),
            pin,
            &[("EDGE_GATEWAY_CONFIG", no_analytics.display().to_string()), ("EDGE_REGION", "plain".into())],
        );
        let (_sqlite_gateway, sqlite_base) = start_gateway(
            &stub.url(),
            pin,
            &[("L1_MAX_BYTES", "1".into()), ("CACHE_TTL_SECS", "86400".into()), ("EDGE_REGION", "sqlite".into())],
        );
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .expect("client");
        let stub_base = format!("http://{}", stub.addr());
        let (rounds, per_round) = if quick { (3, 200) } else { (5, 1000) };

        // Warm up connections and the L1 entry.
        for _ in 0..200 {
            one(&client, "POST", &format!("{base}/v1/chat/completions"), Some(chat("What are your opening hours?"))).await;
            one(&client, "POST", &format!("{stub_base}/v1/chat/completions"), Some(chat("warm"))).await;
            one(&client, "GET", &format!("{base}/v1/models"), None).await;
            one(&client, "GET", &format!("{stub_base}/v1/models"), None).await;
            one(&client, "POST", &format!("{redis_base}/v1/chat/completions"), Some(chat("What are your opening hours?"))).await;
            one(&client, "POST", &format!("{sqlite_base}/v1/chat/completions"), Some(chat("What are your opening hours?"))).await;
            one(&client, "POST", &format!("{plain_base}/v1/chat/completions"), Some(chat("What are your opening hours?"))).await;
        }

        // Each scenario is answered by the tier it names.
        for (url, tier) in [(&base, "l1"), (&redis_base, "redis"), (&sqlite_base, "sqlite")] {
            let r = client
                .post(format!("{url}/v1/chat/completions"))
                .header("authorization", "Bearer sk-bench")
                .body(chat("What are your opening hours?"))
                .send()
                .await
                .expect("request");
            let got = r.headers().get("x-cache-tier").and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
            assert_eq!(got, tier, "{url} should answer from {tier}");
        }

        let names = [
            "stub direct (POST chat)",
            "gateway miss (POST chat)",
            "stub direct (GET models)",
            "gateway passthrough (GET models)",
            "gateway L1 hit (POST chat)",
            "gateway Redis hit (POST chat)",
            "gateway SQLite hit (POST chat)",
            "gateway L1 hit, analytics off",
        ];
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
        let mut n = 0u64;
        for _ in 0..rounds {
            for (i, samples) in samples.iter_mut().enumerate() {
                for _ in 0..per_round {
                    n += 1;
                    let d = match i {
                        0 => one(&client, "POST", &format!("{stub_base}/v1/chat/completions"), Some(chat(&format!("Question number {n}?")))).await,
                        1 => one(&client, "POST", &format!("{base}/v1/chat/completions"), Some(chat(&format!("Question number {n}?")))).await,
                        2 => one(&client, "GET", &format!("{stub_base}/v1/models"), None).await,
                        3 => one(&client, "GET", &format!("{base}/v1/models"), None).await,
                        4 => one(&client, "POST", &format!("{base}/v1/chat/completions"), Some(chat("What are your opening hours?"))).await,
                        5 => one(&client, "POST", &format!("{redis_base}/v1/chat/completions"), Some(chat("What are your opening hours?"))).await,
                        6 => one(&client, "POST", &format!("{sqlite_base}/v1/chat/completions"), Some(chat("What are your opening hours?"))).await,
                        _ => one(&client, "POST", &format!("{plain_base}/v1/chat/completions"), Some(chat("What are your opening hours?"))).await,
                    };
                    samples.push(d);
                }
            }
        }
        for s in &mut samples {
            s.sort();
        }
        println!("\nedge-gateway bench ({} rounds x {} requests per scenario, interleaved; gateway pinned: {pin})", rounds, per_round);
        println!("{:<36} {:>10} {:>10} {:>10}", "scenario (1 connection)", "p50 us", "p99 us", "max us");
        for (name, s) in names.iter().zip(&samples) {
            println!(
                "{:<36} {:>10.1} {:>10.1} {:>10.1}",
                name,
                us(percentile(s, 0.5)),
                us(percentile(s, 0.99)),
                us(*s.last().unwrap_or(&Duration::ZERO))
            );
        }
        let added = |a: usize, b: usize, p: f64| us(percentile(&samples[a], p)) - us(percentile(&samples[b], p));
        println!(
            "added by the gateway on a miss: p50 {:+.1} us, p99 {:+.1} us",
            added(1, 0, 0.5),
            added(1, 0, 0.99)
        );
        println!(
            "added by the gateway on pass-through: p50 {:+.1} us, p99 {:+.1} us",
            added(3, 2, 0.5),
            added(3, 2, 0.99)
        );
        println!(
            "p50 Redis hit / L1 hit: {:.2}; p50 SQLite hit / L1 hit: {:.2}",
            us(percentile(&samples[5], 0.5)) / us(percentile(&samples[4], 0.5)),
            us(percentile(&samples[6], 0.5)) / us(percentile(&samples[4], 0.5)),
        );
        println!(
            "analytics on the L1-hit path: p50 {:+.1} us, p99 {:+.1} us (on minus off)",
            added(4, 7, 0.5),
            added(4, 7, 0.99)
        );
        println!(
            "p50 ratio stub direct / L1 hit: {:.2}",
            us(percentile(&samples[0], 0.5)) / us(percentile(&samples[4], 0.5))
        );

        let duration = Duration::from_secs(if quick { 2 } else { 4 });
        let connections = 64;
        let mut rows: Vec<(&str, Vec<f64>)> = vec![
            ("gateway L1 hit", Vec::new()),
            ("gateway L1 hit, analytics off", Vec::new()),
            ("gateway passthrough (models)", Vec::new()),
            ("stub direct (models)", Vec::new()),
        ];
        for _ in 0..if quick { 1 } else { 3 } {
            rows[0].1.push(throughput(&client, "POST", format!("{base}/v1/chat/completions"), Some(chat("What are your opening hours?")), connections, duration).await);
            rows[1].1.push(throughput(&client, "POST", format!("{plain_base}/v1/chat/completions"), Some(chat("What are your opening hours?")), connections, duration).await);
            rows[2].1.push(throughput(&client, "GET", format!("{base}/v1/models"), None, connections, duration).await);
            rows[3].1.push(throughput(&client, "GET", format!("{stub_base}/v1/models"), None, connections, duration).await);
        }
        println!("\n{:<36} {:>12}   (64 connections, load generator on core 0: it is the bottleneck)", "throughput", "median req/s");
        let mut medians = Vec::new();
        for (name, mut values) in rows {
            values.sort_by(f64::total_cmp);
            let median = values[values.len() / 2];
            medians.push(median);
            println!("{name:<36} {median:>12.0}");
        }
        println!("L1 hit / passthrough throughput: {:.2}", medians[0] / medians[2]);
        println!("L1 hit throughput, analytics on / off: {:.2}", medians[0] / medians[1]);
    });
}
