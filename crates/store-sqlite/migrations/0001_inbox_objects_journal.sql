-- Inbox: every accepted event, canonical form with the sender's raw JSON inside.
-- seq is arrival order; (source, dedup_key) makes a repeated delivery a no-op.
-- Rows are never updated: what is pending and what was applied live in the two narrow
-- tables below, so applying an event does not rewrite its (wide) inbox row.
CREATE TABLE inbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    dedup_key    TEXT    NOT NULL,
    object       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    occurred_at  INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    request_id   TEXT,
    event_json   TEXT    NOT NULL,
    UNIQUE (source, dedup_key)
);
CREATE INDEX inbox_object ON inbox (object, seq);

-- Events not yet applied, in the order the engine takes them.
CREATE TABLE inbox_pending (
    occurred_at  INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (occurred_at, seq)
) WITHOUT ROWID;

-- When each event was applied.
CREATE TABLE inbox_applied (
    seq          INTEGER PRIMARY KEY,
    applied_at   INTEGER NOT NULL
);

-- Objects followthrough has heard of, and their current properties.
CREATE TABLE objects (
    object         TEXT    PRIMARY KEY,
    first_seen_at  INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    deleted_at     INTEGER
) WITHOUT ROWID;

CREATE TABLE object_properties (
    object       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    value_json   TEXT    NOT NULL,
    occurred_at  INTEGER NOT NULL,
    event_id     TEXT    NOT NULL,
    PRIMARY KEY (object, name)
) WITHOUT ROWID;

-- Every value a property ever had, in occurrence order.
CREATE TABLE property_history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    object       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    value_json   TEXT    NOT NULL,
    occurred_at  INTEGER NOT NULL,
    event_id     TEXT    NOT NULL
);
CREATE INDEX property_history_object ON property_history (object, name, occurred_at, seq);

-- Append-only record of everything worth tracing. object is NULL for rows about a
-- whole request (a webhook accepted or rejected).
CREATE TABLE journal (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    object       TEXT,
    kind         TEXT    NOT NULL,
    summary      TEXT    NOT NULL,
    detail_json  TEXT    NOT NULL
);
CREATE INDEX journal_object ON journal (object, seq) WHERE object IS NOT NULL;
CREATE INDEX journal_requests ON journal (seq) WHERE object IS NULL;
