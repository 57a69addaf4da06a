//! Shadow mode measured (issue 19): would-be hits against fresh answers, by the labels.

use super::*;

/// Issue 19: the pairs through a gateway in shadow mode, against a relay that answers by
/// label (the two questions of a same-meaning pair get one answer, a trap's two questions
/// two answers), with `temperature: 0` so the would-be and fresh answers are compared
/// exactly. Then the report's suggested threshold for several disagreement targets, and
/// what the labels say about it: wrong answers among the would-be hits at that threshold.
pub(super) async fn shadow_run(relay_url: &str, pairs: &[Pair]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("shadow.db");
    let mut config = Config::default();
    config.server.bind = [127, 0, 0, 1].into();
    config.server.port = 0;
    config.relay.url = relay_url.to_owned();
    config.sqlite.path = db.clone();
    config.semantic.mode = SemanticMode::Shadow;
    config.validate().expect("valid config");
    let app = App::build(config).await.expect("gateway starts");
    let base = format!("http://{}", app.local_addr());
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let mut asked_keys = BTreeMap::new();
    for (i, pair) in pairs.iter().enumerate() {
        let second = ask_pair(&client, &base, i, pair, Some(0.0)).await;
        assert_ne!(
            second
                .headers()
                .get("x-cache")
                .and_then(|v| v.to_str().ok()),
            Some("hit"),
            "shadow mode never serves"
        );
        if let Some(key) = second
            .headers()
            .get("x-cache-key")
            .and_then(|v| v.to_str().ok())
        {
            asked_keys.insert(key.to_owned(), i);
        }
        second.bytes().await.expect("body");
    }
    // Shadow rows are judged after the fresh answer, off the request path: wait until
    // the count of judged rows stops moving, then flush them.
    let judged = || state.shadow_judged();
    let mut last = (judged(), Instant::now());
    while last.1.elapsed() < Duration::from_millis(300) {
        tokio::task::yield_now().await;
        let now = judged();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    state.flush_analytics().await;
    let _ = tx.send(());
    let _ = server.await;
    let conn = rusqlite::Connection::open(&db).expect("db");
    let rows: Vec<(String, f64, String)> = conn
        .prepare("SELECT key_hash, similarity, verdict FROM semantic_shadow")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    let same = pairs.iter().filter(|p| p.same).count();
    println!("\n### Shadow mode on the labelled pairs (MiniLM at the relay, temperature 0)\n");
    println!(
        "{} pairs asked; {} shadow rows (misses with a candidate from 0.5 up)\n",
        pairs.len(),
        rows.len()
    );
    println!(
        "| disagreements asked for (at most) | suggested threshold | would-be hits there | wrong answers among them, by the labels | same-meaning pairs served |"
    );
    println!("|---|---|---|---|---|");
    for target in [0.0, 0.02, 0.05, 0.10] {
        let agreement = edge_gateway::testing::analytics::Agreement {
            min_answer_similarity: 0.85,
            max_disagreement: target,
        };
        let report =
            edge_gateway::testing::analytics::shadow::report(&conn, 0, u64::MAX / 2, agreement)
                .expect("report");
        let Some(t) = report.suggested_threshold else {
            println!("| {:.0}% | none | | | |", target * 100.0);
            continue;
        };
        let (mut hits, mut wrong, mut right) = (0, 0, 0);
        for (key, similarity, verdict) in &rows {
            let Some(&i) = asked_keys.get(key) else {
                continue;
            };
            if verdict == "pass" && *similarity + 1e-6 >= t {
                hits += 1;
                if pairs[i].same {
                    right += 1;
                } else {
                    wrong += 1;
                }
            }
        }
        println!(
            "| {:.0}% | {t:.2} | {hits} | {:.1}% ({wrong}) | {:.1}% ({right} of {same}) |",
            target * 100.0,
            100.0 * wrong as f64 / f64::from(hits.max(1)),
            100.0 * right as f64 / same as f64,
        );
    }
}
