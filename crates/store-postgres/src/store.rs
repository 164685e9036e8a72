//! The [`Store`] implementation: each writing method is one transaction (run again if
//! PostgreSQL rolled it back for a deadlock), each read one statement or one snapshot.

use followthrough_core::{ObjectRef, RunId, Timestamp};
use std::sync::Arc;

use followthrough_store::{
    AppendOutcome, AttemptRecord, CachedOwner, ClaimedJob, DeadLetter, DueTimer, HeldBack,
    HeldTimers, InboxBatch, JournalEntry, KeyedJob, ObjectState, ObjectsView, OutboxEntry,
    PendingEvent, PropertyHistoryEntry, Pruned, ReceivedEvent, RuleVersion, RunFilter, RunRecord,
    Store, StoreError, StoreStats, TimerRecord, UnitOfWork, WorkShare,
};

use crate::error::retrying;
use crate::migrations::{self, LATEST_VERSION};
use crate::{
    PostgresStore, admin, apply, context, dead_letters, inbox, journal, objects, outbox, runs, work,
};

/// Runs `$body` with `$tx`, a new transaction on the pool, and commits it; the whole
/// transaction is run again if it failed transiently (see [`retrying`]). The body may
/// capture only references and `Copy` values: each run gets its own copies.
macro_rules! transaction {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let pool = $self.pool()?;
        retrying(move || async move {
            let mut $tx = pool.begin().await?;
            let value = $body;
            $tx.commit().await?;
            Ok(value)
        })
        .await
    }};
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn append_inbox(&self, batch: InboxBatch) -> Result<AppendOutcome, StoreError> {
        let rows = &inbox::InboxRows::prepare(&batch.events)?;
        let journal = &batch.journal;
        transaction!(self, |tx| inbox::append(&mut tx, rows, journal).await?)
    }

    async fn journal(&self, entries: Vec<JournalEntry>) -> Result<(), StoreError> {
        let entries = &entries;
        transaction!(self, |tx| journal::insert(&mut tx, entries).await?)
    }

    async fn pending_events(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        Ok(inbox::pending_events(self.pool()?, now, limit, None, &HeldBack::default()).await?)
    }

    async fn claim_work(&self, holder: &str, lease_ms: i64) -> Result<WorkShare, StoreError> {
        transaction!(self, |tx| work::claim(&mut tx, holder, lease_ms).await?)
    }

    async fn release_work(&self, holder: &str) -> Result<(), StoreError> {
        transaction!(self, |tx| work::release(&mut tx, holder).await?)
    }

    async fn pending_events_in(
        &self,
        share: &WorkShare,
        now: Timestamp,
        limit: usize,
        held: Arc<HeldBack>,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let partitions = share.partitions();
        Ok(inbox::pending_events(self.pool()?, now, limit, partitions, &held).await?)
    }

    async fn due_timers_in(
        &self,
        share: &WorkShare,
        now: Timestamp,
        limit: usize,
        held: Arc<HeldTimers>,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let partitions = share.partitions();
        let mut due = runs::due_timers(self.pool()?, now, limit + held.len(), partitions).await?;
        due.retain(|t| !held.holds(&(t.timer.run_id.to_string(), t.timer.due_at)));
        due.truncate(limit);
        Ok(due)
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        Ok(inbox::pending_count(self.pool()?).await?)
    }

    async fn load_objects(&self, objects: &[ObjectRef]) -> Result<ObjectsView, StoreError> {
        Ok(objects::load_objects(self.pool()?, objects).await?)
    }

    async fn runs(&self, ids: &[RunId]) -> Result<Vec<RunRecord>, StoreError> {
        Ok(runs::runs(self.pool()?, ids).await?)
    }

    async fn runs_for(&self, object: &ObjectRef) -> Result<Vec<RunRecord>, StoreError> {
        Ok(runs::runs_for(self.pool()?, object).await?)
    }

    async fn active_runs_of_rule(&self, rule_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        Ok(runs::active_runs_of_rule(self.pool()?, rule_id).await?)
    }

    async fn owners(&self, ids: &[String]) -> Result<Vec<CachedOwner>, StoreError> {
        Ok(context::owners(self.pool()?, ids).await?)
    }

    async fn timers_for(&self, object: &ObjectRef) -> Result<Vec<TimerRecord>, StoreError> {
        Ok(runs::timers_for(self.pool()?, object).await?)
    }

    async fn save_rule_versions(&self, versions: Vec<RuleVersion>) -> Result<(), StoreError> {
        let versions = &versions;
        transaction!(self, |tx| context::save_rule_versions(&mut tx, versions)
            .await?)
    }

    async fn rule_version(
        &self,
        rule_id: &str,
        version: &str,
    ) -> Result<Option<RuleVersion>, StoreError> {
        Ok(context::rule_version(self.pool()?, rule_id, version).await?)
    }

    async fn next_timer_at(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(runs::next_timer_at(self.pool()?).await?)
    }

    async fn apply(&self, unit: UnitOfWork) -> Result<(), StoreError> {
        let unit = &unit;
        transaction!(self, |tx| apply::apply(&mut tx, unit).await?)
    }

    async fn active_runs(&self, rule_id: &str, key: &str) -> Result<Vec<RunRecord>, StoreError> {
        Ok(runs::active_runs(self.pool()?, rule_id, key).await?)
    }

    async fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<DueTimer>, StoreError> {
        Ok(runs::due_timers(self.pool()?, now, limit, None).await?)
    }

    async fn outbox_for(&self, object: &ObjectRef) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(outbox::outbox_for(self.pool()?, object).await?)
    }

    async fn job_by_key(&self, idempotency_key: &str) -> Result<Option<KeyedJob>, StoreError> {
        Ok(outbox::job_by_key(self.pool()?, idempotency_key).await?)
    }

    async fn claim_jobs(
        &self,
        connector: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        // The claim is one statement, atomic on its own: no BEGIN and COMMIT around it,
        // two round trips fewer on the outbox's hottest path.
        let pool = self.pool()?;
        retrying(move || async move {
            let mut connection = pool.acquire().await?;
            outbox::claim_jobs(&mut connection, connector, now, lease_until, limit).await
        })
        .await
    }

    async fn record_attempt(&self, record: AttemptRecord) -> Result<bool, StoreError> {
        let record = &record;
        transaction!(self, |tx| outbox::record_attempt(&mut tx, record).await?)
    }

    async fn next_job_at(&self, connector: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(outbox::next_job_at(self.pool()?, connector).await?)
    }

    async fn dead_letters(&self, include_replayed: bool) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(dead_letters::dead_letters(self.pool()?, include_replayed).await?)
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        Ok(dead_letters::dead_letter(self.pool()?, id).await?)
    }

    async fn replay_dead_letters(
        &self,
        ids: &[i64],
        now: Timestamp,
        journal: Vec<JournalEntry>,
    ) -> Result<Vec<i64>, StoreError> {
        let journal = &journal;
        transaction!(self, |tx| {
            dead_letters::replay(&mut tx, ids, now, journal).await?
        })
    }

    /// A rotation of size 0 is an error ([`StoreError::Backend`]): there is nobody to
    /// hand the turn to, and the caller must not have asked.
    async fn next_in_rotation(&self, name: &str, size: u32, key: &str) -> Result<u32, StoreError> {
        transaction!(self, |tx| {
            dead_letters::next_in_rotation(&mut tx, name, size, key).await?
        })
    }

    async fn object(&self, object: &ObjectRef) -> Result<Option<ObjectState>, StoreError> {
        Ok(objects::object(self.pool()?, object).await?)
    }

    async fn property_history(
        &self,
        object: &ObjectRef,
    ) -> Result<Vec<PropertyHistoryEntry>, StoreError> {
        Ok(objects::property_history(self.pool()?, object).await?)
    }

    async fn received_events(&self, object: &ObjectRef) -> Result<Vec<ReceivedEvent>, StoreError> {
        Ok(inbox::received_events(self.pool()?, object).await?)
    }

    async fn journal_for(&self, object: &ObjectRef) -> Result<Vec<JournalEntry>, StoreError> {
        Ok(journal::journal_for(self.pool()?, object).await?)
    }

    async fn recent_requests(&self, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        Ok(journal::recent_requests(self.pool()?, limit).await?)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(admin::stats(self.pool()?).await?)
    }

    async fn objects_by_email(
        &self,
        email: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRef>, StoreError> {
        Ok(admin::objects_by_email(self.pool()?, email, limit).await?)
    }

    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        Ok(admin::list_runs(self.pool()?, &filter).await?)
    }

    async fn prune(&self, before: Timestamp, limit: usize) -> Result<Pruned, StoreError> {
        transaction!(self, |tx| admin::prune(&mut tx, before, limit).await?)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let mut connection = self
            .pool()?
            .acquire()
            .await
            .map_err(crate::error::Error::from)?;
        let found = migrations::current_version(&mut connection).await?;
        if found == LATEST_VERSION {
            Ok(())
        } else {
            Err(StoreError::SchemaMismatch {
                found,
                expected: LATEST_VERSION,
            })
        }
    }

    /// Waits for calls in flight to give their connections back, then closes them.
    async fn close(&self) -> Result<(), StoreError> {
        self.pool.close().await;
        Ok(())
    }
}
