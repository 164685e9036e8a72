-- Links between objects (a contact's deals, a deal's contacts...), one row per direction.
-- Learned from association webhooks and from complete lists fetched from the CRM.
CREATE TABLE links (
    from_object  TEXT    NOT NULL,
    to_object    TEXT    NOT NULL,
    to_type      TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (from_object, to_object)
) WITHOUT ROWID;

-- When an object's complete list of links of one type was last fetched from the CRM.
CREATE TABLE link_syncs (
    object     TEXT    NOT NULL,
    to_type    TEXT    NOT NULL,
    synced_at  INTEGER NOT NULL,
    PRIMARY KEY (object, to_type)
) WITHOUT ROWID;

-- CRM users who own records, as last fetched.
CREATE TABLE owners (
    owner_id    TEXT    PRIMARY KEY,
    email       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    teams_json  TEXT    NOT NULL,
    fetched_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Pending events put back to wait (their rule context could not be fetched). While one
-- waits, no later event of its object is taken either, so the object's order holds.
CREATE TABLE inbox_deferred (
    seq         INTEGER PRIMARY KEY,
    object      TEXT    NOT NULL,
    not_before  INTEGER NOT NULL,
    deferrals   INTEGER NOT NULL
);
CREATE INDEX inbox_deferred_object ON inbox_deferred (object, not_before);

-- The engine loads the active runs of a batch's objects, and an object collects many
-- finished runs: with the status in the index they are skipped without reading their
-- rows. (A rule's active runs, wanted only by a reload, are found by a scan: one index
-- less to keep up on every run change.)
DROP INDEX runs_by_object;
CREATE INDEX runs_by_object ON runs (object, status);

-- The source of every rule version a run may have started with: a run keeps the version
-- it started with, even after the file changed or the service restarted.
CREATE TABLE rule_versions (
    rule_id    TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    file       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    loaded_at  INTEGER NOT NULL,
    PRIMARY KEY (rule_id, version)
) WITHOUT ROWID;

-- The journal, the outbox and the property history drop AUTOINCREMENT: it updates
-- `sqlite_sequence` on every insert, and these are the most inserted tables. Their
-- `seq` still only grows: rows are removed oldest first (retention), never the newest,
-- so SQLite's max(rowid) + 1 never hands out a number twice. The inbox keeps it (its
-- seq is the arrival order the engine relies on, and is never reused even if emptied).
CREATE TABLE journal_v3 (
    seq          INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    object       TEXT,
    kind         TEXT    NOT NULL,
    summary      TEXT    NOT NULL,
    detail_json  TEXT    NOT NULL
);
INSERT INTO journal_v3 SELECT seq, at, object, kind, summary, detail_json FROM journal;
DROP TABLE journal;
ALTER TABLE journal_v3 RENAME TO journal;
CREATE INDEX journal_object ON journal (object, seq) WHERE object IS NOT NULL;
CREATE INDEX journal_requests ON journal (seq) WHERE object IS NULL;

CREATE TABLE outbox_v3 (
    seq              INTEGER PRIMARY KEY,
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
INSERT INTO outbox_v3 SELECT seq, idempotency_key, run_id, action, object, params_json, created_at, next_at, attempts, status FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v3 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_at) WHERE status = 'pending';

CREATE TABLE property_history_v3 (
    seq          INTEGER PRIMARY KEY,
    object       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    value_json   TEXT    NOT NULL,
    occurred_at  INTEGER NOT NULL,
    event_id     TEXT    NOT NULL
);
INSERT INTO property_history_v3 SELECT seq, object, name, value_json, occurred_at, event_id FROM property_history;
DROP TABLE property_history;
ALTER TABLE property_history_v3 RENAME TO property_history;
CREATE INDEX property_history_object ON property_history (object, name, occurred_at, seq);
