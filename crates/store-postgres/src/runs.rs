//! Runs, timers and queueing outbox jobs: the engine's durable state. (The outbox
//! workers' side is [`crate::outbox`].)

use followthrough_core::{ObjectRef, RunId, Timestamp};
use std::collections::HashSet;

use followthrough_store::{DueTimer, RunRecord, StoreError, TimerRecord, UnitOfWork};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::Result;
use crate::rows::{self, limit};

/// Writes the engine's part of a unit: runs, then timer changes, then outbox jobs.
pub(crate) async fn apply(connection: &mut PgConnection, unit: &UnitOfWork) -> Result<()> {
    // The unit's runs in as few statements as the order allows (see `write_runs`): a
    // statement per run was a round trip per run, most of a commit's time.
    let mut checked: HashSet<&str> = HashSet::new();
    let mut rest = unit.runs.as_slice();
    while !rest.is_empty() {
        // A statement may not touch one row twice: a run written again starts the next.
        let mut ids: HashSet<&str> = HashSet::new();
        let take = rest
            .iter()
            .take_while(|run| ids.insert(run.run_id.as_str()))
            .count();
        let (chunk, after) = rest.split_at(take);
        write_runs(connection, chunk, &mut checked).await?;
        rest = after;
    }
    if !unit.timers_cancelled.is_empty() {
        // By run and due time; the kind is not compared (the trait's contract).
        let (runs, due): (Vec<&str>, Vec<i64>) = unit
            .timers_cancelled
            .iter()
            .map(|timer| (timer.run_id.as_str(), timer.due_at.as_millis()))
            .unzip();
        sqlx::query(
            "DELETE FROM timers t USING UNNEST($1::TEXT[], $2::BIGINT[]) AS c (run_id, due_at)
             WHERE t.run_id = c.run_id AND t.due_at = c.due_at",
        )
        .bind(runs)
        .bind(due)
        .execute(&mut *connection)
        .await?;
    }
    insert_timers(connection, &unit.timers_scheduled).await?;
    queue_jobs(connection, unit).await
}

/// Writes runs (each id at most once) in one statement, in their order: the partial
/// unique index is checked row by row as they are written, so a run that ends before
/// another starts for its key is accepted, and a second active run is refused (a unique
/// violation, which the caller gets as `StoreError::Conflict`, the whole unit rolled
/// back).
///
/// A stored run is replaced only if it is still at the revision the unit read it at
/// (checked on the run's first write in the unit; later ones build on that write), so
/// two instances that read one run cannot both change it: the second unit is refused
/// whole and prepared again from what the first wrote. The expected revision travels in
/// the inserted row's `revision` (what a new run is stored with), -1 meaning "already
/// checked in this unit"; the rows actually written come back from `RETURNING`.
async fn write_runs<'a>(
    connection: &mut PgConnection,
    runs: &'a [RunRecord],
    checked: &mut HashSet<&'a str>,
) -> Result<()> {
    let mut columns = RunColumns::default();
    for run in runs {
        let expected = if checked.insert(run.run_id.as_str()) {
            run.revision
        } else {
            -1
        };
        columns.push(run, expected);
    }
    let written: Vec<String> = sqlx::query_scalar(
        "INSERT INTO runs (run_id, rule_id, rule_version, run_key, object, status, parallel,
                           reason, state_json, created_at, updated_at, revision)
         SELECT run_id, rule_id, rule_version, run_key, object, status, parallel, reason,
                state_json, created_at, updated_at, revision
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
                     $7::BOOLEAN[], $8::TEXT[], $9::TEXT[], $10::BIGINT[], $11::BIGINT[],
                     $12::BIGINT[])
             WITH ORDINALITY AS r (run_id, rule_id, rule_version, run_key, object, status,
                                   parallel, reason, state_json, created_at, updated_at,
                                   revision, ord)
         ORDER BY ord
         ON CONFLICT (run_id) DO UPDATE SET
             status = excluded.status, reason = excluded.reason,
             state_json = excluded.state_json, updated_at = excluded.updated_at,
             revision = runs.revision + 1
         WHERE excluded.revision < 0 OR runs.revision = excluded.revision
         RETURNING run_id",
    )
    .bind(&columns.run_id)
    .bind(&columns.rule_id)
    .bind(&columns.rule_version)
    .bind(&columns.key)
    .bind(&columns.object)
    .bind(&columns.status)
    .bind(&columns.parallel)
    .bind(&columns.reason)
    .bind(&columns.state)
    .bind(&columns.created_at)
    .bind(&columns.updated_at)
    .bind(&columns.expected)
    .fetch_all(&mut *connection)
    .await?;
    if written.len() < runs.len() {
        let written: HashSet<&str> = written.iter().map(String::as_str).collect();
        let stale = runs
            .iter()
            .find(|run| !written.contains(run.run_id.as_str()))
            .expect("fewer rows written than runs");
        return Err(StoreError::Conflict(format!(
            "run {} was changed by another writer since it was read (revision {})",
            stale.run_id, stale.revision
        ))
        .into());
    }
    Ok(())
}

