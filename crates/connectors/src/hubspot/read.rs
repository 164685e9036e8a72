//! HubSpot's CRM API, read side: the owners, objects and associations the engine
//! hydrates rule contexts with ([`CrmReader`]).
//!
//! One GET per call (plus one per extra page of associations), no retries here: a
//! [`FetchError`] goes back to the engine, which journals it and retries the event later.
//! The token lives only in a sensitive header value and in a `SecretString` used to
//! scrub it from any text HubSpot sends back: it never reaches an error or a log line.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use followthrough_core::ObjectRef;
use followthrough_core::Owner;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use url::Url;

use super::client::{HubSpotClient, HubSpotConfigError};
use crate::read::{CrmReader, FetchError};

/// The `source` of every [`ObjectRef`] this reader returns.
pub const SOURCE: &str = "hubspot";

/// HubSpot's largest association page.
const ASSOCIATION_PAGE: &str = "500";
/// 500k associations: far beyond any real record; stops a cursor that never ends.
const MAX_ASSOCIATION_PAGES: usize = 1_000;
/// HubSpot asks for at least 2 s after a 423 (locked).
const LOCKED_WAIT_MS: u64 = 2_000;

/// followthrough's singular type names and HubSpot's plural path names.
const OBJECT_TYPES: [(&str, &str); 8] = [
    ("contact", "contacts"),
    ("company", "companies"),
    ("deal", "deals"),
    ("call", "calls"),
    ("email", "emails"),
    ("meeting", "meetings"),
    ("note", "notes"),
    ("task", "tasks"),
];

/// [`CrmReader`] over HubSpot's REST API (`https://api.hubapi.com`, or a fake's URL).
pub struct HubSpotReader {
    client: HubSpotClient,
}

impl fmt::Debug for HubSpotReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotReader")
            .field("client", &self.client)
            .finish()
    }
}

impl HubSpotReader {
    /// A reader for the API at `base_url` (which may carry a path prefix, e.g. behind a
    /// proxy), authenticating with a private-app or OAuth access `token`. `timeout`
    /// bounds each request, connection included.
    pub fn new(
        base_url: &str,
        token: SecretString,
        timeout: Duration,
    ) -> Result<Self, HubSpotConfigError> {
        let client = HubSpotClient::new(base_url, token, timeout)?;
        Ok(Self { client })
    }

    fn url(&self, segments: &[&str]) -> Url {
        self.client.url(segments)
    }

    /// GETs `url`: `Ok(None)` on 404, the decoded body on 2xx, a `FetchError` otherwise.
    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<Option<T>, FetchError> {
        let path = url.path().to_owned();
        let answer = self
            .client
            .send(Method::GET, url, None)
            .await
            .map_err(|error| FetchError::Unavailable(error.message().to_owned()))?;
        let status = answer.status;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_success() {
            return serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|error| {
                    FetchError::Unavailable(format!(
                        "GET {path}: HubSpot answered {status} with an unexpected body: {error}"
                    ))
                });
        }
        let retry_after = answer.headers.get(RETRY_AFTER);
        let error = self.status_error(status, retry_after, &answer.body);
        tracing::debug!(%path, status = status.as_u16(), %error, "HubSpot refused a read");
        Err(error)
    }

    /// HubSpot's non-2xx, non-404 answer as a `FetchError`.
    fn status_error(
        &self,
        status: StatusCode,
        retry_after: Option<&HeaderValue>,
        body: &[u8],
    ) -> FetchError {
        let code = status.as_u16();
        let retry_after_ms = retry_after.and_then(retry_after_ms);
        match code {
            429 => FetchError::RateLimited { retry_after_ms },
            423 => FetchError::RateLimited {
                retry_after_ms: Some(retry_after_ms.unwrap_or(0).max(LOCKED_WAIT_MS)),
            },
            // 477: a portal migration is in progress; retry later.
            477 | 500..=599 => {
                let detail = self.client.error_message(body).map(|m| format!(": {m}"));
                FetchError::Unavailable(format!(
                    "HubSpot answered {status}{}",
                    detail.unwrap_or_default()
                ))
            }
            400..=499 => FetchError::Refused {
                status: code,
                message: self
                    .client
                    .error_message(body)
                    .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned()),
            },
            _ => FetchError::Unavailable(format!("HubSpot answered an unexpected {status}")),
        }
    }
}

