//! Applies inbox events to objects: current properties, property history and existence
//! marks, all in one [`UnitOfWork`] that also marks the events applied.
//!
//! Events come from the store oldest occurrence first. Out-of-order arrivals are safe
//! because the store keeps the newest value current (see the `Store` contract).

use std::sync::Arc;
use std::time::Duration;

use followthrough_core::{Clock, EventKind};
use followthrough_store::{ObjectMark, PendingEvent, PropertyWrite, Store, StoreError, UnitOfWork};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::journal;

/// Most events taken per unit of work. The applier shares the one SQLite writer with
/// ingest: small units let ingest answer sooner but leave the engine behind under load
/// (100: ingest 45k/s, engine 13k/s); large ones keep up at the cost of ingest latency
/// (4,000: ingest 25k/s, backlog near zero). See BENCHMARKS.md.
const BATCH: usize = 2_000;
/// How long the loop sleeps when nothing wakes it, in case a wake-up was missed.
const IDLE_POLL: Duration = Duration::from_millis(500);

pub struct Applier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Applier {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Applies up to one batch of pending events; returns how many.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let pending = self.store.pending_events(self.clock.now(), BATCH).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let count = pending.len();
        self.store.apply(self.unit_for(pending)).await?;
        Ok(count)
    }

    /// Applies until cancelled, woken by `wake` after each accepted webhook.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(error) => tracing::error!(%error, "applying events failed; will retry"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    fn unit_for(&self, pending: Vec<PendingEvent>) -> UnitOfWork {
        let now = self.clock.now();
        let mut unit = UnitOfWork {
            applied_at: Some(now),
            ..UnitOfWork::default()
        };
        for PendingEvent { seq, event, .. } in pending {
            let object = event.object.clone();
            let at = event.occurred_at;
            unit.marks.push(ObjectMark::Seen {
                object: object.clone(),
                at,
            });
            match &event.kind {
                EventKind::PropertyChange { property, value } => {
                    unit.property_writes.push(PropertyWrite {
                        object: object.clone(),
                        name: property.clone(),
                        value: value.clone(),
                        occurred_at: at,
                        event_id: event.id.clone(),
                    })
                }
                EventKind::Deleted => unit.marks.push(ObjectMark::Deleted {
                    object: object.clone(),
                    at,
                }),
                EventKind::Restored => unit.marks.push(ObjectMark::Restored {
                    object: object.clone(),
                    at,
                }),
                EventKind::AssociationChange { to, .. } => {
                    unit.journal
                        .push(journal::association_seen_from_other_end(now, &event, to));
                }
                EventKind::Created | EventKind::Merged { .. } => {}
            }
            // No journal row per applied event: the inbox row's `applied_at` records it,
            // and the trace renders it (see `trace::build`). It halves the writes per event.
            unit.applied.push(seq);
        }
        unit
    }
}
