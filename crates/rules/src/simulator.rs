//! An in-memory engine built only on the pure functions, for rule tests and
//! `replay --dry-run`: objects, associations, runs and timers in maps, time simulated.
//!
//! It follows the engine's order for each event: fire the timers due before it, update
//! the object, offer the event to runs waiting in `wait_for` on that object, then match
//! triggers (with `on_retrigger`) and start runs. Actions are recorded, not executed, and
//! do not feed back into object state: the CRM would echo them as new webhooks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use followthrough_core::{Event, EventKind, ObjectRef, Timestamp};
use serde_json::Value as Json;

use crate::context::{EvalContext, ObjectState, Owner, Properties};
use crate::duration::Calendar;
use crate::eval::{
    RetriggerDecision, TriggerDecision, advance, cancel_run, evaluate_trigger, on_retrigger,
};
use crate::ruleset::{RuleSet, Subject};
use crate::run::{ActionDecision, Advance, Decision, RunState, Wake};

/// The property naming an object's owner (HubSpot's).
pub const OWNER_PROPERTY: &str = "hubspot_owner_id";

/// Something the simulated engine did, at simulated time `at`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Taken {
    pub at: Timestamp,
    pub rule_id: String,
    pub run_id: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Action(ActionDecision),
    /// A run or a trigger failed (CEL error, template error, ...).
    Failed {
        object: ObjectRef,
        why: String,
    },
}

/// Counts from [`Simulator::replay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplaySummary {
    pub events: usize,
    pub actions: usize,
    pub failures: usize,
    /// Runs still waiting at the end (their timers lie past `until`).
    pub active_runs: usize,
}

pub struct Simulator {
    rules: Arc<RuleSet>,
    calendar: Calendar,
    now: Timestamp,
    objects: BTreeMap<ObjectRef, ObjectState>,
    owners: BTreeMap<String, Owner>,
    associations: BTreeMap<ObjectRef, BTreeSet<ObjectRef>>,
    /// Active runs only: finished ones are dropped, as a long replay would otherwise
    /// keep every run ever started.
    runs: BTreeMap<String, RunState>,
    /// Active run ids by object, and by (rule, key): what an event or a trigger meets.
    by_object: HashMap<ObjectRef, BTreeSet<String>>,
    by_key: HashMap<(String, String), BTreeSet<String>>,
    /// (due, run id) of every pending timer.
    timers: BTreeSet<(Timestamp, String)>,
    lookups: BTreeMap<String, Json>,
    next_run: u64,
}

