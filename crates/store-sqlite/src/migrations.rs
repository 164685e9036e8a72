//! Schema migrations, embedded in the binary and applied in order, each in its own
//! transaction. Written by hand: a version table and a list of SQL files is all SQLite
//! needs, and it keeps the backend free of a migration framework's runtime.

use followthrough_store::StoreError;
use rusqlite::Connection;

use crate::sql_error;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "inbox_objects_journal",
        include_str!("../migrations/0001_inbox_objects_journal.sql"),
    ),
    (
        2,
        "runs_timers_outbox",
        include_str!("../migrations/0002_runs_timers_outbox.sql"),
    ),
    (
        3,
        "context_and_deferrals",
        include_str!("../migrations/0003_context_and_deferrals.sql"),
    ),
];

/// The schema version this build expects.
pub const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The version the database is at; 0 for a new one. Only reads.
pub(crate) fn current_version(connection: &Connection) -> Result<i64, StoreError> {
    let has_table: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    if !has_table {
        return Ok(0);
    }
    connection
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(sql_error)
}

pub(crate) fn apply(connection: &mut Connection) -> Result<i64, StoreError> {
    ensure_table(connection)?;
    let found = current_version(connection)?;
    if found > LATEST_VERSION {
        return Err(StoreError::SchemaMismatch {
            found,
            expected: LATEST_VERSION,
        });
    }
    let mut version = found;
    for (number, name, sql) in MIGRATIONS.iter().filter(|(number, ..)| *number > found) {
        let transaction = connection.transaction().map_err(sql_error)?;
        transaction
            .execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("migration {number} ({name}) failed: {e}")))?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_at)
                 VALUES (?1, ?2, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
                rusqlite::params![number, name],
            )
            .map_err(sql_error)?;
        transaction.commit().map_err(sql_error)?;
        tracing::info!(version = number, name, "applied migration");
        version = *number;
    }
    Ok(version)
}

fn ensure_table(connection: &Connection) -> Result<(), StoreError> {
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     INTEGER PRIMARY KEY,
                 name        TEXT    NOT NULL,
                 applied_at  INTEGER NOT NULL
             )",
        )
        .map_err(sql_error)
}
