//! [`followthrough_store::Store::apply`]: a unit of work in one transaction, in the
//! SQLite backend's order (objects, marks, properties, journal, runs, timers, outbox,
//! context, then the events marked applied).
//!
//! Bulk parts (property writes, journal, runs, timers, outbox) go in one statement each
//! with `UNNEST` over arrays: a round trip per row would be most of a unit's time. Runs
//! keep their order inside the statement (see `runs::write_runs`). Marks and links stay
//! one statement per row, because the order of their rows changes the outcome (a link
//! added, then removed).

use std::collections::BTreeMap;

use followthrough_core::{ObjectRef, Timestamp};
use followthrough_store::{ObjectMark, PropertyWrite, UnitOfWork};
use sqlx::PgConnection;

use crate::error::Result;

pub(crate) async fn apply(connection: &mut PgConnection, unit: &UnitOfWork) -> Result<()> {
    // First, so a unit prepared under leases that changed hands writes nothing.
    if let Some(fence) = &unit.fence {
        crate::work::check_fence(connection, fence).await?;
    }
    touch_objects(connection, unit).await?;
    for mark in &unit.marks {
        apply_mark(connection, mark).await?;
    }
    write_properties(connection, &unit.property_writes).await?;
    crate::journal::insert(connection, &unit.journal).await?;
    crate::runs::apply(connection, unit).await?;
    crate::context::apply(connection, unit).await?;
    let applied_at = unit.applied_at.unwrap_or(Timestamp(0));
    crate::inbox::mark_applied(connection, &unit.applied, applied_at).await
}

/// One upsert for every object the unit marks or writes, widening each object's
/// `first_seen_at .. updated_at` span. Objects go in name order, so two concurrent
/// units lock their common objects in the same order and cannot deadlock on them.
async fn touch_objects(connection: &mut PgConnection, unit: &UnitOfWork) -> Result<()> {
    let mut touched: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut touch = |object: &ObjectRef, at: Timestamp| {
        let span = touched.entry(object.to_string()).or_insert((at.0, at.0));
        *span = (span.0.min(at.0), span.1.max(at.0));
    };
    for mark in &unit.marks {
        let (ObjectMark::Seen { object, at }
        | ObjectMark::Deleted { object, at }
        | ObjectMark::Restored { object, at }) = mark;
        touch(object, *at);
    }
    for write in &unit.property_writes {
        touch(&write.object, write.occurred_at);
    }
    if touched.is_empty() {
        return Ok(());
    }
    let mut objects = Vec::with_capacity(touched.len());
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for (object, (from, to)) in touched {
        objects.push(object);
        first.push(from);
        last.push(to);
    }
    sqlx::query(
        "INSERT INTO objects (object, first_seen_at, updated_at)
         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[])
         ON CONFLICT (object) DO UPDATE SET
             first_seen_at = LEAST(objects.first_seen_at, excluded.first_seen_at),
             updated_at = GREATEST(objects.updated_at, excluded.updated_at)",
    )
    .bind(objects)
    .bind(first)
    .bind(last)
    .execute(connection)
    .await?;
    Ok(())
}

/// Deletion and restoration; the object row exists already (see [`touch_objects`]).
async fn apply_mark(connection: &mut PgConnection, mark: &ObjectMark) -> Result<()> {
    let (sql, object, at) = match mark {
        ObjectMark::Seen { .. } => return Ok(()),
        ObjectMark::Deleted { object, at } => (
            "UPDATE objects SET deleted_at = $2
             WHERE object = $1 AND (deleted_at IS NULL OR deleted_at < $2)",
            object,
            at,
        ),
        ObjectMark::Restored { object, at } => (
            "UPDATE objects SET deleted_at = NULL WHERE object = $1 AND deleted_at <= $2",
            object,
            at,
        ),
    };
    sqlx::query(sql)
        .bind(object.to_string())
        .bind(at.as_millis())
        .execute(connection)
        .await?;
    Ok(())
}

/// Every write goes into the history; the current value is replaced only by a write
/// that occurred at or after it (newest value wins, ties to the later arrival).
async fn write_properties(connection: &mut PgConnection, writes: &[PropertyWrite]) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut history = Columns::default();
    writes.iter().for_each(|write| history.push(write));
    sqlx::query(
        "INSERT INTO property_history (object, name, value_json, occurred_at, event_id)
         SELECT object, name, value, occurred_at, event_id
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[])
             WITH ORDINALITY AS w (object, name, value, occurred_at, event_id, ord)
         ORDER BY ord",
    )
    .bind(&history.object)
    .bind(&history.name)
    .bind(&history.value)
    .bind(&history.occurred_at)
    .bind(&history.event_id)
    .execute(&mut *connection)
    .await?;

    // One upsert cannot touch a row twice, so the unit's writes to one property are
    // folded first, the way writing them one by one would end: the newest occurrence
    // wins, and of equal ones the last in the unit.
    let mut newest: BTreeMap<(String, &str), &PropertyWrite> = BTreeMap::new();
    for write in writes {
        let key = (write.object.to_string(), write.name.as_str());
        match newest.get(&key) {
            Some(kept) if kept.occurred_at > write.occurred_at => {}
            _ => {
                newest.insert(key, write);
            }
        }
    }
    let mut current = Columns::default();
    newest.values().for_each(|write| current.push(write));
    sqlx::query(
        "INSERT INTO object_properties (object, name, value_json, occurred_at, event_id)
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[])
         ON CONFLICT (object, name) DO UPDATE SET
             value_json = excluded.value_json,
             occurred_at = excluded.occurred_at,
             event_id = excluded.event_id
         WHERE excluded.occurred_at >= object_properties.occurred_at",
    )
    .bind(&current.object)
    .bind(&current.name)
    .bind(&current.value)
    .bind(&current.occurred_at)
    .bind(&current.event_id)
    .execute(connection)
    .await?;
    Ok(())
}

/// Property writes as the arrays `UNNEST` takes.
#[derive(Default)]
struct Columns {
    object: Vec<String>,
    name: Vec<String>,
    value: Vec<String>,
    occurred_at: Vec<i64>,
    event_id: Vec<String>,
}

impl Columns {
    fn push(&mut self, write: &PropertyWrite) {
        self.object.push(write.object.to_string());
        self.name.push(write.name.clone());
        self.value.push(write.value.to_string());
        self.occurred_at.push(write.occurred_at.as_millis());
        self.event_id.push(write.event_id.to_string());
    }
}
