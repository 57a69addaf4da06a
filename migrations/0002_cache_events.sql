-- One row per request on a cacheable route (SPEC.md, "Analytics").
CREATE TABLE cache_events (
    id                INTEGER PRIMARY KEY,
    ts                INTEGER NOT NULL,   -- unix ms
    region            TEXT    NOT NULL,   -- edge region that served the request
    endpoint          TEXT    NOT NULL,   -- chat.completions | completions | embeddings
    namespace         TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    tier              TEXT    NOT NULL,   -- l1 | redis | sqlite | miss | bypass | coalesced
    status            INTEGER NOT NULL,   -- HTTP status sent to the client
    key_hash          TEXT    NOT NULL,   -- SHA-256 cache key (joins cache_entries.key)
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms        REAL    NOT NULL,
    relay_region      TEXT,               -- relay region that answered (misses, bypasses)
    cost_usd          REAL    NOT NULL DEFAULT 0,  -- spent at the relay
    saved_usd         REAL    NOT NULL DEFAULT 0   -- not spent thanks to a hit
);

-- Every report filters a time range first (then groups the range in memory), and the
-- top-entries view groups by key. Each index costs every insert a B-tree update, so
-- there are just these two (measured: see bench/RESULTS.md).
CREATE INDEX cache_events_ts ON cache_events (ts);
CREATE INDEX cache_events_key ON cache_events (key_hash);

-- Hit rate, tokens and dollars saved per day and region.
CREATE VIEW cache_daily AS
SELECT date(ts / 1000, 'unixepoch') AS day,
       region,
       count(*) AS requests,
       sum(tier IN ('l1', 'redis', 'sqlite', 'coalesced')) AS hits,
       round(1.0 * sum(tier IN ('l1', 'redis', 'sqlite', 'coalesced')) / count(*), 4) AS hit_rate,
       sum(CASE WHEN tier IN ('l1', 'redis', 'sqlite', 'coalesced')
                THEN prompt_tokens + completion_tokens ELSE 0 END) AS tokens_saved,
       round(sum(saved_usd), 6) AS usd_saved,
       round(sum(cost_usd), 6) AS usd_spent
FROM cache_events
GROUP BY day, region;

-- The cached answers that saved the most money.
CREATE VIEW cache_top_entries AS
SELECT key_hash,
       min(model) AS model,
       min(endpoint) AS endpoint,
       sum(tier IN ('l1', 'redis', 'sqlite', 'coalesced')) AS hits,
       round(sum(saved_usd), 6) AS usd_saved,
       max(ts) AS last_ts
FROM cache_events
GROUP BY key_hash
HAVING hits > 0
ORDER BY usd_saved DESC;
