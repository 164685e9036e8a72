//! Reading the server's store from the bench, whichever backend it is: the SQLite file
//! (read-only; WAL lets it run beside the server) or the bench's PostgreSQL schema.
//!
//! Only what the scenarios count is here. The SQL is the same on both backends (the
//! tables have the same names and columns) except where JSON is read.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

/// Where a started server keeps its data.
#[derive(Debug, Clone)]
pub enum DbTarget {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

/// An open connection to the server's store.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(PgConnection),
}

/// A PostgreSQL connection whose search path is `schema` (when given), named so that
/// `pg_stat_activity` tells it from the servers' own connections.
pub async fn pg_connect(url: &str, schema: Option<&str>) -> anyhow::Result<PgConnection> {
    let mut options = PgConnectOptions::from_str(url)?.application_name("followthrough-bench");
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    Ok(PgConnection::connect_with(&options).await?)
}

impl Db {
    pub async fn open(target: &DbTarget) -> anyhow::Result<Db> {
        Ok(match target {
            DbTarget::Sqlite(path) => Db::Sqlite(rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?),
            DbTarget::Postgres { url, schema } => {
                Db::Postgres(pg_connect(url, Some(schema)).await?)
            }
        })
    }

    /// A query whose one row is one integer (`SELECT COUNT(*) ...`).
    pub async fn scalar(&mut self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Db::Sqlite(c) => c.query_row(sql, [], |r| r.get(0))?,
            Db::Postgres(c) => sqlx::query_scalar::<_, i64>(sql).fetch_one(c).await?,
        })
    }

    /// Events accepted but not yet applied by the engine.
    pub async fn pending_events(&mut self) -> anyhow::Result<i64> {
        self.scalar("SELECT COUNT(*) FROM inbox_pending").await
    }

    /// Whether any event is still pending (cheaper than counting them).
    pub async fn any_pending(&mut self) -> anyhow::Result<bool> {
        Ok(self
            .scalar("SELECT COUNT(*) FROM (SELECT 1 FROM inbox_pending LIMIT 1) AS p")
            .await?
            > 0)
    }

    /// Rows of `(text, integer)`.
    pub async fn text_counts(&mut self, sql: &str) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(match self {
            Db::Sqlite(c) => c
                .prepare(sql)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?,
            Db::Postgres(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?,
        })
    }

    /// Every outbox row's `(seq, run_id, created_at)`.
    pub async fn outbox_rows(&mut self) -> anyhow::Result<Vec<(i64, String, i64)>> {
        let sql = "SELECT seq, run_id, created_at FROM outbox";
        Ok(match self {
            Db::Sqlite(c) => c
                .prepare(sql)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?,
            Db::Postgres(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<_, sqlx::Error>>()?,
        })
    }

    /// `(run id, id of the event that started it)` from the `run started` journal rows.
    pub async fn run_starts(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(match self {
            Db::Sqlite(c) => c
                .prepare(
                    "SELECT json_extract(detail_json, '$.run_id'),
                            json_extract(detail_json, '$.event_id')
                     FROM journal
                     WHERE kind = 'run' AND json_extract(detail_json, '$.outcome') = 'started'",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?,
            Db::Postgres(c) => sqlx::query(
                "SELECT d->>'run_id', d->>'event_id'
                 FROM (SELECT detail_json::json AS d FROM journal WHERE kind = 'run') AS j
                 WHERE d->>'outcome' = 'started'",
            )
            .fetch_all(c)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?,
        })
    }

    /// Every inbox row's `(id, received_at)`.
    pub async fn inbox_received(&mut self) -> anyhow::Result<Vec<(String, i64)>> {
        self.text_counts("SELECT id, received_at FROM inbox").await
    }
}
