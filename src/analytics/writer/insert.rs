//! Rows into `cache_events`: multi-row INSERT statements of a few fixed shapes, in one
//! transaction per batch, yielding the core between slices.

use rusqlite::Connection;

use super::super::event::CacheEvent;

/// Rows per INSERT statement: one statement step per 64 rows instead of per row.
const ROWS_PER_STATEMENT: usize = 64;
const COLUMNS: usize = 17;
/// The `region` column's place in a row: bound once per statement as `?1` (it is the
/// writer's own region for every row), not once per row, which had SQLite copy the same
/// text 64 times per statement (480–580 instructions a row, callgrind).
const REGION_COLUMN: usize = 1;
/// Parameters each row binds: every column but the region.
const ROW_PARAMS: usize = COLUMNS - 1;
/// Statements between yields of the writer thread: 4 × 64 rows, ~0.4 ms of work. A
/// writer that woke with a batch used to run its whole transaction (milliseconds at high
/// rates) while requests on the same core waited: the gateway's p99. A writer that is
/// behind (a quarter of its queue waiting, see `writer::polite`) yields four times less
/// often, so it catches up: yielding after every statement, or running at nice 5, made
/// it drop events at saturation (bench/RESULTS.md).
const YIELD_EVERY: usize = 4;

/// `OR ROLLBACK`: a failing row ends the whole batch's transaction, which the writer then
/// retries whole anyway; with the default (`ABORT`, undo this statement alone) SQLite kept
/// a statement journal for every statement after a transaction's first: a copy of each
/// page the statement touched, ~640 instructions per row (callgrind).
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR ROLLBACK INTO cache_events (ts, region, endpoint, namespace, model, tier, status,
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
            sql.push_str(&placeholder(r, c).to_string());
        }
        sql.push(')');
    }
    sql
}

/// The parameter number of row `r`, column `c`: `?1` is the region, then each row's own.
fn placeholder(r: usize, c: usize) -> usize {
    match c {
        REGION_COLUMN => 1,
        c if c < REGION_COLUMN => 2 + r * ROW_PARAMS + c,
        c => 2 + r * ROW_PARAMS + c - 1,
    }
}

/// The statement text for every chunk size, built once: the statement cache is looked up
/// by text, and formatting a thousand placeholders per batch cost the writer thread more
/// than a tenth of its time (profile in bench/RESULTS.md).
fn statement_for(rows: usize) -> &'static str {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    &TEXTS.get_or_init(|| (0..=ROWS_PER_STATEMENT).map(insert_sql).collect())[rows]
}

/// Inserts `events` in one transaction; `polite` lets request workers on the same core
/// run between slices of it.
pub(super) fn insert(
    conn: &mut Connection,
    region: &str,
    events: &[CacheEvent],
    polite: bool,
) -> rusqlite::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    // One statement per shape for the whole batch: a statement handed back to rusqlite's
    // cache has its 1,025 bindings cleared, which once per 64 rows cost ~530
    // instructions a row (callgrind); every binding is overwritten by the next chunk.
    let mut held: Option<(usize, rusqlite::CachedStatement<'_>)> = None;
    for (i, chunk) in statement_chunks(events).enumerate() {
        let every = if polite { YIELD_EVERY } else { 4 * YIELD_EVERY };
        if i > 0 && i % every == 0 {
            // Let request workers on this core run between slices of a big batch.
            std::thread::yield_now();
        }
        let stmt = match &mut held {
            Some((rows, stmt)) if *rows == chunk.len() => stmt,
            slot => {
                drop(slot.take()); // back to the cache before the next shape comes out
                let stmt = tx.prepare_cached(statement_for(chunk.len()))?;
                &mut slot.insert((chunk.len(), stmt)).1
            }
        };
        let keys: Vec<[u8; 64]> = chunk
            .iter()
            .map(|e| e.key.map(|k| k.hex_bytes()).unwrap_or([0; 64]))
            .collect();
        // Every bound value must outlive the statement call: gather them first.
        let texts: Vec<[&str; 5]> = chunk
            .iter()
            .zip(&keys)
            .map(|(e, key)| {
                [
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
        let mut values: Vec<&dyn rusqlite::ToSql> =
            Vec::with_capacity(1 + chunk.len() * ROW_PARAMS);
        values.push(&region);
        for (i, e) in chunk.iter().enumerate() {
            let (t, n) = (&texts[i], &numbers[i]);
            // In column order, without the region.
            values.extend([
                &n[0] as &dyn rusqlite::ToSql,
                &t[0],
                &t[1],
                &t[2],
                &t[3],
                &n[1],
                &t[4],
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
    drop(held);
    tx.commit()
}

/// Splits a batch into chunks of 64 rows, then powers of two: seven statement shapes in
/// all, so every chunk finds its statement prepared (a remainder of any size used to
/// re-parse a statement of up to 1,025 placeholders once per batch).
pub(super) fn statement_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
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
