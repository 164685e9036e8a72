//! `PUT /crm/v3/lists/{listId}/memberships/add` with a JSON array of record ids.
//!
//! As HubSpot does for MANUAL lists: ids already in the list and ids of records that do
//! not exist are ignored (the latter come back in `recordIdsMissing`); the answer is
//! `{"recordsIdsAdded":[..],"recordIdsMissing":[..]}` (sic: HubSpot's spelling). An
//! unknown list is a 404. Lists exist once a test adds them (`FakeHubSpot::add_list`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors;
use super::query::unsupported;
use super::state::Shared;
use super::validate;

pub(crate) async fn add_members(
    State(shared): State<Arc<Shared>>,
    Path(list_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unsupported(&query, &[]) {
        return refusal;
    }
    let ids = match validate::json_body(&body) {
        Ok(Value::Array(ids)) => ids,
        Ok(_) => return errors::bad_request("expected a JSON array of record ids"),
        Err(refusal) => return refusal,
    };
    let Some(ids) = ids
        .iter()
        .map(|id| match id {
            Value::String(id) if !id.is_empty() => Some(id.clone()),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        })
        .collect::<Option<Vec<String>>>()
    else {
        return errors::bad_request("record ids must be strings");
    };
    let mut state = shared.state();
    let Some(kind) = state.lists.get(&list_id).map(|list| list.object_type) else {
        return errors::not_found(format!("List {list_id} does not exist"));
    };
    let (mut added, mut missing) = (Vec::new(), Vec::new());
    for id in ids {
        if !state.objects.contains_key(&(kind, id.clone())) {
            missing.push(id);
            continue;
        }
        let Some(list) = state.lists.get_mut(&list_id) else {
            break;
        };
        if !list.members.contains(&id) {
            list.members.push(id.clone());
            added.push(id);
        }
    }
    Json(json!({ "recordsIdsAdded": added, "recordIdsMissing": missing })).into_response()
}
