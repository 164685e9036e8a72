//! The [`Store`] trait and its contract.

use std::sync::Arc;

use followthrough_core::{ObjectRef, RunId, Timestamp};

use crate::admin::{Pruned, RunFilter, StoreStats};
use crate::model::{
    AppendOutcome, AttemptRecord, CachedOwner, ClaimedJob, DeadLetter, DueTimer, HeldBack,
    HeldTimers, InboxBatch, JournalEntry, KeyedJob, ObjectState, ObjectsView, OutboxEntry,
    PendingEvent, PropertyHistoryEntry, ReceivedEvent, RuleVersion, RunRecord, TimerRecord,
    UnitOfWork, WorkShare,
};

/// Why a store call failed. Callers at the HTTP edge answer these as an opaque 500 and
/// log the detail; the text may name tables and SQL, so it never goes to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store schema is at version {found}, this build expects {expected}")]
    SchemaMismatch { found: i64, expected: i64 },
    #[error("store is closed")]
    Closed,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("conflicting write: {0}")]
    Conflict(String),
}

/// Everything followthrough persists.
///
/// # Contract
///
/// Every backend must satisfy these, and the conformance suite checks them:
///
/// - **Durability.** When a writing method returns `Ok`, its effect is committed and
///   survives a crash of the process (and, where the backend is configured so, of the
///   machine). A 2xx to a webhook relies on this.
/// - **Atomicity.** Each writing method commits all of its input or none of it.
/// - **Deduplication by constraint.** [`Store::append_inbox`] skips an event whose
///   `(source, dedup_key)` is already in the inbox, and counts it as a duplicate. The
///   backend enforces this with a unique constraint, so two concurrent deliveries of one
///   event cannot both be inserted.
/// - **Newest value wins.** [`Store::apply`] records every [`crate::PropertyWrite`] in the
///   history, but replaces an object's current value only if the write occurred at or
///   after the value it would replace. Events arriving out of order therefore leave the
///   newest value current and the full history in occurrence order.
/// - **Pending order.** [`Store::pending_events`] returns unapplied events ordered by
///   `occurred_at`, then by arrival. It leaves out every event of an object that has an
///   event deferred ([`crate::Deferral`]) past `now`, so an object's order holds while
///   one of its events waits.
/// - **One active run per key.** A unit that would leave two active, non-parallel runs
///   of one rule for one key fails as a whole ([`StoreError::Conflict`]); the backend
///   enforces it with a unique constraint.
/// - **Fenced work.** A backend shared by several instances splits the engine's work into
///   partitions leased by [`Store::claim_work`], and commits a unit only if its
///   [`crate::Fence`] still holds and every run it replaces is at the revision it was read
///   at; otherwise the whole unit fails with [`StoreError::Conflict`].
/// - **Each action once.** [`Store::apply`] skips an outbox job whose idempotency key is
///   already queued (it is not an error: a replayed decision is a no-op).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends one webhook's events to the inbox and journals the request, in one
    /// transaction. The journal entry's summary is completed with the counts.
    async fn append_inbox(&self, batch: InboxBatch) -> Result<AppendOutcome, StoreError>;

    /// Appends journal entries on their own (a rejected webhook, say).
    async fn journal(&self, entries: Vec<JournalEntry>) -> Result<(), StoreError>;

    /// Up to `limit` events not yet applied and not waiting past `now`, oldest
    /// occurrence first.
    async fn pending_events(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError>;

    /// Renews `holder`'s engine leases for `lease_ms` and takes free or expired
    /// partitions up to a fair share of the live instances (one counts until its own
    /// lease would have ended), or gives back what exceeds it. Times are the store's own clock, so instances on machines
    /// whose clocks differ still agree on who holds what. A single-writer backend
    /// returns [`WorkShare::All`].
    async fn claim_work(&self, holder: &str, lease_ms: i64) -> Result<WorkShare, StoreError> {
        let _ = (holder, lease_ms);
        Ok(WorkShare::All)
    }

    /// Gives back `holder`'s leases at once (a graceful stop), so the other instances
    /// need not wait for them to expire.
    async fn release_work(&self, holder: &str) -> Result<(), StoreError> {
        let _ = holder;
        Ok(())
    }

    /// [`Store::pending_events`] limited to the share's partitions, leaving out what
    /// `held` holds (the engine's batches in flight) without reading it whole: up to
    /// `limit` events besides the held ones, of the first `limit + held.seqs.len()`
    /// pending.
    async fn pending_events_in(
        &self,
        share: &WorkShare,
        now: Timestamp,
        limit: usize,
        held: Arc<HeldBack>,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let _ = share;
        let mut events = self.pending_events(now, limit + held.seqs.len()).await?;
        events.retain(|p| {
            !held.seqs.contains(&p.seq) && !held.holds_object(&p.event.object.to_string())
        });
        events.truncate(limit);
        Ok(events)
    }

    /// [`Store::due_timers`] limited to the share's partitions (a timer belongs to its
    /// run's object's partition), leaving out the timers `held` holds (those of the
    /// engine's batches in flight, still in the store until they commit) before their
    /// runs are looked up: up to `limit` timers besides them.
    async fn due_timers_in(
        &self,
        share: &WorkShare,
        now: Timestamp,
        limit: usize,
        held: Arc<HeldTimers>,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let _ = share;
        let mut due = self.due_timers(now, limit + held.len()).await?;
        due.retain(|t| !held.holds(&(t.timer.run_id.to_string(), t.timer.due_at)));
        due.truncate(limit);
        Ok(due)
    }

    /// How many events are not yet applied (deferred ones included).
    async fn pending_count(&self) -> Result<u64, StoreError>;

    /// The objects' states, active runs, links and link-sync times, in one read.
    async fn load_objects(&self, objects: &[ObjectRef]) -> Result<ObjectsView, StoreError>;

    /// The runs with these ids (any status); unknown ids are left out.
    async fn runs(&self, ids: &[RunId]) -> Result<Vec<RunRecord>, StoreError>;

    /// Every run about an object (any status), oldest first: for the trace.
    async fn runs_for(&self, object: &ObjectRef) -> Result<Vec<RunRecord>, StoreError>;

    /// Active runs of a rule, whatever their key: what a reload that removes the rule
    /// cancels.
    async fn active_runs_of_rule(&self, rule_id: &str) -> Result<Vec<RunRecord>, StoreError>;

    /// Cached owners with these ids.
    async fn owners(&self, ids: &[String]) -> Result<Vec<CachedOwner>, StoreError>;

    /// The pending timers of an object's runs, soonest first: for the trace.
    async fn timers_for(&self, object: &ObjectRef) -> Result<Vec<TimerRecord>, StoreError>;

    /// Keeps these rule versions (a version already kept is left as it is).
    async fn save_rule_versions(&self, versions: Vec<RuleVersion>) -> Result<(), StoreError>;

    /// A kept rule version.
    async fn rule_version(
        &self,
        rule_id: &str,
        version: &str,
    ) -> Result<Option<RuleVersion>, StoreError>;

    /// When the soonest pending timer is due, if any.
    async fn next_timer_at(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Commits the effects of applying events: property writes, object marks, journal
    /// entries, and marks the events applied. All or nothing.
    async fn apply(&self, unit: UnitOfWork) -> Result<(), StoreError>;

    /// Active runs (`new`, `running`, `waiting`) of a rule for a key.
    async fn active_runs(&self, rule_id: &str, key: &str) -> Result<Vec<RunRecord>, StoreError>;

    /// Timers due at or before `now`, oldest first, each with its run's object.
    async fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<DueTimer>, StoreError>;

    /// Outbox jobs about an object (any status), in queue order.
    async fn outbox_for(&self, object: &ObjectRef) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The outbox job with this idempotency key (any status), with its newest dead
    /// letter's reason when it is dead: how the engine learns a lookup's outcome.
    async fn job_by_key(&self, idempotency_key: &str) -> Result<Option<KeyedJob>, StoreError>;

    /// Claims up to `limit` pending jobs of `connector` that are due at `now` and not
    /// leased (or whose lease expired), oldest `next_at` first, leasing them until
    /// `lease_until`. Each claim counts as an attempt.
    async fn claim_jobs(
        &self,
        connector: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Records an attempt's outcome, its journal rows and its timers, in one
    /// transaction, if the job still carries `record.lease` (a lease that expired but was
    /// not claimed again still counts). Returns `false`, recording nothing, when another
    /// worker has claimed the job since.
    async fn record_attempt(&self, record: AttemptRecord) -> Result<bool, StoreError>;

    /// When `connector`'s soonest pending job is due or its soonest lease expires.
    async fn next_job_at(&self, connector: &str) -> Result<Option<Timestamp>, StoreError>;

    /// Dead letters, oldest first; replayed ones only if `include_replayed`.
    async fn dead_letters(&self, include_replayed: bool) -> Result<Vec<DeadLetter>, StoreError>;

    /// One dead letter by id.
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError>;

    /// Puts these dead letters' jobs back in the outbox (pending, due at `now`, attempts
    /// counted from zero, the next one checking first if the last was indeterminate),
    /// marks them replayed, and appends `journal[i]` for each `ids[i]` replayed, in one
    /// transaction. Ids that are unknown or already replayed are skipped (and their
    /// journal entries with them); returns the ids replayed.
    async fn replay_dead_letters(
        &self,
        ids: &[i64],
        now: Timestamp,
        journal: Vec<JournalEntry>,
    ) -> Result<Vec<i64>, StoreError>;

    /// The next position (0, 1, 2... wrapping at `size`) of the named rotation, kept
    /// durably: round-robin assignment survives restarts and is shared by instances.
    /// The same `key` (a job's idempotency key) always gets the same turn, so a retried
    /// assignment goes to the same person. `size` 0 is an error.
    async fn next_in_rotation(&self, name: &str, size: u32, key: &str) -> Result<u32, StoreError>;

    /// The object's current state, or `None` if no event about it was ever applied.
    async fn object(&self, object: &ObjectRef) -> Result<Option<ObjectState>, StoreError>;

    /// The object's property history, ordered by property, then occurrence.
    async fn property_history(
        &self,
        object: &ObjectRef,
    ) -> Result<Vec<PropertyHistoryEntry>, StoreError>;

    /// Events received about the object (applied or not), in arrival order.
    async fn received_events(&self, object: &ObjectRef) -> Result<Vec<ReceivedEvent>, StoreError>;

    /// Journal entries about the object, oldest first.
    async fn journal_for(&self, object: &ObjectRef) -> Result<Vec<JournalEntry>, StoreError>;

    /// Journal entries not about one object (webhook requests), newest first.
    async fn recent_requests(&self, limit: usize) -> Result<Vec<JournalEntry>, StoreError>;

    /// Counts for metrics, the health summary and the console, in one read.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Objects whose `email` property is `email`, compared without regard to case, most
    /// recently updated first: how a person finds a lead.
    async fn objects_by_email(
        &self,
        email: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRef>, StoreError>;

    /// Runs that match the filter, newest first, at most `filter.limit`.
    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, StoreError>;

    /// Deletes up to `limit` journal rows written before `before`, and up to `limit`
    /// applied events received before `before` (their payloads; the property history
    /// they wrote stays). Events not yet applied are never pruned. Call it again until it
    /// returns nothing: each call is one short transaction, so ingest is not held up.
    async fn prune(&self, before: Timestamp, limit: usize) -> Result<Pruned, StoreError>;

    /// Succeeds when the store answers and its schema is the one this build expects.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Flushes and closes. Writing calls made after `close` fail with `Closed`.
    async fn close(&self) -> Result<(), StoreError>;
}
