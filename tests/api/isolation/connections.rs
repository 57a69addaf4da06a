//! Connections: header and idle timeouts, the cap that sheds the idlest.

use super::*;

/// Reads until the peer closes; `true` when it did within the deadline.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_after_the_header_timeout() {
    let app = spawn_app_with(|c| c.server.header_timeout_ms = 300).await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap(); // ...and never the blank line
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(
        closed_by_peer(&mut silent).await,
        "a silent connection stays open"
    );
    assert!(
        closed_by_peer(&mut slow).await,
        "slow headers hold the connection"
    );
    assert!(
        closed_by_peer(&mut idle).await,
        "an idle keep-alive stays open"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn at_the_connection_cap_the_idlest_connection_makes_room() {
    let app = spawn_app_with(|c| c.server.max_connections = 4).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        idle.push(s);
    }
    // A fifth client is served: the connection idle longest is closed for it.
    let r = bare_client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        closed_by_peer(&mut idle[0]).await,
        "the idlest connection was kept"
    );
    let m = metrics(&app).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("edge_gateway_connections_shed_total") && !l.ends_with(" 0")),
        "{m}"
    );
}