impl Simulator {
    pub fn new(rules: RuleSet, calendar: Calendar, start: Timestamp) -> Self {
        Self {
            rules: Arc::new(rules),
            calendar,
            now: start,
            objects: BTreeMap::new(),
            owners: BTreeMap::new(),
            associations: BTreeMap::new(),
            runs: BTreeMap::new(),
            by_object: HashMap::new(),
            by_key: HashMap::new(),
            timers: BTreeSet::new(),
            lookups: BTreeMap::new(),
            next_run: 1,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn set_object(&mut self, state: ObjectState) {
        self.objects.insert(state.object.clone(), state);
    }

    pub fn object(&self, object: &ObjectRef) -> Option<&ObjectState> {
        self.objects.get(object)
    }

    pub fn add_owner(&mut self, owner: Owner) {
        self.owners.insert(owner.id.clone(), owner);
    }

    /// Links two objects both ways, as CRM associations are.
    pub fn associate(&mut self, a: &ObjectRef, b: &ObjectRef) {
        self.associations
            .entry(a.clone())
            .or_default()
            .insert(b.clone());
        self.associations
            .entry(b.clone())
            .or_default()
            .insert(a.clone());
        for object in [a, b] {
            self.objects
                .entry(object.clone())
                .or_insert_with(|| ObjectState::new(object.clone()));
        }
    }

    /// The JSON a `lookup` of `url` returns; lookups of unknown URLs stay waiting.
    pub fn set_lookup_result(&mut self, url: impl Into<String>, result: Json) {
        self.lookups.insert(url.into(), result);
    }

    /// The runs still active (waiting).
    pub fn runs(&self) -> impl Iterator<Item = &RunState> {
        self.runs.values()
    }

    /// Runs recorded events through the rules in event time (a stable sort by
    /// `occurred_at`), handing each action or failure to `emit` as it happens, then fires
    /// the timers due up to `until` (default: the last event's time, so nothing is
    /// invented past the recording). What `followthrough replay --dry-run` does.
    pub fn replay(
        &mut self,
        mut events: Vec<Event>,
        until: Option<Timestamp>,
        emit: &mut dyn FnMut(&Taken),
    ) -> ReplaySummary {
        events.sort_by_key(|e| e.occurred_at);
        let mut summary = ReplaySummary {
            events: events.len(),
            ..ReplaySummary::default()
        };
        let mut count = |taken: Vec<Taken>, summary: &mut ReplaySummary| {
            for t in &taken {
                match t.outcome {
                    Outcome::Action(_) => summary.actions += 1,
                    Outcome::Failed { .. } => summary.failures += 1,
                }
                emit(t);
            }
        };
        let last = events.last().map(|e| e.occurred_at);
        for event in &events {
            let taken = self.apply(event);
            count(taken, &mut summary);
        }
        if let Some(until) = until.or(last) {
            let taken = self.advance_to(until);
            count(taken, &mut summary);
        }
        summary.active_runs = self.runs.len();
        summary
    }

    /// Fires every timer due up to `until`, in time order, then sets the clock there.
    pub fn advance_to(&mut self, until: Timestamp) -> Vec<Taken> {
        let mut taken = Vec::new();
        while let Some((due, run_id)) = self
            .timers
            .first()
            .cloned()
            .filter(|(due, _)| *due <= until)
        {
            self.timers.remove(&(due, run_id.clone()));
            self.now = self.now.max(due);
            let Some(state) = self.runs.get(&run_id).cloned() else {
                continue;
            };
            let Some(rule) = self.rules.get(&state.rule_id) else {
                continue;
            };
            let ctx = self.context(&state.object, None, Properties::default());
            let result = advance(rule, &state, Wake::TimerFired { due_at: due }, &ctx);
            self.record(result, &mut taken);
        }
        self.now = self.now.max(until);
        taken
    }

    /// Applies one event at its `occurred_at` (timers due before it fire first).
    pub fn apply(&mut self, event: &Event) -> Vec<Taken> {
        let mut taken = self.advance_to(event.occurred_at);
        let object = event.object.clone();
        let previous = self
            .objects
            .get(&object)
            .map(|o| o.properties.clone())
            .unwrap_or_default();
        self.update_state(event);

        // Subjects: the event's object, and for the creation of an object, the objects
        // it is associated with (an engagement's contacts and deals).
        let mut subjects = vec![(object.clone(), previous.clone())];
        if matches!(event.kind, EventKind::Created) {
            for other in self.associations.get(&object).cloned().unwrap_or_default() {
                let props = self
                    .objects
                    .get(&other)
                    .map(|o| o.properties.clone())
                    .unwrap_or_default();
                subjects.push((other, props));
            }
        }

        // 1. Runs waiting for an event on one of the subjects.
        let waiting: Vec<RunState> = subjects
            .iter()
            .flat_map(|(s, _)| self.by_object.get(s).into_iter().flatten())
            .filter_map(|id| self.runs.get(id))
            .filter(|r| r.waits_for_events())
            .cloned()
            .collect();
        for state in waiting {
            let Some(rule) = self.rules.get(&state.rule_id) else {
                continue;
            };
            let prev = subjects
                .iter()
                .find(|(s, _)| *s == state.object)
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let ctx = self.context(&state.object, Some(event.clone()), prev);
            let result = advance(rule, &state, Wake::EventArrived, &ctx);
            self.record(result, &mut taken);
        }

        // 2. Triggers.
        let candidates: Vec<(String, Subject, String)> = self
            .rules
            .matching(event)
            .map(|c| (c.rule.id.clone(), c.subject, c.rule.trigger.object.clone()))
            .collect();
        for (rule_id, subject, object_type) in candidates {
            let targets: Vec<(ObjectRef, Properties)> = match subject {
                Subject::EventObject => vec![(object.clone(), previous.clone())],
                Subject::Associated => subjects
                    .iter()
                    .skip(1)
                    .filter(|(s, _)| s.object_type == object_type)
                    .cloned()
                    .collect(),
            };
            for (target, prev) in targets {
                let ctx = self.context(&target, Some(event.clone()), prev);
                self.trigger(&rule_id, &target, &ctx, &mut taken);
            }
        }
        taken
    }

    fn trigger(
        &mut self,
        rule_id: &str,
        target: &ObjectRef,
        ctx: &EvalContext,
        taken: &mut Vec<Taken>,
    ) {
        let rules = Arc::clone(&self.rules);
        let Some(rule) = rules.get(rule_id) else {
            return;
        };
        match evaluate_trigger(rule, ctx) {
            TriggerDecision::Start { key, .. } => {
                let active: Vec<&RunState> = self
                    .by_key
                    .get(&(rule.id.clone(), key.clone()))
                    .into_iter()
                    .flatten()
                    .filter_map(|id| self.runs.get(id))
                    .collect();
                match on_retrigger(rule, &active) {
                    RetriggerDecision::Ignore { .. } => {}
                    RetriggerDecision::Start { cancel } => {
                        for run_id in cancel {
                            if let Some(state) = self.runs.get(&run_id).cloned() {
                                let result = cancel_run(&state, "restarted by a new trigger");
                                self.record(result, taken);
                            }
                        }
                        let run_id = format!("run_{}", self.next_run);
                        self.next_run += 1;
                        let state = RunState::new(rule, run_id, key, target.clone(), self.now);
                        let result = advance(rule, &state, Wake::Start, ctx);
                        self.record(result, taken);
                    }
                }
            }
            TriggerDecision::NoMatch { .. } => {}
            TriggerDecision::Failed { why, .. } => taken.push(Taken {
                at: self.now,
                rule_id: rule.id.clone(),
                run_id: String::new(),
                outcome: Outcome::Failed {
                    object: target.clone(),
                    why,
                },
            }),
        }
    }

    /// Stores the new state and carries out the decisions the way the engine would.
    fn record(&mut self, result: Advance, taken: &mut Vec<Taken>) {
        let Advance { state, decisions } = result;
        let run_id = state.run_id.clone();
        let by_key = (state.rule_id.clone(), state.key.clone());
        if state.status.is_active() {
            self.by_object
                .entry(state.object.clone())
                .or_default()
                .insert(run_id.clone());
            self.by_key
                .entry(by_key)
                .or_default()
                .insert(run_id.clone());
            self.runs.insert(run_id.clone(), state.clone());
        } else {
            self.runs.remove(&run_id);
            if let Some(ids) = self.by_object.get_mut(&state.object) {
                ids.remove(&run_id);
                if ids.is_empty() {
                    self.by_object.remove(&state.object);
                }
            }
            if let Some(ids) = self.by_key.get_mut(&by_key) {
                ids.remove(&run_id);
                if ids.is_empty() {
                    self.by_key.remove(&by_key);
                }
            }
        }
        for decision in decisions {
            match decision {
                Decision::ScheduleTimer { at, .. } => {
                    self.timers.insert((at, run_id.clone()));
                }
                Decision::CancelTimer { at, .. } => {
                    self.timers.remove(&(at, run_id.clone()));
                }
                Decision::Action(action) => taken.push(Taken {
                    at: self.now,
                    rule_id: state.rule_id.clone(),
                    run_id: run_id.clone(),
                    outcome: Outcome::Action(action),
                }),
                Decision::Failed { why } => taken.push(Taken {
                    at: self.now,
                    rule_id: state.rule_id.clone(),
                    run_id: run_id.clone(),
                    outcome: Outcome::Failed {
                        object: state.object.clone(),
                        why,
                    },
                }),
                Decision::Lookup(lookup) => {
                    if let (Some(result), Some(rule)) = (
                        self.lookups.get(&lookup.url).cloned(),
                        self.rules.get(&state.rule_id),
                    ) {
                        let current = self.runs[&run_id].clone();
                        let ctx = self.context(&current.object, None, Properties::default());
                        let next = advance(rule, &current, Wake::LookupResult(result), &ctx);
                        self.record(next, taken);
                    }
                }
                Decision::Skipped { .. }
                | Decision::Condition { .. }
                | Decision::Completed
                | Decision::Cancelled { .. } => {}
            }
        }
    }

    fn update_state(&mut self, event: &Event) {
        let state = self
            .objects
            .entry(event.object.clone())
            .or_insert_with(|| ObjectState::new(event.object.clone()));
        match &event.kind {
            EventKind::PropertyChange { property, value } => {
                Arc::make_mut(&mut state.properties).insert(property.clone(), value.clone());
            }
            EventKind::AssociationChange { to, removed, .. } => {
                let (from, to) = (event.object.clone(), to.clone());
                if *removed {
                    for (a, b) in [(&from, &to), (&to, &from)] {
                        if let Some(set) = self.associations.get_mut(a) {
                            set.remove(b);
                        }
                    }
                } else {
                    self.associate(&from, &to);
                }
            }
            EventKind::Created
            | EventKind::Deleted
            | EventKind::Restored
            | EventKind::Merged { .. } => {}
        }
    }

    /// What the engine gathers before evaluating: the object, its owner, its links.
    fn context(
        &self,
        object: &ObjectRef,
        event: Option<Event>,
        previous: Properties,
    ) -> EvalContext {
        let state = self
            .objects
            .get(object)
            .cloned()
            .unwrap_or_else(|| ObjectState::new(object.clone()));
        let linked = self
            .associations
            .get(object)
            .into_iter()
            .flatten()
            .map(|other| {
                self.objects
                    .get(other)
                    .cloned()
                    .unwrap_or_else(|| ObjectState::new(other.clone()))
            });
        EvalContext::gather(
            event,
            state,
            previous,
            |id| self.owners.get(id).cloned(),
            linked,
            self.now,
            self.calendar.clone(),
        )
    }
}
