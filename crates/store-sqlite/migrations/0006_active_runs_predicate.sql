-- The partial indexes on active runs, with their condition spelled as three equalities
-- instead of `status IN ('new', 'running', 'waiting')`. SQLite evaluates an IN list of
-- three or more constants through a temporary b-tree it builds for each statement, and
-- it evaluates a partial index's condition on every write to the table: with the IN
-- form, each run written built nine of them (old and new row, three indexes). Queries
-- must spell the condition the same way to use these indexes (`runs::ACTIVE`).
DROP INDEX runs_one_active_per_key;
DROP INDEX runs_active_by_key;
DROP INDEX runs_active_by_rule;
CREATE UNIQUE INDEX runs_one_active_per_key ON runs (rule_id, run_key)
    WHERE (status = 'new' OR status = 'running' OR status = 'waiting') AND parallel = 0;
CREATE INDEX runs_active_by_key ON runs (rule_id, run_key)
    WHERE (status = 'new' OR status = 'running' OR status = 'waiting');
CREATE INDEX runs_active_by_rule ON runs (rule_id, status)
    WHERE (status = 'new' OR status = 'running' OR status = 'waiting');
