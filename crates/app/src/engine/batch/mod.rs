//! One batch of the engine, in memory: the durable twin of the rules crate's
//! `Simulator`. It starts from what the store knows of the batch's objects (states,
//! links, active runs, owners), takes the batch's due timers and events in time order,
//! calls the same pure functions (`evaluate_trigger`, `on_retrigger`, `advance`), and
//! collects every effect (property writes, runs, timers, outbox jobs, journal rows)
//! into one [`UnitOfWork`] that the store commits in one transaction.
//!
//! Nothing here does I/O except [`KeyLookup`], which asks the store for the active runs
//! of a (rule, key) the batch has not loaded (only rules keyed by an expression need it).
//!
//! This file walks events and timers through the rules; `objects` keeps the objects in
//! memory and builds what a rule sees; `outcome` turns decisions into rows.

use std::collections::BTreeSet;
use std::sync::Arc;

// foldhash, not the standard SipHash: a batch of 2,000 timers hashes each run id and
// object name several times over, and SipHash on those strings was 5% of firing them.
// Its keys are randomly seeded per process, and the names come from signed webhooks.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use followthrough_core::{Event, EventKind, ObjectRef, RunId, Timestamp};
use followthrough_rules::{
    Calendar, EvalContext, KeySpec, OnRetrigger, Owner, Properties, RetriggerDecision, Rule,
    RuleSet, RunState, Subject, TriggerDecision, Wait, Wake, advance, cancel_run, evaluate_trigger,
    fail_run, on_retrigger,
};
use followthrough_store::{
    CachedOwner, Deferral, ObjectsView, PendingEvent, RunRecord, StoreError, TimerRecord,
    UnitOfWork,
};
use serde_json::Value as Json;

use super::lookup::{LOOKUP_TIMER, LookupOutcome};
use super::record;

mod objects;
mod outcome;

use crate::journal::Redactor;
use objects::Props;
pub use outcome::ChangedRuns;

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
    /// Settled lookups of the runs the batch's `lookup` timers wake, by run id.
    pub lookups: HashMap<String, LookupOutcome>,
    /// States of `view.runs` already read from their JSON (the runs of due timers), by
    /// run id, so that no state is parsed twice.
    pub states: HashMap<String, RunState>,
}

/// Settings that shape decisions.
pub struct Settings<'a> {
    pub now: Timestamp,
    pub calendar: &'a Calendar,
    pub redactor: &'a Redactor,
    /// A timer overdue by more than this is skipped, not fired.
    pub catch_up_limit_ms: i64,
    /// `sourceId`s that mark an event as our own write coming back.
    pub own_source_ids: &'a [String],
}

struct Run {
    state: RunState,
    created_at: Timestamp,
    parallel: bool,
    /// The stored revision it was read at (0 for a run this batch started).
    revision: i64,
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
    lookups: HashMap<String, LookupOutcome>,
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
        // Sized for what is loaded: growing them rehashes every key.
        let runs = loaded.view.runs.len();
        let mut batch = Batch {
            rules,
            pinned,
            key_lookup,
            unit: UnitOfWork {
                applied_at: Some(settings.now),
                ..UnitOfWork::default()
            },
            settings,
            objects: HashMap::with_capacity(loaded.view.objects.len()),
            links: HashMap::new(),
            owners: HashMap::new(),
            runs: HashMap::with_capacity(runs),
            by_object: HashMap::with_capacity(runs),
            by_key: HashMap::with_capacity(runs),
            keys_loaded: HashSet::new(),
            objects_loaded: requested.iter().cloned().collect(),
            scheduled: BTreeSet::new(),
            cancelled: BTreeSet::new(),
            changes: 0,
            lookups: HashMap::new(),
        };
        for state in loaded.view.objects {
            let props = Props::from_store(state.properties);
            batch.objects.insert(state.object, props);
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
        let mut states = loaded.states;
        for record in loaded.view.runs {
            let state = states.remove(record.run_id.as_str());
            batch.add_loaded_run(record, state)?;
        }
        batch.lookups = loaded.lookups;
        Ok(batch)
    }

