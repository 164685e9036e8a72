//! What the fake HubSpot holds (owners, objects, associations) and the knobs tests turn
//! (failures, delay, rate limit, page size), behind one mutex that no handler holds
//! across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::RecordedRequest;

use super::object_type::ObjectType;

/// HubSpot's own cap on association pages.
pub(crate) const MAX_ASSOCIATION_PAGE: usize = 500;

/// An owner (a HubSpot user who can own records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeOwner {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// `(team id, team name)`; the first one is the owner's primary team.
    pub teams: Vec<(String, String)>,
}

/// How the next request(s) should fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
}

impl Failure {
    /// Answer with `status` and the body HubSpot sends with it: the rate-limit JSON for
    /// 429 (without `Retry-After`, as HubSpot sends it), an HTML gateway page for
    /// 502/503/504/52x, the JSON error shape otherwise.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }

    /// Add a `Retry-After` header with this exact value (e.g. `"2"`, or something
    /// malformed to test a client's parsing).
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }
}

pub(crate) struct StoredOwner {
    pub owner: FakeOwner,
    pub user_id: u64,
    pub created_at: String,
    pub updated_at: String,
}

pub(crate) struct StoredObject {
    pub properties: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A rolling ten-second window, like HubSpot's TEN_SECONDLY_ROLLING policy.
pub(crate) struct RateLimit {
    pub max: u32,
    accepted: VecDeque<Instant>,
}

pub(crate) const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(10);

impl RateLimit {
    fn new(max: u32) -> Self {
        Self {
            max,
            accepted: VecDeque::new(),
        }
    }

    /// Counts the request if the window has room and returns how many remain; `None`
    /// when it must be answered 429 (rejected requests are not counted).
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u32> {
        while let Some(&oldest) = self.accepted.front() {
            if now.duration_since(oldest) < RATE_LIMIT_WINDOW {
                break;
            }
            self.accepted.pop_front();
        }
        let used = u32::try_from(self.accepted.len()).unwrap_or(u32::MAX);
        if used >= self.max {
            return None;
        }
        self.accepted.push_back(now);
        Some(self.max - used - 1)
    }
}

type AssociationKey = (ObjectType, String, ObjectType);

pub(crate) struct State {
    pub owners: BTreeMap<String, StoredOwner>,
    pub objects: HashMap<(ObjectType, String), StoredObject>,
    /// Target ids in the order they were associated, without duplicates.
    pub associations: HashMap<AssociationKey, Vec<String>>,
    pub failures: VecDeque<Failure>,
    pub delay: Duration,
    pub rate_limit: Option<RateLimit>,
    pub max_page_size: usize,
    pub requests: Vec<RecordedRequest>,
    next_user_id: u64,
}

impl State {
    fn new() -> Self {
        Self {
            owners: BTreeMap::new(),
            objects: HashMap::new(),
            associations: HashMap::new(),
            failures: VecDeque::new(),
            delay: Duration::ZERO,
            rate_limit: None,
            max_page_size: MAX_ASSOCIATION_PAGE,
            requests: Vec::new(),
            next_user_id: 9_586_504,
        }
    }

    pub(crate) fn add_owner(&mut self, owner: FakeOwner) {
        let now = now();
        let user_id = self.next_user_id;
        self.next_user_id += 1;
        let stored = StoredOwner {
            owner,
            user_id,
            created_at: now.clone(),
            updated_at: now,
        };
        self.owners.insert(stored.owner.id.clone(), stored);
    }

    /// Replaces the object's properties, keeping its creation time.
    pub(crate) fn set_object(
        &mut self,
        kind: ObjectType,
        id: &str,
        properties: BTreeMap<String, String>,
    ) {
        let now = now();
        let created_at = match self.objects.get(&(kind, id.to_owned())) {
            Some(existing) => existing.created_at.clone(),
            None => now.clone(),
        };
        let object = StoredObject {
            properties,
            created_at,
            updated_at: now,
        };
        self.objects.insert((kind, id.to_owned()), object);
    }

    pub(crate) fn associate_one_way(
        &mut self,
        from: ObjectType,
        from_id: &str,
        to: ObjectType,
        to_id: &str,
    ) {
        let targets = self
            .associations
            .entry((from, from_id.to_owned(), to))
            .or_default();
        if !targets.iter().any(|id| id == to_id) {
            targets.push(to_id.to_owned());
        }
    }

    pub(crate) fn set_rate_limit(&mut self, max_per_10s: Option<u32>) {
        self.rate_limit = max_per_10s.map(RateLimit::new);
    }
}

/// The fake's shared half: what the handlers and the test's handle both reach.
pub(crate) struct Shared {
    pub token: String,
    pub base_url: String,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(token: String, base_url: String) -> Self {
        Self {
            token,
            base_url,
            state: Mutex::new(State::new()),
        }
    }

    /// The state; a panic in another test thread must not hide this test's requests.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Now as HubSpot writes times: `2019-10-30T03:30:17.883Z`.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
