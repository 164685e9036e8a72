//! followthrough's embedded store: one SQLite file in WAL mode.
//!
//! Writes go through one thread that groups concurrent callers into one durable commit
//! ([`writer`]); reads use a small pool of their own connections, which WAL lets run
//! beside the writer. `synchronous=FULL` on the write connection makes every commit
//! survive power loss, which is what a webhook's 2xx promises.

mod admin;
mod checkpointer;
mod context;
mod event_row;
mod many;
mod migrations;
mod outbox;
mod queries;
mod readers;
mod runs;
mod trace_index;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use followthrough_core::{ObjectRef, RunId, Timestamp};
use followthrough_store::{
    AppendOutcome, AttemptRecord, CachedOwner, ClaimedJob, DeadLetter, DueTimer, HeldBack,
    HeldTimers, InboxBatch, JournalEntry, KeyedJob, ObjectState, ObjectsView, OutboxEntry,
    PendingEvent, PropertyHistoryEntry, Pruned, ReceivedEvent, RuleVersion, RunFilter, RunRecord,
    Store, StoreError, StoreStats, TimerRecord, UnitOfWork, WorkShare,
};
use rusqlite::Connection;

pub use migrations::LATEST_VERSION;

use checkpointer::Checkpointer;
use readers::Readers;
use writer::{Chore, Writer};

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    checkpointer: Checkpointer,
    readers: Readers,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. With `migrate`, brings the
    /// schema up to date first; without, a store with an old schema opens but is not
    /// [`Store::ready`].
    pub fn open(path: impl AsRef<Path>, migrate: bool) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut connection = open_connection(&path)?;
        if migrate {
            migrations::apply(&mut connection)?;
        }
        // The writer's transactions are large (a whole group of requests): give it a page
        // cache that holds one without spilling to the WAL mid-transaction. Checkpoints
        // are the checkpointer thread's job; the writer only steps in if the WAL passes
        // 64 MiB.
        connection
            .execute_batch("PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 16384;")
            .map_err(sql_error)?;
        // A store opened on an older schema (not ready, waiting for `migrate`) has no
        // trace indexes to keep.
        let chore = (migrations::current_version(&connection)? >= trace_index::SINCE_VERSION)
            .then_some(Chore {
                name: "trace indexes",
                every: trace_index::EVERY,
                steps: trace_index::STEPS,
                work: trace_index::enter_new_rows,
            });
        Ok(Self {
            readers: Readers::new(path.clone()),
            writer: Writer::start(connection, chore),
            checkpointer: Checkpointer::start(path.clone()),
            path,
        })
    }

    /// Applies pending migrations and returns the schema version reached.
    pub fn migrate(path: impl AsRef<Path>) -> Result<i64, StoreError> {
        let mut connection = open_connection(path.as_ref())?;
        migrations::apply(&mut connection)
    }

    /// Parses a `sqlite://PATH` url (or a bare path) into the file path.
    pub fn path_from_url(url: &str) -> PathBuf {
        PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)
        .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(sql_error)?;
    Ok(connection)
}

