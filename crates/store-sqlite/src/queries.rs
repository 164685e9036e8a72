//! The SQL behind each [`followthrough_store::Store`] method, as plain functions over a
//! connection, so the writer thread and the read pool share them.

use std::collections::BTreeMap;

use followthrough_core::{Event, EventId, ObjectRef, Timestamp};
use followthrough_store::{
    AppendOutcome, HeldBack, JournalEntry, JournalKind, ObjectMark, ObjectState, PendingEvent,
    PropertyHistoryEntry, PropertyState, PropertyWrite, ReceivedEvent, StoreError, UnitOfWork,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use crate::trace_index::{self, Source};
use crate::{event_row, many, sql_error};

/// An inbox row with its JSON already serialized, so the writer thread only binds and
/// inserts (the writer is the one thread every write waits for).
pub(crate) struct InboxRow {
    id: String,
    source: String,
    dedup_key: String,
    object: String,
    kind: &'static str,
    occurred_at: i64,
    received_at: i64,
    json: String,
}

impl InboxRow {
    pub(crate) fn prepare(events: &[Event]) -> Result<Vec<InboxRow>, StoreError> {
        events
            .iter()
            .map(|event| {
                Ok(InboxRow {
                    id: event.id.to_string(),
                    source: event.source.clone(),
                    dedup_key: event.dedup_key.clone(),
                    object: event.object.to_string(),
                    kind: event.kind.name(),
                    occurred_at: event.occurred_at.as_millis(),
                    received_at: event.received_at.as_millis(),
                    json: event_row::body_json(event)?,
                })
            })
            .collect()
    }
}

pub(crate) fn append_inbox(
    connection: &Connection,
    rows: &[InboxRow],
    mut journal: JournalEntry,
) -> Result<AppendOutcome, StoreError> {
    let request_id = journal
        .detail
        .get("request_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // The inbox's seq is AUTOINCREMENT: the new rows are those past the newest before.
    let newest_before: i64 = connection
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM inbox")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(sql_error)?;
    // A duplicate (same source and dedup key, here or earlier) is left out.
    let insert = many::Shape {
        head: "INSERT INTO inbox (id, source, dedup_key, object, kind, occurred_at, received_at,
                                  request_id, event_json) VALUES ",
        row: "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tail: " ON CONFLICT (source, dedup_key) DO NOTHING",
    };
    let inserted = many::execute(connection, &insert, rows, |params, row| {
        params
            .push(&row.id)?
            .push(&row.source)?
            .push(&row.dedup_key)?
            .push(&row.object)?
            .push(row.kind)?
            .push(row.occurred_at)?
            .push(row.received_at)?
            .push(request_id.as_deref())?
            .push(&row.json)?;
        Ok(())
    })
    .map_err(sql_error)?;
    if inserted > 0 {
        connection
            .prepare_cached(
                "INSERT INTO inbox_pending (occurred_at, seq)
                 SELECT occurred_at, seq FROM inbox WHERE seq > ?1",
            )
            .and_then(|mut statement| statement.execute([newest_before]))
            .map_err(sql_error)?;
    }
    let outcome = AppendOutcome {
        inserted,
        duplicates: rows.len() - inserted,
    };
    journal.summary = format!(
        "{}: {} new, {} duplicate{}",
        journal.summary,
        outcome.inserted,
        outcome.duplicates,
        if outcome.duplicates == 1 { "" } else { "s" }
    );
    if let Value::Object(detail) = &mut journal.detail {
        detail.insert("inserted".into(), outcome.inserted.into());
        detail.insert("duplicates".into(), outcome.duplicates.into());
    }
    insert_journal(connection, &journal)?;
    Ok(outcome)
}

pub(crate) fn insert_journal(
    connection: &Connection,
    entry: &JournalEntry,
) -> Result<(), StoreError> {
    insert_journal_with(connection, entry, &entry.detail.to_string())
}

/// Inserts a journal entry whose detail is already serialized.
pub(crate) fn insert_journal_with(
    connection: &Connection,
    entry: &JournalEntry,
    detail: &str,
) -> Result<(), StoreError> {
    let object = entry.object.as_ref().map(ToString::to_string);
    many::execute(
        connection,
        &JOURNAL_ROWS,
        &[(entry, detail, object.as_deref())],
        bind_journal_row,
    )
    .map(drop)
    .map_err(sql_error)
}

/// A unit's journal rows, many to a statement.
fn insert_journal_rows(connection: &Connection, prepared: &PreparedUnit) -> Result<(), StoreError> {
    let rows: Vec<_> = (prepared.unit.journal.iter())
        .zip(&prepared.details)
        .zip(&prepared.journal_objects)
        .map(|((entry, detail), object)| (entry, detail.as_str(), object.as_deref()))
        .collect();
    many::execute(connection, &JOURNAL_ROWS, &rows, bind_journal_row)
        .map(drop)
        .map_err(sql_error)
}

const JOURNAL_ROWS: many::Shape = many::Shape {
    head: "INSERT INTO journal (at, object, kind, summary, detail_json) VALUES ",
    row: "(?, ?, ?, ?, ?)",
    tail: "",
};

/// A journal row's parameters: the entry, its serialized detail and its object's name.
fn bind_journal_row(
    params: &mut many::Params<'_, '_>,
    (entry, detail, object): &(&JournalEntry, &str, Option<&str>),
) -> rusqlite::Result<()> {
    params
        .push(entry.at.as_millis())?
        .push(object)?
        .push(entry.kind.as_str())?
        .push(&entry.summary)?
        .push(detail)?;
    Ok(())
}

pub(crate) fn pending_events(
    connection: &Connection,
    now: Timestamp,
    limit: usize,
    held: &HeldBack,
) -> Result<Vec<PendingEvent>, StoreError> {
    // An object with an event deferred past `now` is skipped whole: its later events
    // must not overtake the one that waits.
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT p.seq, COALESCE(d.deferrals, 0), {} FROM inbox_pending p
             JOIN inbox i ON i.seq = p.seq
             LEFT JOIN inbox_deferred d ON d.seq = p.seq
             WHERE NOT EXISTS (SELECT 1 FROM inbox_deferred w WHERE w.object = i.object AND w.not_before > ?1)
             ORDER BY p.occurred_at, p.seq LIMIT ?2",
            event_row::COLUMNS
        ))
        .map_err(sql_error)?;
    let mut rows = statement
        .query(params![now.as_millis(), (limit + held.seqs.len()) as i64])
        .map_err(sql_error)?;
    let mut events = Vec::with_capacity(limit);
    while events.len() < limit
        && let Some(row) = rows.next().map_err(sql_error)?
    {
        let seq: i64 = row.get(0).map_err(sql_error)?;
        // Parsing an event is most of this read's cost; the held ones are not parsed.
        if held.seqs.contains(&seq) {
            continue;
        }
        let object = row
            .get_ref(2 + event_row::OBJECT_COLUMN)
            .and_then(|value| value.as_str().map_err(Into::into))
            .map_err(sql_error)?;
        if held.holds_object(object) {
            continue;
        }
        let deferrals: u32 = row.get(1).map_err(sql_error)?;
        let event = event_row::from_row(row, 2).map_err(sql_error)??;
        events.push(PendingEvent {
            seq,
            event,
            deferrals,
        });
    }
    Ok(events)
}

