//! `GET /ui/search?q=`: find a lead by reference, CRM id or email; a single match goes
//! straight to its timeline.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};

use super::{chrome, object_href};
use crate::find::find_objects;
use crate::server::AppState;
use crate::ui::page::{UiError, render};
use crate::ui::session::Session;

/// More than a page can usefully list; a person narrows the query instead.
const LIMIT: usize = 50;

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

#[derive(Debug, Serialize)]
struct Found {
    reference: String,
    href: String,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<SearchQuery>,
) -> Result<Response, UiError> {
    let q = query.q.trim();
    if q.len() > 320 {
        return Err(UiError::bad_request(
            "That search is too long: give an id, a reference like hubspot:contact:501, \
             or an email address.",
        ));
    }
    let found = find_objects(state.store.as_ref(), q, LIMIT).await?;
    if let [only] = found.as_slice() {
        return Ok(Redirect::to(&object_href(only)).into_response());
    }
    let found: Vec<Found> = found
        .iter()
        .map(|object| Found {
            reference: object.to_string(),
            href: object_href(object),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        "search.html",
        context! {
            title => "Search",
            chrome => Serde(chrome(&state, &session)),
            q => q,
            found => Serde(found),
            limit => LIMIT,
        },
    ))
}
