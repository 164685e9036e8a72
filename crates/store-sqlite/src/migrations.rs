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
    (
        4,
        "outbox_workers",
        include_str!("../migrations/0004_outbox_workers.sql"),
    ),
    (5, "admin", include_str!("../migrations/0005_admin.sql")),
    (
        6,
        "active_runs_predicate",
        include_str!("../migrations/0006_active_runs_predicate.sql"),
    ),
    (
        7,
        "one_active_runs_index",
        include_str!("../migrations/0007_one_active_runs_index.sql"),
    ),
    (
        8,
        "trace_indexes_in_bulk",
        include_str!("../migrations/0008_trace_indexes_in_bulk.sql"),
    ),
    (
        9,
        "active_runs_by_object",
        include_str!("../migrations/0009_active_runs_by_object.sql"),
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
    apply_until(connection, LATEST_VERSION)
}

/// Applies the pending migrations up to `target` (tests start from an older schema).
fn apply_until(connection: &mut Connection, target: i64) -> Result<i64, StoreError> {
    ensure_table(connection)?;
    let found = current_version(connection)?;
    if found > LATEST_VERSION {
        return Err(StoreError::SchemaMismatch {
            found,
            expected: LATEST_VERSION,
        });
    }
    let mut version = found;
    let pending = MIGRATIONS
        .iter()
        .filter(|(number, ..)| *number > found && *number <= target);
    for (number, name, sql) in pending {
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

#[cfg(test)]
mod tests {
    use followthrough_core::Timestamp;
    use followthrough_store::Store;

    use super::*;

    /// A new database migrated only up to `version`, to fill with rows of that schema.
    fn database_at(version: i64) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut connection = crate::open_connection(&path).unwrap();
        assert_eq!(apply_until(&mut connection, version).unwrap(), version);
        (dir, path, connection)
    }

    /// Active runs from before the single active-runs index migrate into it: parallel
    /// runs of one key each keep a slot, and a key still holds one non-parallel run.
    #[tokio::test]
    async fn active_runs_from_version_6_keep_their_one_per_key_rule() {
        let (_dir, path, mut connection) = database_at(6);
        connection
            .execute_batch(
                "INSERT INTO runs (run_id, rule_id, rule_version, run_key, object, status, parallel,
                                   state_json, created_at, updated_at)
                 VALUES ('run_a', 'nurture', 'v1', '1', 'hubspot:contact:1', 'waiting', 1, '{}', 1, 1),
                        ('run_b', 'nurture', 'v1', '1', 'hubspot:contact:1', 'waiting', 1, '{}', 2, 2),
                        ('run_c', 'lead-gone-cold', 'v1', '1', 'hubspot:contact:1', 'waiting', 0, '{}', 1, 1);",
            )
            .unwrap();
        assert_eq!(apply(&mut connection).unwrap(), LATEST_VERSION);
        drop(connection);

        let store = crate::SqliteStore::open(&path, false).unwrap();
        store.ready().await.unwrap();
        let ids = |runs: Vec<followthrough_store::RunRecord>| -> Vec<String> {
            runs.iter().map(|r| r.run_id.to_string()).collect()
        };
        assert_eq!(
            ids(store.active_runs("nurture", "1").await.unwrap()),
            ["run_a", "run_b"]
        );
        assert_eq!(
            ids(store.active_runs_of_rule("lead-gone-cold").await.unwrap()),
            ["run_c"]
        );
        let connection = crate::open_connection(&path).unwrap();
        let second = connection.execute(
            "INSERT INTO runs (run_id, rule_id, rule_version, run_key, object, status, parallel,
                               state_json, created_at, updated_at)
             VALUES ('run_d', 'lead-gone-cold', 'v1', '1', 'hubspot:contact:1', 'running', 0, '{}', 3, 3)",
            [],
        );
        assert!(
            second.is_err(),
            "a second active run for one key was let in"
        );
    }

    /// Rows written before the trace indexes were kept in bulk are entered by the
    /// migration itself, so the first reads after it find them without a pass.
    #[tokio::test]
    async fn rows_from_version_7_are_entered_in_the_trace_indexes() {
        let (_dir, path, mut connection) = database_at(7);
        connection
            .execute_batch(
                "INSERT INTO inbox (id, source, dedup_key, object, kind, occurred_at, received_at, event_json)
                 VALUES ('e1', 'hubspot', 'd1', 'hubspot:contact:1', 'property_change', 1, 1, '{}'),
                        ('e2', 'hubspot', 'd2', 'hubspot:contact:2', 'property_change', 1, 1, '{}');
                 INSERT INTO journal (at, object, kind, summary, detail_json)
                 VALUES (1, 'hubspot:contact:1', 'rule', 'first', '{}'),
                        (1, NULL, 'webhook', 'a request', '{}'),
                        (2, 'hubspot:contact:1', 'rule', 'second', '{}');
                 INSERT INTO outbox (idempotency_key, run_id, action, object, params_json, created_at, next_at)
                 VALUES ('k1', 'run_1', 'create_task', 'hubspot:contact:1', '{}', 1, 5);
                 INSERT INTO property_history (object, name, value_json, occurred_at, event_id)
                 VALUES ('hubspot:contact:1', 'firstname', '\"Ada\"', 1, 'e1');",
            )
            .unwrap();
        assert_eq!(apply(&mut connection).unwrap(), LATEST_VERSION);
        let count = |sql: &str| -> i64 { connection.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(count("SELECT COUNT(*) FROM inbox_by_object"), 2);
        assert_eq!(
            count("SELECT COUNT(*) FROM journal_by_object"),
            2,
            "not the request"
        );
        assert_eq!(count("SELECT COUNT(*) FROM outbox_by_object"), 1);
        assert_eq!(count("SELECT COUNT(*) FROM property_history_by_object"), 1);
        let marks: Vec<(String, i64)> = connection
            .prepare("SELECT source, indexed_through FROM trace_index_marks ORDER BY source")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            ("inbox", 2),
            ("journal", 3),
            ("outbox", 1),
            ("property_history", 1),
        ]
        .map(|(source, seq)| (source.to_owned(), seq));
        assert_eq!(marks, expected);
        drop(connection);

        let store = crate::SqliteStore::open(&path, false).unwrap();
        store.ready().await.unwrap();
        let object = "hubspot:contact:1".parse().unwrap();
        let journal: Vec<String> = store
            .journal_for(&object)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.summary)
            .collect();
        assert_eq!(journal, ["first", "second"]);
        store.close().await.unwrap();
    }

    /// Jobs queued before the outbox workers existed get their rule from their run and
    /// their connector from the action or the object's CRM, and can be claimed.
    #[tokio::test]
    async fn outbox_rows_from_version_3_migrate() {
        let (_dir, path, mut connection) = database_at(3);
        connection
            .execute_batch(
                "INSERT INTO runs (run_id, rule_id, rule_version, run_key, object, status, parallel,
                                   state_json, created_at, updated_at)
                 VALUES ('run_1', 'lead-gone-cold', 'v1', '1', 'hubspot:contact:1', 'waiting', 0,
                         '{}', 1, 1);
                 INSERT INTO outbox (idempotency_key, run_id, action, object, params_json,
                                     created_at, next_at)
                 VALUES ('k1', 'run_1', 'create_task', 'hubspot:contact:1', '{}', 1, 5),
                        ('k2', 'run_1', 'slack_dm', 'hubspot:contact:1', '{}', 1, 5),
                        ('k3', 'run_gone', 'http', 'hubspot:contact:1', '{}', 1, 5),
                        ('k4', 'run_1', 'update', 'pipedrive:deal:7', '{}', 1, 5);",
            )
            .unwrap();
        assert_eq!(apply(&mut connection).unwrap(), LATEST_VERSION);
        let migrated: Vec<(String, String, String)> = connection
            .prepare("SELECT idempotency_key, rule_id, connector FROM outbox ORDER BY seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            ("k1", "lead-gone-cold", "hubspot"),
            ("k2", "lead-gone-cold", "slack"),
            ("k3", "", "http"),
            ("k4", "lead-gone-cold", "pipedrive"),
        ]
        .map(|(k, r, c)| (k.to_owned(), r.to_owned(), c.to_owned()));
        assert_eq!(migrated, expected);
        drop(connection);

        let store = crate::SqliteStore::open(&path, false).unwrap();
        store.ready().await.unwrap();
        let claimed = store
            .claim_jobs("pipedrive", Timestamp(10), Timestamp(20), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].job.idempotency_key, "k4");
        assert_eq!(
            (claimed[0].attempt, claimed[0].after_indeterminate),
            (1, false)
        );
        store.close().await.unwrap();
    }
}
