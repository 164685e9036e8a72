//! Reading objects: one object's state and history for a trace, and the one-read view of
//! a batch's objects the engine loads before applying it.

use std::collections::BTreeMap;

use followthrough_core::{ObjectRef, Timestamp};
use followthrough_store::{ObjectState, ObjectsView, PropertyHistoryEntry, PropertyState};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::error::Result;
use crate::rows;
use crate::runs::{ACTIVE, RUN_COLUMNS, run};

/// Begins a read that sees one snapshot across its statements.
pub(crate) const SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// One `(name, value_json, occurred_at, event_id)` row, from `first` on.
fn property(row: &PgRow, first: usize) -> Result<PropertyHistoryEntry> {
    Ok(PropertyHistoryEntry {
        name: row.try_get(first)?,
        value: rows::json(&row.try_get::<String, _>(first + 1)?, "property value")?,
        occurred_at: Timestamp(row.try_get(first + 2)?),
        event_id: rows::event_id(&row.try_get::<String, _>(first + 3)?)?,
    })
}

fn state(entry: PropertyHistoryEntry) -> (String, PropertyState) {
    let state = PropertyState {
        value: entry.value,
        occurred_at: entry.occurred_at,
        event_id: entry.event_id,
    };
    (entry.name, state)
}

pub(crate) async fn object(pool: &PgPool, object: &ObjectRef) -> Result<Option<ObjectState>> {
    let name = object.to_string();
    // Two statements, one snapshot, so a unit committed between them cannot pair old
    // headers with new properties.
    let mut read = pool.begin_with(SNAPSHOT).await?;
    let header =
        sqlx::query("SELECT first_seen_at, updated_at, deleted_at FROM objects WHERE object = $1")
            .bind(&name)
            .fetch_optional(&mut *read)
            .await?;
    let Some(header) = header else {
        return Ok(None);
    };
    let properties = sqlx::query(
        "SELECT name, value_json, occurred_at, event_id FROM object_properties WHERE object = $1",
    )
    .bind(&name)
    .fetch_all(&mut *read)
    .await?
    .iter()
    .map(|row| property(row, 0).map(state))
    .collect::<Result<BTreeMap<_, _>>>()?;
    read.commit().await?;
    Ok(Some(ObjectState {
        object: object.clone(),
        properties,
        first_seen_at: Timestamp(header.try_get(0)?),
        updated_at: Timestamp(header.try_get(1)?),
        deleted_at: header.try_get::<Option<i64>, _>(2)?.map(Timestamp),
    }))
}

pub(crate) async fn property_history(
    pool: &PgPool,
    object: &ObjectRef,
) -> Result<Vec<PropertyHistoryEntry>> {
    sqlx::query(
        "SELECT name, value_json, occurred_at, event_id FROM property_history
         WHERE object = $1 ORDER BY name, occurred_at, seq",
    )
    .bind(object.to_string())
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| property(row, 0))
    .collect()
}

/// One snapshot (REPEATABLE READ), one set-based statement per table: a batch loads
/// thousands of objects, and a statement per object would be most of the engine's read
/// time.
pub(crate) async fn load_objects(pool: &PgPool, objects: &[ObjectRef]) -> Result<ObjectsView> {
    let mut view = ObjectsView::default();
    if objects.is_empty() {
        return Ok(view);
    }
    let names: Vec<String> = objects.iter().map(ObjectRef::to_string).collect();
    let mut read = pool.begin_with(SNAPSHOT).await?;

    let mut states: BTreeMap<String, ObjectState> = BTreeMap::new();
    let headers = sqlx::query(
        "SELECT object, first_seen_at, updated_at, deleted_at FROM objects WHERE object = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *read)
    .await?;
    for row in &headers {
        let name: String = row.try_get(0)?;
        let state = ObjectState {
            object: rows::object(&name)?,
            properties: BTreeMap::new(),
            first_seen_at: Timestamp(row.try_get(1)?),
            updated_at: Timestamp(row.try_get(2)?),
            deleted_at: row.try_get::<Option<i64>, _>(3)?.map(Timestamp),
        };
        states.insert(name, state);
    }
    let properties = sqlx::query(
        "SELECT object, name, value_json, occurred_at, event_id FROM object_properties
         WHERE object = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *read)
    .await?;
    for row in &properties {
        let object: String = row.try_get(0)?;
        if let Some(state) = states.get_mut(&object) {
            let (name, property) = state_of(row)?;
            state.properties.insert(name, property);
        }
    }
    view.objects = states.into_values().collect();

    view.runs = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE object = ANY($1) AND {ACTIVE}
         ORDER BY created_at, run_id"
    ))
    .bind(&names)
    .fetch_all(&mut *read)
    .await?
    .iter()
    .map(run)
    .collect::<Result<_>>()?;
    for row in sqlx::query("SELECT from_object, to_object FROM links WHERE from_object = ANY($1)")
        .bind(&names)
        .fetch_all(&mut *read)
        .await?
    {
        let (from, to): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        view.links.push((rows::object(&from)?, rows::object(&to)?));
    }
    for row in
        sqlx::query("SELECT object, to_type, synced_at FROM link_syncs WHERE object = ANY($1)")
            .bind(&names)
            .fetch_all(&mut *read)
            .await?
    {
        let object: String = row.try_get(0)?;
        view.syncs.push((
            rows::object(&object)?,
            row.try_get(1)?,
            Timestamp(row.try_get(2)?),
        ));
    }
    read.commit().await?;
    Ok(view)
}

/// An `object_properties` row read with its object first.
fn state_of(row: &PgRow) -> Result<(String, PropertyState)> {
    property(row, 1).map(state)
}
