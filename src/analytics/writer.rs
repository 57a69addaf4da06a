//! The analytics writer: events go through a bounded queue to one thread that inserts
//! them in batched transactions. The request path only does a `try_send`: it never
//! blocks. A full queue drops the event, counted in `analytics_dropped_total` and logged
//! (at most every 10 s), never silently. `flush` (SIGTERM) waits until everything queued
//! is committed. Rows older than the retention are pruned by the same thread.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::event::CacheEvent;
use crate::cache::now_ms;
use crate::db::{DbError, DbHealth, OpenedFile, Writer};

/// The default queue size (see `analytics.queue_capacity`).
pub const QUEUE_CAPACITY: usize = crate::config::ANALYTICS_QUEUE_CAPACITY;
const BATCH: usize = 4_096;
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

enum Op {
    Event(Box<CacheEvent>),
    Shadow(Box<super::shadow::ShadowRow>),
    Flush(oneshot::Sender<()>),
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Clone)]
pub struct AnalyticsWriter {
    queue: SyncSender<Op>,
    counters: Arc<Counters>,
    last_drop_log: Arc<Mutex<Option<Instant>>>,
}

impl AnalyticsWriter {
    /// Opens (and migrates) the database at `path` and starts the writer thread.
    /// `retention_days` of 0 keeps rows forever.
    pub fn start(
        path: &Path,
        region: Arc<str>,
        retention_days: u32,
        capacity: usize,
    ) -> Result<Self, DbError> {
        Self::start_reporting(
            path,
            region,
            retention_days,
            capacity,
            Arc::new(DbHealth::default()),
        )
    }

    /// As [`AnalyticsWriter::start`], reporting write failures into `health` (shared
    /// with the SQLite cache tier, which writes the same file).
    pub fn start_reporting(
        path: &Path,
        region: Arc<str>,
        retention_days: u32,
        capacity: usize,
        health: Arc<DbHealth>,
    ) -> Result<Self, DbError> {
        let conn = OpenedFile::open(path)?;
        let (queue, receiver) = mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("analytics-writer".into())
            .spawn(move || {
                write_loop(
                    conn,
                    receiver,
                    region,
                    retention_days,
                    thread_counters,
                    health,
                )
            })
            .map_err(|source| DbError::Directory {
                path: "analytics writer thread".into(),
                source,
            })?;
        Ok(Self {
            queue,
            counters,
            last_drop_log: Arc::new(Mutex::new(None)),
        })
    }

    /// Queues one event without blocking.
    pub fn record(&self, event: CacheEvent) {
        match self.queue.try_send(Op::Event(Box::new(event))) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let mut last = self
                    .last_drop_log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    tracing::error!(
                        dropped_total = dropped,
                        "analytics queue full: events dropped"
                    );
                }
            }
        }
    }

    /// Queues one semantic shadow row without blocking (a full queue drops it, counted).
    pub fn record_shadow(&self, row: super::shadow::ShadowRow) {
        if self.queue.try_send(Op::Shadow(Box::new(row))).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every event queued before this call is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let queue = self.queue.clone();
        let sent = tokio::task::spawn_blocking(move || queue.send(Op::Flush(tx)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = rx.await;
        }
    }

    /// Events queued but not yet committed.
    pub fn depth(&self) -> u64 {
        let queued = self.counters.queued.load(Ordering::Relaxed);
        queued.saturating_sub(self.counters.written.load(Ordering::Relaxed))
    }

    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

struct WriterState {
    file: OpenedFile,
    health: Arc<DbHealth>,
    region: Arc<str>,
    retention_days: u32,
    counters: Arc<Counters>,
    last_prune: Option<Instant>,
    failing: bool,
}

impl WriterState {
    fn prune_if_due(&mut self) {
        if self.retention_days == 0 || self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        match prune(&self.file.conn, self.retention_days) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                rows = n,
                retention_days = self.retention_days,
                "analytics rows pruned"
            ),
            Err(e) => tracing::warn!(error = %e, "analytics pruning failed"),
        }
        self.last_prune = Some(Instant::now());
    }

    fn handle(&mut self, ops: Vec<Op>) {
        let mut events = Vec::with_capacity(ops.len());
        let mut shadows = Vec::new();
        let mut flushes = Vec::new();
        for op in ops {
            match op {
                Op::Event(e) => events.push(*e),
                Op::Shadow(row) => shadows.push(*row),
                Op::Flush(reply) => flushes.push(reply),
            }
        }
        // Rows go to the file at the path, even if it was deleted or replaced.
        self.file.reopen_if_stale("analytics");
        let polite = events.len() < BATCH;
        let mut ok = insert(&mut self.file.conn, &self.region, &events, polite);
        if ok.is_err() && self.file.reopen().is_ok() {
            // A reopened connection may succeed where the old one failed.
            ok = insert(&mut self.file.conn, &self.region, &events, polite);
        }
        if let Err(e) = super::shadow::insert(&mut self.file.conn, &self.region, &shadows) {
            tracing::warn!(error = %e, rows = shadows.len(), "semantic shadow rows not written");
        }
        self.health.report(Writer::Analytics, ok.is_ok());
        count_batch(ok, events.len() as u64, &self.counters, &mut self.failing);
        for reply in flushes {
            let _ = reply.send(());
        }
        self.prune_if_due();
    }
}

