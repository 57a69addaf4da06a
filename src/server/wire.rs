//! The connection loop: reads plain HTTP/1.1 requests itself ([`super::head`]), answers
//! them through the same [`Dispatch`] as hyper would, and writes the responses
//! ([`super::encode`]). Why by hand: on a cache hit, hyper's dispatcher, body channel
//! and encoder cost about 1 µs of the ~11 µs a hit took; here a hit is one read, the
//! handler and one write (bench/RESULTS.md, issue 18).
//!
//! What hyper did and this loop keeps: keep-alive with the header timeout counted from
//! when the connection opened or its last response ended; pipelined requests answered
//! in order; a request cancelled when its client closes the connection (no half-close);
//! `connection: close` on the last response of a closing connection. A request this loop
//! does not frame (chunked body, `expect`, upgrade, HTTP/1.0, `HEAD`, a broken head)
//! hands the connection, with the bytes already read, to hyper until it closes.

use std::pin::pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Version};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::encode::{self, Framing};
use super::head::{Head, HeadMemo, PlainHead, read_head};
use super::rewind::Rewind;
use super::{Busy, Conn, ServeLimits};
use crate::auth::ConnAuth;
use crate::http::Dispatch;
use crate::metrics::ConnMetrics;

/// Bytes read ahead while a request is answered (pipelined requests, or the EOF of a
/// client that left); past this the loop stops reading until the response is written.
const READ_AHEAD: usize = 64 * 1024;

/// Data frames at least this large are written on their own, not copied behind the head.
const COPY_MAX: usize = 16 * 1024;

/// How the loop left the connection.
pub(super) enum Ended {
    Closed,
    /// For hyper to serve from here on.
    HandOff(Rewind<TcpStream>),
}

/// What one connection's loop needs.
pub(super) struct Wire<'a> {
    pub dispatch: &'a Dispatch,
    pub auth: &'a ConnAuth,
    pub conn: &'a Arc<Conn>,
    pub limits: &'a ServeLimits,
    pub metrics: &'a ConnMetrics,
    pub shutdown: &'a CancellationToken,
}

/// The part of a body still to come from the socket, fed to the handler as it arrives.
struct Feed {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    remaining: usize,
}

impl Feed {
    /// Moves what `buf` holds of the body into the handler's body.
    fn take(&mut self, buf: &mut BytesMut) {
        let n = self.remaining.min(buf.len());
        if n == 0 {
            return;
        }
        let chunk = buf.split_to(n).freeze();
        self.remaining -= n;
        if let Some(tx) = &self.tx {
            let _ = tx.send(chunk);
        }
        if self.remaining == 0 {
            self.tx = None; // the body ends
        }
    }
}

impl Wire<'_> {
    pub(super) async fn serve(&self, mut stream: TcpStream) -> Ended {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let mut out = Vec::with_capacity(4 * 1024);
        let mut memo = HeadMemo::default();
        // Cancelled to make room or by the shutdown (its parent token).
        let mut closed = pin!(self.conn.close.cancelled());
        let mut header_timeout = pin!(tokio::time::sleep(self.limits.header_timeout));
        loop {
            header_timeout
                .as_mut()
                .reset(tokio::time::Instant::now() + self.limits.header_timeout);
            let head = loop {
                if !buf.is_empty() {
                    match read_head(&mut buf, self.limits.max_body_bytes, &mut memo) {
                        Head::Plain(head) => break head,
                        Head::Other => return Ended::HandOff(Rewind::new(buf.freeze(), stream)),
                        Head::Partial => {}
                    }
                }
                tokio::select! {
                    biased;
                    read = stream.read_buf(&mut buf) => match read {
                        Ok(0) | Err(_) => return Ended::Closed,
                        Ok(_) => {}
                    },
                    () = &mut header_timeout => return Ended::Closed,
                    () = &mut closed => {
                        if !self.shutdown.is_cancelled() {
                            self.metrics.shed.inc(); // made room, not shut down
                        }
                        return Ended::Closed;
                    }
                }
            };
            let busy = Busy::new(self.conn.clone());
            match self.answer(head, &mut stream, &mut buf, &mut out).await {
                Some(true) => drop(busy),
                Some(false) | None => {
                    drop(busy);
                    let _ = stream.shutdown().await;
                    return Ended::Closed;
                }
            }
        }
    }

    /// Answers one request whose head was read: `Some(true)` to read the next one,
    /// `Some(false)` when the connection closes after this response, `None` when the
    /// client left or the socket failed.
    async fn answer(
        &self,
        head: PlainHead,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        let PlainHead {
            method,
            uri,
            headers,
            content_length,
            close,
        } = head;
        let mut feed = Feed {
            tx: None,
            remaining: 0,
        };
        let body = if buf.len() >= content_length {
            Body::from(buf.split_to(content_length).freeze())
        } else {
            let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
            feed = Feed {
                tx: Some(tx),
                remaining: content_length,
            };
            feed.take(buf);
            Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
            }))
        };
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;

        let response = {
            let mut call = pin!(self.dispatch.call(request, self.auth));
            loop {
                tokio::select! {
                    biased;
                    response = &mut call => break response,
                    read = stream.read_buf(buf), if buf.len() < READ_AHEAD => match read {
                        // The client left: dropping the call cancels the request.
                        Ok(0) | Err(_) => return None,
                        Ok(_) => feed.take(buf),
                    },
                }
            }
        };
        let keep = !close && feed.remaining == 0 && !self.conn.close.is_cancelled();
        let (parts, mut body) = response.into_parts();
        out.clear();
        let framing = encode::head(&parts, &hyper::body::Body::size_hint(&body), !keep, out);
        if framing == Framing::None {
            stream.write_all(out).await.ok()?;
            return Some(keep);
        }
        let chunked = framing == Framing::Chunked;
        loop {
            let frame = match body.frame().now_or_never() {
                Some(frame) => frame,
                None => {
                    if !out.is_empty() {
                        stream.write_all(out).await.ok()?;
                        out.clear();
                    }
                    tokio::select! {
                        biased;
                        frame = body.frame() => frame,
                        read = stream.read_buf(buf), if buf.len() < READ_AHEAD => match read {
                            Ok(0) | Err(_) => return None,
                            Ok(_) => continue,
                        },
                    }
                }
            };
            let data = match frame {
                None => break,
                // A body that fails mid-way cannot be framed as complete: the client
                // sees the connection end, as with hyper.
                Some(Err(_)) => return None,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    _ => continue, // trailers and empty frames
                },
            };
            if chunked {
                encode::chunk_start(data.len(), out);
            }
            if data.len() < COPY_MAX {
                out.extend_from_slice(&data);
            } else {
                stream.write_all(out).await.ok()?;
                out.clear();
                stream.write_all(&data).await.ok()?;
            }
            if chunked {
                out.extend_from_slice(encode::CHUNK_END);
            }
        }
        if chunked {
            out.extend_from_slice(encode::LAST_CHUNK);
        }
        if !out.is_empty() {
            stream.write_all(out).await.ok()?;
        }
        Some(keep)
    }
}
