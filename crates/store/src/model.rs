//! The values that cross the [`crate::Store`] boundary.

use std::collections::BTreeMap;

use followthrough_core::{Event, EventId, ObjectRef, RunId, Timestamp};
use serde_json::Value;

/// One webhook request's events, to be appended to the inbox in one transaction.
#[derive(Debug, Clone)]
pub struct InboxBatch {
    pub events: Vec<Event>,
    /// The request's journal entry (kind `webhook`, no object). The store appends
    /// `inserted` and `duplicates` to its detail, and to its summary.
    pub journal: JournalEntry,
}

/// What [`crate::Store::append_inbox`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendOutcome {
    pub inserted: usize,
    pub duplicates: usize,
}

/// What the engine's batches in flight hold, for the read of the next batch's pending
/// events to pass over without parsing it: their events (still pending until they
/// commit) and their objects, whose later events wait whole so each object's order
/// holds.
#[derive(Debug, Clone, Default)]
pub struct HeldBack {
    pub seqs: std::collections::HashSet<i64>,
    /// One set of object names (`ObjectRef`'s text, as stores keep it) per batch.
    pub objects: Vec<std::sync::Arc<std::collections::HashSet<String>>>,
}

impl HeldBack {
    pub fn holds_object(&self, name: &str) -> bool {
        self.objects.iter().any(|names| names.contains(name))
    }
}

/// One batch's timers, by (run id, due time).
pub type TimerKeys = std::collections::HashSet<(String, Timestamp), foldhash::fast::RandomState>;

/// The timers of the engine's batches in flight: still in the store until they commit,
/// so the next batch's read passes over them. Each batch's set is shared, not copied:
/// the engine reads its next batch while up to three are in flight, 6,000 timers.
#[derive(Debug, Clone, Default)]
pub struct HeldTimers {
    pub batches: Vec<std::sync::Arc<TimerKeys>>,
}

impl HeldTimers {
    pub fn len(&self) -> usize {
        self.batches.iter().map(|timers| timers.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.iter().all(|timers| timers.is_empty())
    }

    pub fn holds(&self, timer: &(String, Timestamp)) -> bool {
        self.batches.iter().any(|timers| timers.contains(timer))
    }
}

/// An inbox event waiting to be applied. `seq` is its arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub seq: i64,
    pub event: Event,
    /// How many times it was put back to wait (its context could not be fetched).
    pub deferrals: u32,
}

/// Puts a pending event (and every later event of its object) back to wait until
/// `not_before`: what the engine does when a rule's context cannot be fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferral {
    pub seq: i64,
    pub object: ObjectRef,
    pub not_before: Timestamp,
}

/// An inbox row as a trace shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReceivedEvent {
    pub event: Event,
    pub request_id: Option<String>,
    pub applied_at: Option<Timestamp>,
}

/// The kinds of journal entry. The names are part of the trace's JSON contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalKind {
    Webhook,
    Event,
    Rule,
    Run,
    Timer,
    Action,
    Attempt,
}

impl JournalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalKind::Webhook => "webhook",
            JournalKind::Event => "event",
            JournalKind::Rule => "rule",
            JournalKind::Run => "run",
            JournalKind::Timer => "timer",
            JournalKind::Action => "action",
            JournalKind::Attempt => "attempt",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "webhook" => JournalKind::Webhook,
            "event" => JournalKind::Event,
            "rule" => JournalKind::Rule,
            "run" => JournalKind::Run,
            "timer" => JournalKind::Timer,
            "action" => JournalKind::Action,
            "attempt" => JournalKind::Attempt,
            _ => return None,
        })
    }
}

/// One line of the journal. Whoever writes it has already redacted personal data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JournalEntry {
    pub at: Timestamp,
    pub object: Option<ObjectRef>,
    pub kind: JournalKind,
    pub summary: String,
    /// Structured detail (ids, counts, the values that decided something).
    pub detail: Value,
}

/// Sets one property of one object, as of `occurred_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyWrite {
    pub object: ObjectRef,
    pub name: String,
    pub value: Value,
    pub occurred_at: Timestamp,
    pub event_id: EventId,
}

/// A change to an object's existence.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectMark {
    /// The object exists (created, or first heard of) as of this time.
    Seen {
        object: ObjectRef,
        at: Timestamp,
    },
    Deleted {
        object: ObjectRef,
        at: Timestamp,
    },
    Restored {
        object: ObjectRef,
        at: Timestamp,
    },
}

