//! Retention: journal rows and applied events' payloads older than
//! `privacy.retention_days` are deleted by the running server, a chunk at a time, so the
//! store does not grow forever and personal data in old payloads does not stay longer
//! than the team decided.

use std::sync::Arc;
use std::time::Duration;

use followthrough_core::{Clock, Timestamp};
use followthrough_store::{Pruned, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Rows per transaction: small enough that ingest never waits long behind a prune.
const CHUNK: usize = 2_000;

pub struct Retention {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub keep: Duration,
    pub every: Duration,
    /// Several instances on one store: only the one doing store-wide duties prunes.
    pub store_wide: Arc<crate::engine::StoreWideDuties>,
}

impl Retention {
    /// Prunes once now, then every `every`, until cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let pruned = if self.store_wide.are_mine() {
                self.prune_once(&shutdown).await
            } else {
                Ok(Pruned::default())
            };
            match pruned {
                Ok(pruned) if pruned.total() > 0 => tracing::info!(
                    journal_rows = pruned.journal_rows,
                    inbox_rows = pruned.inbox_rows,
                    "retention: old rows deleted"
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "retention: pruning failed; trying again later")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// Deletes everything older than the retention, chunk by chunk.
    pub async fn prune_once(&self, shutdown: &CancellationToken) -> Result<Pruned, StoreError> {
        let before = Timestamp(
            self.clock
                .now()
                .as_millis()
                .saturating_sub(i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX)),
        );
        let mut total = Pruned::default();
        while !shutdown.is_cancelled() {
            let pruned = self.store.prune(before, CHUNK).await?;
            crate::metrics::pruned(pruned);
            total.journal_rows += pruned.journal_rows;
            total.inbox_rows += pruned.inbox_rows;
            if pruned.journal_rows < CHUNK as u64 && pruned.inbox_rows < CHUNK as u64 {
                break;
            }
            // Let other writers in between chunks.
            tokio::task::yield_now().await;
        }
        Ok(total)
    }
}
