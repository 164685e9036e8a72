//! What the engine gathers around events: links between objects, cached owners,
//! deferred events, and the rule versions runs started with.

use followthrough_core::{ObjectRef, Timestamp};
use followthrough_store::{CachedOwner, RuleVersion, UnitOfWork};
use sqlx::{PgConnection, PgPool, Row};

use crate::error::Result;

const ADD_LINK: &str = "INSERT INTO links (from_object, to_object, to_type, updated_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (from_object, to_object) DO UPDATE SET updated_at = excluded.updated_at";

/// Writes the context part of a unit: links, link lists, owners, deferrals.
pub(crate) async fn apply(connection: &mut PgConnection, unit: &UnitOfWork) -> Result<()> {
    for link in &unit.associations {
        // Links go both ways, as CRM associations do.
        for (from, to) in [(&link.from, &link.to), (&link.to, &link.from)] {
            if link.removed {
                sqlx::query("DELETE FROM links WHERE from_object = $1 AND to_object = $2")
                    .bind(from.to_string())
                    .bind(to.to_string())
                    .execute(&mut *connection)
                    .await?;
            } else {
                add_link(connection, from, to, link.at).await?;
            }
        }
    }
    for sync in &unit.association_syncs {
        // The fetched list replaces what was known of this type.
        sqlx::query("DELETE FROM links WHERE from_object = $1 AND to_type = $2")
            .bind(sync.object.to_string())
            .bind(&sync.to_type)
            .execute(&mut *connection)
            .await?;
        for linked in &sync.linked {
            add_link(connection, &sync.object, linked, sync.at).await?;
            add_link(connection, linked, &sync.object, sync.at).await?;
        }
        sqlx::query(
            "INSERT INTO link_syncs (object, to_type, synced_at) VALUES ($1, $2, $3)
             ON CONFLICT (object, to_type) DO UPDATE SET synced_at = excluded.synced_at",
        )
        .bind(sync.object.to_string())
        .bind(&sync.to_type)
        .bind(sync.at.as_millis())
        .execute(&mut *connection)
        .await?;
    }
    for owner in &unit.owners {
        let teams = serde_json::Value::from(owner.teams.clone()).to_string();
        sqlx::query(
            "INSERT INTO owners (owner_id, email, name, teams_json, fetched_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner_id) DO UPDATE SET email = excluded.email, name = excluded.name,
                 teams_json = excluded.teams_json, fetched_at = excluded.fetched_at",
        )
        .bind(&owner.id)
        .bind(&owner.email)
        .bind(&owner.name)
        .bind(teams)
        .bind(owner.fetched_at.as_millis())
        .execute(&mut *connection)
        .await?;
    }
    for deferral in &unit.deferrals {
        sqlx::query(
            "INSERT INTO inbox_deferred (seq, object, not_before, deferrals) VALUES ($1, $2, $3, 1)
             ON CONFLICT (seq) DO UPDATE SET not_before = excluded.not_before,
                 deferrals = inbox_deferred.deferrals + 1",
        )
        .bind(deferral.seq)
        .bind(deferral.object.to_string())
        .bind(deferral.not_before.as_millis())
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

async fn add_link(
    connection: &mut PgConnection,
    from: &ObjectRef,
    to: &ObjectRef,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(ADD_LINK)
        .bind(from.to_string())
        .bind(to.to_string())
        .bind(&to.object_type)
        .bind(at.as_millis())
        .execute(connection)
        .await?;
    Ok(())
}

/// Cached owners with these ids, in the order asked (unknown ids are left out).
pub(crate) async fn owners(pool: &PgPool, ids: &[String]) -> Result<Vec<CachedOwner>> {
    let rows = sqlx::query(
        "SELECT o.owner_id, o.email, o.name, o.teams_json, o.fetched_at
         FROM UNNEST($1::TEXT[]) WITH ORDINALITY AS wanted (owner_id, ord)
         JOIN owners o ON o.owner_id = wanted.owner_id
         ORDER BY wanted.ord",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let teams: String = row.try_get(3)?;
            Ok(CachedOwner {
                id: row.try_get(0)?,
                email: row.try_get(1)?,
                name: row.try_get(2)?,
                teams: serde_json::from_str(&teams)
                    .map_err(|e| crate::error::corrupt(format!("owner teams: {e}")))?,
                fetched_at: Timestamp(row.try_get(4)?),
            })
        })
        .collect()
}

/// Keeps these rule versions; a version already kept is left as it is.
pub(crate) async fn save_rule_versions(
    connection: &mut PgConnection,
    versions: &[RuleVersion],
) -> Result<()> {
    for v in versions {
        sqlx::query(
            "INSERT INTO rule_versions (rule_id, version, file, source, loaded_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (rule_id, version) DO NOTHING",
        )
        .bind(&v.rule_id)
        .bind(&v.version)
        .bind(&v.file)
        .bind(&v.source)
        .bind(v.loaded_at.as_millis())
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

pub(crate) async fn rule_version(
    pool: &PgPool,
    rule_id: &str,
    version: &str,
) -> Result<Option<RuleVersion>> {
    let row = sqlx::query(
        "SELECT file, source, loaded_at FROM rule_versions WHERE rule_id = $1 AND version = $2",
    )
    .bind(rule_id)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(RuleVersion {
            rule_id: rule_id.to_owned(),
            version: version.to_owned(),
            file: row.try_get(0)?,
            source: row.try_get(1)?,
            loaded_at: Timestamp(row.try_get(2)?),
        })
    })
    .transpose()
}
