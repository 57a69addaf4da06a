//! The SQLite tier: the local durable copy of the cache. Every stored entry is queued to
//! one writer thread that inserts in batched transactions, deletes expired rows and
//! keeps the total size under `sqlite.max_cache_bytes` (oldest evicted). Reads run on the
//! blocking pool with their own connection (WAL: readers never wait for the writer), and
//! only for keys the tier holds: an in-memory set of its keys (32 bytes each) answers
//! "not here" for every other miss without leaving the async runtime.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::answer::{CachedAnswer, Usage};
use crate::clock::Clock;
use crate::db::{self, DbError, DbHealth, OpenedFile};
use crate::endpoint::Endpoint;
use crate::keying::CacheKey;

mod semantic;
mod writer;

pub use semantic::{SemanticRow, vector_bytes, vector_from_bytes};

use writer::{Shared, write_loop};

const QUEUE: usize = 16_384;
const BATCH: usize = 512;

enum WriteOp {
    Put(CacheKey, Arc<CachedAnswer>),
    Semantic(Box<SemanticRow>),
    Purge(Option<String>, oneshot::Sender<Result<usize, String>>),
    Flush(oneshot::Sender<()>),
}

/// The keys present in the table (possibly a few more: a false "maybe" costs one read),
/// each with the expiry of the entry last written for it. Hashed as L1 hashes its keys
/// (SipHash, the default, cost ~270 instructions on every Redis hit and every miss).
type KeySet = HashMap<CacheKey, u64, super::KeyHasher>;
type KnownKeys = Arc<Mutex<KeySet>>;

fn lock_keys(keys: &KnownKeys) -> std::sync::MutexGuard<'_, KeySet> {
    keys.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone)]
pub struct SqliteTier {
    reader: Arc<Mutex<Connection>>,
    writes: SyncSender<WriteOp>,
    dropped: Arc<AtomicU64>,
    known: KnownKeys,
    health: Arc<DbHealth>,
    clock: Clock,
}

