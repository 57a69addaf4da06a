//! The semantic cache measured (issue 15): `bench/semantic/run` (which fetches the model
//! and starts its server) or, with those in place,
//! `MINILM_URL=http://127.0.0.1:PORT M2V_DIR=/path cargo bench --bench semantic`.
//!
//! 1. **Quality through the real gateway**, per embedder (MiniLM behind the relay's
//!    `/v1/embeddings`; the same model distilled to a static model2vec table, local):
//!    for every labelled pair of `bench/semantic/pairs.txt`, the stored question is asked
//!    in a partition of its own, then the other one. The gateway runs at the lowest
//!    threshold, so what it serves at any threshold `t` is what it served here with a
//!    similarity ≥ `t`. Printed per threshold: the share of same-meaning pairs served
//!    (hit rate) and of trap pairs served (wrong answers), with the verifier and, for
//!    comparison, without it (an embedding-only cache).
//! 2. **Index**: 100k entries in one partition, exact scan vs the HNSW graph: recall@1
//!    and lookup latency, side by side.
//! 3. **Lookup cost with the local embedder**: embed + search at 100k + verify, p50/p99.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_gateway::App;
use edge_gateway::config::{Config, SemanticMode};
use edge_gateway::testing::keying::CacheKey;
use edge_gateway::testing::semantic::index::{Entry, GRAPH_FROM, Index, dot};
use edge_gateway::testing::semantic::{embed::normalized, verify};
use serde_json::{Value, json};

#[path = "semantic/index.rs"]
mod index;
#[path = "semantic/shadow.rs"]
mod shadow;

struct Pair {
    same: bool,
    class: String,
    lang: String,
    context: Option<(String, String)>,
    stored: String,
    asked: String,
}

fn pairs() -> Vec<Pair> {
    let text = include_str!("semantic/pairs.txt");
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (multi, line) = match line.strip_prefix("multi:") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let f: Vec<String> = line.split('|').map(|s| s.trim().to_owned()).collect();
        let pair = if multi {
            Pair {
                same: f[0] == "same",
                class: f[1].clone(),
                lang: f[2].clone(),
                context: Some((f[3].clone(), f[4].clone())),
                stored: f[5].clone(),
                asked: f[6].clone(),
            }
        } else {
            Pair {
                same: f[0] == "same",
                class: f[1].clone(),
                lang: f[2].clone(),
                context: None,
                stored: f[3].clone(),
                asked: f[4].clone(),
            }
        };
        out.push(pair);
    }
    out
}

fn body(context: Option<&str>, question: &str) -> Value {
    let mut messages =
        vec![json!({"role": "system", "content": "You are a helpful support agent."})];
    if let Some(turn) = context {
        messages.push(json!({"role": "user", "content": turn}));
        messages.push(json!({"role": "assistant", "content": "I can help with that."}));
    }
    messages.push(json!({"role": "user", "content": question}));
    json!({"model": "gpt-4o-mini", "messages": messages})
}

/// Asks the pair's stored question (a miss, stored) then the other one, in a partition of
/// its own (`x-cache-namespace: pair-{i}`); returns the second answer.
async fn ask_pair(
    client: &reqwest::Client,
    base: &str,
    i: usize,
    pair: &Pair,
    temperature: Option<f64>,
) -> reqwest::Response {
    let send = |mut b: Value| {
        if let Some(t) = temperature {
            b["temperature"] = json!(t);
        }
        client
            .post(format!("{base}/v1/chat/completions"))
            .header("authorization", "Bearer sk-bench")
            .header("content-type", "application/json")
            .header("x-cache-namespace", format!("pair-{i}"))
            .body(serde_json::to_vec(&b).expect("json"))
            .send()
    };
    let (stored_ctx, asked_ctx) = match &pair.context {
        Some((a, b)) => (Some(a.as_str()), Some(b.as_str())),
        None => (None, None),
    };
    let first = send(body(stored_ctx, &pair.stored)).await.expect("seed");
    first.bytes().await.expect("seed body");
    send(body(asked_ctx, &pair.asked)).await.expect("ask")
}

/// What the gateway did with the asked question of one pair.
struct Outcome {
    served: bool,
    /// The served candidate's similarity (from `x-cache-similarity`).
    served_similarity: f32,
    /// The two questions' similarity, whatever the gateway did.
    similarity: f32,
}

async fn run_pairs(
    relay_url: &str,
    embedder: &str,
    pairs: &[Pair],
    similarities: &[f32],
) -> Vec<Outcome> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.server.bind = [127, 0, 0, 1].into();
    config.server.port = 0;
    config.relay.url = relay_url.to_owned();
    config.sqlite.path = dir.path().join("bench.db");
    config.semantic.mode = SemanticMode::On;
    config.semantic.threshold = 1e-6;
    config.semantic.embedder = embedder.to_owned();
    config.validate().expect("valid config");
    let app = App::build(config).await.expect("gateway starts");
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        let second = ask_pair(&client, &base, i, pair, None).await;
        let served = second
            .headers()
            .get("x-cache-tier")
            .is_some_and(|v| v == "semantic");
        let served_similarity = second
            .headers()
            .get("x-cache-similarity")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0.0);
        second.bytes().await.expect("ask body");
        out.push(Outcome {
            served,
            served_similarity,
            similarity: similarities[i],
        });
    }
    let _ = tx.send(());
    let _ = server.await;
    out
}

