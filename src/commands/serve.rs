//! `edge-gateway serve`: telemetry, the runtime, the app, and a graceful stop on
//! SIGTERM / SIGINT.

use std::process::ExitCode;

use crate::config::Config;
use crate::{App, telemetry};

pub(super) fn serve(config: Config) -> ExitCode {
    let telemetry = telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = ShutdownSignal::install();
        let app = match App::build(config).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let state = app.state();
        let config = &state.config;
        tracing::info!(
            mode = if config.is_managed() { "managed" } else { "pass-through" },
            region = %config.edge_region,
            relay_url = %shown_url(&config.relay.url),
            "edge-gateway listening on {}",
            app.local_addr()
        );
        for region in config.effective_regions() {
            let url = shown_url(&region.url);
            tracing::info!(relay_region = %region.name, url = %url, weight = config.region_weight(&region), backup = region.backup, "relay region");
            if !region.url.trim_end_matches('/').ends_with("/v1") {
                tracing::warn!(relay_region = %region.name, url = %url,
                    "relay URL does not end with /v1: OpenAI-compatible relays serve /v1/..., so requests will likely get 404 (set RELAY_URL to the base URL including /v1)");
            }
        }
        app.run_until(shutdown.received()).await;
        // Spans still batched go out before the process ends.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        ExitCode::SUCCESS
    })
}

/// A URL as it may be logged: without user or password.
fn shown_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "<invalid>".into(),
    }
}

/// SIGTERM / SIGINT, listened for from before the gateway says it is listening: a
/// signal that came earlier used to end the process by its default action, without the
/// drain and the final flushes (a `docker stop` right after start, or a test).
struct ShutdownSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn received(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(self.term) => {},
                () = next(self.interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
