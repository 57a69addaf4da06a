//! The SQLite database: one file (on the Fly volume) holding the fallback cache and the
//! analytics table. WAL mode, so the writer thread and readers never block each other.
//! The schema is the numbered SQL files in `migrations/`, embedded in the binary so a
//! deployed image needs nothing beside it.

use std::path::Path;

use rusqlite::Connection;

pub(crate) mod alloc;
mod watch;

pub use watch::{DbHealth, OpenedFile, Writer};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the directory for {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("migration {name} failed: {source}")]
    Migration {
        name: &'static str,
        source: rusqlite::Error,
    },
}

/// `(version, file name, SQL)` of every file in `migrations/`, in order.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_cache_entries.sql",
        include_str!("../../migrations/0001_cache_entries.sql"),
    ),
    (
        2,
        "0002_cache_events.sql",
        include_str!("../../migrations/0002_cache_events.sql"),
    ),
    (
        3,
        "0003_usage_estimated.sql",
        include_str!("../../migrations/0003_usage_estimated.sql"),
    ),
    (
        4,
        "0004_semantic.sql",
        include_str!("../../migrations/0004_semantic.sql"),
    ),
    (
        5,
        "0005_semantic_shadow.sql",
        include_str!("../../migrations/0005_semantic_shadow.sql"),
    ),
    (
        6,
        "0006_drop_events_key_index.sql",
        include_str!("../../migrations/0006_drop_events_key_index.sql"),
    ),
    (
        7,
        "0007_cache_entries_rowid.sql",
        include_str!("../../migrations/0007_cache_entries_rowid.sql"),
    ),
];

/// Bytes per database page for new files. The analytics writer appends a few hundred
/// bytes a row, and SQLite writes the WAL a frame (a page) at a time, two `pwrite`s a
/// frame: at 16 KiB a row costs the writer ~20% less than at the default 4 KiB
/// (1.16-1.25 against 1.54-1.57 µs a row side by side), with SQLite-tier hits unchanged
/// within noise (bench/RESULTS.md). A file created with other pages keeps them.
const PAGE_SIZE: i64 = 16_384;

/// WAL pages after which a commit checkpoints them into the database file.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 128;

/// Opens (creating if needed) the database with the pragmas every connection uses.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let shown = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| DbError::Directory {
            path: shown.clone(),
            source,
        })?;
    }
    let wrap = |source| DbError::Sqlite {
        path: shown.clone(),
        source,
    };
    let conn = Connection::open(path).map_err(wrap)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(wrap)?;
    // Only a new file takes it (before its first table); an existing one keeps its own.
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(wrap)?;
    set_wal(&conn).map_err(wrap)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(wrap)?;
    // Checkpoints in small steps: at the default (1,000 pages) every few seconds one
    // commit copied ~4 MB back into the file on the serving core, an unyielding burst
    // the p99 felt; at 128 pages the same work comes in eighths (p99 at 20k req/s
    // 1.49 -> 1.10 ms, saturation throughput unchanged; bench/RESULTS.md).
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(wrap)?;
    Ok(conn)
}

/// Switches the file to WAL. The switch needs the file to itself, and SQLite answers
/// `SQLITE_BUSY` at once (no busy handler) while another connection is creating or
/// migrating it: retried for up to the busy timeout.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Applies the migrations not yet applied; returns the names of those it applied.
pub fn migrate(conn: &mut Connection) -> Result<Vec<&'static str>, DbError> {
    let wrap = |source| DbError::Migration {
        name: "schema_migrations",
        source,
    };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at_ms INTEGER NOT NULL
         )",
    )
    .map_err(wrap)?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let fail = |source| DbError::Migration { name, source };
        // The check and the change in one write transaction: two connections migrating
        // the same new file at once (the cache and analytics writers reopening it after
        // it was deleted) apply each migration once; the second waits, then skips it.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [version],
                |row| row.get(0),
            )
            .map_err(fail)?;
        if done {
            continue;
        }
        tx.execute_batch(sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, crate::clock::system_ms() as i64],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        applied.push(name);
    }
    Ok(applied)
}

