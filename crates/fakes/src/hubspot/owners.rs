//! `GET /crm/v3/owners/{ownerId}` and `GET /crm/v3/owners?email=..` (the list, filtered
//! by email, in one page).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors;
use super::query::unsupported;
use super::state::{Shared, StoredOwner};

pub(crate) async fn get_owner(
    State(shared): State<Arc<Shared>>,
    Path(owner_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(refusal) = unsupported(&query, &[]) {
        return refusal;
    }
    let state = shared.state();
    match state.owners.get(&owner_id) {
        Some(owner) => Json(owner_json(owner)).into_response(),
        None => errors::not_found(format!("Owner with id {owner_id} not found")),
    }
}

pub(crate) async fn list_owners(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(refusal) = unsupported(&query, &["email", "limit"]) {
        return refusal;
    }
    let email = query.iter().find(|(k, _)| k == "email").map(|(_, v)| v);
    let state = shared.state();
    let results: Vec<Value> = state
        .owners
        .values()
        .filter(|o| email.is_none_or(|email| o.owner.email.eq_ignore_ascii_case(email)))
        .map(owner_json)
        .collect();
    Json(json!({ "results": results })).into_response()
}

fn owner_json(stored: &StoredOwner) -> Value {
    let owner = &stored.owner;
    let teams: Vec<Value> = owner
        .teams
        .iter()
        .enumerate()
        .map(|(index, (id, name))| json!({"id": id, "name": name, "primary": index == 0}))
        .collect();
    json!({
        "id": owner.id,
        "email": owner.email,
        "type": "PERSON",
        "firstName": owner.first_name,
        "lastName": owner.last_name,
        "userId": stored.user_id,
        "userIdIncludingInactive": stored.user_id,
        "createdAt": stored.created_at,
        "updatedAt": stored.updated_at,
        "archived": false,
        "teams": teams,
    })
}
