//! Pipedrive: `create_task` (an activity, `POST /v1/activities`), `create_note`
//! (`POST /v1/notes`), and `update`, `revert`, `assign_owner` (`PATCH /v2/deals/{id}`,
//! `/v2/persons/{id}`, `/v2/organizations/{id}`), on the object the run is about.
//!
//! The API token goes in the `x-api-token` header (Pipedrive's documented scheme; the
//! legacy `api_token` query parameter would put it in every proxy log), marked
//! sensitive, and is scrubbed from any text Pipedrive sends back.

use std::fmt;
use std::time::Duration;

use followthrough_core::ObjectRef;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value as Json, json};
use url::Url;

use crate::http::wire::{self, Scrub};
use crate::{ActionJob, Connector, Failure, Outcome, Repeat, Success};

/// The `source` of the objects this connector acts on.
pub const SOURCE: &str = "pipedrive";
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// How the Pipedrive connector reaches Pipedrive.
pub struct PipedriveConfig {
    /// `https://<company>.pipedrive.com/api` (the `/v1/..` and `/v2/..` paths are
    /// appended), or a fake's URL.
    pub base_url: String,
    pub token: SecretString,
    /// Bounds each request, connection included.
    pub timeout: Duration,
}

impl PipedriveConfig {
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            token,
            timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for PipedriveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipedriveConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a [`PipedriveConnector`] could not be built (a configuration mistake).
#[derive(Debug, thiserror::Error)]
pub enum PipedriveConfigError {
    #[error("invalid Pipedrive base URL `{url}`: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("the Pipedrive API token is empty or not valid in an HTTP header")]
    InvalidToken,
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// The `pipedrive` connector.
pub struct PipedriveConnector {
    http: reqwest::Client,
    base: Url,
    token: HeaderValue,
    scrub: Scrub,
}

impl fmt::Debug for PipedriveConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipedriveConnector")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The record kinds an action can target, with their id.
#[derive(Debug, Clone, Copy)]
enum Record {
    Deal(u64),
    Person(u64),
    Organization(u64),
}

impl Record {
    fn of(object: &ObjectRef) -> Result<Self, Failure> {
        let bad = |why: String| Failure::new(None, why);
        if object.source != SOURCE {
            return Err(bad(format!("{object} is not a Pipedrive object")));
        }
        let id: u64 = object
            .id
            .parse()
            .map_err(|_| bad(format!("{object}: Pipedrive ids are integers")))?;
        match object.object_type.as_str() {
            "deal" | "deals" => Ok(Record::Deal(id)),
            "person" | "persons" => Ok(Record::Person(id)),
            "organization" | "org" | "organizations" => Ok(Record::Organization(id)),
            other => Err(bad(format!(
                "the pipedrive connector cannot act on `{other}` records"
            ))),
        }
    }

    /// `deal_id`, `person_id`, `org_id`: how activities and notes link to it.
    fn link_field(self) -> &'static str {
        match self {
            Record::Deal(_) => "deal_id",
            Record::Person(_) => "person_id",
            Record::Organization(_) => "org_id",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Record::Deal(_) => "deals",
            Record::Person(_) => "persons",
            Record::Organization(_) => "organizations",
        }
    }

