//! `GET /admin/dashboard` in a real headless browser (Debian's chromium driven through
//! chromedriver by fantoccini): the token is asked once, the session is an HttpOnly,
//! SameSite=Strict cookie, and the figures the page draws are the analytics API's.

use std::process::{Child, Command, Stdio};

use edge_gateway::config::Secret;
use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "dashboard-admin-token-0123";

struct ChromeDriver {
    child: Child,
    url: String,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> ChromeDriver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (scripts/test installs chromium and chromium-driver as root)");
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    eventually("chromedriver ready", || {
        let status = status.clone();
        async move {
            let r = reqwest::get(&status).await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    ChromeDriver { child, url }
}

/// A small fixture: misses and hits on two models.
async fn fixture(app: &TestApp) {
    for (model, question, times) in [
        ("gpt-4o-mini", "What are your opening hours?", 4),
        ("gpt-4o-mini", "Do you ship to Norway?", 2),
        ("gpt-4o", "How do I reset my password?", 3),
        ("gpt-4o", "Where is my parcel?", 1),
    ] {
        for _ in 0..times {
            let body = json!({"model": model, "messages": [{"role": "user", "content": question}]});
            app.chat(&body).await.bytes().await.unwrap();
        }
    }
    app.state.flush_analytics().await;
    // A week of traffic from three regions, written as the writer would.
    let conn = rusqlite::Connection::open(app.dir.path().join("gateway.db")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut state = 0x9e37_79b9_u64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for i in 0..600i64 {
        let day = i % 7;
        let ts = now - day * 86_400_000 - 3_600_000 - i;
        // Hit rate grows over the week, as a cache warms.
        let tier = match (next(100) as i64) < 35 + (6 - day) * 7 {
            true => {
                ["l1", "l1", "l1", "redis", "sqlite", "semantic", "coalesced"][next(7) as usize]
            }
            false => ["miss", "miss", "miss", "bypass"][next(4) as usize],
        };
        let model = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"][next(3) as usize];
        let region = ["cdg", "sin", "iad"][next(3) as usize];
        let namespace = ["faq-bot", "support", "docs"][next(3) as usize];
        let (p, c) = (50 + next(400) as i64, 20 + next(300) as i64);
        let price =
            (p as f64 * 0.15 + c as f64 * 0.6) / 1e6 * if model == "gpt-4o" { 16.0 } else { 1.0 };
        let hit = !matches!(tier, "miss" | "bypass");
        conn.execute(
            "INSERT INTO cache_events (ts, region, endpoint, namespace, model, tier, status, key_hash,
                 prompt_tokens, completion_tokens, latency_ms, relay_region, cost_usd, saved_usd,
                 similarity)
             VALUES (?1, ?2, 'chat.completions', ?3, ?4, ?5, 200, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12)",
            rusqlite::params![
                ts, region, namespace, model, tier, format!("{:016x}", (next(40) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4), p, c,
                if hit { 0.4 } else { 900.0 }, if hit { 0.0 } else { price }, if hit { price } else { 0.0 },
                (tier == "semantic").then(|| 0.85 + next(14) as f64 / 100.0)
            ],
        )
        .unwrap();
    }
}

fn usd(v: f64) -> String {
    if v >= 100.0 {
        format!("${v:.0}")
    } else {
        format!("${v:.4}")
    }
}

#[tokio::test]
async fn the_dashboard_asks_the_token_once_and_draws_the_analytics_figures() {
    let app = spawn_app_with(|c| c.admin_token = Some(Secret::new(TOKEN))).await;
    fixture(&app).await;
    let driver = chromedriver().await;
    let capabilities: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1750"]
        }
    }))
    .unwrap();
    let browser = ClientBuilder::rustls()
        .expect("tls")
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session");

