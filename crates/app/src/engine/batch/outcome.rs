//! Turning a run's new state and decisions into rows: the run itself, its timers
//! (netted within the batch), its outbox jobs and its journal rows; and the unit that
//! collects them.

use followthrough_connectors::connector_for;
use followthrough_core::{ObjectRef, RunId, Timestamp};
use followthrough_rules::{Advance, Decision, RunState};
use followthrough_store::{OutboxJob, RunRecord, TimerRecord, UnitOfWork};
use serde_json::json;

use super::super::record;
use super::{Batch, Run};

impl Batch<'_> {
    /// Keeps the run's new state and turns its decisions into rows.
    pub(super) fn record(&mut self, result: Advance) {
        let Advance { state, decisions } = result;
        let now = self.settings.now;
        let run_id = state.run_id.clone();
        self.changes += 1;
        let changes = self.changes;
        if let Some(run) = self.runs.get(&run_id)
            && run.state.status.is_active()
        {
            let (object, rule_id, key) = (
                run.state.object.clone(),
                run.state.rule_id.clone(),
                run.state.key.clone(),
            );
            self.unindex(&object, &rule_id, &key, &run_id);
        }
        if state.status.is_active() {
            self.index(&state);
        }
        // Run ids are ours (`RunId::new` above, or read back from the store).
        if let Some(parsed_id) = RunId::parse(&run_id) {
            self.decided(&state, &parsed_id, decisions);
        }
        // Moved in last: the decisions' rows above are built from it.
        match self.runs.get_mut(&run_id) {
            Some(run) => {
                run.state = state;
                run.changed = Some(changes);
            }
            None => {
                self.runs.insert(
                    run_id,
                    Run {
                        state,
                        created_at: now,
                        parallel: false,
                        revision: 0,
                        changed: Some(changes),
                    },
                );
            }
        }
    }

    /// Turns a run's decisions into timer changes, outbox jobs and journal rows.
    fn decided(&mut self, state: &RunState, parsed_id: &RunId, decisions: Vec<Decision>) {
        let now = self.settings.now;
        let run_id = &state.run_id;
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
                        .push(record::timer_scheduled(now, state, at, &kind, &step));
                }
                Decision::CancelTimer { at, step } => {
                    self.cancel_timer_row(run_id, at);
                    self.unit
                        .journal
                        .push(record::timer_cancelled(now, state, at, &step));
                }
                Decision::Action(action) => {
                    self.unit
                        .journal
                        .push(record::action_queued(now, state, &action));
                    let connector = connector_for(&action.action, &action.object);
                    self.unit.outbox.push(OutboxJob {
                        idempotency_key: action.idempotency_key,
                        run_id: parsed_id.clone(),
                        rule_id: state.rule_id.clone(),
                        connector: connector.to_owned(),
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
                    .push(record::action_skipped(now, state, &action, &step, &why)),
                Decision::Lookup(lookup) => {
                    self.unit
                        .journal
                        .push(record::lookup_waiting(now, state, &lookup));
                    // The outbox performs it (the engine never calls an API); its outcome
                    // comes back as a `lookup` timer. The key is the one `lookup::job_key`
                    // finds again from the waiting run's cursor.
                    self.unit.outbox.push(OutboxJob {
                        idempotency_key: format!("{run_id}:{}", lookup.step),
                        run_id: parsed_id.clone(),
                        rule_id: state.rule_id.clone(),
                        connector: connector_for("lookup", &state.object).to_owned(),
                        action: "lookup".into(),
                        object: state.object.clone(),
                        params: json!({
                            "url": lookup.url,
                            "headers": lookup.headers,
                            "into": lookup.into,
                        }),
                        created_at: now,
                        next_at: now,
                    });
                }
                Decision::Condition { step, trace } => self.unit.journal.push(record::condition(
                    now,
                    state,
                    &step,
                    &trace,
                    self.settings.redactor,
                )),
                Decision::Completed => {
                    self.unit
                        .journal
                        .push(record::run_ended(now, state, "completed", None))
                }
                Decision::Failed { why } => {
                    self.unit
                        .journal
                        .push(record::run_ended(now, state, "failed", Some(&why)))
                }
                Decision::Cancelled { why } => {
                    self.unit
                        .journal
                        .push(record::run_ended(now, state, "cancelled", Some(&why)))
                }
            }
        }
    }

    pub(super) fn cancel_timer_row(&mut self, run_id: &str, at: Timestamp) {
        // A timer scheduled in this batch is simply not written; one from the store is
        // deleted.
        let scheduled_here: Vec<(String, Timestamp, String)> = self
            .scheduled
            .range((run_id.to_owned(), at, String::new())..)
            .take_while(|(id, due, _)| id == run_id && *due == at)
            .cloned()
            .collect();
        for timer in &scheduled_here {
            self.scheduled.remove(timer);
        }
        if scheduled_here.is_empty() {
            self.cancelled.insert((run_id.to_owned(), at));
        }
    }

    /// The unit to commit, with the net timer changes, and the runs it changed, which
    /// become its rows when it is committed (see [`ChangedRuns`]).
    pub fn finish(mut self) -> (UnitOfWork, ChangedRuns) {
        let mut changed: Vec<(u64, Run)> = self
            .runs
            .into_values()
            .filter_map(|run| Some((run.changed?, run)))
            .collect();
        changed.sort_unstable_by_key(|(order, _)| *order);
        let runs = ChangedRuns {
            runs: changed.into_iter().map(|(_, run)| run).collect(),
            now: self.settings.now,
        };
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
        (self.unit, runs)
    }
}

/// The runs a batch changed, in the order they last changed (so a cancelled run is
/// written before the run that replaces it). They become rows, each state serialized,
/// only when the unit is committed: on the commit's task, not on the engine's one
/// sequence, where serializing them was a fifth of evaluating a batch of timers.
pub struct ChangedRuns {
    runs: Vec<Run>,
    now: Timestamp,
}

impl ChangedRuns {
    /// The objects the runs are about.
    pub fn objects(&self) -> impl Iterator<Item = &ObjectRef> {
        self.runs.iter().map(|run| &run.state.object)
    }

    /// Whether a run is keyed by something other than its object (a rule keyed by an
    /// expression), so that another batch may reach the same key through another object.
    pub fn keyed_elsewhere(&self) -> bool {
        self.runs
            .iter()
            .any(|run| !run.state.object.is_named(&run.state.key))
    }

    /// The rows to write, `updated_at` the batch's time.
    pub fn into_records(self) -> Vec<RunRecord> {
        let now = self.now;
        self.runs
            .into_iter()
            .filter_map(|run| {
                let run_id = RunId::parse(&run.state.run_id)?;
                let status = status_name(&run.state).to_owned();
                let reason = status_reason(&run.state);
                let state = run.state.to_json();
                let RunState {
                    rule_id,
                    rule_version,
                    key,
                    object,
                    ..
                } = run.state;
                Some(RunRecord {
                    run_id,
                    rule_id,
                    rule_version,
                    key,
                    object,
                    status,
                    parallel: run.parallel,
                    reason,
                    state,
                    created_at: run.created_at,
                    updated_at: now,
                    revision: run.revision,
                })
            })
            .collect()
    }
}

fn status_name(state: &RunState) -> &'static str {
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
