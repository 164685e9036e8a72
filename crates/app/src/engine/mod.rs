//! The engine: takes stored events and due timers, applies them to objects, evaluates
//! the rules, and commits runs, timers, outbox actions and journal rows, one batch per
//! transaction.
//!
//! **Ordering.** Events come from the store oldest occurrence first (then arrival), and
//! each batch is evaluated in that order by one task: two events of one object are
//! never evaluated at once, and an object's events are applied in order. Due timers are
//! merged into the same order by their due time. Different objects proceed together in
//! the sense that matters here: each batch carries thousands of objects through one
//! commit, and an object whose context cannot be fetched is deferred without holding
//! the others back. (A batch's evaluation is one sequence on one thread, and it is one
//! of the two limits on throughput with the single SQLite writer: see BENCHMARKS.md.
//! Evaluating a batch's objects in two halves on two threads was measured and not kept:
//! on two cores the halves compete with the writer and ingest, and cost more CPU than
//! they save.)
//!
//! **Crash safety.** A batch's effects and the marking of its events as applied commit
//! in one transaction. A crash before the commit leaves the events pending and nothing
//! else; they are evaluated again from scratch, and since nothing of the first attempt
//! was kept, no action is queued twice. An outbox job's idempotency key (run id + step)
//! is unique in the store, so even a replayed decision cannot queue it twice.
//!
//! **Timers.** Only due timers are read (`due_timers(now)`), so pending timers cost
//! disk, not memory. The loop sleeps until the next timer is due, a webhook wakes it,
//! or the idle poll passes. Timers that came due while the service was down fire
//! oldest first when it starts; one overdue by more than the catch-up limit is skipped,
//! journaled, and its run cancelled with that reason.
//!
//! **Several instances.** On a store shared by several instances (PostgreSQL) the
//! work is split into partitions by object, and each engine leases a share of them
//! ([`Store::claim_work`], renewed every quarter of `lease_ms`): it reads only its
//! partitions' events and timers, and each unit carries the leases it was prepared
//! under, so a unit whose partition changed hands meanwhile is refused whole and left
//! to the new holder. A run that belongs to another partition (reached through a link
//! or a rule's key) is written only if no one changed it since it was read. On SQLite
//! the share is everything and nothing is fenced.
//!
//! **Lookups.** A `lookup` step is an outbox job like an action; its outcome comes back
//! as a `lookup` timer (see [`lookup`]), so the run resumes in order with its object.

mod batch;
mod hydrate;
mod lookup;
mod prepare;
mod record;
mod retire;
mod rule_versions;
mod share;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use foldhash::HashSet as FastSet;
use followthrough_core::{Clock, ObjectRef, Timestamp};
use followthrough_rules::{Calendar, RuleSetDiff};
use followthrough_store::{Store, StoreError, TimerKeys, UnitOfWork, WorkShare};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use batch::{Batch, ChangedRuns, Loaded, Settings};
pub use hydrate::Hydrator;
pub use rule_versions::RuleVersions;
pub use share::StoreWideDuties;

use crate::journal::Redactor;
use crate::rules_handle::RulesHandle;

/// How long the loop sleeps when nothing wakes it, in case a wake-up was missed.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The same when instances share the store: a webhook another instance accepted wakes
/// only that instance, so the others look this often for events of their partitions.
/// (PostgreSQL's NOTIFY would wake them sooner, but it takes a lock that serializes
/// every notifying commit, and ingest commits thousands of times a second.)
const SHARED_IDLE_POLL: Duration = Duration::from_millis(100);

/// How soon the loop looks again when the soonest timer is already due but was not
/// fired by the last pass.
const OVERDUE_POLL: Duration = Duration::from_millis(50);

/// What the engine needs besides the store.
pub struct EngineParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub rules: Arc<RulesHandle>,
    pub calendar: Calendar,
    pub redactor: Redactor,
    pub hydrator: Hydrator,
    pub batch_size: usize,
    pub catch_up_limit_ms: i64,
    pub fetch_retry_ms: i64,
    /// `sourceId`s of our own writes (the HubSpot app id): events carrying one are our
    /// actions coming back; they update state but start and advance no run.
    pub own_source_ids: Arc<Vec<String>>,
    /// Notified after a commit that queued outbox jobs, so the workers start at once.
    pub outbox_wake: Arc<Notify>,
    /// This instance's name in the store's work leases (unique per process).
    pub holder: String,
    /// How long a work lease lasts unless renewed (`engine.lease_ms`).
    pub lease_ms: i64,
    /// Set from each renewed share.
    pub store_wide: Arc<StoreWideDuties>,
}

