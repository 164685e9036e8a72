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
//! the others back. (Evaluation is microseconds per event; the single SQLite writer is
//! the limit, so evaluating objects on several threads would not raise throughput. See
//! BENCHMARKS.md.)
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

mod batch;
mod hydrate;
mod record;
mod rule_versions;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use followthrough_core::{Clock, ObjectRef, Timestamp};
use followthrough_rules::{Calendar, RuleSetDiff, RunState, cancel_run};
use followthrough_store::{RunRecord, Store, StoreError, TimerRecord, UnitOfWork};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use batch::{Batch, Loaded, Settings};
pub use hydrate::Hydrator;
pub use rule_versions::RuleVersions;

use crate::journal::Redactor;
use crate::rules_handle::RulesHandle;

/// How long the loop sleeps when nothing wakes it, in case a wake-up was missed.
const IDLE_POLL: Duration = Duration::from_millis(500);

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
}

pub struct Engine {
    parts: EngineParts,
    versions: RuleVersions,
    /// Timers whose context could not be fetched, and when to try again.
    timer_retry: HashMap<String, Timestamp>,
}

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
        }
    }

    /// One batch: due timers and pending events, evaluated in time order and committed.
    pub async fn run_once(&mut self) -> Result<Pass, StoreError> {
        let parts = &self.parts;
        let store = &parts.store;
        let rules = parts.rules.current();
        self.versions.remember(&rules, parts.clock.now()).await?;
        let now = parts.clock.now();
        let events = store.pending_events(now, parts.batch_size).await?;
        let mut timers = store.due_timers(now, parts.batch_size).await?;
        timers.retain(|t| {
            self.timer_retry
                .get(t.run_id.as_str())
                .is_none_or(|retry| *retry <= now)
        });
        if events.is_empty() && timers.is_empty() {
            return Ok(Pass::default());
        }
        let run_ids: Vec<_> = timers.iter().map(|t| t.run_id.clone()).collect();
        let timer_runs = if run_ids.is_empty() {
            Vec::new()
        } else {
            store.runs(&run_ids).await?
        };
        let timer_states: Vec<RunState> = timer_runs
            .iter()
            .filter_map(|r| serde_json::from_value(r.state.clone()).ok())
            .collect();

        // Everything the batch touches, loaded in one read.
        let mut objects: BTreeSet<ObjectRef> = BTreeSet::new();
        for pending in &events {
            objects.insert(pending.event.object.clone());
            if let followthrough_core::EventKind::AssociationChange { to, .. } = &pending.event.kind {
                objects.insert(to.clone());
            }
        }
        objects.extend(timer_runs.iter().map(|r| r.object.clone()));
        let requested: Vec<ObjectRef> = objects.iter().cloned().collect();
        let mut view = store.load_objects(&requested).await?;
        let mut requested = requested;
        // Links this batch creates count for what it must load and fetch: a call linked
        // to a contact and created in the same webhook is activity on that contact.
        for pending in &events {
            if let followthrough_core::EventKind::AssociationChange { to, removed: false, .. } =
                &pending.event.kind
            {
                let from = &pending.event.object;
                view.links.push((from.clone(), to.clone()));
                view.links.push((to.clone(), from.clone()));
            }
        }

        // The objects engagements are linked to, with their runs: an engagement's
        // creation is activity on them.
        let engagements: BTreeSet<&ObjectRef> = events
            .iter()
            .filter(|p| matches!(p.event.kind, followthrough_core::EventKind::Created))
            .map(|p| &p.event.object)
            .collect();
        let linked: Vec<ObjectRef> = view
            .links
            .iter()
            .filter(|(from, to)| engagements.contains(from) && !objects.contains(to))
            .map(|(_, to)| to.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        load_more(store.as_ref(), &mut view, &mut requested, &mut objects, linked).await?;

        // Context the rules read, fetched if missing or stale.
        let needs = hydrate::needs(&rules, &view, &events, &timer_states);
        let owner_ids: Vec<String> = needs.owners.keys().cloned().collect();
        let cached_owners = if owner_ids.is_empty() {
            Vec::new()
        } else {
            store.owners(&owner_ids).await?
        };
        let fetched = if needs.is_empty() {
            hydrate::Fetched::default()
        } else {
            parts.hydrator.fetch(&needs, &cached_owners, &view, now).await
        };
        let blocked = needs.blocked(&fetched.failed);

        // The linked objects rules read (known ones, and those just listed by the CRM).
        let reading_links: BTreeSet<&ObjectRef> = needs.links.iter().map(|(o, _)| o).collect();
        let mut linked: BTreeSet<ObjectRef> = view
            .links
            .iter()
            .filter(|(from, _)| reading_links.contains(from))
            .map(|(_, to)| to.clone())
            .collect();
        for sync in &fetched.syncs {
            linked.extend(sync.linked.iter().cloned());
        }
        linked.retain(|o| !objects.contains(o));
        load_more(
            store.as_ref(),
            &mut view,
            &mut requested,
            &mut objects,
            linked.into_iter().collect(),
        )
        .await?;

        let pinned = self
            .versions
            .pinned_for(&rules, view.runs.iter().chain(&timer_runs))
            .await?;
        let store_for_keys = Arc::clone(store);
        let calendar = parts.calendar.clone();
        let redactor = parts.redactor.clone();
        let catch_up_limit_ms = parts.catch_up_limit_ms;
        let retry_at = Timestamp(now.as_millis() + parts.fetch_retry_ms);
        let handle = tokio::runtime::Handle::current();

        let (unit, pass, failed_timers) = tokio::task::spawn_blocking(move || {
            let key_lookup = |rule_id: &str, key: &str| {
                handle.block_on(store_for_keys.active_runs(rule_id, key))
            };
            let pinned_rule = |rule_id: &str, version: &str| pinned.get(rule_id, version);
            let mut batch = Batch::new(
                &rules,
                &pinned_rule,
                &key_lookup,
                Settings {
                    now,
                    calendar: &calendar,
                    redactor: &redactor,
                    catch_up_limit_ms,
                },
                Loaded {
                    view,
                    owners: cached_owners,
                    timer_runs,
                },
                &requested,
            )?;
            let failed = blocked;
            batch.absorb(fetched);
            let mut pass = Pass::default();
            let mut failed_timers = Vec::new();
            let mut held: BTreeSet<ObjectRef> = BTreeSet::new();
            // Timers and events in time order; a timer due at an event's time fires first.
            let mut timers = timers.into_iter().peekable();
            for pending in &events {
                while let Some(timer) = timers.next_if(|t| t.due_at <= pending.event.occurred_at) {
                    fire(&mut batch, &timer, &failed, &mut failed_timers, &mut pass);
                }
                let object = &pending.event.object;
                if let Some(why) = failed.get(object).filter(|_| !held.contains(object)) {
                    batch.defer(pending, retry_at, why);
                    held.insert(object.clone());
                    pass.deferred += 1;
                    continue;
                }
                if held.contains(object) {
                    // A later event of an object whose earlier one waits: it waits too
                    // (the store holds it back until the first is due).
                    pass.deferred += 1;
                    continue;
                }
                batch.apply_event(pending)?;
                pass.events += 1;
            }
            for timer in timers {
                fire(&mut batch, &timer, &failed, &mut failed_timers, &mut pass);
            }
            Ok::<_, StoreError>((batch.finish(), pass, failed_timers))
        })
        .await
        .map_err(|e| StoreError::Backend(format!("engine task failed: {e}")))??;

        store.apply(unit).await?;
        for run_id in failed_timers {
            self.timer_retry.insert(run_id, retry_at);
        }
        self.timer_retry.retain(|_, at| *at > now);
        Ok(pass)
    }

    /// Cancels the active runs of rules a reload removed or disabled, journaling why.
    pub async fn retire_rules(&self, rule_ids: &[String], why: &str) -> Result<usize, StoreError> {
        let now = self.parts.clock.now();
        let mut unit = UnitOfWork::default();
        for rule_id in rule_ids {
            for record in self.parts.store.active_runs_of_rule(rule_id).await? {
                let Ok(state) = serde_json::from_value::<RunState>(record.state.clone()) else {
                    continue;
                };
                let result = cancel_run(&state, why);
                unit.journal.push(record::rule_retired(now, &result.state, why));
                if let Some(at) = state.timer() {
                    unit.timers_cancelled.push(TimerRecord {
                        run_id: record.run_id.clone(),
                        due_at: at,
                        kind: String::new(),
                    });
                }
                unit.runs.push(RunRecord {
                    status: "cancelled".into(),
                    reason: Some(why.to_owned()),
                    state: serde_json::to_value(&result.state).unwrap_or_default(),
                    updated_at: now,
                    ..record
                });
            }
        }
        let count = unit.runs.len();
        if count > 0 {
            self.parts.store.apply(unit).await?;
        }
        Ok(count)
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
            match self.run_once().await {
                Ok(pass) if !pass.is_idle() && pass.events + pass.timers > pass.deferred => continue,
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "engine pass failed; will retry"),
            }
            let sleep = match self.parts.store.next_timer_at().await {
                Ok(Some(due)) => {
                    let wait = due.as_millis() - self.parts.clock.now().as_millis();
                    Duration::from_millis(wait.clamp(1, IDLE_POLL.as_millis() as i64) as u64)
                }
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => {}
                Some(diff) = reloads.recv() => self.retire(&diff).await,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn retire(&self, diff: &RuleSetDiff) {
        for (ids, why) in [
            (&diff.removed, "its rule was removed by a reload"),
            (&diff.disabled, "its rule was disabled by a reload"),
        ] {
            if ids.is_empty() {
                continue;
            }
            match self.retire_rules(ids, why).await {
                Ok(count) => tracing::info!(rules = ?ids, runs = count, "{why}: active runs cancelled"),
                Err(error) => tracing::error!(%error, "cancelling the runs of retired rules failed"),
            }
        }
    }
}

/// Loads more objects into the batch's view.
async fn load_more(
    store: &dyn Store,
    view: &mut followthrough_store::ObjectsView,
    requested: &mut Vec<ObjectRef>,
    objects: &mut BTreeSet<ObjectRef>,
    more: Vec<ObjectRef>,
) -> Result<(), StoreError> {
    if more.is_empty() {
        return Ok(());
    }
    let extra = store.load_objects(&more).await?;
    view.objects.extend(extra.objects);
    view.runs.extend(extra.runs);
    view.links.extend(extra.links);
    view.syncs.extend(extra.syncs);
    objects.extend(more.iter().cloned());
    requested.extend(more);
    Ok(())
}

fn fire(
    batch: &mut Batch<'_>,
    timer: &TimerRecord,
    failed: &std::collections::BTreeMap<ObjectRef, String>,
    failed_timers: &mut Vec<String>,
    pass: &mut Pass,
) {
    if batch.timer_object(timer).is_some_and(|o| failed.contains_key(&o)) {
        failed_timers.push(timer.run_id.to_string());
        return;
    }
    batch.fire_timer(timer);
    pass.timers += 1;
}
