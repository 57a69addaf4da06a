-- cache_events keeps one index, on ts. The index on key_hash is dropped: every insert
-- placed a 64-character key at a random spot in it, so once it outgrew SQLite's page
-- cache each row cost page reads and dirty pages, and the writer slowed with the
-- number of distinct keys (400k rows, 10,000 keys: 23.6 µs a row with it, 3.2 without;
-- one key: 3.3 and 2.5). No report needs it: `analytics --top` filters a time range
-- first (the ts index), and the cache_top_entries view runs faster as one scan and a
-- sort than by walking it (0.38 s against 0.75 s on 400k rows). bench/RESULTS.md.
DROP INDEX IF EXISTS cache_events_key;
