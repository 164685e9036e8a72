//! `PATCH /v2/deals/{id}` and `PATCH /v2/persons/{id}`: the fields sent replace the
//! stored ones; custom fields arrive under `custom_fields` and merge into it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value as Json;

use super::replies::{bad_request, error, ok};
use super::state::{Kind, Shared, v2_now};

pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Path((plural, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(kind) = Kind::parse(&plural) else {
        return error(StatusCode::NOT_FOUND, "Unknown method .");
    };
    let Ok(id) = id.parse::<u64>() else {
        return bad_request("The id must be an integer");
    };
    let Ok(Json::Object(fields)) = serde_json::from_slice::<Json>(&body) else {
        return bad_request("Request body must be a JSON object");
    };
    if fields.is_empty() {
        return bad_request("At least one field must be updated");
    }
    let mut state = shared.state();
    let Some(record) = state.records.get_mut(&(kind, id)) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("{} not found", kind.label()),
        );
    };
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("custom_fields", Json::Object(custom)) => {
                let stored = record
                    .entry("custom_fields")
                    .or_insert_with(|| Json::Object(Default::default()));
                if let Json::Object(stored) = stored {
                    stored.extend(custom);
                }
            }
            (_, value) => {
                record.insert(name, value);
            }
        }
    }
    record.insert("id".into(), id.into());
    record.insert("update_time".into(), v2_now().into());
    ok(StatusCode::OK, Json::Object(record.clone()))
}
