//! The inbox: appending a webhook's events once each, and reading what is pending.

use followthrough_core::{Event, ObjectRef, Timestamp};
use followthrough_store::{AppendOutcome, HeldBack, JournalEntry, PendingEvent, ReceivedEvent};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::Result;
use crate::rows::{self, EVENT_COLUMNS, limit};

/// A batch of events laid out as columns, JSON already serialized, so a retried
/// transaction does not serialize again and one statement inserts them all.
pub(crate) struct InboxRows {
    id: Vec<String>,
    source: Vec<String>,
    dedup_key: Vec<String>,
    object: Vec<String>,
    kind: Vec<&'static str>,
    occurred_at: Vec<i64>,
    received_at: Vec<i64>,
    json: Vec<String>,
}

impl InboxRows {
    pub(crate) fn prepare(events: &[Event]) -> Result<Self> {
        let mut rows = InboxRows {
            id: Vec::with_capacity(events.len()),
            source: Vec::with_capacity(events.len()),
            dedup_key: Vec::with_capacity(events.len()),
            object: Vec::with_capacity(events.len()),
            kind: Vec::with_capacity(events.len()),
            occurred_at: Vec::with_capacity(events.len()),
            received_at: Vec::with_capacity(events.len()),
            json: Vec::with_capacity(events.len()),
        };
        for event in events {
            rows.id.push(event.id.to_string());
            rows.source.push(event.source.clone());
            rows.dedup_key.push(event.dedup_key.clone());
            rows.object.push(event.object.to_string());
            rows.kind.push(event.kind.name());
            rows.occurred_at.push(event.occurred_at.as_millis());
            rows.received_at.push(event.received_at.as_millis());
            rows.json.push(rows::body_json(event)?);
        }
        Ok(rows)
    }

    fn len(&self) -> usize {
        self.id.len()
    }
}

/// Inserts the events the inbox does not hold yet, queues them as pending, and journals
/// the request with its counts. The unique constraint on `(source, dedup_key)` decides
/// what is a duplicate: a concurrent delivery of the same event waits for this one's
/// commit and then inserts nothing.
pub(crate) async fn append(
    connection: &mut PgConnection,
    rows: &InboxRows,
    journal: &JournalEntry,
) -> Result<AppendOutcome> {
    let request_id = journal.detail.get("request_id").and_then(Value::as_str);
    // Two deliveries of one webhook may list its events in different orders. Inserted in
    // those orders, each would wait on a key the other holds and PostgreSQL would break
    // the deadlock by failing one. So rows go in in key order, the order every writer
    // uses, while their seq (arrival order) is drawn in the batch's order first: the
    // sequence is read while the batch is scanned, and the volatile `nextval` keeps the
    // CTE from being folded into the sorted INSERT. A duplicate's seq goes unused; seq
    // orders arrivals and need not be dense.
    let inserted = sqlx::query(
        "WITH batch AS (
             SELECT b.*, nextval(pg_get_serial_sequence('inbox', 'seq')) AS seq
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
                         $6::BIGINT[], $7::BIGINT[], $8::TEXT[])
                 WITH ORDINALITY AS b (id, source, dedup_key, object, kind, occurred_at,
                                       received_at, event_json, ord)
         ), inserted AS (
             INSERT INTO inbox (seq, id, source, dedup_key, object, kind, occurred_at,
                                received_at, request_id, event_json)
             OVERRIDING SYSTEM VALUE
             SELECT seq, id, source, dedup_key, object, kind, occurred_at, received_at, $9,
                    event_json
             FROM batch ORDER BY source, dedup_key, ord
             ON CONFLICT (source, dedup_key) DO NOTHING
             RETURNING seq, occurred_at
         )
         INSERT INTO inbox_pending (occurred_at, seq) SELECT occurred_at, seq FROM inserted",
    )
    .bind(&rows.id)
    .bind(&rows.source)
    .bind(&rows.dedup_key)
    .bind(&rows.object)
    .bind(&rows.kind)
    .bind(&rows.occurred_at)
    .bind(&rows.received_at)
    .bind(&rows.json)
    .bind(request_id)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    let inserted = usize::try_from(inserted).unwrap_or(usize::MAX);
    let outcome = AppendOutcome {
        inserted,
        duplicates: rows.len().saturating_sub(inserted),
    };
    let mut journal = journal.clone();
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
    crate::journal::insert(connection, std::slice::from_ref(&journal)).await?;
    Ok(outcome)
}

