-- followthrough's PostgreSQL schema: the same tables as the SQLite backend reached at its
-- version 4, written fresh (PostgreSQL never had the older layouts).
--
-- Times are epoch milliseconds (BIGINT), as on SQLite. JSON is kept as TEXT, exactly as
-- serde_json wrote it: the inbox must give back the sender's raw event byte for byte,
-- JSONB rejects "\u0000" inside strings (a CRM property may hold one), and nothing in
-- the store queries inside JSON yet (`value_json::jsonb` works where it will).

-- Inbox: every accepted event. seq is arrival order; (source, dedup_key) makes a
-- repeated delivery a no-op. Rows are never updated: what is pending and what was
-- applied live in the two narrow tables below, so applying an event does not write a
-- new version of its (wide) row.
CREATE TABLE inbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    dedup_key    TEXT    NOT NULL,
    object       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    occurred_at  BIGINT  NOT NULL,
    received_at  BIGINT  NOT NULL,
    request_id   TEXT,
    event_json   TEXT    NOT NULL,
    CONSTRAINT inbox_dedup UNIQUE (source, dedup_key)
);
CREATE INDEX inbox_object ON inbox (object, seq);

-- Events not yet applied, in the order the engine takes them.
CREATE TABLE inbox_pending (
    occurred_at  BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    PRIMARY KEY (occurred_at, seq)
);

-- When each event was applied.
CREATE TABLE inbox_applied (
    seq         BIGINT PRIMARY KEY,
    applied_at  BIGINT NOT NULL
);

-- Pending events put back to wait (their rule context could not be fetched). While one
-- waits, no later event of its object is taken either, so the object's order holds.
CREATE TABLE inbox_deferred (
    seq         BIGINT  PRIMARY KEY,
    object      TEXT    NOT NULL,
    not_before  BIGINT  NOT NULL,
    deferrals   INTEGER NOT NULL
);
CREATE INDEX inbox_deferred_object ON inbox_deferred (object, not_before);

-- Objects followthrough has heard of, and their current properties.
CREATE TABLE objects (
    object         TEXT   PRIMARY KEY,
    first_seen_at  BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    deleted_at     BIGINT
);

CREATE TABLE object_properties (
    object       TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    value_json   TEXT   NOT NULL,
    occurred_at  BIGINT NOT NULL,
    event_id     TEXT   NOT NULL,
    PRIMARY KEY (object, name)
);

-- Every value a property ever had, in occurrence order. The trace lists it by property
-- name, byte by byte as on SQLite (COLLATE "C"; a database collation such as en_US would
-- put `leads` before `lead_score`).
CREATE TABLE property_history (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object       TEXT   NOT NULL,
    name         TEXT   COLLATE "C" NOT NULL,
    value_json   TEXT   NOT NULL,
    occurred_at  BIGINT NOT NULL,
    event_id     TEXT   NOT NULL
);
CREATE INDEX property_history_object ON property_history (object, name, occurred_at, seq);

-- Append-only record of everything worth tracing. object is NULL for rows about a
-- whole request (a webhook accepted or rejected).
CREATE TABLE journal (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           BIGINT NOT NULL,
    object       TEXT,
    kind         TEXT   NOT NULL,
    summary      TEXT   NOT NULL,
    detail_json  TEXT   NOT NULL
);
CREATE INDEX journal_object ON journal (object, seq) WHERE object IS NOT NULL;
CREATE INDEX journal_requests ON journal (seq) WHERE object IS NULL;

