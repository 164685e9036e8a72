//! Reads for metrics, the admin API and the console, and retention pruning.

use followthrough_core::{ObjectRef, Timestamp};
use followthrough_store::{
    ActiveRunCount, ConnectorBacklog, Pruned, RunFilter, RunRecord, StoreError, StoreStats,
};
use rusqlite::{Connection, params};

use crate::runs::{ACTIVE, RUN_COLUMNS, run_row};
use crate::sql_error;
use crate::trace_index::{self, Source};

pub(crate) fn stats(connection: &Connection) -> Result<StoreStats, StoreError> {
    let count = |sql: &str| -> Result<u64, StoreError> {
        connection
            .prepare_cached(sql)
            .map_err(sql_error)?
            .query_row([], |row| row.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql_error)
    };
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT rule_id, status, COUNT(*) FROM runs WHERE {ACTIVE}
             GROUP BY rule_id, status ORDER BY rule_id, status"
        ))
        .map_err(sql_error)?;
    let active_runs = statement
        .query_map([], |row| {
            Ok(ActiveRunCount {
                rule_id: row.get(0)?,
                status: row.get(1)?,
                count: row.get::<_, i64>(2)? as u64,
            })
        })
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    let mut statement = connection
        .prepare_cached(
            "SELECT connector, COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'
             GROUP BY connector ORDER BY connector",
        )
        .map_err(sql_error)?;
    let outbox_pending = statement
        .query_map([], |row| {
            Ok(ConnectorBacklog {
                connector: row.get(0)?,
                pending: row.get::<_, i64>(1)? as u64,
                oldest_created_at: row.get::<_, Option<i64>>(2)?.map(Timestamp),
            })
        })
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    Ok(StoreStats {
        inbox_pending: count("SELECT COUNT(*) FROM inbox_pending")?,
        active_runs,
        timers_pending: count("SELECT COUNT(*) FROM timers")?,
        next_timer_at: crate::context::next_timer_at(connection)?,
        outbox_pending,
        dead_letters: count("SELECT COUNT(*) FROM dead_letters WHERE replayed_at IS NULL")?,
    })
}

pub(crate) fn objects_by_email(
    connection: &Connection,
    email: &str,
    limit: usize,
) -> Result<Vec<ObjectRef>, StoreError> {
    // The stored value is JSON text; compare it with the JSON text of the address, both
    // lowered, so the partial index on `lower(value_json)` answers.
    let wanted = serde_json::Value::from(email.trim())
        .to_string()
        .to_lowercase();
    let mut statement = connection
        .prepare_cached(
            "SELECT p.object FROM object_properties p JOIN objects o ON o.object = p.object
             WHERE p.name = 'email' AND lower(p.value_json) = ?1
             ORDER BY o.updated_at DESC LIMIT ?2",
        )
        .map_err(sql_error)?;
    let rows = statement
        .query_map(params![wanted, limit as i64], |row| row.get::<_, String>(0))
        .map_err(sql_error)?;
    rows.map(|row| {
        row.map_err(sql_error)?
            .parse::<ObjectRef>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    })
    .collect()
}

pub(crate) fn list_runs(
    connection: &Connection,
    filter: &RunFilter,
) -> Result<Vec<RunRecord>, StoreError> {
    let status = match filter.status.as_deref() {
        None => String::new(),
        Some("active") => format!("AND {ACTIVE}"),
        Some(_) => "AND status = ?3".to_owned(),
    };
    // Run ids are ULIDs: ordering by id is ordering by creation, and the id of the
    // previous page's last run is the cursor.
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE (?1 IS NULL OR rule_id = ?1) AND (?2 IS NULL OR run_id < ?2) {status}
             ORDER BY run_id DESC LIMIT ?4"
        ))
        .map_err(sql_error)?;
    let before = filter.before.as_ref().map(|id| id.to_string());
    let wanted = filter.status.clone().unwrap_or_default();
    // Unused parameters are still bound: SQLite accepts a value for a number that the
    // text does not use only if a higher number is used, which ?4 is.
    let rows = statement
        .query_map(
            params![filter.rule_id, before, wanted, filter.limit as i64],
            run_row,
        )
        .map_err(sql_error)?;
    rows.map(|row| row.map_err(sql_error)?).collect()
}

pub(crate) fn prune(
    connection: &Connection,
    before: Timestamp,
    limit: usize,
) -> Result<Pruned, StoreError> {
    // The rows to delete are collected first: their trace index entries go with them.
    connection
        .execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS pruned_journal (seq INTEGER PRIMARY KEY);
             CREATE TEMP TABLE IF NOT EXISTS pruned_inbox (seq INTEGER PRIMARY KEY);",
        )
        .map_err(sql_error)?;
    connection
        .prepare_cached(
            "INSERT INTO pruned_journal (seq)
             SELECT seq FROM journal WHERE at < ?1 ORDER BY at LIMIT ?2",
        )
        .map_err(sql_error)?
        .execute(params![before.0, limit as i64])
        .map_err(sql_error)?;
    trace_index::forget(connection, Source::Journal, "pruned_journal")?;
    let journal_rows = connection
        .prepare_cached("DELETE FROM journal WHERE seq IN (SELECT seq FROM pruned_journal)")
        .map_err(sql_error)?
        .execute([])
        .map_err(sql_error)? as u64;
    connection
        .execute_batch("DELETE FROM pruned_journal")
        .map_err(sql_error)?;
    trace_index::clamp_journal_mark(connection)?;
    // Applied events only: `inbox_applied` is what says so, and a pending or deferred
    // event has no row there.
    connection
        .prepare_cached(
            "INSERT INTO pruned_inbox (seq)
             SELECT a.seq FROM inbox_applied a JOIN inbox i ON i.seq = a.seq
             WHERE i.received_at < ?1 ORDER BY a.seq LIMIT ?2",
        )
        .map_err(sql_error)?
        .execute(params![before.0, limit as i64])
        .map_err(sql_error)?;
    trace_index::forget(connection, Source::Inbox, "pruned_inbox")?;
    let inbox_rows = connection
        .prepare_cached("DELETE FROM inbox WHERE seq IN (SELECT seq FROM pruned_inbox)")
        .map_err(sql_error)?
        .execute([])
        .map_err(sql_error)? as u64;
    connection
        .execute_batch(
            "DELETE FROM inbox_applied WHERE seq IN (SELECT seq FROM pruned_inbox);
             DELETE FROM pruned_inbox;",
        )
        .map_err(sql_error)?;
    Ok(Pruned {
        journal_rows,
        inbox_rows,
    })
}
