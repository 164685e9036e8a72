//! One attempt at one claimed job: resolve what only the worker can, wait for the rate
//! limit, call the connector, and turn its [`Outcome`] into what the store records.

use std::time::Instant;

use followthrough_connectors::retry::{GiveUp, Next};
use followthrough_connectors::{ActionJob, Failure, Outcome, Repeat};
use followthrough_core::Timestamp;
use followthrough_store::{
    AttemptRecord, AttemptResult, ClaimedJob, DeadLetterReason, StoreError, TimerRecord,
};

use super::record::{self, Attempted};
use super::{Lane, OutboxParts};

/// Performs one claimed job and records the outcome (if the lease still holds).
pub(super) async fn perform(
    parts: &OutboxParts,
    lane: &Lane,
    claimed: ClaimedJob,
) -> Result<(), StoreError> {
    let mut job = ActionJob {
        key: claimed.job.idempotency_key.clone(),
        action: claimed.job.action.clone(),
        object: claimed.job.object.clone(),
        params: claimed.job.params.clone(),
        attempt: claimed.attempt,
        after_indeterminate: claimed.after_indeterminate,
    };
    let connector = &lane.connector;

    // A call that may already have happened and cannot be checked is never repeated.
    if job.after_indeterminate && connector.on_indeterminate(&job) == Repeat::Never {
        let reason = DeadLetterReason {
            kind: "indeterminate".into(),
            message: format!(
                "an earlier attempt may have taken effect and {} cannot check it: parked for a person",
                connector.name()
            ),
            last_status: None,
            last_response: None,
        };
        return finish(parts, &claimed, AttemptResult::Dead(reason), Vec::new()).await;
    }
    if let Err(failure) = super::assign::resolve(parts, lane, &mut job).await? {
        // The CRM answered the load search with something worth retrying (a 429, a
        // 503): the job waits like any retry; anything else is the job's fault.
        let now = parts.clock.now();
        if failure.status.is_some_and(|s| s == 429 || s >= 500) {
            let result = decide(parts, lane, &claimed, &job, &Outcome::Retry(failure), now);
            return finish(parts, &claimed, result, Vec::new()).await;
        }
        let reason = dead_reason("terminal", &failure);
        let journal = vec![record::dead_lettered(now, &claimed, &reason)];
        return finish(parts, &claimed, AttemptResult::Dead(reason), journal).await;
    }

    let waited = parts
        .limiter
        .acquire(
            &connector.bucket(&job),
            lane.pace.limit,
            connector.max_requests(&job),
        )
        .await;
    // The rate limit can hold a job long enough to eat its lease; starting a call that
    // could outlive the lease would let another worker repeat it. Give it back instead.
    let now = parts.clock.now();
    if now.saturating_add(lane.pace.timeout.saturating_mul(2)) > claimed.lease_until {
        let retry = AttemptResult::Retry {
            next_at: now,
            indeterminate: claimed.after_indeterminate,
        };
        return finish(parts, &claimed, retry, Vec::new()).await;
    }

    let started = Instant::now();
    let outcome = connector.execute(&job).await;
    let latency = started.elapsed();
    let now = parts.clock.now();

    let unwell = matches!(&outcome, Outcome::Indeterminate(_))
        || matches!(&outcome, Outcome::Retry(f) if f.status != Some(429));
    let transition = lane.circuit().record(unwell, now);

    let result = decide(parts, lane, &claimed, &job, &outcome, now);
    let attempted = Attempted {
        claimed: &claimed,
        connector: connector.name(),
        outcome: &outcome,
        latency,
        waited,
        result: &result,
    };
    let mut journal = vec![record::attempt(now, &attempted)];
    match &result {
        AttemptResult::Done { .. } => journal.push(record::done(now, &attempted)),
        AttemptResult::Dead(reason) => journal.push(record::dead_lettered(now, &claimed, reason)),
        AttemptResult::Retry { .. } => {}
    }
    if let Some(transition) = transition {
        journal.push(record::circuit(now, connector.name(), &transition));
    }
    finish(parts, &claimed, result, journal).await
}

