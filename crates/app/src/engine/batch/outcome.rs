//! Turning a run's new state and decisions into rows: the run itself, its timers
//! (netted within the batch), its outbox jobs and its journal rows; and the unit that
//! collects them.

use followthrough_connectors::connector_for;
use followthrough_core::{RunId, Timestamp};
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
                        state: run.state.to_json(),
                        created_at: run.created_at,
                        updated_at: self.settings.now,
                        revision: run.revision,
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
