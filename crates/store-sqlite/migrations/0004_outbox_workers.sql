-- Outbox workers: each connector's workers claim their own jobs with a lease, call the
-- API outside any transaction, and record the outcome only while the lease holds.
--
-- ADD COLUMN does not rewrite the table, so this is cheap on a large outbox.
ALTER TABLE outbox ADD COLUMN rule_id TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN connector TEXT NOT NULL DEFAULT 'hubspot';
-- The claim in force: a token the worker must show to record its outcome, and when it
-- expires. Both NULL when nobody holds the job; cleared whenever an outcome is recorded,
-- so a lease found expired at the next claim means its worker died mid-call.
ALTER TABLE outbox ADD COLUMN lease TEXT;
ALTER TABLE outbox ADD COLUMN lease_until INTEGER;
-- 1 when the last attempt may have taken effect: the next one must check first.
ALTER TABLE outbox ADD COLUMN indeterminate INTEGER NOT NULL DEFAULT 0;
-- What the connector reported on success (ids of what it created).
ALTER TABLE outbox ADD COLUMN result_json TEXT;

-- Jobs queued before this version: their rule is their run's; their connector follows
-- from the action (Slack and HTTP actions) or else from the CRM the object lives in.
UPDATE outbox SET rule_id = COALESCE((SELECT r.rule_id FROM runs r WHERE r.run_id = outbox.run_id), '');
UPDATE outbox SET connector = CASE
    WHEN action IN ('slack_dm', 'slack_message') THEN 'slack'
    WHEN action = 'http' THEN 'http'
    ELSE substr(object, 1, instr(object, ':') - 1)
END;

-- A worker claims its connector's due jobs, oldest first; seq (the rowid) is the index's
-- last column, so `ORDER BY next_at, seq` reads it in order.
DROP INDEX outbox_due;
CREATE INDEX outbox_claim ON outbox (connector, next_at) WHERE status = 'pending';
-- Jobs in flight, few at any time: when the soonest lease expires (`next_job_at`)
-- without scanning the whole backlog.
CREATE INDEX outbox_leased ON outbox (connector, lease_until) WHERE lease IS NOT NULL;
-- The trace lists an object's jobs.
CREATE INDEX outbox_object ON outbox (object, seq);

-- Jobs parked for a person. A job can die more than once (replayed, then dead again):
-- each time is a row of its own, so `dlq show` tells the whole story. Rows are kept
-- after a replay (replayed_at set) as the record of what happened. No ON DELETE: a
-- cleanup that removes outbox rows must not silently take dead letters with it.
CREATE TABLE dead_letters (
    id             INTEGER PRIMARY KEY,
    seq            INTEGER NOT NULL REFERENCES outbox (seq),
    kind           TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    last_status    INTEGER,
    last_response  TEXT,
    attempts       INTEGER NOT NULL,
    dead_at        INTEGER NOT NULL,
    replayed_at    INTEGER
);
CREATE INDEX dead_letters_waiting ON dead_letters (id) WHERE replayed_at IS NULL;
-- The foreign key's child side: without it, removing an outbox row scans every letter.
CREATE INDEX dead_letters_by_job ON dead_letters (seq);

-- Round-robin positions (owner assignment, say): a counter per rotation that only
-- grows; the position is the counter modulo the rotation's current size, so a team that
-- grows or shrinks keeps rotating without a reset.
CREATE TABLE rotations (
    name      TEXT    PRIMARY KEY,
    position  INTEGER NOT NULL
) WITHOUT ROWID;
-- The counter value each job was given, so a retried job gets the same turn again (an
-- assignment that timed out is repeated to the same owner, not the next one).
CREATE TABLE rotation_picks (
    key       TEXT    PRIMARY KEY,
    name      TEXT    NOT NULL,
    position  INTEGER NOT NULL
) WITHOUT ROWID;
