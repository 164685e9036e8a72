//! The SQL of the outbox workers: claiming jobs under a lease, recording each attempt's
//! outcome, the dead letters and their replay, and the durable rotations.
//!
//! A claim and a record are two short write transactions with the connector's call
//! between them, outside any transaction. The lease token ties them together: an outcome
//! is kept only from the worker that holds the job now, so a worker that stalled past its
//! lease while another took the job over cannot overwrite what that one learned.

use followthrough_core::{ObjectRef, Timestamp};
use followthrough_store::{
    AttemptRecord, AttemptResult, ClaimedJob, DeadLetter, DeadLetterReason, JobStatus,
    JournalEntry, KeyedJob, OutboxEntry, OutboxJob, StoreError,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::queries::insert_journal_with;
use crate::runs::{insert_timers, parse_run_id};
use crate::sql_error;
use crate::trace_index::{self, Source};

/// The outbox columns [`job_row`] reads, in its order; queries alias the outbox as `o`.
const JOB_COLUMNS: &str = "o.seq, o.idempotency_key, o.run_id, o.rule_id, o.action, o.connector, \
     o.object, o.params_json, o.created_at, o.next_at";

/// Reads the [`JOB_COLUMNS`] from column `first` on: the job and its seq.
fn job_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Result<(i64, OutboxJob), StoreError>> {
    let seq: i64 = row.get(first)?;
    let idempotency_key: String = row.get(first + 1)?;
    let run_id: String = row.get(first + 2)?;
    let rule_id: String = row.get(first + 3)?;
    let action: String = row.get(first + 4)?;
    let connector: String = row.get(first + 5)?;
    let object: String = row.get(first + 6)?;
    let params: String = row.get(first + 7)?;
    let created_at: i64 = row.get(first + 8)?;
    let next_at: i64 = row.get(first + 9)?;
    Ok((|| {
        let job = OutboxJob {
            idempotency_key,
            run_id: parse_run_id(&run_id)?,
            rule_id,
            action,
            connector,
            object: object
                .parse::<ObjectRef>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            params: parse_json(&params, "outbox params")?,
            created_at: Timestamp(created_at),
            next_at: Timestamp(next_at),
        };
        Ok((seq, job))
    })())
}

fn parse_json(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn parse_status(text: &str) -> Result<JobStatus, StoreError> {
    match text {
        "pending" => Ok(JobStatus::Pending),
        "done" => Ok(JobStatus::Done),
        "dead" => Ok(JobStatus::Dead),
        other => Err(StoreError::Corrupt(format!("outbox status {other}"))),
    }
}

pub(crate) fn outbox_for(
    connection: &Connection,
    object: &ObjectRef,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS}, o.status, o.attempts, o.result_json
             FROM outbox o WHERE o.seq IN ({}) ORDER BY o.seq",
            trace_index::seqs_of_object(Source::Outbox)
        ))
        .map_err(sql_error)?;
    let rows = statement
        .query_map([object.to_string()], |row| {
            Ok((
                job_row(row, 0)?,
                row.get::<_, String>(10)?,
                row.get::<_, u32>(11)?,
                row.get::<_, Option<String>>(12)?,
            ))
        })
        .map_err(sql_error)?;
    rows.map(|row| {
        let (job, status, attempts, result) = row.map_err(sql_error)?;
        let (seq, job) = job?;
        Ok(OutboxEntry {
            seq,
            job,
            status: parse_status(&status)?,
            attempts,
            result: result
                .map(|json| parse_json(&json, "outbox result"))
                .transpose()?,
        })
    })
    .collect()
}

/// The job with idempotency key `?1`: [`JOB_COLUMNS`], status, attempts, result, then
/// its newest dead letter's kind, message, last status and last response (if any).
fn job_by_key_sql() -> String {
    format!(
        "SELECT {JOB_COLUMNS}, o.status, o.attempts, o.result_json,
                d.kind, d.message, d.last_status, d.last_response
         FROM outbox o
         LEFT JOIN dead_letters d
             ON d.id = (SELECT MAX(id) FROM dead_letters WHERE seq = o.seq)
         WHERE o.idempotency_key = ?1"
    )
}

