-- Finding a lead by email in the console and the admin API. Partial and on the lowered
-- JSON text, so only email writes pay for it and the lookup ignores case.
CREATE INDEX object_properties_email ON object_properties (lower(value_json)) WHERE name = 'email';
-- Active runs counted per rule and status for metrics, without reading finished runs.
CREATE INDEX runs_active_by_rule ON runs (rule_id, status) WHERE status IN ('new', 'running', 'waiting');
-- Retention prunes the oldest journal rows first; `at` follows `seq` closely but not
-- exactly (clocks, backfills), so it gets an index of its own.
CREATE INDEX journal_at ON journal (at);
