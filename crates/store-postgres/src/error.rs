//! How PostgreSQL's errors become [`StoreError`]s, and which writes are tried again.
//!
//! The queries return the crate's own [`Error`], so `?` works on both driver errors and
//! the store's own (a corrupt row, a refused argument). It becomes a [`StoreError`] at the
//! [`followthrough_store::Store`] boundary, where a unique violation turns into
//! [`StoreError::Conflict`] and a lost connection into [`StoreError::Unavailable`].

use std::future::Future;
use std::time::Duration;

use followthrough_store::StoreError;

/// A query's failure, before it is classified for the caller.
#[derive(Debug)]
pub(crate) enum Error {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Sql(error)
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::Store(error)
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// SQLSTATEs after which PostgreSQL has rolled the whole transaction back and running it
/// again may succeed: `deadlock_detected` (two writers touched the same rows in opposite
/// orders: two units changing the same runs or links, or replays of the same letters,
/// listed differently; the inbox and object upserts avoid it by writing in key order)
/// and `serialization_failure`.
const TRANSIENT: [&str; 2] = ["40P01", "40001"];

/// How often a transaction that failed transiently is run again before the error is
/// returned.
const RETRIES: u32 = 3;

impl Error {
    fn is_transient(&self) -> bool {
        match self {
            Error::Sql(sqlx::Error::Database(error)) => error
                .code()
                .is_some_and(|code| TRANSIENT.contains(&code.as_ref())),
            _ => false,
        }
    }
}

impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        match error {
            Error::Store(error) => error,
            Error::Sql(error) => from_sql(error),
        }
    }
}

fn from_sql(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolClosed => StoreError::Closed,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(error.to_string())
        }
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            // PostgreSQL's detail names the key, e.g. `Key (rule_id, run_key)=(r, 21)
            // already exists.`: enough to tell which run was refused.
            let detail = database
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.detail())
                .unwrap_or_default()
                .to_owned();
            let what = match database.constraint() {
                Some("runs_one_active_per_key") => {
                    "the rule already has an active run for this key"
                }
                Some(other) => other,
                None => "unique constraint",
            };
            StoreError::Conflict(format!("{what}: {detail}"))
        }
        // `admin_shutdown`, `cannot_connect_now` and friends (class 57): the server is
        // going away or not there yet; a later call may find it.
        sqlx::Error::Database(database)
            if database.code().is_some_and(|code| code.starts_with("57")) =>
        {
            StoreError::Unavailable(database.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

/// Runs `transaction` until it commits, fails for good, or has failed transiently
/// [`RETRIES`] times more. Only the SQLSTATEs in [`TRANSIENT`] are retried: PostgreSQL
/// has rolled back everything by then, so running the whole unit again cannot apply it
/// twice. An error at COMMIT whose outcome is unknown (a dropped connection) is never
/// retried here, because a write like `apply` is not idempotent.
pub(crate) async fn retrying<T, F, Fut>(mut transaction: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut failed = 0;
    loop {
        match transaction().await {
            Err(error) if error.is_transient() && failed < RETRIES => {
                failed += 1;
                tracing::debug!(
                    ?error,
                    failed,
                    "transaction failed transiently, running it again"
                );
                // A short, growing pause lets the other transaction finish first.
                tokio::time::sleep(Duration::from_millis(5 << failed)).await;
            }
            result => return result.map_err(StoreError::from),
        }
    }
}

/// A stored value that does not parse.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Store(StoreError::Corrupt(what.to_string()))
}
