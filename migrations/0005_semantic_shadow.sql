-- Semantic cache, shadow mode (SPEC.md "Semantic cache"): one row per miss for which the
-- semantic tier had a candidate, recording what it would have served and, once the
-- relay's fresh answer arrived, how close the would-be answer was to it. Read by
-- `edge-gateway analytics --semantic`; pruned with cache_events (analytics.retention_days).
CREATE TABLE semantic_shadow (
    id                 INTEGER PRIMARY KEY,
    ts                 INTEGER NOT NULL,  -- unix ms
    region             TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    namespace          TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    key_hash           TEXT    NOT NULL,  -- the asked request's key (joins cache_events)
    candidate_key      TEXT    NOT NULL,  -- the entry that would have been served
    similarity         REAL    NOT NULL,  -- cosine similarity of the two questions
    verdict            TEXT    NOT NULL,  -- pass, or the verifier's reason for refusing
    deterministic      INTEGER NOT NULL,  -- 1: temperature 0, the answers should be equal
    answers_equal      INTEGER NOT NULL,  -- 1: the would-be and fresh answers' texts are equal
    answer_similarity  REAL,              -- cosine similarity of the two answers' embeddings
    fresh_chars        INTEGER NOT NULL,
    candidate_chars    INTEGER NOT NULL,
    would_save_usd     REAL    NOT NULL   -- what serving it would have saved
);

CREATE INDEX semantic_shadow_ts ON semantic_shadow (ts);
