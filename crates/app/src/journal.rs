//! Building journal entries, and keeping personal data out of them.

use std::collections::HashSet;

use followthrough_core::{Event, EventKind, ObjectRef, Timestamp};
use followthrough_store::{JournalEntry, JournalKind};
use serde_json::{Value, json};

pub const REDACTED: &str = "[redacted]";

/// Keeps personal data out of the journal: replaces the values of personal-data
/// properties, and (with `patterns`) scrubs email addresses and phone numbers from every
/// text a journal row carries ([`crate::privacy`]).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    properties: HashSet<String>,
    patterns: bool,
}

impl Redactor {
    pub fn new(properties: impl IntoIterator<Item = String>, patterns: bool) -> Self {
        Self {
            properties: properties
                .into_iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
            patterns,
        }
    }

    /// The last step before journal rows are written: scrubs their summaries and every
    /// string in their details, unless `privacy.redact_patterns` is off.
    pub fn seal(&self, entries: &mut [JournalEntry]) {
        if !self.patterns {
            return;
        }
        for entry in entries {
            if let std::borrow::Cow::Owned(summary) = crate::privacy::scrub_text(&entry.summary) {
                entry.summary = summary;
            }
            crate::privacy::scrub_value(&mut entry.detail);
        }
    }

    /// A property's value as the journal, the trace and the console show it.
    pub fn value(&self, property: &str, value: &Value) -> Value {
        if self.properties.contains(&property.to_ascii_lowercase()) && !value.is_null() {
            return Value::from(REDACTED);
        }
        let mut shown = value.clone();
        if self.patterns {
            crate::privacy::scrub_value(&mut shown);
        }
        shown
    }
}

/// The request-level entry for a webhook; the store completes it with the counts.
pub fn webhook_accepted(
    at: Timestamp,
    source: &str,
    request_id: &str,
    events: usize,
) -> JournalEntry {
    JournalEntry {
        at,
        object: None,
        kind: JournalKind::Webhook,
        summary: format!(
            "{source} webhook accepted, {events} event{}",
            if events == 1 { "" } else { "s" }
        ),
        detail: json!({ "source": source, "request_id": request_id, "outcome": "accepted", "events": events }),
    }
}

pub fn webhook_rejected(
    at: Timestamp,
    source: &str,
    request_id: &str,
    status: u16,
    code: &str,
    message: &str,
) -> JournalEntry {
    JournalEntry {
        at,
        object: None,
        kind: JournalKind::Webhook,
        summary: format!("{source} webhook rejected ({status} {code}): {message}"),
        detail: json!({
            "source": source, "request_id": request_id, "outcome": "rejected",
            "status": status, "code": code, "message": message,
        }),
    }
}

/// The entry recording that an event was applied to its object.
pub fn event_applied(at: Timestamp, event: &Event, redactor: &Redactor) -> JournalEntry {
    let mut detail = json!({
        "event_id": event.id,
        "dedup_key": event.dedup_key,
        "subscription": event.subscription,
        "kind": event.kind.name(),
        "occurred_at": event.occurred_at.to_rfc3339(),
        "change_source": event.change_source,
        "outcome": "applied",
    });
    let summary = match &event.kind {
        EventKind::PropertyChange { property, value } => {
            let shown = redactor.value(property, value);
            detail["property"] = json!(property);
            detail["value"] = shown.clone();
            format!("{property} = {shown}")
        }
        EventKind::Created => "created".to_owned(),
        EventKind::Deleted => "deleted".to_owned(),
        EventKind::Restored => "restored".to_owned(),
        EventKind::Merged { merged_ids, .. } => format!("merged with {}", merged_ids.join(", ")),
        EventKind::AssociationChange {
            to,
            association_type,
            removed,
        } => {
            detail["to"] = json!(to.to_string());
            format!(
                "{} {to} ({association_type})",
                if *removed {
                    "unlinked from"
                } else {
                    "linked to"
                }
            )
        }
    };
    let by = event
        .change_source
        .as_deref()
        .map(|source| format!(" by {source}"))
        .unwrap_or_default();
    JournalEntry {
        at,
        object: Some(event.object.clone()),
        kind: JournalKind::Event,
        summary: format!("applied {}: {summary}{by}", event.subscription),
        detail,
    }
}

/// For association changes, the other end hears of it too.
pub fn association_seen_from_other_end(
    at: Timestamp,
    event: &Event,
    other: &ObjectRef,
) -> JournalEntry {
    JournalEntry {
        at,
        object: Some(other.clone()),
        kind: JournalKind::Event,
        summary: format!(
            "association with {} changed ({})",
            event.object, event.subscription
        ),
        detail: json!({ "event_id": event.id, "from": event.object.to_string() }),
    }
}

/// The journal row of one replayed dead letter, on its object's timeline. `by` says who
/// replayed it (`followthrough dlq replay`, `the admin API (token abc123)`...).
pub fn dead_letter_replayed(
    at: Timestamp,
    letter: &followthrough_store::DeadLetter,
    by: &str,
) -> JournalEntry {
    let job = &letter.job;
    JournalEntry {
        at,
        object: Some(job.object.clone()),
        kind: JournalKind::Action,
        summary: format!(
            "action {} replayed from dead letter {} (by {by})",
            job.action, letter.id
        ),
        detail: json!({
            "key": job.idempotency_key, "run_id": job.run_id, "rule_id": job.rule_id,
            "action": job.action, "dead_letter_id": letter.id, "outcome": "replayed",
            "by": by,
        }),
    }
}
