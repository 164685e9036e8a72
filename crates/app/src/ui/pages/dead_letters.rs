//! `/ui/dead-letters`: the actions that failed for good (or whose outcome nobody can
//! know), one letter's full story, and the Replay button that puts it back in the
//! outbox — journaled on the lead's timeline with who replayed it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use followthrough_core::Timestamp;
use followthrough_store::DeadLetter;
use minijinja::context;
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};

use super::{FLASH_COOKIE, chrome, object_href, take_flash};
use crate::journal::dead_letter_replayed;
use crate::server::AppState;
use crate::ui::csrf::SignedInPost;
use crate::ui::page::{UiError, render};
use crate::ui::session::{self, Session};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Also list the letters already replayed.
    #[serde(default)]
    all: bool,
}

/// A dead letter as the pages show it.
#[derive(Debug, Serialize)]
struct Letter {
    id: i64,
    href: String,
    dead_at: String,
    replayed_at: Option<String>,
    rule_id: String,
    run_id: String,
    action: String,
    connector: String,
    object: String,
    object_href: String,
    kind: String,
    message: String,
    /// The message on one line, cut short, for the list.
    short_message: String,
    last_status: Option<u16>,
    last_response: Option<String>,
    attempts: u32,
    key: String,
    created_at: String,
    /// The action's parameters, pretty JSON; only on the detail page (they may hold
    /// personal data, and a list is glanced at by more people than a letter is).
    params: Option<String>,
}

impl Letter {
    fn of(letter: &DeadLetter, with_params: bool) -> Letter {
        let job = &letter.job;
        Letter {
            id: letter.id,
            href: format!("/ui/dead-letters/{}", letter.id),
            dead_at: letter.dead_at.to_rfc3339(),
            replayed_at: letter.replayed_at.map(Timestamp::to_rfc3339),
            rule_id: job.rule_id.clone(),
            run_id: job.run_id.to_string(),
            action: job.action.clone(),
            connector: job.connector.clone(),
            object: job.object.to_string(),
            object_href: object_href(&job.object),
            kind: letter.reason.kind.clone(),
            message: letter.reason.message.clone(),
            short_message: short(&letter.reason.message),
            last_status: letter.reason.last_status,
            last_response: letter.reason.last_response.clone(),
            attempts: letter.attempts,
            key: job.idempotency_key.clone(),
            created_at: job.created_at.to_rfc3339(),
            params: with_params
                .then(|| serde_json::to_string_pretty(&job.params).unwrap_or_default()),
        }
    }
}

/// `GET /ui/dead-letters[?all=true]`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    let letters: Vec<Letter> = state
        .store
        .dead_letters(query.all)
        .await?
        .iter()
        .map(|letter| Letter::of(letter, false))
        .collect();
    let (flash, clear) = take_flash(&state, &headers);
    let mut response = render(
        StatusCode::OK,
        "dead_letters.html",
        context! {
            title => "Dead letters",
            chrome => Serde(chrome(&state, &session)),
            letters => Serde(letters),
            all => query.all,
            flash => flash,
        },
    );
    if let Some(clear) = clear {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(response)
}

/// `GET /ui/dead-letters/{id}`.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let letter = find(&state, &id).await?;
    let (flash, clear) = take_flash(&state, &headers);
    let mut response = render(
        StatusCode::OK,
        "dead_letter.html",
        context! {
            title => format!("Dead letter {}", letter.id),
            chrome => Serde(chrome(&state, &session)),
            letter => Serde(Letter::of(&letter, true)),
            flash => flash,
        },
    );
    if let Some(clear) = clear {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(response)
}

/// `POST /ui/dead-letters/{id}/replay`: puts the letter's job back in the outbox and
/// journals who did it, in one store transaction; then back to the letter's page with
/// a message saying what happened.
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    post: SignedInPost,
) -> Result<Response, UiError> {
    let letter = find(&state, &id).await?;
    let outcome = if letter.replayed_at.is_some() {
        "already"
    } else {
        let now = state.clock.now();
        let by = format!("the web console (token {})", post.session.token_id.0);
        let journal = vec![dead_letter_replayed(now, &letter, &by)];
        let replayed = state
            .store
            .replay_dead_letters(&[letter.id], now, journal)
            .await?;
        if replayed.contains(&letter.id) {
            tracing::info!(
                dead_letter = letter.id,
                token = %post.session.token_id.0,
                "console: dead letter replayed"
            );
            // No wake-up needed: the job is due now and the outbox workers find it on
            // their next poll (`outbox.poll_ms`).
            "replayed"
        } else {
            // Replayed by someone else between our read and our write.
            "already"
        }
    };
    let mut response = Redirect::to(&format!("/ui/dead-letters/{}", letter.id)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            FLASH_COOKIE,
            &format!("{outcome}-{}", letter.id),
            60,
            session::secure(&state),
        ),
    );
    Ok(response)
}

/// `message` on one line, at most [`SHORT`] characters.
fn short(message: &str) -> String {
    const SHORT: usize = 90;
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= SHORT {
        return line;
    }
    let mut cut: String = line.chars().take(SHORT - 1).collect();
    cut.push('…');
    cut
}

/// The letter named by the path, or the page that says why not.
async fn find(state: &AppState, id: &str) -> Result<DeadLetter, UiError> {
    let id: i64 = id.parse().map_err(|_| {
        UiError::bad_request(format!(
            "“{id}” is not a dead letter id: ids are whole numbers, as listed on the \
             dead letters page."
        ))
    })?;
    state
        .store
        .dead_letter(id)
        .await?
        .ok_or_else(|| UiError::not_found(format!("There is no dead letter {id}.")))
}
