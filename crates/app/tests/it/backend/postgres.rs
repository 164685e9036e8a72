//! A test's own schema in the PostgreSQL test database, and SQL run on it from tests.
//!
//! As in `crates/store-postgres/tests/common`: a schema rather than a database per test,
//! since `CREATE DATABASE` serializes on the server while a schema is a catalog row. The
//! store sets the schema as its connections' `search_path`, so the SQL is the same as in
//! production. The store's first migration creates the schema; dropping [`Schema`]
//! drops it with everything in it.

use std::future::Future;
use std::sync::{OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{Connection, Executor, PgConnection};

/// Where the tests run; `FOLLOWTHROUGH_TEST_POSTGRES_URL` overrides it (the variable the
/// store's own tests read).
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Starts with the store tests' prefix, so their sweep also clears what a killed run of
/// these tests left behind.
const PREFIX: &str = "ft_test_it_";

fn url() -> String {
    std::env::var("FOLLOWTHROUGH_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into())
}

pub struct Schema {
    pub url: String,
    pub name: String,
    /// The tests' own connection, opened at the first query.
    session: OnceLock<Session>,
}

impl Schema {
    pub fn new() -> Schema {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| {
            if let Err(error) = on_own_runtime(sweep_abandoned(url())) {
                eprintln!("could not sweep abandoned test schemas: {error}");
            }
        });
        Schema {
            url: url(),
            // A ULID: unique across the parallel test processes, and it tells when the
            // schema was made if one is ever left behind.
            name: format!("{PREFIX}{}", ulid::Ulid::new().to_string().to_lowercase()),
            session: OnceLock::new(),
        }
    }

    /// Runs `sql` on the schema's tables.
    pub fn query(&self, sql: &str) -> Vec<PgRow> {
        self.session
            .get_or_init(|| Session::start(self.url.clone(), self.name.clone()))
            .query(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        drop(self.session.take());
        if let Err(error) = on_own_runtime(drop_schema(self.url.clone(), self.name.clone())) {
            eprintln!("could not drop test schema {}: {error}", self.name);
        }
    }
}

type Reply = Result<Vec<PgRow>, sqlx::Error>;

/// One connection with the schema as its search path, kept on a thread of its own with
/// a small runtime, so that blocking test code (and closures polled in a loop) can
/// query without a connection each time, which costs more than the query.
struct Session {
    requests: Option<mpsc::Sender<(String, mpsc::Sender<Reply>)>>,
    thread: Option<JoinHandle<()>>,
}

impl Session {
    fn start(url: String, schema: String) -> Session {
        let (requests, incoming) = mpsc::channel::<(String, mpsc::Sender<Reply>)>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut connection = None;
                // Blocking here is fine: nothing else runs on this runtime.
                while let Ok((sql, reply)) = incoming.recv() {
                    let rows = query(&mut connection, &url, &schema, &sql).await;
                    if rows.is_err() {
                        connection = None; // a fresh one for the next query
                    }
                    let _ = reply.send(rows);
                }
                if let Some(connection) = connection {
                    let _ = connection.close().await;
                }
            });
        });
        Session {
            requests: Some(requests),
            thread: Some(thread),
        }
    }

    fn query(&self, sql: &str) -> Reply {
        let (reply, answer) = mpsc::channel();
        let requests = self.requests.as_ref().expect("the session is open");
        requests.send((sql.to_owned(), reply)).unwrap();
        answer.recv().unwrap()
    }
}

/// Ends the session's thread, which closes its connection.
impl Drop for Session {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn query(connection: &mut Option<PgConnection>, url: &str, schema: &str, sql: &str) -> Reply {
    let connection = match connection {
        Some(connection) => connection,
        None => {
            let options = url
                .parse::<PgConnectOptions>()?
                .options([("search_path", schema)]);
            connection.insert(PgConnection::connect_with(&options).await?)
        }
    };
    sqlx::query(sql).fetch_all(connection).await
}

/// Runs `future` to completion on a thread of its own with a small runtime, so it can be
/// called from synchronous test code and from `Drop` inside the test's runtime (which
/// must not block on a future of its own).
fn on_own_runtime<F, T>(future: F) -> Result<T, sqlx::Error>
where
    F: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    T: Send + 'static,
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

/// Drops `name`. A test ends without stopping its server, so a server connection may be
/// inside a transaction holding locks on the schema's tables, and when the test's
/// runtime has one thread (blocked here) that transaction never ends: `DROP SCHEMA`
/// would wait forever. Whoever holds a lock there is disconnected first.
async fn drop_schema(url: String, name: String) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect(&url).await?;
    connection.execute("SET lock_timeout = '2s'").await?;
    let mut attempts = 0;
    loop {
        sqlx::query(
            "SELECT pg_terminate_backend(pid, 2000) FROM (
                 SELECT DISTINCT l.pid FROM pg_locks l
                 JOIN pg_class c ON c.oid = l.relation
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()
             ) AS holders",
        )
        .bind(&name)
        .execute(&mut connection)
        .await?;
        let dropped = connection
            .execute(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE").as_str())
            .await;
        attempts += 1;
        match dropped {
            // A server still running may have taken a lock again meanwhile.
            Err(_) if attempts < 5 => tokio::time::sleep(Duration::from_millis(50)).await,
            dropped => {
                dropped?;
                return connection.close().await;
            }
        }
    }
}

/// Drops test schemas more than an hour old (their ULID says when they were made): what
/// killed runs left behind. Best effort, once per test process.
async fn sweep_abandoned(url: String) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect(&url).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE $1")
            .bind(format!("{}%", PREFIX.replace('_', "\\_")))
            .fetch_all(&mut connection)
            .await?;
    connection.close().await?;
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for name in names {
        let ulid = name.trim_start_matches(PREFIX).to_uppercase();
        if ulid::Ulid::from_string(&ulid).is_ok_and(|ulid| ulid.datetime() < hour_ago) {
            drop_schema(url.clone(), name).await?;
        }
    }
    Ok(())
}
