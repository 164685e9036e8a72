//! What the people running followthrough ask of the store: counts for `/metrics`, the
//! health summary and the console; finding a lead; listing runs; and pruning what the
//! retention setting no longer keeps.

use followthrough_core::Timestamp;

/// Counts taken in one read. Every figure comes from an index, so a scrape costs the
/// same with a million completed runs as with ten (finished runs are counted by the
/// process as they end, in the metrics, not here).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Events received and not yet applied (deferred ones included).
    pub inbox_pending: u64,
    /// Active runs (`new`, `running`, `waiting`) per rule and status.
    pub active_runs: Vec<ActiveRunCount>,
    pub timers_pending: u64,
    pub next_timer_at: Option<Timestamp>,
    /// Pending outbox jobs per connector.
    pub outbox_pending: Vec<ConnectorBacklog>,
    /// Dead letters waiting for a person (not replayed).
    pub dead_letters: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActiveRunCount {
    pub rule_id: String,
    pub status: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorBacklog {
    pub connector: String,
    pub pending: u64,
    /// When the oldest pending job was queued: how long the backlog has been waiting.
    pub oldest_created_at: Option<Timestamp>,
}

impl StoreStats {
    pub fn active_runs_total(&self) -> u64 {
        self.active_runs.iter().map(|c| c.count).sum()
    }

    pub fn outbox_pending_total(&self) -> u64 {
        self.outbox_pending.iter().map(|c| c.pending).sum()
    }

    /// The oldest pending job's queueing time across connectors.
    pub fn oldest_pending_at(&self) -> Option<Timestamp> {
        self.outbox_pending
            .iter()
            .filter_map(|c| c.oldest_created_at)
            .min()
    }
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    pub rule_id: Option<String>,
    /// A run status (`waiting`...), or `active` for the three active ones.
    pub status: Option<String>,
    /// Only runs created before this run (the previous page's last id).
    pub before: Option<followthrough_core::RunId>,
    pub limit: usize,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub journal_rows: u64,
    /// Applied events' stored payloads (inbox rows). Unapplied events are never pruned.
    pub inbox_rows: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.journal_rows + self.inbox_rows
    }
}
