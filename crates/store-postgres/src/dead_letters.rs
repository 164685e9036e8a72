//! Dead letters and their replay, and the durable rotations (round-robin turns shared by
//! every instance).

use followthrough_core::Timestamp;
use followthrough_store::{DeadLetter, DeadLetterReason, JournalEntry, StoreError};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::{Result, corrupt};
use crate::outbox::{JOB_COLUMNS, job, last_status};
use crate::rows;

/// The dead letter columns [`dead_letter`] reads, then the [`JOB_COLUMNS`].
const DEAD_LETTER_SELECT: &str = "SELECT d.id, d.kind, d.message, d.last_status, d.last_response, \
     d.attempts, d.dead_at, d.replayed_at";

fn dead_letter_row(row: &PgRow) -> Result<DeadLetter> {
    let (seq, job) = job(row, 8)?;
    Ok(DeadLetter {
        id: row.try_get(0)?,
        seq,
        job,
        reason: DeadLetterReason {
            kind: row.try_get(1)?,
            message: row.try_get(2)?,
            last_status: last_status(row.try_get(3)?)?,
            last_response: row.try_get(4)?,
        },
        attempts: rows::count(row.try_get(5)?, "attempts")?,
        dead_at: Timestamp(row.try_get(6)?),
        replayed_at: row.try_get::<Option<i64>, _>(7)?.map(Timestamp),
    })
}

pub(crate) async fn dead_letters(pool: &PgPool, include_replayed: bool) -> Result<Vec<DeadLetter>> {
    // Two texts rather than `$1 OR ...`, so the waiting ones come from their index.
    let filter = if include_replayed {
        ""
    } else {
        "WHERE d.replayed_at IS NULL"
    };
    sqlx::query(&format!(
        "{DEAD_LETTER_SELECT}, {JOB_COLUMNS}
         FROM dead_letters d JOIN outbox o ON o.seq = d.seq {filter} ORDER BY d.id"
    ))
    .fetch_all(pool)
    .await?
    .iter()
    .map(dead_letter_row)
    .collect()
}

pub(crate) async fn dead_letter(pool: &PgPool, id: i64) -> Result<Option<DeadLetter>> {
    sqlx::query(&format!(
        "{DEAD_LETTER_SELECT}, {JOB_COLUMNS}
         FROM dead_letters d JOIN outbox o ON o.seq = d.seq WHERE d.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(dead_letter_row)
    .transpose()
}

/// Puts the jobs of these letters back in the outbox and journals each letter replayed.
/// A letter is marked replayed by a conditional UPDATE, so of two instances replaying it
/// at once, the second waits for the first's commit, then finds it replayed and skips.
pub(crate) async fn replay(
    connection: &mut PgConnection,
    ids: &[i64],
    now: Timestamp,
    journal: &[JournalEntry],
) -> Result<Vec<i64>> {
    let mut replayed = Vec::with_capacity(ids.len());
    for (index, &id) in ids.iter().enumerate() {
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE dead_letters SET replayed_at = $2 WHERE id = $1 AND replayed_at IS NULL
             RETURNING seq",
        )
        .bind(id)
        .bind(now.as_millis())
        .fetch_optional(&mut *connection)
        .await?;
        let Some(seq) = seq else { continue };
        // The indeterminate flag is left as it is: if the attempt that parked the job may
        // have taken effect, the replayed attempt checks before acting.
        let requeued = sqlx::query(
            "UPDATE outbox SET status = 'pending', next_at = $2, attempts = 0,
                 lease = NULL, lease_until = NULL
             WHERE seq = $1 AND status = 'dead'",
        )
        .bind(seq)
        .bind(now.as_millis())
        .execute(&mut *connection)
        .await?
        .rows_affected();
        // A job has at most one letter not yet replayed, and while it has one it is
        // dead; anything else means the two tables disagree.
        if requeued != 1 {
            return Err(corrupt(format!(
                "dead letter {id} waits for replay but its job {seq} is not dead"
            )));
        }
        replayed.push(id);
        // Only letters really replayed are journaled: a racing replay that lost writes
        // nothing.
        if let Some(entry) = journal.get(index) {
            crate::journal::insert(connection, std::slice::from_ref(entry)).await?;
        }
    }
    Ok(replayed)
}

/// The next turn of rotation `name` for the job `key`, in the caller's transaction.
///
/// The job's pick is inserted first, with a placeholder position: of two instances
/// asking for the same key at once, the second waits on the first's uncommitted pick and
/// then finds it, so the counter moves once per key however many ask.
pub(crate) async fn next_in_rotation(
    connection: &mut PgConnection,
    name: &str,
    size: u32,
    key: &str,
) -> Result<u32> {
    if size == 0 {
        return Err(StoreError::Backend(format!("rotation {name} has no members")).into());
    }
    let fresh = sqlx::query(
        "INSERT INTO rotation_picks (key, name, position) VALUES ($1, $2, -1)
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(name)
    .execute(&mut *connection)
    .await?
    .rows_affected()
        == 1;
    let position: i64 = if fresh {
        let position: i64 = sqlx::query_scalar(
            "INSERT INTO rotations (name, position) VALUES ($1, 0)
             ON CONFLICT (name) DO UPDATE SET position = rotations.position + 1
             RETURNING position",
        )
        .bind(name)
        .fetch_one(&mut *connection)
        .await?;
        sqlx::query("UPDATE rotation_picks SET position = $2 WHERE key = $1")
            .bind(key)
            .bind(position)
            .execute(&mut *connection)
            .await?;
        position
    } else {
        let (picked_in, position): (String, i64) =
            sqlx::query_as("SELECT name, position FROM rotation_picks WHERE key = $1")
                .bind(key)
                .fetch_one(&mut *connection)
                .await?;
        // A key is one job's, and a job asks one rotation; the same key in another
        // rotation is a caller's mistake (SQLite refuses it by its primary key too).
        if picked_in != name {
            return Err(StoreError::Conflict(format!(
                "key {key} already took a turn in rotation {picked_in}, not {name}"
            ))
            .into());
        }
        position
    };
    u32::try_from(position.rem_euclid(i64::from(size)))
        .map_err(|_| corrupt(format!("rotation {name} at {position}")))
}
