//! Which store `store.url` names, and opening it: SQLite embedded (one instance) or
//! PostgreSQL shared by several instances.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use followthrough_store::{Store, StoreError};
use followthrough_store_postgres::{ConnectOptions, PostgresStore};
use followthrough_store_sqlite::SqliteStore;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, StoreConfig, invalid};

/// The store `store.url` names.
#[derive(Debug, Clone)]
pub enum StoreTarget {
    /// `sqlite://PATH`.
    Sqlite(PathBuf),
    /// `postgres://...` (or `postgresql://`). The URL may hold a password, so it is kept
    /// secret and shown only as [`StoreTarget::describe`] prints it.
    Postgres {
        url: SecretString,
        schema: Option<String>,
        max_connections: u32,
    },
}

impl StoreTarget {
    pub(crate) fn from_config(store: &StoreConfig) -> Result<Self, ConfigError> {
        match store.url.split_once("://") {
            Some(("sqlite", path)) if !path.is_empty() => Ok(Self::Sqlite(PathBuf::from(path))),
            Some(("postgres" | "postgresql", rest)) if !rest.is_empty() => {
                if store.max_connections == 0 {
                    return Err(invalid("store.max_connections", "must be more than 0"));
                }
                let schema = (!store.schema.is_empty()).then(|| store.schema.clone());
                if let Some(schema) = &schema
                    && !plain_identifier(schema)
                {
                    return Err(invalid(
                        "store.schema",
                        "letters, digits and _ only, not starting with a digit",
                    ));
                }
                Ok(Self::Postgres {
                    url: store.url.clone().into(),
                    schema,
                    max_connections: store.max_connections,
                })
            }
            // The URL is not echoed: it may hold a password.
            _ => Err(invalid(
                "store.url",
                "expected sqlite://PATH or postgres://USER@HOST/DATABASE",
            )),
        }
    }

    /// The store for logs and messages: the path, or the PostgreSQL host and database
    /// without user or password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres { url, schema, .. } => {
                let shown = url::Url::parse(url.expose_secret())
                    .map(|u| {
                        format!(
                            "postgres://{}{}{}",
                            u.host_str().unwrap_or("localhost"),
                            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                            u.path()
                        )
                    })
                    .unwrap_or_else(|_| "postgres://(unparsable url)".to_owned());
                match schema {
                    Some(schema) => format!("{shown} (schema {schema})"),
                    None => shown,
                }
            }
        }
    }

    /// Opens the store; with `migrate`, brings its schema up to date first. A command
    /// that only reads (`trace`, `dlq`) opens without migrating and refuses a SQLite
    /// file that does not exist rather than creating an empty one.
    pub async fn open(&self, migrate: bool) -> anyhow::Result<Arc<dyn Store>> {
        match self {
            Self::Sqlite(path) => {
                if !migrate && !path.exists() {
                    anyhow::bail!(
                        "no store at {} (has followthrough run here?)",
                        path.display()
                    );
                }
                Ok(Arc::new(SqliteStore::open(path, migrate)?))
            }
            Self::Postgres {
                url,
                schema,
                max_connections,
            } => {
                let options = ConnectOptions {
                    migrate,
                    schema: schema.clone(),
                    max_connections: *max_connections,
                    acquire_timeout: Duration::from_secs(10),
                };
                let store = PostgresStore::connect(url.expose_secret(), options)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {}", self.describe(), scrub(e)))?;
                Ok(Arc::new(store))
            }
        }
    }

    /// Applies pending migrations; returns the version reached.
    pub async fn migrate(&self) -> anyhow::Result<i64> {
        match self {
            Self::Sqlite(path) => Ok(SqliteStore::migrate(path)?),
            Self::Postgres { url, schema, .. } => {
                PostgresStore::migrate(url.expose_secret(), schema.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {}", self.describe(), scrub(e)))
            }
        }
    }
}

/// A connection error may quote the URL it was given; it is reduced to its kind.
fn scrub(error: StoreError) -> String {
    match error {
        StoreError::Unavailable(message) if message.contains("://") => {
            "PostgreSQL is not reachable or the url is malformed".to_owned()
        }
        other => other.to_string(),
    }
}

fn plain_identifier(name: &str) -> bool {
    name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}
