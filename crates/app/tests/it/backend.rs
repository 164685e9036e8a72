//! The store the integration tests run on: SQLite (the default) or PostgreSQL, picked for
//! the whole run by `FOLLOWTHROUGH_TEST_STORE=postgres`, so every behaviour test holds on
//! both backends. Each test gets a store of its own ([`TestDb`]), and the few tests that
//! look into the tables do it with the same SQL on either ([`TestDb::rows`]).

mod postgres;
mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use followthrough_store::Store;
use followthrough_store_postgres::{ConnectOptions, PostgresStore};
use followthrough_store_sqlite::SqliteStore;

pub use rows::Row;

/// Which backend this run of the tests uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From `FOLLOWTHROUGH_TEST_STORE` (`sqlite`, the default, or `postgres`). Any other
    /// value is a mistake in the command line, not a reason to test SQLite silently.
    pub fn current() -> Backend {
        match std::env::var("FOLLOWTHROUGH_TEST_STORE").as_deref() {
            Err(_) | Ok("" | "sqlite") => Backend::Sqlite,
            Ok("postgres") => Backend::Postgres,
            Ok(other) => panic!("FOLLOWTHROUGH_TEST_STORE={other:?}: expected sqlite or postgres"),
        }
    }

    /// The schema version the backend's migrations reach.
    pub fn latest_version(self) -> i64 {
        match self {
            Backend::Sqlite => followthrough_store_sqlite::LATEST_VERSION,
            Backend::Postgres => followthrough_store_postgres::LATEST_VERSION,
        }
    }
}

/// One test's store, empty until something opens it with migrations: a SQLite file, or a
/// schema of its own in the PostgreSQL test database, dropped with this value.
pub struct TestDb {
    file: PathBuf,
    /// `None` on SQLite.
    schema: Option<postgres::Schema>,
}

impl TestDb {
    /// A new store for the current backend. On SQLite it lives in `file`; on PostgreSQL
    /// nothing is written there, but the files kept beside the store (a rules folder, a
    /// pid file) are still named after it.
    pub fn new(file: PathBuf) -> TestDb {
        let schema = match Backend::current() {
            Backend::Sqlite => None,
            Backend::Postgres => Some(postgres::Schema::new()),
        };
        TestDb { file, schema }
    }

    pub fn backend(&self) -> Backend {
        match self.schema {
            None => Backend::Sqlite,
            Some(_) => Backend::Postgres,
        }
    }

    /// The SQLite file, or on PostgreSQL the name that files beside the store take after.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// `store.url`.
    pub fn url(&self) -> String {
        match &self.schema {
            None => format!("sqlite://{}", self.file.display()),
            Some(schema) => schema.url.clone(),
        }
    }

    /// The `[store]` table of a config file naming this store.
    pub fn config_toml(&self) -> String {
        let mut toml = format!("[store]\nurl = {:?}\n", self.url());
        if let Some(schema) = &self.schema {
            toml.push_str(&format!("schema = {:?}\n", schema.name));
        }
        toml
    }

    /// The environment a `followthrough` child process needs to run on this store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("FOLLOWTHROUGH__STORE__URL", self.url())];
        if let Some(schema) = &self.schema {
            env.push(("FOLLOWTHROUGH__STORE__SCHEMA", schema.name.clone()));
            // A SIGKILLed server keeps its engine partitions until its lease ends: the
            // next one would wait the default 10 s before it applies anything.
            env.push(("FOLLOWTHROUGH__ENGINE__LEASE_MS", "1000".to_owned()));
        }
        env
    }

    /// Opens the store as the server does; `migrate` creates it on first use.
    pub async fn open(&self, migrate: bool) -> Arc<dyn Store> {
        match &self.schema {
            None => Arc::new(SqliteStore::open(&self.file, migrate).unwrap()),
            Some(schema) => {
                let options = ConnectOptions {
                    migrate,
                    schema: Some(schema.name.clone()),
                    max_connections: 8,
                    ..ConnectOptions::default()
                };
                let store = PostgresStore::connect(&schema.url, options)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "cannot open the test store at {} (is PostgreSQL running? \
                             scripts/test.sh starts it): {e}",
                            schema.url
                        )
                    });
                Arc::new(store)
            }
        }
    }

    /// Runs `sql` on the store's tables and returns its rows. Blocking, so it can be
    /// called from a test's closures; write SQL both backends accept.
    pub fn rows<R: Row>(&self, sql: &str) -> Vec<R> {
        match &self.schema {
            None => {
                let connection = rusqlite::Connection::open(&self.file).unwrap();
                let mut statement = connection
                    .prepare(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                statement
                    .query_map([], |row| Ok(R::from_sqlite(row)))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .map(Result::unwrap)
                    .collect()
            }
            Some(schema) => schema.query(sql).iter().map(R::from_postgres).collect(),
        }
    }

    /// The one number `sql` selects, such as a `COUNT(*)`.
    pub fn count(&self, sql: &str) -> i64 {
        match self.rows::<(i64,)>(sql).as_slice() {
            [(n,)] => *n,
            rows => panic!("{sql}: {} rows, expected 1", rows.len()),
        }
    }
}