/// Opens and migrates: what `serve` and every command that reads the database do first.
pub fn open_migrated(path: &Path) -> Result<Connection, DbError> {
    let mut conn = open(path)?;
    migrate(&mut conn)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_migrating_one_new_file_at_once_all_succeed() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("race.db");
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || open_migrated(&path).map(drop))
                })
                .collect();
            for t in threads {
                t.join().unwrap().expect("every connection migrates");
            }
        }
    }

    #[test]
    fn new_files_get_large_pages_and_existing_files_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let fresh = dir.path().join("new.db");
        let mut conn = open(&fresh).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(page_size(&conn), PAGE_SIZE);
        // A file from before: 4 KiB pages, already in WAL mode with tables in it.
        let old = dir.path().join("old.db");
        {
            let conn = Connection::open(&old).unwrap();
            conn.execute_batch(
                "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x);",
            )
            .unwrap();
        }
        let mut conn = open(&old).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(page_size(&conn), 4096);
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let mut files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.1).collect();
        assert_eq!(files, embedded);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0, i as i64 + 1);
            assert!(m.1.starts_with(&format!("{:04}_", m.0)));
        }
    }

    #[test]
    fn migrating_twice_applies_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/gw.db");
        let mut conn = open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap().len(), MIGRATIONS.len());
        assert!(migrate(&mut conn).unwrap().is_empty());
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let pages: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages, WAL_AUTOCHECKPOINT_PAGES);
        conn.execute("SELECT * FROM cache_daily", []).ok();
    }

    /// Every index on `cache_events` is a B-tree update per analytics row on the serving
    /// core; the one on `key_hash` made each row cost more the more distinct keys there
    /// were (migration 0006). Only `ts`, which every report filters on, stays.
    #[test]
    fn analytics_rows_maintain_only_the_time_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("gw.db")).unwrap();
        migrate(&mut conn).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cache_events'
                 ORDER BY name",
            )
            .unwrap();
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["cache_events_ts"]);
    }

    /// A file as version 6 left it: migrations 1-6 applied and recorded, nothing else.
    fn file_at_version_6(path: &Path) -> Connection {
        let conn = open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
        )
        .unwrap();
        for &(version, name, sql) in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![version, name],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn cache_entries_are_appended_by_rowid_and_keys_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("gw.db")).unwrap();
        migrate(&mut conn).unwrap();
        // A WITHOUT ROWID table has no rowid: the answers went into the key's B-tree.
        let insert = "INSERT OR REPLACE INTO cache_entries (key, namespace, endpoint, model, body,
                          prompt_tokens, completion_tokens, created_at_ms, expires_at_ms, size)
                      VALUES (?1, 'ns', 'chat.completions', 'm', ?2, 1, 2, ?3, ?4, 3)";
        conn.execute(
            insert,
            rusqlite::params!["b".repeat(64), b"one".as_slice(), 1, 9],
        )
        .unwrap();
        conn.execute(
            insert,
            rusqlite::params!["a".repeat(64), b"two".as_slice(), 2, 9],
        )
        .unwrap();
        let rowids: Vec<(String, i64)> = conn
            .prepare("SELECT substr(key, 1, 1), rowid FROM cache_entries ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rowids, [("b".to_owned(), 1), ("a".to_owned(), 2)]);
        // Storing a key again replaces its entry: one row a key, as before.
        conn.execute(
            insert,
            rusqlite::params!["b".repeat(64), b"three".as_slice(), 3, 9],
        )
        .unwrap();
        let bodies: Vec<Vec<u8>> = conn
            .prepare("SELECT body FROM cache_entries ORDER BY key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(bodies, [b"two".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn an_existing_cache_keeps_every_entry_and_index_through_migration_7() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        let conn = file_at_version_6(&path);
        for (key, created, estimated) in [("c", 30, 1), ("a", 10, 0), ("b", 20, 0)] {
            conn.execute(
                "INSERT INTO cache_entries (key, namespace, endpoint, model, body, prompt_tokens,
                     completion_tokens, created_at_ms, expires_at_ms, size, usage_estimated)
                 VALUES (?1, 'ns-' || ?1, 'embeddings', 'model-' || ?1, CAST(?1 AS BLOB),
                         ?2 + 1, ?2 + 2, ?2, ?2 + 100, 1, ?3)",
                rusqlite::params![key.repeat(64), created, estimated],
            )
            .unwrap();
        }
        drop(conn);
        let mut conn = open(&path).unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            ["0007_cache_entries_rowid.sql"]
        );
        type Row = (
            String,
            String,
            String,
            String,
            Vec<u8>,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        );
        let rows: Vec<Row> = conn
            .prepare(
                "SELECT substr(key, 1, 1), namespace, endpoint, model, body, prompt_tokens,
                        completion_tokens, created_at_ms, expires_at_ms, size, usage_estimated
                 FROM cache_entries ORDER BY rowid",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Every column of every entry, in the order they were stored (oldest first).
        let expect = |k: &str, created: i64, estimated: i64| -> Row {
            (
                k.to_owned(),
                format!("ns-{}", k.repeat(64)),
                "embeddings".to_owned(),
                format!("model-{}", k.repeat(64)),
                k.repeat(64).into_bytes(),
                created + 1,
                created + 2,
                created,
                created + 100,
                1,
                estimated,
            )
        };
        assert_eq!(
            rows,
            [expect("a", 10, 0), expect("b", 20, 0), expect("c", 30, 1)]
        );
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cache_entries'
                 AND sql IS NOT NULL ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "cache_entries_created",
                "cache_entries_expires",
                "cache_entries_namespace"
            ]
        );
        let duplicate = conn.execute(
            "INSERT INTO cache_entries (key, namespace, endpoint, model, body, prompt_tokens,
                 completion_tokens, created_at_ms, expires_at_ms, size)
             VALUES (?1, 'ns', 'e', 'm', x'00', 0, 0, 0, 0, 0)",
            ["a".repeat(64)],
        );
        assert!(duplicate.is_err(), "the key must stay unique");
    }
}
