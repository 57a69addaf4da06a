//! Never store a broken answer.

use super::*;

#[tokio::test]
async fn incomplete_answers_are_passed_on_and_never_stored() {
    let app = spawn_app().await;
    let cases: Vec<(&str, bool, Behavior)> = vec![
        (
            "plain, no choices",
            false,
            Behavior {
                empty_choices: true,
                ..Default::default()
            },
        ),
        (
            "plain, cut by length",
            false,
            Behavior {
                finish_reason: Some("length".into()),
                ..Default::default()
            },
        ),
        (
            "plain, content filter",
            false,
            Behavior {
                finish_reason: Some("content_filter".into()),
                ..Default::default()
            },
        ),
        (
            "plain, labelled text/html",
            false,
            Behavior {
                content_type: Some("text/html; charset=utf-8".into()),
                ..Default::default()
            },
        ),
        (
            "stream of only [DONE]",
            true,
            Behavior {
                empty_choices: true,
                ..Default::default()
            },
        ),
        (
            "stream cut before its finish_reason, still ending with [DONE]",
            true,
            Behavior {
                drop_finish_chunk: true,
                ..Default::default()
            },
        ),
        (
            "stream cut by length",
            true,
            Behavior {
                finish_reason: Some("length".into()),
                ..Default::default()
            },
        ),
    ];
    for (what, stream, behavior) in cases {
        app.stub.set(behavior);
        let body = if stream {
            stream_body(what)
        } else {
            chat_body(what)
        };
        let calls = app.stub.calls("/v1/chat/completions");
        for round in 0..2 {
            let r = app.chat(&body).await;
            assert_eq!(r.status(), 200, "{what}: passed on as the relay sent it");
            assert_eq!(header(&r, "x-cache"), "miss", "{what}: round {round}");
            r.bytes().await.unwrap();
        }
        assert_eq!(
            app.stub.calls("/v1/chat/completions"),
            calls + 2,
            "{what}: stored and replayed"
        );
    }
    let m = app.get("/metrics").await.text().await.unwrap();
    assert!(m.contains("edge_gateway_answers_not_stored_total{"), "{m}");
}