fn write_loop(
    file: OpenedFile,
    receiver: mpsc::Receiver<Op>,
    region: Arc<str>,
    retention_days: u32,
    counters: Arc<Counters>,
    health: Arc<DbHealth>,
) {
    let state = std::cell::RefCell::new(WriterState {
        file,
        health,
        region,
        retention_days,
        counters,
        last_prune: None,
        failing: false,
    });
    state.borrow_mut().prune_if_due();
    crate::batch::run_batches(
        &receiver,
        BATCH,
        Duration::from_secs(60),
        |ops| state.borrow_mut().handle(ops),
        || state.borrow_mut().prune_if_due(),
    );
}

fn count_batch(result: rusqlite::Result<()>, count: u64, counters: &Counters, failing: &mut bool) {
    match result {
        Ok(()) => {
            counters.written.fetch_add(count, Ordering::Relaxed);
            if *failing {
                tracing::info!("analytics writes recovered");
                *failing = false;
            }
        }
        Err(e) => {
            // The rows cannot be kept anywhere else: count them as dropped, loudly.
            counters.written.fetch_add(count, Ordering::Relaxed);
            counters.dropped.fetch_add(count, Ordering::Relaxed);
            if !*failing {
                tracing::error!(error = %e, rows = count, "analytics insert failed: rows dropped");
                *failing = true;
            }
        }
    }
}

