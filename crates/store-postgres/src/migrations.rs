//! Schema migrations, embedded in the binary and applied in order, each in its own
//! transaction (PostgreSQL's DDL is transactional, so a failed migration leaves nothing
//! behind). A version table and a list of SQL files, as in the SQLite backend.
//!
//! Several instances may start at once against one database: whoever migrates holds a
//! session-level advisory lock for the whole run, so the others wait and then find the
//! schema current. The lock's key is derived from the schema name, so deployments kept
//! in different schemas of one database (and parallel tests) do not wait for each other.

use followthrough_store::StoreError;
use sqlx::{Connection, Executor, PgConnection};

use crate::error::Result;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (2, "admin", include_str!("../migrations/0002_admin.sql")),
    (
        3,
        "work_leases",
        include_str!("../migrations/0003_work_leases.sql"),
    ),
];

/// The schema version this build expects.
pub const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The version the schema first on the search path is at; 0 for a new one. Only reads.
pub(crate) async fn current_version(connection: &mut PgConnection) -> Result<i64> {
    // `to_regclass` resolves the name through the search path, as the queries do.
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
        .fetch_one(&mut *connection)
        .await?;
    if !has_table {
        return Ok(0);
    }
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations")
            .fetch_one(&mut *connection)
            .await?,
    )
}

/// Brings the schema up to [`LATEST_VERSION`] under the advisory lock, creating the
/// schema itself if it is named and missing. Returns the version reached.
pub(crate) async fn apply(connection: &mut PgConnection, schema: Option<&str>) -> Result<i64> {
    let key = lock_key(schema.unwrap_or("public"));
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut *connection)
        .await?;
    let applied = apply_locked(connection, schema).await;
    // Released on every path: the connection goes back to the pool, and a lock left on
    // it would block the next instance's start until the connection closed.
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut *connection)
        .await;
    let version = applied?;
    unlocked?;
    Ok(version)
}

async fn apply_locked(connection: &mut PgConnection, schema: Option<&str>) -> Result<i64> {
    if let Some(schema) = schema {
        let create = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
        sqlx::query(&create).execute(&mut *connection).await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     BIGINT PRIMARY KEY,
             name        TEXT   NOT NULL,
             applied_at  BIGINT NOT NULL
         )",
    )
    .execute(&mut *connection)
    .await?;
    let found = current_version(connection).await?;
    if found > LATEST_VERSION {
        return Err(StoreError::SchemaMismatch {
            found,
            expected: LATEST_VERSION,
        }
        .into());
    }
    let mut version = found;
    for (number, name, sql) in MIGRATIONS {
        if *number <= found {
            continue;
        }
        // DDL is transactional in PostgreSQL: a failed migration leaves nothing behind.
        let mut transaction = connection.begin().await?;
        run_migration(&mut transaction, *number, name, sql).await?;
        transaction.commit().await?;
        tracing::info!(version = number, name, "applied migration");
        version = *number;
    }
    Ok(version)
}

/// One migration's SQL and its row in `schema_migrations`, in the caller's transaction.
async fn run_migration(
    connection: &mut PgConnection,
    number: i64,
    name: &str,
    sql: &'static str,
) -> Result<()> {
    // A migration file holds many statements. Executed as a plain string, with no
    // arguments, sqlx sends it over the simple query protocol, which runs them all in
    // one round trip. (`sqlx::raw_sql` does the same, but its future is not `Send` for
    // every lifetime, so `connect` could not run in a spawned task.)
    connection
        .execute(sql)
        .await
        .map_err(|e| StoreError::Backend(format!("migration {number} ({name}) failed: {e}")))?;
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_at)
         VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)",
    )
    .bind(number)
    .bind(name)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// The advisory lock key for migrating `schema`: FNV-1a of a fixed prefix and the name,
/// so it is the same in every build and every instance.
fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "followthrough.migrate.".bytes().chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Quotes an identifier for SQL text (schema names cannot be bound as parameters).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_per_schema() {
        assert_eq!(lock_key("public"), lock_key("public"));
        assert_ne!(lock_key("public"), lock_key("tenant_a"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("ft_test"), "\"ft_test\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
