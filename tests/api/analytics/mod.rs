//! Analytics seen from outside: one row per request, and the reports built from them.

mod reports;
mod rows;

use edge_gateway::config::Secret;
use relay_stub::{Behavior, RelayStub};
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "admin-token-0123456789";

#[derive(Debug)]
pub(super) struct EventRow {
    region: String,
    endpoint: String,
    namespace: String,
    model: String,
    tier: String,
    status: i64,
    key_hash: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    relay_region: Option<String>,
    cost_usd: f64,
    saved_usd: f64,
}

pub(super) fn rows(db: &std::path::Path) -> Vec<EventRow> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT region, endpoint, namespace, model, tier, status, key_hash, prompt_tokens,
                    completion_tokens, relay_region, cost_usd, saved_usd
             FROM cache_events ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(EventRow {
            region: r.get(0)?,
            endpoint: r.get(1)?,
            namespace: r.get(2)?,
            model: r.get(3)?,
            tier: r.get(4)?,
            status: r.get(5)?,
            key_hash: r.get(6)?,
            prompt_tokens: r.get(7)?,
            completion_tokens: r.get(8)?,
            relay_region: r.get(9)?,
            cost_usd: r.get(10)?,
            saved_usd: r.get(11)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// gpt-4o-mini's built-in price: $0.15 / $0.60 per million tokens.
pub(super) fn mini_cost(prompt: i64, completion: i64) -> f64 {
    (prompt as f64 * 0.15 + completion as f64 * 0.60) / 1e6
}

pub(super) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

pub(super) fn known_dataset(db: &std::path::Path) {
    let (code, _, err) = run_binary(&["migrate"], &[("SQLITE_PATH", db.to_str().unwrap())]);
    assert_eq!(code, 0, "{err}");
    let conn = Connection::open(db).unwrap();
    for (i, (tier, p, c, latency, cost, saved)) in [
        ("l1", 10, 20, 1.0, 0.0, 0.5),
        ("redis", 5, 5, 3.0, 0.0, 0.25),
        ("miss", 10, 20, 100.0, 0.5, 0.0),
        ("miss", 1, 1, 200.0, 0.1, 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        conn.execute(
            "INSERT INTO cache_events (ts, region, endpoint, namespace, model, tier, status, key_hash,
                 prompt_tokens, completion_tokens, latency_ms, relay_region, cost_usd, saved_usd)
             VALUES (?1, 'cdg', 'chat.completions', 'acme', 'gpt-4o-mini', ?2, 200, 'k', ?3, ?4, ?5, NULL, ?6, ?7)",
            rusqlite::params![1_000_000 + i as i64, tier, p, c, latency, cost, saved],
        )
        .unwrap();
    }
    // Outside the range: must not count.
    conn.execute(
        "INSERT INTO cache_events (ts, region, endpoint, namespace, model, tier, status, key_hash, latency_ms)
         VALUES (5000000, 'cdg', 'chat.completions', 'acme', 'gpt-4o-mini', 'l1', 200, 'k', 1.0)",
        [],
    )
    .unwrap();
}
