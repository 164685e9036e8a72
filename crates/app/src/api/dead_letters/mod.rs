//! The dead letters (actions that failed for good, or whose outcome nobody can know)
//! seen and put back in the outbox, as `followthrough dlq` does: the store does the
//! work, this module checks, answers and journals who replayed what.

pub mod replay;

use axum::extract::State;
use axum::http::StatusCode;
use followthrough_store::DeadLetter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Admin, Path, Query};
use super::schema::{ErrorBody, ms_opt, page_size, rfc3339, rfc3339_opt};
use super::store_error;
use crate::api_error::ApiError;
use crate::server::AppState;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// Also list the letters already replayed (default `false`).
    pub include_replayed: Option<bool>,
    /// Only letters with a greater id: the previous page's `next_after`.
    pub after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Oldest first. Without `params` (they may hold personal data): fetch one letter
    /// to see them.
    pub dead_letters: Vec<DeadLetterSummary>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterSummary {
    /// What `GET /dead-letters/{id}` and the replay take.
    pub id: i64,
    /// `waiting` (for a person) or `replayed`.
    pub status: String,
    pub rule_id: String,
    pub run_id: String,
    pub action: String,
    pub connector: String,
    /// The object the action was about, `<source>:<type>:<id>`.
    pub object: String,
    /// `terminal`, `exhausted`, `indeterminate` or `unroutable`.
    pub kind: String,
    /// Why, in one line (the API's own message where it gave one).
    pub message: String,
    /// The API's last HTTP status.
    pub last_status: Option<u16>,
    pub attempts: u32,
    pub dead_at: String,
    pub dead_at_ms: i64,
    pub replayed_at: Option<String>,
    pub replayed_at_ms: Option<i64>,
}

/// Every field of one dead letter: the summary's, and what may hold personal data or
/// is long. (Flat, not the summary nested: one object per letter, as `dlq show --json`.)
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterDetail {
    pub id: i64,
    /// `waiting` (for a person) or `replayed`.
    pub status: String,
    pub rule_id: String,
    pub run_id: String,
    pub action: String,
    pub connector: String,
    pub object: String,
    /// `terminal`, `exhausted`, `indeterminate` or `unroutable`.
    pub kind: String,
    pub message: String,
    pub last_status: Option<u16>,
    pub attempts: u32,
    pub dead_at: String,
    pub dead_at_ms: i64,
    pub replayed_at: Option<String>,
    pub replayed_at_ms: Option<i64>,
    /// The outbox job's sequence number.
    pub seq: i64,
    pub idempotency_key: String,
    /// The action's parameters, as the run decided them.
    pub params: Value,
    /// The start of the API's last response body, scrubbed.
    pub last_response: Option<String>,
    /// When the action was first queued.
    pub created_at: String,
    pub created_at_ms: i64,
}

fn summary(letter: &DeadLetter) -> DeadLetterSummary {
    let job = &letter.job;
    DeadLetterSummary {
        id: letter.id,
        status: status(letter),
        rule_id: job.rule_id.clone(),
        run_id: job.run_id.to_string(),
        action: job.action.clone(),
        connector: job.connector.clone(),
        object: job.object.to_string(),
        kind: letter.reason.kind.clone(),
        message: letter.reason.message.clone(),
        last_status: letter.reason.last_status,
        attempts: letter.attempts,
        dead_at: rfc3339(letter.dead_at),
        dead_at_ms: letter.dead_at.as_millis(),
        replayed_at: rfc3339_opt(letter.replayed_at),
        replayed_at_ms: ms_opt(letter.replayed_at),
    }
}

fn detail(letter: DeadLetter) -> DeadLetterDetail {
    let DeadLetterSummary {
        id,
        status,
        rule_id,
        run_id,
        action,
        connector,
        object,
        kind,
        message,
        last_status,
        attempts,
        dead_at,
        dead_at_ms,
        replayed_at,
        replayed_at_ms,
    } = summary(&letter);
    DeadLetterDetail {
        id,
        status,
        rule_id,
        run_id,
        action,
        connector,
        object,
        kind,
        message,
        last_status,
        attempts,
        dead_at,
        dead_at_ms,
        replayed_at,
        replayed_at_ms,
        seq: letter.seq,
        idempotency_key: letter.job.idempotency_key,
        params: letter.job.params,
        last_response: letter.reason.last_response,
        created_at: rfc3339(letter.job.created_at),
        created_at_ms: letter.job.created_at.as_millis(),
    }
}

fn status(letter: &DeadLetter) -> String {
    match letter.replayed_at {
        Some(_) => "replayed",
        None => "waiting",
    }
    .to_owned()
}

/// Dead letters, oldest first.
#[utoipa::path(
    get,
    path = "/dead-letters",
    tag = "dead-letters",
    params(DeadLettersQuery),
    responses(
        (status = 200, description = "One page of dead letters", body = DeadLetterPage),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    Query(query): Query<DeadLettersQuery>,
) -> Result<axum::Json<DeadLetterPage>, ApiError> {
    let limit = page_size(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let letters = state
        .store
        .dead_letters(query.include_replayed.unwrap_or(false))
        .await
        .map_err(store_error)?;
    // The store lists them oldest first, which is id order: page by id.
    let mut page: Vec<DeadLetterSummary> = letters
        .iter()
        .filter(|letter| query.after.is_none_or(|after| letter.id > after))
        .take(limit + 1)
        .map(summary)
        .collect();
    let next_after = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|letter| letter.id)
    } else {
        None
    };
    Ok(axum::Json(DeadLetterPage {
        dead_letters: page,
        next_after,
    }))
}

/// One dead letter, parameters and the API's last response included.
#[utoipa::path(
    get,
    path = "/dead-letters/{id}",
    tag = "dead-letters",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterDetail),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn show(
    _admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<axum::Json<DeadLetterDetail>, ApiError> {
    let letter = find(&state, id).await?;
    Ok(axum::Json(detail(letter)))
}

async fn find(state: &AppState, id: i64) -> Result<DeadLetter, ApiError> {
    state
        .store
        .dead_letter(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no dead letter {id}"),
            )
        })
}
