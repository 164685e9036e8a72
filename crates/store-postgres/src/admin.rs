//! Reads for metrics, the admin API and the console, and retention pruning.

use followthrough_core::{ObjectRef, Timestamp};
use followthrough_store::{
    ActiveRunCount, ConnectorBacklog, Pruned, RunFilter, RunRecord, StoreStats,
};
use sqlx::{PgConnection, PgPool, Row};

use crate::error::Result;
use crate::objects::SNAPSHOT;
use crate::rows::{self, limit};
use crate::runs::{ACTIVE, RUN_COLUMNS, run};

fn as_count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// Every figure in one snapshot, so a scrape never shows a job both pending and dead.
/// Names sort byte by byte (`COLLATE "C"`), as on SQLite, whatever the database's
/// collation.
pub(crate) async fn stats(pool: &PgPool) -> Result<StoreStats> {
    let mut read = pool.begin_with(SNAPSHOT).await?;
    let active_runs = sqlx::query(&format!(
        "SELECT rule_id, status, COUNT(*) FROM runs WHERE {ACTIVE}
         GROUP BY rule_id, status ORDER BY rule_id COLLATE \"C\", status COLLATE \"C\""
    ))
    .fetch_all(&mut *read)
    .await?
    .iter()
    .map(|row| {
        Ok(ActiveRunCount {
            rule_id: row.try_get(0)?,
            status: row.try_get(1)?,
            count: as_count(row.try_get(2)?),
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let outbox_pending = sqlx::query(
        "SELECT connector, COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'
         GROUP BY connector ORDER BY connector COLLATE \"C\"",
    )
    .fetch_all(&mut *read)
    .await?
    .iter()
    .map(|row| {
        Ok(ConnectorBacklog {
            connector: row.try_get(0)?,
            pending: as_count(row.try_get(1)?),
            oldest_created_at: row.try_get::<Option<i64>, _>(2)?.map(Timestamp),
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let totals = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM inbox_pending),
                (SELECT COUNT(*) FROM timers),
                (SELECT MIN(due_at) FROM timers),
                (SELECT COUNT(*) FROM dead_letters WHERE replayed_at IS NULL)",
    )
    .fetch_one(&mut *read)
    .await?;
    read.commit().await?;
    Ok(StoreStats {
        inbox_pending: as_count(totals.try_get(0)?),
        active_runs,
        timers_pending: as_count(totals.try_get(1)?),
        next_timer_at: totals.try_get::<Option<i64>, _>(2)?.map(Timestamp),
        outbox_pending,
        dead_letters: as_count(totals.try_get(3)?),
    })
}

pub(crate) async fn objects_by_email(
    pool: &PgPool,
    email: &str,
    max: usize,
) -> Result<Vec<ObjectRef>> {
    // The stored value is JSON text; compare it with the JSON text of the address, both
    // lowered, so the partial index on `lower(value_json)` answers.
    let wanted = serde_json::Value::from(email.trim())
        .to_string()
        .to_lowercase();
    sqlx::query(
        "SELECT p.object FROM object_properties p JOIN objects o ON o.object = p.object
         WHERE p.name = 'email' AND lower(p.value_json) = $1
         ORDER BY o.updated_at DESC, p.object LIMIT $2",
    )
    .bind(wanted)
    .bind(limit(max))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| rows::object(&row.try_get::<String, _>(0)?))
    .collect()
}

/// Newest first. Run ids are ULIDs compared byte by byte (the column is `COLLATE "C"`),
/// so id order is creation order and the previous page's last id is the cursor; the
/// primary key read backwards serves the order.
pub(crate) async fn list_runs(pool: &PgPool, filter: &RunFilter) -> Result<Vec<RunRecord>> {
    let active = filter.status.as_deref() == Some("active");
    let status = filter.status.as_deref().filter(|_| !active);
    sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs
         WHERE ($1::TEXT IS NULL OR rule_id = $1)
           AND ($2::TEXT IS NULL OR run_id < $2)
           AND ($3::TEXT IS NULL OR status = $3)
           AND (NOT $4 OR {ACTIVE})
         ORDER BY run_id DESC LIMIT $5"
    ))
    .bind(filter.rule_id.as_deref())
    .bind(filter.before.as_ref().map(|id| id.as_str()))
    .bind(status)
    .bind(active)
    .bind(limit(filter.limit))
    .fetch_all(pool)
    .await?
    .iter()
    .map(run)
    .collect()
}

/// Up to `max` journal rows older than `before`, and up to `max` applied events
/// received before it, in the caller's transaction. Two instances pruning at once both
/// pick the same oldest rows; the second's deletes wait for the first's, then find the
/// rows gone and count nothing.
pub(crate) async fn prune(
    connection: &mut PgConnection,
    before: Timestamp,
    max: usize,
) -> Result<Pruned> {
    let journal_rows = sqlx::query(
        "DELETE FROM journal WHERE seq IN
             (SELECT seq FROM journal WHERE at < $1 ORDER BY at LIMIT $2)",
    )
    .bind(before.as_millis())
    .bind(limit(max))
    .execute(&mut *connection)
    .await?
    .rows_affected();
    // Applied events only: `inbox_applied` is what says so, and a pending or deferred
    // event has no row there. The property history they wrote stays.
    let inbox_rows: i64 = sqlx::query_scalar(
        "WITH doomed AS (
             SELECT a.seq FROM inbox_applied a JOIN inbox i ON i.seq = a.seq
             WHERE i.received_at < $1 ORDER BY a.seq LIMIT $2
         ), gone AS (
             DELETE FROM inbox WHERE seq IN (SELECT seq FROM doomed) RETURNING seq
         ), forgotten AS (
             DELETE FROM inbox_applied WHERE seq IN (SELECT seq FROM gone)
         )
         SELECT COUNT(*) FROM gone",
    )
    .bind(before.as_millis())
    .bind(limit(max))
    .fetch_one(&mut *connection)
    .await?;
    Ok(Pruned {
        journal_rows,
        inbox_rows: as_count(inbox_rows),
    })
}
