//! The `edge-gateway` commands (SPEC "Commands"): `serve` (the default), `check-config`,
//! `migrate`, `analytics` and `cache purge`. The binary only parses its arguments and
//! calls [`run`]; everything it does is here, where the tests can reach it.

mod analytics;
mod purge;
mod serve;

use std::process::ExitCode;

use crate::cli::{CacheCommand, Cli, Command};
use crate::config::{Config, ProcessEnv};
use crate::db;

/// Runs `work` on a single-threaded runtime (the commands that talk to Redis).
fn block_on<T>(work: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(work))
}

/// Routes SQLite's allocations to mimalloc (see `db::alloc`); `false` when SQLite was
/// already initialized and keeps the system allocator.
///
/// # Safety
/// Call first thing in `main`: before any SQLite connection is opened and while no other
/// thread can use SQLite.
pub unsafe fn sqlite_on_mimalloc() -> bool {
    // SAFETY: the caller's guarantee is the one `use_mimalloc` needs.
    unsafe { db::alloc::use_mimalloc() }
}

/// Runs the command `cli` names with the configuration from the file and environment.
/// Exit codes: 0 done, 1 failed, 2 invalid configuration or arguments.
pub fn run(cli: Cli) -> ExitCode {
    let config = match Config::load(cli.config.as_deref(), &ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("edge-gateway: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&config),
        Command::Serve => serve::serve(config),
        Command::Migrate => migrate(&config),
        Command::Analytics(args) => analytics::analytics(&config, &args),
        Command::Cache {
            action: CacheCommand::Purge { namespace },
        } => purge::purge(&config, namespace.as_deref()),
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
