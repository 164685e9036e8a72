-- Several instances sharing the engine's work.
--
-- The engine's work (pending events, due timers) is split into 64 partitions by a hash of
-- the object (`ft_partition`, the same function for an event and for its runs' timers).
-- Each partition is leased to one instance at a time; `epoch` grows whenever a partition
-- changes hands, and a unit of work commits only if the leases it was prepared under still
-- hold (see `work.rs`). 64 must equal `followthrough_store::WORK_PARTITIONS`.
CREATE FUNCTION ft_partition(object TEXT) RETURNS SMALLINT
    LANGUAGE SQL IMMUTABLE PARALLEL SAFE
    RETURN (hashtext(object) & 63)::SMALLINT;

CREATE TABLE engine_leases (
    part         SMALLINT PRIMARY KEY,
    holder       TEXT,
    epoch        BIGINT NOT NULL DEFAULT 0,
    lease_until  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO engine_leases (part) SELECT generate_series(0, 63);

-- Instances seen lately, for each one's fair share of the partitions. One counts until
-- its own lease would have ended.
CREATE TABLE engine_instances (
    holder    TEXT PRIMARY KEY,
    seen_at   BIGINT NOT NULL,
    lease_ms  BIGINT NOT NULL
);

-- Rewrites of a run, so two instances that read one run cannot both replace it.
ALTER TABLE runs ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
