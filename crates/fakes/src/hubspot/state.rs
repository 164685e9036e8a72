//! What the fake HubSpot holds (owners, objects with their property history,
//! associations, lists, sequence enrollments) and the knobs tests turn (failures, chaos,
//! delay, rate limit, page size, search lag), behind one mutex that no handler holds
//! across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::RecordedRequest;

use super::chaos::ChaosState;
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
    /// Set by [`Failure::applied_then_timeout`]: handle the request, then hold the
    /// answer this long.
    pub(crate) hold: Option<Duration>,
}

impl Failure {
    /// Answer with `status` and the body HubSpot sends with it: the rate-limit JSON for
    /// 429 (without `Retry-After`, as HubSpot sends it), an HTML gateway page for
    /// 502/503/504/52x, the JSON error shape otherwise.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            hold: None,
        }
    }

    /// The request takes effect (a task really is created) but the answer is held for
    /// `hold` first: longer than the client's timeout, the client sees a timeout after
    /// the write happened, the ambiguous case an idempotency scheme must survive.
    pub fn applied_then_timeout(hold: Duration) -> Self {
        Self {
            status: 200,
            retry_after: None,
            hold: Some(hold),
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
    /// Every value each property had, oldest first (HubSpot answers newest first).
    pub history: BTreeMap<String, Vec<HistoryEntry>>,
    pub created_at: String,
    pub updated_at: String,
    /// When it was created, for the search index lag.
    pub created: Instant,
}

/// One entry of a property's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryEntry {
    pub value: String,
    pub timestamp: String,
    /// `CRM_UI` for values a test set, `INTEGRATION` for values written through the API.
    pub source_type: &'static str,
    pub source_id: Option<String>,
}

/// Who wrote a set of property values (what the history records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A person in HubSpot's UI (what `FakeHubSpot::set_object` stands for).
    Ui,
    /// The API, i.e. the client under test.
    Api,
}

impl Source {
    fn entry(self, value: &str, timestamp: &str) -> HistoryEntry {
        let (source_type, source_id) = match self {
            Source::Ui => ("CRM_UI", Some("userId:1".to_owned())),
            Source::Api => ("INTEGRATION", Some("private-app".to_owned())),
        };
        HistoryEntry {
            value: value.to_owned(),
            timestamp: timestamp.to_owned(),
            source_type,
            source_id,
        }
    }
}

/// A static (manual) list: records of one type, added by the API.
pub(crate) struct StoredList {
    pub object_type: ObjectType,
    pub members: Vec<String>,
}

/// A contact enrolled in a sequence.
#[derive(Debug, Clone)]
pub(crate) struct StoredEnrollment {
    pub id: String,
    pub contact_id: String,
    pub sequence_id: String,
    pub sender_email: String,
    pub user_id: String,
    pub enrolled_at: String,
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
    pub chaos: Option<ChaosState>,
    pub delay: Duration,
    pub rate_limit: Option<RateLimit>,
    pub max_page_size: usize,
    pub requests: Vec<RecordedRequest>,
    /// Properties whose values are unique per object type (`hasUniqueValue`).
    pub unique_properties: BTreeSet<(ObjectType, String)>,
    pub lists: BTreeMap<String, StoredList>,
    pub sequences: BTreeSet<String>,
    pub enrollments: Vec<StoredEnrollment>,
    /// Records created more recently than this are not found by search yet.
    pub search_lag: Duration,
    next_user_id: u64,
    next_object_id: u64,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            owners: BTreeMap::new(),
            objects: HashMap::new(),
            associations: HashMap::new(),
            failures: VecDeque::new(),
            chaos: None,
            delay: Duration::ZERO,
            rate_limit: None,
            max_page_size: MAX_ASSOCIATION_PAGE,
            requests: Vec::new(),
            unique_properties: BTreeSet::new(),
            lists: BTreeMap::new(),
            sequences: BTreeSet::new(),
            enrollments: Vec::new(),
            search_lag: Duration::ZERO,
            next_user_id: 9_586_504,
            next_object_id: 51_000_000_001,
        }
    }

    /// A fresh id for a record the API creates, shaped like HubSpot's.
    pub(crate) fn new_object_id(&mut self) -> String {
        let id = self.next_object_id;
        self.next_object_id += 1;
        id.to_string()
    }

    /// The owner whose `userId` this is.
    pub(crate) fn owner_by_user_id(&self, user_id: &str) -> Option<&StoredOwner> {
        let values = self.owners.values();
        values
            .into_iter()
            .find(|o| o.user_id.to_string() == user_id)
    }

    /// The id of the object of `kind` whose `property` is `value`, if any.
    pub(crate) fn find_by_property(
        &self,
        kind: ObjectType,
        property: &str,
        value: &str,
    ) -> Option<String> {
        self.objects
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .find(|(_, object)| object.properties.get(property).is_some_and(|v| v == value))
            .map(|((_, id), _)| id.clone())
    }

    /// Sets some properties of the object (creating it if needed), recording history
    /// for each value that changed.
    pub(crate) fn write_properties(
        &mut self,
        kind: ObjectType,
        id: &str,
        properties: BTreeMap<String, String>,
        source: Source,
    ) {
        let now = now();
        let object = self
            .objects
            .entry((kind, id.to_owned()))
            .or_insert_with(|| StoredObject {
                properties: BTreeMap::new(),
                history: BTreeMap::new(),
                created_at: now.clone(),
                updated_at: now.clone(),
                created: Instant::now(),
            });
        for (name, value) in properties {
            if object.properties.get(&name) == Some(&value) {
                continue;
            }
            let entry = source.entry(&value, &now);
            object.history.entry(name.clone()).or_default().push(entry);
            object.properties.insert(name, value);
        }
        object.updated_at = now;
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

    /// Replaces the object's properties, keeping its creation time and history (a
    /// changed value is recorded as a change made in HubSpot's UI).
    pub(crate) fn set_object(
        &mut self,
        kind: ObjectType,
        id: &str,
        properties: BTreeMap<String, String>,
    ) {
        if let Some(object) = self.objects.get_mut(&(kind, id.to_owned())) {
            object
                .properties
                .retain(|name, _| properties.contains_key(name));
        }
        self.write_properties(kind, id, properties, Source::Ui);
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
pub(crate) type Shared = crate::shared::Shared<State>;

/// Now as HubSpot writes times: `2019-10-30T03:30:17.883Z`.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