/// A unit with its JSON already serialized, on the caller's thread: the writer thread is
/// the one every write waits for, so it only binds and inserts.
pub(crate) struct PreparedUnit {
    pub(crate) unit: UnitOfWork,
    /// `property_writes[i].value`, `outbox[i].params`, `journal[i].detail`. (A run's
    /// state comes as text already.)
    pub(crate) values: Vec<String>,
    pub(crate) params: Vec<String>,
    pub(crate) details: Vec<String>,
    /// Object names, formatted here for the same reason: `journal[i].object`,
    /// `runs[i].object`, `outbox[i].object`, `property_writes[i].object`.
    pub(crate) journal_objects: Vec<Option<String>>,
    pub(crate) run_objects: Vec<String>,
    pub(crate) job_objects: Vec<String>,
    pub(crate) write_objects: Vec<String>,
    /// Each object the unit marks or writes, with the span of times it touches: one
    /// upsert per object for the whole unit, not one per event.
    pub(crate) touched: BTreeMap<String, (i64, i64)>,
}

impl PreparedUnit {
    /// Each value is taken out of the unit as it is serialized (left `null`): the trees
    /// are freed now rather than held while the unit waits for the writer.
    pub(crate) fn new(mut unit: UnitOfWork) -> Self {
        let write_objects: Vec<String> = unit
            .property_writes
            .iter()
            .map(|w| w.object.name())
            .collect();
        let mut touched: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut touch = |object: String, at: Timestamp| {
            let span = touched.entry(object).or_insert((at.0, at.0));
            *span = (span.0.min(at.0), span.1.max(at.0));
        };
        for mark in &unit.marks {
            let (ObjectMark::Seen { object, at }
            | ObjectMark::Deleted { object, at }
            | ObjectMark::Restored { object, at }) = mark;
            touch(object.name(), *at);
        }
        for (write, object) in unit.property_writes.iter().zip(&write_objects) {
            touch(object.clone(), write.occurred_at);
        }
        Self {
            journal_objects: unit
                .journal
                .iter()
                .map(|e| e.object.as_ref().map(ObjectRef::name))
                .collect(),
            run_objects: unit.runs.iter().map(|r| r.object.name()).collect(),
            job_objects: unit.outbox.iter().map(|j| j.object.name()).collect(),
            write_objects,
            touched,
            values: unit
                .property_writes
                .iter_mut()
                .map(|w| take_json_text(&mut w.value))
                .collect(),
            params: unit
                .outbox
                .iter_mut()
                .map(|j| take_json_text(&mut j.params))
                .collect(),
            details: unit
                .journal
                .iter_mut()
                .map(|e| take_json_text(&mut e.detail))
                .collect(),
            unit,
        }
    }
}

