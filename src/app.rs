//! Building and running the gateway: `App::build` binds the listener (port 0 in tests)
//! and wires the shared state; `App::run_until` serves until a shutdown signal, then
//! drains in-flight requests for at most `server.shutdown_grace_secs`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

pub use crate::state::{AppState, StartError};

pub struct App {
    listener: TcpListener,
    state: AppState,
    /// Stops background tasks (Redis prober, ...) once serving has ended.
    background: CancellationToken,
}

impl App {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let addr = SocketAddr::new(config.server.bind, config.server.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let state = AppState::new(config)?;
        let background = CancellationToken::new();
        if state.limits.is_enabled() {
            let (state, stop) = (state.clone(), background.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(60)) => state.limits.shrink(),
                    }
                }
            });
        }
        let health = &state.config.relay.health;
        state.relay.spawn_prober(
            Duration::from_millis(health.probe_interval_ms),
            background.clone(),
        );
        if let Some(redis) = state.cache.redis() {
            if !redis.try_recover().await {
                tracing::warn!("redis is not reachable at start: serving from SQLite until it is");
            }
            redis.spawn_prober(background.clone());
            // Learn the current generations before serving: a purge made from now on is
            // one this instance must apply.
            state.cache.apply_remote_purges().await;
            let (watcher, stop) = (state.clone(), background.clone());
            let every = Duration::from_millis(state.config.redis.purge_poll_ms);
            tokio::spawn(async move {
                let state = watcher;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    for namespace in state.cache.apply_remote_purges().await {
                        state.metrics.cache.purge_generations_seen.inc();
                        if let Some(semantic) = &state.semantic {
                            semantic.forget_namespace(namespace.as_deref());
                        }
                        tracing::info!(
                            namespace = namespace.as_deref().unwrap_or("*"),
                            "purge from another instance applied"
                        );
                    }
                }
            });
            if let Some(global) = &state.analytics.global {
                global.spawn_flusher(
                    redis.clone(),
                    Duration::from_millis(state.config.analytics.global_flush_ms),
                    background.clone(),
                );
            }
        }
        if let Some(semantic) = &state.semantic {
            let loaded = semantic.load().await;
            tracing::info!(entries = loaded, "semantic cache on");
            semantic.spawn_background(background.clone());
        }
        Ok(Self {
            listener,
            state,
            background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits for in-flight
    /// requests, at most the configured grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let grace = Duration::from_secs(self.state.config.server.shutdown_grace_secs);
        let dispatch = crate::http::Dispatch::new(self.state.clone());
        let server = &self.state.config.server;
        let limits = crate::server::ServeLimits {
            max_connections: crate::server::fitting_cap(server.max_connections),
            header_timeout: Duration::from_millis(server.header_timeout_ms),
            // Above the guard's limit, so the guard answers 431 with a JSON body.
            max_headers: server.max_headers.saturating_mul(4).max(100),
            max_body_bytes: server.max_body_bytes,
        };
        let draining = CancellationToken::new();
        let serve = crate::server::serve(
            self.listener,
            dispatch,
            limits,
            self.state.metrics.http.connections.clone(),
            draining.clone(),
        );
        let deadline = async {
            shutdown.await;
            tracing::info!("shutdown requested: draining in-flight requests");
            draining.cancel();
            tokio::time::sleep(grace).await;
        };
        // Connections first, then relay calls and streams whose clients have left:
        // their answers are paid for, so they are stored and counted.
        let work = self.state.work.clone();
        let drained = async {
            serve.await;
            work.close();
            work.wait().await;
        };
        tokio::select! {
            () = drained => {}
            () = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over; cutting unfinished relay calls");
                self.state.cut.cancel();
                work.close();
                // Cut work ends at once, writing its rows; give it a moment to do so.
                let _ = tokio::time::timeout(Duration::from_secs(2), work.wait()).await;
            }
        }
        self.background.cancel();
        // Everything queued lands before the process exits: analytics rows, cache
        // entries for SQLite, and this instance's share of the global counters.
        self.state.analytics.writer.flush().await;
        self.state.cache.sqlite().flush().await;
        if let (Some(global), Some(redis)) =
            (&self.state.analytics.global, self.state.cache.redis())
        {
            global.flush(redis).await;
        }
        tracing::info!("stopped");
    }
}
