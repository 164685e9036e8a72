//! What the fake Pipedrive holds (deals, persons, activities, notes) and the knobs tests
//! turn, behind one mutex that no handler holds across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::RecordedRequest;

/// How the next request(s) should fail.
#[derive(Debug, Clone, PartialEq)]
pub struct PipedriveFailure {
    pub(crate) kind: FailureKind,
    pub(crate) retry_after: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FailureKind {
    Status(u16),
    AppliedThenHang(Duration),
}

impl PipedriveFailure {
    /// Answer with `status` and Pipedrive's `{"success":false,"error":..}` body (an HTML
    /// page for 502/503/504, as from its edge).
    pub fn status(status: u16) -> Self {
        Self {
            kind: FailureKind::Status(status),
            retry_after: None,
        }
    }

    /// The request takes effect, then the answer is held for `hold`.
    pub fn applied_then_hang(hold: Duration) -> Self {
        Self {
            kind: FailureKind::AppliedThenHang(hold),
            retry_after: None,
        }
    }

    /// Add a `Retry-After` header with this exact value.
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }
}

/// Deals and persons: the record types the fake lets a client update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Deal,
    Person,
}

impl Kind {
    pub(crate) fn parse(plural: &str) -> Option<Self> {
        match plural {
            "deals" => Some(Kind::Deal),
            "persons" => Some(Kind::Person),
            _ => None,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Deal => "Deal",
            Kind::Person => "Person",
        }
    }
}

pub(crate) struct State {
    pub records: BTreeMap<(Kind, u64), Map<String, Json>>,
    pub activities: Vec<Json>,
    pub notes: Vec<Json>,
    pub failures: VecDeque<PipedriveFailure>,
    pub delay: Duration,
    pub requests: Vec<RecordedRequest>,
    next_id: u64,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            records: BTreeMap::new(),
            activities: Vec::new(),
            notes: Vec::new(),
            failures: VecDeque::new(),
            delay: Duration::ZERO,
            requests: Vec::new(),
            next_id: 1_000,
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The fake's shared half: what the handlers and the test's handle both reach.
pub(crate) type Shared = crate::shared::Shared<State>;

/// Now as API v1 writes times: `2024-05-01 09:30:00` (UTC).
pub(crate) fn v1_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Now as API v2 writes times: `2024-05-01T09:30:00Z`.
pub(crate) fn v2_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