/// Runs as the column arrays `write_runs` binds.
#[derive(Default)]
struct RunColumns {
    run_id: Vec<String>,
    rule_id: Vec<String>,
    rule_version: Vec<String>,
    key: Vec<String>,
    object: Vec<String>,
    status: Vec<String>,
    parallel: Vec<bool>,
    reason: Vec<Option<String>>,
    state: Vec<String>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    expected: Vec<i64>,
}

impl RunColumns {
    fn push(&mut self, run: &RunRecord, expected: i64) {
        self.run_id.push(run.run_id.to_string());
        self.rule_id.push(run.rule_id.clone());
        self.rule_version.push(run.rule_version.clone());
        self.key.push(run.key.clone());
        self.object.push(run.object.to_string());
        self.status.push(run.status.clone());
        self.parallel.push(run.parallel);
        self.reason.push(run.reason.clone());
        self.state.push(run.state.clone());
        self.created_at.push(run.created_at.as_millis());
        self.updated_at.push(run.updated_at.as_millis());
        self.expected.push(expected);
    }
}

/// Queues the unit's outbox jobs in its order; a job whose idempotency key is already
/// queued is skipped silently (a replayed decision), by the unique constraint.
async fn queue_jobs(connection: &mut PgConnection, unit: &UnitOfWork) -> Result<()> {
    if unit.outbox.is_empty() {
        return Ok(());
    }
    let jobs = &unit.outbox;
    let column = |f: fn(&followthrough_store::OutboxJob) -> String| -> Vec<String> {
        jobs.iter().map(f).collect()
    };
    sqlx::query(
        "INSERT INTO outbox (idempotency_key, run_id, rule_id, action, connector, object,
                             params_json, created_at, next_at)
         SELECT key, run_id, rule_id, action, connector, object, params, created_at, next_at
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
                     $7::TEXT[], $8::BIGINT[], $9::BIGINT[])
             WITH ORDINALITY AS j (key, run_id, rule_id, action, connector, object, params,
                                   created_at, next_at, ord)
         ORDER BY ord
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(column(|job| job.idempotency_key.clone()))
    .bind(column(|job| job.run_id.to_string()))
    .bind(column(|job| job.rule_id.clone()))
    .bind(column(|job| job.action.clone()))
    .bind(column(|job| job.connector.clone()))
    .bind(column(|job| job.object.to_string()))
    .bind(column(|job| job.params.to_string()))
    .bind(
        jobs.iter()
            .map(|job| job.created_at.as_millis())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|job| job.next_at.as_millis())
            .collect::<Vec<_>>(),
    )
    .execute(connection)
    .await?;
    Ok(())
}

/// Schedules timers (the engine's, and those an outbox attempt records with its outcome).
pub(crate) async fn insert_timers(
    connection: &mut PgConnection,
    timers: &[TimerRecord],
) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO timers (run_id, due_at, kind)
         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[])
         ON CONFLICT DO NOTHING",
    )
    .bind(timers.iter().map(|t| t.run_id.as_str()).collect::<Vec<_>>())
    .bind(
        timers
            .iter()
            .map(|t| t.due_at.as_millis())
            .collect::<Vec<_>>(),
    )
    .bind(timers.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>())
    .execute(connection)
    .await?;
    Ok(())
}

/// The columns [`run`] reads, in its order.
pub(crate) const RUN_COLUMNS: &str = "run_id, rule_id, rule_version, run_key, object, status, \
     parallel, reason, state_json, created_at, updated_at, revision";

/// The run statuses that count as active (a run in one of them holds its key).
pub(crate) const ACTIVE: &str = "status IN ('new', 'running', 'waiting')";

