-- The local durable copy of the cache: read when Redis is down or not configured,
-- written for every stored entry (off the request path), kept across restarts.
CREATE TABLE cache_entries (
    key               TEXT    PRIMARY KEY,  -- SHA-256 cache key, 64 lowercase hex
    namespace         TEXT    NOT NULL,     -- tenant / key-hash namespace, with partition
    endpoint          TEXT    NOT NULL,     -- chat.completions | completions | embeddings
    model             TEXT    NOT NULL,
    body              BLOB    NOT NULL,     -- the answer as JSON
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    size              INTEGER NOT NULL      -- bytes of body, for the size bound
) WITHOUT ROWID;

CREATE INDEX cache_entries_expires ON cache_entries (expires_at_ms);
CREATE INDEX cache_entries_created ON cache_entries (created_at_ms);
CREATE INDEX cache_entries_namespace ON cache_entries (namespace);
