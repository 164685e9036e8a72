//! `GET /api/v1/objects?q=` finds a lead the way a person asks for one;
//! `GET /api/v1/objects/{object}` tells its story, as `followthrough trace` does.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use followthrough_core::ObjectRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Admin, Path, Query, bad_request};
use super::schema::{ErrorBody, page_size};
use super::store_error;
use crate::api_error::ApiError;
use crate::find::find_objects;
use crate::server::AppState;
use crate::trace;

const DEFAULT_MATCHES: usize = 20;
const MAX_MATCHES: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// A full reference (`hubspot:contact:501`), a bare CRM id (`501`, tried as each
    /// kind of object) or an email address.
    pub q: String,
    /// At most this many matches (1 to 100, default 20).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub query: String,
    pub objects: Vec<ObjectName>,
}

/// A CRM object's name, whole and in parts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectName {
    /// `<source>:<type>:<id>`: what `GET /objects/{object}` takes.
    #[serde(rename = "ref")]
    #[schema(example = "hubspot:contact:501")]
    pub reference: String,
    pub source: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub id: String,
}

impl From<&ObjectRef> for ObjectName {
    fn from(object: &ObjectRef) -> Self {
        ObjectName {
            reference: object.to_string(),
            source: object.source.clone(),
            object_type: object.object_type.clone(),
            id: object.id.clone(),
        }
    }
}

/// Objects followthrough knows that match the query; empty when none does.
#[utoipa::path(
    get,
    path = "/objects",
    tag = "objects",
    params(SearchQuery),
    responses(
        (status = 200, description = "The matches, most likely first", body = SearchResult),
        (status = 400, description = "`q` missing or empty, or a bad `limit`", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn search(
    _admin: Admin,
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> Result<axum::Json<SearchResult>, ApiError> {
    let q = query.q.trim();
    if q.is_empty() {
        return Err(bad_request(
            "bad_query",
            "q must be an object reference, a CRM id or an email address",
        ));
    }
    let limit = page_size(query.limit, DEFAULT_MATCHES, MAX_MATCHES)?;
    let found = find_objects(state.store.as_ref(), q, limit)
        .await
        .map_err(store_error)?;
    Ok(axum::Json(SearchResult {
        query: q.to_owned(),
        objects: found.iter().map(ObjectName::from).collect(),
    }))
}

/// An object's story: what followthrough knows of it now, everything that happened to
/// it (oldest first), and what will happen next.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectTrace {
    pub object: TracedObject,
    pub timeline: Vec<TimelineEntry>,
    /// Pending timers of the object's runs and actions due in the outbox, soonest first.
    pub upcoming: Vec<Upcoming>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TracedObject {
    #[serde(rename = "ref")]
    pub reference: String,
    pub source: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub id: String,
    /// Current property values; those listed in `privacy.redact_properties` read
    /// `[redacted]`.
    pub properties: BTreeMap<String, Value>,
    pub first_seen_at: Option<String>,
    pub deleted_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub at: String,
    pub at_ms: i64,
    /// `webhook`, `event`, `rule`, `run`, `timer`, `action` or `attempt`.
    #[schema(example = "action")]
    pub kind: String,
    pub summary: String,
    /// Structured detail (ids, outcomes, the values that decided something), redacted
    /// when it was journaled.
    pub detail: Value,
}

/// What will happen to the object next.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upcoming {
    pub due_at: String,
    pub due_at_ms: i64,
    pub run_id: String,
    pub rule_id: String,
    /// `wait` (the run goes on), `wait_for_timeout` (its `on_timeout` branch runs),
    /// `lookup` (a lookup's answer resumes it) or `action` (an outbox job is due).
    pub kind: String,
    /// For `action`: which one (`create_task`...); `null` otherwise.
    pub action: Option<String>,
    /// For `action`: the attempts made so far; `null` otherwise.
    pub attempts: Option<u32>,
}

/// One object's trace, as `followthrough trace OBJECT --json` prints it, with epoch
/// milliseconds beside each time.
#[utoipa::path(
    get,
    path = "/objects/{object}",
    tag = "objects",
    params(("object" = String, Path, description = "`<source>:<type>:<id>`", example = "hubspot:contact:501")),
    responses(
        (status = 200, description = "The trace", body = ObjectTrace),
        (status = 400, description = "Not a `<source>:<type>:<id>` reference", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "followthrough has no record of this object", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn object(
    _admin: Admin,
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<ObjectTrace>, ApiError> {
    let object: ObjectRef =
        reference
            .parse()
            .map_err(|error: followthrough_core::ObjectRefError| {
                bad_request("bad_object", error.to_string())
            })?;
    let Some(trace) = trace::build(state.store.as_ref(), &object, &state.redactor)
        .await
        .map_err(store_error)?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("followthrough has no record of {object}"),
        ));
    };
    Ok(axum::Json(from_trace(&object, trace)))
}

fn from_trace(object: &ObjectRef, trace: trace::Trace) -> ObjectTrace {
    // `trace::build` already redacted the current values (`privacy.redact_properties`),
    // as the journal was redacted when written: what `followthrough trace` shows.
    let traced = trace.object;
    ObjectTrace {
        object: TracedObject {
            reference: object.to_string(),
            source: traced.source,
            object_type: traced.object_type,
            id: traced.id,
            properties: traced.properties,
            first_seen_at: traced.first_seen_at,
            deleted_at: traced.deleted_at,
        },
        timeline: trace
            .timeline
            .into_iter()
            .map(|entry| TimelineEntry {
                at: entry.at,
                at_ms: entry.at_ms.as_millis(),
                kind: entry.kind,
                summary: entry.summary,
                detail: entry.detail,
            })
            .collect(),
        upcoming: trace
            .upcoming
            .into_iter()
            .map(|next| Upcoming {
                due_at: next.due_at,
                due_at_ms: next.due_at_ms.as_millis(),
                run_id: next.run_id,
                rule_id: next.rule_id,
                kind: next.kind,
                action: next.action,
                attempts: next.attempts,
            })
            .collect(),
    }
}
