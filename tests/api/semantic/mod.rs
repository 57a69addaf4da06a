//! The semantic tier seen from outside (issue 15), with the stub's deterministic
//! bag-of-words embeddings: questions sharing most words are close, so paraphrases reach
//! the threshold, and so do the traps: the verifier must be what refuses them.

mod local;
mod serve;
mod shadow;
mod share;

use edge_gateway::config::{Config, Secret, SemanticMode};
use serde_json::{Value, json};

use crate::helpers::*;

/// With the stub's embeddings, a question sharing 5 of its 6 words is at ≈ 0.83.
pub(super) const THRESHOLD: f32 = 0.7;
pub(super) const ADMIN: &str = "admin-token-0123456789";

pub(super) fn semantic_on(config: &mut Config) {
    config.semantic.mode = SemanticMode::On;
    config.semantic.threshold = THRESHOLD;
    config.semantic.share_poll_ms = 20;
    config.admin_token = Some(Secret::new(ADMIN));
}

pub(super) fn with_redis(url: String) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        semantic_on(c);
        c.redis.url = Some(Secret::new(url));
        c.redis.probe_interval_ms = 50;
    }
}

pub(super) fn ask(question: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are the help desk of a small shop."},
        {"role": "user", "content": question},
    ]})
}

pub(super) fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The answer's text.
pub(super) async fn content(response: reqwest::Response) -> String {
    json_of(response).await["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// One sample of a counter (`name{labels}`) from `/metrics`, 0 when absent.
pub(super) async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

pub(super) fn chat_calls(app: &TestApp) -> u64 {
    app.stub.calls("/v1/chat/completions")
}

/// Asks `question` and waits until its answer is remembered by meaning (the store runs
/// in the relay task, after the response).
pub(super) async fn seed(app: &TestApp, question: &str) -> String {
    let before = app.state.semantic_entries().expect("semantic on");
    let response = app.chat(&ask(question)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-cache"), "miss");
    let text = content(response).await;
    eventually("the answer remembered by meaning", || async {
        (app.state.semantic_entries().expect("semantic on") > before).then_some(())
    })
    .await;
    text
}