-- Rule runs: one row per run, its whole state (the rules crate's RunState) as JSON.
-- At most one active run per (rule, key) unless the rule runs in parallel; the
-- constraint, not a check-then-insert, is what guarantees it across instances.
-- run_id compares byte by byte (COLLATE "C") whatever the database's collation: ids are
-- ULIDs, so that order is creation order, which listing runs pages by.
CREATE TABLE runs (
    run_id        TEXT    COLLATE "C" PRIMARY KEY,
    rule_id       TEXT    NOT NULL,
    rule_version  TEXT    NOT NULL,
    run_key       TEXT    NOT NULL,
    object        TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    parallel      BOOLEAN NOT NULL,
    reason        TEXT,
    state_json    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX runs_one_active_per_key ON runs (rule_id, run_key)
    WHERE status IN ('new', 'running', 'waiting') AND NOT parallel;
CREATE INDEX runs_active_by_key ON runs (rule_id, run_key)
    WHERE status IN ('new', 'running', 'waiting');
-- With the status in the index, an object's many finished runs are skipped when the
-- engine loads the active ones.
CREATE INDEX runs_by_object ON runs (object, status);

-- Pending wake-ups. A run has at most one timer per (due_at, kind). Timers due together
-- come in run id order, byte by byte as on SQLite.
CREATE TABLE timers (
    run_id  TEXT   COLLATE "C" NOT NULL,
    due_at  BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    PRIMARY KEY (run_id, due_at, kind)
);
CREATE INDEX timers_due ON timers (due_at);

-- Actions to perform, each once: the idempotency key (run id + step) is unique.
--
-- The claim in force is (lease, lease_until): a token the worker must show to record its
-- outcome, and when it expires. Both NULL when nobody holds the job; cleared whenever an
-- outcome is recorded, so a lease found expired at the next claim means its worker died
-- mid-call. indeterminate: the last attempt may have taken effect, the next must check.
CREATE TABLE outbox (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  TEXT    NOT NULL,
    run_id           TEXT    NOT NULL,
    rule_id          TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    connector        TEXT    NOT NULL,
    object           TEXT    NOT NULL,
    params_json      TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    next_at          BIGINT  NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL DEFAULT 'pending',
    lease            TEXT,
    lease_until      BIGINT,
    indeterminate    BOOLEAN NOT NULL DEFAULT FALSE,
    result_json      TEXT,
    CONSTRAINT outbox_idempotency_key UNIQUE (idempotency_key)
);
-- A worker claims its connector's due jobs, oldest first, in index order.
CREATE INDEX outbox_claim ON outbox (connector, next_at, seq) WHERE status = 'pending';
-- Jobs in flight, few at any time: when the soonest lease expires (`next_job_at`)
-- without scanning the whole backlog.
CREATE INDEX outbox_leased ON outbox (connector, lease_until) WHERE lease IS NOT NULL;
-- The trace lists an object's jobs.
CREATE INDEX outbox_object ON outbox (object, seq);

-- Jobs parked for a person. A job can die more than once (replayed, then dead again):
-- each time is a row of its own. Rows are kept after a replay (replayed_at set). No ON
-- DELETE: a cleanup that removes outbox rows must not silently take dead letters along.
CREATE TABLE dead_letters (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq            BIGINT  NOT NULL REFERENCES outbox (seq),
    kind           TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    last_status    INTEGER,
    last_response  TEXT,
    attempts       INTEGER NOT NULL,
    dead_at        BIGINT  NOT NULL,
    replayed_at    BIGINT
);
CREATE INDEX dead_letters_waiting ON dead_letters (id) WHERE replayed_at IS NULL;
-- The foreign key's child side: without it, removing an outbox row scans every letter.
CREATE INDEX dead_letters_by_job ON dead_letters (seq);

-- Round-robin positions: a counter per rotation that only grows; the position is the
-- counter modulo the rotation's current size, so a team that grows or shrinks keeps
-- rotating without a reset.
CREATE TABLE rotations (
    name      TEXT   PRIMARY KEY,
    position  BIGINT NOT NULL
);
-- The counter value each job was given, so a retried job gets the same turn again.
CREATE TABLE rotation_picks (
    key       TEXT   PRIMARY KEY,
    name      TEXT   NOT NULL,
    position  BIGINT NOT NULL
);

-- Links between objects, one row per direction.
CREATE TABLE links (
    from_object  TEXT   NOT NULL,
    to_object    TEXT   NOT NULL,
    to_type      TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (from_object, to_object)
);

-- When an object's complete list of links of one type was last fetched from the CRM.
CREATE TABLE link_syncs (
    object     TEXT   NOT NULL,
    to_type    TEXT   NOT NULL,
    synced_at  BIGINT NOT NULL,
    PRIMARY KEY (object, to_type)
);

-- CRM users who own records, as last fetched.
CREATE TABLE owners (
    owner_id    TEXT   PRIMARY KEY,
    email       TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    teams_json  TEXT   NOT NULL,
    fetched_at  BIGINT NOT NULL
);

-- The source of every rule version a run may have started with.
CREATE TABLE rule_versions (
    rule_id    TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    file       TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    loaded_at  BIGINT NOT NULL,
    PRIMARY KEY (rule_id, version)
);
