//! `GET /api/v1/runs` (newest first, paged by `before`) and `GET /api/v1/runs/{run_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use followthrough_core::{ObjectRef, RunId};
use followthrough_rules::Wait;
use followthrough_store::{RunFilter, RunRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Admin, Path, Query, bad_request};
use super::schema::{ErrorBody, page_size, rfc3339};
use super::store_error;
use crate::api_error::ApiError;
use crate::server::AppState;

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;
const STATUSES: &[&str] = &[
    "active",
    "new",
    "running",
    "waiting",
    "completed",
    "failed",
    "cancelled",
];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs of this rule (its id).
    pub rule: Option<String>,
    /// `active` (`new`, `running` or `waiting`), or one status: `new`, `running`,
    /// `waiting`, `completed`, `failed`, `cancelled`.
    pub status: Option<String>,
    /// Only runs created before this one: the previous page's `next_before`.
    pub before: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<RunSummary>,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next_before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunSummary {
    #[schema(example = "run_01JD3K5Q7W8X9Y0Z1A2B3C4D5E")]
    pub run_id: String,
    pub rule_id: String,
    /// The hash of the rule file the run started with.
    pub rule_version: String,
    /// What `on_retrigger` groups runs by (the object's reference by default).
    pub key: String,
    /// The object the run is about, `<source>:<type>:<id>`.
    pub object: String,
    /// `new`, `running`, `waiting` (active), `completed`, `failed` or `cancelled`.
    pub status: String,
    pub active: bool,
    pub parallel: bool,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    pub created_at: String,
    pub created_at_ms: i64,
    pub updated_at: String,
    pub updated_at_ms: i64,
}

impl From<&RunRecord> for RunSummary {
    fn from(run: &RunRecord) -> Self {
        RunSummary {
            run_id: run.run_id.to_string(),
            rule_id: run.rule_id.clone(),
            rule_version: run.rule_version.clone(),
            key: run.key.clone(),
            object: run.object.to_string(),
            status: run.status.clone(),
            active: run.is_active(),
            parallel: run.parallel,
            reason: run.reason.clone(),
            created_at: rfc3339(run.created_at),
            created_at_ms: run.created_at.as_millis(),
            updated_at: rfc3339(run.updated_at),
            updated_at_ms: run.updated_at.as_millis(),
        }
    }
}

/// Rule runs, newest first.
#[utoipa::path(
    get,
    path = "/runs",
    tag = "runs",
    params(RunsQuery),
    responses(
        (status = 200, description = "One page of runs", body = RunPage),
        (status = 400, description = "An unknown status, a `before` that is not a run id, or a bad `limit`", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    Query(query): Query<RunsQuery>,
) -> Result<axum::Json<RunPage>, ApiError> {
    let limit = page_size(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    if let Some(status) = query.status.as_deref()
        && !STATUSES.contains(&status)
    {
        return Err(bad_request(
            "bad_query",
            format!(
                "status must be one of {}, not `{status}`",
                STATUSES.join(", ")
            ),
        ));
    }
    let before = query.before.as_deref().map(run_id).transpose()?;
    let runs = state
        .store
        .list_runs(RunFilter {
            rule_id: query.rule,
            status: query.status,
            before,
            limit,
        })
        .await
        .map_err(store_error)?;
    let next_before = (runs.len() == limit)
        .then(|| runs.last().map(|run| run.run_id.to_string()))
        .flatten();
    Ok(axum::Json(RunPage {
        runs: runs.iter().map(RunSummary::from).collect(),
        next_before,
    }))
}

/// A run with what it waits for, its pending timers and the actions it decided.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    pub run: RunSummary,
    /// What a waiting run waits for; `null` when it waits for nothing.
    pub waiting: Option<Waiting>,
    /// Its pending timers, soonest first.
    pub timers: Vec<RunTimer>,
    /// The actions it queued, in order, and where each stands. Parameters are left out
    /// (they may hold personal data); a dead letter shows them.
    pub actions: Vec<RunAction>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Waiting {
    /// `timer` (a `wait` step), `event` (a `wait_for` step) or `lookup`.
    pub kind: String,
    /// When the wait ends at the latest (`null` for a lookup).
    pub until: Option<String>,
    pub until_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunTimer {
    pub due_at: String,
    pub due_at_ms: i64,
    /// `wait` or `wait_for_timeout`.
    pub kind: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunAction {
    /// The outbox job's sequence number.
    pub seq: i64,
    pub action: String,
    pub connector: String,
    pub idempotency_key: String,
    /// `pending`, `done` or `dead` (in the dead letters).
    pub status: String,
    pub attempts: u32,
    pub created_at: String,
    pub created_at_ms: i64,
}

/// One run.
#[utoipa::path(
    get,
    path = "/runs/{run_id}",
    tag = "runs",
    params(("run_id" = String, Path, description = "A run id (`run_...`)")),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 400, description = "Not a run id", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn show(
    _admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<RunDetail>, ApiError> {
    let id = run_id(&id)?;
    let store = state.store.as_ref();
    let runs = store
        .runs(std::slice::from_ref(&id))
        .await
        .map_err(store_error)?;
    let Some(run) = runs.into_iter().next() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no run {id}"),
        ));
    };
    let object: &ObjectRef = &run.object;
    let timers = store
        .timers_for(object)
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|timer| timer.run_id == id)
        .map(|timer| RunTimer {
            due_at: rfc3339(timer.due_at),
            due_at_ms: timer.due_at.as_millis(),
            kind: timer.kind,
        })
        .collect();
    let actions = store
        .outbox_for(object)
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|entry| entry.job.run_id == id)
        .map(|entry| RunAction {
            seq: entry.seq,
            action: entry.job.action,
            connector: entry.job.connector,
            idempotency_key: entry.job.idempotency_key,
            status: entry.status.as_str().to_owned(),
            attempts: entry.attempts,
            created_at: rfc3339(entry.job.created_at),
            created_at_ms: entry.job.created_at.as_millis(),
        })
        .collect();
    Ok(axum::Json(RunDetail {
        waiting: waiting(&run),
        run: RunSummary::from(&run),
        timers,
        actions,
    }))
}

/// The run's wait, from the engine's state of it (absent or unreadable: no wait).
fn waiting(run: &RunRecord) -> Option<Waiting> {
    #[derive(serde::Deserialize)]
    struct Waits {
        waiting: Option<Wait>,
    }
    let wait = serde_json::from_str::<Waits>(&run.state).ok()?.waiting?;
    let (kind, until) = match wait {
        Wait::Timer { due_at } => ("timer", Some(due_at)),
        Wait::Event { timeout_at } => ("event", Some(timeout_at)),
        Wait::Lookup => ("lookup", None),
    };
    Some(Waiting {
        kind: kind.to_owned(),
        until: until.map(rfc3339),
        until_ms: until.map(|at| at.as_millis()),
    })
}

fn run_id(text: &str) -> Result<RunId, ApiError> {
    RunId::parse(text).ok_or_else(|| {
        bad_request(
            "bad_run_id",
            format!(
                "`{text}` is not a run id (they start with `{}`)",
                RunId::PREFIX
            ),
        )
    })
}
