//! Putting dead letters back in the outbox: one (`POST /dead-letters/{id}/replay`) or
//! several in one transaction (`POST /dead-letters/replay`). Each replay is journaled on
//! its object's timeline with the token's id, as `followthrough dlq replay` journals its
//! own; a running outbox picks the jobs up on its own (they are due now).

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use followthrough_store::DeadLetter;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DeadLetterDetail, detail, find};
use crate::api::extract::{Admin, Json, Path, bad_request};
use crate::api::schema::ErrorBody;
use crate::api::store_error;
use crate::api_error::ApiError;
use crate::journal::dead_letter_replayed;
use crate::server::AppState;

/// A bulk replay is one store transaction; keep it short.
const MAX_REPLAY: usize = 1000;

fn already_replayed(id: i64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("dead letter {id} was already replayed"),
    )
}

/// Puts one dead letter's action back in the outbox, due now, its attempts counted from
/// zero; the outbox workers pick it up on their own. Journaled on the object's timeline
/// with the token's id.
#[utoipa::path(
    post,
    path = "/dead-letters/{id}/replay",
    tag = "dead-letters",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "Replayed; the letter as it is now", body = DeadLetterDetail),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 409, description = "Already replayed", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn replay_one(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<axum::Json<DeadLetterDetail>, ApiError> {
    let letter = find(&state, id).await?;
    if letter.replayed_at.is_some() {
        return Err(already_replayed(id));
    }
    let replayed = replay(&state, &admin, &[letter]).await?;
    if replayed.is_empty() {
        // It was waiting when read: someone replayed it in between.
        return Err(already_replayed(id));
    }
    let letter = find(&state, id).await?;
    Ok(axum::Json(detail(letter)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The dead letters to replay (1 to 1000 ids).
    #[schema(min_items = 1, max_items = 1000, example = json!([12, 13]))]
    pub ids: Vec<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayOutcome {
    /// The ids put back in the outbox.
    pub replayed: Vec<i64>,
    /// The ids that were not, and why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub id: i64,
    /// `not_found` or `already_replayed`.
    pub reason: String,
}

/// Replays several dead letters in one transaction. Unknown or already replayed ids are
/// reported in `skipped`, not as an error, so a retried request is harmless.
#[utoipa::path(
    post,
    path = "/dead-letters/replay",
    tag = "dead-letters",
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "What was replayed and what was skipped", body = ReplayOutcome),
        (status = 400, description = "No ids, too many, or a body that is not `{\"ids\": [...]}`", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 413, description = "The body is over the size limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ),
)]
pub async fn replay_many(
    admin: Admin,
    State(state): State<AppState>,
    Json(request): Json<ReplayRequest>,
) -> Result<axum::Json<ReplayOutcome>, ApiError> {
    if request.ids.is_empty() || request.ids.len() > MAX_REPLAY {
        return Err(bad_request(
            "bad_body",
            format!("ids must hold 1 to {MAX_REPLAY} dead letter ids"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for id in request.ids {
        if !seen.insert(id) {
            continue;
        }
        let reason = match state.store.dead_letter(id).await.map_err(store_error)? {
            None => "not_found",
            Some(letter) if letter.replayed_at.is_some() => "already_replayed",
            Some(letter) => {
                chosen.push(letter);
                continue;
            }
        };
        skipped.push(Skipped {
            id,
            reason: reason.to_owned(),
        });
    }
    let replayed = replay(&state, &admin, &chosen).await?;
    for letter in &chosen {
        if !replayed.contains(&letter.id) {
            skipped.push(Skipped {
                id: letter.id,
                reason: "already_replayed".to_owned(),
            });
        }
    }
    Ok(axum::Json(ReplayOutcome { replayed, skipped }))
}

/// Replays `letters` in one store transaction, each with its journal row naming the
/// token; returns the ids the store replayed (one replayed by someone else since it was
/// read is skipped by the store).
async fn replay(
    state: &AppState,
    admin: &Admin,
    letters: &[DeadLetter],
) -> Result<Vec<i64>, ApiError> {
    if letters.is_empty() {
        return Ok(Vec::new());
    }
    let now = state.clock.now();
    let by = admin.journal_name();
    let ids: Vec<i64> = letters.iter().map(|letter| letter.id).collect();
    let journal = letters
        .iter()
        .map(|letter| dead_letter_replayed(now, letter, &by))
        .collect();
    let replayed = state
        .store
        .replay_dead_letters(&ids, now, journal)
        .await
        .map_err(store_error)?;
    tracing::info!(replayed = ?replayed, token = %admin.token.0, "admin API: dead letters replayed");
    Ok(replayed)
}
