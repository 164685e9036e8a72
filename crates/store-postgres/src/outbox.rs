//! The outbox workers' side: claiming jobs under a lease, recording each attempt's
//! outcome, and reading jobs back.
//!
//! A claim and a record are two short transactions with the connector's call between
//! them, outside any transaction. The claim is one statement: it picks the due jobs with
//! `FOR UPDATE SKIP LOCKED`, so workers of several instances claiming at once each take
//! different jobs without waiting for one another, and leases them. The lease token ties
//! claim and record together: an outcome is kept only from the worker that holds the job
//! now, so a worker that stalled past its lease while another took the job over cannot
//! overwrite what that one learned.

use followthrough_core::{ObjectRef, Timestamp};
use followthrough_store::{
    AttemptRecord, AttemptResult, ClaimedJob, DeadLetterReason, JobStatus, KeyedJob, OutboxEntry,
    OutboxJob,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::{Result, corrupt};
use crate::rows::{self, limit};

/// The outbox columns [`job`] reads, in its order; queries alias the outbox as `o`.
pub(crate) const JOB_COLUMNS: &str = "o.seq, o.idempotency_key, o.run_id, o.rule_id, o.action, \
     o.connector, o.object, o.params_json, o.created_at, o.next_at";

/// Reads the [`JOB_COLUMNS`] from column `first` on: the job's seq and the job.
pub(crate) fn job(row: &PgRow, first: usize) -> Result<(i64, OutboxJob)> {
    let job = OutboxJob {
        idempotency_key: row.try_get(first + 1)?,
        run_id: rows::run_id(&row.try_get::<String, _>(first + 2)?)?,
        rule_id: row.try_get(first + 3)?,
        action: row.try_get(first + 4)?,
        connector: row.try_get(first + 5)?,
        object: rows::object(&row.try_get::<String, _>(first + 6)?)?,
        params: rows::json(&row.try_get::<String, _>(first + 7)?, "outbox params")?,
        created_at: Timestamp(row.try_get(first + 8)?),
        next_at: Timestamp(row.try_get(first + 9)?),
    };
    Ok((row.try_get(first)?, job))
}

fn status(text: &str) -> Result<JobStatus> {
    match text {
        "pending" => Ok(JobStatus::Pending),
        "done" => Ok(JobStatus::Done),
        "dead" => Ok(JobStatus::Dead),
        other => Err(corrupt(format!("outbox status {other}"))),
    }
}

/// The [`JOB_COLUMNS`], then status, attempts and result: an [`OutboxEntry`].
fn entry(row: &PgRow) -> Result<OutboxEntry> {
    let (seq, job) = job(row, 0)?;
    Ok(OutboxEntry {
        seq,
        job,
        status: status(&row.try_get::<String, _>(10)?)?,
        attempts: rows::count(row.try_get(11)?, "attempts")?,
        result: row
            .try_get::<Option<String>, _>(12)?
            .map(|json| rows::json(&json, "outbox result"))
            .transpose()?,
    })
}

pub(crate) async fn outbox_for(pool: &PgPool, object: &ObjectRef) -> Result<Vec<OutboxEntry>> {
    sqlx::query(&format!(
        "SELECT {JOB_COLUMNS}, o.status, o.attempts, o.result_json
         FROM outbox o WHERE o.object = $1 ORDER BY o.seq"
    ))
    .bind(object.to_string())
    .fetch_all(pool)
    .await?
    .iter()
    .map(entry)
    .collect()
}

/// The job with this idempotency key, with its newest dead letter's reason if dead.
pub(crate) async fn job_by_key(pool: &PgPool, key: &str) -> Result<Option<KeyedJob>> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS}, o.status, o.attempts, o.result_json,
                d.kind, d.message, d.last_status, d.last_response
         FROM outbox o
         LEFT JOIN LATERAL (
             SELECT kind, message, last_status, last_response FROM dead_letters
             WHERE seq = o.seq ORDER BY id DESC LIMIT 1
         ) d ON TRUE
         WHERE o.idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let entry = entry(&row)?;
    let reason = match row.try_get::<Option<String>, _>(13)? {
        Some(kind) => Some(DeadLetterReason {
            kind,
            message: row.try_get(14)?,
            last_status: last_status(row.try_get(15)?)?,
            last_response: row.try_get(16)?,
        }),
        None => None,
    };
    // A replayed job keeps its old letters; only a dead one has a reason now.
    let dead = reason.filter(|_| entry.status == JobStatus::Dead);
    Ok(Some(KeyedJob { entry, dead }))
}

