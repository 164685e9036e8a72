//! An object's story: its current properties and a timeline of everything that happened
//! to it, oldest first. `followthrough trace` prints it; the API will serve it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use followthrough_core::{EventKind, ObjectRef, Timestamp};
use followthrough_store::{JournalEntry, Store, StoreError};

use crate::journal::{self, Redactor};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Serialize)]
pub struct Trace {
    pub object: TracedObject,
    pub timeline: Vec<TimelineEntry>,
    /// What will happen next: the pending timers of the object's runs, soonest first.
    pub upcoming: Vec<Upcoming>,
}

/// What will happen to the object next: a pending timer of one of its runs, or an
/// action waiting in the outbox.
#[derive(Debug, Serialize)]
pub struct Upcoming {
    pub due_at: String,
    #[serde(skip)]
    pub due_at_ms: Timestamp,
    pub run_id: String,
    pub rule_id: String,
    /// `wait` (the run goes on), `wait_for_timeout` (its `on_timeout` branch runs),
    /// `lookup` (a lookup's answer resumes it), or `action` (an outbox job is due).
    pub kind: String,
    /// For `action`: which one (`create_task`...) and the attempts made so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct TracedObject {
    pub source: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub id: String,
    pub properties: BTreeMap<String, Value>,
    pub first_seen_at: Option<String>,
    pub deleted_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub at: String,
    #[serde(skip)]
    pub at_ms: Timestamp,
    pub kind: String,
    pub summary: String,
    pub detail: Value,
}

/// Builds the trace, or `None` if followthrough never heard of the object.
pub async fn build(
    store: &dyn Store,
    object: &ObjectRef,
    redactor: &Redactor,
) -> Result<Option<Trace>, StoreError> {
    let state = store.object(object).await?;
    let received = store.received_events(object).await?;
    let journal = store.journal_for(object).await?;
    if state.is_none() && received.is_empty() && journal.is_empty() {
        return Ok(None);
    }
    let mut timeline: Vec<TimelineEntry> = Vec::with_capacity(received.len() + journal.len());
    for received in received {
        let event = &received.event;
        let what = match &event.kind {
            EventKind::PropertyChange { property, .. } => {
                format!("{} ({property})", event.subscription)
            }
            _ => event.subscription.clone(),
        };
        let request = received
            .request_id
            .as_deref()
            .map(|id| format!(", request {id}"))
            .unwrap_or_default();
        timeline.push(TimelineEntry {
            at: event.received_at.to_rfc3339(),
            at_ms: event.received_at,
            kind: "webhook".into(),
            summary: format!(
                "received {what} that occurred at {}{request}",
                event.occurred_at
            ),
            detail: json!({
                "event_id": event.id,
                "dedup_key": event.dedup_key,
                "request_id": received.request_id,
                "applied": received.applied_at.is_some(),
            }),
        });
        // Applying an event is recorded by the inbox row itself; render it as the
        // journal entry it stands for.
        if let Some(applied_at) = received.applied_at {
            timeline.push(timeline_entry(journal::event_applied(
                applied_at, event, redactor,
            )));
        }
    }
    timeline.extend(journal.into_iter().map(timeline_entry));
    // Stable: receipts come before what was done with them at the same millisecond.
    timeline.sort_by_key(|entry| entry.at_ms);
    let runs = store.runs_for(object).await?;
    let mut upcoming: Vec<Upcoming> = store
        .timers_for(object)
        .await?
        .into_iter()
        .map(|timer| Upcoming {
            due_at: timer.due_at.to_rfc3339(),
            due_at_ms: timer.due_at,
            rule_id: runs
                .iter()
                .find(|run| run.run_id == timer.run_id)
                .map(|run| run.rule_id.clone())
                .unwrap_or_default(),
            run_id: timer.run_id.to_string(),
            kind: timer.kind,
            action: None,
            attempts: None,
        })
        .collect();
    let pending_jobs = store
        .outbox_for(object)
        .await?
        .into_iter()
        .filter(|entry| entry.status == followthrough_store::JobStatus::Pending);
    upcoming.extend(pending_jobs.map(|entry| Upcoming {
        due_at: entry.job.next_at.to_rfc3339(),
        due_at_ms: entry.job.next_at,
        run_id: entry.job.run_id.to_string(),
        rule_id: entry.job.rule_id.clone(),
        kind: "action".into(),
        action: Some(entry.job.action.clone()),
        attempts: Some(entry.attempts),
    }));
    upcoming.sort_by_key(|next| next.due_at_ms);
    let (properties, first_seen_at, deleted_at) = match &state {
        Some(state) => (
            state
                .values()
                .into_iter()
                .map(|(name, value)| {
                    let shown = redactor.value(&name, &value);
                    (name, shown)
                })
                .collect(),
            Some(state.first_seen_at.to_rfc3339()),
            state.deleted_at.map(Timestamp::to_rfc3339),
        ),
        None => (BTreeMap::new(), None, None),
    };
    Ok(Some(Trace {
        object: TracedObject {
            source: object.source.clone(),
            object_type: object.object_type.clone(),
            id: object.id.clone(),
            properties,
            first_seen_at,
            deleted_at,
        },
        timeline,
        upcoming,
    }))
}

fn timeline_entry(entry: JournalEntry) -> TimelineEntry {
    TimelineEntry {
        at: entry.at.to_rfc3339(),
        at_ms: entry.at,
        kind: entry.kind.as_str().into(),
        summary: entry.summary,
        detail: entry.detail,
    }
}

impl Upcoming {
    /// One line: what will happen.
    pub fn describe(&self) -> String {
        match (self.kind.as_str(), &self.action) {
            ("action", Some(action)) => {
                let tried = match self.attempts {
                    Some(0) | None => String::new(),
                    Some(n) => format!(" (tried {n} time{})", if n == 1 { "" } else { "s" }),
                };
                format!(
                    "action {action} of run {} (rule {}) is due{tried}",
                    self.run_id, self.rule_id
                )
            }
            ("wait_for_timeout", _) => format!(
                "run {} of rule {} gives up waiting (on_timeout)",
                self.run_id, self.rule_id
            ),
            _ => format!("run {} of rule {} wakes up", self.run_id, self.rule_id),
        }
    }
}

impl Trace {
    /// The human-readable form.
    pub fn render(&self) -> String {
        let o = &self.object;
        let mut out = format!("{}:{}:{}\n", o.source, o.object_type, o.id);
        if let Some(first) = &o.first_seen_at {
            let _ = writeln!(out, "  first seen {first}");
        }
        if let Some(deleted) = &o.deleted_at {
            let _ = writeln!(out, "  deleted {deleted}");
        }
        let _ = writeln!(out, "\nproperties:");
        if o.properties.is_empty() {
            let _ = writeln!(out, "  (none yet)");
        }
        let width = o.properties.keys().map(String::len).max().unwrap_or(0);
        for (name, value) in &o.properties {
            let shown = value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            let _ = writeln!(out, "  {name:width$}  {shown}");
        }
        let _ = writeln!(out, "\ntimeline:");
        for entry in &self.timeline {
            let _ = writeln!(out, "  {}  {:<7}  {}", entry.at, entry.kind, entry.summary);
        }
        if !self.upcoming.is_empty() {
            let _ = writeln!(out, "\nnext:");
            for next in &self.upcoming {
                let _ = writeln!(out, "  {}  {}", next.due_at, next.describe());
            }
        }
        out
    }
}
