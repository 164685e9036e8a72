//! The journal rows the engine writes, one per decision, each keyed by the object it is
//! about and carrying the values that decided it. Personal data stays out: guard inputs
//! go through the [`Redactor`], and an action's parameters (which may quote a contact's
//! email in a task body) are not journaled at all, only its kind, step and key.

use followthrough_core::{Event, ObjectRef, Timestamp};
use followthrough_rules::{
    ActionDecision, ConditionTrace, LookupDecision, Rule, RunState, TriggerDecision,
};
use followthrough_store::{JournalEntry, JournalKind, TimerRecord};
use serde_json::{Map, Value, json};

use crate::journal::Redactor;

fn entry(
    at: Timestamp,
    object: &ObjectRef,
    kind: JournalKind,
    summary: String,
    detail: Value,
) -> JournalEntry {
    JournalEntry {
        at,
        object: Some(object.clone()),
        kind,
        summary,
        detail,
    }
}

/// A condition's trace with personal-data inputs redacted (by the path's last segment:
/// `object.email` is redacted when `email` is).
pub fn redacted_trace(trace: &ConditionTrace, redactor: &Redactor) -> Value {
    let inputs: Map<String, Value> = trace
        .inputs
        .iter()
        .map(|(path, value)| {
            let property = path.rsplit('.').next().unwrap_or(path);
            (path.clone(), redactor.value(property, value))
        })
        .collect();
    json!({ "expression": trace.expression, "inputs": inputs, "result": trace.result })
}

/// The values that decided a condition, for the summary: what a person reading the
/// trace asks first. ` [object.lead_score = 12]`, or nothing without inputs.
fn inputs_shown(redacted: &Value) -> String {
    redacted["inputs"]
        .as_object()
        .filter(|inputs| !inputs.is_empty())
        .map(|inputs| {
            let shown: Vec<String> = inputs
                .iter()
                .map(|(path, value)| format!("{path} = {value}"))
                .collect();
            format!(" [{}]", shown.join(", "))
        })
        .unwrap_or_default()
}

pub fn rule_evaluated(
    at: Timestamp,
    rule: &Rule,
    object: &ObjectRef,
    event: &Event,
    decision: &TriggerDecision,
    redactor: &Redactor,
) -> JournalEntry {
    let (outcome, text, guard) = match decision {
        TriggerDecision::Start { key, guard } => ("matched", format!("matched (key {key})"), guard),
        TriggerDecision::NoMatch { reason, guard } => {
            ("no_match", format!("did not match: {reason}"), guard)
        }
        TriggerDecision::Failed { why, guard } => {
            ("failed", format!("could not be evaluated: {why}"), guard)
        }
    };
    let guard = guard.as_ref().map(|g| redacted_trace(g, redactor));
    let inputs = guard.as_ref().map(inputs_shown).unwrap_or_default();
    entry(
        at,
        object,
        JournalKind::Rule,
        format!("rule {} {text}{inputs}", rule.id),
        json!({
            "rule_id": rule.id, "rule_version": rule.version, "event_id": event.id,
            "outcome": outcome, "guard": guard,
        }),
    )
}

pub fn retrigger_ignored(
    at: Timestamp,
    rule: &Rule,
    object: &ObjectRef,
    active: &str,
) -> JournalEntry {
    entry(
        at,
        object,
        JournalKind::Run,
        format!(
            "rule {} not restarted: run {active} is active and the rule says on_retrigger: ignore",
            rule.id
        ),
        json!({ "rule_id": rule.id, "run_id": active, "outcome": "ignored" }),
    )
}

pub fn run_started(at: Timestamp, rule: &Rule, state: &RunState, event: &Event) -> JournalEntry {
    entry(
        at,
        &state.object,
        JournalKind::Run,
        format!(
            "run {} of rule {} started (key {})",
            state.run_id, rule.id, state.key
        ),
        json!({
            "run_id": state.run_id, "rule_id": rule.id, "rule_version": rule.version,
            "key": state.key, "event_id": event.id, "outcome": "started",
        }),
    )
}

pub fn run_ended(
    at: Timestamp,
    state: &RunState,
    outcome: &str,
    why: Option<&str>,
) -> JournalEntry {
    let because = why.map(|w| format!(": {w}")).unwrap_or_default();
    entry(
        at,
        &state.object,
        JournalKind::Run,
        format!(
            "run {} of rule {} {outcome}{because}",
            state.run_id, state.rule_id
        ),
        json!({ "run_id": state.run_id, "rule_id": state.rule_id, "outcome": outcome, "why": why }),
    )
}

pub fn condition(
    at: Timestamp,
    state: &RunState,
    step: &str,
    trace: &ConditionTrace,
    redactor: &Redactor,
) -> JournalEntry {
    let result = match trace.result {
        Some(true) => "true",
        Some(false) => "false",
        None => "an error",
    };
    let condition = redacted_trace(trace, redactor);
    entry(
        at,
        &state.object,
        JournalKind::Run,
        format!(
            "run {} {step}: `{}` is {result}{}",
            state.run_id,
            trace.expression,
            inputs_shown(&condition)
        ),
        json!({
            "run_id": state.run_id, "rule_id": state.rule_id, "step": step,
            "outcome": "condition", "condition": condition,
        }),
    )
}

pub fn timer_scheduled(
    at: Timestamp,
    state: &RunState,
    due: Timestamp,
    kind: &str,
    step: &str,
) -> JournalEntry {
    entry(
        at,
        &state.object,
        JournalKind::Timer,
        format!(
            "timer for run {} {step} scheduled at {}",
            state.run_id,
            due.to_rfc3339()
        ),
        json!({ "run_id": state.run_id, "rule_id": state.rule_id, "due_at": due.to_rfc3339(), "kind": kind, "step": step, "outcome": "scheduled" }),
    )
}

