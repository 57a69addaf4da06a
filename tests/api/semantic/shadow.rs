//! Shadow mode (issue 19): look up, serve nothing, record what would have been served and
//! how it compared with the fresh answer; the report that reads a threshold off it.

use super::*;

fn shadow_on(config: &mut Config) {
    semantic_on(config);
    config.semantic.mode = SemanticMode::Shadow;
}

fn deterministic(question: &str) -> Value {
    let mut body = ask(question);
    body["temperature"] = json!(0);
    body
}

#[derive(Debug)]
struct ShadowRow {
    key: String,
    candidate_key: String,
    similarity: f64,
    verdict: String,
    deterministic: bool,
    answers_equal: bool,
    answer_similarity: Option<f64>,
    fresh_chars: i64,
    candidate_chars: i64,
    would_save_usd: f64,
}

async fn shadow_rows(app: &TestApp, at_least: usize) -> Vec<ShadowRow> {
    let db = app.dir.path().join("gateway.db");
    eventually("the shadow rows", || async {
        app.state.flush_analytics().await;
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT key_hash, candidate_key, similarity, verdict, deterministic, answers_equal,
                        answer_similarity, fresh_chars, candidate_chars, would_save_usd
                 FROM semantic_shadow ORDER BY id",
            )
            .unwrap();
        let rows: Vec<ShadowRow> = stmt
            .query_map([], |r| {
                Ok(ShadowRow {
                    key: r.get(0)?,
                    candidate_key: r.get(1)?,
                    similarity: r.get(2)?,
                    verdict: r.get(3)?,
                    deterministic: r.get(4)?,
                    answers_equal: r.get(5)?,
                    answer_similarity: r.get(6)?,
                    fresh_chars: r.get(7)?,
                    candidate_chars: r.get(8)?,
                    would_save_usd: r.get(9)?,
                })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        (rows.len() >= at_least).then_some(rows)
    })
    .await
}

#[tokio::test]
async fn shadow_mode_serves_the_fresh_answer_and_records_what_it_would_have_served() {
    let app = spawn_app_with(shadow_on).await;
    let first = app
        .chat(&deterministic("How do I reset my password?"))
        .await;
    let stored_key = header(&first, "x-cache-key");
    first.bytes().await.unwrap();
    entries_of(&app).await;

    let calls = chat_calls(&app);
    let response = app
        .chat(&deterministic("How can I reset my password?"))
        .await;
    assert_eq!(
        header(&response, "x-cache"),
        "miss",
        "shadow mode never serves"
    );
    let asked_key = header(&response, "x-cache-key");
    let answer = content(response).await;
    assert!(answer.contains("How can I reset my password?"), "{answer}");
    assert_eq!(chat_calls(&app), calls + 1, "the relay answered");

    let rows = shadow_rows(&app, 1).await;
    let row = &rows[0];
    assert_eq!(row.candidate_key, stored_key);
    assert_eq!(row.key, asked_key);
    assert!((THRESHOLD as f64..1.0).contains(&row.similarity), "{row:?}");
    assert_eq!(row.verdict, "pass");
    assert!(row.deterministic);
    // The stub's answers name the question: the would-be answer differs from the fresh one.
    assert!(!row.answers_equal);
    assert_eq!(
        row.answer_similarity, None,
        "deterministic: compared exactly"
    );
    assert!(row.fresh_chars > 0 && row.candidate_chars > 0, "{row:?}");
    assert!(row.would_save_usd > 0.0, "{row:?}");
    assert_eq!(
        metric(
            &app,
            "edge_gateway_semantic_shadow_total{outcome=\"disagree\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &app,
            "edge_gateway_semantic_lookups_total{outcome=\"shadow\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn shadow_rows_record_the_verifiers_refusal_and_the_answers_similarity() {
    let app = spawn_app_with(shadow_on).await;
    seed_as(&app, ask("Is the store open on Sunday?")).await;
    let response = app.chat(&ask("Is the store closed on Sunday?")).await;
    assert_eq!(header(&response, "x-cache"), "miss");
    response.bytes().await.unwrap();
    seed_as(&app, ask("Where can I find my invoices?")).await;
    let response = app.chat(&ask("Where do I find my invoices?")).await;
    assert_eq!(header(&response, "x-cache"), "miss");
    response.bytes().await.unwrap();

    let rows = shadow_rows(&app, 2).await;
    let refused = rows.iter().find(|r| r.verdict != "pass").unwrap();
    assert_eq!(refused.verdict, "polarity");
    let passed = rows.iter().find(|r| r.verdict == "pass").unwrap();
    assert!(!passed.deterministic);
    let similarity = passed
        .answer_similarity
        .expect("answers compared by embedding");
    assert!((0.0..=1.0).contains(&similarity), "{passed:?}");
    assert_eq!(
        metric(
            &app,
            "edge_gateway_semantic_shadow_total{outcome=\"refused\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}

async fn entries_of(app: &TestApp) {
    eventually("the entry remembered", || async {
        (app.state.semantic_entries().expect("semantic on") > 0).then_some(())
    })
    .await;
}

async fn seed_as(app: &TestApp, body: Value) {
    let before = app.state.semantic_entries().expect("semantic on");
    app.chat(&body).await.bytes().await.unwrap();
    eventually("the entry remembered", || async {
        (app.state.semantic_entries().expect("semantic on") > before).then_some(())
    })
    .await;
}

/// A known data set: 10 misses; shadow rows A–E (similarity, verdict, deterministic,
/// answers equal, answer similarity, would-be saving).
fn known_shadow_dataset(db: &std::path::Path) {
    let (code, _, err) = run_binary(&["migrate"], &[("SQLITE_PATH", db.to_str().unwrap())]);
    assert_eq!(code, 0, "{err}");
    let conn = rusqlite::Connection::open(db).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..10 {
        conn.execute(
            "INSERT INTO cache_events (ts, region, endpoint, namespace, model, tier, status, key_hash, latency_ms)
             VALUES (?1, 'cdg', 'chat.completions', 'acme', 'gpt-4o-mini', 'miss', 200, 'k', 1.0)",
            [now - 1_000 - i],
        )
        .unwrap();
    }
    for (similarity, verdict, det, equal, answer_similarity, save) in [
        (0.95, "pass", 1, 1, None, 0.01),
        (0.91, "pass", 1, 0, None, 0.02),
        (0.85, "pass", 0, 0, Some(0.9), 0.03),
        (0.83, "pass", 0, 0, Some(0.5), 0.04),
        (0.99, "polarity", 1, 0, None, 0.0),
    ] {
        conn.execute(
            "INSERT INTO semantic_shadow (ts, region, endpoint, namespace, model, key_hash,
                 candidate_key, similarity, verdict, deterministic, answers_equal,
                 answer_similarity, fresh_chars, candidate_chars, would_save_usd)
             VALUES (?1, 'cdg', 'chat.completions', 'acme', 'gpt-4o-mini', 'k', 'c', ?2, ?3, ?4, ?5, ?6, 10, 10, ?7)",
            rusqlite::params![now - 500, similarity, verdict, det, equal, answer_similarity, save],
        )
        .unwrap();
    }
    // Outside the range: must not count.
    conn.execute(
        "INSERT INTO semantic_shadow (ts, region, endpoint, namespace, model, key_hash,
             candidate_key, similarity, verdict, deterministic, answers_equal,
             answer_similarity, fresh_chars, candidate_chars, would_save_usd)
         VALUES (5000000, 'cdg', 'chat.completions', 'acme', 'gpt-4o-mini', 'k', 'c', 0.97, 'pass', 1, 0, NULL, 1, 1, 9.0)",
        [],
    )
    .unwrap();
}

#[test]
fn the_semantic_report_is_exact_on_a_known_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shadow.db");
    known_shadow_dataset(&db);
    let env = [("SQLITE_PATH", db.to_str().unwrap())];

    let (code, out, err) = run_binary(
        &[
            "analytics",
            "--semantic",
            "--since",
            "1h",
            "--format",
            "json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["misses"], 10);
    assert_eq!(report["candidates"], 5);
    assert_eq!(report["refused"], 1);
    let step = |t: f64| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| (s["threshold"].as_f64().unwrap() - t).abs() < 1e-9)
            .cloned()
            .unwrap()
    };
    // 0.90: A and B would be hits (B disagrees: deterministic, not equal).
    assert_eq!(
        step(0.90),
        json!({"threshold": 0.90, "would_hits": 2, "would_hit_rate": 0.2,
               "would_save_usd": 0.03, "disagreements": 1, "disagreement_rate": 0.5})
    );
    // 0.84: C joins and agrees (answers 0.9 similar ≥ 0.85).
    assert_eq!(step(0.84)["would_hits"], 3);
    assert_eq!(step(0.84)["disagreements"], 1);
    assert_eq!(step(0.84)["disagreement_rate"], 0.3333);
    // 0.82: D joins and disagrees (0.5); E never counts (refused).
    assert_eq!(step(0.82)["would_hits"], 4);
    assert_eq!(step(0.82)["would_save_usd"], 0.1);
    assert_eq!(step(0.82)["disagreements"], 2);
    assert_eq!(step(0.98)["would_hits"], 0);
    // The lowest threshold with hits and at most 2% disagreements: only A above it.
    assert_eq!(report["suggested_threshold"], 0.92);

    let (code, out, _) = run_binary(
        &[
            "analytics",
            "--semantic",
            "--since",
            "1h",
            "--max-disagreement",
            "0.34",
            "--format",
            "csv",
        ],
        &env,
    );
    assert_eq!(code, 0);
    assert!(out.starts_with(
        "threshold,would_hits,would_hit_rate,would_save_usd,disagreements,disagreement_rate\n"
    ));
    assert!(out.contains("\n0.90,2,0.2000,0.030000,1,0.5000\n"), "{out}");
    assert!(out.contains("\n0.84,3,0.3000,0.060000,1,0.3333\n"), "{out}");

    let (code, out, _) = run_binary(
        &[
            "analytics",
            "--semantic",
            "--since",
            "1h",
            "--max-disagreement",
            "0.34",
        ],
        &env,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("misses 10, with a semantic candidate 5, refused by the verifier 1"),
        "{out}"
    );
    assert!(out.contains("suggested threshold: 0.84"), "{out}");

    let (code, _, err) = run_binary(
        &["analytics", "--semantic", "--max-disagreement", "2"],
        &env,
    );
    assert_ne!(code, 0);
    assert!(err.contains("between 0 and 1"), "{err}");
}
