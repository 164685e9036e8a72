//! followthrough's scale-out store: PostgreSQL, shared by several instances.
//!
//! The same tables, constraints and semantics as the SQLite backend (the conformance
//! suite in `followthrough_store::conformance` holds both to them); what differs is how
//! writers meet. SQLite has one writer thread; here every instance writes at once, so
//! everything that must hold across writers is a constraint or a row lock, never a
//! check-then-write: the inbox's `(source, dedup_key)` and the outbox's idempotency key
//! are unique constraints used with `ON CONFLICT DO NOTHING`, one active run per (rule,
//! key) is a partial unique index (a violation is [`StoreError::Conflict`]), and outbox
//! workers claim with `FOR UPDATE SKIP LOCKED` under leases that expire.
//!
//! Every writing method is one transaction on one pooled connection. PostgreSQL's default
//! `synchronous_commit = on` makes a returned `Ok` durable; the store does not change it.
//!
//! # Why sqlx, and why 0.8
//!
//! sqlx (`PgPool`, plain `query()`, no macros, so no `.sqlx/` offline data to keep)
//! rather than tokio-postgres + deadpool-postgres: the workspace's pick
//! (`shared/DEPENDENCIES.md`), one pool with health checks and `begin()` built in, and
//! arrays bind directly, which is what the bulk statements (`UNNEST($1::TEXT[], ...)`)
//! need.
//!
//! Pinned to 0.8.6, not the 0.9 the workspace names: sqlx 0.9.0 stopped setting
//! `TCP_NODELAY` on its sockets (sqlx issue 4335; the fix is merged upstream but not
//! released), so a statement whose messages leave in two writes waits ~40 ms for a
//! delayed ACK (Nagle). Measured here, applying 4,000 events in units of 500 over TCP to
//! a local server: 1.7 s of `apply` on 0.9.0, 0.39 s on 0.8.6 (and 0.34 s on 0.9.0 over
//! a Unix socket, which has no Nagle); production connections are normally TCP. The
//! code differs from 0.9 only in 0.9's `AssertSqlSafe` wrapper around SQL built with
//! `format!`; move to 0.9.x once a release sets `TCP_NODELAY` again.
//!
//! # Storage
//!
//! Times are epoch milliseconds (`BIGINT`). JSON is `TEXT` as serde_json wrote it (see
//! `migrations/0001_schema.sql` for why not `JSONB`). `docs/postgres.md` has the rest.

mod admin;
mod apply;
mod context;
mod dead_letters;
mod error;
mod inbox;
mod journal;
mod migrations;
mod objects;
mod outbox;
mod rows;
mod runs;
mod store;
mod work;

use std::time::Duration;

use followthrough_store::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

pub use migrations::LATEST_VERSION;

/// A pooled connection idle longer than this is pinged before it is used again.
const PING_AFTER_IDLE: Duration = Duration::from_secs(30);

/// How [`PostgresStore::connect`] opens the store.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Bring the schema up to date first (under an advisory lock, so instances starting
    /// together migrate once). Without it, a store on an old schema opens but is not
    /// [`followthrough_store::Store::ready`].
    pub migrate: bool,
    /// The PostgreSQL schema holding the tables (created by a migration if missing);
    /// `None` uses the connection's search path (normally `public`). Letters, digits and
    /// `_` only.
    pub schema: Option<String>,
    /// Connections kept by this instance's pool.
    pub max_connections: u32,
    /// How long a call waits for a free connection (or a new one) before failing with
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            schema: None,
            // The engine, the outbox lanes and the HTTP readers each hold one briefly;
            // PostgreSQL's default max_connections (100) leaves room for several
            // instances at this size.
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`; its pool is shared by every call.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db?...`), checks that the
    /// server answers, and migrates if `options.migrate`.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, StoreError> {
        let mut connect: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("bad PostgreSQL url: {e}")))?;
        connect = connect.application_name("followthrough");
        if let Some(schema) = &options.schema {
            check_schema_name(schema)?;
            // A startup parameter: every pooled connection has it from its first query,
            // with no extra round trip per connection.
            connect = connect.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            // sqlx pings every connection it hands out by default: a round trip more on
            // each call, doubling a claim's. Only a connection idle long enough for a
            // server or proxy to have dropped it is checked; one that broke sooner fails
            // its call, which the caller retries as any unavailable store.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_AFTER_IDLE {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting to PostgreSQL: {e}")))?;
        if options.migrate {
            let mut connection = pool.acquire().await.map_err(error::Error::from)?;
            let version = migrations::apply(&mut connection, options.schema.as_deref()).await?;
            tracing::debug!(version, "PostgreSQL schema is current");
        }
        Ok(Self { pool })
    }

    /// Applies pending migrations and returns the schema version reached.
    pub async fn migrate(url: &str, schema: Option<&str>) -> Result<i64, StoreError> {
        let options = ConnectOptions {
            migrate: false,
            schema: schema.map(str::to_owned),
            max_connections: 1,
            ..ConnectOptions::default()
        };
        let store = Self::connect(url, options).await?;
        let mut connection = store.pool.acquire().await.map_err(error::Error::from)?;
        let version = migrations::apply(&mut connection, schema).await?;
        drop(connection);
        store.pool.close().await;
        Ok(version)
    }

    /// The pool, or [`StoreError::Closed`] once [`followthrough_store::Store::close`]
    /// was called.
    fn pool(&self) -> Result<&PgPool, StoreError> {
        if self.pool.is_closed() {
            Err(StoreError::Closed)
        } else {
            Ok(&self.pool)
        }
    }
}

/// Schema names go into SQL text and a startup parameter: only plain identifiers.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "schema name {schema:?}: use letters, digits and _ only"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::check_schema_name;

    #[test]
    fn only_plain_schema_names_are_accepted() {
        assert!(check_schema_name("followthrough").is_ok());
        assert!(check_schema_name("ft_test_12").is_ok());
        for bad in ["", "1abc", "a-b", "a b", "a\"b", "a;drop"] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }
}