/// The effects of applying events, committed together by [`crate::Store::apply`].
#[derive(Debug, Clone, Default)]
pub struct UnitOfWork {
    /// Inbox events this unit applies, by `seq`; they are marked applied at `applied_at`.
    pub applied: Vec<i64>,
    pub applied_at: Option<Timestamp>,
    pub marks: Vec<ObjectMark>,
    pub property_writes: Vec<PropertyWrite>,
    pub journal: Vec<JournalEntry>,
    /// Runs created or changed, written whole (insert or replace by run id).
    pub runs: Vec<RunRecord>,
    /// Timers to remove (by run and due time; the kind is not compared), then timers
    /// to add.
    pub timers_cancelled: Vec<TimerRecord>,
    pub timers_scheduled: Vec<TimerRecord>,
    /// Actions to queue; one whose idempotency key is already queued is skipped.
    pub outbox: Vec<OutboxJob>,
    /// Links between objects learned from association events (both ends are written).
    pub associations: Vec<AssociationWrite>,
    /// Complete lists of an object's links of one type, fetched from the CRM: they
    /// replace what was known.
    pub association_syncs: Vec<AssociationSync>,
    /// Owners fetched from the CRM.
    pub owners: Vec<CachedOwner>,
    /// Events put back to wait; not marked applied.
    pub deferrals: Vec<Deferral>,
    /// The engine leases this unit was prepared under: a backend shared by several
    /// instances commits it only if every one is still held (see [`WorkShare`]).
    pub fence: Option<Fence>,
}

/// How many partitions the engine's work is split into on a store shared by several
/// instances. An object's events and its runs' timers belong to one partition, chosen by
/// a hash of the object; an instance processes only the partitions it leases.
pub const WORK_PARTITIONS: u16 = 64;

/// One engine partition held by an instance. `epoch` grows each time the partition
/// changes hands, so a commit made under an older epoch can be told apart and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLease {
    pub partition: i16,
    pub epoch: i64,
}

/// The leases a unit of work was prepared under, checked when it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub leases: Vec<PartitionLease>,
}

/// The share of the engine's work an instance may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkShare {
    /// A backend with a single writer (SQLite): one instance does all the work, and
    /// nothing needs fencing.
    All,
    /// The partitions this instance leases (possibly none: it stands by).
    Leased(Fence),
}

impl WorkShare {
    /// The fence a unit prepared under this share carries.
    pub fn fence(&self) -> Option<Fence> {
        match self {
            WorkShare::All => None,
            WorkShare::Leased(fence) => Some(fence.clone()),
        }
    }

    /// True when the instance holds no work at all (it stands by).
    pub fn is_empty(&self) -> bool {
        matches!(self, WorkShare::Leased(fence) if fence.leases.is_empty())
    }

    /// The partition numbers held; `None` for [`WorkShare::All`].
    pub fn partitions(&self) -> Option<Vec<i16>> {
        match self {
            WorkShare::All => None,
            WorkShare::Leased(fence) => Some(fence.leases.iter().map(|l| l.partition).collect()),
        }
    }
}

/// One link between two objects, added or removed as of `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct AssociationWrite {
    pub from: ObjectRef,
    pub to: ObjectRef,
    pub removed: bool,
    pub at: Timestamp,
}

/// Every object of type `to_type` linked to `object`, as the CRM listed them at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct AssociationSync {
    pub object: ObjectRef,
    pub to_type: String,
    pub linked: Vec<ObjectRef>,
    pub at: Timestamp,
}

/// A CRM user who owns records, as last fetched.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CachedOwner {
    pub id: String,
    pub email: String,
    pub name: String,
    pub teams: Vec<String>,
    pub fetched_at: Timestamp,
}

/// What the engine loads about a batch's objects before applying it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectsView {
    /// The objects the store knows (unknown ones are absent).
    pub objects: Vec<ObjectState>,
    /// Their active runs, oldest first (by creation, then run id).
    pub runs: Vec<RunRecord>,
    /// Links from these objects.
    pub links: Vec<(ObjectRef, ObjectRef)>,
    /// When each (object, linked type) list was last fetched complete from the CRM.
    pub syncs: Vec<(ObjectRef, String, Timestamp)>,
}

/// A property's current value and where it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PropertyState {
    pub value: Value,
    pub occurred_at: Timestamp,
    pub event_id: EventId,
}

/// What followthrough knows of one object now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObjectState {
    pub object: ObjectRef,
    pub properties: BTreeMap<String, PropertyState>,
    pub first_seen_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
}

impl ObjectState {
    /// The current properties as plain values, the shape rules read.
    pub fn values(&self) -> BTreeMap<String, Value> {
        self.properties
            .iter()
            .map(|(name, state)| (name.clone(), state.value.clone()))
            .collect()
    }
}

/// One historical value of one property.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PropertyHistoryEntry {
    pub name: String,
    pub value: Value,
    pub occurred_at: Timestamp,
    pub event_id: EventId,
}

/// A rule run as the store keeps it. `state` is the rules crate's `RunState`, opaque here.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub rule_id: String,
    pub rule_version: String,
    pub key: String,
    pub object: ObjectRef,
    /// `new`, `running` and `waiting` are active; `completed`, `failed`, `cancelled` are not.
    pub status: String,
    /// A parallel rule may have several active runs for one key.
    pub parallel: bool,
    pub reason: Option<String>,
    /// The state as JSON text, kept as text from the engine to the database and back:
    /// the engine reads it straight into its own type and writes it straight from it.
    /// (Parsed into a `Value` tree on the way, it was a tenth of the CPU of a fired
    /// timer.) Serialized as the JSON it holds.
    #[serde(serialize_with = "json_text")]
    pub state: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How many times the stored run was rewritten. A backend shared by several
    /// instances refuses to replace a run whose stored revision is no longer the one
    /// written here ([`crate::StoreError::Conflict`]): two instances that read the same
    /// run cannot both change it. A single-writer backend keeps 0.
    pub revision: i64,
}