pub struct Engine {
    parts: EngineParts,
    versions: RuleVersions,
    /// Timers whose context could not be fetched, and when to try again.
    timer_retry: HashMap<String, Timestamp>,
    /// The batches being committed while the next one is prepared, oldest first (at most
    /// [`PIPELINE_DEPTH`]).
    in_flight: VecDeque<InFlight>,
    /// After a commit failed on a constraint (two batches raced for one rule key, see
    /// `step`), the next batch is prepared with nothing in flight.
    serial: bool,
    /// The share of the work this instance holds, and when it was last renewed.
    share: Option<(WorkShare, std::time::Instant)>,
}

/// How many batches may be committing while the next is prepared. Committing a batch is
/// two steps, scrubbing and serializing it on a worker and then the writer's SQL; with
/// two in flight the next batch's first step overlaps the writer's second, so the writer
/// does not wait between commits. (With one, a fifth of the two cores sat idle during
/// a catch-up.) With three, the engine also rides out the writer's slower commits
/// (ingest's share the writer, and a commit sometimes waits behind a checkpoint): end
/// to end +9% over two; four measured the same as three (BENCHMARKS.md).
const PIPELINE_DEPTH: usize = 3;

/// A batch handed to the store and not yet committed. The next batch leaves alone
/// everything it touched: its events, its timers, and every object it loaded, whose
/// state in the store is about to change.
struct InFlight {
    commit: tokio::task::JoinHandle<Result<(), StoreError>>,
    seqs: HashSet<i64>,
    timers: Arc<TimerKeys>,
    objects: FastSet<ObjectRef>,
    /// The same by name, for the store's read of pending events to pass over theirs.
    object_names: Arc<HashSet<String>>,
    /// Timers whose context could not be fetched: retried from `retry_at` once committed.
    failed_timers: Vec<String>,
    retry_at: Timestamp,
    /// Owners it fetched: not in the store yet, but no reason to fetch them again.
    owners: Vec<followthrough_store::CachedOwner>,
}

/// A batch evaluated and ready to commit.
struct Prepared {
    unit: UnitOfWork,
    /// The unit's runs, made rows when it is committed.
    runs: ChangedRuns,
    pass: Pass,
    objects: FastSet<ObjectRef>,
    timers: TimerKeys,
    failed_timers: Vec<String>,
    retry_at: Timestamp,
}

/// The batch being prepared needs an object the batch in flight is changing.
struct NeedsCommitted;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub events: usize,
    pub timers: usize,
    pub deferred: usize,
}

impl Pass {
    pub fn is_idle(&self) -> bool {
        self.events == 0 && self.timers == 0
    }
}

impl Engine {
    pub fn new(parts: EngineParts) -> Self {
        let versions = RuleVersions::new(Arc::clone(&parts.store));
        Self {
            parts,
            versions,
            timer_retry: HashMap::new(),
            in_flight: VecDeque::new(),
            serial: false,
            share: None,
        }
    }

    /// One batch: due timers and pending events, evaluated in time order and committed.
    pub async fn run_once(&mut self) -> Result<Pass, StoreError> {
        let pass = self.step().await?;
        self.settle().await?;
        Ok(pass)
    }

    /// Runs batches, each prepared while the one before commits, until nothing is
    /// pending or due (deferred events aside); returns what they did in total.
    pub async fn run_until_idle(&mut self) -> Result<Pass, StoreError> {
        let mut total = Pass::default();
        loop {
            // Work held back because the batch in flight touched it is only known to be
            // done once a pass with nothing in flight finds nothing.
            let had_in_flight = !self.in_flight.is_empty();
            let pass = self.step().await?;
            total.events += pass.events;
            total.timers += pass.timers;
            total.deferred += pass.deferred;
            if pass.events + pass.timers == 0 && !had_in_flight {
                self.settle().await?;
                return Ok(total);
            }
        }
    }

