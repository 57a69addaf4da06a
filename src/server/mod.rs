//! The accept loop: one connection task per client, which reads plain HTTP/1.1 requests
//! itself ([`wire`]) and hands anything else to hyper. Written here because `axum::serve`
//! has no knobs for what keeps one client from locking the others out, and because on a
//! cache hit hyper's per-request machinery was about 1 µs of ~11 (bench/RESULTS.md):
//! - a header timeout: a connection must send each request's headers within
//!   `server.header_timeout_ms`, counted from when it opened or its previous response
//!   ended, so it is also the keep-alive idle timeout (slow-loris headers and idle
//!   keep-alive connections are closed alike);
//! - a connection cap (`server.max_connections`): at the cap, a new connection closes the
//!   connection that has been idle longest; when none is idle, the new one is refused.
//!   So idle clients can never hold every file descriptor;
//! - hyper's own header limits above the gateway's (the guard answers 431 with a JSON
//!   body; hyper's own 431 would be empty).
//!
//! Shutdown: stop accepting, ask every connection to close once its in-flight request
//! is answered, and resolve when the last one has.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod encode;
mod head;
mod rewind;
mod wire;

use crate::auth::ConnAuth;
use crate::http::Dispatch;
use crate::metrics::ConnMetrics;

/// What the accept loop enforces (from `server.*`).
#[derive(Clone, Debug)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// hyper's header count limit: above the guard's, so the guard answers first.
    pub max_headers: usize,
    /// A declared body above this is refused (413) by the handler; the connection loop
    /// leaves such a request to hyper, which need not read it.
    pub max_body_bytes: usize,
}

/// One client connection, as the registry sees it.
struct Conn {
    /// Requests in progress (a response body still streaming counts).
    active: AtomicUsize,
    /// When the connection last became idle, as a tick of the registry's clock (a
    /// counter: strictly ordered, no ties between connections).
    idle_since: AtomicU64,
    /// Cancelled to make room, or by the server's shutdown: a child of its token, so a
    /// connection watches one token, not two (each watched token costs a mutex a request).
    close: CancellationToken,
}

#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// The server's shutdown; every connection's `close` is its child.
    shutdown: CancellationToken,
}

/// The registry's clock: one tick per connection opened or request ended.
static TICKS: AtomicU64 = AtomicU64::new(0);

