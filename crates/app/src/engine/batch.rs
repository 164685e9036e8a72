//! One batch of the engine, in memory: the durable twin of the rules crate's
//! `Simulator`. It starts from what the store knows of the batch's objects (states,
//! links, active runs, owners), takes the batch's due timers and events in time order,
//! calls the same pure functions (`evaluate_trigger`, `on_retrigger`, `advance`), and
//! collects every effect (property writes, runs, timers, outbox jobs, journal rows)
//! into one [`UnitOfWork`] that the store commits in one transaction.
//!
//! Nothing here does I/O except [`KeyLookup`], which asks the store for the active runs
//! of a (rule, key) the batch has not loaded (only rules keyed by an expression need it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use followthrough_core::{Event, EventKind, ObjectRef, RunId, Timestamp};
use followthrough_rules::{
    Advance, Calendar, Decision, EvalContext, KeySpec, ObjectState, OnRetrigger, Owner,
    RetriggerDecision, Rule, RuleSet, RunState, Subject, TriggerDecision, Wake, advance,
    cancel_run, evaluate_trigger, on_retrigger,
};
use followthrough_store::{
    AssociationWrite, CachedOwner, Deferral, ObjectMark, ObjectsView, OutboxJob, PendingEvent,
    PropertyWrite, RunRecord, StoreError, TimerRecord, UnitOfWork,
};
use serde_json::Value as Json;

use super::record;
use crate::journal::Redactor;

/// The property naming an object's owner (HubSpot's).
pub const OWNER_PROPERTY: &str = followthrough_rules::OWNER_PROPERTY;

/// Asks the store for the active runs of a rule for a key.
pub type KeyLookup<'a> = dyn Fn(&str, &str) -> Result<Vec<RunRecord>, StoreError> + 'a;

/// Finds the version of a rule a run started with, when it is not the loaded one.
pub type PinnedRule<'a> = dyn Fn(&str, &str) -> Option<Arc<Rule>> + 'a;

/// What a batch starts from.
pub struct Loaded {
    pub view: ObjectsView,
    pub owners: Vec<CachedOwner>,
}

/// Settings that shape decisions.
pub struct Settings<'a> {
    pub now: Timestamp,
    pub calendar: &'a Calendar,
    pub redactor: &'a Redactor,
    /// A timer overdue by more than this is skipped, not fired.
    pub catch_up_limit_ms: i64,
}

/// An object's properties in memory, each with the time of the value, so an older
/// event leaves a newer value current here exactly as the store does.
#[derive(Debug, Clone, Default)]
struct Props(BTreeMap<String, (Json, Timestamp)>);

impl Props {
    fn values(&self) -> BTreeMap<String, Json> {
        self.0
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
}

struct Run {
    state: RunState,
    created_at: Timestamp,
    parallel: bool,
    /// When the batch last changed it (for write order); `None` if unchanged.
    changed: Option<u64>,
}

/// A rule as loaded now, or the older version a run started with.
enum RuleRef<'a> {
    Current(&'a Rule),
    Pinned(Arc<Rule>),
}

impl std::ops::Deref for RuleRef<'_> {
    type Target = Rule;

    fn deref(&self) -> &Rule {
        match self {
            RuleRef::Current(rule) => rule,
            RuleRef::Pinned(rule) => rule,
        }
    }
}

pub struct Batch<'a> {
    rules: &'a RuleSet,
    pinned: &'a PinnedRule<'a>,
    key_lookup: &'a KeyLookup<'a>,
    settings: Settings<'a>,
    objects: HashMap<ObjectRef, Props>,
    links: HashMap<ObjectRef, BTreeSet<ObjectRef>>,
    owners: HashMap<String, Owner>,
    runs: HashMap<String, Run>,
    by_object: HashMap<ObjectRef, BTreeSet<String>>,
    by_key: HashMap<(String, String), BTreeSet<String>>,
    /// (rule, key) pairs whose active runs are all in `runs`.
    keys_loaded: HashSet<(String, String)>,
    /// Objects whose active runs are all in `runs`.
    objects_loaded: HashSet<ObjectRef>,
    /// Timers scheduled by this batch and not yet committed.
    scheduled: BTreeSet<(String, Timestamp, String)>,
    cancelled: BTreeSet<(String, Timestamp)>,
    changes: u64,
    unit: UnitOfWork,
}

