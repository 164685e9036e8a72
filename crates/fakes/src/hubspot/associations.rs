//! `GET /crm/v4/objects/{fromObjectType}/{objectId}/associations/{toObjectType}` and
//! `PUT /crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}`
//! (the default, unlabeled association, both ways; repeating it changes nothing; both
//! records must exist).
//!
//! Paginated like HubSpot: `limit` (default and maximum 500, further capped by
//! `FakeHubSpot::set_max_page_size` so tests can make pages small) and an opaque `after`
//! cursor; `paging.next` is present only while more results remain. An object with no
//! associations (or that does not exist) gets an empty `results`, not a 404.
//! `toObjectId` is a JSON number when the id is numeric, as HubSpot's v4 answers show.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors;
use super::object_type::{ObjectType, association_type_id};
use super::query::unsupported;
use super::state::{MAX_ASSOCIATION_PAGE, Shared};

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path((from_type, from_id, to_type)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(refusal) = unsupported(&query, &["limit", "after"]) {
        return refusal;
    }
    let (Some(from), Some(to)) = (ObjectType::parse(&from_type), ObjectType::parse(&to_type))
    else {
        let unknown = if ObjectType::parse(&from_type).is_none() {
            &from_type
        } else {
            &to_type
        };
        return errors::unknown_object_type(unknown);
    };
    let param = |name: &str| query.iter().find(|(key, _)| key == name).map(|(_, v)| v);
    let limit = match param("limit").map(|v| v.parse::<usize>()) {
        None => MAX_ASSOCIATION_PAGE,
        Some(Ok(limit)) if limit > 0 => limit.min(MAX_ASSOCIATION_PAGE),
        Some(_) => return errors::bad_request("limit must be a positive integer"),
    };
    let offset = match param("after").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => return errors::bad_request("invalid paging cursor `after`"),
    };

    let state = shared.state();
    let page_size = limit.min(state.max_page_size.max(1));
    let empty = Vec::new();
    let targets = state
        .associations
        .get(&(from, from_id.clone(), to))
        .unwrap_or(&empty);
    let type_id = association_type_id(from, to);
    let results: Vec<Value> = targets
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|id| {
            json!({
                "toObjectId": object_id_json(id),
                "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}],
            })
        })
        .collect();
    let mut body = json!({ "results": results });
    let next = offset.saturating_add(page_size);
    if next < targets.len() {
        let link = format!(
            "{}/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}?after={next}&limit={limit}",
            shared.base_url
        );
        body["paging"] = json!({ "next": { "after": next.to_string(), "link": link } });
    }
    Json(body).into_response()
}

fn object_id_json(id: &str) -> Value {
    match id.parse::<u64>() {
        Ok(number) if number.to_string() == id => json!(number),
        _ => json!(id),
    }
}

pub(crate) async fn create_default(
    State(shared): State<Arc<Shared>>,
    Path((from_type, from_id, to_type, to_id)): Path<(String, String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(refusal) = unsupported(&query, &[]) {
        return refusal;
    }
    let (Some(from), Some(to)) = (ObjectType::parse(&from_type), ObjectType::parse(&to_type))
    else {
        return errors::bad_request(format!(
            "Unable to infer object types {from_type}, {to_type}"
        ));
    };
    let (Some(forward), Some(backward)) =
        (association_type_id(from, to), association_type_id(to, from))
    else {
        return errors::bad_request(format!(
            "no default association from {from_type} to {to_type}"
        ));
    };
    let mut state = shared.state();
    for (kind, id) in [(from, &from_id), (to, &to_id)] {
        if !state.objects.contains_key(&(kind, id.clone())) {
            return errors::not_found(format!("No {} with id {id} exists", kind.singular()));
        }
    }
    state.associate_one_way(from, &from_id, to, &to_id);
    state.associate_one_way(to, &to_id, from, &from_id);
    let spec = |type_id: u32| json!({"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id});
    let now = super::state::now();
    Json(json!({
        "status": "COMPLETE",
        "results": [
            {"from": {"id": from_id}, "to": {"id": to_id}, "associationSpec": spec(forward)},
            {"from": {"id": to_id}, "to": {"id": from_id}, "associationSpec": spec(backward)},
        ],
        "startedAt": now,
        "completedAt": now,
    }))
    .into_response()
}