pub(crate) fn sql_error(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn append_inbox(&self, batch: InboxBatch) -> Result<AppendOutcome, StoreError> {
        // Serialized here, on the caller's thread, not on the writer's.
        let rows = queries::InboxRow::prepare(&batch.events)?;
        let journal = batch.journal;
        self.writer
            .write(move |connection| queries::append_inbox(connection, &rows, journal.clone()))
            .await
    }

    async fn journal(&self, entries: Vec<JournalEntry>) -> Result<(), StoreError> {
        self.writer
            .write(move |connection| {
                entries
                    .iter()
                    .try_for_each(|entry| queries::insert_journal(connection, entry))
            })
            .await
    }

    async fn pending_events(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.readers
            .read(move |connection| {
                queries::pending_events(connection, now, limit, &HeldBack::default())
            })
            .await
    }

    async fn pending_events_in(
        &self,
        _share: &WorkShare,
        now: Timestamp,
        limit: usize,
        held: Arc<HeldBack>,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.readers
            .read(move |connection| queries::pending_events(connection, now, limit, &held))
            .await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.readers.read(context::pending_count).await
    }

    async fn load_objects(&self, objects: &[ObjectRef]) -> Result<ObjectsView, StoreError> {
        let objects = objects.to_vec();
        self.readers
            .read(move |connection| context::load_objects(connection, &objects))
            .await
    }

    async fn runs(&self, ids: &[RunId]) -> Result<Vec<RunRecord>, StoreError> {
        let ids = ids.to_vec();
        self.readers
            .read(move |connection| context::runs(connection, &ids))
            .await
    }

    async fn runs_for(&self, object: &ObjectRef) -> Result<Vec<RunRecord>, StoreError> {
        let object = object.to_string();
        self.readers
            .read(move |connection| context::runs_where(connection, "object = ?1", &object))
            .await
    }

    async fn active_runs_of_rule(&self, rule_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        let rule_id = rule_id.to_owned();
        self.readers
            .read(move |connection| {
                context::runs_where(
                    connection,
                    &format!("rule_id = ?1 AND {}", runs::ACTIVE),
                    &rule_id,
                )
            })
            .await
    }

    async fn owners(&self, ids: &[String]) -> Result<Vec<CachedOwner>, StoreError> {
        let ids = ids.to_vec();
        self.readers
            .read(move |connection| context::owners(connection, &ids))
            .await
    }

    async fn timers_for(&self, object: &ObjectRef) -> Result<Vec<TimerRecord>, StoreError> {
        let object = object.clone();
        self.readers
            .read(move |connection| context::timers_for(connection, &object))
            .await
    }

    async fn save_rule_versions(&self, versions: Vec<RuleVersion>) -> Result<(), StoreError> {
        self.writer
            .write(move |connection| context::save_rule_versions(connection, &versions))
            .await
    }

    async fn rule_version(
        &self,
        rule_id: &str,
        version: &str,
    ) -> Result<Option<RuleVersion>, StoreError> {
        let (rule_id, version) = (rule_id.to_owned(), version.to_owned());
        self.readers
            .read(move |connection| context::rule_version(connection, &rule_id, &version))
            .await
    }

    async fn next_timer_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.readers.read(context::next_timer_at).await
    }

    async fn apply(&self, unit: UnitOfWork) -> Result<(), StoreError> {
        // Shared with the writer's job so that the unit is freed here, not on the writer
        // thread (freeing a unit's JSON values was a seventh of the writer's time).
        let prepared = Arc::new(queries::PreparedUnit::new(unit));
        let for_writer = Arc::clone(&prepared);
        let committed = self
            .writer
            .write(move |connection| queries::apply(connection, &for_writer))
            .await;
        drop(prepared);
        committed
    }

    async fn active_runs(&self, rule_id: &str, key: &str) -> Result<Vec<RunRecord>, StoreError> {
        let (rule_id, key) = (rule_id.to_owned(), key.to_owned());
        self.readers
            .read(move |connection| runs::active_runs(connection, &rule_id, &key))
            .await
    }

    async fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<DueTimer>, StoreError> {
        self.readers
            .read(move |connection| {
                runs::due_timers(connection, now, limit, &HeldTimers::default())
            })
            .await
    }

    async fn due_timers_in(
        &self,
        _share: &WorkShare,
        now: Timestamp,
        limit: usize,
        held: Arc<HeldTimers>,
    ) -> Result<Vec<DueTimer>, StoreError> {
        self.readers
            .read(move |connection| runs::due_timers(connection, now, limit, &held))
            .await
    }

    async fn outbox_for(&self, object: &ObjectRef) -> Result<Vec<OutboxEntry>, StoreError> {
        let object = object.clone();
        self.readers
            .read(move |connection| outbox::outbox_for(connection, &object))
            .await
    }

    async fn job_by_key(&self, idempotency_key: &str) -> Result<Option<KeyedJob>, StoreError> {
        let key = idempotency_key.to_owned();
        self.readers
            .read(move |connection| outbox::job_by_key(connection, &key))
            .await
    }

    async fn claim_jobs(
        &self,
        connector: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let connector = connector.to_owned();
        self.writer
            .write(move |connection| {
                outbox::claim_jobs(connection, &connector, now, lease_until, limit)
            })
            .await
    }

    async fn record_attempt(&self, record: AttemptRecord) -> Result<bool, StoreError> {
        let prepared = outbox::PreparedAttempt::new(record);
        self.writer
            .write(move |connection| outbox::record_attempt(connection, &prepared))
            .await
    }

    async fn next_job_at(&self, connector: &str) -> Result<Option<Timestamp>, StoreError> {
        let connector = connector.to_owned();
        self.readers
            .read(move |connection| outbox::next_job_at(connection, &connector))
            .await
    }

    async fn dead_letters(&self, include_replayed: bool) -> Result<Vec<DeadLetter>, StoreError> {
        self.readers
            .read(move |connection| outbox::dead_letters(connection, include_replayed))
            .await
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        self.readers
            .read(move |connection| outbox::dead_letter(connection, id))
            .await
    }

    async fn replay_dead_letters(
        &self,
        ids: &[i64],
        now: Timestamp,
        journal: Vec<JournalEntry>,
    ) -> Result<Vec<i64>, StoreError> {
        let ids = ids.to_vec();
        let details = outbox::details(&journal);
        self.writer
            .write(move |connection| {
                outbox::replay_dead_letters(connection, &ids, now, &journal, &details)
            })
            .await
    }

    /// A rotation of size 0 is an error ([`StoreError::Backend`]): there is nobody to
    /// hand the turn to, and the caller must not have asked.
    async fn next_in_rotation(&self, name: &str, size: u32, key: &str) -> Result<u32, StoreError> {
        // Refused here as well as in the SQL function: a job that fails on the writer
        // thread makes its whole group roll back and run again one by one.
        if size == 0 {
            return Err(StoreError::Backend(format!(
                "rotation {name} has no members"
            )));
        }
        let (name, key) = (name.to_owned(), key.to_owned());
        self.writer
            .write(move |connection| outbox::next_in_rotation(connection, &name, size, &key))
            .await
    }

    async fn object(&self, object: &ObjectRef) -> Result<Option<ObjectState>, StoreError> {
        let object = object.clone();
        self.readers
            .read(move |connection| queries::object(connection, &object))
            .await
    }

    async fn property_history(
        &self,
        object: &ObjectRef,
    ) -> Result<Vec<PropertyHistoryEntry>, StoreError> {
        let object = object.clone();
        self.readers
            .read(move |connection| queries::property_history(connection, &object))
            .await
    }

    async fn received_events(&self, object: &ObjectRef) -> Result<Vec<ReceivedEvent>, StoreError> {
        let object = object.clone();
        self.readers
            .read(move |connection| queries::received_events(connection, &object))
            .await
    }

    async fn journal_for(&self, object: &ObjectRef) -> Result<Vec<JournalEntry>, StoreError> {
        let object = object.clone();
        self.readers
            .read(move |connection| queries::journal_for(connection, &object))
            .await
    }

    async fn recent_requests(&self, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        self.readers
            .read(move |connection| queries::recent_requests(connection, limit))
            .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.readers.read(admin::stats).await
    }

    async fn objects_by_email(
        &self,
        email: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRef>, StoreError> {
        let email = email.to_owned();
        self.readers
            .read(move |connection| admin::objects_by_email(connection, &email, limit))
            .await
    }

    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.readers
            .read(move |connection| admin::list_runs(connection, &filter))
            .await
    }

    async fn prune(&self, before: Timestamp, limit: usize) -> Result<Pruned, StoreError> {
        self.writer
            .write(move |connection| admin::prune(connection, before, limit))
            .await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let found = self.readers.read(migrations::current_version).await?;
        if found == LATEST_VERSION {
            Ok(())
        } else {
            Err(StoreError::SchemaMismatch {
                found,
                expected: LATEST_VERSION,
            })
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        // The checkpointer first, so the writer's final TRUNCATE checkpoint runs alone.
        self.checkpointer.stop();
        self.writer.close();
        Ok(())
    }
}

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use followthrough_store::Store;

    fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = reopen(&dir);
        (dir, store)
    }

    fn reopen(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(super::SqliteStore::open(dir.path().join("test.db"), true).unwrap())
    }

    followthrough_store::conformance_tests!(fresh, reopen);
}
