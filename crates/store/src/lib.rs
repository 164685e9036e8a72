//! The store: everything followthrough keeps, behind one trait with two backends
//! (SQLite embedded, PostgreSQL for several instances).
//!
//! The trait is deliberately coarse. Callers hand the store whole units of work
//! ([`InboxBatch`], [`UnitOfWork`]) and each is committed in one transaction, so no
//! backend leaks its transaction type and no caller can commit half of a change.
//!
//! [`conformance`] holds the tests every backend must pass (feature `conformance`).

mod admin;
mod model;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use admin::{ActiveRunCount, ConnectorBacklog, Pruned, RunFilter, StoreStats};
pub use model::{
    AppendOutcome, AssociationSync, AssociationWrite, AttemptRecord, AttemptResult, CachedOwner,
    ClaimedJob, DeadLetter, DeadLetterReason, Deferral, DueTimer, Fence, HeldBack, HeldTimers,
    InboxBatch, JobStatus, JournalEntry, JournalKind, KeyedJob, ObjectMark, ObjectState,
    ObjectsView, OutboxEntry, OutboxJob, PartitionLease, PendingEvent, PropertyHistoryEntry,
    PropertyState, PropertyWrite, ReceivedEvent, RuleVersion, RunRecord, TimerKeys, TimerRecord,
    UnitOfWork, WORK_PARTITIONS, WorkShare,
};
pub use store::{Store, StoreError};
