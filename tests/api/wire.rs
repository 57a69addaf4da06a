//! The connection loop that reads plain HTTP/1.1 requests itself and hands anything else
//! to hyper (`server::wire`): seen from a raw socket, it must answer as hyper would.

use relay_stub::Behavior;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// A plain request (`content-length` framing), as SDKs send it.
fn plain(body: &Value, extra: &str) -> Vec<u8> {
    let body = serde_json::to_vec(body).unwrap();
    let mut out = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {CLIENT_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The same request with a chunked body, which the loop leaves to hyper.
fn chunked(body: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(body).unwrap();
    let mut out = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {CLIENT_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:X}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

const GET_HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n";

/// One response read off `stream`: status, headers (lowercase names, in order) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
        .await
        .expect("the gateway answers in time")
        .expect("the connection stays readable");
    assert!(n > 0, "the gateway closed the connection mid-answer");
    buf.extend_from_slice(&chunk[..n]);
}

/// Reads one response (`content-length` or chunked) from `stream`; bytes after it stay in
/// `buf`.
async fn answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf).await;
    };
    let head = String::from_utf8(buf.drain(..head_end).collect()).unwrap();
    let mut lines = head.trim_end().split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let length = headers.iter().find(|(k, _)| k == "content-length");
    let mut body = Vec::new();
    if let Some((_, n)) = length {
        let n: usize = n.parse().unwrap();
        while buf.len() < n {
            fill(stream, buf).await;
        }
        body.extend(buf.drain(..n));
    } else {
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "transfer-encoding" && v == "chunked"),
            "a response without length is chunked: {head}"
        );
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(stream, buf).await;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                fill(stream, buf).await;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    Answer {
        status,
        headers,
        body,
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    let stream = TcpStream::connect(app.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let app = spawn_app().await;
    let body = chat_body("pipelined question");
    let mut stream = connect(&app).await;
    let mut requests = plain(&body, "");
    requests.extend_from_slice(GET_HEALTH);
    requests.extend_from_slice(&plain(&body, ""));
    stream.write_all(&requests).await.unwrap();
    let mut buf = Vec::new();
    let first = answer(&mut stream, &mut buf).await;
    assert_eq!((first.status, first.header("x-cache")), (200, Some("miss")));
    let health = answer(&mut stream, &mut buf).await;
    assert_eq!(health.status, 200);
    assert!(health.header("x-cache").is_none(), "{:?}", health.headers);
    let hit = answer(&mut stream, &mut buf).await;
    assert_eq!(
        (hit.status, hit.header("x-cache-tier")),
        (200, Some("l1")),
        "{:?}",
        hit.headers
    );
    assert_eq!(hit.body, first.body);
    assert!(buf.is_empty());
    assert_eq!(app.stub.total_calls(), 1);
}

#[tokio::test]
async fn a_request_the_loop_does_not_frame_hands_the_connection_to_hyper_which_keeps_serving() {
    let app = spawn_app().await;
    let body = chat_body("chunked question");
    let mut stream = connect(&app).await;
    let mut buf = Vec::new();
    stream.write_all(&plain(&body, "")).await.unwrap();
    let miss = answer(&mut stream, &mut buf).await;
    assert_eq!(miss.header("x-cache"), Some("miss"));
    // Chunked: hyper reads it, and every request after it on this connection.
    stream.write_all(&chunked(&body)).await.unwrap();
    let hit = answer(&mut stream, &mut buf).await;
    assert_eq!((hit.status, hit.header("x-cache")), (200, Some("hit")));
    stream.write_all(&plain(&body, "")).await.unwrap();
    let again = answer(&mut stream, &mut buf).await;
    assert_eq!((again.status, again.header("x-cache")), (200, Some("hit")));
    stream.write_all(GET_HEALTH).await.unwrap();
    assert_eq!(answer(&mut stream, &mut buf).await.status, 200);
    assert_eq!(app.stub.total_calls(), 1);
}

#[tokio::test]
async fn the_loop_and_hyper_answer_a_hit_with_the_same_headers() {
    let app = spawn_app().await;
    for body in [
        chat_body("same headers"),
        stream_body("same headers, streamed"),
    ] {
        app.chat(&body).await.bytes().await.unwrap();
        let (mut by_loop, mut by_hyper) = (connect(&app).await, connect(&app).await);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        by_loop.write_all(&plain(&body, "")).await.unwrap();
        by_hyper.write_all(&chunked(&body)).await.unwrap();
        let (mut ours, mut theirs) = (
            answer(&mut by_loop, &mut a).await,
            answer(&mut by_hyper, &mut b).await,
        );
        for answer in [&mut ours, &mut theirs] {
            answer.headers.retain(|(k, _)| k != "date");
            answer.headers.sort();
        }
        assert_eq!(ours.status, theirs.status);
        assert_eq!(ours.headers, theirs.headers);
        assert_eq!(ours.body, theirs.body);
        assert_eq!(ours.header("x-cache"), Some("hit"));
    }
}

#[tokio::test]
async fn connection_close_is_answered_then_the_connection_ends() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(&plain(&chat_body("last one"), "Connection: close\r\n"))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let last = answer(&mut stream, &mut buf).await;
    assert_eq!(
        (last.status, last.header("connection")),
        (200, Some("close"))
    );
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces_is_read_whole() {
    let app = spawn_app().await;
    // Longer than a socket read: the body reaches the handler over several reads.
    let prompt = format!("long {}end", "word ".repeat(60_000));
    let request = plain(&chat_body(&prompt), "");
    let mut stream = connect(&app).await;
    let (first, second) = request.split_at(request.len() / 3);
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();
    stream.write_all(second).await.unwrap();
    let mut buf = Vec::new();
    let answered = answer(&mut stream, &mut buf).await;
    assert_eq!(answered.status, 200);
    let json: Value = serde_json::from_slice(&answered.body).unwrap();
    let content = json["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.ends_with("word end"),
        "{}",
        &content[content.len() - 40..]
    );
}

#[tokio::test]
async fn a_client_that_leaves_before_its_answer_frees_its_connection() {
    let app = spawn_app().await;
    app.stub.set(Behavior {
        hang: true,
        ..Behavior::default()
    });
    let open = || async {
        let m = app.get("/metrics").await.text().await.unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("edge_gateway_connections_open "))
            .map(|v| v.trim().parse::<f64>().unwrap())
    };
    let mut stream = connect(&app).await;
    stream
        .write_all(&plain(&chat_body("nobody waits for this"), ""))
        .await
        .unwrap();
    eventually("the relay is called", || async {
        (app.stub.total_calls() == 1).then_some(())
    })
    .await;
    let with_it = open().await.unwrap();
    drop(stream);
    eventually("the connection of the client that left closes", || async {
        (open().await == Some(with_it - 1.0)).then_some(())
    })
    .await;
}
