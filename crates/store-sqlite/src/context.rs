//! The SQL for what the engine gathers around events: links between objects, cached
//! owners, deferred events, and the one-read view of a batch's objects.

use std::collections::BTreeMap;

use followthrough_core::{EventId, ObjectRef, RunId, Timestamp};
use followthrough_store::{
    CachedOwner, ObjectState, ObjectsView, PropertyState, RuleVersion, RunRecord, StoreError,
    TimerRecord, UnitOfWork,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::runs::{ACTIVE, RUN_COLUMNS, parse_run_id, run_row};
use crate::sql_error;

/// Writes the context part of a unit: links, link lists, owners, deferrals.
pub(crate) fn apply(connection: &Connection, unit: &UnitOfWork) -> Result<(), StoreError> {
    if !unit.associations.is_empty() {
        let mut add = connection
            .prepare_cached(
                "INSERT INTO links (from_object, to_object, to_type, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (from_object, to_object) DO UPDATE SET updated_at = excluded.updated_at",
            )
            .map_err(sql_error)?;
        let mut remove = connection
            .prepare_cached("DELETE FROM links WHERE from_object = ?1 AND to_object = ?2")
            .map_err(sql_error)?;
        for link in &unit.associations {
            // Links go both ways, as CRM associations do.
            for (from, to) in [(&link.from, &link.to), (&link.to, &link.from)] {
                if link.removed {
                    remove
                        .execute(params![from.to_string(), to.to_string()])
                        .map_err(sql_error)?;
                } else {
                    add.execute(params![
                        from.to_string(),
                        to.to_string(),
                        to.object_type,
                        link.at.as_millis()
                    ])
                    .map_err(sql_error)?;
                }
            }
        }
    }
    for sync in &unit.association_syncs {
        let object = sync.object.to_string();
        connection
            .prepare_cached("DELETE FROM links WHERE from_object = ?1 AND to_type = ?2")
            .map_err(sql_error)?
            .execute(params![object, sync.to_type])
            .map_err(sql_error)?;
        let mut add = connection
            .prepare_cached(
                "INSERT INTO links (from_object, to_object, to_type, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (from_object, to_object) DO UPDATE SET updated_at = excluded.updated_at",
            )
            .map_err(sql_error)?;
        for linked in &sync.linked {
            add.execute(params![
                object,
                linked.to_string(),
                linked.object_type,
                sync.at.as_millis()
            ])
            .map_err(sql_error)?;
            add.execute(params![
                linked.to_string(),
                object,
                sync.object.object_type,
                sync.at.as_millis()
            ])
            .map_err(sql_error)?;
        }
        connection
            .prepare_cached(
                "INSERT INTO link_syncs (object, to_type, synced_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (object, to_type) DO UPDATE SET synced_at = excluded.synced_at",
            )
            .map_err(sql_error)?
            .execute(params![object, sync.to_type, sync.at.as_millis()])
            .map_err(sql_error)?;
    }
    for owner in &unit.owners {
        connection
            .prepare_cached(
                "INSERT INTO owners (owner_id, email, name, teams_json, fetched_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (owner_id) DO UPDATE SET email = excluded.email, name = excluded.name,
                     teams_json = excluded.teams_json, fetched_at = excluded.fetched_at",
            )
            .map_err(sql_error)?
            .execute(params![
                owner.id,
                owner.email,
                owner.name,
                serde_json::to_string(&owner.teams).unwrap_or_else(|_| "[]".into()),
                owner.fetched_at.as_millis()
            ])
            .map_err(sql_error)?;
    }
    for deferral in &unit.deferrals {
        connection
            .prepare_cached(
                "INSERT INTO inbox_deferred (seq, object, not_before, deferrals) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (seq) DO UPDATE SET not_before = excluded.not_before,
                     deferrals = inbox_deferred.deferrals + 1",
            )
            .map_err(sql_error)?
            .execute(params![
                deferral.seq,
                deferral.object.to_string(),
                deferral.not_before.as_millis()
            ])
            .map_err(sql_error)?;
    }
    Ok(())
}

/// Forgets the deferral of events now applied. Deferrals are rare: one cheap check
/// spares the common unit a delete per event.
pub(crate) fn clear_deferrals(connection: &Connection, applied: &[i64]) -> Result<(), StoreError> {
    let any: bool = connection
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM inbox_deferred)")
        .map_err(sql_error)?
        .query_row([], |row| row.get(0))
        .map_err(sql_error)?;
    if !any {
        return Ok(());
    }
    let mut delete = connection
        .prepare_cached("DELETE FROM inbox_deferred WHERE seq = ?1")
        .map_err(sql_error)?;
    for seq in applied {
        delete.execute([seq]).map_err(sql_error)?;
    }
    Ok(())
}

