-- The semantic cache (SPEC.md, "Semantic cache"): one row per stored answer that may be
-- served for a question meaning the same. The answer itself stays in cache_entries (and
-- Redis) under `key`; a row here only says which question it answered, by meaning.
CREATE TABLE semantic_entries (
    partition     TEXT    NOT NULL,  -- SHA-256 of route, namespace, model, parameters,
                                     -- system prompt and earlier turns (all but the
                                     -- last user message): only equal partitions compare
    key           TEXT    NOT NULL,  -- exact cache key of the answer (cache_entries.key)
    namespace     TEXT    NOT NULL,  -- for purges by namespace
    embedder      TEXT    NOT NULL,  -- which embedder made the vector; others never compare
    text          TEXT    NOT NULL,  -- the last user message (the verifier reads it)
    embedding     BLOB    NOT NULL,  -- f32 little-endian, unit length
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,  -- the answer's expiry: TTL applies as to exact entries
    PRIMARY KEY (partition, key)
) WITHOUT ROWID;

CREATE INDEX semantic_entries_expires ON semantic_entries (expires_at_ms);
CREATE INDEX semantic_entries_namespace ON semantic_entries (namespace);

-- Semantic hits say how close the question was; every row says what its embedding cost
-- (also included in cost_usd, which is everything spent at the relay for the request).
ALTER TABLE cache_events ADD COLUMN similarity REAL;
ALTER TABLE cache_events ADD COLUMN embedding_cost_usd REAL NOT NULL DEFAULT 0;

-- The views count semantic hits as hits.
DROP VIEW cache_daily;
CREATE VIEW cache_daily AS
SELECT date(ts / 1000, 'unixepoch') AS day,
       region,
       count(*) AS requests,
       sum(tier IN ('l1', 'redis', 'sqlite', 'semantic', 'coalesced')) AS hits,
       round(1.0 * sum(tier IN ('l1', 'redis', 'sqlite', 'semantic', 'coalesced')) / count(*), 4) AS hit_rate,
       sum(CASE WHEN tier IN ('l1', 'redis', 'sqlite', 'semantic', 'coalesced')
                THEN prompt_tokens + completion_tokens ELSE 0 END) AS tokens_saved,
       round(sum(saved_usd), 6) AS usd_saved,
       round(sum(cost_usd), 6) AS usd_spent
FROM cache_events
GROUP BY day, region;

DROP VIEW cache_top_entries;
CREATE VIEW cache_top_entries AS
SELECT key_hash,
       min(model) AS model,
       min(endpoint) AS endpoint,
       sum(tier IN ('l1', 'redis', 'sqlite', 'semantic', 'coalesced')) AS hits,
       round(sum(saved_usd), 6) AS usd_saved,
       max(ts) AS last_ts
FROM cache_events
GROUP BY key_hash
HAVING hits > 0
ORDER BY usd_saved DESC;