/// The job with idempotency key `key`, with its newest dead letter's reason if dead.
pub(crate) fn job_by_key(
    connection: &Connection,
    key: &str,
) -> Result<Option<KeyedJob>, StoreError> {
    let row = connection
        .prepare_cached(&job_by_key_sql())
        .map_err(sql_error)?
        .query_row([key], |row| {
            let reason = match row.get::<_, Option<String>>(13)? {
                Some(kind) => Some(DeadLetterReason {
                    kind,
                    message: row.get(14)?,
                    last_status: row.get(15)?,
                    last_response: row.get(16)?,
                }),
                None => None,
            };
            Ok((
                job_row(row, 0)?,
                row.get::<_, String>(10)?,
                row.get::<_, u32>(11)?,
                row.get::<_, Option<String>>(12)?,
                reason,
            ))
        })
        .optional()
        .map_err(sql_error)?;
    let Some((job, status, attempts, result, reason)) = row else {
        return Ok(None);
    };
    let (seq, job) = job?;
    let status = parse_status(&status)?;
    Ok(Some(KeyedJob {
        entry: OutboxEntry {
            seq,
            job,
            status,
            attempts,
            result: result
                .map(|json| parse_json(&json, "outbox result"))
                .transpose()?,
        },
        // A replayed job keeps its old letters; only a dead one has a reason now.
        dead: reason.filter(|_| status == JobStatus::Dead),
    }))
}

/// The claimable jobs of connector `?1` at `?2`, at most `?3`, in claim order: the
/// [`JOB_COLUMNS`], then attempts so far, the indeterminate flag, and whether a lease
/// (necessarily expired) is still set.
fn claim_sql() -> String {
    format!(
        "SELECT {JOB_COLUMNS}, o.attempts, o.indeterminate, o.lease IS NOT NULL
         FROM outbox o
         WHERE o.status = 'pending' AND o.connector = ?1 AND o.next_at <= ?2
           AND (o.lease IS NULL OR o.lease_until <= ?2)
         ORDER BY o.next_at, o.seq LIMIT ?3"
    )
}

pub(crate) fn claim_jobs(
    connection: &Connection,
    connector: &str,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let mut select = connection.prepare_cached(&claim_sql()).map_err(sql_error)?;
    let found = select
        .query_map(params![connector, now.as_millis(), limit as i64], |row| {
            Ok((
                job_row(row, 0)?,
                row.get::<_, u32>(10)?,
                row.get::<_, bool>(11)?,
                row.get::<_, bool>(12)?,
            ))
        })
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    // A lease still set on a claimable job expired with no outcome recorded: its worker
    // died or stalled, maybe after the API acted. The flag is written back so the doubt
    // outlives this claim (a retry the new worker records may clear it once it checked).
    let mut lease = connection
        .prepare_cached(
            "UPDATE outbox SET lease = ?2, lease_until = ?3, attempts = ?4, indeterminate = ?5
             WHERE seq = ?1",
        )
        .map_err(sql_error)?;
    found
        .into_iter()
        .map(|(job, attempts, indeterminate, expired)| {
            let (seq, job) = job?;
            let token = format!("lse_{}", ulid::Ulid::new());
            let attempt = attempts.saturating_add(1);
            let after_indeterminate = indeterminate || expired;
            lease
                .execute(params![
                    seq,
                    token,
                    lease_until.as_millis(),
                    attempt,
                    after_indeterminate
                ])
                .map_err(sql_error)?;
            Ok(ClaimedJob {
                seq,
                job,
                attempt,
                lease: token,
                lease_until,
                after_indeterminate,
            })
        })
        .collect()
}

/// An attempt with its JSON serialized on the caller's thread (the writer thread is the
/// one every write waits for).
pub(crate) struct PreparedAttempt {
    record: AttemptRecord,
    result: Option<String>,
    details: Vec<String>,
}