/// Pending events in the engine's order; only those of `partitions` when given (an
/// instance's share of the work, see `work.rs`); up to `count` besides what `held` holds
/// (the batches in flight's events, and the later events of their objects), which is
/// not parsed.
pub(crate) async fn pending_events(
    pool: &PgPool,
    now: Timestamp,
    count: usize,
    partitions: Option<Vec<i16>>,
    held: &HeldBack,
) -> Result<Vec<PendingEvent>> {
    // An object with an event deferred past `now` is skipped whole: its later events
    // must not overtake the one that waits.
    let rows = sqlx::query(&format!(
        "SELECT p.seq, COALESCE(d.deferrals, 0), {EVENT_COLUMNS} FROM inbox_pending p
         JOIN inbox i ON i.seq = p.seq
         LEFT JOIN inbox_deferred d ON d.seq = p.seq
         WHERE NOT EXISTS (SELECT 1 FROM inbox_deferred w
                           WHERE w.object = i.object AND w.not_before > $1)
           AND ($3::SMALLINT[] IS NULL OR ft_partition(i.object) = ANY($3))
         ORDER BY p.occurred_at, p.seq LIMIT $2"
    ))
    .bind(now.as_millis())
    .bind(limit(count + held.seqs.len()))
    .bind(partitions)
    .fetch_all(pool)
    .await?;
    let mut events = Vec::with_capacity(count.min(rows.len()));
    for row in &rows {
        let seq: i64 = row.try_get(0)?;
        if held.seqs.contains(&seq)
            || held.holds_object(row.try_get::<&str, _>(2 + rows::EVENT_OBJECT_COLUMN)?)
        {
            continue;
        }
        events.push(PendingEvent {
            seq,
            deferrals: rows::count(row.try_get(1)?, "deferrals")?,
            event: rows::event(row, 2)?,
        });
        if events.len() == count {
            break;
        }
    }
    Ok(events)
}

pub(crate) async fn pending_count(pool: &PgPool) -> Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox_pending")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(count).unwrap_or_default())
}

pub(crate) async fn received_events(
    pool: &PgPool,
    object: &ObjectRef,
) -> Result<Vec<ReceivedEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT i.request_id, a.applied_at, {EVENT_COLUMNS}
         FROM inbox i LEFT JOIN inbox_applied a ON a.seq = i.seq
         WHERE i.object = $1 ORDER BY i.seq"
    ))
    .bind(object.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ReceivedEvent {
                request_id: row.try_get(0)?,
                applied_at: row.try_get::<Option<i64>, _>(1)?.map(Timestamp),
                event: rows::event(row, 2)?,
            })
        })
        .collect()
}

/// Marks events applied: out of the pending queue, into the applied table, and their
/// deferrals (if any) forgotten.
pub(crate) async fn mark_applied(
    connection: &mut PgConnection,
    seqs: &[i64],
    applied_at: Timestamp,
) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    // The pending table's key starts with occurred_at (the engine's reading order): the
    // join finds each row's full key from the inbox.
    sqlx::query(
        "DELETE FROM inbox_pending p USING inbox i
         WHERE i.seq = ANY($1) AND p.seq = i.seq AND p.occurred_at = i.occurred_at",
    )
    .bind(seqs)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "INSERT INTO inbox_applied (seq, applied_at) SELECT seq, $2 FROM UNNEST($1::BIGINT[]) AS s (seq)
         ON CONFLICT (seq) DO NOTHING",
    )
    .bind(seqs)
    .bind(applied_at.as_millis())
    .execute(&mut *connection)
    .await?;
    sqlx::query("DELETE FROM inbox_deferred WHERE seq = ANY($1)")
        .bind(seqs)
        .execute(&mut *connection)
        .await?;
    Ok(())
}
