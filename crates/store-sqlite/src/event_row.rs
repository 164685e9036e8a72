//! How an [`Event`] is laid out in an inbox row: the fields that are columns (id, source,
//! dedup key, object, times) are not repeated in the JSON, which keeps the kind-specific
//! data, the sender's names and the raw event. Rows are about a third smaller that way,
//! and the writer's cost grows with the bytes it writes.

use followthrough_core::{Event, EventId, EventKind, ObjectRef, RawJson, Timestamp};
use followthrough_store::StoreError;
use rusqlite::Row;

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

pub(crate) fn body_json(event: &Event) -> Result<String, StoreError> {
    serde_json::to_string(&Body {
        kind: &event.kind,
        subscription: &event.subscription,
        change_source: event.change_source.as_deref(),
        source_id: event.source_id.as_deref(),
        raw: &event.raw,
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The inbox columns [`from_row`] reads, in order; queries alias the inbox as `i`.
pub(crate) const COLUMNS: &str =
    "i.id, i.source, i.dedup_key, i.object, i.occurred_at, i.received_at, i.event_json";

/// Where the object's name is among the [`COLUMNS`].
pub(crate) const OBJECT_COLUMN: usize = 3;

/// Reads the [`COLUMNS`], in that order, starting at column `first`.
pub(crate) fn from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Result<Event, StoreError>> {
    let id: String = row.get(first)?;
    let source: String = row.get(first + 1)?;
    let dedup_key: String = row.get(first + 2)?;
    let object: String = row.get(first + OBJECT_COLUMN)?;
    let occurred_at: i64 = row.get(first + 4)?;
    let received_at: i64 = row.get(first + 5)?;
    let json: String = row.get(first + 6)?;
    Ok((|| {
        let body: OwnedBody = serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("inbox event: {e}")))?;
        Ok(Event {
            id: EventId::parse(&id).ok_or_else(|| StoreError::Corrupt(format!("event id {id}")))?,
            source,
            dedup_key,
            object: object
                .parse::<ObjectRef>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            kind: body.kind,
            occurred_at: Timestamp(occurred_at),
            received_at: Timestamp(received_at),
            subscription: body.subscription,
            change_source: body.change_source,
            source_id: body.source_id,
            raw: body.raw,
        })
    })())
}
