//! The semantic cache's durable rows (`semantic_entries`): written by the cache's writer
//! thread with its other writes, purged and expired with the entries they point at, and
//! read back at start so the index survives a restart.

use std::sync::Arc;

use rusqlite::{Connection, params};

use super::SqliteTier;
use crate::keying::CacheKey;

/// One remembered question (see `semantic::index::Entry`).
#[derive(Clone, Debug)]
pub struct SemanticRow {
    pub partition: CacheKey,
    pub key: CacheKey,
    pub namespace: Arc<str>,
    pub embedder: Arc<str>,
    pub text: Arc<str>,
    pub vector: Arc<[f32]>,
    pub created_ms: u64,
    pub expires_ms: u64,
}

pub fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn vector_from_bytes(bytes: &[u8]) -> Option<Arc<[f32]>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

pub(super) fn insert(conn: &Connection, row: &SemanticRow) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO semantic_entries
         (partition, key, namespace, embedder, text, embedding, created_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        row.partition.to_hex(),
        row.key.to_hex(),
        row.namespace.as_ref(),
        row.embedder.as_ref(),
        row.text.as_ref(),
        vector_bytes(&row.vector),
        row.created_ms as i64,
        row.expires_ms as i64,
    ])
}

/// Expired rows, and rows whose answer is no longer in `cache_entries`.
pub(super) fn cleanup(conn: &Connection, now_ms: u64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM semantic_entries WHERE expires_at_ms <= ?1
            OR NOT EXISTS (SELECT 1 FROM cache_entries c WHERE c.key = semantic_entries.key)",
        [now_ms as i64],
    )
}

fn load(
    conn: &Connection,
    embedder: &str,
    limit: usize,
    now_ms: u64,
) -> rusqlite::Result<Vec<SemanticRow>> {
    let mut stmt = conn.prepare(
        "SELECT partition, key, namespace, text, embedding, created_at_ms, expires_at_ms
         FROM semantic_entries WHERE embedder = ?1 AND expires_at_ms > ?2
         ORDER BY created_at_ms DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![embedder, now_ms as i64, limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Vec<u8>>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let embedder: Arc<str> = Arc::from(embedder);
    let mut out = Vec::new();
    for row in rows {
        let (partition, key, namespace, text, embedding, created, expires) = row?;
        let (Some(partition), Some(key), Some(vector)) = (
            CacheKey::from_hex(&partition),
            CacheKey::from_hex(&key),
            vector_from_bytes(&embedding),
        ) else {
            continue;
        };
        out.push(SemanticRow {
            partition,
            key,
            namespace: Arc::from(namespace),
            embedder: embedder.clone(),
            text: Arc::from(text),
            vector,
            created_ms: created as u64,
            expires_ms: expires as u64,
        });
    }
    // Oldest first, so the index evicts in age order if it is smaller than the table.
    out.reverse();
    Ok(out)
}

impl SqliteTier {
    /// Queues a semantic row; never blocks (a full queue drops it, counted).
    pub fn put_semantic(&self, row: SemanticRow) {
        self.queue(super::WriteOp::Semantic(Box::new(row)));
    }

    /// The newest `limit` live rows made by `embedder`, oldest first.
    pub async fn semantic_rows(&self, embedder: &str, limit: usize) -> Vec<SemanticRow> {
        let reader = self.reader.clone();
        let embedder = embedder.to_owned();
        let now = self.clock.now_ms();
        let result = tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            load(&conn, &embedder, limit, now)
        })
        .await;
        match result {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "semantic entries could not be read back");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }
}
