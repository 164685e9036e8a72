-- The per-object indexes that only traces and the admin API read (which events an object
-- received, its journal, its outbox rows and its property history) are kept in bulk, not
-- on every insert. A batch of the engine touches thousands of different objects, so an
-- index keyed by object had one 4 KiB page dirtied, and written at commit, per event and
-- per index. Instead the writer appends the rows unindexed and, every couple of
-- seconds, enters the new rows' `(object, seq)` in these tables in one pass, sorted by
-- object, so each page written takes many entries. `trace_index_marks` says up to which `seq` a table's rows
-- are entered; a per-object read takes the entered rows from here and scans the few
-- newer rows (`seq > indexed_through`), so it never misses one. See `trace_index.rs`.
CREATE TABLE trace_index_marks (
    source           TEXT    PRIMARY KEY,
    indexed_through  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE inbox_by_object (
    object  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (object, seq)
) WITHOUT ROWID;
INSERT INTO inbox_by_object (object, seq) SELECT object, seq FROM inbox ORDER BY object, seq;
INSERT INTO trace_index_marks (source, indexed_through)
    SELECT 'inbox', COALESCE(MAX(seq), 0) FROM inbox;
DROP INDEX inbox_object;

CREATE TABLE journal_by_object (
    object  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (object, seq)
) WITHOUT ROWID;
INSERT INTO journal_by_object (object, seq)
    SELECT object, seq FROM journal WHERE object IS NOT NULL ORDER BY object, seq;
INSERT INTO trace_index_marks (source, indexed_through)
    SELECT 'journal', COALESCE(MAX(seq), 0) FROM journal;
DROP INDEX journal_object;

CREATE TABLE outbox_by_object (
    object  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (object, seq)
) WITHOUT ROWID;
INSERT INTO outbox_by_object (object, seq) SELECT object, seq FROM outbox ORDER BY object, seq;
INSERT INTO trace_index_marks (source, indexed_through)
    SELECT 'outbox', COALESCE(MAX(seq), 0) FROM outbox;
DROP INDEX outbox_object;

CREATE TABLE property_history_by_object (
    object  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (object, seq)
) WITHOUT ROWID;
INSERT INTO property_history_by_object (object, seq)
    SELECT object, seq FROM property_history ORDER BY object, seq;
INSERT INTO trace_index_marks (source, indexed_through)
    SELECT 'property_history', COALESCE(MAX(seq), 0) FROM property_history;
DROP INDEX property_history_object;
