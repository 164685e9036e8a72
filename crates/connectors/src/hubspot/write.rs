//! HubSpot's CRM API, write side: the [`Connector`] the outbox executes actions
//! through. Records are changed in place (`update`, `assign_owner`, `revert`: PATCH,
//! safe to repeat), added to lists and sequences, and tasks and notes are created with
//! the idempotency scheme in `activity`.
//!
//! One job is a few requests at most, never a retry loop; every answer is classified by
//! `classify`. The token is never in a message: `HubSpotClient` scrubs it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use followthrough_core::Clock;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Map, Value as Json, json};
use url::Url;

use super::classify;
use super::client::{Answer, HubSpotClient, HubSpotConfigError};
use super::read::{SOURCE, api_type, id_text};
use crate::{ActionJob, Connector, Failure, Outcome, Repeat, Success};

/// How the connector reaches HubSpot and makes creates safe to repeat.
#[derive(Debug, Clone)]
pub struct HubSpotConnectorConfig {
    /// `https://api.hubapi.com`, or a fake's or proxy's URL.
    pub base_url: String,
    /// A private-app or OAuth access token.
    pub token: SecretString,
    /// Bounds each request, connection included. Past it, a sent write is
    /// indeterminate.
    pub timeout: Duration,
    /// A unique-value custom property on tasks and notes that holds the action key, so a
    /// create can be recognised later. Without it, a create that timed out cannot be
    /// checked and is parked ([`Repeat::Never`]).
    pub idempotency_property: Option<String>,
    /// Create tasks and notes with `batch/upsert` by `idempotency_property` (repeating
    /// is harmless). HubSpot does not confirm that tasks take `idProperty` upserts, so
    /// this is a switch; without it, a create after an indeterminate outcome searches
    /// for the key first.
    pub idempotency_upsert: bool,
    /// HubSpot's search index lags writes: a search that finds nothing is repeated once
    /// after this long before "not found" is trusted.
    pub search_settle: Duration,
}

/// Executes HubSpot actions: `create_task`, `create_note`, `update`, `assign_owner`,
/// `revert`, `add_to_list`, `enroll_sequence`.
pub struct HubSpotConnector {
    pub(crate) client: HubSpotClient,
    pub(crate) config: HubSpotConnectorConfig,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for HubSpotConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotConnector")
            .field("client", &self.client)
            .field("idempotency_property", &self.config.idempotency_property)
            .field("idempotency_upsert", &self.config.idempotency_upsert)
            .finish_non_exhaustive()
    }
}

impl HubSpotConnector {
    /// # Errors
    /// A bad base URL or token, an empty idempotency property, or upserts without one.
    pub fn new(
        config: HubSpotConnectorConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HubSpotConfigError> {
        let client = HubSpotClient::new(&config.base_url, config.token.clone(), config.timeout)?;
        match &config.idempotency_property {
            Some(name) if name.trim().is_empty() => {
                return Err(HubSpotConfigError::Idempotency(
                    "idempotency_property is empty".into(),
                ));
            }
            None if config.idempotency_upsert => {
                return Err(HubSpotConfigError::Idempotency(
                    "idempotency_upsert needs an idempotency_property".into(),
                ));
            }
            _ => {}
        }
        Ok(Self {
            client,
            config,
            clock,
        })
    }

    /// How many records of `object_type` (`contact`, `deal`...) `owner_id` owns, for
    /// least-loaded assignment: one search, `hubspot_owner_id EQ`, reading `total`.
    ///
    /// # Errors
    /// The search's failure, classified (a 429 carries its wait).
    pub async fn open_records_owned(
        &self,
        object_type: &str,
        owner_id: &str,
    ) -> Result<u64, Failure> {
        let url = self.url(&["crm", "v3", "objects", api_type(object_type), "search"]);
        let body = search_body("hubspot_owner_id", owner_id, "hubspot_owner_id");
        let answer = self
            .call(Method::POST, url, Some(&body))
            .await
            .map_err(into_failure)?;
        answer.json()["total"].as_u64().ok_or_else(|| {
            Failure::new(
                Some(answer.status.as_u16()),
                "HubSpot's search answer has no `total`",
            )
        })
    }

    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        self.client.url(segments)
    }

