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
    // One statement per run, in the unit's order: the partial unique index is checked
    // row by row, so a run that ends before another starts for its key is accepted, and
    // a second active run is refused (a unique violation, which the caller gets as
    // `StoreError::Conflict`, the whole unit rolled back).
    //
    // A stored run is replaced only if it is still at the revision the unit read it at
    // (checked on the run's first write in the unit; later ones build on that write), so
    // two instances that read one run cannot both change it: the second unit is refused
    // whole and prepared again from what the first wrote.
    let mut written: HashSet<&str> = HashSet::new();
    for run in &unit.runs {
        let expected = written.insert(run.run_id.as_str()).then_some(run.revision);
        let result = sqlx::query(
            "INSERT INTO runs (run_id, rule_id, rule_version, run_key, object, status, parallel,
                               reason, state_json, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (run_id) DO UPDATE SET
                 status = excluded.status, reason = excluded.reason,
                 state_json = excluded.state_json, updated_at = excluded.updated_at,
                 revision = runs.revision + 1
             WHERE $12::BIGINT IS NULL OR runs.revision = $12",
        )
        .bind(run.run_id.as_str())
        .bind(&run.rule_id)
        .bind(&run.rule_version)
        .bind(&run.key)
        .bind(run.object.to_string())
        .bind(&run.status)
        .bind(run.parallel)
        .bind(&run.reason)
        .bind(run.state.to_string())
        .bind(run.created_at.as_millis())
        .bind(run.updated_at.as_millis())
        .bind(expected)
        .execute(&mut *connection)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "run {} was changed by another writer since it was read (revision {})",
                run.run_id, run.revision
            ))
            .into());
        }
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
        state: rows::json(&row.try_get::<String, _>(8)?, "run state")?,
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