impl<'a> Batch<'a> {
    pub fn new(
        rules: &'a RuleSet,
        pinned: &'a PinnedRule<'a>,
        key_lookup: &'a KeyLookup<'a>,
        settings: Settings<'a>,
        loaded: Loaded,
        requested: &[ObjectRef],
    ) -> Result<Self, StoreError> {
        let mut batch = Batch {
            rules,
            pinned,
            key_lookup,
            unit: UnitOfWork {
                applied_at: Some(settings.now),
                ..UnitOfWork::default()
            },
            settings,
            objects: HashMap::new(),
            links: HashMap::new(),
            owners: HashMap::new(),
            runs: HashMap::new(),
            by_object: HashMap::new(),
            by_key: HashMap::new(),
            keys_loaded: HashSet::new(),
            objects_loaded: requested.iter().cloned().collect(),
            scheduled: BTreeSet::new(),
            cancelled: BTreeSet::new(),
            changes: 0,
        };
        for state in loaded.view.objects {
            let props = state
                .properties
                .into_iter()
                .map(|(name, p)| (name, (p.value, p.occurred_at)))
                .collect();
            batch.objects.insert(state.object, Props(props));
        }
        for (from, to) in loaded.view.links {
            batch.links.entry(from).or_default().insert(to);
        }
        for owner in loaded.owners {
            batch.owners.insert(
                owner.id.clone(),
                Owner {
                    id: owner.id,
                    email: owner.email,
                    name: owner.name,
                    teams: owner.teams,
                },
            );
        }
        for record in loaded.view.runs {
            batch.add_loaded_run(record)?;
        }
        Ok(batch)
    }

    fn add_loaded_run(&mut self, record: RunRecord) -> Result<(), StoreError> {
        let key = record.run_id.to_string();
        if self.runs.contains_key(&key) {
            return Ok(());
        }
        let state: RunState = serde_json::from_value(record.state.clone())
            .map_err(|e| StoreError::Corrupt(format!("run {key}: {e}")))?;
        if state.status.is_active() {
            self.index(&state);
        }
        self.runs.insert(
            key,
            Run {
                state,
                created_at: record.created_at,
                parallel: record.parallel,
                changed: None,
            },
        );
        Ok(())
    }

    fn index(&mut self, state: &RunState) {
        self.by_object
            .entry(state.object.clone())
            .or_default()
            .insert(state.run_id.clone());
        self.by_key
            .entry((state.rule_id.clone(), state.key.clone()))
            .or_default()
            .insert(state.run_id.clone());
    }

    fn unindex(&mut self, state: &RunState) {
        if let Some(ids) = self.by_object.get_mut(&state.object) {
            ids.remove(&state.run_id);
        }
        if let Some(ids) = self
            .by_key
            .get_mut(&(state.rule_id.clone(), state.key.clone()))
        {
            ids.remove(&state.run_id);
        }
    }

    /// Puts an event back to wait (its context could not be fetched).
    pub fn defer(&mut self, pending: &PendingEvent, not_before: Timestamp, why: &str) {
        self.unit.deferrals.push(Deferral {
            seq: pending.seq,
            object: pending.event.object.clone(),
            not_before,
        });
        self.unit.journal.push(record::event_deferred(
            self.settings.now,
            &pending.event,
            not_before,
            pending.deferrals + 1,
            why,
        ));
    }