    fn id(self) -> u64 {
        match self {
            Record::Deal(id) | Record::Person(id) | Record::Organization(id) => id,
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Record::Deal(_) => "deal",
            Record::Person(_) => "person",
            Record::Organization(_) => "organization",
        };
        write!(f, "{kind} {}", self.id())
    }
}

impl PipedriveConnector {
    pub fn new(config: PipedriveConfig) -> Result<Self, PipedriveConfigError> {
        let base_error = |reason: &str| PipedriveConfigError::BaseUrl {
            url: config.base_url.clone(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(&config.base_url).map_err(|e| base_error(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(base_error("expected an http:// or https:// URL"));
        }
        let secret = config.token.expose_secret();
        if secret.is_empty() {
            return Err(PipedriveConfigError::InvalidToken);
        }
        let mut token =
            HeaderValue::from_str(secret).map_err(|_| PipedriveConfigError::InvalidToken)?;
        token.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("followthrough/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| PipedriveConfigError::Client(error.to_string()))?;
        Ok(Self {
            http,
            base,
            token,
            scrub: Scrub::new([secret]),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn create_task(&self, record: Record, params: &Json) -> Outcome {
        let body = match activity_body(record, params) {
            Ok(body) => body,
            Err(failure) => return Outcome::Terminal(failure),
        };
        let url = self.url(&["v1", "activities"]);
        match self
            .send(reqwest::Method::POST, url, &body, "POST /v1/activities")
            .await
        {
            Ok((status, data)) => Outcome::Success(Success {
                status: Some(status),
                summary: format!("activity {} created on {record}", id_text(&data["id"])),
                result: json!({"activity_id": data["id"]}),
            }),
            Err(outcome) => outcome,
        }
    }

    async fn create_note(&self, record: Record, params: &Json) -> Outcome {
        let content = params["body"].as_str().unwrap_or_default();
        if content.trim().is_empty() {
            return Outcome::Terminal(Failure::new(None, "create_note: the body is empty"));
        }
        let mut body = json!({"content": content});
        body[record.link_field()] = record.id().into();
        let url = self.url(&["v1", "notes"]);
        match self
            .send(reqwest::Method::POST, url, &body, "POST /v1/notes")
            .await
        {
            Ok((status, data)) => Outcome::Success(Success {
                status: Some(status),
                summary: format!("note {} added to {record}", id_text(&data["id"])),
                result: json!({"note_id": data["id"]}),
            }),
            Err(outcome) => outcome,
        }
    }

    async fn update(&self, record: Record, fields: Map<String, Json>) -> Outcome {
        if fields.is_empty() {
            return Outcome::Terminal(Failure::new(None, "update: no properties to set"));
        }
        let body = v2_fields(fields);
        let id = record.id().to_string();
        let url = self.url(&["v2", record.path(), &id]);
        let what = format!("PATCH /v2/{}/{id}", record.path());
        match self.send(reqwest::Method::PATCH, url, &body, &what).await {
            Ok((status, _)) => Outcome::Success(Success {
                status: Some(status),
                summary: format!("{record} updated"),
                result: json!({record.link_field(): record.id()}),
            }),
            Err(outcome) => outcome,
        }
    }

    /// Sends one request and classifies the answer: `Ok((status, data))` on 2xx.
    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        body: &Json,
        what: &str,
    ) -> Result<(u16, Json), Outcome> {
        let request = self
            .http
            .request(method, url)
            .header("x-api-token", self.token.clone())
            .json(body);
        let response = request
            .send()
            .await
            .map_err(|error| wire::transport_outcome(what, &error, &self.scrub))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let answer = wire::read_capped(response, MAX_ANSWER_BYTES).await;
        if (200..300).contains(&status) {
            // It took effect; an unreadable body only costs us the new id.
            let data = answer
                .ok()
                .and_then(|body| serde_json::from_slice::<Json>(&body).ok())
                .map(|mut answer| answer["data"].take())
                .unwrap_or(Json::Null);
            return Ok((status, data));
        }
        let body = answer.unwrap_or_default();
        let error = serde_json::from_slice::<Json>(&body)
            .ok()
            .and_then(|answer| answer["error"].as_str().map(str::to_owned));
        let message = match error {
            Some(error) => format!("{what}: {error} ({status})"),
            None => format!("{what}: Pipedrive answered {status}"),
        };
        let failure = wire::answered(status, message, &headers, &body, &self.scrub);
        Err(match status {
            429 | 500..=599 => Outcome::Retry(failure),
            _ => Outcome::Terminal(failure),
        })
    }
}

#[async_trait::async_trait]
impl Connector for PipedriveConnector {
    fn name(&self) -> &'static str {
        "pipedrive"
    }

    /// A PATCH of the same values is harmless to repeat. Creates are not: Pipedrive has
    /// no idempotency key or unique custom field on activities and notes that we know
    /// of, so a create that may have happened is parked for a person, never repeated.
    fn on_indeterminate(&self, job: &ActionJob) -> Repeat {
        match job.action.as_str() {
            "update" | "revert" | "assign_owner" => Repeat::Safe,
            _ => Repeat::Never,
        }
    }

    async fn execute(&self, job: &ActionJob) -> Outcome {
        let record = match Record::of(&job.object) {
            Ok(record) => record,
            Err(failure) => return Outcome::Terminal(failure),
        };
        let params = &job.params;
        match job.action.as_str() {
            "create_task" => self.create_task(record, params).await,
            "create_note" => self.create_note(record, params).await,
            "update" => {
                let fields = params["properties"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                self.update(record, fields).await
            }
            "revert" => {
                let Some(property) = params["property"].as_str() else {
                    return Outcome::Terminal(Failure::new(None, "revert: no property"));
                };
                let fields = Map::from_iter([(property.to_owned(), params["value"].clone())]);
                self.update(record, fields).await
            }
            "assign_owner" => match params["owner_id"].as_str() {
                Some(owner) => {
                    let fields = Map::from_iter([("owner_id".to_owned(), owner.into())]);
                    self.update(record, fields).await
                }
                None => Outcome::Terminal(Failure::new(
                    None,
                    "assign_owner to a team is not supported for Pipedrive: name an owner_id",
                )),
            },
            other => Outcome::Terminal(Failure::new(
                None,
                format!("the pipedrive connector does not do `{other}`"),
            )),
        }
    }
}

/// The `/v1/activities` body for a rendered `create_task`.
fn activity_body(record: Record, params: &Json) -> Result<Json, Failure> {
    let bad = |why: String| Failure::new(None, format!("create_task: {why}"));
    let mut body = json!({
        "subject": params["subject"].as_str().unwrap_or_default(),
        "type": activity_type(params["type"].as_str()),
    });
    body[record.link_field()] = record.id().into();
    if let Some(note) = params["body"].as_str() {
        body["note"] = note.into();
    }
    match &params["owner_id"] {
        Json::Null => {}
        owner => {
            let text = id_text(owner);
            let user: u64 = text
                .parse()
                .map_err(|_| bad(format!("owner `{text}` is not a Pipedrive user id")))?;
            body["user_id"] = user.into();
        }
    }
    if let Some(due) = params["due_at"].as_str() {
        let due: jiff::Timestamp = due
            .parse()
            .map_err(|error| bad(format!("due_at `{due}` is not a timestamp: {error}")))?;
        // Pipedrive reads due_date/due_time as UTC.
        body["due_date"] = due.strftime("%Y-%m-%d").to_string().into();
        body["due_time"] = due.strftime("%H:%M").to_string().into();
    }
    Ok(body)
}

/// Pipedrive's activity type keys; HubSpot-style names map onto them.
fn activity_type(given: Option<&str>) -> String {
    let given = given.unwrap_or("task").trim().to_ascii_lowercase();
    match given.as_str() {
        "" | "todo" | "to_do" => "task".to_owned(),
        _ => given,
    }
}

/// Rendered properties (all strings) as a v2 body: ids and amounts as numbers (v2 is
/// strict about types), custom fields (40-hex-digit keys) under `custom_fields`.
fn v2_fields(fields: Map<String, Json>) -> Json {
    let mut body = Map::new();
    let mut custom = Map::new();
    for (name, value) in fields {
        let value = match value {
            Json::String(text) if numeric_field(&name) => number_or_null(&text),
            other => other,
        };
        if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            custom.insert(name, value);
        } else {
            body.insert(name, value);
        }
    }
    if !custom.is_empty() {
        body.insert("custom_fields".into(), Json::Object(custom));
    }
    Json::Object(body)
}

fn numeric_field(name: &str) -> bool {
    name.ends_with("_id") || matches!(name, "value" | "probability")
}

/// `"7"` -> 7, `"12.5"` -> 12.5, `""` -> null; anything else stays text (and Pipedrive
/// will say what is wrong with it).
fn number_or_null(text: &str) -> Json {
    let text = text.trim();
    if text.is_empty() {
        return Json::Null;
    }
    if let Ok(int) = text.parse::<i64>() {
        return int.into();
    }
    match text
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        Some(number) => Json::Number(number),
        None => Json::String(text.to_owned()),
    }
}

fn id_text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        Json::Null => "?".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[path = "pipedrive_tests.rs"]
mod tests;