impl PreparedAttempt {
    pub(crate) fn new(record: AttemptRecord) -> Self {
        Self {
            result: match &record.result {
                AttemptResult::Done { result } => Some(result.to_string()),
                _ => None,
            },
            details: details(&record.journal),
            record,
        }
    }
}

pub(crate) fn details(journal: &[JournalEntry]) -> Vec<String> {
    journal.iter().map(|e| e.detail.to_string()).collect()
}

/// Returns false, having written nothing, if the job no longer carries the lease.
pub(crate) fn record_attempt(
    connection: &Connection,
    prepared: &PreparedAttempt,
) -> Result<bool, StoreError> {
    let record = &prepared.record;
    // Every branch clears the lease and checks it in the same statement: the lease is
    // both the proof of the claim and the mark of an attempt in flight.
    let changed = match &record.result {
        AttemptResult::Done { .. } => connection
            .prepare_cached(
                "UPDATE outbox SET status = 'done', result_json = ?3, lease = NULL, lease_until = NULL
                 WHERE seq = ?1 AND lease = ?2 AND status = 'pending'",
            )
            .and_then(|mut s| s.execute(params![record.seq, record.lease, prepared.result])),
        AttemptResult::Retry {
            next_at,
            indeterminate,
        } => connection
            .prepare_cached(
                "UPDATE outbox SET next_at = ?3, indeterminate = ?4, lease = NULL, lease_until = NULL
                 WHERE seq = ?1 AND lease = ?2 AND status = 'pending'",
            )
            .and_then(|mut s| {
                s.execute(params![
                    record.seq,
                    record.lease,
                    next_at.as_millis(),
                    indeterminate
                ])
            }),
        // A job parked as `indeterminate` may have taken effect: its replay must check
        // first. Otherwise the flag stays as it was; a needless check costs one read, a
        // missed one a duplicate action.
        AttemptResult::Dead(reason) => connection
            .prepare_cached(
                "UPDATE outbox SET status = 'dead', lease = NULL, lease_until = NULL,
                     indeterminate = MAX(indeterminate, ?3)
                 WHERE seq = ?1 AND lease = ?2 AND status = 'pending'",
            )
            .and_then(|mut s| {
                s.execute(params![
                    record.seq,
                    record.lease,
                    reason.kind == "indeterminate"
                ])
            }),
    }
    .map_err(sql_error)?;
    if changed == 0 {
        return Ok(false);
    }
    if let AttemptResult::Dead(reason) = &record.result {
        connection
            .prepare_cached(
                "INSERT INTO dead_letters (seq, kind, message, last_status, last_response, attempts, dead_at)
                 SELECT seq, ?2, ?3, ?4, ?5, attempts, ?6 FROM outbox WHERE seq = ?1",
            )
            .map_err(sql_error)?
            .execute(params![
                record.seq,
                reason.kind,
                reason.message,
                reason.last_status,
                reason.last_response,
                record.at.as_millis(),
            ])
            .map_err(sql_error)?;
    }
    for (entry, detail) in record.journal.iter().zip(&prepared.details) {
        insert_journal_with(connection, entry, detail)?;
    }
    insert_timers(connection, &record.timers)?;
    Ok(true)
}

/// When connector `?1` next has work. Two parts, each served by an index: the soonest
/// job nobody holds (the claim index, read from its start), and the soonest lease to
/// expire (the small leased index). One statement, so both parts read one snapshot.
const NEXT_JOB_SQL: &str = "SELECT MIN(t) FROM (
         SELECT t FROM (
             SELECT next_at AS t FROM outbox
             WHERE status = 'pending' AND connector = ?1 AND lease IS NULL
             ORDER BY next_at LIMIT 1
         )
         UNION ALL
         SELECT MAX(next_at, lease_until) FROM outbox
         WHERE lease IS NOT NULL AND connector = ?1 AND status = 'pending'
     )";

pub(crate) fn next_job_at(
    connection: &Connection,
    connector: &str,
) -> Result<Option<Timestamp>, StoreError> {
    connection
        .prepare_cached(NEXT_JOB_SQL)
        .map_err(sql_error)?
        .query_row([connector], |row| row.get::<_, Option<i64>>(0))
        .map(|at| at.map(Timestamp))
        .map_err(sql_error)
}