    /// Takes in what was fetched from the CRM: into memory for evaluation, and into
    /// the unit so the store keeps it.
    pub fn absorb(&mut self, fetched: super::hydrate::Fetched) {
        for owner in &fetched.owners {
            self.owners.insert(
                owner.id.clone(),
                Owner {
                    id: owner.id.clone(),
                    email: owner.email.clone(),
                    name: owner.name.clone(),
                    teams: owner.teams.clone(),
                },
            );
        }
        for sync in &fetched.syncs {
            let set = self.links.entry(sync.object.clone()).or_default();
            set.retain(|o| o.object_type != sync.to_type);
            set.extend(sync.linked.iter().cloned());
            for other in &sync.linked {
                self.links
                    .entry(other.clone())
                    .or_default()
                    .insert(sync.object.clone());
            }
        }
        for write in &fetched.property_writes {
            let props = self.objects.entry(write.object.clone()).or_default();
            let newer = props
                .0
                .get(&write.name)
                .is_none_or(|(_, t)| write.occurred_at >= *t);
            if newer {
                props
                    .0
                    .insert(write.name.clone(), (write.value.clone(), write.occurred_at));
            }
        }
        self.unit.owners.extend(fetched.owners);
        self.unit.association_syncs.extend(fetched.syncs);
        self.unit.property_writes.extend(fetched.property_writes);
        self.unit.marks.extend(fetched.marks);
        self.unit.journal.extend(fetched.journal);
    }

    /// The object of the run a timer wakes, if the run is known.
    pub fn timer_object(&self, timer: &TimerRecord) -> Option<ObjectRef> {
        self.runs
            .get(timer.run_id.as_str())
            .map(|run| run.state.object.clone())
    }

    /// Fires a due timer.
    pub fn fire_timer(&mut self, timer: &TimerRecord) {
        let now = self.settings.now;
        let run_id = timer.run_id.to_string();
        self.cancel_timer_row(&run_id, timer.due_at);
        let Some(run) = self.runs.get(&run_id) else {
            // Its run is gone (should not happen: runs are never deleted).
            return;
        };
        let state = run.state.clone();
        if !state.status.is_active() || state.timer() != Some(timer.due_at) {
            // Stale: the run moved on (the timer's cancellation raced its firing).
            return;
        }
        let overdue = now.as_millis() - timer.due_at.as_millis();
        if overdue > self.settings.catch_up_limit_ms {
            self.unit.journal.push(record::timer_skipped(
                now,
                &state,
                timer,
                overdue,
                self.settings.catch_up_limit_ms,
            ));
            let why = format!(
                "its timer due {} was skipped: overdue by more than the catch-up limit",
                timer.due_at.to_rfc3339()
            );
            let result = cancel_run(&state, &why);
            self.record(result);
            return;
        }
        let Some(rule) = self.rule_for(&state) else {
            let result = cancel_run(&state, "its rule is no longer loaded (removed or disabled)");
            self.record(result);
            return;
        };
        self.unit
            .journal
            .push(record::timer_fired(now, &state, timer));
        let ctx = self.context(&state.object, None, BTreeMap::new(), now);
        let result = advance(
            &rule,
            &state,
            Wake::TimerFired {
                due_at: timer.due_at,
            },
            &ctx,
        );
        self.record(result);
    }

    /// Applies one event: updates its object, offers it to the runs waiting on its
    /// subjects, then evaluates the rules it may trigger.
    pub fn apply_event(&mut self, pending: &PendingEvent) -> Result<(), StoreError> {
        let event = &pending.event;
        let object = event.object.clone();
        let previous = self
            .objects
            .get(&object)
            .map(Props::values)
            .unwrap_or_default();
        self.update_state(event);
        self.unit.applied.push(pending.seq);

        // The subjects: the event's object and, when an engagement is created, the
        // objects it is linked to.
        let mut subjects = vec![(object.clone(), previous.clone())];
        if matches!(event.kind, EventKind::Created) {
            for other in self.links.get(&object).cloned().unwrap_or_default() {
                let props = self
                    .objects
                    .get(&other)
                    .map(Props::values)
                    .unwrap_or_default();
                subjects.push((other, props));
            }
        }
        // Evaluation time: when it happened, but never later than now (clock skew).
        let at = event.occurred_at.min(self.settings.now);

        // 1. Runs waiting for an event on one of the subjects.
        let waiting: Vec<RunState> = subjects
            .iter()
            .flat_map(|(s, _)| self.by_object.get(s).into_iter().flatten())
            .filter_map(|id| self.runs.get(id))
            .map(|run| run.state.clone())
            .filter(RunState::waits_for_events)
            .collect();
        for state in waiting {
            let Some(rule) = self.rule_for(&state) else {
                let result =
                    cancel_run(&state, "its rule is no longer loaded (removed or disabled)");
                self.record(result);
                continue;
            };
            let prev = subjects
                .iter()
                .find(|(s, _)| *s == state.object)
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let ctx = self.context(&state.object, Some(event.clone()), prev, at);
            let result = advance(&rule, &state, Wake::EventArrived, &ctx);
            self.record(result);
        }

        // 2. Triggers.
        let rules = self.rules;
        let candidates: Vec<(&Rule, Subject)> =
            rules.matching(event).map(|c| (c.rule, c.subject)).collect();
        for (rule, subject) in candidates {
            let targets: Vec<(ObjectRef, BTreeMap<String, Json>)> = match subject {
                Subject::EventObject => vec![(object.clone(), previous.clone())],
                Subject::Associated => subjects
                    .iter()
                    .skip(1)
                    .filter(|(s, _)| s.object_type == rule.trigger.object)
                    .cloned()
                    .collect(),
            };
            for (target, prev) in targets {
                let ctx = self.context(&target, Some(event.clone()), prev, at);
                self.trigger(rule, &target, event, &ctx, at)?;
            }
        }
        Ok(())
    }

