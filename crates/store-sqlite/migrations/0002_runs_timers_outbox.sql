-- Rule runs: one row per run, its whole state (the rules crate's RunState) as JSON.
-- At most one active run per (rule, key) unless the rule runs in parallel; the
-- constraint, not a check-then-insert, is what guarantees it across writers.
CREATE TABLE runs (
    run_id        TEXT    PRIMARY KEY,
    rule_id       TEXT    NOT NULL,
    rule_version  TEXT    NOT NULL,
    run_key       TEXT    NOT NULL,
    object        TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    parallel      INTEGER NOT NULL,
    reason        TEXT,
    state_json    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX runs_one_active_per_key ON runs (rule_id, run_key)
    WHERE status IN ('new', 'running', 'waiting') AND parallel = 0;
CREATE INDEX runs_active_by_key ON runs (rule_id, run_key) WHERE status IN ('new', 'running', 'waiting');
CREATE INDEX runs_by_object ON runs (object);

-- Pending wake-ups. A run has at most one timer per (due_at, kind).
CREATE TABLE timers (
    run_id   TEXT    NOT NULL,
    due_at   INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    PRIMARY KEY (run_id, due_at, kind)
) WITHOUT ROWID;
CREATE INDEX timers_due ON timers (due_at);

-- Actions to perform, each once: the idempotency key (run id + step) is unique.
CREATE TABLE outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    run_id           TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    object           TEXT    NOT NULL,
    params_json      TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    next_at          INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL DEFAULT 'pending'
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE status = 'pending';