/// The active runs of the objects named in the JSON list `?1`.
///
/// Each query of [`load_objects`] joins the list (`CROSS JOIN` keeps it the outer loop:
/// one index search per name) rather than testing `object IN (SELECT value FROM
/// json_each(?1))`, for which SQLite first copies the list into a temporary index and
/// searches that: five temporary indexes of a batch's 2,000 names, per batch.
pub(crate) fn active_runs_of_objects() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM json_each(?1) AS wanted CROSS JOIN runs
         ON object = wanted.value WHERE {ACTIVE}"
    )
}

/// One read transaction, one set-based query per table: a batch loads thousands of
/// objects, and a statement per object (each its own implicit transaction, with its
/// file locks) was most of the engine's read time.
pub(crate) fn load_objects(
    connection: &Connection,
    objects: &[ObjectRef],
) -> Result<ObjectsView, StoreError> {
    let mut view = ObjectsView::default();
    if objects.is_empty() {
        return Ok(view);
    }
    // Each object once: the queries below join the list, they do not test membership.
    let mut names: Vec<String> = objects.iter().map(ObjectRef::name).collect();
    names.sort_unstable();
    names.dedup();
    let names = serde_json::to_string(&names).map_err(|e| StoreError::Backend(e.to_string()))?;
    let read = connection.unchecked_transaction().map_err(sql_error)?;
    let parse = |text: String| {
        text.parse::<ObjectRef>()
            .map_err(|e| StoreError::Corrupt(format!("object {text}: {e}")))
    };

    let mut states: BTreeMap<String, ObjectState> = BTreeMap::new();
    let mut headers = read
        .prepare_cached(
            "SELECT object, first_seen_at, updated_at, deleted_at
             FROM json_each(?1) AS wanted CROSS JOIN objects ON object = wanted.value",
        )
        .map_err(sql_error)?;
    let rows = headers
        .query_map([&names], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<i64>>(3)?,
            ))
        })
        .map_err(sql_error)?;
    for row in rows {
        let (name, first_seen_at, updated_at, deleted_at) = row.map_err(sql_error)?;
        let object = parse(name.clone())?;
        states.insert(
            name,
            ObjectState {
                object,
                properties: BTreeMap::new(),
                first_seen_at: Timestamp(first_seen_at),
                updated_at: Timestamp(updated_at),
                deleted_at: deleted_at.map(Timestamp),
            },
        );
    }
    let mut properties = read
        .prepare_cached(
            "SELECT object, name, value_json, occurred_at, event_id
             FROM json_each(?1) AS wanted CROSS JOIN object_properties ON object = wanted.value",
        )
        .map_err(sql_error)?;
    let rows = properties
        .query_map([&names], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        })
        .map_err(sql_error)?;
    for row in rows {
        let (object, name, value, occurred_at, event_id) = row.map_err(sql_error)?;
        if let Some(state) = states.get_mut(&object) {
            state.properties.insert(
                name,
                PropertyState {
                    value: serde_json::from_str(&value)
                        .map_err(|e| StoreError::Corrupt(format!("stored JSON value: {e}")))?,
                    occurred_at: Timestamp(occurred_at),
                    event_id: EventId::parse(&event_id)
                        .ok_or_else(|| StoreError::Corrupt(format!("event id {event_id}")))?,
                },
            );
        }
    }
    view.objects = states.into_values().collect();

    // Sorted here, not by an `ORDER BY`: SQLite would copy every row, whole states
    // included, into a temporary b-tree first.
    let mut runs = read
        .prepare_cached(&active_runs_of_objects())
        .map_err(sql_error)?;
    for run in runs.query_map([&names], run_row).map_err(sql_error)? {
        view.runs.push(run.map_err(sql_error)??);
    }
    view.runs.sort_unstable_by(|a, b| {
        (a.created_at, a.run_id.as_str()).cmp(&(b.created_at, b.run_id.as_str()))
    });
    let mut links = read
        .prepare_cached(
            "SELECT from_object, to_object
             FROM json_each(?1) AS wanted CROSS JOIN links ON from_object = wanted.value",
        )
        .map_err(sql_error)?;
    let rows = links
        .query_map([&names], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(sql_error)?;
    for row in rows {
        let (from, to) = row.map_err(sql_error)?;
        view.links.push((parse(from)?, parse(to)?));
    }
    let mut syncs = read
        .prepare_cached(
            "SELECT object, to_type, synced_at
             FROM json_each(?1) AS wanted CROSS JOIN link_syncs ON object = wanted.value",
        )
        .map_err(sql_error)?;
    let rows = syncs
        .query_map([&names], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .map_err(sql_error)?;
    for row in rows {
        let (object, to_type, at) = row.map_err(sql_error)?;
        view.syncs.push((parse(object)?, to_type, Timestamp(at)));
    }
    drop((headers, properties, runs, links, syncs));
    read.commit().map_err(sql_error)?;
    Ok(view)
}

pub(crate) fn runs(connection: &Connection, ids: &[RunId]) -> Result<Vec<RunRecord>, StoreError> {
    let ids: Vec<&str> = ids.iter().map(RunId::as_str).collect();
    let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE run_id IN (SELECT value FROM json_each(?1))"
        ))
        .map_err(sql_error)?;
    let rows = statement.query_map([&ids], run_row).map_err(sql_error)?;
    rows.map(|row| row.map_err(sql_error)?).collect()
}

