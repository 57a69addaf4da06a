use std::process::ExitCode;

/// mimalloc: every request allocates (the L1-hit profile showed glibc malloc/free at ~7%
/// of CPU). Its effect was not measured apart from the changes that landed with it; see
/// bench/RESULTS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use edge_gateway::analytics::cli as report;
use edge_gateway::cache::{RedisTier, purge_entries};
use edge_gateway::cli::{AnalyticsArgs, CacheCommand, Cli, Command, Format};
use edge_gateway::clock::Clock;
use edge_gateway::config::{Config, ProcessEnv};
use edge_gateway::{App, db, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), &ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("edge-gateway: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&config),
        Command::Serve => serve(config),
        Command::Migrate => migrate(&config),
        Command::Analytics(args) => analytics(&config, &args),
        Command::Cache {
            action: CacheCommand::Purge { namespace },
        } => purge(&config, namespace.as_deref()),
    }
}

fn analytics(config: &Config, args: &AnalyticsArgs) -> ExitCode {
    let now = Clock::system().now_ms();
    let request =
        match report::Request::parse(&args.since, args.until.as_deref(), &args.group_by, now) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("edge-gateway analytics: {e}");
                return ExitCode::from(2);
            }
        };
    if args.global {
        return global_analytics(config, &request, args.format);
    }
    if args.semantic {
        let agreement = edge_gateway::analytics::Agreement {
            min_answer_similarity: args.answer_agreement,
            max_disagreement: args.max_disagreement,
        };
        return match report::shadow_report(
            &config.sqlite.path,
            request.since_ms,
            request.until_ms,
            agreement,
        ) {
            Ok(report) => print_report(args.format, &report, report.to_table(), report.to_csv()),
            Err(e) => {
                eprintln!("edge-gateway analytics --semantic: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match report::local_report(&config.sqlite.path, &request) {
        Ok(report) => print_report(args.format, &report, report.to_table(), report.to_csv()),
        Err(e) => {
            eprintln!("edge-gateway analytics: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a report in the asked format (table and CSV rendered by the caller).
fn print_report(
    format: Format,
    report: &impl serde::Serialize,
    table: String,
    csv: String,
) -> ExitCode {
    match format {
        Format::Table => print!("{table}"),
        Format::Csv => print!("{csv}"),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
    }
    ExitCode::SUCCESS
}

fn global_analytics(config: &Config, request: &report::Request, format: Format) -> ExitCode {
    let Some(redis) = RedisTier::from_config(&config.redis) else {
        eprintln!(
            "edge-gateway analytics --global: needs REDIS_URL or REDIS_CLUSTER_URLS (the shared counters live in Redis)"
        );
        return ExitCode::FAILURE;
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                if !redis.try_recover().await {
                    return Err("Redis is unreachable: the global view is unavailable (local figures: run without --global)".to_owned());
                }
                report::global_report(&redis, request).await
            })
        });
    match result {
        Ok(global) => {
            match format {
                Format::Table => print!("{}", global.to_table()),
                Format::Csv => print!("{}", global.to_csv()),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&global.to_json()).unwrap_or_default()
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway analytics --global: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(config: &Config) -> ExitCode {
    let mut conn = match db::open(&config.sqlite.path) {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("edge-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    match db::migrate(&mut conn) {
        Ok(applied) if applied.is_empty() => {
            println!("{}: schema up to date", config.sqlite.path.display());
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            for name in applied {
                println!("applied {name}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn purge(config: &Config, namespace: Option<&str>) -> ExitCode {
    let scope = namespace.unwrap_or("all namespaces");
    let mut ok = true;
    match db::open_migrated(&config.sqlite.path).map(|conn| purge_entries(&conn, namespace)) {
        Ok(Ok(n)) => println!("sqlite: deleted {n} entries ({scope})"),
        Ok(Err(e)) => {
            eprintln!("sqlite: purge failed: {e}");
            ok = false;
        }
        Err(e) => {
            eprintln!("sqlite: {e}");
            ok = false;
        }
    }
    if let Some(redis) = RedisTier::from_config(&config.redis) {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(async {
                    let deleted = redis.purge(namespace).await.map_err(|e| e.to_string())?;
                    if redis.try_recover().await {
                        // Running instances drop their L1 copies at their next read of the
                        // purge generations, and forget their semantic entries.
                        if let Err(e) = redis.bump_generation(namespace).await {
                            eprintln!("redis: purge generation not bumped ({e}): running instances keep their L1 copies until TTL");
                        }
                        let at = Clock::system().now_ms();
                        let max = config.semantic.max_entries;
                        if let Err(e) =
                            edge_gateway::semantic::publish_purge(&redis, namespace, at, max).await
                        {
                            eprintln!("redis: semantic purge not shared: {e}");
                        }
                    }
                    Ok(deleted)
                })
            });
        match result {
            Ok(n) => println!("redis: deleted {n} keys ({scope})"),
            Err(e) => {
                eprintln!("redis: purge failed: {e}");
                ok = false;
            }
        }
    } else {
        println!("redis: not configured");
    }
    println!(
        "note: running instances drop their L1 copies within redis.purge_poll_ms (instances cut off from Redis: when they reconnect)"
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn check_config(config: &Config) -> ExitCode {
    match toml::to_string_pretty(config) {
        Ok(text) => {
            println!("{text}");
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-gateway: cannot print configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
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
