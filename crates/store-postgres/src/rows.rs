//! Reading rows back into the store's values: the inbox's event layout, and the parsers
//! every module shares (object names, ids, JSON text).
//!
//! An inbox row keeps in columns what the engine filters or orders on (id, source, dedup
//! key, object, times) and the rest in one JSON text: the kind-specific data, the
//! sender's names and the raw event. The layout is the SQLite backend's, so an export from
//! one store reads in the other.

use followthrough_core::{Event, EventId, EventKind, ObjectRef, RawJson, RunId, Timestamp};
use followthrough_store::{JournalEntry, JournalKind};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{Result, corrupt};

/// The JSON part of a row, borrowed for writing.
#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    kind: &'a EventKind,
    subscription: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    change_source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_id: Option<&'a str>,
    raw: &'a RawJson,
}

/// The JSON part of a row, owned for reading.
#[derive(serde::Deserialize)]
struct OwnedBody {
    #[serde(flatten)]
    kind: EventKind,
    subscription: String,
    change_source: Option<String>,
    source_id: Option<String>,
    raw: RawJson,
}

pub(crate) fn body_json(event: &Event) -> Result<String> {
    serde_json::to_string(&Body {
        kind: &event.kind,
        subscription: &event.subscription,
        change_source: event.change_source.as_deref(),
        source_id: event.source_id.as_deref(),
        raw: &event.raw,
    })
    .map_err(|e| corrupt(format!("event {}: {e}", event.id)))
}

/// The inbox columns [`event`] reads; queries alias the inbox as `i`.
pub(crate) const EVENT_COLUMNS: &str =
    "i.id, i.source, i.dedup_key, i.object, i.occurred_at, i.received_at, i.event_json";

/// Where the object's name is among the [`EVENT_COLUMNS`].
pub(crate) const EVENT_OBJECT_COLUMN: usize = 3;

/// Reads the [`EVENT_COLUMNS`], in that order, starting at column `first`.
pub(crate) fn event(row: &PgRow, first: usize) -> Result<Event> {
    let json: String = row.try_get(first + 6)?;
    let body: OwnedBody =
        serde_json::from_str(&json).map_err(|e| corrupt(format!("inbox event: {e}")))?;
    Ok(Event {
        id: event_id(&row.try_get::<String, _>(first)?)?,
        source: row.try_get(first + 1)?,
        dedup_key: row.try_get(first + 2)?,
        object: object(&row.try_get::<String, _>(first + EVENT_OBJECT_COLUMN)?)?,
        kind: body.kind,
        occurred_at: Timestamp(row.try_get(first + 4)?),
        received_at: Timestamp(row.try_get(first + 5)?),
        subscription: body.subscription,
        change_source: body.change_source,
        source_id: body.source_id,
        raw: body.raw,
    })
}

/// The journal columns [`journal_entry`] reads.
pub(crate) const JOURNAL_COLUMNS: &str = "at, object, kind, summary, detail_json";

pub(crate) fn journal_entry(row: &PgRow) -> Result<JournalEntry> {
    let kind: String = row.try_get(2)?;
    Ok(JournalEntry {
        at: Timestamp(row.try_get(0)?),
        object: row
            .try_get::<Option<String>, _>(1)?
            .map(|name| object(&name))
            .transpose()?,
        kind: JournalKind::parse(&kind).ok_or_else(|| corrupt(format!("journal kind {kind}")))?,
        summary: row.try_get(3)?,
        detail: json(&row.try_get::<String, _>(4)?, "journal detail")?,
    })
}

pub(crate) fn object(text: &str) -> Result<ObjectRef> {
    text.parse::<ObjectRef>()
        .map_err(|e| corrupt(format!("object {text}: {e}")))
}

pub(crate) fn event_id(text: &str) -> Result<EventId> {
    EventId::parse(text).ok_or_else(|| corrupt(format!("event id {text}")))
}

pub(crate) fn run_id(text: &str) -> Result<RunId> {
    RunId::parse(text).ok_or_else(|| corrupt(format!("run id {text}")))
}

pub(crate) fn json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("{what}: {e}")))
}

/// A count or limit as PostgreSQL takes it; anything past `i64::MAX` means "all".
pub(crate) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// An INTEGER column that holds a count (attempts, deferrals).
pub(crate) fn count(value: i32, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("{what} {value}")))
}
