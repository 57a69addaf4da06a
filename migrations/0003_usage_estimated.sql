-- Token counts the relay did not report (a relay that sends no `usage`) are estimated
-- by the gateway with a tokenizer (o200k_base); such rows and entries say so, so
-- operators can tell measured spend from estimated spend.
ALTER TABLE cache_entries ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cache_events ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
