//! `edge-gateway cache purge [--namespace NS]`: SQLite here, Redis for every instance,
//! and the purge generation that makes running instances drop their L1 copies.

use std::process::ExitCode;

use crate::cache::{RedisTier, purge_entries};
use crate::clock::Clock;
use crate::config::Config;
use crate::db;

pub(super) fn purge(config: &Config, namespace: Option<&str>) -> ExitCode {
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
        let result = super::block_on(async {
            let deleted = redis.purge(namespace).await.map_err(|e| e.to_string())?;
            if redis.try_recover().await {
                // Running instances drop their L1 copies at their next read of the
                // purge generations, and forget their semantic entries.
                if let Err(e) = redis.bump_generation(namespace).await {
                    eprintln!(
                        "redis: purge generation not bumped ({e}): running instances keep their L1 copies until TTL"
                    );
                }
                let at = Clock::system().now_ms();
                let max = config.semantic.max_entries;
                if let Err(e) = crate::semantic::publish_purge(&redis, namespace, at, max).await {
                    eprintln!("redis: semantic purge not shared: {e}");
                }
            }
            Ok(deleted)
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
