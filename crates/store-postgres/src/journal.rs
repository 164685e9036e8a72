//! The journal: appended in the caller's transaction, read per object or per request.

use followthrough_core::ObjectRef;
use followthrough_store::JournalEntry;
use sqlx::{PgConnection, PgPool};

use crate::error::Result;
use crate::rows::{JOURNAL_COLUMNS, journal_entry, limit};

/// Appends `entries` in their order (their `seq` is the order traces show) with one
/// statement, whatever their number.
pub(crate) async fn insert(connection: &mut PgConnection, entries: &[JournalEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut at = Vec::with_capacity(entries.len());
    let mut object = Vec::with_capacity(entries.len());
    let mut kind = Vec::with_capacity(entries.len());
    let mut summary = Vec::with_capacity(entries.len());
    let mut detail = Vec::with_capacity(entries.len());
    for entry in entries {
        at.push(entry.at.as_millis());
        object.push(entry.object.as_ref().map(ToString::to_string));
        kind.push(entry.kind.as_str());
        summary.push(entry.summary.as_str());
        detail.push(entry.detail.to_string());
    }
    sqlx::query(
        "INSERT INTO journal (at, object, kind, summary, detail_json)
         SELECT at, object, kind, summary, detail
         FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])
             WITH ORDINALITY AS j (at, object, kind, summary, detail, ord)
         ORDER BY ord",
    )
    .bind(at)
    .bind(object)
    .bind(kind)
    .bind(summary)
    .bind(detail)
    .execute(connection)
    .await?;
    Ok(())
}

pub(crate) async fn journal_for(pool: &PgPool, object: &ObjectRef) -> Result<Vec<JournalEntry>> {
    sqlx::query(&format!(
        "SELECT {JOURNAL_COLUMNS} FROM journal WHERE object = $1 ORDER BY seq"
    ))
    .bind(object.to_string())
    .fetch_all(pool)
    .await?
    .iter()
    .map(journal_entry)
    .collect()
}

pub(crate) async fn recent_requests(pool: &PgPool, count: usize) -> Result<Vec<JournalEntry>> {
    sqlx::query(&format!(
        "SELECT {JOURNAL_COLUMNS} FROM journal WHERE object IS NULL ORDER BY seq DESC LIMIT $1"
    ))
    .bind(limit(count))
    .fetch_all(pool)
    .await?
    .iter()
    .map(journal_entry)
    .collect()
}
