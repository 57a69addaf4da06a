//! The analytics command, the admin API and the global view.

use super::*;

#[test]
fn analytics_command_prints_exact_figures_in_three_formats() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("known.db");
    known_dataset(&db);
    let env = [("SQLITE_PATH", db.to_str().unwrap())];
    let args = |format: &'static str| {
        vec![
            "analytics",
            "--since",
            "1000000",
            "--until",
            "2000000",
            "--group-by",
            "tier",
            "--format",
            format,
        ]
    };
    let (code, csv, err) = run_binary(&args("csv"), &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        csv,
        "tier,requests,hits,hit_rate,tokens_saved,usd_saved,usd_spent,p50_ms,p95_ms\n\
         l1,1,1,1.0000,30,0.500000,0.000000,1.000,1.000\n\
         miss,2,0,0.0000,0,0.000000,0.600000,100.000,200.000\n\
         redis,1,1,1.0000,10,0.250000,0.000000,3.000,3.000\n"
    );
    let (code, json, _) = run_binary(&args("json"), &env);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["group_by"], json!(["tier"]));
    assert_eq!(report["rows"][1]["group"]["tier"], "miss");
    assert_eq!(report["rows"][1]["requests"], 2);
    assert_eq!(report["rows"][1]["usd_spent"], 0.6);
    assert_eq!(report["rows"][1]["p95_latency_ms"], 200.0);
    assert_eq!(
        report["total"],
        json!({"requests": 4, "hits": 2, "hit_rate": 0.5, "tokens_saved": 40, "usd_saved": 0.75,
               "usd_spent": 0.6, "p50_latency_ms": 3.0, "p95_latency_ms": 200.0})
    );
    let (code, table, _) = run_binary(&args("table"), &env);
    assert_eq!(code, 0);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "tier",
            "requests",
            "hits",
            "hit_rate",
            "tokens_saved",
            "usd_saved",
            "usd_spent",
            "p50_ms",
            "p95_ms"
        ]
    );
    assert_eq!(
        lines[1],
        [
            "l1", "1", "1", "1.0000", "30", "0.500000", "0.000000", "1.000", "1.000"
        ]
    );
    assert_eq!(
        lines[4],
        [
            "TOTAL", "4", "2", "0.5000", "40", "0.750000", "0.600000", "3.000", "200.000"
        ]
    );

    let (code, csv, _) = run_binary(
        &[
            "analytics",
            "--since",
            "1000000",
            "--until",
            "2000000",
            "--group-by",
            "region,model",
            "--format",
            "csv",
        ],
        &env,
    );
    assert_eq!(code, 0);
    assert_eq!(
        csv.lines().nth(1).unwrap(),
        "cdg,gpt-4o-mini,4,2,0.5000,40,0.750000,0.600000,3.000,200.000"
    );
    let (code, _, err) = run_binary(&["analytics", "--group-by", "colour"], &env);
    assert_eq!(code, 2);
    assert!(err.contains("unknown group"));
}

#[tokio::test]
async fn admin_analytics_needs_the_token_and_matches_the_command() {
    let app = spawn_app_with(|c| c.admin_token = Some(Secret::new(TOKEN))).await;
    app.chat(&chat_body("one")).await.bytes().await.unwrap();
    app.chat(&chat_body("one")).await.bytes().await.unwrap();
    let r = app.get("/admin/analytics").await;
    assert_eq!(r.status(), 401);
    let r = app
        .get_as("/admin/analytics?since=1h&group_by=tier,model", TOKEN)
        .await;
    assert_eq!(r.status(), 200);
    let report = json_of(r).await;
    assert_eq!(report["total"]["requests"], 2);
    assert_eq!(report["total"]["hits"], 1);
    assert_eq!(report["rows"][0]["group"]["tier"], "l1");
    assert_eq!(report["rows"][0]["group"]["model"], "gpt-4o-mini");
    let r = app
        .get_as("/admin/analytics?group_by=nonsense", TOKEN)
        .await;
    assert_eq!(r.status(), 400);
    let disabled = spawn_app().await;
    assert_eq!(disabled.get("/admin/analytics").await.status(), 404);
}

#[tokio::test]
async fn the_global_view_sums_every_region() {
    let redis = RedisServer::start();
    let region = |name: &'static str| {
        let url = redis.url();
        move |c: &mut edge_gateway::Config| {
            c.redis.url = Some(Secret::new(url));
            c.edge_region = name.into();
            c.analytics.global_flush_ms = 50;
            c.admin_token = Some(Secret::new(TOKEN));
        }
    };
    let cdg = spawn_app_with(region("cdg")).await;
    let sin = spawn_app_with(region("sin")).await;
    for _ in 0..3 {
        cdg.chat(&chat_body("cdg question"))
            .await
            .bytes()
            .await
            .unwrap();
    }
    for _ in 0..2 {
        sin.chat(&chat_body("sin question"))
            .await
            .bytes()
            .await
            .unwrap();
    }
    let report = eventually("both regions in the global view", || async {
        let r = cdg
            .get_as("/admin/analytics?global=true&since=2h", TOKEN)
            .await;
        let report = json_of(r).await;
        (report["total"]["requests"] == 5).then_some(report)
    })
    .await;
    let rows = report["rows"].as_array().unwrap();
    let by_region = |name: &str| rows.iter().find(|r| r["region"] == name).unwrap().clone();
    assert_eq!(
        (
            by_region("cdg")["requests"].as_i64(),
            by_region("cdg")["hits"].as_i64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(
        (
            by_region("sin")["requests"].as_i64(),
            by_region("sin")["hits"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(report["total"]["hits"], 3);

    let url = redis.url();
    let (code, out, err) = run_binary(
        &["analytics", "--global", "--since", "2h", "--format", "json"],
        &[("REDIS_URL", url.as_str())],
    );
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli["total"], report["total"]);

    let (code, _, err) = run_binary(
        &["analytics", "--global"],
        &[("REDIS_URL", "redis://127.0.0.1:1")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("global view is unavailable"), "{err}");
}