    fn trigger(
        &mut self,
        rule: &Rule,
        target: &ObjectRef,
        event: &Event,
        ctx: &EvalContext,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let decision = evaluate_trigger(rule, ctx);
        self.unit.journal.push(record::rule_evaluated(
            self.settings.now,
            rule,
            target,
            event,
            &decision,
            self.settings.redactor,
        ));
        let TriggerDecision::Start { key, .. } = decision else {
            return Ok(());
        };
        self.load_key(rule, &key, target)?;
        let active: Vec<RunState> = self
            .by_key
            .get(&(rule.id.clone(), key.clone()))
            .into_iter()
            .flatten()
            .filter_map(|id| self.runs.get(id))
            .map(|run| run.state.clone())
            .collect();
        let active_refs: Vec<&RunState> = active.iter().collect();
        match on_retrigger(rule, &active_refs) {
            RetriggerDecision::Ignore { active } => {
                self.unit.journal.push(record::retrigger_ignored(
                    self.settings.now,
                    rule,
                    target,
                    &active,
                ));
            }
            RetriggerDecision::Start { cancel } => {
                for run_id in cancel {
                    if let Some(state) = self.runs.get(&run_id).map(|r| r.state.clone()) {
                        let result = cancel_run(&state, "restarted by a new trigger");
                        self.record(result);
                    }
                }
                let run_id = RunId::new();
                let state = RunState::new(rule, run_id.to_string(), key, target.clone(), at);
                self.runs.insert(
                    state.run_id.clone(),
                    Run {
                        state: state.clone(),
                        created_at: self.settings.now,
                        parallel: rule.on_retrigger == OnRetrigger::Parallel,
                        changed: None,
                    },
                );
                self.unit
                    .journal
                    .push(record::run_started(self.settings.now, rule, &state, event));
                let result = advance(rule, &state, Wake::Start, ctx);
                self.record(result);
            }
        }
        Ok(())
    }

    /// Makes sure every active run of (rule, key) is in memory.
    fn load_key(&mut self, rule: &Rule, key: &str, target: &ObjectRef) -> Result<(), StoreError> {
        let pair = (rule.id.clone(), key.to_owned());
        if self.keys_loaded.contains(&pair) {
            return Ok(());
        }
        // A rule keyed by its object finds all its runs among the object's.
        let by_object = matches!(rule.key, KeySpec::Object) && self.objects_loaded.contains(target);
        if !by_object {
            for record in (self.key_lookup)(&rule.id, key)? {
                self.add_loaded_run(record)?;
            }
        }
        self.keys_loaded.insert(pair);
        Ok(())
    }