/// Each pair's cosine similarity by the embedding server (0 for a different
/// conversation: it never shares a partition, so no threshold could serve it).
async fn relay_similarities(url: &str, pairs: &[Pair]) -> Vec<f32> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for p in pairs {
        if p.class == "context" {
            out.push(0.0);
            continue;
        }
        let request = json!({"model": "all-MiniLM-L6-v2", "input": [p.stored, p.asked]});
        let bytes = client
            .post(format!("{url}/v1/embeddings"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&request).expect("json"))
            .send()
            .await
            .expect("embedding server answers")
            .bytes()
            .await
            .expect("body");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        let vector = |i: usize| -> Vec<f32> {
            v["data"][i]["embedding"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        };
        out.push(dot(&vector(0), &vector(1)));
    }
    out
}

fn print_curve(title: &str, pairs: &[Pair], outcomes: &[Outcome]) {
    let same: Vec<usize> = (0..pairs.len()).filter(|&i| pairs[i].same).collect();
    let traps: Vec<usize> = (0..pairs.len()).filter(|&i| !pairs[i].same).collect();
    println!("\n### {title}\n");
    println!(
        "{} same-meaning pairs ({} typo), {} traps ({} multi-turn pairs in all)\n",
        same.len(),
        same.iter().filter(|&&i| pairs[i].class == "typo").count(),
        traps.len(),
        pairs.iter().filter(|p| p.context.is_some()).count()
    );
    println!(
        "| threshold | hits (same meaning) | wrong answers (traps) | without verifier: hits | without verifier: wrong |"
    );
    println!("|---|---|---|---|---|");
    let pct = |n: usize, d: usize| 100.0 * n as f64 / d.max(1) as f64;
    for t in [0.70f32, 0.75, 0.80, 0.82, 0.85, 0.87, 0.90, 0.92, 0.95] {
        let served = |i: &usize| outcomes[*i].served && outcomes[*i].served_similarity >= t;
        let raw = |i: &usize| pairs[*i].class != "context" && outcomes[*i].similarity >= t;
        let (h, w) = (
            same.iter().filter(|i| served(i)).count(),
            traps.iter().filter(|i| served(i)).count(),
        );
        let (rh, rw) = (
            same.iter().filter(|i| raw(i)).count(),
            traps.iter().filter(|i| raw(i)).count(),
        );
        println!(
            "| {t:.2} | {:.1}% ({h}) | {:.1}% ({w}) | {:.1}% | {:.1}% |",
            pct(h, same.len()),
            pct(w, traps.len()),
            pct(rh, same.len()),
            pct(rw, traps.len()),
        );
    }
    let default = edge_gateway::config::SemanticConfig::default().threshold;
    println!("\nTraps served at the default threshold {default:.2}:\n");
    for (p, o) in pairs.iter().zip(outcomes) {
        if !p.same && o.served && o.served_similarity >= default {
            println!(
                "- {} ({}, {:.3}): \"{}\" → \"{}\"",
                p.class, p.lang, o.served_similarity, p.stored, p.asked
            );
        }
    }
    // By class at the default threshold.
    let mut by: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for (p, o) in pairs.iter().zip(outcomes) {
        let e = by.entry((p.lang.clone(), p.class.clone())).or_default();
        e.0 += 1;
        e.1 += usize::from(o.served && o.served_similarity >= default);
    }
    println!("\nAt the default threshold {default:.2}, served per language and class:\n");
    println!("| lang | class | pairs | served |");
    println!("|---|---|---|---|");
    for ((lang, class), (n, s)) in by {
        println!("| {lang} | {class} | {n} | {s} |");
    }
}

fn main() {
    let minilm_url = std::env::var("MINILM_URL").expect("MINILM_URL: run bench/semantic/run");
    let m2v = PathBuf::from(std::env::var("M2V_DIR").expect("M2V_DIR: run bench/semantic/run"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pairs = pairs();
    let only_index = std::env::args().any(|a| a == "--index");
    let skip_index = std::env::args().any(|a| a == "--quality");
    if std::env::args().any(|a| a == "--shadow") {
        rt.block_on(shadow::shadow_run(&minilm_url, &pairs));
        return;
    }
    if !only_index {
        // Similarities straight from the embedder, for the curve without the verifier.
        let similarities = rt.block_on(relay_similarities(&minilm_url, &pairs));
        let relay = rt.block_on(run_pairs(&minilm_url, "relay", &pairs, &similarities));
        print_curve(
            "MiniLM-L6-v2 at the relay (`semantic.embedder = \"relay\"`)",
            &pairs,
            &relay,
        );
        let model = model2vec_rs::model::StaticModel::from_pretrained(&m2v, None, Some(true), None)
            .expect("distilled model loads");
        let similarities: Vec<f32> = pairs
            .iter()
            .map(|p| {
                let a = normalized(model.encode_single(&p.stored)).expect("vector");
                let b = normalized(model.encode_single(&p.asked)).expect("vector");
                if p.class == "context" {
                    0.0
                } else {
                    dot(&a, &b)
                }
            })
            .collect();
        let dir = m2v.to_str().expect("utf-8 path");
        let local = rt.block_on(run_pairs(&minilm_url, dir, &pairs, &similarities));
        print_curve(
            "MiniLM distilled to a static model2vec table (`semantic.embedder = \"<dir>\"`, local)",
            &pairs,
            &local,
        );
    }
    if !skip_index {
        index::index_and_lookup(&m2v);
    }
}