impl SqliteTier {
    /// Opens (and migrates) the database and starts the writer thread.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        cleanup_every: Duration,
        clock: Clock,
    ) -> Result<Self, DbError> {
        let writer = OpenedFile::open(path)?;
        let reader = db::open(path)?;
        let known: KnownKeys = Arc::new(Mutex::new(load_keys(&reader, clock.now_ms()).map_err(
            |source| DbError::Sqlite {
                path: path.display().to_string(),
                source,
            },
        )?));
        let (writes, queue) = mpsc::sync_channel(QUEUE);
        let health = Arc::new(DbHealth::default());
        let reader = Arc::new(Mutex::new(reader));
        let shared = Shared {
            known: known.clone(),
            reader: reader.clone(),
            health: health.clone(),
            clock: clock.clone(),
        };
        std::thread::Builder::new()
            .name("sqlite-cache-writer".into())
            .spawn(move || write_loop(writer, queue, max_bytes, cleanup_every, shared))
            .map_err(|e| DbError::Directory {
                path: "writer thread".into(),
                source: e,
            })?;
        Ok(Self {
            reader,
            writes,
            dropped: Arc::new(AtomicU64::new(0)),
            known,
            health,
            clock,
        })
    }

    /// Whether the database's writers succeed (this tier's and the analytics writer
    /// sharing [`SqliteTier::health`]).
    pub fn is_up(&self) -> bool {
        self.health.is_up()
    }

    /// The health flags to share with the analytics writer (same file).
    pub fn health(&self) -> Arc<DbHealth> {
        self.health.clone()
    }

    pub async fn get(&self, key: CacheKey) -> Option<CachedAnswer> {
        if !lock_keys(&self.known).contains_key(&key) {
            return None;
        }
        let reader = self.reader.clone();
        let now = self.clock.now_ms();
        let result = tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            read_entry(&conn, &key, now)
        })
        .await;
        match result {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "sqlite cache read failed; treating as a miss");
                None
            }
            Err(_) => None,
        }
    }

    /// Queues the entry; never blocks. A full queue drops the write (counted).
    pub fn put(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        let expires_at_ms = answer.expires_at_ms;
        match self.writes.try_send(WriteOp::Put(key, answer)) {
            Ok(()) => {
                lock_keys(&self.known).insert(key, expires_at_ms);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Keeps the local fallback warm with an entry found in Redis: written unless this
    /// very entry (same key, same expiry) was written already. Without the check every
    /// Redis hit that L1 could not keep rewrote its row, a write per hit.
    pub fn keep_warm(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        if lock_keys(&self.known).get(&key) != Some(&answer.expires_at_ms) {
            self.put(key, answer);
        }
    }

    fn queue(&self, op: WriteOp) {
        if self.writes.try_send(op).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes dropped because the writer's queue was full.
    pub fn dropped_writes(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Deletes every entry (or a namespace's); waits for queued writes to land first.
    pub async fn purge(&self, namespace: Option<&str>) -> Result<usize, String> {
        let (tx, rx) = oneshot::channel();
        self.send(WriteOp::Purge(namespace.map(str::to_owned), tx))
            .await?;
        rx.await.map_err(|_| "sqlite writer stopped".to_owned())?
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(WriteOp::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn send(&self, op: WriteOp) -> Result<(), String> {
        let writes = self.writes.clone();
        tokio::task::spawn_blocking(move || writes.send(op))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "sqlite writer stopped".to_owned())
    }
}

fn load_keys(conn: &Connection, now_ms: u64) -> rusqlite::Result<KeySet> {
    let mut stmt =
        conn.prepare("SELECT key, expires_at_ms FROM cache_entries WHERE expires_at_ms > ?1")?;
    let keys = stmt
        .query_map([now_ms as i64], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?
        .filter_map(|row| {
            let (key, expires) = row.ok()?;
            Some((CacheKey::from_hex(&key)?, u64::try_from(expires).ok()?))
        })
        .collect();
    Ok(keys)
}

fn read_entry(
    conn: &Connection,
    key: &CacheKey,
    now_ms: u64,
) -> rusqlite::Result<Option<CachedAnswer>> {
    conn.prepare_cached(
        "SELECT endpoint, namespace, model, body, prompt_tokens, completion_tokens, expires_at_ms,
                usage_estimated
         FROM cache_entries WHERE key = ?1 AND expires_at_ms > ?2",
    )?
    .query_row(params![&*key.hex_str(), now_ms as i64], |row| {
        let endpoint: String = row.get(0)?;
        let namespace: String = row.get(1)?;
        let model: String = row.get(2)?;
        let body: Vec<u8> = row.get(3)?;
        Ok(Endpoint::from_label(&endpoint).map(|endpoint| {
            CachedAnswer::restore(
                endpoint,
                Arc::from(namespace),
                Arc::from(model),
                Bytes::from(body),
                Usage {
                    prompt_tokens: row.get::<_, i64>(4).unwrap_or(0) as u64,
                    completion_tokens: row.get::<_, i64>(5).unwrap_or(0) as u64,
                    estimated: row.get::<_, i64>(7).unwrap_or(0) != 0,
                },
                row.get::<_, i64>(6).unwrap_or(0) as u64,
            )
        }))
    })
    .optional()
    .map(Option::flatten)
}

/// Deletes all entries, or those of `namespace` and its partitions. Used by the writer
/// and by `edge-gateway cache purge`.
pub fn purge_entries(conn: &Connection, namespace: Option<&str>) -> rusqlite::Result<usize> {
    delete_namespace(conn, "semantic_entries", namespace)?;
    delete_namespace(conn, "cache_entries", namespace)
}

/// Deletes the rows of `table` (all, or those of `namespace` and its partitions
/// `namespace/...`; a mere prefix such as `acmeish` for `acme` is another namespace).
fn delete_namespace(
    conn: &Connection,
    table: &'static str,
    namespace: Option<&str>,
) -> rusqlite::Result<usize> {
    match namespace {
        None => conn.execute(&format!("DELETE FROM {table}"), []),
        Some(ns) => conn.execute(
            &format!(
                "DELETE FROM {table}
                 WHERE namespace = ?1 OR substr(namespace, 1, length(?1) + 1) = ?1 || '/'"
            ),
            [ns],
        ),
    }
}

#[cfg(test)]
mod tests;
