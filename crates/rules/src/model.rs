//! A rule after loading: triggers, steps and actions with conditions and templates
//! compiled and durations parsed. Built by [`crate::compile`]; read by the evaluator.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::duration::Delay;
use crate::expr::Condition;
use crate::template::{Templates, Text};

/// The activity timestamp properties HubSpot updates when a rep logs an activity.
pub const DEFAULT_ACTIVITY_PROPERTIES: [&str; 4] = [
    "notes_last_contacted",
    "hs_last_sales_activity_timestamp",
    "notes_last_updated",
    "hs_last_sales_activity_date",
];

/// Engagement object types whose association or creation counts as activity.
pub const DEFAULT_ENGAGEMENTS: [&str; 6] =
    ["call", "email", "meeting", "note", "task", "communication"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Report only: `revert` steps are skipped (and journaled as skipped).
    Warn,
    /// Every step runs, `revert` included.
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRetrigger {
    /// Cancel the active run of the same key and start anew (debounce).
    Restart,
    /// Keep the active run; the new trigger starts nothing.
    Ignore,
    /// Start another run beside the active one.
    Parallel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssociationAction {
    Added,
    Removed,
    Any,
}

/// What kind of event a trigger (or `wait_for`) waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum EventPattern {
    Created,
    Deleted,
    Change {
        property: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// A change of one of `properties`, an association to an `engagements` object, or the
    /// creation of such an engagement associated with the object.
    Activity {
        properties: Vec<String>,
        engagements: Vec<String>,
    },
    Association {
        with: Option<String>,
        action: AssociationAction,
    },
}

impl EventPattern {
    pub fn name(&self) -> &'static str {
        match self {
            EventPattern::Created => "created",
            EventPattern::Deleted => "deleted",
            EventPattern::Change { .. } => "change",
            EventPattern::Activity { .. } => "activity",
            EventPattern::Association { .. } => "association",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Object type the rule is about (`contact`, `deal`, any type string).
    pub object: String,
    pub pattern: EventPattern,
}

/// How runs are grouped for `on_retrigger`.
#[derive(Debug, Clone)]
pub enum KeySpec {
    /// One key per object: `<source>:<type>:<id>`.
    Object,
    /// A CEL expression whose value (as text) is the key, e.g. `associated.company.id`.
    Expression(Condition),
}

#[derive(Debug, Clone)]
pub struct WaitFor {
    pub pattern: EventPattern,
    pub when: Option<Condition>,
    pub timeout: Delay,
    pub on_timeout: Vec<Step>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Wait(Delay),
    WaitFor(WaitFor),
    If {
        condition: Condition,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
    Lookup {
        url: Text,
        headers: Vec<(String, Text)>,
        into: String,
    },
    Action(Action),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    Low,
    Medium,
    High,
}

/// Who an action is for: the object's owner, or an explicit id/address template.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipient {
    Owner,
    Text(Text),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateTask {
        subject: Text,
        body: Option<Text>,
        priority: Priority,
        task_type: Option<String>,
        due_in: Option<Delay>,
        owner: Recipient,
    },
    Update {
        properties: Vec<(String, Text)>,
    },
    Revert {
        property: String,
    },
    AssignOwner {
        team: Option<String>,
        owner: Option<Text>,
        strategy: String,
    },
    EnrollSequence {
        sequence: Text,
        sender: Recipient,
    },
    AddToList {
        list: Text,
    },
    CreateNote {
        body: Text,
    },
    SlackDm {
        to: Recipient,
        text: Text,
    },
    SlackMessage {
        channel: Text,
        text: Text,
    },
    Http {
        method: String,
        url: Text,
        headers: Vec<(String, Text)>,
        body: Option<Body>,
    },
}

/// An `http` body: any YAML value whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Value(serde_json::Value),
    Text(Text),
    List(Vec<Body>),
    Map(Vec<(String, Body)>),
}

impl Action {
    /// The action's name as written in rules and in decisions.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateTask { .. } => "create_task",
            Action::Update { .. } => "update",
            Action::Revert { .. } => "revert",
            Action::AssignOwner { .. } => "assign_owner",
            Action::EnrollSequence { .. } => "enroll_sequence",
            Action::AddToList { .. } => "add_to_list",
            Action::CreateNote { .. } => "create_note",
            Action::SlackDm { .. } => "slack_dm",
            Action::SlackMessage { .. } => "slack_message",
            Action::Http { .. } => "http",
        }
    }
}

/// A loaded, valid rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub enabled: bool,
    pub mode: Mode,
    pub trigger: Trigger,
    pub guard: Option<Condition>,
    pub key: KeySpec,
    pub on_retrigger: OnRetrigger,
    pub steps: Vec<Step>,
    /// Hash of the file's bytes: runs record it, so a changed rule is noticed.
    pub version: String,
    pub file: PathBuf,
    pub(crate) templates: Templates,
    /// Properties `revert` steps restore; captured from `previous` when a run starts.
    pub(crate) reverts: Vec<String>,
    /// Properties read as `object.X`/`previous.X` by this rule's conditions; in a rule
    /// set, those of every rule, so one CEL context serves them all.
    pub(crate) fill: Arc<BTreeSet<String>>,
    pub(crate) reads: Reads,
}

impl Rule {
    /// What the rule reads of the owner and of associated objects: what the engine must
    /// fetch before evaluating it. Computed once, when the rule is compiled.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }
}

/// What a rule reads beyond the object and the event, gathered from its conditions,
/// templates and recipients at compile time.
///
/// Only what a rule *names* is known: `associated.contacts` names `contact`, while
/// reading `associated` as a whole (`associated[t]`, `{% for k in associated %}`) names
/// no type, and sees only the types fetched for other reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// The rule reads something of the owner beyond its id (email, name, teams), in a
    /// condition or template, or sends to `owner` (slack_dm to: owner, enroll_sequence
    /// sender owner...). `owner.id` alone needs no fetch: it is the object's
    /// `hubspot_owner_id`.
    pub owner: bool,
    /// Associated object types read, as followthrough's singular type names (`contact`,
    /// `company`), from `associated.contacts`, `associated.company` etc.
    pub associated: BTreeSet<String>,
}

impl Reads {
    /// Nothing to fetch.
    pub fn is_empty(&self) -> bool {
        !self.owner && self.associated.is_empty()
    }

    /// Adds what `other` reads: what the candidate rules of one event read together.
    pub fn merge(&mut self, other: &Reads) {
        self.owner |= other.owner;
        self.associated.extend(other.associated.iter().cloned());
    }
}