#[async_trait::async_trait]
impl CrmReader for HubSpotReader {
    async fn owner(&self, id: &str) -> Result<Option<Owner>, FetchError> {
        let url = self.url(&["crm", "v3", "owners", id]);
        let Some(body) = self.get_json::<OwnerBody>(url).await? else {
            return Ok(None);
        };
        let name = format!(
            "{} {}",
            body.first_name.unwrap_or_default(),
            body.last_name.unwrap_or_default()
        );
        Ok(Some(Owner {
            id: body
                .id
                .as_ref()
                .and_then(id_text)
                .unwrap_or_else(|| id.to_owned()),
            email: body.email.unwrap_or_default(),
            name: name.trim().to_owned(),
            teams: body
                .teams
                .into_iter()
                .flatten()
                .filter_map(|team| team.name)
                .collect(),
        }))
    }

    async fn object(
        &self,
        object: &ObjectRef,
        properties: &[String],
    ) -> Result<Option<BTreeMap<String, Json>>, FetchError> {
        let kind = api_type(&object.object_type);
        let mut url = self.url(&["crm", "v3", "objects", kind, &object.id]);
        if !properties.is_empty() {
            url.query_pairs_mut()
                .append_pair("properties", &properties.join(","));
        }
        let body = self.get_json::<ObjectBody>(url).await?;
        Ok(body.map(|body| body.properties))
    }

    async fn associations(
        &self,
        object: &ObjectRef,
        to_type: &str,
    ) -> Result<Vec<ObjectRef>, FetchError> {
        let (from, to) = (api_type(&object.object_type), api_type(to_type));
        let target_type = our_type(to_type);
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_ASSOCIATION_PAGES {
            let mut url = self.url(&["crm", "v4", "objects", from, &object.id, "associations", to]);
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("limit", ASSOCIATION_PAGE);
                if let Some(cursor) = &after {
                    query.append_pair("after", cursor);
                }
            }
            // A 404: the object is gone, so nothing is associated with it.
            let Some(page) = self.get_json::<AssociationPage>(url).await? else {
                return Ok(Vec::new());
            };
            let ids = page.results.iter().filter_map(|r| id_text(&r.to_object_id));
            found.extend(ids.map(|id| ObjectRef::new(SOURCE, target_type, id)));
            let next = page
                .paging
                .and_then(|p| p.next)
                .and_then(|n| id_text(&n.after));
            match next {
                None => return Ok(found),
                Some(cursor) if after.as_ref() == Some(&cursor) => {
                    return Err(FetchError::Unavailable(format!(
                        "HubSpot repeated the paging cursor of {object}'s {to_type} associations"
                    )));
                }
                Some(cursor) => after = Some(cursor),
            }
        }
        Err(FetchError::Unavailable(format!(
            "{object} has more than {MAX_ASSOCIATION_PAGES} pages of {to_type} associations"
        )))
    }
}

/// HubSpot's path name for a followthrough type (`contact` -> `contacts`); plural names
/// and custom object types (`2-123`, `p_widgets`) pass through.
pub(crate) fn api_type(name: &str) -> &str {
    OBJECT_TYPES
        .iter()
        .find(|(singular, plural)| name == *singular || name == *plural)
        .map_or(name, |(_, plural)| plural)
}

/// followthrough's name for a type (`contacts` -> `contact`).
pub(crate) fn our_type(name: &str) -> &str {
    OBJECT_TYPES
        .iter()
        .find(|(singular, plural)| name == *singular || name == *plural)
        .map_or(name, |(singular, _)| singular)
}

/// Ids are documented as strings but some endpoints send numbers: accept both.
pub(crate) fn id_text(value: &Json) -> Option<String> {
    match value {
        Json::String(text) if !text.is_empty() => Some(text.clone()),
        Json::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// `Retry-After` in seconds (HubSpot's API sends none; a proxy might). Dates are ignored.
fn retry_after_ms(value: &HeaderValue) -> Option<u64> {
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(seconds.saturating_mul(1_000))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerBody {
    id: Option<Json>,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    teams: Option<Vec<TeamBody>>,
}

#[derive(Deserialize)]
struct TeamBody {
    name: Option<String>,
}

#[derive(Deserialize)]
struct ObjectBody {
    #[serde(default)]
    properties: BTreeMap<String, Json>,
}

#[derive(Deserialize)]
struct AssociationPage {
    #[serde(default)]
    results: Vec<AssociationResult>,
    paging: Option<Paging>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociationResult {
    to_object_id: Json,
}

#[derive(Deserialize)]
struct Paging {
    next: Option<NextPage>,
}

#[derive(Deserialize)]
struct NextPage {
    after: Json,
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