/// Rows per INSERT statement: one statement step per 64 rows instead of per row.
const ROWS_PER_STATEMENT: usize = 64;
const COLUMNS: usize = 17;
/// Statements between yields of the writer thread: 4 × 64 rows, ~0.4 ms of work. A
/// writer that woke with a batch used to run its whole transaction (milliseconds at high
/// rates) while requests on the same core waited: the gateway's p99. A writer that is
/// behind (its batch came full) yields four times less often, so it catches up: yielding
/// after every statement, or running at nice 5, made it drop events at saturation
/// (bench/RESULTS.md).
const YIELD_EVERY: usize = 4;

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO cache_events (ts, region, endpoint, namespace, model, tier, status,
             key_hash, prompt_tokens, completion_tokens, latency_ms, relay_region,
             cost_usd, saved_usd, usage_estimated, similarity, embedding_cost_usd) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..COLUMNS {
            if c > 0 {
                sql.push(',');
            }
            sql.push('?');
            sql.push_str(&(r * COLUMNS + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// The statement text for every chunk size, built once: the statement cache is looked up
/// by text, and formatting 1,088 placeholders per batch cost the writer thread more than
/// a tenth of its time (profile in bench/RESULTS.md).
fn statement_for(rows: usize) -> &'static str {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    &TEXTS.get_or_init(|| (0..=ROWS_PER_STATEMENT).map(insert_sql).collect())[rows]
}

/// Inserts `events` in one transaction; `polite` lets request workers on the same core
/// run between slices of it.
fn insert(
    conn: &mut Connection,
    region: &str,
    events: &[CacheEvent],
    polite: bool,
) -> rusqlite::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for (i, chunk) in statement_chunks(events).enumerate() {
        let every = if polite { YIELD_EVERY } else { 4 * YIELD_EVERY };
        if i > 0 && i % every == 0 {
            // Let request workers on this core run between slices of a big batch.
            std::thread::yield_now();
        }
        let mut stmt = tx.prepare_cached(statement_for(chunk.len()))?;
        let keys: Vec<[u8; 64]> = chunk
            .iter()
            .map(|e| e.key.map(|k| k.hex_bytes()).unwrap_or([0; 64]))
            .collect();
        // Every bound value must outlive the statement call: gather them first.
        let texts: Vec<[&str; 6]> = chunk
            .iter()
            .zip(&keys)
            .map(|(e, key)| {
                [
                    region,
                    e.endpoint.as_str(),
                    e.namespace.as_ref(),
                    e.model.as_ref(),
                    e.tier.as_str(),
                    key_text(key),
                ]
            })
            .collect();
        let numbers: Vec<[i64; 5]> = chunk
            .iter()
            .map(|e| {
                [
                    e.ts_ms as i64,
                    i64::from(e.status),
                    e.prompt_tokens as i64,
                    e.completion_tokens as i64,
                    i64::from(e.usage_estimated),
                ]
            })
            .collect();
        let relay_regions: Vec<Option<&str>> =
            chunk.iter().map(|e| e.relay_region.as_deref()).collect();
        let similarities: Vec<Option<f64>> =
            chunk.iter().map(|e| e.similarity.map(f64::from)).collect();
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * COLUMNS);
        for (i, e) in chunk.iter().enumerate() {
            let (t, n) = (&texts[i], &numbers[i]);
            values.extend([
                &n[0] as &dyn rusqlite::ToSql,
                &t[0],
                &t[1],
                &t[2],
                &t[3],
                &t[4],
                &n[1],
                &t[5],
                &n[2],
                &n[3],
                &e.latency_ms,
                &relay_regions[i],
                &e.cost_usd,
                &e.saved_usd,
                &n[4],
                &similarities[i],
                &e.embedding_cost_usd,
            ]);
        }
        stmt.execute(values.as_slice())?;
    }
    tx.commit()
}

/// Splits a batch into chunks of 64 rows, then powers of two: seven statement shapes in
/// all, so every chunk finds its statement prepared (a remainder of any size used to
/// re-parse a statement of up to 1,088 placeholders once per batch).
fn statement_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let take = if rows.len() >= ROWS_PER_STATEMENT {
            ROWS_PER_STATEMENT
        } else {
            1 << rows.len().ilog2()
        };
        let (chunk, rest) = rows.split_at(take);
        rows = rest;
        Some(chunk)
    })
}

/// The key column: its hex digits, or empty for requests that never got a key.
fn key_text(hex: &[u8; 64]) -> &str {
    if hex[0] == 0 {
        return "";
    }
    std::str::from_utf8(hex).unwrap_or_default()
}

/// Deletes rows older than `days`; returns how many.
pub fn prune(conn: &Connection, days: u32) -> rusqlite::Result<usize> {
    let cutoff = now_ms().saturating_sub(u64::from(days) * 86_400_000);
    super::shadow::prune(conn, cutoff)?;
    conn.execute("DELETE FROM cache_events WHERE ts < ?1", [cutoff as i64])
}

#[cfg(test)]
mod tests;