pub fn timer_cancelled(
    at: Timestamp,
    state: &RunState,
    due: Timestamp,
    step: &str,
) -> JournalEntry {
    entry(
        at,
        &state.object,
        JournalKind::Timer,
        format!(
            "timer for run {} {step} due {} cancelled",
            state.run_id,
            due.to_rfc3339()
        ),
        json!({ "run_id": state.run_id, "rule_id": state.rule_id, "due_at": due.to_rfc3339(), "step": step, "outcome": "cancelled" }),
    )
}

pub fn timer_fired(at: Timestamp, state: &RunState, timer: &TimerRecord) -> JournalEntry {
    let due_at = timer.due_at.to_rfc3339();
    entry(
        at,
        &state.object,
        JournalKind::Timer,
        format!("timer for run {} due {due_at} fired", state.run_id),
        json!({
            "run_id": state.run_id, "rule_id": state.rule_id, "due_at": due_at,
            "kind": timer.kind, "outcome": "fired", "late_ms": at.as_millis() - timer.due_at.as_millis(),
        }),
    )
}

pub fn timer_skipped(
    at: Timestamp,
    state: &RunState,
    timer: &TimerRecord,
    overdue_ms: i64,
    limit_ms: i64,
) -> JournalEntry {
    entry(
        at,
        &state.object,
        JournalKind::Timer,
        format!(
            "timer for run {} due {} skipped: overdue by {} h, more than the catch-up limit of {} h",
            state.run_id,
            timer.due_at.to_rfc3339(),
            overdue_ms / 3_600_000,
            limit_ms / 3_600_000
        ),
        json!({
            "run_id": state.run_id, "rule_id": state.rule_id, "due_at": timer.due_at.to_rfc3339(),
            "kind": timer.kind, "outcome": "skipped", "overdue_ms": overdue_ms, "catch_up_limit_ms": limit_ms,
        }),
    )
}

pub fn action_queued(at: Timestamp, state: &RunState, action: &ActionDecision) -> JournalEntry {
    entry(
        at,
        &state.object,
        JournalKind::Action,
        format!(
            "{} queued by run {} {}",
            action.action, state.run_id, action.step
        ),
        json!({
            "run_id": state.run_id, "rule_id": state.rule_id, "action": action.action,
            "step": action.step, "idempotency_key": action.idempotency_key,
            "target": action.object.to_string(), "outcome": "queued",
        }),
    )
}

pub fn action_skipped(
    at: Timestamp,
    state: &RunState,
    action: &str,
    step: &str,
    why: &str,
) -> JournalEntry {
    entry(
        at,
        &state.object,
        JournalKind::Action,
        format!("{action} not taken by run {} {step}: {why}", state.run_id),
        json!({ "run_id": state.run_id, "rule_id": state.rule_id, "action": action, "step": step, "outcome": "skipped", "why": why }),
    )
}

pub fn lookup_waiting(at: Timestamp, state: &RunState, lookup: &LookupDecision) -> JournalEntry {
    entry(
        at,
        &state.object,
        JournalKind::Run,
        format!(
            "run {} {} waits for a lookup (queued to the outbox)",
            state.run_id, lookup.step
        ),
        json!({ "run_id": state.run_id, "rule_id": state.rule_id, "step": lookup.step, "outcome": "lookup", "into": lookup.into }),
    )
}

/// A run's lookup job settled (`done` or `failed`); the value is not journaled, as it
/// may be personal data the redactor does not know by name.
pub fn lookup_settled(at: Timestamp, state: &RunState, outcome: &str) -> JournalEntry {
    let step = state.cursor.to_string();
    entry(
        at,
        &state.object,
        JournalKind::Run,
        format!("run {} {step}: lookup {outcome}", state.run_id),
        json!({ "run_id": state.run_id, "rule_id": state.rule_id, "step": step, "outcome": format!("lookup_{outcome}") }),
    )
}

pub fn event_deferred(
    at: Timestamp,
    event: &Event,
    not_before: Timestamp,
    deferrals: u32,
    why: &str,
) -> JournalEntry {
    entry(
        at,
        &event.object,
        JournalKind::Event,
        format!(
            "event {} waits until {}: its rule context could not be fetched ({why})",
            event.id,
            not_before.to_rfc3339()
        ),
        json!({ "event_id": event.id, "outcome": "deferred", "not_before": not_before.to_rfc3339(), "deferrals": deferrals, "why": why }),
    )
}

pub fn context_fetched(at: Timestamp, object: &ObjectRef, what: &str) -> JournalEntry {
    entry(
        at,
        object,
        JournalKind::Event,
        format!("fetched {what} from the CRM"),
        json!({ "outcome": "fetched", "what": what }),
    )
}

pub fn rule_retired(at: Timestamp, state: &RunState, why: &str) -> JournalEntry {
    run_ended(at, state, "cancelled", Some(why))
}

/// An event that is our own write coming back: state updated, no rule run.
pub fn echo_ignored(at: Timestamp, event: &Event, source_id: &str) -> JournalEntry {
    JournalEntry {
        at,
        object: Some(event.object.clone()),
        kind: JournalKind::Event,
        summary: format!(
            "echo ignored: {} was made by followthrough itself (sourceId {source_id}); state updated, no rule evaluated",
            event.subscription
        ),
        detail: json!({ "event_id": event.id, "outcome": "echo_ignored", "source_id": source_id, "change_source": event.change_source }),
    }
}
