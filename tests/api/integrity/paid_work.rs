//! Nothing paid for is lost: flights own their relay calls, shutdown drains them, a deleted database file is followed.

use super::*;

#[tokio::test]
async fn a_leader_whose_client_left_still_completes_stores_and_serves_its_followers() {
    let app = spawn_app().await;
    app.stub.set(Behavior {
        hold: true,
        ..Default::default()
    });
    let body = chat_body("Do you ship to Norway?");
    let key = key_for(&body);
    let leader = {
        let (client, url, body) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            serde_json::to_vec(&body).unwrap(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .body(body)
                .timeout(Duration::from_millis(500))
                .send()
                .await
        })
    };
    eventually("the leader at the relay", || async {
        (app.stub.calls("/v1/chat/completions") == 1).then_some(())
    })
    .await;
    let mut followers = Vec::new();
    for _ in 0..9 {
        let (client, url, body) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            serde_json::to_vec(&body).unwrap(),
        );
        followers.push(tokio::spawn(async move {
            let r = client.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    eventually("nine followers waiting", || async {
        (app.state.waiting_on(&key) == 9).then_some(())
    })
    .await;
    assert!(
        leader.await.unwrap().is_err(),
        "the leader's client gave up"
    );
    app.stub.release();
    for follower in followers {
        let (status, text) = follower.await.unwrap();
        assert_eq!(status, 200);
        assert!(text.contains("Answer to: Do you ship to Norway?"), "{text}");
    }
    assert_eq!(app.stub.calls("/v1/chat/completions"), 1, "one relay call");
    assert_eq!(header(&app.chat(&body).await, "x-cache"), "hit", "stored");
    app.state.flush_analytics().await;
    let db = app.dir.path().join("gateway.db");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cache_events WHERE tier = 'miss' AND status = 200 AND completion_tokens > 0"
        ),
        1,
        "the leader's row, with what was spent"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM cache_events"), 11);
}

#[tokio::test]
async fn sigterm_waits_for_relay_calls_whose_clients_left() {
    let stub = RelayStub::start().await.unwrap();
    stub.set(Behavior {
        delay_ms: 800,
        ..Default::default()
    });
    let gateway = spawn_gateway(&[
        ("RELAY_URL", stub.url()),
        ("SHUTDOWN_GRACE_SECS", "10".to_owned()),
    ]);
    let client = client_with_key();
    let mut gone = Vec::new();
    for i in 0..5 {
        let request = client
            .post(gateway.url("/v1/chat/completions"))
            .body(serde_json::to_vec(&chat_body(&format!("question {i}"))).unwrap())
            .timeout(Duration::from_millis(200))
            .send();
        gone.push(tokio::spawn(request));
    }
    for request in gone {
        assert!(request.await.unwrap().is_err(), "the client left");
    }
    assert_eq!(stub.calls("/v1/chat/completions"), 5);
    gateway.signal("TERM");
    let gateway = exits_cleanly(gateway).await;
    let db = gateway.dir.path().join("gw.db");
    assert_eq!(count(&db, "SELECT count(*) FROM cache_events"), 5, "rows");
    assert_eq!(
        count(&db, "SELECT count(*) FROM cache_entries"),
        5,
        "entries"
    );
}