pub(crate) fn last_status(status: Option<i32>) -> Result<Option<u16>> {
    status
        .map(|s| u16::try_from(s).map_err(|_| corrupt(format!("HTTP status {s}"))))
        .transpose()
}

/// Connector `$1`'s due jobs at `$2`, at most `$3`, leased with token prefix `$4` until
/// `$5`; see [`claim_jobs`].
fn claim_sql() -> String {
    format!(
        "WITH picked AS (
             SELECT seq FROM outbox
             WHERE status = 'pending' AND connector = $1 AND next_at <= $2
               AND (lease IS NULL OR lease_until <= $2)
             ORDER BY next_at, seq
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         )
         UPDATE outbox o SET
             lease = $4 || '_' || o.seq,
             lease_until = $5,
             attempts = o.attempts + 1,
             indeterminate = o.indeterminate OR o.lease IS NOT NULL
         FROM picked WHERE o.seq = picked.seq
         RETURNING {JOB_COLUMNS}, o.attempts, o.indeterminate, o.lease"
    )
}

/// Claims up to `count` due jobs of `connector` in one statement (atomic without a
/// transaction around it).
///
/// The inner SELECT walks the claim index in `(next_at, seq)` order and locks each row it
/// keeps; `SKIP LOCKED` passes over rows another claim holds at that moment, so
/// concurrent claims take disjoint jobs and never wait for each other. A row another
/// claim leased and committed meanwhile is re-checked against the WHERE clause after
/// its lock is taken, finds its lease now current, and is left out.
///
/// A lease still set on a claimable job expired with no outcome recorded: its worker
/// died or stalled, maybe after the API acted. That doubt is written back
/// (`indeterminate`), so it outlives this claim.
pub(crate) async fn claim_jobs(
    connection: &mut PgConnection,
    connector: &str,
    now: Timestamp,
    lease_until: Timestamp,
    count: usize,
) -> Result<Vec<ClaimedJob>> {
    // One ULID per claim, the seq appended per job: unique tokens, one random draw.
    let token = format!("lse_{}", ulid::Ulid::new());
    let rows = sqlx::query(&claim_sql())
        .bind(connector)
        .bind(now.as_millis())
        .bind(limit(count))
        .bind(&token)
        .bind(lease_until.as_millis())
        .fetch_all(connection)
        .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            let (seq, job) = job(row, 0)?;
            Ok(ClaimedJob {
                seq,
                job,
                attempt: rows::count(row.try_get(10)?, "attempts")?,
                after_indeterminate: row.try_get(11)?,
                lease: row.try_get(12)?,
                lease_until,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // RETURNING follows no ORDER BY: put the claims back in claim order.
    claimed.sort_by_key(|claim| (claim.job.next_at, claim.seq));
    Ok(claimed)
}

/// Records an attempt's outcome with its journal rows, dead letter and timers. Returns
/// false, having written nothing, if the job no longer carries the lease.
pub(crate) async fn record_attempt(
    connection: &mut PgConnection,
    record: &AttemptRecord,
) -> Result<bool> {
    // Every branch checks the lease and clears it in one statement: the lease is both
    // the proof of the claim and the mark of an attempt in flight. A claim racing this
    // statement for the same row is serialized by the row lock; whichever comes second
    // sees the other's lease.
    let changed = match &record.result {
        AttemptResult::Done { result } => sqlx::query(
            "UPDATE outbox SET status = 'done', result_json = $3, lease = NULL, lease_until = NULL
             WHERE seq = $1 AND lease = $2 AND status = 'pending'",
        )
        .bind(record.seq)
        .bind(&record.lease)
        .bind(result.to_string()),
        AttemptResult::Retry {
            next_at,
            indeterminate,
        } => sqlx::query(
            "UPDATE outbox SET next_at = $3, indeterminate = $4, lease = NULL, lease_until = NULL
             WHERE seq = $1 AND lease = $2 AND status = 'pending'",
        )
        .bind(record.seq)
        .bind(&record.lease)
        .bind(next_at.as_millis())
        .bind(*indeterminate),
        // A job parked as `indeterminate` may have taken effect: its replay must check
        // first. Otherwise the flag stays as it was; a needless check costs one read, a
        // missed one a duplicate action.
        AttemptResult::Dead(reason) => sqlx::query(
            "UPDATE outbox SET status = 'dead', lease = NULL, lease_until = NULL,
                 indeterminate = indeterminate OR $3
             WHERE seq = $1 AND lease = $2 AND status = 'pending'",
        )
        .bind(record.seq)
        .bind(&record.lease)
        .bind(reason.kind == "indeterminate"),
    }
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    if let AttemptResult::Dead(reason) = &record.result {
        sqlx::query(
            "INSERT INTO dead_letters (seq, kind, message, last_status, last_response, attempts, dead_at)
             SELECT seq, $2, $3, $4, $5, attempts, $6 FROM outbox WHERE seq = $1",
        )
        .bind(record.seq)
        .bind(&reason.kind)
        .bind(&reason.message)
        .bind(reason.last_status.map(i32::from))
        .bind(&reason.last_response)
        .bind(record.at.as_millis())
        .execute(&mut *connection)
        .await?;
    }
    crate::journal::insert(connection, &record.journal).await?;
    crate::runs::insert_timers(connection, &record.timers).await?;
    Ok(true)
}

/// When connector `$1` next has work: the soonest job nobody holds (read from the claim
/// index's start), or the soonest lease to expire (the small leased index). One
/// statement, so both parts read one snapshot.
///
/// The leased part has no `status = 'pending'`: only pending jobs are claimed, and every
/// change of status clears the lease, so a leased job is pending. Written out, the
/// condition would let the planner pick the claim index and filter the whole backlog.
const NEXT_JOB_SQL: &str = "SELECT MIN(t) FROM (
         (SELECT next_at AS t FROM outbox
          WHERE status = 'pending' AND connector = $1 AND lease IS NULL
          ORDER BY next_at LIMIT 1)
         UNION ALL
         SELECT MIN(GREATEST(next_at, lease_until)) FROM outbox
         WHERE lease IS NOT NULL AND connector = $1
     ) AS soonest";

pub(crate) async fn next_job_at(pool: &PgPool, connector: &str) -> Result<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar(NEXT_JOB_SQL)
        .bind(connector)
        .fetch_one(pool)
        .await?;
    Ok(at.map(Timestamp))
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor, PgConnection};

    /// The workers' queries can be served by their indexes, in index order: a claim
    /// must not sort or scan the whole backlog. Run in a schema of its own on the test
    /// server (`FOLLOWTHROUGH_TEST_POSTGRES_URL`), with sequential and bitmap scans off,
    /// as an empty table would otherwise be scanned whatever the indexes.
    #[tokio::test]
    async fn the_workers_queries_use_their_indexes() {
        let url = std::env::var("FOLLOWTHROUGH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("ft_plan_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut connection = PgConnection::connect(&url).await.unwrap();
        connection
            .execute(format!("SET search_path TO \"{schema}\"").as_str())
            .await
            .unwrap();
        crate::migrations::apply(&mut connection, Some(&schema))
            .await
            .unwrap();
        connection
            .execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
            .await
            .unwrap();
        let claim: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {}", super::claim_sql()))
            .bind("hubspot")
            .bind(100_i64)
            .bind(10_i64)
            .bind("lse_x")
            .bind(200_i64)
            .fetch_all(&mut connection)
            .await
            .unwrap();
        let next: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {}", super::NEXT_JOB_SQL))
            .bind("hubspot")
            .fetch_all(&mut connection)
            .await
            .unwrap();
        connection
            .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
            .await
            .unwrap();
        let (claim, next) = (claim.join("\n"), next.join("\n"));
        assert!(claim.contains("outbox_claim"), "{claim}");
        assert!(
            !claim.contains("Sort"),
            "claims read in index order: {claim}"
        );
        assert!(
            next.contains("outbox_claim") && next.contains("outbox_leased"),
            "{next}"
        );
    }
}