    /// Prepares the next batch while the previous ones commit, then hands it to the
    /// store without waiting: reading and evaluating one batch overlaps the commit of
    /// the ones before (the store's writer and the engine each use a core).
    ///
    /// The batches in flight's objects are left out of the next, so what the next reads
    /// of its own objects is current, and batches in flight never share an object: the
    /// order they commit in does not matter. Runs found by a rule's key expression are
    /// the one thing that may belong to another object, so a batch that starts or
    /// changes one is handed over only once those before it have committed. If two
    /// batches still start a run for one key, the store's unique index refuses the
    /// second commit, its events stay pending, and they are prepared again with nothing
    /// in flight.
    async fn step(&mut self) -> Result<Pass, StoreError> {
        self.renew_share().await?;
        if self.serial {
            self.settle().await?;
        }
        let prepared = loop {
            let had_in_flight = !self.in_flight.is_empty();
            let prepared = loop {
                match self.prepare().await? {
                    Some(Ok(prepared)) => break Some(prepared),
                    None => break None,
                    // It needs an object a batch in flight touches: wait for those
                    // commits and prepare again.
                    Some(Err(NeedsCommitted)) => self.settle().await?,
                }
            };
            match prepared {
                Some(prepared) => break prepared,
                // Nothing that the batches in flight did not hold back: now they have
                // landed, look again before calling the engine idle.
                None if had_in_flight => self.settle().await?,
                None => return Ok(Pass::default()),
            }
        };
        let keyed_elsewhere = prepared.runs.keyed_elsewhere();
        while self.in_flight.len() >= PIPELINE_DEPTH
            || (keyed_elsewhere && !self.in_flight.is_empty())
        {
            self.settle_oldest().await?;
        }
        let Prepared {
            unit,
            runs,
            pass,
            objects,
            timers,
            failed_timers,
            retry_at,
        } = prepared;
        let seqs = unit
            .applied
            .iter()
            .chain(unit.deferrals.iter().map(|d| &d.seq))
            .copied()
            .collect();
        let owners = unit.owners.clone();
        let object_names = Arc::new(objects.iter().map(ObjectRef::name).collect());
        let store = Arc::clone(&self.parts.store);
        let outbox_wake = Arc::clone(&self.parts.outbox_wake);
        let queued_jobs = !unit.outbox.is_empty();
        let redactor = self.parts.redactor.clone();
        self.in_flight.push_back(InFlight {
            // Sealing and tallying here, off the engine's path: the next batch is
            // prepared while this one is scrubbed and committed.
            commit: tokio::spawn(async move {
                let mut unit = unit;
                unit.runs = runs.into_records();
                redactor.seal(&mut unit.journal);
                let tally = crate::metrics::Tally::of(&unit.journal).applied(unit.applied.len());
                let committed = store.apply(unit).await;
                if committed.is_ok() {
                    tally.record();
                    if queued_jobs {
                        outbox_wake.notify_waiters();
                    }
                }
                committed
            }),
            seqs,
            timers: Arc::new(timers),
            objects,
            object_names,
            failed_timers,
            retry_at,
            owners,
        });
        Ok(pass)
    }

    /// Waits for every batch in flight to commit.
    async fn settle(&mut self) -> Result<(), StoreError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Waits for the oldest batch in flight to commit.
    async fn settle_oldest(&mut self) -> Result<(), StoreError> {
        let Some(in_flight) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let waited = std::time::Instant::now();
        let committed = in_flight
            .commit
            .await
            .map_err(|e| StoreError::Backend(format!("commit task failed: {e}")))?;
        tracing::debug!(
            waited_ms = waited.elapsed().as_millis() as u64,
            "engine batch committed"
        );
        self.serial = matches!(committed, Err(StoreError::Conflict(_)));
        committed?;
        let now = self.parts.clock.now();
        for run_id in in_flight.failed_timers {
            self.timer_retry.insert(run_id, in_flight.retry_at);
        }
        self.timer_retry.retain(|_, at| *at > now);
        Ok(())
    }

    /// Runs until cancelled: woken by `wake` after each accepted webhook, by the next
    /// timer coming due, or by the idle poll. Each rules reload that removed or disabled
    /// rules (`reloads`) cancels their active runs.
    pub async fn run(
        mut self,
        wake: Arc<Notify>,
        mut reloads: mpsc::UnboundedReceiver<RuleSetDiff>,
        shutdown: CancellationToken,
    ) {
        loop {
            while let Ok(diff) = reloads.try_recv() {
                self.retire(&diff).await;
            }
            match self.step().await {
                Ok(pass) if !pass.is_idle() && pass.events + pass.timers > pass.deferred => {
                    continue;
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "engine pass failed; will retry"),
            }
            if let Err(error) = self.settle().await {
                tracing::error!(%error, "engine commit failed; will retry");
            }
            let idle_poll = match &self.share {
                Some((WorkShare::Leased(_), _)) => SHARED_IDLE_POLL,
                _ => IDLE_POLL,
            };
            let sleep = match self.parts.store.next_timer_at().await {
                // Due already, yet this pass fired nothing: it waits for its context, or
                // (on a shared store) another instance's engine holds it. Looking again
                // every millisecond would only spin.
                Ok(Some(due)) if due <= self.parts.clock.now() => OVERDUE_POLL.min(idle_poll),
                Ok(Some(due)) => {
                    let wait = due.as_millis() - self.parts.clock.now().as_millis();
                    Duration::from_millis(wait.clamp(1, idle_poll.as_millis() as i64) as u64)
                }
                _ => idle_poll,
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Err(error) = self.settle().await {
                        tracing::error!(%error, "engine commit failed at shutdown");
                    }
                    // The other instances take this share now rather than when it expires.
                    if let Err(error) = self.parts.store.release_work(&self.parts.holder).await {
                        tracing::warn!(%error, "giving back the engine's work share failed");
                    }
                    return;
                }
                _ = wake.notified() => {}
                Some(diff) = reloads.recv() => self.retire(&diff).await,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}
