//! The journal rows the outbox writes: each attempt (status, latency, attempt number,
//! classification), done, dead-lettered, circuit changes.
//!
//! What an API says back can quote the record it refused (an email address in a
//! validation message), so every text from outside goes through [`scrub`].

use std::time::Duration;

use followthrough_connectors::Outcome;
use followthrough_connectors::circuit::Transition;
use followthrough_core::Timestamp;
use followthrough_store::{AttemptResult, ClaimedJob, DeadLetterReason, JournalEntry, JournalKind};
use serde_json::json;

/// One attempt, as the journal tells it.
pub(super) struct Attempted<'a> {
    pub claimed: &'a ClaimedJob,
    pub connector: &'a str,
    pub outcome: &'a Outcome,
    pub latency: Duration,
    /// How long the rate limiter held the call.
    pub waited: Duration,
    pub result: &'a AttemptResult,
}

pub(super) fn attempt(at: Timestamp, a: &Attempted<'_>) -> JournalEntry {
    let job = &a.claimed.job;
    let status = a
        .outcome
        .status()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let (message, retry_after_ms) = match a.outcome {
        Outcome::Success(success) => (success.summary.clone(), None),
        Outcome::Retry(f) | Outcome::Terminal(f) | Outcome::Indeterminate(f) => (
            scrub(&f.message),
            f.retry_after.map(|d| d.as_millis() as u64),
        ),
    };
    let next_at = match a.result {
        AttemptResult::Retry { next_at, .. } => Some(*next_at),
        _ => None,
    };
    let then = next_at
        .map(|t| format!(", retry at {}", t.to_rfc3339()))
        .unwrap_or_default();
    JournalEntry {
        at,
        object: Some(job.object.clone()),
        kind: JournalKind::Attempt,
        summary: format!(
            "attempt {} of {} via {}: {}{status} in {} ms{then}",
            a.claimed.attempt,
            job.action,
            a.connector,
            a.outcome.class(),
            a.latency.as_millis()
        ),
        detail: json!({
            "key": job.idempotency_key,
            "run_id": job.run_id,
            "rule_id": job.rule_id,
            "action": job.action,
            "connector": a.connector,
            "attempt": a.claimed.attempt,
            "checked_first": a.claimed.after_indeterminate,
            "outcome": a.outcome.class(),
            "class": a.outcome.class(),
            "status": a.outcome.status(),
            "latency_ms": a.latency.as_millis() as u64,
            "rate_limited_ms": a.waited.as_millis() as u64,
            "retry_after_ms": retry_after_ms,
            "next_at": next_at.map(|t| t.to_rfc3339()),
            "message": message,
        }),
    }
}

pub(super) fn done(at: Timestamp, a: &Attempted<'_>) -> JournalEntry {
    let job = &a.claimed.job;
    let what = match a.outcome {
        Outcome::Success(success) if !success.summary.is_empty() => success.summary.clone(),
        _ => "done".to_owned(),
    };
    let result = match a.result {
        // A lookup's answer is data about a person, not ids of what was created: it
        // stays with the job, out of the journal.
        AttemptResult::Done { .. } if job.action == "lookup" => serde_json::Value::Null,
        AttemptResult::Done { result } => result.clone(),
        _ => serde_json::Value::Null,
    };
    JournalEntry {
        at,
        object: Some(job.object.clone()),
        kind: JournalKind::Action,
        summary: format!("action {} done: {what}", job.action),
        detail: json!({
            "key": job.idempotency_key, "run_id": job.run_id, "rule_id": job.rule_id,
            "action": job.action, "outcome": "done", "attempts": a.claimed.attempt, "result": result,
        }),
    }
}

pub(super) fn dead_lettered(
    at: Timestamp,
    claimed: &ClaimedJob,
    reason: &DeadLetterReason,
) -> JournalEntry {
    let job = &claimed.job;
    JournalEntry {
        at,
        object: Some(job.object.clone()),
        kind: JournalKind::Action,
        summary: format!(
            "action {} dead-lettered ({}): {}",
            job.action, reason.kind, reason.message
        ),
        detail: json!({
            "key": job.idempotency_key, "run_id": job.run_id, "rule_id": job.rule_id,
            "action": job.action, "outcome": "dead_letter", "attempts": claimed.attempt,
            "reason": reason,
        }),
    }
}

pub(super) fn circuit(at: Timestamp, connector: &str, transition: &Transition) -> JournalEntry {
    JournalEntry {
        at,
        object: None,
        kind: JournalKind::Attempt,
        summary: format!(
            "circuit of {connector} {} (was {}, {} consecutive failure(s))",
            transition.to.name(),
            transition.from.name(),
            transition.failures
        ),
        detail: json!({
            "connector": connector, "outcome": "circuit", "from": transition.from.name(),
            "to": transition.to.name(), "failures": transition.failures,
        }),
    }
}

/// An API's error message as the journal keeps it: emails and phone numbers scrubbed
/// (an error may quote back the task body we sent), cut to 500 characters.
pub fn scrub(text: &str) -> String {
    crate::privacy::scrub_text(text).chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn emails_and_phone_numbers_do_not_reach_the_journal() {
        assert_eq!(
            scrub("Property values were not valid: \"ada@example.com\" is taken"),
            "Property values were not valid: \"[email]\" is taken"
        );
        assert_eq!(scrub("call +1 (555) 010-9999 now"), "call [phone] now");
        assert_eq!(
            scrub("error 404 after 3 tries, id 12345"),
            "error 404 after 3 tries, id 12345"
        );
        assert_eq!(scrub("a@b"), "a@b");
        assert_eq!(scrub(&"x".repeat(900)).len(), 500);
    }
}