/// Writes JSON text as the JSON it holds (`null` if it is not JSON).
fn json_text<S: serde::Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    serde_json::from_str::<Value>(text)
        .unwrap_or(Value::Null)
        .serialize(serializer)
}

impl RunRecord {
    /// The state as a JSON value (`null` if the text is not JSON).
    pub fn state_value(&self) -> Value {
        serde_json::from_str(&self.state).unwrap_or(Value::Null)
    }

    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "new" | "running" | "waiting")
    }
}

/// A pending wake-up of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimerRecord {
    pub run_id: RunId,
    pub due_at: Timestamp,
    /// `wait`, `wait_for_timeout`, ...
    pub kind: String,
}

/// A timer that is due, with the object of its run (`None` if the run is unknown).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DueTimer {
    pub timer: TimerRecord,
    pub object: Option<ObjectRef>,
}

/// An action a run decided, to be performed once by a connector.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxJob {
    /// Run id + step: the same decision can never be queued twice.
    pub idempotency_key: String,
    pub run_id: RunId,
    /// The rule whose run decided it (what `dlq replay --rule` selects on).
    pub rule_id: String,
    pub action: String,
    /// The connector that executes it (`hubspot`, `slack`, `pipedrive`, `http`): each
    /// connector's workers claim only their jobs.
    pub connector: String,
    pub object: ObjectRef,
    pub params: Value,
    pub created_at: Timestamp,
    /// Not to be attempted before this time.
    pub next_at: Timestamp,
}

/// Where an outbox job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its `next_at`, or claimed by a worker (see [`ClaimedJob`]).
    Pending,
    /// Done: the connector reported success.
    Done,
    /// In the dead letters: attempts exhausted, a terminal error, or an outcome nobody
    /// can know (parked for a person).
    Dead,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }
}

/// An outbox job with where it stands: what `outbox_for` returns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxEntry {
    pub seq: i64,
    #[serde(flatten)]
    pub job: OutboxJob,
    pub status: JobStatus,
    /// Attempts started (claims), including one in flight.
    pub attempts: u32,
    /// What the connector reported on success (ids of what it created).
    pub result: Option<Value>,
}

/// A job a worker has claimed: nobody else may claim it before `lease_until`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub seq: i64,
    pub job: OutboxJob,
    /// This attempt's number (1 for the first): claims count, so a worker that died
    /// mid-call used up an attempt.
    pub attempt: u32,
    /// Proves the claim when the outcome is recorded; a worker whose lease expired and
    /// was taken over records nothing.
    pub lease: String,
    pub lease_until: Timestamp,
    /// The previous attempt may have taken effect: it was indeterminate, or its worker
    /// died after claiming it (the lease expired with no outcome recorded).
    pub after_indeterminate: bool,
}

/// What a worker learned from one attempt, recorded with its journal rows in one
/// transaction (only while the lease holds).
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub seq: i64,
    pub lease: String,
    pub at: Timestamp,
    pub result: AttemptResult,
    pub journal: Vec<JournalEntry>,
    /// Timers to schedule with the outcome: a `lookup` job's outcome wakes the run that
    /// waits for it, through the same ordered, durable path as every other wake-up.
    pub timers: Vec<TimerRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// Success: the job is done; `result` is kept with it.
    Done { result: Value },
    /// Try again at `next_at`. `indeterminate`: this attempt may have taken effect, so
    /// the next one must check first.
    Retry {
        next_at: Timestamp,
        indeterminate: bool,
    },
    /// Into the dead letters.
    Dead(DeadLetterReason),
}

/// An outbox job found by its idempotency key: where it stands and, if it is dead, why
/// (from its newest dead letter).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedJob {
    pub entry: OutboxEntry,
    pub dead: Option<DeadLetterReason>,
}

/// Why a job became a dead letter, and the last thing the API said.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetterReason {
    /// `terminal`, `exhausted` (attempts or age), `indeterminate` (parked: nobody can
    /// tell if it took effect) or `unroutable` (no connector configured for it).
    pub kind: String,
    /// Why, in one line (the API's message where it gave one).
    pub message: String,
    pub last_status: Option<u16>,
    /// The start of the API's last response body, scrubbed.
    pub last_response: Option<String>,
}

/// A job in the dead letters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// The dead letter's own id (what `dlq show` and `dlq replay` take).
    pub id: i64,
    /// The outbox job's seq.
    pub seq: i64,
    #[serde(flatten)]
    pub job: OutboxJob,
    #[serde(flatten)]
    pub reason: DeadLetterReason,
    pub attempts: u32,
    pub dead_at: Timestamp,
    /// When it was put back in the outbox; `None` while it waits for a person.
    pub replayed_at: Option<Timestamp>,
}

/// The text of one version of a rule, kept so runs that started with it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVersion {
    pub rule_id: String,
    pub version: String,
    pub file: String,
    pub source: String,
    pub loaded_at: Timestamp,
}