/// A value as JSON text, taken out of the unit. `serde_json::to_string` writes straight
/// into a buffer, where `Value`'s `Display` goes through the formatting machinery.
fn take_json_text(value: &mut Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    *value = Value::Null;
    text
}

pub(crate) fn apply(connection: &Connection, prepared: &PreparedUnit) -> Result<(), StoreError> {
    let unit = &prepared.unit;
    for (object, (first, last)) in &prepared.touched {
        touch_object(connection, object, *first, *last)?;
    }
    for mark in &unit.marks {
        apply_mark(connection, mark)?;
    }
    let writes: Vec<_> = unit
        .property_writes
        .iter()
        .zip(&prepared.values)
        .zip(&prepared.write_objects)
        .collect();
    let bind_write =
        |params: &mut many::Params<'_, '_>,
         ((write, value), object): &((&PropertyWrite, &String), &String)| {
            params
                .push(object.as_str())?
                .push(&write.name)?
                .push(value.as_str())?
                .push(write.occurred_at.as_millis())?
                .push(write.event_id.as_str())?;
            Ok(())
        };
    let history = many::Shape {
        head: "INSERT INTO property_history (object, name, value_json, occurred_at, event_id) VALUES ",
        row: "(?, ?, ?, ?, ?)",
        tail: "",
    };
    many::execute(connection, &history, &writes, bind_write).map_err(sql_error)?;
    // Newest value wins: an older write goes into the history but leaves the current
    // value alone. Ties go to the later arrival. (One row per statement: an upsert of
    // many rows measured dearer than one statement per row.)
    let mut current = connection
        .prepare_cached(
            "INSERT INTO object_properties (object, name, value_json, occurred_at, event_id)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (object, name) DO UPDATE SET
                 value_json = excluded.value_json,
                 occurred_at = excluded.occurred_at,
                 event_id = excluded.event_id
             WHERE excluded.occurred_at >= object_properties.occurred_at",
        )
        .map_err(sql_error)?;
    for ((write, value), object) in &writes {
        current
            .execute(params![
                object,
                write.name,
                value,
                write.occurred_at.as_millis(),
                write.event_id.as_str()
            ])
            .map_err(sql_error)?;
    }
    insert_journal_rows(connection, prepared)?;
    crate::runs::apply(connection, prepared)?;
    crate::context::apply(connection, unit)?;
    crate::context::clear_deferrals(connection, &unit.applied)?;
    let applied_at = unit
        .applied_at
        .map(Timestamp::as_millis)
        .unwrap_or_default();
    let mut unpend = connection
        .prepare_cached(
            "DELETE FROM inbox_pending
             WHERE seq = ?1 AND occurred_at = (SELECT occurred_at FROM inbox WHERE seq = ?1)",
        )
        .map_err(sql_error)?;
    for seq in &unit.applied {
        unpend.execute([seq]).map_err(sql_error)?;
    }
    let mark_applied = many::Shape {
        head: "INSERT INTO inbox_applied (seq, applied_at) VALUES ",
        row: "(?, ?)",
        tail: " ON CONFLICT (seq) DO NOTHING",
    };
    many::execute(connection, &mark_applied, &unit.applied, |params, seq| {
        params.push(seq)?.push(applied_at)?;
        Ok(())
    })
    .map_err(sql_error)?;
    Ok(())
}

