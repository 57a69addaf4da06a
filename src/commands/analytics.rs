//! `edge-gateway analytics`: the local report, the global one (Redis counters) and the
//! semantic shadow report, as a table, CSV or JSON.

use std::process::ExitCode;

use crate::analytics::cli as report;
use crate::cache::RedisTier;
use crate::cli::{AnalyticsArgs, Format};
use crate::clock::Clock;
use crate::config::Config;

pub(super) fn analytics(config: &Config, args: &AnalyticsArgs) -> ExitCode {
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
        let agreement = crate::analytics::Agreement {
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
    let result = super::block_on(async {
        if !redis.try_recover().await {
            return Err("Redis is unreachable: the global view is unavailable (local figures: run without --global)".to_owned());
        }
        report::global_report(&redis, request).await
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
