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

mod insert;
use crate::clock::Clock;
use crate::db::{DbError, DbHealth, OpenedFile, Writer};
use insert::insert;

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
    #[cfg(any(test, feature = "testing"))]
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
            Clock::system(),
        )
    }

    /// As [`AnalyticsWriter::start`], reporting write failures into `health` (shared
    /// with the SQLite cache tier, which writes the same file) and pruning by `clock`.
    pub fn start_reporting(
        path: &Path,
        region: Arc<str>,
        retention_days: u32,
        capacity: usize,
        health: Arc<DbHealth>,
        clock: Clock,
    ) -> Result<Self, DbError> {
        let (queue, receiver) = mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let state = WriterState {
            file: OpenedFile::open(path)?,
            health,
            region,
            retention_days,
            counters: counters.clone(),
            clock,
            last_prune: None,
            failing: false,
            capacity,
        };
        std::thread::Builder::new()
            .name("analytics-writer".into())
            .spawn(move || write_loop(state, receiver))
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
    clock: Clock,
    last_prune: Option<Instant>,
    failing: bool,
    /// The queue's bound: how far behind the writer may fall before it drops events.
    capacity: usize,
}

/// Whether the writer yields the core often (every 256 rows) while inserting this
/// batch: yes unless the events still queued behind it fill a quarter of the queue.
/// A full batch alone used to make it yield four times less often, and at saturation
/// every batch came full: the writer held the serving core 1.5 ms at a time and the
/// gateway's p99 at saturation was 3.4-5.5 ms; polite, 2.8-3.3 ms at the same
/// throughput and with no event dropped (bench/RESULTS.md). A writer truly falling
/// behind still takes longer turns, so it catches up before the queue fills.
fn polite(queued: u64, written_after_batch: u64, capacity: usize) -> bool {
    queued.saturating_sub(written_after_batch) < capacity as u64 / 4
}

impl WriterState {
    fn prune_if_due(&mut self) {
        if self.retention_days == 0 || self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        match prune(&self.file.conn, self.retention_days, self.clock.now_ms()) {
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
        let polite = polite(
            self.counters.queued.load(Ordering::Relaxed),
            self.counters.written.load(Ordering::Relaxed) + events.len() as u64,
            self.capacity,
        );
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

fn write_loop(state: WriterState, receiver: mpsc::Receiver<Op>) {
    let state = std::cell::RefCell::new(state);
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

/// Deletes rows older than `days` before `now_ms`; returns how many.
pub fn prune(conn: &Connection, days: u32, now_ms: u64) -> rusqlite::Result<usize> {
    let cutoff = now_ms.saturating_sub(u64::from(days) * 86_400_000);
    super::shadow::prune(conn, cutoff)?;
    conn.execute("DELETE FROM cache_events WHERE ts < ?1", [cutoff as i64])
}

#[cfg(test)]
mod tests;
