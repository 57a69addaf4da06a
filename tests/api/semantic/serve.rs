//! Serving a paraphrase, refusing look-alikes, never crossing a conversation.

use super::*;

#[tokio::test]
async fn a_paraphrase_is_served_the_stored_answer_with_its_headers_and_row() {
    let app = spawn_app_with(semantic_on).await;
    let original = seed(&app, "How do I reset my password?").await;
    let calls = chat_calls(&app);

    let response = app.chat(&ask("How can I reset my password?")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-cache"), "hit");
    assert_eq!(header(&response, "x-cache-tier"), "semantic");
    let similarity: f32 = header(&response, "x-cache-similarity").parse().unwrap();
    assert!((THRESHOLD..1.0).contains(&similarity), "{similarity}");
    let key = header(&response, "x-cache-key");
    assert_eq!(
        content(response).await,
        original,
        "the stored answer, as given"
    );
    assert_eq!(chat_calls(&app), calls, "no relay call for the paraphrase");

    // Streamed: the same answer replayed as SSE.
    let mut streamed = ask("how can i reset my password ?");
    streamed["stream"] = json!(true);
    let response = app.chat(&streamed).await;
    assert_eq!(header(&response, "x-cache-tier"), "semantic");
    let sse = response.text().await.unwrap();
    assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");

    // The analytics row: tier semantic, its similarity, the served entry's key, saved $.
    let db = app.dir.path().join("gateway.db");
    let row = eventually("the semantic row", || async {
        app.state.flush_analytics().await;
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row(
            "SELECT tier, similarity, key_hash, saved_usd, cost_usd, embedding_cost_usd
             FROM cache_events WHERE tier = 'semantic' ORDER BY id LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, f64>(4)?,
                    r.get::<_, f64>(5)?,
                ))
            },
        )
        .ok()
    })
    .await;
    assert!((row.1 - f64::from(similarity)).abs() < 1e-4, "{row:?}");
    assert_eq!(row.2, key);
    assert!(
        row.3 > 0.0,
        "a semantic hit saves the answer's price: {row:?}"
    );
    // text-embedding-3-small costs $0.02 per million tokens: the embedding is the spend.
    assert!(row.5 > 0.0 && (row.4 - row.5).abs() < 1e-15, "{row:?}");
    assert_eq!(
        metric(&app, "edge_gateway_semantic_lookups_total{outcome=\"hit\"}").await,
        2.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_question_is_embedded_once() {
    let app = spawn_app_with(semantic_on).await;
    seed(&app, "Where can I find my invoices?").await;
    let embeddings = app.stub.calls("/v1/embeddings");
    for _ in 0..3 {
        let response = app.chat(&ask("Where do I find my invoices?")).await;
        assert_eq!(header(&response, "x-cache-tier"), "semantic");
    }
    assert_eq!(app.stub.calls("/v1/embeddings"), embeddings + 1);
    app.stop().await;
}

#[tokio::test]
async fn every_kind_of_look_alike_is_refused_by_the_verifier() {
    let app = spawn_app_with(semantic_on).await;
    // (stored question, trap, the verifier's reason)
    let traps = [
        (
            "Is the store open on Sunday?",
            "Is the store closed on Sunday?",
            "polarity",
        ),
        (
            "Can I pay by card at the store?",
            "Can I not pay by card at the store?",
            "negation",
        ),
        (
            "Where is my order 48213 right now?",
            "Where is my order 48231 right now?",
            "number",
        ),
        (
            "How do I upgrade to the Pro plan?",
            "How do I upgrade to the Team plan?",
            "entity",
        ),
        (
            "Can I export all my invoices at once?",
            "Can I export only my invoices at once?",
            "scope",
        ),
        ("买会员要多少钱？", "退会员要多少钱？", "polarity"),
    ];
    for (stored, trap, reason) in traps {
        seed(&app, stored).await;
        let series = format!("edge_gateway_semantic_rejections_total{{reason=\"{reason}\"}}");
        let refused = metric(&app, &series).await;
        let calls = chat_calls(&app);
        let response = app.chat(&ask(trap)).await;
        assert_eq!(header(&response, "x-cache"), "miss", "{trap}");
        let answer = content(response).await;
        assert!(
            answer.contains(trap),
            "the trap got its own answer: {answer}"
        );
        assert_eq!(chat_calls(&app), calls + 1, "{trap}: the relay answered it");
        assert_eq!(
            metric(&app, &series).await,
            refused + 1.0,
            "{trap}: refused for {reason}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_different_system_prompt_earlier_turn_or_parameter_never_matches() {
    let app = spawn_app_with(semantic_on).await;
    let conversation = |topic: &str, system: &str, temperature: f64| {
        json!({"model": "gpt-4o-mini", "temperature": temperature, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": format!("I want to cancel my {topic} membership")},
            {"role": "assistant", "content": "Are you sure? You will lose your benefits."},
            {"role": "user", "content": "yes, cancel it"},
        ]})
    };
    let first = app.chat(&conversation("gym", "support", 0.0)).await;
    assert_eq!(header(&first, "x-cache"), "miss");
    first.bytes().await.unwrap();
    for other in [
        conversation("streaming plan", "support", 0.0),
        conversation("gym", "sales", 0.0),
        conversation("gym", "support", 0.7),
    ] {
        let calls = chat_calls(&app);
        let response = app.chat(&other).await;
        assert_eq!(header(&response, "x-cache"), "miss", "{other}");
        response.bytes().await.unwrap();
        assert_eq!(chat_calls(&app), calls + 1);
    }
    // Another tenant asking the same thing in the same words never sees it either.
    let calls = chat_calls(&app);
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-another-tenant")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&conversation("gym", "support", 0.0)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-cache"), "miss");
    assert_eq!(chat_calls(&app), calls + 1);
    app.stop().await;
}

