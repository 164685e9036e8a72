//! The SQL for runs, timers and queueing outbox jobs: the engine's durable state. (The
//! outbox workers' side is [`crate::outbox`].)

use followthrough_core::{ObjectRef, RunId, Timestamp};
use followthrough_store::{DueTimer, HeldTimers, RunRecord, StoreError, TimerRecord};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::queries::PreparedUnit;
use crate::{many, sql_error};

const UPSERT_RUN: &str =
    "INSERT INTO runs (run_id, rule_id, rule_version, run_key, object, status, parallel,
                       reason, state_json, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
     ON CONFLICT (run_id) DO UPDATE SET
         status = excluded.status, reason = excluded.reason,
         state_json = excluded.state_json, updated_at = excluded.updated_at";

/// Writes the engine's part of a unit: runs, then timer changes, then outbox jobs.
pub(crate) fn apply(connection: &Connection, prepared: &PreparedUnit) -> Result<(), StoreError> {
    let unit = &prepared.unit;
    let mut upsert = connection.prepare_cached(UPSERT_RUN).map_err(sql_error)?;
    for (run, object) in unit.runs.iter().zip(&prepared.run_objects) {
        upsert
            .execute(params![
                run.run_id.as_str(),
                run.rule_id,
                run.rule_version,
                run.key,
                object,
                run.status,
                run.parallel,
                run.reason,
                run.state,
                run.created_at.as_millis(),
                run.updated_at.as_millis(),
            ])
            .map_err(|error| match error {
                rusqlite::Error::SqliteFailure(e, _)
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict(format!(
                        "rule {} already has an active run for key {}",
                        run.rule_id, run.key
                    ))
                }
                other => sql_error(other),
            })?;
    }
    let mut cancel = connection
        .prepare_cached("DELETE FROM timers WHERE run_id = ?1 AND due_at = ?2")
        .map_err(sql_error)?;
    for timer in &unit.timers_cancelled {
        cancel
            .execute(params![timer.run_id.as_str(), timer.due_at.as_millis()])
            .map_err(sql_error)?;
    }
    insert_timers(connection, &unit.timers_scheduled)?;
    let jobs: Vec<_> = unit
        .outbox
        .iter()
        .zip(&prepared.params)
        .zip(&prepared.job_objects)
        .collect();
    let queue = many::Shape {
        head: "INSERT INTO outbox (idempotency_key, run_id, rule_id, action, connector, object,
                                   params_json, created_at, next_at) VALUES ",
        row: "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tail: " ON CONFLICT (idempotency_key) DO NOTHING",
    };
    many::execute(
        connection,
        &queue,
        &jobs,
        |params, ((job, json), object)| {
            params
                .push(&job.idempotency_key)?
                .push(job.run_id.as_str())?
                .push(&job.rule_id)?
                .push(&job.action)?
                .push(&job.connector)?
                .push(object.as_str())?
                .push(json.as_str())?
                .push(job.created_at.as_millis())?
                .push(job.next_at.as_millis())?;
            Ok(())
        },
    )
    .map(drop)
    .map_err(sql_error)
}

pub(crate) fn active_runs(
    connection: &Connection,
    rule_id: &str,
    key: &str,
) -> Result<Vec<RunRecord>, StoreError> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS}
             FROM runs WHERE rule_id = ?1 AND run_key = ?2 AND {ACTIVE}
             ORDER BY created_at, run_id"
        ))
        .map_err(sql_error)?;
    let rows = statement
        .query_map(params![rule_id, key], run_row)
        .map_err(sql_error)?;
    rows.map(|row| row.map_err(sql_error)?).collect()
}

/// The columns [`run_row`] reads, in its order.
/// The condition of an active run, spelled exactly as the partial indexes on `runs`
/// spell it: SQLite uses a partial index only for a query that repeats its condition
/// (migration 0006 says why it is not `status IN (...)`).
pub(crate) const ACTIVE: &str = "(status = 'new' OR status = 'running' OR status = 'waiting')";

pub(crate) const RUN_COLUMNS: &str = "run_id, rule_id, rule_version, run_key, object, status, parallel, reason, state_json, created_at, updated_at";

pub(crate) fn run_row(row: &Row<'_>) -> rusqlite::Result<Result<RunRecord, StoreError>> {
    let run_id: String = row.get(0)?;
    let object: String = row.get(4)?;
    let state: String = row.get(8)?;
    let (rule_id, rule_version, key, status): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(5)?);
    let (parallel, reason, created_at, updated_at): (bool, Option<String>, i64, i64) =
        (row.get(6)?, row.get(7)?, row.get(9)?, row.get(10)?);
    Ok((|| {
        Ok(RunRecord {
            run_id: parse_run_id(&run_id)?,
            rule_id,
            rule_version,
            key,
            object: object
                .parse::<ObjectRef>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            status,
            parallel,
            reason,
            state,
            created_at: Timestamp(created_at),
            updated_at: Timestamp(updated_at),
            // One writer: nothing to tell apart.
            revision: 0,
        })
    })())
}