    pub(crate) fn now(&self) -> followthrough_core::Timestamp {
        self.clock.now()
    }

    /// Sends one request: the answer if HubSpot answered 2xx, else the classified
    /// outcome.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Json>,
    ) -> Result<Answer, Outcome> {
        let what = format!("{method} {}", url.path());
        let answer = match self.client.send(method, url, body).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(%what, error = error.message(), "HubSpot did not answer");
                return Err(classify::transport(&error));
            }
        };
        if answer.status.is_success() {
            return Ok(answer);
        }
        let outcome = classify::failure(&self.client, &answer, self.now());
        tracing::debug!(%what, status = answer.status.as_u16(), class = outcome.class(), "HubSpot refused a write");
        Err(outcome)
    }

    async fn update(&self, job: &ActionJob) -> Outcome {
        let Some(given) = job.params.get("properties").and_then(Json::as_object) else {
            return terminal("update needs `properties`, an object");
        };
        let mut properties = Map::new();
        for (name, value) in given {
            let Some(text) = property_text(value) else {
                return terminal(format!(
                    "update: `{name}` must be a string, number or boolean"
                ));
            };
            properties.insert(name.clone(), Json::String(text));
        }
        if properties.is_empty() {
            return terminal("update has no properties to set");
        }
        let names: Vec<&str> = properties.keys().map(String::as_str).collect();
        let summary = format!("{} updated ({})", describe(job), names.join(", "));
        self.patch(job, Json::Object(properties), summary).await
    }

    async fn assign_owner(&self, job: &ActionJob) -> Outcome {
        let Some(owner_id) = text(&job.params, "owner_id") else {
            let why = if job.params.get("team").is_some() {
                "assign_owner reached HubSpot with a team but no owner_id: the outbox resolves a team to an owner first"
            } else {
                "assign_owner needs an `owner_id`"
            };
            return terminal(why);
        };
        let summary = format!("{} assigned to owner {owner_id}", describe(job));
        let properties = json!({ "hubspot_owner_id": owner_id });
        self.patch(job, properties, summary).await
    }

    /// PATCHes the job's object; repeating it sets the same values again.
    pub(crate) async fn patch(
        &self,
        job: &ActionJob,
        properties: Json,
        summary: String,
    ) -> Outcome {
        if let Some(refusal) = not_hubspot(job) {
            return refusal;
        }
        let kind = api_type(&job.object.object_type);
        let url = self.url(&["crm", "v3", "objects", kind, &job.object.id]);
        let body = json!({ "properties": properties });
        match self.call(Method::PATCH, url, Some(&body)).await {
            Ok(answer) => success(
                &answer,
                summary,
                json!({ "object": job.object.to_string() }),
            ),
            Err(outcome) => outcome,
        }
    }

    async fn add_to_list(&self, job: &ActionJob) -> Outcome {
        let Some(list) = text(&job.params, "list") else {
            return terminal("add_to_list needs a `list` id");
        };
        if let Some(refusal) = not_hubspot(job) {
            return refusal;
        }
        let url = self.url(&["crm", "v3", "lists", &list, "memberships", "add"]);
        let body = json!([job.object.id]);
        let answer = match self.call(Method::PUT, url, Some(&body)).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let missing = answer.json()["recordIdsMissing"].clone();
        let missing = missing.as_array().into_iter().flatten().filter_map(id_text);
        if missing.into_iter().any(|id| id == job.object.id) {
            return Outcome::Terminal(Failure::new(
                Some(answer.status.as_u16()),
                format!(
                    "HubSpot did not add {} to list {list}: no such record of the list's type",
                    job.object
                ),
            ));
        }
        let summary = format!("{} added to list {list}", describe(job));
        success(
            &answer,
            summary,
            json!({ "list": list, "object": job.object.to_string() }),
        )
    }
}

