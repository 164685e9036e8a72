//! Sharing the engine's work between instances: partition leases and the fence a unit
//! of work is committed under.
//!
//! # Why partitions leased as a whole, not a lock per object
//!
//! The issue left the choice between advisory locks keyed by object and a claim on the
//! object. An engine batch carries thousands of objects; locking each one would cost a
//! lock per object per batch and, since both instances read the same oldest pending
//! events, the second instance would find most of them locked and do nothing useful.
//! Instead the objects are hashed into [`WORK_PARTITIONS`] partitions (`ft_partition`
//! in the schema) and each instance leases a share of the partitions: it reads only its
//! partitions' events and timers, so instances never compete for the same rows, and one
//! object is only ever processed by the instance leasing its partition.
//!
//! A lease expires unless renewed, so a killed instance's partitions pass to the others
//! after `lease_ms`. What makes that safe is the fence: a unit carries the leases (with
//! their epochs) it was prepared under, and [`check_fence`] takes a share lock on those
//! lease rows at the start of the commit. A partition taken over meanwhile has a new
//! epoch, so the late unit is refused whole and its events stay pending for the new
//! holder; a takeover that comes while the unit commits waits for the commit to end.
//!
//! Runs are the one thing a unit may change outside its partitions (an engagement
//! restarts its contact's run; a rule keyed by company reaches other objects' runs).
//! Those writes are guarded by the run's revision instead (see `runs::apply`).
//!
//! Times here are the database's clock, so instances whose clocks differ agree on when
//! a lease ends.

use followthrough_store::{Fence, PartitionLease, StoreError, WORK_PARTITIONS, WorkShare};
use sqlx::{PgConnection, Row};

use crate::error::Result;

/// The database's clock in epoch milliseconds.
const DB_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// An instance not seen for this many lease periods is forgotten.
const FORGET_AFTER_LEASES: i64 = 10;

/// Renews `holder`'s leases, and takes or gives back partitions to reach its fair share
/// of the live instances (each counts until its own lease would have ended).
pub(crate) async fn claim(
    connection: &mut PgConnection,
    holder: &str,
    lease_ms: i64,
) -> Result<WorkShare> {
    let lease_ms = lease_ms.max(1);
    let now: i64 = sqlx::query_scalar(&format!("SELECT {DB_NOW}"))
        .fetch_one(&mut *connection)
        .await?;
    sqlx::query(
        "INSERT INTO engine_instances (holder, seen_at, lease_ms) VALUES ($1, $2, $3)
         ON CONFLICT (holder) DO UPDATE SET seen_at = excluded.seen_at, lease_ms = excluded.lease_ms",
    )
    .bind(holder)
    .bind(now)
    .bind(lease_ms)
    .execute(&mut *connection)
    .await?;
    sqlx::query("DELETE FROM engine_instances WHERE seen_at + $2 * lease_ms < $1")
        .bind(now)
        .bind(FORGET_AFTER_LEASES)
        .execute(&mut *connection)
        .await?;
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM engine_instances WHERE seen_at + lease_ms >= $1")
            .bind(now)
            .fetch_one(&mut *connection)
            .await?;
    let live = live.max(1);
    let fair_share = (i64::from(WORK_PARTITIONS) + live - 1) / live;

    // Renewing waits for this instance's own commit in flight, if any (it holds its
    // lease rows in share mode); never for another instance's.
    let mut held = leases(
        sqlx::query(
            "UPDATE engine_leases SET lease_until = $2 WHERE holder = $1
             RETURNING part, epoch",
        )
        .bind(holder)
        .bind(now + lease_ms)
        .fetch_all(&mut *connection)
        .await?,
    )?;
    held.sort_by_key(|lease| lease.partition);
    let held_count = i64::try_from(held.len()).unwrap_or(i64::MAX);
    if held_count > fair_share {
        // More instances than when these were taken: give back the highest partitions,
        // for a newcomer to take at its next claim.
        let keep = usize::try_from(fair_share).unwrap_or(usize::MAX);
        let released: Vec<i16> = held.split_off(keep).iter().map(|l| l.partition).collect();
        sqlx::query(
            "UPDATE engine_leases SET holder = NULL, lease_until = 0
             WHERE holder = $1 AND part = ANY($2)",
        )
        .bind(holder)
        .bind(&released)
        .execute(&mut *connection)
        .await?;
    } else if held_count < fair_share {
        // Free or expired partitions; one whose holder is committing right now is
        // skipped (its commit holds the row), and taken at a later claim.
        let taken = leases(
            sqlx::query(
                "UPDATE engine_leases SET holder = $1, epoch = epoch + 1, lease_until = $3
                 WHERE part IN (
                     SELECT part FROM engine_leases
                     WHERE holder IS NULL OR lease_until < $2
                     ORDER BY part LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING part, epoch",
            )
            .bind(holder)
            .bind(now)
            .bind(now + lease_ms)
            .bind(fair_share - held_count)
            .fetch_all(&mut *connection)
            .await?,
        )?;
        held.extend(taken);
        held.sort_by_key(|lease| lease.partition);
    }
    Ok(WorkShare::Leased(Fence {
        holder: holder.to_owned(),
        leases: held,
    }))
}

/// Gives back every lease `holder` has and forgets it as an instance.
pub(crate) async fn release(connection: &mut PgConnection, holder: &str) -> Result<()> {
    sqlx::query("UPDATE engine_leases SET holder = NULL, lease_until = 0 WHERE holder = $1")
        .bind(holder)
        .execute(&mut *connection)
        .await?;
    sqlx::query("DELETE FROM engine_instances WHERE holder = $1")
        .bind(holder)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Refuses the unit ([`StoreError::Conflict`]) unless every lease of `fence` is still
/// held at its epoch, and keeps those rows from changing hands until the transaction
/// ends. A lease past its time that nobody took is still held.
pub(crate) async fn check_fence(connection: &mut PgConnection, fence: &Fence) -> Result<()> {
    if fence.leases.is_empty() {
        return Ok(());
    }
    let (parts, epochs): (Vec<i16>, Vec<i64>) = fence
        .leases
        .iter()
        .map(|lease| (lease.partition, lease.epoch))
        .unzip();
    // In partition order, as `claim` locks them, so the two cannot deadlock.
    let still_held = sqlx::query(
        "SELECT part FROM engine_leases
         WHERE holder = $1 AND (part, epoch) IN (SELECT * FROM UNNEST($2::SMALLINT[], $3::BIGINT[]))
         ORDER BY part FOR SHARE",
    )
    .bind(&fence.holder)
    .bind(&parts)
    .bind(&epochs)
    .fetch_all(&mut *connection)
    .await?
    .len();
    if still_held == fence.leases.len() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "engine lease lost: {} of {} partitions changed hands",
            fence.leases.len() - still_held,
            fence.leases.len()
        ))
        .into())
    }
}

fn leases(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<PartitionLease>> {
    rows.iter()
        .map(|row| {
            Ok(PartitionLease {
                partition: row.try_get(0)?,
                epoch: row.try_get(1)?,
            })
        })
        .collect()
}