/// The dead letter columns [`dead_letter_row`] reads, then the [`JOB_COLUMNS`].
const DEAD_LETTER_SELECT: &str = "SELECT d.id, d.kind, d.message, d.last_status, d.last_response, \
     d.attempts, d.dead_at, d.replayed_at";

fn dead_letter_row(row: &Row<'_>) -> rusqlite::Result<Result<DeadLetter, StoreError>> {
    let (id, kind, message): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
    let (last_status, last_response): (Option<i64>, Option<String>) = (row.get(3)?, row.get(4)?);
    let (attempts, dead_at, replayed_at): (u32, i64, Option<i64>) =
        (row.get(5)?, row.get(6)?, row.get(7)?);
    let job = job_row(row, 8)?;
    Ok((|| {
        let (seq, job) = job?;
        let last_status = last_status
            .map(|status| {
                u16::try_from(status)
                    .map_err(|_| StoreError::Corrupt(format!("dead letter {id} status {status}")))
            })
            .transpose()?;
        Ok(DeadLetter {
            id,
            seq,
            job,
            reason: DeadLetterReason {
                kind,
                message,
                last_status,
                last_response,
            },
            attempts,
            dead_at: Timestamp(dead_at),
            replayed_at: replayed_at.map(Timestamp),
        })
    })())
}

pub(crate) fn dead_letters(
    connection: &Connection,
    include_replayed: bool,
) -> Result<Vec<DeadLetter>, StoreError> {
    // Two texts rather than `?1 OR ...`, so the waiting ones come from their index.
    let filter = if include_replayed {
        ""
    } else {
        "WHERE d.replayed_at IS NULL"
    };
    let mut statement = connection
        .prepare_cached(&format!(
            "{DEAD_LETTER_SELECT}, {JOB_COLUMNS}
             FROM dead_letters d JOIN outbox o ON o.seq = d.seq {filter} ORDER BY d.id"
        ))
        .map_err(sql_error)?;
    let rows = statement
        .query_map([], dead_letter_row)
        .map_err(sql_error)?;
    rows.map(|row| row.map_err(sql_error)?).collect()
}

pub(crate) fn dead_letter(
    connection: &Connection,
    id: i64,
) -> Result<Option<DeadLetter>, StoreError> {
    connection
        .prepare_cached(&format!(
            "{DEAD_LETTER_SELECT}, {JOB_COLUMNS}
             FROM dead_letters d JOIN outbox o ON o.seq = d.seq WHERE d.id = ?1"
        ))
        .map_err(sql_error)?
        .query_row([id], dead_letter_row)
        .optional()
        .map_err(sql_error)?
        .transpose()
}

pub(crate) fn replay_dead_letters(
    connection: &Connection,
    ids: &[i64],
    now: Timestamp,
    journal: &[JournalEntry],
    details: &[String],
) -> Result<Vec<i64>, StoreError> {
    let mut mark = connection
        .prepare_cached(
            "UPDATE dead_letters SET replayed_at = ?2 WHERE id = ?1 AND replayed_at IS NULL
             RETURNING seq",
        )
        .map_err(sql_error)?;
    // The indeterminate flag is left as it is: if the attempt that parked the job may
    // have taken effect, the replayed attempt checks before acting.
    let mut requeue = connection
        .prepare_cached(
            "UPDATE outbox SET status = 'pending', next_at = ?2, attempts = 0,
                 lease = NULL, lease_until = NULL
             WHERE seq = ?1 AND status = 'dead'",
        )
        .map_err(sql_error)?;
    let mut replayed = Vec::with_capacity(ids.len());
    for (index, &id) in ids.iter().enumerate() {
        let seq: Option<i64> = mark
            .query_row(params![id, now.as_millis()], |row| row.get(0))
            .optional()
            .map_err(sql_error)?;
        let Some(seq) = seq else { continue };
        // A job has at most one dead letter not yet replayed, and while it has one it
        // is dead; anything else means the two tables disagree.
        if requeue
            .execute(params![seq, now.as_millis()])
            .map_err(sql_error)?
            != 1
        {
            return Err(StoreError::Corrupt(format!(
                "dead letter {id} waits for replay but its job {seq} is not dead"
            )));
        }
        replayed.push(id);
        // Only letters really replayed are journaled: a racing replay that lost writes
        // nothing.
        if let (Some(entry), Some(detail)) = (journal.get(index), details.get(index)) {
            insert_journal_with(connection, entry, detail)?;
        }
    }
    Ok(replayed)
}

