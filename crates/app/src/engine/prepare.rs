//! Reading and evaluating the next batch: its pending events and due timers (leaving
//! out what the batches in flight touch), the objects, runs and context they need, and
//! the [`Batch`] that turns them into one unit of work.

use std::collections::BTreeSet;
use std::sync::Arc;

use foldhash::{HashMap, HashSet, HashSetExt};
use followthrough_core::{ObjectRef, Timestamp};
use followthrough_rules::RunState;
use followthrough_store::{HeldBack, HeldTimers, Store, StoreError, TimerRecord, WorkShare};

use super::{Batch, Engine, Loaded, NeedsCommitted, Pass, Prepared, Settings, hydrate, lookup};

impl Engine {
    /// Reads and evaluates the next batch, leaving out what the batches in flight
    /// touch. `None` when there is nothing to do.
    pub(super) async fn prepare(
        &mut self,
    ) -> Result<Option<Result<Prepared, NeedsCommitted>>, StoreError> {
        tracing::trace!("engine batch starting");
        let share = match &self.share {
            Some((share, _)) => share.clone(),
            None => WorkShare::All,
        };
        if share.is_empty() {
            // Standing by: the other instances hold every partition.
            return Ok(None);
        }
        let rules = self.parts.rules.current();
        self.versions
            .remember(&rules, self.parts.clock.now())
            .await?;
        let parts = &self.parts;
        let store = &parts.store;
        let now = parts.clock.now();
        let busy = &self.in_flight;
        let started = std::time::Instant::now();
        // The batches in flight are still pending in the store until they commit, and
        // they are the oldest work: read past them, or the next batch would find only
        // what they hold and wait for their commits instead of being prepared alongside.
        // Their objects' later events are passed over unparsed too (they wait whole, see
        // below).
        let held = Arc::new(HeldBack {
            seqs: busy.iter().flat_map(|b| b.seqs.iter().copied()).collect(),
            objects: busy.iter().map(|b| Arc::clone(&b.object_names)).collect(),
        });
        let timers_in_flight = Arc::new(HeldTimers {
            batches: busy.iter().map(|b| Arc::clone(&b.timers)).collect(),
        });
        let mut events = store
            .pending_events_in(&share, now, parts.batch_size, held)
            .await?;
        let mut due = store
            .due_timers_in(&share, now, parts.batch_size, timers_in_flight)
            .await?;
        // (The store already left out the timers in flight themselves.)
        due.retain(|t| {
            self.timer_retry
                .get(t.timer.run_id.as_str())
                .is_none_or(|retry| *retry <= now)
                && busy
                    .iter()
                    .all(|b| t.object.as_ref().is_none_or(|o| !b.objects.contains(o)))
        });
        if !busy.is_empty() {
            // An object touched by a batch in flight waits whole, so its order holds.
            let is_busy = |object: &ObjectRef| busy.iter().any(|b| b.objects.contains(object));
            let mut held: HashSet<ObjectRef> = HashSet::new();
            events.retain(|p| {
                let event = &p.event;
                let touches_busy = is_busy(&event.object)
                    || matches!(&event.kind, followthrough_core::EventKind::AssociationChange { to, .. } if is_busy(to));
                // (The store already left out the events in flight themselves, and those
                // of their objects.)
                if touches_busy || held.contains(&event.object) {
                    held.insert(event.object.clone());
                    return false;
                }
                true
            });
        }
        events.truncate(parts.batch_size);
        due.truncate(parts.batch_size);
        if events.is_empty() && due.is_empty() {
            return Ok(None);
        }

        // Everything the batch touches, loaded in one read.
        let mut touched: Vec<ObjectRef> = Vec::with_capacity(events.len() + due.len());
        for pending in &events {
            touched.push(pending.event.object.clone());
            if let followthrough_core::EventKind::AssociationChange { to, .. } = &pending.event.kind
            {
                touched.push(to.clone());
            }
        }
        // A due timer's run is among its object's active runs (or the timer is stale).
        touched.extend(due.iter().filter_map(|t| t.object.clone()));
        // Collected whole, the set is sorted once and built in bulk, not searched per insert.
        let mut objects: BTreeSet<ObjectRef> = touched.into_iter().collect();
        let timers: Vec<TimerRecord> = due.into_iter().map(|t| t.timer).collect();
        let requested: Vec<ObjectRef> = objects.iter().cloned().collect();
        let read_work = started.elapsed();
        let mut view = store.load_objects(&requested).await?;
        let loaded = started.elapsed();
        let mut requested = requested;
        let timer_run_ids: BTreeSet<&str> = timers.iter().map(|t| t.run_id.as_str()).collect();
        // Read once here (hydration and lookups need them) and handed to the batch.
        let timer_states: HashMap<String, RunState> = view
            .runs
            .iter()
            .filter(|r| timer_run_ids.contains(r.run_id.as_str()))
            .filter_map(|r| Some((r.run_id.to_string(), RunState::from_json(&r.state).ok()?)))
            .collect();
        // Links this batch creates count for what it must load and fetch: a call linked
        // to a contact and created in the same webhook is activity on that contact.
        for pending in &events {
            if let followthrough_core::EventKind::AssociationChange {
                to, removed: false, ..
            } = &pending.event.kind
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
        load_more(
            store.as_ref(),
            &mut view,
            &mut requested,
            &mut objects,
            linked,
        )
        .await?;

        let lookups = lookup::outcomes(store.as_ref(), &timers, &timer_states).await?;

        // Context the rules read, fetched if missing or stale.
        let needs = hydrate::needs(&rules, &view, &events, &timer_states);
        let owner_ids: Vec<String> = needs.owners.keys().cloned().collect();
        let mut cached_owners = if owner_ids.is_empty() {
            Vec::new()
        } else {
            store.owners(&owner_ids).await?
        };
        for batch in busy {
            cached_owners.extend(batch.owners.iter().cloned());
        }
        let fetched = if needs.is_empty() {
            hydrate::Fetched::default()
        } else {
            parts
                .hydrator
                .fetch(&needs, &cached_owners, &view, now)
                .await
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

        if requested
            .iter()
            .any(|o| busy.iter().any(|b| b.objects.contains(o)))
        {
            return Ok(Some(Err(NeedsCommitted)));
        }
        let batch_objects: HashSet<ObjectRef> = requested.iter().cloned().collect();
        let timer_keys: HashSet<(String, Timestamp)> = timers
            .iter()
            .map(|t| (t.run_id.to_string(), t.due_at))
            .collect();
        let pinned = self.versions.pinned_for(&rules, view.runs.iter()).await?;
        let store_for_keys = Arc::clone(store);
        let calendar = parts.calendar.clone();
        let redactor = parts.redactor.clone();
        let catch_up_limit_ms = parts.catch_up_limit_ms;
        let own_source_ids = Arc::clone(&parts.own_source_ids);
        let retry_at = Timestamp(now.as_millis() + parts.fetch_retry_ms);
        let handle = tokio::runtime::Handle::current();

        let context = started.elapsed();
        let ((unit, runs), pass, failed_timers) = tokio::task::spawn_blocking(move || {
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
                    own_source_ids: &own_source_ids,
                },
                Loaded {
                    view,
                    owners: cached_owners,
                    lookups,
                    states: timer_states,
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

        tracing::debug!(
            events = pass.events,
            timers = pass.timers,
            deferred = pass.deferred,
            objects = batch_objects.len(),
            read_ms = read_work.as_millis() as u64,
            load_ms = (loaded - read_work).as_millis() as u64,
            context_ms = (context - loaded).as_millis() as u64,
            evaluate_ms = (started.elapsed() - context).as_millis() as u64,
            "engine batch prepared"
        );
        let mut unit = unit;
        unit.fence = share.fence();
        let mut objects = batch_objects;
        // Runs found by key (rules keyed by an expression) may be about other objects.
        objects.extend(runs.objects().cloned());
        Ok(Some(Ok(Prepared {
            unit,
            runs,
            pass,
            objects,
            timers: timer_keys,
            failed_timers,
            retry_at,
        })))
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
    if batch
        .timer_object(timer)
        .is_some_and(|o| failed.contains_key(&o))
    {
        failed_timers.push(timer.run_id.to_string());
        return;
    }
    batch.fire_timer(timer);
    pass.timers += 1;
}