/// What the store should do with the job after this outcome.
fn decide(
    parts: &OutboxParts,
    lane: &Lane,
    claimed: &ClaimedJob,
    job: &ActionJob,
    outcome: &Outcome,
    now: Timestamp,
) -> AttemptResult {
    let retry = |failure: &Failure, indeterminate: bool| match parts.policy.next(
        claimed.attempt,
        failure.retry_after,
        claimed.job.created_at,
        now,
    ) {
        Next::RetryAt(next_at) => AttemptResult::Retry {
            next_at,
            indeterminate,
        },
        Next::GiveUp(why) => {
            let kind = if indeterminate {
                "indeterminate"
            } else {
                "exhausted"
            };
            let mut reason = dead_reason(kind, failure);
            reason.message = format!(
                "gave up after {} attempt(s){}: {}",
                claimed.attempt,
                match why {
                    GiveUp::Attempts => "",
                    GiveUp::Age => " (the job is too old to retry)",
                },
                failure.message
            );
            AttemptResult::Dead(reason)
        }
    };
    match outcome {
        Outcome::Success(success) => AttemptResult::Done {
            result: success.result.clone(),
        },
        // Once an attempt may have taken effect, every later one checks first until one
        // succeeds: a check that was itself refused (a 429 on the search) proves nothing.
        Outcome::Retry(failure) => retry(failure, claimed.after_indeterminate),
        Outcome::Terminal(failure) => AttemptResult::Dead(dead_reason("terminal", failure)),
        Outcome::Indeterminate(failure) => match lane.connector.on_indeterminate(job) {
            Repeat::Safe | Repeat::CheckFirst => retry(failure, true),
            Repeat::Never => {
                let mut reason = dead_reason("indeterminate", failure);
                reason.message = format!(
                    "{}: it may have taken effect and {} cannot check it, so it is parked for a person",
                    failure.message,
                    lane.connector.name()
                );
                AttemptResult::Dead(reason)
            }
        },
    }
}

fn dead_reason(kind: &str, failure: &Failure) -> DeadLetterReason {
    DeadLetterReason {
        kind: kind.to_owned(),
        message: record::scrub(&failure.message),
        last_status: failure.status,
        last_response: failure.response.as_deref().map(record::scrub),
    }
}

async fn finish(
    parts: &OutboxParts,
    claimed: &ClaimedJob,
    result: AttemptResult,
    journal: Vec<followthrough_store::JournalEntry>,
) -> Result<(), StoreError> {
    let now = parts.clock.now();
    // The run waiting for a lookup wakes through a timer recorded with the outcome: the
    // engine then reads the outcome in order with the object's other events and timers.
    // A retry wakes nothing; the run waits on.
    let settled = matches!(result, AttemptResult::Done { .. } | AttemptResult::Dead(_));
    let wakes_run = claimed.job.action == "lookup" && settled;
    let timers = if wakes_run {
        vec![TimerRecord {
            run_id: claimed.job.run_id.clone(),
            due_at: now,
            kind: "lookup".into(),
        }]
    } else {
        Vec::new()
    };
    let mut journal = journal;
    parts.redactor.seal(&mut journal);
    let tally = crate::metrics::Tally::of(&journal);
    let recorded = parts
        .store
        .record_attempt(AttemptRecord {
            seq: claimed.seq,
            lease: claimed.lease.clone(),
            at: now,
            result,
            journal,
            timers,
        })
        .await?;
    if recorded {
        tally.record();
    }
    if recorded && wakes_run {
        parts.engine_wake.notify_one();
    }
    if !recorded {
        tracing::warn!(
            key = %claimed.job.idempotency_key,
            "outbox: the lease was lost before the outcome was recorded; another worker owns the job"
        );
    }
    Ok(())
}