pub(crate) fn runs_where(
    connection: &Connection,
    condition: &str,
    value: &str,
) -> Result<Vec<RunRecord>, StoreError> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE {condition} ORDER BY created_at, run_id"
        ))
        .map_err(sql_error)?;
    let rows = statement.query_map([value], run_row).map_err(sql_error)?;
    rows.map(|row| row.map_err(sql_error)?).collect()
}

pub(crate) fn owners(
    connection: &Connection,
    ids: &[String],
) -> Result<Vec<CachedOwner>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT owner_id, email, name, teams_json, fetched_at FROM owners WHERE owner_id = ?1",
        )
        .map_err(sql_error)?;
    let mut found = Vec::new();
    for id in ids {
        let rows = statement
            .query_map([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .map_err(sql_error)?;
        for row in rows {
            let (id, email, name, teams, fetched_at) = row.map_err(sql_error)?;
            found.push(CachedOwner {
                id,
                email,
                name,
                teams: serde_json::from_str(&teams)
                    .map_err(|e| StoreError::Corrupt(format!("owner teams: {e}")))?,
                fetched_at: Timestamp(fetched_at),
            });
        }
    }
    Ok(found)
}

pub(crate) fn timers_for(
    connection: &Connection,
    object: &ObjectRef,
) -> Result<Vec<TimerRecord>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT t.run_id, t.due_at, t.kind FROM timers t JOIN runs r ON r.run_id = t.run_id
             WHERE r.object = ?1 ORDER BY t.due_at",
        )
        .map_err(sql_error)?;
    let rows = statement
        .query_map([object.to_string()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .map_err(sql_error)?;
    rows.map(|row| {
        let (run_id, due_at, kind) = row.map_err(sql_error)?;
        Ok(TimerRecord {
            run_id: parse_run_id(&run_id)?,
            due_at: Timestamp(due_at),
            kind,
        })
    })
    .collect()
}

pub(crate) fn next_timer_at(connection: &Connection) -> Result<Option<Timestamp>, StoreError> {
    connection
        .prepare_cached("SELECT MIN(due_at) FROM timers")
        .map_err(sql_error)?
        .query_row([], |row| row.get::<_, Option<i64>>(0))
        .map(|at| at.map(Timestamp))
        .map_err(sql_error)
}

pub(crate) fn pending_count(connection: &Connection) -> Result<u64, StoreError> {
    connection
        .prepare_cached("SELECT COUNT(*) FROM inbox_pending")
        .map_err(sql_error)?
        .query_row([], |row| row.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(sql_error)
}

pub(crate) fn save_rule_versions(
    connection: &Connection,
    versions: &[RuleVersion],
) -> Result<(), StoreError> {
    let mut insert = connection
        .prepare_cached(
            "INSERT INTO rule_versions (rule_id, version, file, source, loaded_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (rule_id, version) DO NOTHING",
        )
        .map_err(sql_error)?;
    for v in versions {
        insert
            .execute(params![
                v.rule_id,
                v.version,
                v.file,
                v.source,
                v.loaded_at.as_millis()
            ])
            .map_err(sql_error)?;
    }
    Ok(())
}

pub(crate) fn rule_version(
    connection: &Connection,
    rule_id: &str,
    version: &str,
) -> Result<Option<RuleVersion>, StoreError> {
    connection
        .prepare_cached(
            "SELECT file, source, loaded_at FROM rule_versions WHERE rule_id = ?1 AND version = ?2",
        )
        .map_err(sql_error)?
        .query_row(params![rule_id, version], |row| {
            Ok(RuleVersion {
                rule_id: rule_id.to_owned(),
                version: version.to_owned(),
                file: row.get(0)?,
                source: row.get(1)?,
                loaded_at: Timestamp(row.get(2)?),
            })
        })
        .optional()
        .map_err(sql_error)
}
