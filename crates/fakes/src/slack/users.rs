//! `GET /users.lookupByEmail?email=..`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::replies::{api_error, api_ok, unauthenticated};
use super::state::Shared;

pub(crate) async fn lookup_by_email(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(refusal) = unauthenticated(&headers, &shared.token) {
        return refusal;
    }
    let email = query
        .iter()
        .find(|(key, _)| key == "email")
        .map(|(_, value)| value.trim().to_lowercase())
        .unwrap_or_default();
    if email.is_empty() {
        return api_error("invalid_arguments");
    }
    let state = shared.state();
    let Some(id) = state.users.get(&email) else {
        return api_error("users_not_found");
    };
    let name = email.split('@').next().unwrap_or_default();
    api_ok(json!({
        "user": {
            "id": id,
            "team_id": "T0FAKE0001",
            "name": name,
            "deleted": false,
            "is_bot": false,
            "profile": {"email": email, "real_name": name},
        }
    }))
}
