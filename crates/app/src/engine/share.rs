//! This instance's share of the engine's work (`Store::claim_work`), renewed as the
//! loop runs, and the store-wide duties that go with partition 0.

use std::time::Duration;

use followthrough_store::{StoreError, WorkShare};

use super::Engine;

/// Whether this instance does the duties that must run once for the whole store, not
/// once per instance: the alerts about dead letters and the outbox backlog, and
/// retention. On a shared store the instance whose engine holds partition 0 does them
/// (so they move with it when it dies); alone, the instance always does.
#[derive(Debug)]
pub struct StoreWideDuties(std::sync::atomic::AtomicBool);

impl Default for StoreWideDuties {
    fn default() -> Self {
        Self(std::sync::atomic::AtomicBool::new(true))
    }
}

impl StoreWideDuties {
    pub fn are_mine(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn follow(&self, share: &WorkShare) {
        let mine = share.partitions().is_none_or(|p| p.contains(&0));
        self.0.store(mine, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Engine {
    /// Renews this instance's share of the work every quarter of the lease (after the
    /// batch in flight lands, so it is not fenced out by the instance's own renewal).
    pub(super) async fn renew_share(&mut self) -> Result<WorkShare, StoreError> {
        let every = Duration::from_millis(u64::try_from(self.parts.lease_ms / 4).unwrap_or(0));
        if let Some((share, renewed)) = &self.share
            && renewed.elapsed() < every
        {
            return Ok(share.clone());
        }
        self.settle().await?;
        let share = self
            .parts
            .store
            .claim_work(&self.parts.holder, self.parts.lease_ms)
            .await?;
        let before = self.share.as_ref().map(|(s, _)| s.partitions());
        if before != Some(share.partitions())
            && let Some(partitions) = share.partitions()
        {
            tracing::info!(
                holder = %self.parts.holder,
                partitions = partitions.len(),
                of = followthrough_store::WORK_PARTITIONS,
                "engine work share changed"
            );
        }
        self.parts.store_wide.follow(&share);
        self.share = Some((share.clone(), std::time::Instant::now()));
        Ok(share)
    }
}

#[cfg(test)]
mod tests {
    use followthrough_store::{Fence, PartitionLease, WorkShare};

    use super::StoreWideDuties;

    #[test]
    fn store_wide_duties_go_with_partition_zero() {
        let leased = |partitions: &[i16]| {
            WorkShare::Leased(Fence {
                holder: "a".into(),
                leases: partitions
                    .iter()
                    .map(|&partition| PartitionLease {
                        partition,
                        epoch: 1,
                    })
                    .collect(),
            })
        };
        let duties = StoreWideDuties::default();
        assert!(duties.are_mine(), "alone until told otherwise");
        duties.follow(&leased(&[1, 2, 3]));
        assert!(!duties.are_mine());
        duties.follow(&leased(&[0, 5]));
        assert!(duties.are_mine());
        duties.follow(&leased(&[]));
        assert!(!duties.are_mine(), "standing by");
        duties.follow(&WorkShare::All);
        assert!(duties.are_mine());
    }
}
