//! `GET /ui/objects/{object}`: one lead's story — its properties, everything that
//! happened to it, and what will happen next (as `followthrough trace` prints it).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use followthrough_core::ObjectRef;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;

use super::chrome;
use crate::server::AppState;
use crate::trace;
use crate::ui::page::{UiError, render};
use crate::ui::session::Session;

/// Something that will happen, as `followthrough trace` words it.
#[derive(Debug, Serialize)]
struct Next {
    due_at: String,
    kind: String,
    rule_id: String,
    what: String,
}

#[derive(Debug, Serialize)]
struct Property {
    name: String,
    value: String,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(reference): Path<String>,
) -> Result<Response, UiError> {
    let object: ObjectRef = reference.parse().map_err(|_| {
        UiError::bad_request(
            "That is not an object reference. A reference reads source:type:id, \
             like hubspot:contact:501; the search box also takes a bare id or an email.",
        )
    })?;
    // The trace hides the values of `privacy.redact_properties`, as the journal does.
    let Some(trace) = trace::build(state.store.as_ref(), &object, &state.redactor).await? else {
        return Err(UiError::not_found(format!(
            "followthrough has never heard of {object}: no webhook, state or journal \
             entry mentions it."
        )));
    };
    let properties: Vec<Property> = trace
        .object
        .properties
        .iter()
        .map(|(name, value)| Property {
            name: name.clone(),
            value: value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string()),
        })
        .collect();
    let upcoming: Vec<Next> = trace
        .upcoming
        .iter()
        .map(|next| Next {
            due_at: next.due_at.clone(),
            kind: next.kind.clone(),
            rule_id: next.rule_id.clone(),
            what: next.describe(),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        "object.html",
        context! {
            title => object.to_string(),
            chrome => Serde(chrome(&state, &session)),
            reference => object.to_string(),
            first_seen_at => trace.object.first_seen_at,
            deleted_at => trace.object.deleted_at,
            properties => Serde(properties),
            timeline => Serde(trace.timeline),
            upcoming => Serde(upcoming),
        },
    ))
}
