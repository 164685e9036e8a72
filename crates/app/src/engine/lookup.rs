//! The outcomes of `lookup` steps, read before a batch is evaluated.
//!
//! The engine never calls an API: a `lookup` decision queues an outbox job (action
//! `lookup`, key `<run id>:<step>`), the HTTP connector performs the GET, and the worker
//! records the outcome with a `lookup` timer for the run. When that timer comes due the
//! engine reads the job here, since the batch itself does no I/O, and the batch resumes
//! or fails the run with it.

use foldhash::{HashMap, HashMapExt};
use followthrough_rules::{RunState, Wait};
use followthrough_store::{JobStatus, Store, StoreError, TimerRecord};
use serde_json::Value as Json;

/// The kind of the timer that wakes a run when its lookup is settled.
pub const LOOKUP_TIMER: &str = "lookup";

/// A settled lookup, as the run that waits for it takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupOutcome {
    /// The JSON the URL answered.
    Value(Json),
    /// The job is a dead letter; why.
    Failed(String),
}

/// The outbox key of the lookup `state` waits on: while it waits, its cursor is the
/// lookup step, the step the decision named.
pub fn job_key(state: &RunState) -> String {
    format!("{}:{}", state.run_id, state.cursor)
}

/// The settled lookups of the runs `timers` wake, by run id. A run that no longer waits
/// for a lookup, or whose job is pending again (a dead letter replayed), is left out: its
/// timer is stale, and the job's next outcome brings a new one.
pub async fn outcomes(
    store: &dyn Store,
    timers: &[TimerRecord],
    states: &HashMap<String, RunState>,
) -> Result<HashMap<String, LookupOutcome>, StoreError> {
    let mut found = HashMap::new();
    for timer in timers.iter().filter(|t| t.kind == LOOKUP_TIMER) {
        let Some(state) = states
            .get(timer.run_id.as_str())
            .filter(|s| s.status.is_active() && s.waiting == Some(Wait::Lookup))
        else {
            continue;
        };
        let Some(job) = store.job_by_key(&job_key(state)).await? else {
            continue;
        };
        let outcome = match (job.entry.status, job.dead) {
            (JobStatus::Done, _) => {
                let result = job.entry.result.unwrap_or_default();
                LookupOutcome::Value(result["value"].clone())
            }
            (JobStatus::Dead, dead) => LookupOutcome::Failed(
                dead.map(|d| d.message)
                    .unwrap_or_else(|| "the lookup job is a dead letter".into()),
            ),
            (JobStatus::Pending, _) => continue,
        };
        found.insert(state.run_id.clone(), outcome);
    }
    Ok(found)
}