    browser.goto(&app.url("/admin/dashboard")).await.unwrap();
    // Not signed in: only the form, no figures.
    assert!(browser.find(Locator::Id("total-requests")).await.is_err());
    browser
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    browser
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Css("body[data-loaded='true']"))
        .await
        .expect("the page loads its figures");

    let api = app
        .client
        .get(app.url("/admin/analytics?since=7d&group_by=tier"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    let api: Value = serde_json::from_slice(&api.bytes().await.unwrap()).unwrap();
    let total = &api["total"];
    let text = |id: &'static str| {
        let browser = browser.clone();
        async move {
            browser
                .find(Locator::Id(id))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(text("total-requests").await, total["requests"].to_string());
    assert_eq!(
        text("total-hit-rate").await,
        format!("{:.1}%", 100.0 * total["hit_rate"].as_f64().unwrap())
    );
    assert_eq!(
        text("total-usd-saved").await,
        usd(total["usd_saved"].as_f64().unwrap())
    );
    assert_eq!(
        text("total-usd-spent").await,
        usd(total["usd_spent"].as_f64().unwrap())
    );
    // The stacked chart's bars add up to the requests; each tier's to the API's.
    let bars = browser
        .find_all(Locator::Css("#chart-tiers rect"))
        .await
        .unwrap();
    assert!(!bars.is_empty());
    let mut drawn = std::collections::BTreeMap::<String, u64>::new();
    for bar in bars {
        let tier = bar.attr("data-tier").await.unwrap().unwrap();
        let value: u64 = bar
            .attr("data-value")
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        *drawn.entry(tier).or_default() += value;
    }
    for row in api["rows"].as_array().unwrap() {
        let tier = row["group"]["tier"].as_str().unwrap();
        assert_eq!(
            drawn.get(tier).copied(),
            row["requests"].as_u64(),
            "tier {tier}"
        );
    }
    assert!(
        browser
            .find(Locator::Css("#chart-hit-rate polyline"))
            .await
            .is_ok()
    );
    let models = text("by-model").await;
    assert!(
        models.contains("gpt-4o-mini") && models.contains("gpt-4o"),
        "{models}"
    );
    let top = text("top-entries").await;
    assert!(top.lines().count() >= 3, "{top}");
    // Semantic hits by similarity, as the API groups them.
    let api = app
        .client
        .get(app.url("/admin/analytics?since=7d&group_by=similarity"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    let api: Value = serde_json::from_slice(&api.bytes().await.unwrap()).unwrap();
    let semantic = text("semantic").await;
    for row in api["rows"].as_array().unwrap() {
        if let Some(similarity) = row["group"]["similarity"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            assert!(semantic.contains(similarity), "{similarity} in {semantic}");
        }
    }
    assert!(semantic.lines().count() >= 2, "{semantic}");
    assert!(
        !semantic.lines().any(|l| l.starts_with("0.00 ")),
        "rows without a similarity are not a bucket: {semantic}"
    );

    // The session: HttpOnly and SameSite=Strict, holding no token.
    let cookies = browser.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "eg_admin")
        .expect("session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert!(!session.value().contains(TOKEN));

    if let Some(path) = std::env::var_os("DASHBOARD_SCREENSHOT") {
        std::fs::write(path, browser.screenshot().await.unwrap()).unwrap();
    }
    browser.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn without_a_session_the_dashboard_is_only_a_login_form() {
    let app = spawn_app_with(|c| c.admin_token = Some(Secret::new(TOKEN))).await;
    let page = app.get("/admin/dashboard").await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "cache-control"), "no-store");
    let page = page.text().await.unwrap();
    assert!(page.contains("id=\"token\"") && !page.contains("total-requests"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let wrong = client
        .post(app.url("/admin/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = client
        .post(app.url("/admin/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    let cookie = header(&right, "set-cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // The cookie opens the admin API too.
    let session = cookie.split(';').next().unwrap().to_owned();
    let api = client
        .get(app.url("/admin/analytics"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    app.stop().await;
}