#[async_trait::async_trait]
impl Connector for HubSpotConnector {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    /// Upper bounds, so the rate limiter reserves what a job may really send: an
    /// upsert is followed by one association call per target; a check-first create
    /// searches up to twice (once more after `search_settle`) before creating; a revert
    /// without a value reads the history first; an enrollment looks up the sender.
    fn max_requests(&self, job: &ActionJob) -> u32 {
        let activity = match job.action.as_str() {
            "create_task" => Some(super::activity::Activity::Task),
            "create_note" => Some(super::activity::Activity::Note),
            "revert" if job.params.get("value").is_none_or(Json::is_null) => return 2,
            "enroll_sequence" => return 2,
            _ => None,
        };
        let Some(activity) = activity else {
            return 1;
        };
        let targets = super::activity::targets(job, activity).map_or(1, |t| t.len() as u32);
        match self.on_indeterminate(job) {
            Repeat::Safe => 1 + targets,
            Repeat::CheckFirst if job.after_indeterminate => 3,
            _ => 1,
        }
    }

    fn on_indeterminate(&self, job: &ActionJob) -> Repeat {
        match job.action.as_str() {
            "create_task" | "create_note" => match &self.config.idempotency_property {
                Some(_) if self.config.idempotency_upsert => Repeat::Safe,
                Some(_) => Repeat::CheckFirst,
                None => Repeat::Never,
            },
            "update" | "assign_owner" | "revert" | "add_to_list" | "enroll_sequence" => {
                Repeat::Safe
            }
            _ => Repeat::Never,
        }
    }

    async fn execute(&self, job: &ActionJob) -> Outcome {
        match job.action.as_str() {
            "create_task" => {
                self.create_activity(job, super::activity::Activity::Task)
                    .await
            }
            "create_note" => {
                self.create_activity(job, super::activity::Activity::Note)
                    .await
            }
            "update" => self.update(job).await,
            "assign_owner" => self.assign_owner(job).await,
            "revert" => self.revert(job).await,
            "add_to_list" => self.add_to_list(job).await,
            "enroll_sequence" => self.enroll_sequence(job).await,
            other => terminal(format!("the HubSpot connector has no action `{other}`")),
        }
    }
}

/// A search for records whose `property` is `value`, one result, `returned` in it.
pub(crate) fn search_body(property: &str, value: &str, returned: &str) -> Json {
    json!({
        "filterGroups": [{ "filters": [
            { "propertyName": property, "operator": "EQ", "value": value }
        ] }],
        "properties": [returned],
        "limit": 1,
    })
}

/// A job that cannot succeed as given.
pub(crate) fn terminal(message: impl Into<String>) -> Outcome {
    Outcome::Terminal(Failure::new(None, message))
}

pub(crate) fn success(answer: &Answer, summary: String, result: Json) -> Outcome {
    Outcome::Success(Success {
        status: Some(answer.status.as_u16()),
        summary,
        result,
    })
}

/// A non-success outcome as the `Failure` it carries.
fn into_failure(outcome: Outcome) -> Failure {
    match outcome {
        Outcome::Retry(failure) | Outcome::Terminal(failure) | Outcome::Indeterminate(failure) => {
            failure
        }
        Outcome::Success(success) => Failure::new(success.status, success.summary),
    }
}

/// `Terminal` when the job's object is not a HubSpot record.
pub(crate) fn not_hubspot(job: &ActionJob) -> Option<Outcome> {
    (job.object.source != SOURCE).then(|| {
        terminal(format!(
            "{} is not a HubSpot record; the HubSpot connector cannot act on it",
            job.object
        ))
    })
}

/// `deal 9001`.
pub(crate) fn describe(job: &ActionJob) -> String {
    format!("{} {}", job.object.object_type, job.object.id)
}

/// A non-empty string (or a number) parameter.
pub(crate) fn text(params: &Json, key: &str) -> Option<String> {
    match params.get(key)? {
        Json::String(text) if !text.trim().is_empty() => Some(text.clone()),
        Json::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A property value as HubSpot stores it (a string; `null` clears it).
pub(crate) fn property_text(value: &Json) -> Option<String> {
    match value {
        Json::String(text) => Some(text.clone()),
        Json::Number(number) => Some(number.to_string()),
        Json::Bool(flag) => Some(flag.to_string()),
        Json::Null => Some(String::new()),
        _ => None,
    }
}