#[tokio::test]
async fn x_cache_semantic_off_and_the_default_off_mode_use_exact_tiers_only() {
    let app = spawn_app_with(semantic_on).await;
    seed(&app, "What are your opening hours today?").await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-test")
        .header("x-cache-semantic", "off")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&ask("What are your opening hours for today?")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-cache"), "miss");
    let bad = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-test")
        .header("x-cache-semantic", "maybe")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&ask("x")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(error_code(bad).await, "invalid_header");
    app.stop().await;

    // Off by default: nothing is embedded, nothing served by meaning.
    let app = spawn_app().await;
    assert!(app.state.semantic_entries().is_none());
    app.chat(&ask("What are your opening hours today?")).await;
    let response = app
        .chat(&ask("What are your opening hours for today?"))
        .await;
    assert_eq!(header(&response, "x-cache"), "miss");
    assert_eq!(app.stub.calls("/v1/embeddings"), 0);
    app.stop().await;
}

#[tokio::test]
async fn per_namespace_mode_and_shadow_mode_serve_nothing_by_meaning_where_not_on() {
    let app = spawn_app_with(|c| {
        semantic_on(c);
        c.semantic.mode = SemanticMode::Off;
        c.semantic.namespaces.insert("faq".into(), SemanticMode::On);
        c.semantic
            .namespaces
            .insert("trial".into(), SemanticMode::Shadow);
        managed(
            c,
            "sk-relay",
            &[
                ("faq", "gw-faq"),
                ("trial", "gw-trial"),
                ("other", "gw-other"),
            ],
        );
    })
    .await;
    let ask_as = |key: &'static str, q: &'static str| {
        let client = app.client.clone();
        let url = app.url("/v1/chat/completions");
        async move {
            let r = client
                .post(url)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&ask(q)).unwrap())
                .send()
                .await
                .unwrap();
            let tier = header(&r, "x-cache-tier");
            r.bytes().await.unwrap();
            tier
        }
    };
    for key in ["gw-faq", "gw-trial", "gw-other"] {
        ask_as(key, "How do I change my email address?").await;
    }
    assert_eq!(
        ask_as("gw-faq", "How can I change my email address?").await,
        "semantic"
    );
    assert_eq!(
        ask_as("gw-other", "How can I change my email address?").await,
        ""
    );
    let shadowed = metric(
        &app,
        "edge_gateway_semantic_lookups_total{outcome=\"shadow\"}",
    )
    .await;
    assert_eq!(
        ask_as("gw-trial", "How can I change my email address?").await,
        ""
    );
    assert_eq!(
        metric(
            &app,
            "edge_gateway_semantic_lookups_total{outcome=\"shadow\"}"
        )
        .await,
        shadowed + 1.0,
        "shadow mode found the would-be hit and served the relay's answer"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_embedding_failure_is_a_plain_miss() {
    let app = spawn_app_with(semantic_on).await;
    app.stub.set(relay_stub::Behavior {
        status: Some(400),
        fail_when_body_contains: Some("text-embedding-3-small".into()),
        ..Default::default()
    });
    let response = app.chat(&ask("Do you ship to Canada?")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-cache"), "miss");
    assert_eq!(
        metric(
            &app,
            "edge_gateway_semantic_lookups_total{outcome=\"error\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}