/// Schedules timers (the engine's, and those an outbox attempt records with its outcome).
pub(crate) fn insert_timers(
    connection: &Connection,
    timers: &[TimerRecord],
) -> Result<(), StoreError> {
    let mut schedule = connection
        .prepare_cached(
            "INSERT INTO timers (run_id, due_at, kind) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )
        .map_err(sql_error)?;
    for timer in timers {
        schedule
            .execute(params![
                timer.run_id.as_str(),
                timer.due_at.as_millis(),
                timer.kind
            ])
            .map_err(sql_error)?;
    }
    Ok(())
}

/// Due timers, oldest first, each with its run's object: up to `limit` of them besides
/// those `held` holds, which are passed over before their run is looked up (the engine's
/// batches in flight hold them; with three in flight they were most of what was read).
pub(crate) fn due_timers(
    connection: &Connection,
    now: Timestamp,
    limit: usize,
    held: &HeldTimers,
) -> Result<Vec<DueTimer>, StoreError> {
    let mut timers = connection
        .prepare_cached(
            "SELECT run_id, due_at, kind FROM timers
             WHERE due_at <= ?1 ORDER BY due_at, run_id LIMIT ?2",
        )
        .map_err(sql_error)?;
    let mut object_of = connection
        .prepare_cached("SELECT object FROM runs WHERE run_id = ?1")
        .map_err(sql_error)?;
    let mut rows = timers
        .query(params![now.as_millis(), (limit + held.len()) as i64])
        .map_err(sql_error)?;
    let mut due = Vec::new();
    // One key, refilled for each row: a held timer is passed over without allocating.
    let mut key = (String::new(), Timestamp(0));
    while due.len() < limit {
        let Some(row) = rows.next().map_err(sql_error)? else {
            break;
        };
        key.0.clear();
        let run_id = row.get_ref(0).map_err(sql_error)?;
        key.0.push_str(
            run_id
                .as_str()
                .map_err(|e| StoreError::Corrupt(format!("timer run id: {e}")))?,
        );
        key.1 = Timestamp(row.get(1).map_err(sql_error)?);
        if held.holds(&key) {
            continue;
        }
        let (run_id, due_at) = (key.0.clone(), key.1);
        let kind: String = row.get(2).map_err(sql_error)?;
        let object = object_of
            .query_row([&run_id], |row| row.get::<_, String>(0))
            .optional()
            .map_err(sql_error)?
            .map(|o| {
                o.parse::<ObjectRef>()
                    .map_err(|e| StoreError::Corrupt(format!("run object {o}: {e}")))
            })
            .transpose()?;
        due.push(DueTimer {
            timer: TimerRecord {
                run_id: parse_run_id(&run_id)?,
                due_at,
                kind,
            },
            object,
        });
    }
    Ok(due)
}

pub(crate) fn parse_run_id(text: &str) -> Result<RunId, StoreError> {
    RunId::parse(text).ok_or_else(|| StoreError::Corrupt(format!("run id {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrated() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut connection = crate::open_connection(&dir.path().join("plans.db")).unwrap();
        crate::migrations::apply(&mut connection).unwrap();
        (dir, connection)
    }

    /// Writing a run evaluates the condition of every partial index on `runs`; spelled
    /// as `IN` of three constants, each write built temporary b-trees (a tenth of the
    /// writer's time when firing timers).
    #[test]
    fn writing_a_run_builds_no_temporary_table() {
        let (_dir, connection) = migrated();
        let mut explain = connection
            .prepare(&format!("EXPLAIN {UPSERT_RUN}"))
            .unwrap();
        let unbound: [rusqlite::types::Null; 11] = [rusqlite::types::Null; 11];
        let opcodes: Vec<String> = explain
            .query_map(unbound, |row| row.get(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(opcodes.contains(&"IdxInsert".to_owned()), "{opcodes:?}");
        assert!(
            !opcodes.iter().any(|op| op == "OpenEphemeral"),
            "the run upsert opens a temporary table: {opcodes:?}"
        );
    }

    /// A partial index serves only queries that repeat its condition: [`ACTIVE`] must
    /// stay spelled as the indexes are, or finding a key's active run reads every run.
    #[test]
    fn active_run_queries_use_the_partial_indexes() {
        let (_dir, connection) = migrated();
        let plan = |sql: &str| -> String {
            connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params!["rule", "key"], |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
                .join("; ")
        };
        let by_key = plan(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE rule_id = ?1 AND run_key = ?2 AND {ACTIVE}"
        ));
        assert!(by_key.contains("USING INDEX runs_active "), "{by_key}");
        let by_rule = plan(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE rule_id = ?1 AND {ACTIVE} AND ?2 IS NOT NULL"
        ));
        assert!(by_rule.contains("USING INDEX runs_active "), "{by_rule}");
        // Loading a batch's objects: one search per object in the active runs alone,
        // with no temporary index of the names first.
        let by_object = plan(&format!(
            "{} AND ?2 IS NOT NULL",
            crate::context::active_runs_of_objects()
        ));
        assert!(
            by_object.contains("USING INDEX runs_active_by_object "),
            "{by_object}"
        );
        assert!(!by_object.contains("LIST SUBQUERY"), "{by_object}");
    }
}