    /// The rule a run follows: the version it started with, if it is still kept;
    /// `None` if the rule was removed or disabled.
    fn rule_for(&self, state: &RunState) -> Option<RuleRef<'a>> {
        let rules: &'a RuleSet = self.rules;
        let current = rules.get(&state.rule_id).filter(|r| r.enabled)?;
        if current.version == state.rule_version {
            return Some(RuleRef::Current(current));
        }
        Some(match (self.pinned)(&state.rule_id, &state.rule_version) {
            Some(pinned) => RuleRef::Pinned(pinned),
            // Not kept (a run from before versions were kept): the loaded version
            // decides, and `advance` fails the run if its position no longer exists.
            None => RuleRef::Current(current),
        })
    }

    /// Keeps the run's new state and turns its decisions into rows.
    fn record(&mut self, result: Advance) {
        let Advance { state, decisions } = result;
        let now = self.settings.now;
        let run_id = state.run_id.clone();
        self.changes += 1;
        let changes = self.changes;
        if let Some(run) = self.runs.get(&run_id) {
            let old = run.state.clone();
            if old.status.is_active() {
                self.unindex(&old);
            }
        }
        if state.status.is_active() {
            self.index(&state);
        }
        let run = self.runs.entry(run_id.clone()).or_insert_with(|| Run {
            state: state.clone(),
            created_at: now,
            parallel: false,
            changed: None,
        });
        run.state = state.clone();
        run.changed = Some(changes);
        // Run ids are ours (`RunId::new` above, or read back from the store).
        let Some(parsed_id) = RunId::parse(&run_id) else {
            return;
        };
        for decision in decisions {
            match decision {
                Decision::ScheduleTimer { at, kind, step } => {
                    let kind = serde_json::to_value(kind)
                        .ok()
                        .and_then(|k| k.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "wait".into());
                    self.cancelled.remove(&(run_id.clone(), at));
                    self.scheduled.insert((run_id.clone(), at, kind.clone()));
                    self.unit
                        .journal
                        .push(record::timer_scheduled(now, &state, at, &kind, &step));
                }
                Decision::CancelTimer { at, step } => {
                    self.cancel_timer_row(&run_id, at);
                    self.unit
                        .journal
                        .push(record::timer_cancelled(now, &state, at, &step));
                }
                Decision::Action(action) => {
                    self.unit
                        .journal
                        .push(record::action_queued(now, &state, &action));
                    self.unit.outbox.push(OutboxJob {
                        idempotency_key: action.idempotency_key,
                        run_id: parsed_id.clone(),
                        action: action.action,
                        object: action.object,
                        params: action.params,
                        created_at: now,
                        next_at: now,
                    });
                }
                Decision::Skipped { action, step, why } => self
                    .unit
                    .journal
                    .push(record::action_skipped(now, &state, &action, &step, &why)),
                Decision::Lookup(lookup) => self
                    .unit
                    .journal
                    .push(record::lookup_waiting(now, &state, &lookup)),
                Decision::Condition { step, trace } => self.unit.journal.push(record::condition(
                    now,
                    &state,
                    &step,
                    &trace,
                    self.settings.redactor,
                )),
                Decision::Completed => {
                    self.unit
                        .journal
                        .push(record::run_ended(now, &state, "completed", None))
                }
                Decision::Failed { why } => {
                    self.unit
                        .journal
                        .push(record::run_ended(now, &state, "failed", Some(&why)))
                }
                Decision::Cancelled { why } => {
                    self.unit
                        .journal
                        .push(record::run_ended(now, &state, "cancelled", Some(&why)))
                }
            }
        }
    }

    fn cancel_timer_row(&mut self, run_id: &str, at: Timestamp) {
        // A timer scheduled in this batch is simply not written; one from the store is
        // deleted.
        let before = self.scheduled.len();
        self.scheduled
            .retain(|(id, due, _)| !(id == run_id && *due == at));
        if self.scheduled.len() == before {
            self.cancelled.insert((run_id.to_owned(), at));
        }
    }

    fn update_state(&mut self, event: &Event) {
        let object = event.object.clone();
        let at = event.occurred_at;
        self.unit.marks.push(ObjectMark::Seen {
            object: object.clone(),
            at,
        });
        let props = self.objects.entry(object.clone()).or_default();
        match &event.kind {
            EventKind::PropertyChange { property, value } => {
                let newer = props.0.get(property).is_none_or(|(_, t)| at >= *t);
                if newer {
                    props.0.insert(property.clone(), (value.clone(), at));
                }
                self.unit.property_writes.push(PropertyWrite {
                    object,
                    name: property.clone(),
                    value: value.clone(),
                    occurred_at: at,
                    event_id: event.id.clone(),
                });
            }
            EventKind::Deleted => self.unit.marks.push(ObjectMark::Deleted { object, at }),
            EventKind::Restored => self.unit.marks.push(ObjectMark::Restored { object, at }),
            EventKind::AssociationChange { to, removed, .. } => {
                for (a, b) in [(&object, to), (to, &object)] {
                    let set = self.links.entry(a.clone()).or_default();
                    if *removed {
                        set.remove(b);
                    } else {
                        set.insert(b.clone());
                    }
                }
                self.unit.associations.push(AssociationWrite {
                    from: object.clone(),
                    to: to.clone(),
                    removed: *removed,
                    at,
                });
                self.unit
                    .journal
                    .push(crate::journal::association_seen_from_other_end(
                        self.settings.now,
                        event,
                        to,
                    ));
            }
            EventKind::Created | EventKind::Merged { .. } => {}
        }
    }

    /// What a rule sees: the object after the event, its owner, its linked objects.
    fn context(
        &self,
        object: &ObjectRef,
        event: Option<Event>,
        previous: BTreeMap<String, Json>,
        now: Timestamp,
    ) -> EvalContext {
        let properties = self
            .objects
            .get(object)
            .map(Props::values)
            .unwrap_or_default();
        let linked = self
            .links
            .get(object)
            .into_iter()
            .flatten()
            .map(|other| ObjectState {
                object: other.clone(),
                properties: self
                    .objects
                    .get(other)
                    .map(Props::values)
                    .unwrap_or_default(),
            });
        EvalContext::gather(
            event,
            ObjectState {
                object: object.clone(),
                properties,
            },
            previous,
            |id| self.owners.get(id).cloned(),
            linked,
            now,
            self.settings.calendar.clone(),
        )
    }

    /// The unit to commit: runs in the order they last changed (so a cancelled run is
    /// written before the run that replaces it), then the net timer changes.
    pub fn finish(mut self) -> UnitOfWork {
        let mut changed: Vec<(u64, RunRecord)> = self
            .runs
            .into_values()
            .filter_map(|run| {
                let order = run.changed?;
                let run_id = RunId::parse(&run.state.run_id)?;
                Some((
                    order,
                    RunRecord {
                        run_id,
                        rule_id: run.state.rule_id.clone(),
                        rule_version: run.state.rule_version.clone(),
                        key: run.state.key.clone(),
                        object: run.state.object.clone(),
                        status: status_name(&run.state).to_owned(),
                        parallel: run.parallel,
                        reason: status_reason(&run.state),
                        state: serde_json::to_value(&run.state).unwrap_or(Json::Null),
                        created_at: run.created_at,
                        updated_at: self.settings.now,
                    },
                ))
            })
            .collect();
        changed.sort_by_key(|(order, _)| *order);
        self.unit.runs = changed.into_iter().map(|(_, record)| record).collect();
        self.unit.timers_cancelled = self
            .cancelled
            .into_iter()
            .filter_map(|(run_id, due_at)| {
                Some(TimerRecord {
                    run_id: RunId::parse(&run_id)?,
                    due_at,
                    kind: String::new(),
                })
            })
            .collect();
        self.unit.timers_scheduled = self
            .scheduled
            .into_iter()
            .filter_map(|(run_id, due_at, kind)| {
                Some(TimerRecord {
                    run_id: RunId::parse(&run_id)?,
                    due_at,
                    kind,
                })
            })
            .collect();
        self.unit
    }
}

/// The owner id as text, whether the CRM sent it as a string or a number.
pub fn owner_id(value: &Json) -> String {
    match value {
        Json::String(s) => s.trim().to_owned(),
        Json::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

pub fn status_name(state: &RunState) -> &'static str {
    use followthrough_rules::RunStatus::*;
    match state.status {
        New => "new",
        Waiting => "waiting",
        Completed => "completed",
        Failed(_) => "failed",
        Cancelled(_) => "cancelled",
    }
}

fn status_reason(state: &RunState) -> Option<String> {
    use followthrough_rules::RunStatus::*;
    match &state.status {
        Failed(why) | Cancelled(why) => Some(why.clone()),
        _ => None,
    }
}
