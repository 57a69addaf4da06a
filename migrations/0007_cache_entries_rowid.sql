-- cache_entries becomes a rowid table with a unique key (it was WITHOUT ROWID, keyed by
-- the key). Keys are SHA-256 digests, so every stored answer was inserted, body and
-- all, at a random place in the table's own B-tree: once the table outgrew SQLite's page
-- cache each insert read and dirtied a random leaf of whole answers, and the WAL carried
-- and the checkpoint copied that page again. As a rowid table the rows are appended and
-- only the key index (64 characters and a rowid an entry, a tenth of the size) takes the
-- random insert. bench/cache-entries, 200k answers of 700 bytes, 256 a transaction, 16 KiB
-- pages: 152 -> 58 µs of CPU an answer stored, a lookup by key 21-24 -> 24-27 µs (two
-- B-tree searches instead of one; SQLite-tier hits through the gateway unchanged), the
-- file 237 -> 189 MiB. In the gateway, misses at saturation: the SQLite writer 73 -> 30 µs
-- a miss (medians, bench/RESULTS.md). Columns, names and indexes stay as they were.
CREATE TABLE cache_entries_by_rowid (
    key               TEXT    NOT NULL UNIQUE, -- SHA-256 cache key, 64 lowercase hex
    namespace         TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    body              BLOB    NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    size              INTEGER NOT NULL,
    usage_estimated   INTEGER NOT NULL DEFAULT 0
);
INSERT INTO cache_entries_by_rowid
    (key, namespace, endpoint, model, body, prompt_tokens, completion_tokens,
     created_at_ms, expires_at_ms, size, usage_estimated)
SELECT key, namespace, endpoint, model, body, prompt_tokens, completion_tokens,
       created_at_ms, expires_at_ms, size, usage_estimated
FROM cache_entries
ORDER BY created_at_ms, key;
DROP TABLE cache_entries;
ALTER TABLE cache_entries_by_rowid RENAME TO cache_entries;
CREATE INDEX cache_entries_expires ON cache_entries (expires_at_ms);
CREATE INDEX cache_entries_created ON cache_entries (created_at_ms);
CREATE INDEX cache_entries_namespace ON cache_entries (namespace);
