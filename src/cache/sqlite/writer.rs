//! The SQLite tier's writer thread: batched inserts and purges, expiry and size
//! cleanup, and following the file at `SQLITE_PATH` if it is deleted or replaced.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::{BATCH, KnownKeys, WriteOp, load_keys, lock_keys, purge_entries};
use crate::clock::Clock;
use crate::db::{self, DbHealth, OpenedFile, Writer};
use crate::keying::CacheKey;

/// What the writer thread shares with the tier.
pub(super) struct Shared {
    pub(super) known: KnownKeys,
    pub(super) reader: Arc<Mutex<Connection>>,
    pub(super) health: Arc<DbHealth>,
    pub(super) clock: Clock,
}

pub(super) fn write_loop(
    file: OpenedFile,
    queue: mpsc::Receiver<WriteOp>,
    max_bytes: u64,
    cleanup_every: Duration,
    shared: Shared,
) {
    struct State {
        file: OpenedFile,
        last_cleanup: Instant,
        failing: bool,
    }
    let state = std::cell::RefCell::new(State {
        file,
        last_cleanup: Instant::now(),
        failing: false,
    });
    // A deleted or replaced file: write to the one at the path from now on, and forget
    // the keys of the old one (their rows are gone with it).
    let follow_the_path = |s: &mut State| {
        if !s.file.reopen_if_stale("cache") {
            return;
        }
        *lock_keys(&shared.known) =
            load_keys(&s.file.conn, shared.clock.now_ms()).unwrap_or_default();
        if let Ok(reader) = db::open(s.file.path()) {
            *shared
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = reader;
        }
    };
    let cleanup_if_due = |s: &mut State| {
        if s.last_cleanup.elapsed() < cleanup_every {
            return;
        }
        match cleanup(&s.file.conn, max_bytes, shared.clock.now_ms()) {
            Ok(gone) => {
                let mut keys = lock_keys(&shared.known);
                for key in gone {
                    keys.remove(&key);
                }
            }
            Err(e) => tracing::warn!(error = %e, "sqlite cache cleanup failed"),
        }
        s.last_cleanup = Instant::now();
    };
    crate::batch::run_batches(
        &queue,
        BATCH,
        cleanup_every.min(Duration::from_secs(5)),
        |batch| {
            let s = &mut *state.borrow_mut();
            follow_the_path(s);
            let purged = batch.iter().any(|op| matches!(op, WriteOp::Purge(..)));
            let result = apply(&mut s.file.conn, batch, shared.clock.now_ms());
            shared.health.report(Writer::Cache, result.is_ok());
            match (&result, s.failing) {
                (Err(e), false) => {
                    tracing::error!(error = %e, "sqlite cache writes failing (entries stay in L1/Redis only)");
                    s.failing = true;
                }
                (Ok(()), true) => {
                    tracing::info!("sqlite cache writes recovered");
                    s.failing = false;
                }
                _ => {}
            }
            if purged && let Ok(keys) = load_keys(&s.file.conn, shared.clock.now_ms()) {
                *lock_keys(&shared.known) = keys;
            }
            cleanup_if_due(s);
        },
        || {
            let s = &mut *state.borrow_mut();
            follow_the_path(s);
            cleanup_if_due(s);
        },
    );
}

/// Writes one batch in one transaction; `now_ms` is the rows' `created_at_ms`.
pub(super) fn apply(
    conn: &mut Connection,
    batch: Vec<WriteOp>,
    now_ms: u64,
) -> rusqlite::Result<()> {
    let mut replies = Vec::new();
    let tx = conn.transaction()?;
    let mut outcome = Ok(());
    for op in batch {
        match op {
            WriteOp::Put(key, a) => {
                let r = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO cache_entries
                         (key, namespace, endpoint, model, body, prompt_tokens, completion_tokens,
                          created_at_ms, expires_at_ms, size, usage_estimated)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            &*key.hex_str(),
                            a.namespace.as_ref(),
                            a.endpoint.as_str(),
                            a.model.as_ref(),
                            a.body.as_ref(),
                            a.usage.prompt_tokens as i64,
                            a.usage.completion_tokens as i64,
                            now_ms as i64,
                            a.expires_at_ms as i64,
                            a.body.len() as i64,
                            i64::from(a.usage.estimated),
                        ])
                    });
                if let Err(e) = r {
                    outcome = Err(e);
                }
            }
            WriteOp::Semantic(row) => {
                if let Err(e) = super::semantic::insert(&tx, &row) {
                    outcome = Err(e);
                }
            }
            WriteOp::Purge(ns, reply) => {
                let r = purge_entries(&tx, ns.as_deref()).map_err(|e| e.to_string());
                replies.push(Reply::Purge(reply, r));
            }
            WriteOp::Flush(reply) => replies.push(Reply::Flush(reply)),
        }
    }
    let committed = tx.commit();
    for reply in replies {
        match reply {
            Reply::Purge(tx, r) => {
                let r = match &committed {
                    Ok(()) => r,
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send(r);
            }
            Reply::Flush(tx) => {
                let _ = tx.send(());
            }
        }
    }
    committed.and(outcome)
}

enum Reply {
    Purge(
        oneshot::Sender<Result<usize, String>>,
        Result<usize, String>,
    ),
    Flush(oneshot::Sender<()>),
}

/// Deletes expired entries and, past `max_bytes`, the oldest; returns the keys removed.
pub(super) fn cleanup(
    conn: &Connection,
    max_bytes: u64,
    now_ms: u64,
) -> rusqlite::Result<Vec<CacheKey>> {
    let collect =
        |stmt: &mut rusqlite::Statement<'_>, param: i64| -> rusqlite::Result<Vec<CacheKey>> {
            let keys = stmt
                .query_map([param], |row| row.get::<_, String>(0))?
                .filter_map(|k| k.ok().and_then(|k| CacheKey::from_hex(&k)))
                .collect();
            Ok(keys)
        };
    let mut gone = collect(
        &mut conn.prepare("DELETE FROM cache_entries WHERE expires_at_ms <= ?1 RETURNING key")?,
        now_ms as i64,
    )?;
    let total: i64 = conn.query_row(
        "SELECT coalesce(sum(size), 0) FROM cache_entries",
        [],
        |r| r.get(0),
    )?;
    if total as u64 > max_bytes {
        let excess = total as u64 - max_bytes;
        // The shortest run of oldest rows whose sizes add up to the excess: a row goes
        // when the rows older than it do not cover the excess yet.
        gone.extend(collect(
            &mut conn.prepare(
                "DELETE FROM cache_entries WHERE key IN (
                     SELECT key FROM (
                         SELECT key,
                                sum(size) OVER (ORDER BY created_at_ms, key
                                                ROWS UNBOUNDED PRECEDING) - size AS older
                         FROM cache_entries
                     ) WHERE older < ?1
                 ) RETURNING key",
            )?,
            excess as i64,
        )?);
    }
    if !gone.is_empty() {
        tracing::debug!(removed = gone.len(), "sqlite cache cleanup");
    }
    super::semantic::cleanup(conn, now_ms)?;
    Ok(gone)
}
