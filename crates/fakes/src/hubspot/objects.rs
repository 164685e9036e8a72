//! `GET /crm/v3/objects/{objectType}/{objectId}?properties=a,b&propertiesWithHistory=c`
//! and `PATCH /crm/v3/objects/{objectType}/{objectId}` `{"properties":{..}}`.
//!
//! As HubSpot does: the id and the two timestamps always come back; without
//! `properties`, the type's default properties do; a requested property the object has
//! no value for comes back as `null` (HubSpot omits only properties that do not exist in
//! the account's schema, which the fake does not model). Every value is a string.
//! `propertiesWithHistory` lists every value each named property had, newest first.
//! A PATCH of an unknown object is a 404; `hubspot_owner_id` must name an owner.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::errors;
use super::object_type::ObjectType;
use super::query::unsupported;
use super::state::{Shared, Source, StoredObject};
use super::validate;

pub(crate) async fn get_object(
    State(shared): State<Arc<Shared>>,
    Path((object_type, object_id)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(refusal) = unsupported(&query, &["properties", "propertiesWithHistory"]) {
        return refusal;
    }
    let Some(kind) = ObjectType::parse(&object_type) else {
        return errors::unknown_object_type(&object_type);
    };
    let requested = names(&query, "properties");
    let with_history = names(&query, "propertiesWithHistory");
    let state = shared.state();
    let Some(object) = state.objects.get(&(kind, object_id.clone())) else {
        return errors::not_found("resource not found");
    };
    let mut body = object_json(kind, &object_id, object, &requested);
    if !with_history.is_empty() {
        body["propertiesWithHistory"] = history_json(object, &with_history);
    }
    Json(body).into_response()
}

pub(crate) async fn patch_object(
    State(shared): State<Arc<Shared>>,
    Path((object_type, object_id)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unsupported(&query, &[]) {
        return refusal;
    }
    let Some(kind) = ObjectType::parse(&object_type) else {
        return errors::unknown_object_type(&object_type);
    };
    let input = match validate::json_body(&body) {
        Ok(input) => input,
        Err(refusal) => return refusal,
    };
    let properties = match validate::properties(&input) {
        Ok(properties) => properties,
        Err(refusal) => return refusal,
    };
    let mut state = shared.state();
    if !state.objects.contains_key(&(kind, object_id.clone())) {
        return errors::not_found("resource not found");
    }
    if let Some(invalid) = validate::owner(&state, &properties) {
        return errors::invalid_properties(&[invalid]);
    }
    if let Some(conflict) = validate::unique(&state, kind, &properties, Some(&object_id)) {
        return conflict;
    }
    let names: Vec<String> = properties.keys().cloned().collect();
    state.write_properties(kind, &object_id, properties, Source::Api);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    match state.objects.get(&(kind, object_id.clone())) {
        Some(object) => Json(object_json(kind, &object_id, object, &names)).into_response(),
        None => errors::not_found("resource not found"),
    }
}

/// The names in query parameter `key`: HubSpot takes both `key=a,b` and `key=a&key=b`.
fn names<'q>(query: &'q [(String, String)], key: &str) -> Vec<&'q str> {
    query
        .iter()
        .filter(|(name, _)| name == key)
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect()
}

/// `{"dealstage": [{"value","timestamp","sourceType","sourceId"}, ..]}`, newest first.
fn history_json(object: &StoredObject, names: &[&str]) -> Value {
    let mut history = Map::new();
    for name in names {
        let entries: Vec<Value> = object
            .history
            .get(*name)
            .into_iter()
            .flatten()
            .rev()
            .map(|entry| {
                let mut value = json!({
                    "value": entry.value,
                    "timestamp": entry.timestamp,
                    "sourceType": entry.source_type,
                });
                if let Some(source_id) = &entry.source_id {
                    value["sourceId"] = json!(source_id);
                }
                value
            })
            .collect();
        history.insert((*name).to_owned(), Value::Array(entries));
    }
    Value::Object(history)
}

pub(crate) fn object_json(
    kind: ObjectType,
    id: &str,
    object: &StoredObject,
    requested: &[&str],
) -> Value {
    let names = if requested.is_empty() {
        kind.default_properties()
    } else {
        requested
    };
    let mut properties = Map::new();
    for name in names {
        let value = object
            .properties
            .get(*name)
            .map_or(Value::Null, |v| json!(v));
        properties.insert((*name).to_owned(), value);
    }
    properties.insert("hs_object_id".into(), json!(id));
    properties.insert(kind.created_property().into(), json!(object.created_at));
    properties.insert(kind.modified_property().into(), json!(object.updated_at));
    json!({
        "id": id,
        "properties": properties,
        "createdAt": object.created_at,
        "updatedAt": object.updated_at,
        "archived": false,
    })
}
