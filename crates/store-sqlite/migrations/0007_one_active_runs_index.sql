-- One partial index on active runs instead of three. `runs_one_active_per_key` and
-- `runs_active_by_key` indexed the same columns, and `runs_active_by_rule` was a prefix
-- of them: every run started added three entries and every run ended removed three,
-- each a B-tree search and a page written. The unique index now covers parallel runs
-- too, each in a slot of its own (its run id; the one slot '' for a rule that allows a
-- single active run per key), so it serves lookups by (rule, key) and by rule alone.
DROP INDEX runs_one_active_per_key;
DROP INDEX runs_active_by_key;
DROP INDEX runs_active_by_rule;
CREATE UNIQUE INDEX runs_active ON runs (rule_id, run_key, (CASE WHEN parallel = 0 THEN '' ELSE run_id END))
    WHERE (status = 'new' OR status = 'running' OR status = 'waiting');
