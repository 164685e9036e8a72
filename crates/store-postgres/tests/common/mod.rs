//! A fresh schema per test in the test database, dropped when the test ends.
//!
//! A schema rather than a database per test: creating a database copies a template and
//! takes a lock that serializes every `CREATE DATABASE` on the server, while a schema is
//! a catalog row, so the tests run in parallel against one database. The store sets the
//! schema as each pooled connection's `search_path`, so the SQL is the same as in
//! production.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use followthrough_store::Store;
use followthrough_store_postgres::{ConnectOptions, PostgresStore};
use sqlx::{Connection, Executor, PgConnection};

/// Where the tests run; `FOLLOWTHROUGH_TEST_POSTGRES_URL` overrides it.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("FOLLOWTHROUGH_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into())
}

/// A test's schema; dropping it drops the schema and everything in it (best effort: a
/// schema left behind by a killed run is harmless, and named so it can be found).
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn new() -> Self {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| {
            if let Err(error) = on_own_runtime(sweep_abandoned(url())) {
                eprintln!("could not sweep abandoned test schemas: {error}");
            }
        });
        Self {
            url: url(),
            // A ULID: unique across parallel test processes, and it tells when the
            // schema was made if one is ever left behind.
            name: format!("ft_test_{}", ulid::Ulid::new().to_string().to_lowercase()),
        }
    }

    pub fn options(&self, migrate: bool) -> ConnectOptions {
        ConnectOptions {
            migrate,
            schema: Some(self.name.clone()),
            max_connections: 8,
            ..ConnectOptions::default()
        }
    }

    pub async fn connect(&self, migrate: bool) -> PostgresStore {
        PostgresStore::connect(&self.url, self.options(migrate))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open the test store at {} (is PostgreSQL running? \
                     scripts/test.sh starts it): {e}",
                    self.url
                )
            })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let dropped = on_own_runtime(drop_schemas(self.url.clone(), vec![self.name.clone()]));
        if let Err(error) = dropped {
            eprintln!("could not drop test schema {}: {error}", self.name);
        }
    }
}

/// Runs `future` to completion on a thread of its own with a small runtime: callers may
/// be inside the test's runtime, which must not block on a future.
fn on_own_runtime<F>(future: F) -> Result<(), sqlx::Error>
where
    F: std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(future)
    })
    .join()
    .unwrap_or_else(|_| Err(sqlx::Error::PoolClosed))
}

async fn drop_schemas(url: String, names: Vec<String>) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect(&url).await?;
    for name in names {
        connection
            .execute(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE").as_str())
            .await?;
    }
    connection.close().await
}

/// Drops test schemas more than an hour old (their ULID says when they were made): what
/// runs that were killed left behind. Best effort, once per test process.
async fn sweep_abandoned(url: String) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect(&url).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::TEXT FROM pg_namespace
         WHERE nspname LIKE 'ft\\_test\\_%' OR nspname LIKE 'ft\\_plan\\_%'",
    )
    .fetch_all(&mut connection)
    .await?;
    connection.close().await?;
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let abandoned = names
        .into_iter()
        .filter(|name| {
            let ulid = name.rsplit('_').next().unwrap_or_default().to_uppercase();
            ulid::Ulid::from_string(&ulid).is_ok_and(|ulid| ulid.datetime() < hour_ago)
        })
        .collect();
    drop_schemas(url, abandoned).await
}

/// Blocks on `future` from synchronous code running inside a multi-threaded tokio
/// runtime (the conformance macro calls `fresh` and `reopen` synchronously from its
/// tests). The store's pool must be created on the test's own runtime, whose reactor
/// drives its connections, so a separate runtime would not do.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// A fresh, migrated store in a schema of its own.
pub fn fresh() -> (Schema, Arc<dyn Store>) {
    let schema = Schema::new();
    let store = block_on(schema.connect(true));
    (schema, Arc::new(store))
}

/// The store on `schema` again, as a restart opens it (no migration).
pub fn reopen(schema: &Schema) -> Arc<dyn Store> {
    Arc::new(block_on(schema.connect(false)))
}
