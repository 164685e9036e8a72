//! Runs of rules a reload removed or disabled: cancelled, with the reason journaled.

use followthrough_rules::{RuleSetDiff, RunState, cancel_run};
use followthrough_store::{RunRecord, StoreError, TimerRecord, UnitOfWork};

use super::{Engine, record};

impl Engine {
    /// Cancels the active runs of rules a reload removed or disabled, journaling why.
    /// Another instance reloading the same rules, or processing one of the runs, may
    /// change a run meanwhile: the unit is then refused and read again.
    pub async fn retire_rules(&self, rule_ids: &[String], why: &str) -> Result<usize, StoreError> {
        let mut attempts = 0;
        loop {
            match self.retire_rules_once(rule_ids, why).await {
                Err(StoreError::Conflict(conflict)) if attempts < 3 => {
                    attempts += 1;
                    tracing::debug!(%conflict, "a retired rule's run changed meanwhile; reading again");
                }
                result => return result,
            }
        }
    }

    async fn retire_rules_once(&self, rule_ids: &[String], why: &str) -> Result<usize, StoreError> {
        let now = self.parts.clock.now();
        let mut unit = UnitOfWork::default();
        for rule_id in rule_ids {
            for record in self.parts.store.active_runs_of_rule(rule_id).await? {
                let Ok(state) = RunState::from_json(&record.state) else {
                    continue;
                };
                let result = cancel_run(&state, why);
                unit.journal
                    .push(record::rule_retired(now, &result.state, why));
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
                    state: result.state.to_json(),
                    updated_at: now,
                    ..record
                });
            }
        }
        let count = unit.runs.len();
        if count > 0 {
            self.parts.redactor.seal(&mut unit.journal);
            let tally = crate::metrics::Tally::of(&unit.journal);
            self.parts.store.apply(unit).await?;
            tally.record();
        }
        Ok(count)
    }

    pub(super) async fn retire(&mut self, diff: &RuleSetDiff) {
        // A run of a retired rule may be in the batch in flight: let it land first.
        if let Err(error) = self.settle().await {
            tracing::error!(%error, "engine commit failed; will retry");
        }
        for (ids, why) in [
            (&diff.removed, "its rule was removed by a reload"),
            (&diff.disabled, "its rule was disabled by a reload"),
        ] {
            if ids.is_empty() {
                continue;
            }
            match self.retire_rules(ids, why).await {
                Ok(count) => {
                    tracing::info!(rules = ?ids, runs = count, "{why}: active runs cancelled")
                }
                Err(error) => {
                    tracing::error!(%error, "cancelling the runs of retired rules failed")
                }
            }
        }
    }
}
