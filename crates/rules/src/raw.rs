//! The rule file exactly as written: serde structs with spans, read by serde-saphyr.
//!
//! Unknown keys are rejected here (`deny_unknown_fields`), which gives messages such as
//! "unknown field `whne`, expected one of ...". A step is one struct holding every step
//! and action key as an optional field, so `if` can sit beside `then`/`else` and
//! `wait_for` beside `on_timeout` as in the draft syntax; `compile` then checks that
//! exactly one kind key is present.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub id: S<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub mode: Option<S<String>>,
    pub on: S<RawTrigger>,
    pub when: Option<S<String>>,
    pub key: Option<S<String>>,
    pub on_retrigger: Option<S<String>>,
    pub steps: S<Vec<S<RawStep>>>,
}

/// An event pattern: the rule's `on`, and the body of a `wait_for`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrigger {
    /// Object type (`contact`, `deal`, any string). Required in `on`; in `wait_for` the
    /// run's own object is implied.
    pub object: Option<S<String>>,
    /// `created`, `deleted`, `change`, `activity` or `association`; implied `change`
    /// when `change:` names a property.
    pub event: Option<S<String>>,
    /// The property whose change triggers.
    pub change: Option<S<String>>,
    pub from: Option<S<String>>,
    pub to: Option<S<String>>,
    /// For `activity`: the activity timestamp properties (default list in docs/rules.md).
    pub properties: Option<S<Vec<String>>>,
    /// For `activity`: engagement object types that count (default: call, email, ...).
    pub engagements: Option<S<Vec<String>>>,
    /// For `association`: the other object's type.
    pub with: Option<S<String>>,
    /// For `association`: `added` (default), `removed` or `any`.
    pub action: Option<S<String>>,
    /// Only in `wait_for`: a CEL condition over the arriving event's context.
    pub when: Option<S<String>>,
    /// Only in `wait_for`: how long to wait.
    pub timeout: Option<S<String>>,
}

pub(crate) type RawSteps = S<Vec<S<RawStep>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    pub wait: Option<S<String>>,
    pub wait_for: Option<S<RawTrigger>>,
    pub on_timeout: Option<RawSteps>,
    #[serde(rename = "if")]
    pub if_: Option<S<String>>,
    pub then: Option<RawSteps>,
    #[serde(rename = "else")]
    pub else_: Option<RawSteps>,
    pub lookup: Option<S<RawLookup>>,
    pub create_task: Option<S<RawCreateTask>>,
    pub update: Option<S<BTreeMap<String, S<String>>>>,
    pub revert: Option<S<String>>,
    pub assign_owner: Option<S<RawAssignOwner>>,
    pub enroll_sequence: Option<S<RawEnrollSequence>>,
    pub add_to_list: Option<S<RawAddToList>>,
    pub create_note: Option<S<RawCreateNote>>,
    pub slack_dm: Option<S<RawSlackDm>>,
    pub slack_message: Option<S<RawSlackMessage>>,
    pub http: Option<S<RawHttp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLookup {
    pub url: S<String>,
    pub headers: Option<BTreeMap<String, S<String>>>,
    pub into: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCreateTask {
    pub subject: S<String>,
    pub body: Option<S<String>>,
    pub priority: Option<S<String>>,
    #[serde(rename = "type")]
    pub task_type: Option<S<String>>,
    pub due_in: Option<S<String>>,
    /// Who gets the task: `owner` (default, the object's owner) or an owner id template.
    pub owner: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssignOwner {
    pub team: Option<S<String>>,
    pub owner: Option<S<String>>,
    pub strategy: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnrollSequence {
    pub sequence: S<String>,
    pub sender: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAddToList {
    pub list: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCreateNote {
    pub body: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlackDm {
    pub to: S<String>,
    pub text: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlackMessage {
    pub channel: S<String>,
    pub text: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub method: Option<S<String>>,
    pub url: S<String>,
    pub headers: Option<BTreeMap<String, S<String>>>,
    /// Any YAML value; every string inside is a template.
    pub body: Option<S<serde_json::Value>>,
}