pub(crate) fn run(row: &PgRow) -> Result<RunRecord> {
    Ok(RunRecord {
        run_id: rows::run_id(&row.try_get::<String, _>(0)?)?,
        rule_id: row.try_get(1)?,
        rule_version: row.try_get(2)?,
        key: row.try_get(3)?,
        object: rows::object(&row.try_get::<String, _>(4)?)?,
        status: row.try_get(5)?,
        parallel: row.try_get(6)?,
        reason: row.try_get(7)?,
        state: row.try_get(8)?,
        created_at: Timestamp(row.try_get(9)?),
        updated_at: Timestamp(row.try_get(10)?),
        revision: row.try_get(11)?,
    })
}

pub(crate) async fn runs(pool: &PgPool, ids: &[RunId]) -> Result<Vec<RunRecord>> {
    let ids: Vec<&str> = ids.iter().map(RunId::as_str).collect();
    sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ANY($1) ORDER BY created_at, run_id"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?
    .iter()
    .map(run)
    .collect()
}

/// Runs matching `condition` (which reads `$1`), oldest first.
async fn runs_where(pool: &PgPool, condition: &str, value: &str) -> Result<Vec<RunRecord>> {
    sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE {condition} ORDER BY created_at, run_id"
    ))
    .bind(value)
    .fetch_all(pool)
    .await?
    .iter()
    .map(run)
    .collect()
}

pub(crate) async fn runs_for(pool: &PgPool, object: &ObjectRef) -> Result<Vec<RunRecord>> {
    runs_where(pool, "object = $1", &object.to_string()).await
}

pub(crate) async fn active_runs_of_rule(pool: &PgPool, rule_id: &str) -> Result<Vec<RunRecord>> {
    runs_where(pool, &format!("rule_id = $1 AND {ACTIVE}"), rule_id).await
}

pub(crate) async fn active_runs(pool: &PgPool, rule_id: &str, key: &str) -> Result<Vec<RunRecord>> {
    sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE rule_id = $1 AND run_key = $2 AND {ACTIVE}
         ORDER BY created_at, run_id"
    ))
    .bind(rule_id)
    .bind(key)
    .fetch_all(pool)
    .await?
    .iter()
    .map(run)
    .collect()
}

fn timer(row: &PgRow) -> Result<TimerRecord> {
    Ok(TimerRecord {
        run_id: rows::run_id(&row.try_get::<String, _>(0)?)?,
        due_at: Timestamp(row.try_get(1)?),
        kind: row.try_get(2)?,
    })
}

pub(crate) async fn timers_for(pool: &PgPool, object: &ObjectRef) -> Result<Vec<TimerRecord>> {
    sqlx::query(
        "SELECT t.run_id, t.due_at, t.kind FROM timers t JOIN runs r ON r.run_id = t.run_id
         WHERE r.object = $1 ORDER BY t.due_at, t.run_id, t.kind",
    )
    .bind(object.to_string())
    .fetch_all(pool)
    .await?
    .iter()
    .map(timer)
    .collect()
}

/// Due timers, oldest first; only those of `partitions` when given. A timer belongs to
/// its run's object's partition (a timer whose run is gone, to its run id's).
pub(crate) async fn due_timers(
    pool: &PgPool,
    now: Timestamp,
    count: usize,
    partitions: Option<Vec<i16>>,
) -> Result<Vec<DueTimer>> {
    sqlx::query(
        "SELECT t.run_id, t.due_at, t.kind, r.object FROM timers t
         LEFT JOIN runs r ON r.run_id = t.run_id
         WHERE t.due_at <= $1
           AND ($3::SMALLINT[] IS NULL OR ft_partition(COALESCE(r.object, t.run_id)) = ANY($3))
         ORDER BY t.due_at, t.run_id LIMIT $2",
    )
    .bind(now.as_millis())
    .bind(limit(count))
    .bind(partitions)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(DueTimer {
            timer: timer(row)?,
            object: row
                .try_get::<Option<String>, _>(3)?
                .map(|name| rows::object(&name))
                .transpose()?,
        })
    })
    .collect()
}

pub(crate) async fn next_timer_at(pool: &PgPool) -> Result<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM timers")
        .fetch_one(pool)
        .await?;
    Ok(at.map(Timestamp))
}