/// Deletion and restoration; the object row itself exists already (see `touch_object`).
fn apply_mark(connection: &Connection, mark: &ObjectMark) -> Result<(), StoreError> {
    let (sql, object, at) = match mark {
        ObjectMark::Seen { .. } => return Ok(()),
        ObjectMark::Deleted { object, at } => (
            "UPDATE objects SET deleted_at = ?2 WHERE object = ?1 AND (deleted_at IS NULL OR deleted_at < ?2)",
            object,
            at,
        ),
        ObjectMark::Restored { object, at } => (
            "UPDATE objects SET deleted_at = NULL WHERE object = ?1 AND deleted_at <= ?2",
            object,
            at,
        ),
    };
    connection
        .prepare_cached(sql)
        .map_err(sql_error)?
        .execute(params![object.to_string(), at.as_millis()])
        .map_err(sql_error)?;
    Ok(())
}

fn touch_object(
    connection: &Connection,
    object: &str,
    first: i64,
    last: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO objects (object, first_seen_at, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (object) DO UPDATE SET
                 first_seen_at = MIN(first_seen_at, excluded.first_seen_at),
                 updated_at = MAX(updated_at, excluded.updated_at)",
        )
        .map_err(sql_error)?
        .execute(params![object, first, last])
        .map_err(sql_error)?;
    Ok(())
}

pub(crate) fn object(
    connection: &Connection,
    object: &ObjectRef,
) -> Result<Option<ObjectState>, StoreError> {
    let name = object.to_string();
    let header = connection
        .prepare_cached(
            "SELECT first_seen_at, updated_at, deleted_at FROM objects WHERE object = ?1",
        )
        .map_err(sql_error)?
        .query_row([&name], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })
        .optional()
        .map_err(sql_error)?;
    let Some((first_seen_at, updated_at, deleted_at)) = header else {
        return Ok(None);
    };
    let mut statement = connection
        .prepare_cached(
            "SELECT name, value_json, occurred_at, event_id FROM object_properties WHERE object = ?1",
        )
        .map_err(sql_error)?;
    let properties = statement
        .query_map([&name], property_row)
        .map_err(sql_error)?
        .map(|row| {
            let entry = row.map_err(sql_error)??;
            let state = PropertyState {
                value: entry.value,
                occurred_at: entry.occurred_at,
                event_id: entry.event_id,
            };
            Ok((entry.name, state))
        })
        .collect::<Result<BTreeMap<_, _>, StoreError>>()?;
    Ok(Some(ObjectState {
        object: object.clone(),
        properties,
        first_seen_at: Timestamp(first_seen_at),
        updated_at: Timestamp(updated_at),
        deleted_at: deleted_at.map(Timestamp),
    }))
}

