//! What a connector is asked to do ([`ActionJob`]), what it answers ([`Outcome`]), and
//! the trait every connector implements ([`Connector`]).

use std::time::Duration;

use followthrough_core::ObjectRef;
use serde_json::Value as Json;

/// One queued action, as the connector sees it: what the rule rendered, and how many
/// times it was tried before.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionJob {
    /// The idempotency key (`<run id>:<step>`): the same decision always has the same
    /// key, so it is what a connector writes into the API to recognise its own work.
    pub key: String,
    /// `create_task`, `update`, `revert`, `assign_owner`, `enroll_sequence`,
    /// `add_to_list`, `create_note`, `slack_dm`, `slack_message`, `http`.
    pub action: String,
    /// The object the run is about (`hubspot:deal:9001`): the record to update, or the
    /// one to associate a task or note with.
    pub object: ObjectRef,
    /// The rendered parameters (see `followthrough_rules`' `render_action` for shapes).
    pub params: Json,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// An earlier attempt may have taken effect (it timed out after the request was
    /// sent). A connector that answered [`Repeat::CheckFirst`] must find out before
    /// creating anything again.
    pub after_indeterminate: bool,
}

/// What happened when a connector executed a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done. Never repeated.
    Success(Success),
    /// Not done, and trying again later may work: 429, the retryable 5xx and 4xx of the
    /// API, a connection that could not be made or was refused before sending.
    Retry(Failure),
    /// Not done, and repeating the same request will not help (validation errors, a
    /// missing record, bad credentials): the job goes to the dead letters with why.
    Terminal(Failure),
    /// The request was sent but no answer came (timeout, reset): it may or may not
    /// have taken effect. See [`Repeat`] for what happens next.
    Indeterminate(Failure),
}

impl Outcome {
    /// `success`, `retry`, `terminal` or `indeterminate`: the classification as journaled
    /// and counted.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Success(_) => "success",
            Outcome::Retry(_) => "retry",
            Outcome::Terminal(_) => "terminal",
            Outcome::Indeterminate(_) => "indeterminate",
        }
    }

    /// The HTTP status the API answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Success(success) => success.status,
            Outcome::Retry(failure)
            | Outcome::Terminal(failure)
            | Outcome::Indeterminate(failure) => failure.status,
        }
    }
}

/// A job that took effect.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Success {
    /// The HTTP status of the call that did it (`None` when nothing had to be sent,
    /// e.g. a check found the record already there).
    pub status: Option<u16>,
    /// One line for the journal: `task 123 created`, `message posted to C01`.
    pub summary: String,
    /// What was created or changed, in the API's ids (`{"task_id": "123"}`): kept with
    /// the job, never personal data.
    pub result: Json,
}

/// A job that did not (or may not have) taken effect, and why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Failure {
    /// The HTTP status, when the API answered.
    pub status: Option<u16>,
    /// Why, in one line, safe to journal: scrubbed of tokens, shortened.
    pub message: String,
    /// How long the API asked us to wait (`Retry-After`, a Slack `ratelimited`, a
    /// HubSpot 423). The retry policy never retries sooner.
    pub retry_after: Option<Duration>,
    /// The start of the API's response body, scrubbed and shortened: what a person
    /// reads in the dead letter.
    pub response: Option<String>,
}

impl Failure {
    pub fn new(status: Option<u16>, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            ..Self::default()
        }
    }
}

/// Whether a job whose outcome was [`Outcome::Indeterminate`] may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Sending it twice has the effect of sending it once (a PATCH of the same values,
    /// an upsert by the action key, adding to a list): retry as usual.
    Safe,
    /// Retry with [`ActionJob::after_indeterminate`] set: the connector first looks for
    /// the effect (e.g. a search for the key) and creates only if it is not there. Every
    /// later attempt checks too, until one succeeds (a check that was refused proves
    /// nothing); if the attempts run out first, the job is parked (`indeterminate`).
    CheckFirst,
    /// There is no way to tell (a chat message, a POST to an unknown API): park the job
    /// for a person, never guess.
    Never,
}

/// An API followthrough acts on.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// `hubspot`, `slack`, `pipedrive`, `http`: in the journal, metrics and config.
    fn name(&self) -> &'static str;

    /// The rate-limit bucket the job draws from: the connector's name by default; a
    /// finer key where the API limits more finely (Slack: per channel).
    fn bucket(&self, job: &ActionJob) -> String {
        let _ = job;
        self.name().to_owned()
    }

    /// The most requests executing this job may send (a search before a create, a user
    /// lookup before a message): the rate limiter reserves that many before it starts.
    fn max_requests(&self, job: &ActionJob) -> u32 {
        let _ = job;
        1
    }

    /// What to do after an indeterminate outcome of this job.
    fn on_indeterminate(&self, job: &ActionJob) -> Repeat;

    /// Performs the job once (a few requests at most, never a retry loop: retries are
    /// the outbox's) and classifies what happened. Never panics on what an API sends.
    async fn execute(&self, job: &ActionJob) -> Outcome;
}