pub(crate) fn next_in_rotation(
    connection: &Connection,
    name: &str,
    size: u32,
    key: &str,
) -> Result<u32, StoreError> {
    if size == 0 {
        return Err(StoreError::Backend(format!(
            "rotation {name} has no members"
        )));
    }
    let picked: Option<i64> = connection
        .prepare_cached("SELECT position FROM rotation_picks WHERE key = ?1 AND name = ?2")
        .map_err(sql_error)?
        .query_row([key, name], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    let position = match picked {
        Some(position) => position,
        None => {
            let position: i64 = connection
                .prepare_cached(
                    "INSERT INTO rotations (name, position) VALUES (?1, 0)
                     ON CONFLICT (name) DO UPDATE SET position = position + 1
                     RETURNING position",
                )
                .map_err(sql_error)?
                .query_row([name], |row| row.get(0))
                .map_err(sql_error)?;
            connection
                .prepare_cached(
                    "INSERT INTO rotation_picks (key, name, position) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql_error)?
                .execute(rusqlite::params![key, name, position])
                .map_err(sql_error)?;
            position
        }
    };
    u32::try_from(position.rem_euclid(i64::from(size)))
        .map_err(|_| StoreError::Corrupt(format!("rotation {name} at {position}")))
}

#[cfg(test)]
mod tests {
    use followthrough_store::{Store, StoreError};

    use crate::SqliteStore;
    use crate::trace_index::{self, Source};

    #[tokio::test]
    async fn a_rotation_of_nobody_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("r.db"), true).unwrap();
        let result = store.next_in_rotation("owners:empty", 0, "k").await;
        assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
        assert_eq!(
            store
                .next_in_rotation("owners:empty", 2, "k")
                .await
                .unwrap(),
            0
        );
        store.close().await.unwrap();
    }

    /// The worker's queries read their indexes, not the whole outbox.
    #[test]
    fn the_workers_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut connection = crate::open_connection(&dir.path().join("p.db")).unwrap();
        crate::migrations::apply(&mut connection).unwrap();
        // The parameters are bound to NULL: the plan does not depend on their values.
        let plan = |sql: &str| -> String {
            let mut statement = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let unbound = vec![rusqlite::types::Null; statement.parameter_count()];
            let details: Vec<String> = statement
                .query_map(rusqlite::params_from_iter(unbound), |row| {
                    row.get::<_, String>(3)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            details.join("\n")
        };
        let claim = plan(&super::claim_sql());
        assert!(claim.contains("outbox_claim"), "{claim}");
        assert!(
            !claim.contains("TEMP B-TREE"),
            "claims read in index order: {claim}"
        );
        let next = plan(super::NEXT_JOB_SQL);
        assert!(
            next.contains("outbox_claim") && next.contains("outbox_leased"),
            "{next}"
        );
        let by_object = plan(&format!(
            "SELECT {} FROM outbox o WHERE o.seq IN ({}) ORDER BY o.seq",
            super::JOB_COLUMNS,
            trace_index::seqs_of_object(Source::Outbox)
        ));
        assert!(by_object.contains("outbox_by_object"), "{by_object}");
        assert!(
            !by_object.contains("SCAN o") && !by_object.contains("SCAN outbox"),
            "only the rows past the mark are scanned, by seq: {by_object}"
        );
        let by_key = plan(&super::job_by_key_sql());
        assert!(
            !by_key.contains("SCAN"),
            "one job, found by index: {by_key}"
        );
    }
}
