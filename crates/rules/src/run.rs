//! A run of a rule as data: [`RunState`] (what the engine persists), what wakes it
//! ([`Wake`]) and what the evaluator decides ([`Decision`]).
//!
//! A run is a cursor into the rule's step tree plus the run's variables. Everything here
//! is serde-serializable so the engine stores it as one JSON column and resumes it after
//! a restart; [`RunState::rule_version`] tells it whether the rule changed meanwhile.

use std::collections::BTreeMap;
use std::fmt;

use followthrough_core::{ObjectRef, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::model::{Rule, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Branch {
    Steps,
    Then,
    Else,
    OnTimeout,
}

impl Branch {
    fn name(self) -> &'static str {
        match self {
            Branch::Steps => "steps",
            Branch::Then => "then",
            Branch::Else => "else",
            Branch::OnTimeout => "on_timeout",
        }
    }
}

/// One level of the cursor: which list, and the index of the step in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub branch: Branch,
    pub index: usize,
}

/// Where a run is in its rule: the path from `steps` down to the current step. The
/// last frame's step is the next to execute, or the one being waited on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor(pub Vec<Frame>);

impl Default for Cursor {
    fn default() -> Self {
        Cursor(vec![Frame {
            branch: Branch::Steps,
            index: 0,
        }])
    }
}

impl fmt::Display for Cursor {
    /// `steps[1].then[0]`: the step id used in idempotency keys and the journal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, frame) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{}[{}]", frame.branch.name(), frame.index)?;
        }
        Ok(())
    }
}

impl Cursor {
    /// The step list the last frame indexes into, or `None` if the path is invalid
    /// (the rule changed under a persisted run).
    pub(crate) fn list<'r>(&self, rule: &'r Rule) -> Option<&'r [Step]> {
        let mut list: &[Step] = &rule.steps;
        for (depth, frame) in self.0.iter().enumerate() {
            if depth == 0 {
                if frame.branch != Branch::Steps {
                    return None;
                }
                continue;
            }
            let parent = list.get(self.0[depth - 1].index)?;
            list = match (parent, frame.branch) {
                (Step::If { then, .. }, Branch::Then) => then,
                (Step::If { otherwise, .. }, Branch::Else) => otherwise,
                (Step::WaitFor(w), Branch::OnTimeout) => &w.on_timeout,
                _ => return None,
            };
        }
        Some(list)
    }

    pub(crate) fn step<'r>(&self, rule: &'r Rule) -> Option<&'r Step> {
        self.list(rule)?.get(self.0.last()?.index)
    }

    pub(crate) fn next(&mut self) {
        if let Some(last) = self.0.last_mut() {
            last.index += 1;
        }
    }

    pub(crate) fn enter(&mut self, branch: Branch) {
        self.0.push(Frame { branch, index: 0 });
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, not yet advanced with [`Wake::Start`].
    New,
    Waiting,
    Completed,
    Failed(String),
    Cancelled(String),
}

impl RunStatus {
    pub fn is_active(&self) -> bool {
        matches!(self, RunStatus::New | RunStatus::Waiting)
    }
}

/// What a waiting run waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Wait {
    /// A `wait` step: resumes when the timer at `due_at` fires.
    Timer { due_at: Timestamp },
    /// A `wait_for` step: resumes on a matching event, or at `timeout_at`.
    Event { timeout_at: Timestamp },
    /// A `lookup` step: resumes when the engine supplies the result.
    Lookup,
}

/// A rule run, as the engine persists it (one row in `runs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    pub rule_id: String,
    pub rule_version: String,
    pub key: String,
    pub object: ObjectRef,
    pub cursor: Cursor,
    /// Results of `lookup` steps, by their `into` name.
    pub vars: Map<String, Json>,
    /// Values `revert` steps restore, captured from `previous` when the run started.
    pub reverts: BTreeMap<String, Json>,
    pub status: RunStatus,
    pub waiting: Option<Wait>,
    pub started_at: Timestamp,
}

impl RunState {
    /// A new run; `run_id` comes from the caller (the engine's `RunId`, the simulator's
    /// counter) so evaluation stays deterministic.
    pub fn new(
        rule: &Rule,
        run_id: impl Into<String>,
        key: impl Into<String>,
        object: ObjectRef,
        now: Timestamp,
    ) -> Self {
        Self {
            run_id: run_id.into(),
            rule_id: rule.id.clone(),
            rule_version: rule.version.clone(),
            key: key.into(),
            object,
            cursor: Cursor::default(),
            vars: Map::new(),
            reverts: BTreeMap::new(),
            status: RunStatus::New,
            waiting: None,
            started_at: now,
        }
    }

    /// Reads a state from the JSON text a store keeps, straight into this type (no
    /// `Value` tree on the way).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The JSON text a store keeps.
    pub fn to_json(&self) -> String {
        // Every field is a string, number, map or plain enum: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "null".to_owned())
    }

    /// Whether an event on this run's object should be offered to it.
    pub fn waits_for_events(&self) -> bool {
        matches!(self.waiting, Some(Wait::Event { .. }))
    }

    /// The time of the timer this run waits on, if any.
    pub fn timer(&self) -> Option<Timestamp> {
        match self.waiting {
            Some(Wait::Timer { due_at }) => Some(due_at),
            Some(Wait::Event { timeout_at }) => Some(timeout_at),
            _ => None,
        }
    }
}

/// What wakes a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Wake {
    /// Execute from the first step (right after the trigger).
    Start,
    /// The run's timer due at this time fired (a stale timer is ignored).
    TimerFired { due_at: Timestamp },
    /// An event on the run's object arrived; it is the context's `event`.
    EventArrived,
    /// The result of the `lookup` the run waits on.
    LookupResult(Json),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    Wait,
    WaitForTimeout,
}

/// A condition's verdict with the values it read: what the journal shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionTrace {
    pub expression: String,
    pub inputs: Map<String, Json>,
    /// `None` when evaluation failed.
    pub result: Option<bool>,
}

/// An action to put in the outbox, fully rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionDecision {
    /// `create_task`, `update`, `revert`, `assign_owner`, ...
    pub action: String,
    pub object: ObjectRef,
    pub params: Json,
    /// The step's id in the rule, e.g. `steps[1].then[0]`.
    pub step: String,
    /// `<run id>:<step>`: a step runs at most once per run, so this is unique.
    pub idempotency_key: String,
}

/// A `lookup` the engine must perform (outside any transaction), then resume the run
/// with [`Wake::LookupResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupDecision {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub into: String,
    pub step: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    ScheduleTimer {
        at: Timestamp,
        kind: TimerKind,
        step: String,
    },
    CancelTimer {
        at: Timestamp,
        step: String,
    },
    Action(ActionDecision),
    /// An action not taken, e.g. `revert` in `warn` mode.
    Skipped {
        action: String,
        step: String,
        why: String,
    },
    Lookup(LookupDecision),
    /// An `if` (or `wait_for` condition) was evaluated.
    Condition {
        step: String,
        trace: ConditionTrace,
    },
    Completed,
    Failed {
        why: String,
    },
    Cancelled {
        why: String,
    },
}

/// The outcome of [`advance`](crate::advance): the state to persist and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    pub state: RunState,
    pub decisions: Vec<Decision>,
}