    fn add_loaded_run(
        &mut self,
        record: RunRecord,
        parsed: Option<RunState>,
    ) -> Result<(), StoreError> {
        let key = record.run_id.to_string();
        if self.runs.contains_key(&key) {
            return Ok(());
        }
        let state = match parsed {
            Some(state) => state,
            None => RunState::from_json(&record.state)
                .map_err(|e| StoreError::Corrupt(format!("run {key}: {e}")))?,
        };
        if state.status.is_active() {
            self.index(&state);
        }
        self.runs.insert(
            key,
            Run {
                state,
                created_at: record.created_at,
                parallel: record.parallel,
                revision: record.revision,
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

    fn unindex(&mut self, object: &ObjectRef, rule_id: &str, key: &str, run_id: &str) {
        if let Some(ids) = self.by_object.get_mut(object) {
            ids.remove(run_id);
        }
        if let Some(ids) = self.by_key.get_mut(&(rule_id.to_owned(), key.to_owned())) {
            ids.remove(run_id);
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
        let lookup = timer.kind == LOOKUP_TIMER;
        // A lookup's wake-up has no time of its own to match: `Wait::Lookup` has none.
        let current = if lookup {
            state.waiting == Some(Wait::Lookup)
        } else {
            state.timer() == Some(timer.due_at)
        };
        if !state.status.is_active() || !current {
            // Stale: the run moved on (the timer's cancellation raced its firing).
            return;
        }
        // A lookup timer with no settled job (a dead letter replayed after the timer was
        // written) does nothing: the job's next outcome wakes the run again.
        let settled = if lookup {
            self.lookups.remove(&run_id)
        } else {
            None
        };
        if lookup && settled.is_none() {
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
        let ctx = self.context(&state.object, None, Properties::default(), now);
        let result = match settled {
            None => {
                let due_at = timer.due_at;
                advance(&rule, &state, Wake::TimerFired { due_at }, &ctx)
            }
            Some(LookupOutcome::Value(value)) => {
                self.unit
                    .journal
                    .push(record::lookup_settled(now, &state, "done"));
                advance(&rule, &state, Wake::LookupResult(value), &ctx)
            }
            Some(LookupOutcome::Failed(why)) => {
                self.unit
                    .journal
                    .push(record::lookup_settled(now, &state, "failed"));
                fail_run(&state, &format!("lookup failed: {why}"))
            }
        };
        self.record(result);
    }

    /// Applies one event: updates its object, offers it to the runs waiting on its
    /// subjects, then evaluates the rules it may trigger.
    /// The `sourceId` that marks `event` as our own write, if it carries one (HubSpot
    /// sends the app id bare or as `<kind>:<id>`).
    fn own_write<'e>(&self, event: &'e followthrough_core::Event) -> Option<&'e str> {
        let source_id = event.source_id.as_deref()?;
        let bare = source_id.rsplit(':').next().unwrap_or(source_id);
        self.settings
            .own_source_ids
            .iter()
            .any(|own| own == source_id || own == bare)
            .then_some(source_id)
    }

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
        if let Some(source_id) = self.own_write(event) {
            // Loop prevention: our own update (a revert, an owner change) must not set
            // off the rule that made it, or another rule that undoes it, forever.
            self.unit
                .journal
                .push(record::echo_ignored(self.settings.now, event, source_id));
            return Ok(());
        }

        // The subjects: the event's object and, when an engagement is created, the
        // objects it is linked to.
        let mut subjects = vec![(object.clone(), previous)];
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
            .filter(|run| run.state.waits_for_events())
            .map(|run| run.state.clone())
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

        // 2. Triggers. One context per object, shared by every rule the event may
        // trigger on it: starting a run changes runs, never what a context holds.
        let rules = self.rules;
        let candidates: Vec<(&Rule, Subject)> =
            rules.matching(event).map(|c| (c.rule, c.subject)).collect();
        let mut contexts: HashMap<ObjectRef, EvalContext> = HashMap::new();
        for (rule, subject) in candidates {
            let targets: Vec<&(ObjectRef, Properties)> = match subject {
                Subject::EventObject => subjects.iter().take(1).collect(),
                Subject::Associated => subjects
                    .iter()
                    .skip(1)
                    .filter(|(s, _)| s.object_type == rule.trigger.object)
                    .collect(),
            };
            for (target, prev) in targets {
                let ctx = contexts
                    .entry(target.clone())
                    .or_insert_with(|| self.context(target, Some(event.clone()), prev.clone(), at));
                self.trigger(rule, target, event, ctx, at)?;
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
        let active: Vec<&RunState> = self
            .by_key
            .get(&(rule.id.clone(), key.clone()))
            .into_iter()
            .flatten()
            .filter_map(|id| self.runs.get(id))
            .map(|run| &run.state)
            .collect();
        match on_retrigger(rule, &active) {
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
                        revision: 0,
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
                self.add_loaded_run(record, None)?;
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
}

/// The owner id as text, whether the CRM sent it as a string or a number.
pub fn owner_id(value: &Json) -> String {
    match value {
        Json::String(s) => s.trim().to_owned(),
        Json::Number(n) => n.to_string(),
        _ => String::new(),
    }
}
