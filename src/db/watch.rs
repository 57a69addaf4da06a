//! Knowing that the database file a connection writes to is still the one at its path,
//! and whether writes succeed. A file deleted or replaced while the process runs keeps
//! taking writes into its unlinked inode (rows and entries that nobody will ever read),
//! and a read-only file or a full disk fails every write while SQLite itself still
//! "opens" fine. Each writer thread holds a [`OpenedFile`] and checks it before writing;
//! both report into one [`DbHealth`] that `/readyz` and `cache_tier_up` read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use super::{DbError, open_migrated};

/// Whether the database's writers are failing, shared by the writer threads.
#[derive(Debug, Default)]
pub struct DbHealth {
    cache_failing: AtomicBool,
    analytics_failing: AtomicBool,
}

/// Which writer reports.
#[derive(Clone, Copy, Debug)]
pub enum Writer {
    Cache,
    Analytics,
}

impl DbHealth {
    pub fn report(&self, writer: Writer, ok: bool) {
        let flag = match writer {
            Writer::Cache => &self.cache_failing,
            Writer::Analytics => &self.analytics_failing,
        };
        flag.store(!ok, Ordering::Release);
    }

    /// `true` while every writer's last attempt succeeded.
    pub fn is_up(&self) -> bool {
        !self.cache_failing.load(Ordering::Acquire)
            && !self.analytics_failing.load(Ordering::Acquire)
    }
}

/// `(device, inode)` of the file at `path`, `None` when there is none.
fn identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|_| (0, 0))
    }
}

/// A connection with the identity of the file it opened.
pub struct OpenedFile {
    pub conn: Connection,
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl OpenedFile {
    /// Opens and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let conn = open_migrated(path)?;
        Ok(Self {
            identity: identity(path),
            path: path.to_owned(),
            conn,
        })
    }

    /// Whether the file at the path is no longer the one this connection writes to.
    pub fn is_stale(&self) -> bool {
        identity(&self.path) != self.identity
    }

    /// Opens the file at the path again (creating and migrating it if it is gone).
    pub fn reopen(&mut self) -> Result<(), DbError> {
        *self = Self::open(&self.path)?;
        Ok(())
    }

    /// Reopens when the file was deleted or replaced; `true` when it did. Both writer
    /// threads may reopen the new file at once (one creates it, both switch it to WAL),
    /// so a failed attempt is retried a few times before giving up on this batch.
    pub fn reopen_if_stale(&mut self, what: &str) -> bool {
        if !self.is_stale() {
            return false;
        }
        let mut last_error = None;
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
            }
            match self.reopen() {
                Ok(()) => {
                    tracing::warn!(path = %self.path.display(), writer = what,
                        "the SQLite file was deleted or replaced: reopened (rows and entries of the old file are not in the new one)");
                    return true;
                }
                Err(e) => last_error = Some(e),
            }
        }
        if let Some(e) = last_error {
            tracing::error!(path = %self.path.display(), writer = what, error = %e,
                "the SQLite file was deleted or replaced and cannot be reopened");
        }
        false
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_or_replaced_file_is_noticed_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut file = OpenedFile::open(&path).unwrap();
        assert!(!file.is_stale());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert!(file.is_stale(), "deleted");
        assert!(file.reopen_if_stale("test"));
        assert!(!file.is_stale());
        let tables: i64 = file
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'cache_events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "the new file is migrated");
        let health = DbHealth::default();
        assert!(health.is_up());
        health.report(Writer::Analytics, false);
        assert!(!health.is_up());
        health.report(Writer::Analytics, true);
        assert!(health.is_up());
    }
}