pub(crate) fn property_history(
    connection: &Connection,
    object: &ObjectRef,
) -> Result<Vec<PropertyHistoryEntry>, StoreError> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT name, value_json, occurred_at, event_id FROM property_history
             WHERE seq IN ({}) ORDER BY name, occurred_at, seq",
            trace_index::seqs_of_object(Source::PropertyHistory)
        ))
        .map_err(sql_error)?;
    let rows = statement
        .query_map([object.to_string()], property_row)
        .map_err(sql_error)?;
    rows.map(|row| row.map_err(sql_error)?).collect()
}

pub(crate) fn received_events(
    connection: &Connection,
    object: &ObjectRef,
) -> Result<Vec<ReceivedEvent>, StoreError> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT i.request_id, a.applied_at, {} FROM inbox i LEFT JOIN inbox_applied a ON a.seq = i.seq
             WHERE i.seq IN ({}) ORDER BY i.seq",
            event_row::COLUMNS,
            trace_index::seqs_of_object(Source::Inbox)
        ))
        .map_err(sql_error)?;
    let rows = statement
        .query_map([object.to_string()], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, Option<i64>>(1)?,
                event_row::from_row(row, 2)?,
            ))
        })
        .map_err(sql_error)?;
    rows.map(|row| {
        let (request_id, applied_at, event) = row.map_err(sql_error)?;
        Ok(ReceivedEvent {
            event: event?,
            request_id,
            applied_at: applied_at.map(Timestamp),
        })
    })
    .collect()
}

pub(crate) fn journal_for(
    connection: &Connection,
    object: &ObjectRef,
) -> Result<Vec<JournalEntry>, StoreError> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT at, object, kind, summary, detail_json FROM journal WHERE seq IN ({}) ORDER BY seq",
            trace_index::seqs_of_object(Source::Journal)
        ))
        .map_err(sql_error)?;
    let rows = statement
        .query_map([object.to_string()], journal_row)
        .map_err(sql_error)?;
    rows.map(|row| row.map_err(sql_error)?).collect()
}

pub(crate) fn recent_requests(
    connection: &Connection,
    limit: usize,
) -> Result<Vec<JournalEntry>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT at, object, kind, summary, detail_json FROM journal WHERE object IS NULL
             ORDER BY seq DESC LIMIT ?1",
        )
        .map_err(sql_error)?;
    let rows = statement
        .query_map([limit as i64], journal_row)
        .map_err(sql_error)?;
    rows.map(|row| row.map_err(sql_error)?).collect()
}

fn journal_row(row: &Row<'_>) -> rusqlite::Result<Result<JournalEntry, StoreError>> {
    let at: i64 = row.get(0)?;
    let object: Option<String> = row.get(1)?;
    let kind: String = row.get(2)?;
    let summary: String = row.get(3)?;
    let detail: String = row.get(4)?;
    Ok((|| {
        Ok(JournalEntry {
            at: Timestamp(at),
            object: object
                .map(|name| {
                    name.parse::<ObjectRef>()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .transpose()?,
            kind: JournalKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("journal kind {kind}")))?,
            summary,
            detail: parse_value(&detail)?,
        })
    })())
}

/// One `(name, value_json, occurred_at, event_id)` row of `object_properties` or
/// `property_history`.
fn property_row(row: &Row<'_>) -> rusqlite::Result<Result<PropertyHistoryEntry, StoreError>> {
    let (name, value, occurred_at, event_id): (String, String, i64, String) =
        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
    Ok((|| {
        Ok(PropertyHistoryEntry {
            name,
            value: parse_value(&value)?,
            occurred_at: Timestamp(occurred_at),
            event_id: parse_event_id(&event_id)?,
        })
    })())
}

fn parse_value(json: &str) -> Result<Value, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("stored JSON value: {e}")))
}

fn parse_event_id(text: &str) -> Result<EventId, StoreError> {
    EventId::parse(text).ok_or_else(|| StoreError::Corrupt(format!("event id {text}")))
}