fn tick() -> u64 {
    TICKS.fetch_add(1, Ordering::Relaxed)
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes room for one more connection: below the cap, nothing to do; at the cap,
    /// closes the connection idle longest. `false` when every connection is busy.
    fn make_room(&self, cap: usize) -> bool {
        let conns = self.lock();
        let open = conns.values().filter(|c| !c.close.is_cancelled()).count();
        if open < cap {
            return true;
        }
        let idlest = conns
            .values()
            .filter(|c| !c.close.is_cancelled() && c.active.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        match idlest {
            Some(conn) => {
                conn.close.cancel();
                true
            }
            None => false,
        }
    }

    fn insert(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(tick()),
            close: self.shutdown.child_token(),
        });
        self.lock().insert(id, conn.clone());
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Marks its connection busy while alive: held by the request's future, then by its
/// response body until the last byte is sent.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: Arc<Conn>) -> Self {
        conn.active.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(tick(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection busy until its last byte is sent (or it is
/// dropped). A plain wrapper, not another boxed body: one allocation less per request.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// File descriptors kept for everything but client connections: relay and Redis
/// connections, the SQLite files, logs.
const RESERVED_FDS: u64 = 256;

/// The connection cap that fits the process's open-file limit: the soft limit is raised
/// towards the hard one when `configured` needs it, and the cap is lowered (with a
/// warning) when even that is not enough, so the cap is reached before `accept` fails.
pub fn fitting_cap(configured: usize) -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return configured;
        }
        let wanted = (configured as u64).saturating_add(RESERVED_FDS);
        if limit.rlim_cur < wanted && limit.rlim_max > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        let fits = limit.rlim_cur.saturating_sub(RESERVED_FDS).max(16) as usize;
        if fits < configured {
            tracing::warn!(
                configured,
                open_file_limit = limit.rlim_cur,
                cap = fits,
                "server.max_connections lowered to fit the open-file limit"
            );
            return fits;
        }
    }
    configured
}

/// Serves `dispatch` on `listener` until `shutdown` is cancelled and every connection has
/// closed.
pub async fn serve(
    listener: TcpListener,
    dispatch: Dispatch,
    limits: ServeLimits,
    metrics: ConnMetrics,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry {
        shutdown: shutdown.clone(),
        ..Registry::default()
    });
    let tracker = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: let connections close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        if !registry.make_room(limits.max_connections) {
            metrics.shed.inc();
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (id, conn) = registry.insert();
        let (dispatch, registry, metrics, shutdown, http, limits) = (
            dispatch.clone(),
            registry.clone(),
            metrics.clone(),
            shutdown.clone(),
            http.clone(),
            limits.clone(),
        );
        tracker.spawn(async move {
            metrics.open.inc();
            let auth = Arc::new(ConnAuth::default());
            let wire = wire::Wire {
                dispatch: &dispatch,
                auth: &auth,
                conn: &conn,
                limits: &limits,
                metrics: &metrics,
                shutdown: &shutdown,
            };
            if let wire::Ended::HandOff(io) = wire.serve(stream).await {
                let service = {
                    let (conn, dispatch) = (conn.clone(), dispatch.clone());
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let busy = Busy::new(conn.clone());
                        let (dispatch, auth) = (dispatch.clone(), auth.clone());
                        async move {
                            let response = dispatch.call(request.map(Body::new), &auth).await;
                            // The connection stays busy until the body's last byte is sent.
                            Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
                        }
                    })
                };
                serve_hyper(&http, io, service, &conn, &metrics, &shutdown).await;
            }
            registry.remove(id);
            metrics.open.dec();
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Serves a connection the loop handed over with hyper until it closes, closing it
/// gracefully when it must make room or the server stops.
async fn serve_hyper<S>(
    http: &hyper::server::conn::http1::Builder,
    io: rewind::Rewind<tokio::net::TcpStream>,
    service: S,
    conn: &Conn,
    metrics: &ConnMetrics,
    shutdown: &CancellationToken,
) where
    S: hyper::service::HttpService<Incoming, ResBody = Tracked>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = pin!(http.serve_connection(TokioIo::new(io), service));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = conn.close.cancelled(), if !closing => {
                closing = true;
                if !shutdown.is_cancelled() {
                    metrics.shed.inc(); // closed to make room, not by the shutdown
                }
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_idlest_connection_goes_and_busy_ones_stay() {
        let registry = Registry::default();
        let (_, b) = registry.insert();
        let (_, a) = registry.insert();
        let busy_b = Busy::new(b.clone());
        assert!(registry.make_room(3), "below the cap");
        assert!(!a.close.is_cancelled() && !b.close.is_cancelled());
        let (_, c) = registry.insert();
        assert!(registry.make_room(3));
        assert!(a.close.is_cancelled(), "a: the idlest idle one");
        assert!(!b.close.is_cancelled(), "b is busy though idle longer");
        let (_, d) = registry.insert();
        assert!(registry.make_room(3), "a is closing already: c goes next");
        assert!(c.close.is_cancelled() && !d.close.is_cancelled());
        let (_, e) = registry.insert();
        let busy_d = Busy::new(d.clone());
        let busy_e = Busy::new(e.clone());
        assert!(!registry.make_room(3), "only busy connections left: refuse");
        drop(busy_e);
        assert!(registry.make_room(3), "e is idle again");
        assert!(e.close.is_cancelled());
        drop((busy_b, busy_d));
    }

    #[test]
    fn the_shutdown_closes_every_connection_through_its_own_token() {
        let registry = Registry::default();
        let (_, a) = registry.insert();
        assert!(!a.close.is_cancelled());
        registry.shutdown.cancel();
        assert!(a.close.is_cancelled(), "the one token a connection watches");
        let (_, late) = registry.insert();
        assert!(
            late.close.is_cancelled(),
            "accepted after the shutdown: closing"
        );
    }
}
