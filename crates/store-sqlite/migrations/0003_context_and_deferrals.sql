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
